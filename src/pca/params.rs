//! PCA fitting parameters, checked once before any work starts.
use serde::{Deserialize, Serialize};

/// Which algorithm computes the principal subspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PcaSolver {
    /// Pick by shape and k: whichever of the three below has the lowest estimated cost among
    /// those whose working memory fits (see `choose_solver`).
    #[default]
    Auto,
    /// Exact: eigendecomposition of the d x d covariance (f64, or f32 centred in f64 when the
    /// f64 working set would exceed the memory budget).
    Covariance,
    /// Randomized subspace iteration over the data (Halko, Martinsson & Tropp 2011) with
    /// Rayleigh-Ritz; never forms the d x d covariance.
    Randomized,
    /// The f32 covariance formed once, then randomized subspace iteration on it with
    /// Rayleigh-Ritz: for many components when d is too large for a fast exact solve.
    #[serde(rename = "covariance-randomized")]
    CovarianceRandomized,
}

/// Parameters of [`crate::pca::fit_pca`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PcaParams {
    /// Number of principal components to keep.
    pub n_components: usize,
    pub solver: PcaSolver,
    /// Randomized solvers: subspace iterations. `None` picks per solver: 3 over the data (each
    /// iteration is two passes over it) and 5 on the covariance (each costs 2 d^2 l flops, a
    /// fraction of those two passes when n > d/2, and 3 left the MSE 0.85% above the exact one at
    /// k = 2000 on 24,300 x 9216 NORB).
    pub power_iters: Option<usize>,
    /// Randomized solver: extra basis vectors beyond `n_components`; `None` picks
    /// `max(10, n_components / 3)` (a wide basis converges faster per pass than more iterations:
    /// within 0.2% of the exact MSE on Fashion-MNIST at k = 50..200 with 3 iterations).
    pub oversample: Option<usize>,
    /// Seed of the randomized solver's test matrix.
    pub seed: u64,
}

impl Default for PcaParams {
    fn default() -> Self {
        Self {
            n_components: 100,
            solver: PcaSolver::Auto,
            power_iters: None,
            oversample: None,
            seed: 0,
        }
    }
}

/// Default subspace iterations over the data and on the covariance.
pub const DATA_POWER_ITERS: usize = 3;
pub const COVARIANCE_POWER_ITERS: usize = 5;

/// Parameters that passed [`PcaParams::check`].
#[derive(Debug, Clone, PartialEq)]
pub struct ValidPcaParams {
    pub(crate) p: PcaParams,
}

impl ValidPcaParams {
    pub fn params(&self) -> &PcaParams {
        &self.p
    }

    /// Subspace iterations the randomized `solver` runs (see [`PcaParams::power_iters`]).
    pub fn power_iters_for(&self, solver: PcaSolver) -> usize {
        self.p.power_iters.unwrap_or(match solver {
            PcaSolver::CovarianceRandomized => COVARIANCE_POWER_ITERS,
            _ => DATA_POWER_ITERS,
        })
    }

    /// Oversampling actually used for `k` components.
    pub fn oversample_for(&self, k: usize) -> usize {
        self.p.oversample.unwrap_or_else(|| (k / 3).max(10))
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PcaParamsError {
    #[error("n_components must be at least 1")]
    NoComponents,
    #[error("power_iters must be at most 50 (got {0})")]
    TooManyPowerIters(usize),
}

impl PcaParams {
    pub fn check(&self) -> Result<ValidPcaParams, PcaParamsError> {
        if self.n_components == 0 {
            return Err(PcaParamsError::NoComponents);
        }
        if let Some(q) = self.power_iters.filter(|&q| q > 50) {
            return Err(PcaParamsError::TooManyPowerIters(q));
        }
        Ok(ValidPcaParams { p: self.clone() })
    }
}
