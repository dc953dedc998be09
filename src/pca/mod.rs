//! The PCA baseline: fitting (exact covariance eigendecomposition or randomized subspace
//! iteration, chosen by shape), the fitted model with projection and reconstruction, its
//! probabilistic-PCA likelihood, and reconstruction metrics.
pub mod baseline;
pub mod fit;
pub mod metrics;
pub mod model;
pub mod params;
pub mod plot;
pub mod ppca;

pub use baseline::{run_baseline, summary_text, BaselineOptions, PcaRunConfig};
pub use fit::{choose_solver, exact_eigenvalues, fit_pca, solver_costs};
pub use metrics::evaluate;
pub use model::PcaModel;
pub use params::{PcaParams, PcaParamsError, PcaSolver, ValidPcaParams};

/// Everything that can go wrong fitting or using a PCA model.
#[derive(Debug, thiserror::Error)]
pub enum PcaError {
    #[error("no images to fit or evaluate (empty split: {n} images of {d} pixels)")]
    Empty { n: usize, d: usize },
    #[error("PCA needs at least 2 training images, got {0}")]
    TooFewSamples(usize),
    #[error("{k} components requested, but at most min(n_samples = {n}, n_pixels = {d}) = {max} exist")]
    TooManyComponents {
        k: usize,
        n: usize,
        d: usize,
        max: usize,
    },
    #[error("{k} components requested from a model with {available}")]
    TooManyComponentsForModel { k: usize, available: usize },
    #[error("{what}: expected {expected} values ({per_row} per row), got {got}")]
    ShapeMismatch {
        what: String,
        expected: usize,
        got: usize,
        per_row: usize,
    },
    #[error("the PCA model has {model} pixels per image but the data's images are {shape} = {data} pixels")]
    ImageSizeMismatch {
        model: usize,
        data: usize,
        shape: String,
    },
    #[error("PCA model file {path}: {msg}")]
    ModelFile { path: String, msg: String },
    #[error("PPCA with {k} components is degenerate: the discarded variance is zero (k = d or rank-deficient data)")]
    DegenerateNoise { k: usize },
    #[error("numerical failure in {0}")]
    Numerical(String),
    #[error(transparent)]
    Params(#[from] PcaParamsError),
}

#[cfg(test)]
mod tests;
