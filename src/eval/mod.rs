//! eval stage (see the module list in lib.rs).
pub mod units;
