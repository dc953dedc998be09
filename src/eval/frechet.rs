//! Frechet distance between two Gaussians (the statistic behind FID, here on our own classifier's
//! features): d^2 = |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).
//!
//! The matrix square roots come from faer's self-adjoint eigendecomposition: sqrt(S1) is
//! symmetric, so sqrt(S1) S2 sqrt(S1) is symmetric positive semi-definite and its square-root trace
//! is the sum of the square roots of its (clamped non-negative) eigenvalues. This avoids the
//! non-symmetric `sqrtm(S1 S2)` of the usual implementation and its complex round-off.
use faer::{Mat, Side};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FrechetError {
    #[error("Frechet distance: feature sizes differ ({0} vs {1})")]
    DimMismatch(usize, usize),
    #[error("Frechet distance: need at least 2 feature vectors, got {0}")]
    TooFew(usize),
    #[error("Frechet distance: eigendecomposition failed to converge")]
    Eigen,
}

/// Mean [d] and covariance [d, d] (unbiased) of rows of `x` ([n, d]).
#[derive(Debug, Clone)]
pub struct GaussianStats {
    pub mean: Vec<f64>,
    pub cov: Mat<f64>,
}

impl GaussianStats {
    pub fn from_rows(x: &[f32], n: usize, d: usize) -> Result<Self, FrechetError> {
        if n < 2 {
            return Err(FrechetError::TooFew(n));
        }
        if x.len() != n * d {
            return Err(FrechetError::DimMismatch(x.len(), n * d));
        }
        let mean = super::column_means(x, d);
        let centred = Mat::<f64>::from_fn(n, d, |i, j| x[i * d + j] as f64 - mean[j]);
        let cov = centred.transpose() * &centred * faer::Scale(1.0 / (n as f64 - 1.0));
        Ok(Self { mean, cov })
    }
}

/// Symmetric square root of a symmetric positive semi-definite matrix.
fn sqrt_psd(a: &Mat<f64>) -> Result<Mat<f64>, FrechetError> {
    let evd = a
        .self_adjoint_eigen(Side::Lower)
        .map_err(|_| FrechetError::Eigen)?;
    let u = evd.U();
    let s = evd.S().column_vector();
    let n = a.nrows();
    let scaled = Mat::<f64>::from_fn(n, n, |i, j| u[(i, j)] * s[j].max(0.0).sqrt());
    Ok(&scaled * u.transpose())
}

/// Squared Frechet distance between N(m1, s1) and N(m2, s2).
pub fn frechet_distance(a: &GaussianStats, b: &GaussianStats) -> Result<f64, FrechetError> {
    let d = a.mean.len();
    if b.mean.len() != d {
        return Err(FrechetError::DimMismatch(d, b.mean.len()));
    }
    let mean_term: f64 = a.mean.iter().zip(&b.mean).map(|(x, y)| (x - y).powi(2)).sum();
    let r1 = sqrt_psd(&a.cov)?;
    let m = &r1 * &b.cov * &r1;
    // Symmetrise against round-off before the self-adjoint solver reads one triangle.
    let m = Mat::<f64>::from_fn(d, d, |i, j| 0.5 * (m[(i, j)] + m[(j, i)]));
    let eig = m
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|_| FrechetError::Eigen)?;
    let tr_sqrt: f64 = eig.iter().map(|&l| l.max(0.0).sqrt()).sum();
    let tr_a: f64 = (0..d).map(|i| a.cov[(i, i)]).sum();
    let tr_b: f64 = (0..d).map(|i| b.cov[(i, i)]).sum();
    Ok((mean_term + tr_a + tr_b - 2.0 * tr_sqrt).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(mean: Vec<f64>, cov: Vec<Vec<f64>>) -> GaussianStats {
        let d = mean.len();
        GaussianStats {
            mean,
            cov: Mat::from_fn(d, d, |i, j| cov[i][j]),
        }
    }

    #[test]
    fn known_cases() {
        // Same Gaussian: 0.
        let a = stats(vec![1.0, 2.0], vec![vec![2.0, 0.5], vec![0.5, 1.0]]);
        assert!(frechet_distance(&a, &a).unwrap().abs() < 1e-10);
        // Commuting diagonal covariances: |dm|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
        // means (0,0) vs (3,4): 25; variances (4, 9) vs (1, 1): (2-1)^2 + (3-1)^2 = 5 -> 30.
        let p = stats(vec![0.0, 0.0], vec![vec![4.0, 0.0], vec![0.0, 9.0]]);
        let q = stats(vec![3.0, 4.0], vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        assert!((frechet_distance(&p, &q).unwrap() - 30.0).abs() < 1e-9);
        // One dimension against a degenerate (zero-variance) Gaussian: (m1-m2)^2 + s1^2.
        let r = stats(vec![0.5], vec![vec![0.25]]);
        let z = stats(vec![0.0], vec![vec![0.0]]);
        assert!((frechet_distance(&r, &z).unwrap() - (0.25 + 0.25)).abs() < 1e-12);
        // Non-commuting 2x2 case, against the closed form for a rotated covariance:
        // S1 = I, S2 = R diag(4, 1) R^T -> tr sqrt(S2) = 2 + 1, d^2 = 2 + 5 - 2*3 = 1.
        let (c, s) = (0.6f64, 0.8f64);
        let s2 = vec![
            vec![4.0 * c * c + s * s, 3.0 * c * s],
            vec![3.0 * c * s, 4.0 * s * s + c * c],
        ];
        let i = stats(vec![0.0, 0.0], vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
        let rot = stats(vec![0.0, 0.0], s2);
        assert!((frechet_distance(&i, &rot).unwrap() - 1.0).abs() < 1e-9);
        assert!((frechet_distance(&rot, &i).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn stats_from_rows() {
        let x = [1.0f32, 0.0, 3.0, 2.0, 5.0, 4.0];
        let g = GaussianStats::from_rows(&x, 3, 2).unwrap();
        assert_eq!(g.mean, vec![3.0, 2.0]);
        assert!((g.cov[(0, 0)] - 4.0).abs() < 1e-12 && (g.cov[(0, 1)] - 4.0).abs() < 1e-12);
        assert!(GaussianStats::from_rows(&x[..2], 1, 2).is_err());
    }
}
