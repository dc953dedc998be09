//! Small helpers shared by every stage: atomic file output, run directories, seeded randomness.
pub mod fs;
pub mod rng;

pub use fs::{write_atomic, RunDir};
pub use rng::SeededRng;
