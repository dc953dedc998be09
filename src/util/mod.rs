//! Small helpers shared by every stage: atomic file output and checkpoint units, run directories
//! and their locks, seeded randomness, progress bars, finiteness and memory checks, and the units
//! every likelihood is reported in.
pub mod atomic_dir;
pub mod device;
pub mod finite;
pub mod fs;
pub mod lock;
pub mod mem;
pub mod progress;
pub mod rng;
pub mod signals;
pub mod stdout;
pub mod tensorboard;
pub mod units;

pub use fs::{write_atomic, RunDir};
pub use rng::SeededRng;
