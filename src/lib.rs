//! norbvae: train and evaluate variational autoencoders on NORB, with PCA as the baseline.
//!
//! Modules follow the data's path: `data` -> `pca` -> `model` (with `kernels`, the CPU hot path)
//! -> `train` -> `eval` -> `report`; `cli` is a thin layer on top and `util` holds small shared helpers.
pub mod cli;
pub mod data;
pub mod eval;
pub mod format;
pub mod kernels;
pub mod model;
pub mod pca;
pub mod report;
pub mod sweep;
pub mod train;
pub mod util;
