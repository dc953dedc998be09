//! Small helpers shared by every stage: atomic file output, run directories, seeded randomness,
//! progress bars, and the units every likelihood is reported in.
pub mod fs;
pub mod progress;
pub mod raster;
pub mod rng;
pub mod units;

pub use fs::{write_atomic, RunDir};
pub use rng::SeededRng;
