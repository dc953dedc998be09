//! norbvae: train and evaluate variational autoencoders on NORB, with PCA as the baseline.
//!
//! Modules follow the data's path: `data` -> `pca` -> `model` (with `kernels`, the CPU hot path)
//! -> `train` -> `eval` -> `report`, and `pipeline` runs them in order (reproduce, demo). `format`
//! defines the run directory's files that the stages share; `util` holds small shared helpers
//! (units, progress bars, files, seeded randomness); `process` sets up the process for the
//! kernels; `plot` draws the charts (PNG and SVG) that pca, train and report show; `cli` is a
//! thin layer on top that parses options and calls the library.
pub mod cli;
pub mod data;
pub mod eval;
pub mod format;
pub mod kernels;
pub mod model;
pub mod pca;
pub mod pipeline;
pub mod plot;
pub mod process;
pub mod report;
pub mod sweep;
pub mod train;
pub mod util;
