//! Small helpers shared by every stage: atomic file output, run directories, seeded randomness.
pub mod atomic_dir;
pub mod finite;
pub mod fs;
pub mod lock;
pub mod mem;
pub mod raster;
pub mod rng;
pub mod stdout;

pub use fs::{write_atomic, RunDir};
pub use rng::SeededRng;
