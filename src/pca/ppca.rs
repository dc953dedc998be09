//! Probabilistic PCA (Tipping & Bishop 1999): the Gaussian density a PCA defines.
//!
//! With the first k axes U (orthonormal rows of the model's components), their variances
//! lambda_1..k and the maximum-likelihood noise variance sigma^2 = mean of the discarded
//! eigenvalues = (total variance - sum of kept) / (d - k), the model is
//! x ~ N(mean, C) with C = U^T diag(lambda) U + sigma^2 (I - U^T U)
//! (the ML solution W = U^T (Lambda - sigma^2 I)^{1/2}, C = W W^T + sigma^2 I). The negative
//! log-density is exact and cheap in the eigenbasis (determinant lemma / Woodbury):
//! nll = 1/2 [ d ln 2pi + sum_j ln lambda_j + (d-k) ln sigma^2
//!             + sum_j c_j^2 / lambda_j + ||x - mean - U^T c||^2 / sigma^2 ],  c = U (x - mean).
//! Variances follow the model's 1/(n-1) convention (as scikit-learn's `PCA.score`). A kept
//! eigenvalue below sigma^2 (possible only through solver error) is raised to sigma^2.
//!
//! Units: nats per image for pixels in [0, 1]; bits/dim through [`crate::util::units::bits_per_dim`]
//! (documents the dequantization convention shared with the VAEs).
use super::metrics::per_image_stats;
use super::{PcaError, PcaModel};

/// The PPCA density of a model truncated to k components.
#[derive(Debug, Clone)]
pub struct Ppca {
    pub k: usize,
    pub noise_variance: f64,
    /// Kept variances, raised to at least the noise variance.
    pub variances: Vec<f64>,
    /// ln det C + d ln 2 pi.
    log_norm: f64,
}

impl Ppca {
    pub fn new(model: &PcaModel, k: usize) -> Result<Ppca, PcaError> {
        model.check_input(0, 0, k, "images")?;
        let d = model.dim();
        let sigma2 = model.noise_variance(k);
        let floor = model.total_variance / d as f64 * 1e-12;
        if k >= d || sigma2 <= floor || !sigma2.is_finite() {
            return Err(PcaError::DegenerateNoise { k });
        }
        let variances: Vec<f64> = model.explained_variance[..k]
            .iter()
            .map(|&v| (v as f64).max(sigma2))
            .collect();
        let log_det = variances.iter().map(|v| v.ln()).sum::<f64>() + (d - k) as f64 * sigma2.ln();
        let log_norm = log_det + d as f64 * (2.0 * std::f64::consts::PI).ln();
        Ok(Ppca {
            k,
            noise_variance: sigma2,
            variances,
            log_norm,
        })
    }

    /// nll from an image's Mahalanobis term in the kept subspace and its squared residual.
    pub(crate) fn nll_from_stats(&self, maha: f64, residual_sq: f64) -> f64 {
        0.5 * (self.log_norm + maha + residual_sq / self.noise_variance)
    }
}

impl PcaModel {
    /// PPCA negative log-likelihood (nats) of each of `n` images under the first `k` components.
    pub fn ppca_nll(&self, x: &[f32], n: usize, k: usize) -> Result<Vec<f64>, PcaError> {
        let ppca = Ppca::new(self, k)?;
        let stats = per_image_stats(self, x, n, k, Some(&ppca.variances))?;
        Ok(stats
            .iter()
            .map(|s| ppca.nll_from_stats(s.maha, s.residual_sq))
            .collect())
    }
}
