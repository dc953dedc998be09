//! norbvae: train and evaluate variational autoencoders on NORB, with PCA as the baseline.
//!
//! Modules follow the data's path: `data` -> `pca` -> `model` (with `kernels`, the CPU hot path)
//! -> `train` -> `eval` -> `report`; `cli` is a thin layer on top; `util` holds small shared helpers and `plot` the charts
//! (PNG and SVG) that pca, train and report draw.
pub mod cli;
pub mod data;
pub mod eval;
pub mod kernels;
pub mod model;
pub mod pca;
pub mod plot;
pub mod report;
pub mod train;
pub mod util;
