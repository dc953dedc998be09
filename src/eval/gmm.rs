//! A Gaussian mixture fitted by EM, used as an ex-post density over a VAE's posterior means
//! (Ghosh et al. 2020): sampling from it instead of the N(0, I) prior avoids the "holes" the prior
//! puts mass on, which is why samples can look like nonsense while reconstructions look fine.
//!
//! Covariances are `full` by default, as in scikit-learn's `GaussianMixture(covariance_type="full")`:
//! every component keeps the lower Cholesky factor L of its covariance (L L^T = Sigma), so
//! log-densities come from one triangular solve L z = x - mu over all points at once, samples are
//! mu + L eps, and the M step forms each component's weighted scatter matrix with one matrix
//! product: O(n k d^2) per EM iteration, rayon over components. `diag` keeps per-dimension
//! variances only, O(n k d). Either way `reg_covar` (1e-6, as scikit-learn) is added to the
//! diagonal of every covariance, and k-means++ seeding (from [`SeededRng`]) makes the fit
//! reproducible.
use crate::util::SeededRng;
use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
use faer::linalg::triangular_solve::solve_lower_triangular_in_place;
use faer::{Accum, MatMut, MatRef, Par, Side};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum GmmError {
    #[error("GMM: n_components must be at least 1")]
    NoComponents,
    #[error("GMM: {n_components} components need at least as many samples, got {n_samples}")]
    TooFewSamples { n_components: usize, n_samples: usize },
    #[error("GMM: data has {len} values, not n*d = {n}*{d}")]
    Shape { len: usize, n: usize, d: usize },
    #[error("GMM: the data contain NaN or infinite values")]
    NonFinite,
    #[error(
        "GMM: the covariance of component {component} is not positive definite even after adding \
         reg_covar = {reg_covar:e} to its diagonal (collapsed or duplicated points, or directions with \
         almost no spread at a large scale); try fewer components, a larger reg_covar, or the diag \
         covariance type"
    )]
    NotPositiveDefinite { component: usize, reg_covar: f64 },
    #[error("GMM: {0}")]
    Invalid(String),
}

/// The shape of each component's covariance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum CovarianceType {
    /// A full d x d covariance per component (scikit-learn's default).
    #[default]
    Full,
    /// Per-dimension variances only (axis-aligned components).
    Diag,
}

impl CovarianceType {
    pub fn name(self) -> &'static str {
        match self {
            CovarianceType::Full => "full",
            CovarianceType::Diag => "diag",
        }
    }
}

/// Hyper-parameters of the mixture fit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GmmParams {
    pub n_components: usize,
    #[serde(default)]
    pub covariance_type: CovarianceType,
    pub max_iter: usize,
    /// Stop when the mean log-likelihood per sample improves by less than this.
    pub tol: f64,
    /// Added to the diagonal of every covariance, so a component on a single point (or on a
    /// subspace) cannot collapse.
    pub reg_covar: f64,
    pub seed: u64,
}

impl Default for GmmParams {
    fn default() -> Self {
        Self {
            n_components: 10,
            covariance_type: CovarianceType::Full,
            max_iter: 200,
            tol: 1e-5,
            reg_covar: 1e-6,
            seed: 0,
        }
    }
}

/// Parameters that passed [`GmmParams::check`].
#[derive(Debug, Clone)]
pub struct ValidGmmParams(GmmParams);

impl GmmParams {
    pub fn check(&self) -> Result<ValidGmmParams, GmmError> {
        if self.n_components == 0 {
            return Err(GmmError::NoComponents);
        }
        if self.max_iter == 0 {
            return Err(GmmError::Invalid("max_iter must be at least 1".into()));
        }
        if !(self.tol >= 0.0) || !(self.reg_covar > 0.0) || !self.reg_covar.is_finite() {
            return Err(GmmError::Invalid(format!(
                "tol must be >= 0 and reg_covar > 0 (got {} and {})",
                self.tol, self.reg_covar
            )));
        }
        Ok(ValidGmmParams(self.clone()))
    }
}

/// A fitted mixture: weights [k], means [k, d], and per component a covariance and its Cholesky
/// factor, laid out by [`CovarianceType`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gmm {
    pub dim: usize,
    pub covariance_type: CovarianceType,
    pub weights: Vec<f64>,
    pub means: Vec<f64>,
    /// `full`: [k, d, d] row-major, symmetric; `diag`: the variances, [k, d]. Both include
    /// `reg_covar` on the diagonal.
    pub covariances: Vec<f64>,
    /// Lower Cholesky factors L of the covariances (L L^T = Sigma): `full`: [k, d, d] row-major,
    /// zero above the diagonal; `diag`: the standard deviations, [k, d].
    pub cholesky: Vec<f64>,
    /// Mean log-likelihood per sample on the training data at the end of EM.
    pub mean_log_likelihood: f64,
    pub iterations: usize,
    pub converged: bool,
}

const LN_2PI: f64 = 1.8378770664093453;

/// Lower Cholesky factor (row-major, zeros above the diagonal) of the symmetric d x d matrix `a`
/// (row-major; only its lower triangle is read), or None if it is not positive definite.
fn cholesky_lower(a: &[f64], d: usize) -> Option<Vec<f64>> {
    if a.len() != d * d || a.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let llt = MatRef::from_row_major_slice(a, d, d).llt(Side::Lower).ok()?;
    let l = llt.L();
    let mut out = vec![0.0; d * d];
    for r in 0..d {
        for c in 0..=r {
            out[r * d + c] = l[(r, c)];
        }
    }
    let ok = (0..d).all(|t| out[t * d + t] > 0.0 && out[t * d + t].is_finite())
        && out.iter().all(|v| v.is_finite());
    ok.then_some(out)
}

impl Gmm {
    pub fn n_components(&self) -> usize {
        self.weights.len()
    }

    /// Values per component in `covariances` and `cholesky`.
    fn block(&self) -> usize {
        match self.covariance_type {
            CovarianceType::Full => self.dim * self.dim,
            CovarianceType::Diag => self.dim,
        }
    }

    /// The d x d covariance of component `j`, row-major (diagonal for `diag`).
    pub fn covariance(&self, j: usize) -> Vec<f64> {
        let (d, b) = (self.dim, self.block());
        let c = &self.covariances[j * b..(j + 1) * b];
        match self.covariance_type {
            CovarianceType::Full => c.to_vec(),
            CovarianceType::Diag => {
                let mut m = vec![0.0; d * d];
                (0..d).for_each(|t| m[t * d + t] = c[t]);
                m
            }
        }
    }

    /// log N(x_i | mean_j, Sigma_j) for every row of `x` ([n, d]).
    fn component_log_density(&self, j: usize, x: &[f64]) -> Vec<f64> {
        let (d, b) = (self.dim, self.block());
        let n = x.len() / d;
        let mean = &self.means[j * d..(j + 1) * d];
        let chol = &self.cholesky[j * b..(j + 1) * b];
        match self.covariance_type {
            CovarianceType::Full => {
                let log_det = 2.0 * (0..d).map(|t| chol[t * d + t].ln()).sum::<f64>();
                let mut z: Vec<f64> = Vec::with_capacity(n * d);
                for row in x.chunks_exact(d) {
                    z.extend(row.iter().zip(mean).map(|(v, m)| v - m));
                }
                // [n, d] row-major is [d, n] column-major: one right-hand side per point, and
                // z_i = L^-1 (x_i - mu) gives the Mahalanobis distance |z_i|^2.
                solve_lower_triangular_in_place(
                    MatRef::from_row_major_slice(chol, d, d),
                    MatMut::from_column_major_slice_mut(&mut z, d, n),
                    Par::Seq,
                );
                z.chunks_exact(d)
                    .map(|zi| -0.5 * (zi.iter().map(|v| v * v).sum::<f64>() + log_det + d as f64 * LN_2PI))
                    .collect()
            }
            CovarianceType::Diag => {
                let log_det = 2.0 * chol.iter().map(|s| s.ln()).sum::<f64>();
                x.chunks_exact(d)
                    .map(|row| {
                        let m: f64 = row
                            .iter()
                            .zip(mean)
                            .zip(chol)
                            .map(|((v, m), s)| ((v - m) / s).powi(2))
                            .sum();
                        -0.5 * (m + log_det + d as f64 * LN_2PI)
                    })
                    .collect()
            }
        }
    }

    /// log w_j + log N(x_i | component j), [n, k] row-major; components in parallel.
    fn weighted_log_densities(&self, x: &[f64]) -> Vec<f64> {
        let k = self.n_components();
        let n = x.len() / self.dim;
        let cols: Vec<Vec<f64>> = (0..k)
            .into_par_iter()
            .map(|j| self.component_log_density(j, x))
            .collect();
        let mut out = vec![0.0; n * k];
        for (j, col) in cols.iter().enumerate() {
            let lw = self.weights[j].ln();
            for (i, v) in col.iter().enumerate() {
                out[i * k + j] = v + lw;
            }
        }
        out
    }

    /// Log-density of each row of `x` ([n, d]).
    pub fn log_prob(&self, x: &[f32]) -> Vec<f64> {
        let x: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        self.weighted_log_densities(&x)
            .par_chunks(self.n_components())
            .map(log_sum_exp)
            .collect()
    }

    /// Draw `n` samples, layout [n, d]: a component by weight, then mean + L eps.
    pub fn sample(&self, n: usize, rng: &mut SeededRng) -> Vec<f32> {
        let (d, b) = (self.dim, self.block());
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let u = rng.uniform_vec(1)[0] as f64;
            let mut acc = 0.0;
            let mut j = self.n_components() - 1;
            for (c, w) in self.weights.iter().enumerate() {
                acc += w;
                if u < acc {
                    j = c;
                    break;
                }
            }
            let eps = rng.normal_vec(d);
            let mean = &self.means[j * d..(j + 1) * d];
            let chol = &self.cholesky[j * b..(j + 1) * b];
            for t in 0..d {
                let noise = match self.covariance_type {
                    CovarianceType::Full => chol[t * d..t * d + t + 1]
                        .iter()
                        .zip(&eps)
                        .map(|(l, e)| l * *e as f64)
                        .sum::<f64>(),
                    CovarianceType::Diag => chol[t] * eps[t] as f64,
                };
                out.push((mean[t] + noise) as f32);
            }
        }
        out
    }
}

fn log_sum_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
}

fn sq_dist(a: &[f32], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(&x, &y)| (x as f64 - y).powi(2)).sum()
}

/// k-means++ seeding: the first centre uniformly, each next one with probability proportional to
/// the squared distance to the nearest centre chosen so far.
fn kmeans_pp(x: &[f32], n: usize, d: usize, k: usize, rng: &mut SeededRng) -> Vec<f64> {
    let mut centres: Vec<f64> = Vec::with_capacity(k * d);
    let first = rng.below(n);
    centres.extend(x[first * d..(first + 1) * d].iter().map(|&v| v as f64));
    let mut nearest: Vec<f64> = (0..n)
        .map(|i| sq_dist(&x[i * d..(i + 1) * d], &centres[0..d]))
        .collect();
    for c in 1..k {
        let total: f64 = nearest.iter().sum();
        let pick = if total > 0.0 {
            let u = rng.uniform_vec(1)[0] as f64 * total;
            let mut acc = 0.0;
            let mut p = n - 1;
            for (i, w) in nearest.iter().enumerate() {
                acc += w;
                if u < acc {
                    p = i;
                    break;
                }
            }
            p
        } else {
            rng.below(n)
        };
        centres.extend(x[pick * d..(pick + 1) * d].iter().map(|&v| v as f64));
        let new_c = &centres[c * d..(c + 1) * d];
        nearest.par_iter_mut().enumerate().for_each(|(i, m)| {
            let dist = sq_dist(&x[i * d..(i + 1) * d], new_c);
            if dist < *m {
                *m = dist;
            }
        });
    }
    centres
}

/// One component's maximum-likelihood update from responsibilities.
struct ComponentFit {
    /// Sum of the responsibilities (kept away from 0, so an emptied component stays finite).
    weight_sum: f64,
    mean: Vec<f64>,
    covariance: Vec<f64>,
    cholesky: Vec<f64>,
}

/// The M step of component `j`: `resp` is [n, k] row-major, `x` is [n, d].
fn m_step_component(
    x: &[f64],
    resp: &[f64],
    k: usize,
    j: usize,
    covariance_type: CovarianceType,
    reg_covar: f64,
) -> Result<ComponentFit, GmmError> {
    let n = resp.len() / k;
    let d = x.len() / n;
    let r = |i: usize| resp[i * k + j];
    let nk = (0..n).map(r).sum::<f64>().max(1e-10);
    let mut mean = vec![0.0; d];
    for (i, row) in x.chunks_exact(d).enumerate() {
        let ri = r(i);
        if ri != 0.0 {
            mean.iter_mut().zip(row).for_each(|(m, v)| *m += ri * v);
        }
    }
    mean.iter_mut().for_each(|m| *m /= nk);
    let not_pd = GmmError::NotPositiveDefinite {
        component: j,
        reg_covar,
    };
    let (covariance, cholesky) = match covariance_type {
        CovarianceType::Full => {
            // Scatter matrix sum_i r_i (x_i - mu)(x_i - mu)^T / n_j as Y^T Y with rows
            // sqrt(r_i) (x_i - mu); only the lower triangle is computed, then mirrored.
            let mut y = Vec::with_capacity(n * d);
            for (i, row) in x.chunks_exact(d).enumerate() {
                let w = r(i).max(0.0).sqrt();
                y.extend(row.iter().zip(&mean).map(|(v, m)| w * (v - m)));
            }
            let yr = MatRef::from_row_major_slice(&y, n, d);
            let mut cov = vec![0.0; d * d];
            tri_matmul(
                MatMut::from_row_major_slice_mut(&mut cov, d, d),
                BlockStructure::TriangularLower,
                Accum::Replace,
                yr.transpose(),
                BlockStructure::Rectangular,
                yr,
                BlockStructure::Rectangular,
                1.0 / nk,
                Par::Seq,
            );
            for a in 0..d {
                cov[a * d + a] += reg_covar;
                for b in 0..a {
                    cov[b * d + a] = cov[a * d + b];
                }
            }
            let chol = cholesky_lower(&cov, d).ok_or(not_pd)?;
            (cov, chol)
        }
        CovarianceType::Diag => {
            let mut var = vec![0.0; d];
            for (i, row) in x.chunks_exact(d).enumerate() {
                let ri = r(i);
                if ri != 0.0 {
                    for t in 0..d {
                        var[t] += ri * (row[t] - mean[t]).powi(2);
                    }
                }
            }
            var.iter_mut().for_each(|v| *v = *v / nk + reg_covar);
            if var.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(not_pd);
            }
            let sd = var.iter().map(|v| v.sqrt()).collect();
            (var, sd)
        }
    };
    Ok(ComponentFit {
        weight_sum: nk,
        mean,
        covariance,
        cholesky,
    })
}

impl ValidGmmParams {
    pub fn params(&self) -> &GmmParams {
        &self.0
    }

    /// Fit the mixture to `x` ([n, d]) by EM from a k-means++ start.
    pub fn fit(&self, x: &[f32], n: usize, d: usize) -> Result<Gmm, GmmError> {
        let p = &self.0;
        let k = p.n_components;
        if x.len() != n * d || d == 0 {
            return Err(GmmError::Shape { len: x.len(), n, d });
        }
        if n < k {
            return Err(GmmError::TooFewSamples {
                n_components: k,
                n_samples: n,
            });
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(GmmError::NonFinite);
        }
        let x64: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let mut rng = SeededRng::derived(p.seed, "gmm-init");
        let means = kmeans_pp(x, n, d, k, &mut rng);
        // Every component starts on its k-means++ centre with the data's covariance (or
        // per-dimension variance) and equal weight.
        let global = m_step_component(&x64, &vec![1.0; n], 1, 0, p.covariance_type, p.reg_covar)?;
        let mut gmm = Gmm {
            dim: d,
            covariance_type: p.covariance_type,
            weights: vec![1.0 / k as f64; k],
            means,
            covariances: global.covariance.repeat(k),
            cholesky: global.cholesky.repeat(k),
            mean_log_likelihood: f64::NEG_INFINITY,
            iterations: 0,
            converged: false,
        };
        let block = gmm.block();
        let mut prev = f64::NEG_INFINITY;
        for it in 0..p.max_iter {
            // E step: responsibilities [n, k] (in place of the log-densities) and the
            // log-likelihood, summed in a fixed order so the fit is reproducible.
            let mut resp = gmm.weighted_log_densities(&x64);
            let lse: Vec<f64> = resp
                .par_chunks_mut(k)
                .map(|row| {
                    let lse = log_sum_exp(row);
                    row.iter_mut().for_each(|v| *v = (*v - lse).exp());
                    lse
                })
                .collect();
            let mean_ll = lse.iter().sum::<f64>() / n as f64;
            if !mean_ll.is_finite() {
                return Err(GmmError::Invalid(
                    "EM produced a non-finite log-likelihood".into(),
                ));
            }
            // M step, components in parallel.
            let fits = (0..k)
                .into_par_iter()
                .map(|j| m_step_component(&x64, &resp, k, j, p.covariance_type, p.reg_covar))
                .collect::<Result<Vec<_>, _>>()?;
            for (j, f) in fits.into_iter().enumerate() {
                gmm.weights[j] = f.weight_sum / n as f64;
                gmm.means[j * d..(j + 1) * d].copy_from_slice(&f.mean);
                gmm.covariances[j * block..(j + 1) * block].copy_from_slice(&f.covariance);
                gmm.cholesky[j * block..(j + 1) * block].copy_from_slice(&f.cholesky);
            }
            let wsum: f64 = gmm.weights.iter().sum();
            gmm.weights.iter_mut().for_each(|w| *w /= wsum);
            gmm.iterations = it + 1;
            gmm.mean_log_likelihood = mean_ll;
            if (mean_ll - prev).abs() < p.tol {
                gmm.converged = true;
                break;
            }
            prev = mean_ll;
        }
        gmm.mean_log_likelihood = gmm.log_prob(x).iter().sum::<f64>() / n as f64;
        Ok(gmm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `counts[c]` draws of means[c] + L_c e (L_c L_c^T = covs[c]), component after component.
    fn draw(means: &[&[f64]], covs: &[Vec<f64>], counts: &[usize], seed: u64) -> Vec<f32> {
        let d = means[0].len();
        let mut rng = SeededRng::new(seed);
        let mut x = Vec::new();
        for c in 0..means.len() {
            let l = cholesky_lower(&covs[c], d).unwrap();
            for _ in 0..counts[c] {
                let e = rng.normal_vec(d);
                for t in 0..d {
                    let noise: f64 = (0..=t).map(|s| l[t * d + s] * e[s] as f64).sum();
                    x.push((means[c][t] + noise) as f32);
                }
            }
        }
        x
    }

    /// 2 x 2 covariance from standard deviations and a correlation.
    fn cov2(sa: f64, sb: f64, rho: f64) -> Vec<f64> {
        vec![sa * sa, rho * sa * sb, rho * sa * sb, sb * sb]
    }

    /// Maximum-likelihood mean and covariance (divided by n) of rows of `x`.
    fn empirical(x: &[f32], d: usize) -> (Vec<f64>, Vec<f64>) {
        let n = (x.len() / d) as f64;
        let mut m = vec![0.0; d];
        for row in x.chunks(d) {
            (0..d).for_each(|t| m[t] += row[t] as f64 / n);
        }
        let mut c = vec![0.0; d * d];
        for row in x.chunks(d) {
            for a in 0..d {
                for b in 0..d {
                    c[a * d + b] += (row[a] as f64 - m[a]) * (row[b] as f64 - m[b]) / n;
                }
            }
        }
        (m, c)
    }

    fn fit(x: &[f32], d: usize, k: usize, covariance_type: CovarianceType, seed: u64) -> Gmm {
        GmmParams {
            n_components: k,
            covariance_type,
            seed,
            ..Default::default()
        }
        .check()
        .unwrap()
        .fit(x, x.len() / d, d)
        .unwrap()
    }

    /// The fitted component whose mean is closest to `m`, and the distance.
    fn closest(g: &Gmm, m: &[f64]) -> (usize, f64) {
        let d = g.dim;
        (0..g.n_components())
            .map(|j| {
                let dist: f64 = (0..d).map(|t| (g.means[j * d + t] - m[t]).powi(2)).sum();
                (j, dist.sqrt())
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .unwrap()
    }

    #[test]
    fn recovers_the_means_of_a_known_mixture_and_samples_from_it() {
        // Three well-separated 2-D components with different weights and spreads.
        let true_means = [[-5.0f32, 0.0], [4.0, 4.0], [3.0, -6.0]];
        let true_sd = [[0.5f32, 1.0], [1.0, 0.3], [0.7, 0.7]];
        let counts = [600usize, 300, 900];
        let mut rng = SeededRng::new(11);
        let mut x = Vec::new();
        for c in 0..3 {
            for _ in 0..counts[c] {
                let e = rng.normal_vec(2);
                x.push(true_means[c][0] + true_sd[c][0] * e[0]);
                x.push(true_means[c][1] + true_sd[c][1] * e[1]);
            }
        }
        let n = x.len() / 2;
        let gmm = fit(&x, 2, 3, CovarianceType::Diag, 3);
        assert!(gmm.converged);
        assert_eq!(gmm.covariances.len(), 3 * 2);
        for c in 0..3 {
            // The closest fitted component sits on the true mean, with the true weight.
            let (j, dist) = closest(&gmm, &[true_means[c][0] as f64, true_means[c][1] as f64]);
            assert!(dist < 0.12, "component {c}: fitted mean off by {dist}");
            assert!((gmm.weights[j] - counts[c] as f64 / n as f64).abs() < 0.01);
            assert!((gmm.covariances[j * 2].sqrt() - true_sd[c][0] as f64).abs() < 0.1);
        }
        // Samples reproduce the mixture's overall mean.
        let s = gmm.sample(20000, &mut SeededRng::new(5));
        let mean_x: f64 = s.chunks(2).map(|r| r[0] as f64).sum::<f64>() / 20000.0;
        let expected: f64 = (0..3)
            .map(|c| true_means[c][0] as f64 * counts[c] as f64)
            .sum::<f64>()
            / n as f64;
        assert!((mean_x - expected).abs() < 0.1, "{mean_x} vs {expected}");
        // Deterministic under the same seed.
        let again = fit(&x, 2, 3, CovarianceType::Diag, 3);
        assert_eq!(gmm.means, again.means);
    }

    #[test]
    fn full_covariance_recovers_means_and_correlated_covariances_of_a_known_mixture() {
        // Three well-separated 2-D components, one with correlation 0.9 and one with -0.6.
        let means: [&[f64]; 3] = [&[-5.0, 0.0], &[4.0, 4.0], &[3.0, -6.0]];
        let covs = [cov2(1.0, 0.5, 0.9), cov2(0.8, 1.2, -0.6), cov2(0.7, 0.7, 0.0)];
        let counts = [600usize, 300, 900];
        let x = draw(&means, &covs, &counts, 11);
        let n = x.len() / 2;
        let gmm = fit(&x, 2, 3, CovarianceType::Full, 3);
        assert!(gmm.converged);
        assert_eq!(gmm.covariances.len(), 3 * 2 * 2);
        let mut start = 0;
        for c in 0..3 {
            let (j, dist) = closest(&gmm, means[c]);
            assert!(dist < 0.12, "component {c}: fitted mean off by {dist}");
            assert!((gmm.weights[j] - counts[c] as f64 / n as f64).abs() < 0.01);
            let fitted = gmm.covariance(j);
            // The components barely overlap, so EM lands on each cluster's own sample mean and
            // covariance...
            let (m, emp) = empirical(&x[start * 2..(start + counts[c]) * 2], 2);
            start += counts[c];
            for t in 0..2 {
                assert!((gmm.means[j * 2 + t] - m[t]).abs() < 1e-3, "component {c}");
            }
            for (a, b) in fitted.iter().zip(&emp) {
                assert!(
                    (a - b).abs() < 2e-3,
                    "component {c}: {fitted:?} vs sample {emp:?}"
                );
            }
            // ...which are close to the true ones, correlation included.
            let (sa, sb) = (fitted[0].sqrt(), fitted[3].sqrt());
            let rho = fitted[1] / (sa * sb);
            let true_rho = covs[c][1] / (covs[c][0] * covs[c][3]).sqrt();
            assert!(
                (rho - true_rho).abs() < 0.06,
                "component {c}: correlation {rho} vs {true_rho}"
            );
            assert!(
                (sa / covs[c][0].sqrt() - 1.0).abs() < 0.1,
                "component {c}: sd {sa}"
            );
            assert!(
                (sb / covs[c][3].sqrt() - 1.0).abs() < 0.1,
                "component {c}: sd {sb}"
            );
            assert_eq!(fitted[1], fitted[2], "symmetric");
        }
        // Deterministic under the same seed.
        let again = fit(&x, 2, 3, CovarianceType::Full, 3);
        assert_eq!(gmm.means, again.means);
        assert_eq!(gmm.covariances, again.covariances);
    }

    #[test]
    fn one_component_log_prob_is_the_multivariate_normal_density() {
        // A correlated 3-D Gaussian.
        let cov = vec![2.0, 0.9, -0.5, 0.9, 1.0, 0.3, -0.5, 0.3, 0.8];
        let x = draw(&[&[1.0, -2.0, 0.5]], &[cov], &[500], 7);
        let gmm = fit(&x, 3, 1, CovarianceType::Full, 0);
        // One component: EM's answer is the sample mean and the sample covariance + reg_covar I.
        let (m, mut s) = empirical(&x, 3);
        (0..3).for_each(|t| s[t * 3 + t] += 1e-6);
        for t in 0..3 {
            assert!((gmm.means[t] - m[t]).abs() < 1e-9);
        }
        for (a, b) in gmm.covariances.iter().zip(&s) {
            assert!((a - b).abs() < 1e-9, "{:?} vs {s:?}", gmm.covariances);
        }
        assert!((gmm.weights[0] - 1.0).abs() < 1e-12);
        // Hand-computed log N(x | m, S): cofactor inverse and determinant of the 3 x 3 matrix.
        let c = &gmm.covariances;
        let a = |r: usize, k: usize| c[r * 3 + k];
        let cof = |r: usize, k: usize| {
            let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
            let (k1, k2) = ((k + 1) % 3, (k + 2) % 3);
            a(r1, k1) * a(r2, k2) - a(r1, k2) * a(r2, k1)
        };
        let det: f64 = (0..3).map(|k| a(0, k) * cof(0, k)).sum();
        let points: [[f32; 3]; 3] = [[1.0, -2.0, 0.5], [3.0, 0.0, -1.0], [-2.5, -4.0, 2.0]];
        let flat: Vec<f32> = points.iter().flatten().copied().collect();
        let lp = gmm.log_prob(&flat);
        for (p, got) in points.iter().zip(&lp) {
            let diff: Vec<f64> = (0..3).map(|t| p[t] as f64 - gmm.means[t]).collect();
            // (S^-1)_{rk} = cof(k, r) / det.
            let maha: f64 = (0..3)
                .flat_map(|r| (0..3).map(move |k| (r, k)))
                .map(|(r, k)| diff[r] * cof(k, r) / det * diff[k])
                .sum();
            let want = -0.5 * (3.0 * (2.0 * std::f64::consts::PI).ln() + det.ln() + maha);
            assert!((got - want).abs() < 1e-9, "log_prob {got} vs {want}");
        }
        // The training log-likelihood is the mean of log_prob over the data.
        let mean_lp = gmm.log_prob(&x).iter().sum::<f64>() / 500.0;
        assert!((gmm.mean_log_likelihood - mean_lp).abs() < 1e-12);
    }

    #[test]
    fn full_covariance_fits_correlated_data_better_than_diagonal() {
        let means: [&[f64]; 2] = [&[0.0, 0.0], &[6.0, -3.0]];
        let covs = [cov2(1.0, 1.0, 0.9), cov2(1.5, 0.5, -0.9)];
        let x = draw(&means, &covs, &[800, 700], 21);
        let full = fit(&x, 2, 2, CovarianceType::Full, 1);
        let diag = fit(&x, 2, 2, CovarianceType::Diag, 1);
        // Correlation 0.9 is worth -0.5 ln(1 - 0.81) = 0.83 nats per point to a full covariance.
        assert!(
            full.mean_log_likelihood > diag.mean_log_likelihood + 0.5,
            "full {} vs diag {}",
            full.mean_log_likelihood,
            diag.mean_log_likelihood
        );
    }

    #[test]
    fn samples_reproduce_the_fitted_covariance() {
        // One component: the samples' covariance is the fitted one, correlation 0.9 included.
        let x = draw(&[&[2.0, -1.0]], &[cov2(2.0, 0.5, 0.9)], &[1000], 3);
        let one = fit(&x, 2, 1, CovarianceType::Full, 0);
        let s = one.sample(40000, &mut SeededRng::new(8));
        let (m, c) = empirical(&s, 2);
        for t in 0..2 {
            assert!(
                (m[t] - one.means[t]).abs() < 0.03,
                "mean {m:?} vs {:?}",
                one.means
            );
        }
        for (a, b) in c.iter().zip(&one.covariances) {
            assert!(
                (a - b).abs() < 0.03 * b.abs().max(0.25),
                "covariance {c:?} vs {:?}",
                one.covariances
            );
        }
        // A mixture: the samples' covariance is sum_j w_j (S_j + m_j m_j^T) - m m^T.
        let means: [&[f64]; 2] = [&[0.0, 0.0], &[5.0, 2.0]];
        let x = draw(
            &means,
            &[cov2(1.0, 1.0, 0.9), cov2(0.5, 1.5, -0.7)],
            &[600, 400],
            4,
        );
        let g = fit(&x, 2, 2, CovarianceType::Full, 1);
        let mut mix_mean = [0.0; 2];
        let mut second = [0.0; 4];
        for j in 0..2 {
            let (w, mj, sj) = (g.weights[j], &g.means[j * 2..j * 2 + 2], g.covariance(j));
            for a in 0..2 {
                mix_mean[a] += w * mj[a];
                for b in 0..2 {
                    second[a * 2 + b] += w * (sj[a * 2 + b] + mj[a] * mj[b]);
                }
            }
        }
        let s = g.sample(40000, &mut SeededRng::new(9));
        let (m, c) = empirical(&s, 2);
        for a in 0..2 {
            assert!((m[a] - mix_mean[a]).abs() < 0.05, "mean {m:?} vs {mix_mean:?}");
            for b in 0..2 {
                let want = second[a * 2 + b] - mix_mean[a] * mix_mean[b];
                assert!((c[a * 2 + b] - want).abs() < 0.03 * want.abs().max(1.0), "{c:?}");
            }
        }
    }

    #[test]
    fn cholesky_factor_and_its_failures() {
        let a = vec![4.0, 2.0, 2.0, 3.0];
        let l = cholesky_lower(&a, 2).unwrap();
        assert_eq!(l[1], 0.0);
        for r in 0..2 {
            for c in 0..2 {
                let llt: f64 = (0..2).map(|s| l[r * 2 + s] * l[c * 2 + s]).sum();
                assert!((llt - a[r * 2 + c]).abs() < 1e-12);
            }
        }
        // Indefinite, singular or non-finite matrices have no factor.
        assert!(cholesky_lower(&[1.0, 2.0, 2.0, 1.0], 2).is_none());
        assert!(cholesky_lower(&[1.0, 1.0, 1.0, 1.0 - 1e-17], 2).is_none());
        assert!(cholesky_lower(&[f64::NAN, 0.0, 0.0, 1.0], 2).is_none());
        let msg = GmmError::NotPositiveDefinite {
            component: 3,
            reg_covar: 1e-6,
        }
        .to_string();
        assert!(
            msg.contains("component 3") && msg.contains("not positive definite"),
            "{msg}"
        );
    }

    #[test]
    fn degenerate_data_is_regularised_and_bad_data_rejected() {
        // Every point identical: reg_covar keeps the covariance positive definite.
        let g = fit(&[1.5f32; 20], 2, 2, CovarianceType::Full, 0);
        assert!(g.mean_log_likelihood.is_finite() && g.means.iter().all(|&m| (m - 1.5).abs() < 1e-9));
        let v = GmmParams::default().check().unwrap();
        let mut x = vec![0.5f32; 40];
        x[7] = f32::NAN;
        assert!(matches!(v.fit(&x, 20, 2), Err(GmmError::NonFinite)));
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(GmmParams {
            n_components: 0,
            ..Default::default()
        }
        .check()
        .is_err());
        assert!(GmmParams {
            reg_covar: 0.0,
            ..Default::default()
        }
        .check()
        .is_err());
        let v = GmmParams {
            n_components: 5,
            ..Default::default()
        }
        .check()
        .unwrap();
        assert!(matches!(
            v.fit(&[0.0; 8], 4, 2),
            Err(GmmError::TooFewSamples { .. })
        ));
        assert!(matches!(v.fit(&[0.0; 7], 4, 2), Err(GmmError::Shape { .. })));
    }

    /// One fit at the eval sampler's size (n = 10,000, d = 128, k = 10) on random data, timed.
    /// `cargo test --release --lib gmm_fit_time -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn gmm_fit_time() {
        let (n, d, k) = (10_000, 128, 10);
        let mut rng = SeededRng::new(1);
        // Ten random centres, each with its own random linear map of standard normal noise.
        let centres: Vec<f32> = rng.normal_vec(k * d).iter().map(|v| 3.0 * v).collect();
        let maps: Vec<Vec<f32>> = (0..k).map(|_| rng.normal_vec(d * d)).collect();
        let mut x = Vec::with_capacity(n * d);
        for i in 0..n {
            let c = i % k;
            let e = rng.normal_vec(d);
            for t in 0..d {
                let noise: f32 = (0..d).map(|s| maps[c][t * d + s] * e[s]).sum::<f32>() / (d as f32).sqrt();
                x.push(centres[c * d + t] + noise);
            }
        }
        // Process CPU time (user + system) from /proc, since the wall clock of a shared machine
        // says little on its own.
        let cpu = || {
            let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
            let after = stat
                .rsplit(')')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>();
            let tick = |i: usize| {
                after
                    .get(i)
                    .and_then(|v| v.parse::<f64>().ok())
                    .unwrap_or(f64::NAN)
            };
            (tick(11) + tick(12)) / 100.0
        };
        for ct in [CovarianceType::Full, CovarianceType::Diag] {
            let (t0, c0) = (std::time::Instant::now(), cpu());
            let g = fit(&x, d, k, ct, 0);
            let (secs, cpu_secs) = (t0.elapsed().as_secs_f64(), cpu() - c0);
            println!(
                "{} n={n} d={d} k={k}: {secs:.2} s wall, {cpu_secs:.2} s CPU, {} iterations ({:.3} s wall each), \
                 converged {}, mean ll {:.3}",
                ct.name(),
                g.iterations,
                secs / g.iterations as f64,
                g.converged,
                g.mean_log_likelihood
            );
        }
    }
}
