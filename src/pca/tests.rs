//! PCA checked against answers computed another way: a faer SVD of the centred matrix, and a
//! direct multivariate-normal density through a Cholesky factorisation.
use super::*;
use crate::util::SeededRng;
use faer::prelude::Solve;
use faer::{Mat, Side};

/// Low-rank structure with a decaying spectrum plus noise, offset so centring matters.
fn structured(n: usize, d: usize, rank: usize, seed: u64) -> Vec<f32> {
    let mut rng = SeededRng::new(seed);
    let a = rng.normal_vec(n * rank);
    let b = rng.normal_vec(rank * d);
    let noise = rng.normal_vec(n * d);
    let offset = rng.uniform_vec(d);
    let mut x = vec![0f32; n * d];
    for i in 0..n {
        for j in 0..d {
            let mut v = offset[j] + 0.05 * noise[i * d + j];
            for r in 0..rank {
                v += a[i * rank + r] * b[r * d + j] / (1.0 + r as f32).powf(1.2);
            }
            x[i * d + j] = v;
        }
    }
    x
}

/// Squared singular values (descending) and right singular vectors of the centred data, in f64.
fn exact_svd(x: &[f32], n: usize, d: usize) -> (Vec<f64>, Mat<f64>) {
    let mut mean = vec![0f64; d];
    for row in x.chunks(d) {
        mean.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m += v as f64 / n as f64);
    }
    let xc = Mat::<f64>::from_fn(n, d, |i, j| x[i * d + j] as f64 - mean[j]);
    let svd = xc.thin_svd().unwrap();
    let s = svd.S().column_vector();
    ((0..s.nrows()).map(|i| s[i] * s[i]).collect(), svd.V().to_owned())
}

fn fit(x: &[f32], n: usize, d: usize, k: usize, solver: PcaSolver) -> PcaModel {
    let p = PcaParams {
        n_components: k,
        solver,
        ..Default::default()
    }
    .check()
    .unwrap();
    fit_pca(x, n, d, &p).unwrap()
}

fn max_orthonormality_error(m: &PcaModel) -> f64 {
    let (k, d) = (m.k(), m.dim());
    let mut worst = 0f64;
    for a in 0..k {
        for b in 0..k {
            let dot: f64 = (0..d)
                .map(|j| m.components[a * d + j] as f64 * m.components[b * d + j] as f64)
                .sum();
            worst = worst.max((dot - if a == b { 1.0 } else { 0.0 }).abs());
        }
    }
    worst
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}

#[test]
fn covariance_solver_matches_svd_and_reconstruction_error_is_discarded_variance() {
    let (n, d, k) = (150, 40, 8);
    let x = structured(n, d, 12, 1);
    let (s2, v) = exact_svd(&x, n, d);
    let m = fit(&x, n, d, k, PcaSolver::Covariance);
    assert!(max_orthonormality_error(&m) < 1e-5);
    for i in 0..k {
        assert!(
            rel(m.explained_variance[i] as f64, s2[i] / (n - 1) as f64) < 1e-4,
            "eigenvalue {i}"
        );
        let dot: f64 = (0..d).map(|j| m.components[i * d + j] as f64 * v[(j, i)]).sum();
        assert!(
            (dot.abs() - 1.0).abs() < 1e-4,
            "axis {i} differs from the SVD's: |cos| = {dot}"
        );
    }
    let total: f64 = s2.iter().sum::<f64>() / (n - 1) as f64;
    assert!(rel(m.total_variance, total) < 1e-6);
    let discarded: f64 = s2[k..].iter().sum();
    let met = evaluate(&m, &x, n, k).unwrap();
    assert!(
        rel(met.mse, discarded / (n * d) as f64) < 1e-4,
        "mse {} vs {}",
        met.mse,
        discarded / (n * d) as f64
    );
    assert!(rel(m.noise_variance(k), discarded / (n - 1) as f64 / (d - k) as f64) < 1e-4);
    // Any prefix is the PCA with fewer components.
    let m3 = fit(&x, n, d, 3, PcaSolver::Covariance);
    let t = m.truncated(3);
    assert_eq!(t.k(), 3);
    let diff = t
        .components
        .iter()
        .zip(&m3.components)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(diff < 1e-4);
    assert!(rel(t.noise_variance_tail, m3.noise_variance_tail) < 1e-5);
}

/// Fits `solver` and checks it against the exact PCA (squared singular values `s2` of the
/// centred data): orthonormal axes, MSE within 0.5% of the optimum and never below it, and each
/// eigenvalue within 1%.
fn assert_near_exact(x: &[f32], n: usize, d: usize, k: usize, s2: &[f64], solver: PcaSolver) -> PcaModel {
    let exact_mse = s2[k..].iter().sum::<f64>() / (n * d) as f64;
    let m = fit(x, n, d, k, solver);
    assert!(max_orthonormality_error(&m) < 1e-5);
    let met = evaluate(&m, x, n, k).unwrap();
    assert!(
        met.mse >= exact_mse * (1.0 - 1e-5),
        "{solver:?} beat the optimum: {} < {exact_mse}",
        met.mse
    );
    assert!(
        rel(met.mse, exact_mse) < 0.005,
        "{solver:?} mse {} vs exact {exact_mse}",
        met.mse
    );
    for i in 0..k {
        assert!(
            rel(m.explained_variance[i] as f64, s2[i] / (n - 1) as f64) < 0.01,
            "{solver:?} eigenvalue {i}"
        );
    }
    m
}

#[test]
fn randomized_solver_agrees_with_exact_pca() {
    let (n, d, k) = (400, 120, 15);
    let x = structured(n, d, 40, 2);
    let (s2, _) = exact_svd(&x, n, d);
    let m = assert_near_exact(&x, n, d, k, &s2, PcaSolver::Randomized);
    // Reproducible from the seed.
    let again = fit(&x, n, d, k, PcaSolver::Randomized);
    assert_eq!(again.components, m.components);
}

#[test]
fn covariance_randomized_solver_agrees_with_exact_pca() {
    let (n, d, k) = (400, 120, 15);
    let x = structured(n, d, 40, 2);
    let (s2, v) = exact_svd(&x, n, d);
    let m = assert_near_exact(&x, n, d, k, &s2, PcaSolver::CovarianceRandomized);
    // The leading axes, well separated in this spectrum, are the SVD's.
    for i in 0..3 {
        let dot: f64 = (0..d).map(|j| m.components[i * d + j] as f64 * v[(j, i)]).sum();
        assert!((dot.abs() - 1.0).abs() < 1e-3, "axis {i}: |cos| = {dot}");
    }
    // Same subspace as iterating over the data (same start, same number of applications of C).
    let three = |solver| {
        let p = PcaParams {
            n_components: k,
            solver,
            power_iters: Some(3),
            ..Default::default()
        };
        let m = fit_pca(&x, n, d, &p.check().unwrap()).unwrap();
        evaluate(&m, &x, n, k).unwrap().mse
    };
    let (a, b) = (
        three(PcaSolver::CovarianceRandomized),
        three(PcaSolver::Randomized),
    );
    assert!(rel(a, b) < 1e-4, "{a} vs {b}");
    let again = fit(&x, n, d, k, PcaSolver::CovarianceRandomized);
    assert_eq!(again.components, m.components);
}

/// Many components of a steep spectrum (eigenvalues spanning ~5 decades): one product with C per
/// iteration squares the spread of the basis, so the normalisation between products must keep
/// the whole subspace in f32.
#[test]
fn covariance_randomized_keeps_a_wide_subspace_of_a_steep_spectrum() {
    let (n, d, k) = (700, 300, 100);
    let x = structured(n, d, 250, 3);
    let (s2, _) = exact_svd(&x, n, d);
    assert!(
        s2[0] / s2[k + k / 3] > 1e4,
        "spectrum not steep enough for this test"
    );
    let exact_mse = s2[k..].iter().sum::<f64>() / (n * d) as f64;
    let m = fit(&x, n, d, k, PcaSolver::CovarianceRandomized);
    let mse = evaluate(&m, &x, n, k).unwrap().mse;
    assert!(rel(mse, exact_mse) < 0.005, "mse {mse} vs exact {exact_mse}");
}

/// The covariance's lower triangle, in both precisions and through both accumulation paths
/// (per-thread accumulators when the matrix is small against the data, blocks with faer's parallel
/// product otherwise), matches the centred product computed directly in f64; its top eigenpairs
/// from the in-place tridiagonal route match the SVD's in both precisions.
#[test]
fn covariance_matrix_and_top_eigenpairs_match_svd_in_f32_and_f64() {
    use super::fit::{covariance_lower, top_eigenpairs};
    // (n, d): many blocks of 1024 rows with a small d (per-thread path when the pool has >1
    // thread), and a d large against n (sequential blocks).
    for (n, d, k) in [(2600, 24, 6), (1100, 90, 10)] {
        let x = structured(n, d, 30, 5);
        let mut mean = vec![0f64; d];
        for row in x.chunks(d) {
            mean.iter_mut()
                .zip(row)
                .for_each(|(m, &v)| *m += v as f64 / n as f64);
        }
        let direct = |i: usize, j: usize| {
            (0..n)
                .map(|r| (x[r * d + i] as f64 - mean[i]) * (x[r * d + j] as f64 - mean[j]))
                .sum::<f64>()
                / (n - 1) as f64
        };
        let bar = indicatif::ProgressBar::hidden();
        let c64 = covariance_lower::<f64>(&x, n, d, &mean, &bar);
        let c32 = covariance_lower::<f32>(&x, n, d, &mean, &bar);
        let scale = (0..d).map(|i| direct(i, i)).fold(0f64, f64::max);
        for j in 0..d {
            for i in j..d {
                let e = direct(i, j);
                assert!((c64[(i, j)] - e).abs() < 1e-12 * scale, "f64 C[{i},{j}]");
                assert!((c32[(i, j)] as f64 - e).abs() < 1e-5 * scale, "f32 C[{i},{j}]");
            }
        }
        let (s2, v) = exact_svd(&x, n, d);
        let (comp64, ev64) = top_eigenpairs(c64, k).unwrap();
        let (comp32, ev32) = top_eigenpairs(c32, k).unwrap();
        for (comp, ev, tol) in [(&comp64, &ev64, 1e-5), (&comp32, &ev32, 1e-3)] {
            for i in 0..k {
                let want = s2[i] / (n - 1) as f64;
                assert!(
                    rel(ev[i] as f64, want) < tol,
                    "eigenvalue {i}: {} vs {want}",
                    ev[i]
                );
                let dot: f64 = (0..d).map(|j| comp[i * d + j] as f64 * v[(j, i)]).sum();
                assert!((dot.abs() - 1.0).abs() < tol, "axis {i}: |cos| = {dot}");
            }
        }
    }
}

#[test]
fn transform_inverse_and_whitening() {
    let (n, d, k) = (200, 30, 6);
    let x = structured(n, d, 10, 3);
    let m = fit(&x, n, d, d, PcaSolver::Covariance);
    // With every component, reconstruction is the identity.
    let full = m.inverse_transform(&m.transform(&x, n, d, false), n, d, false);
    let err = full
        .iter()
        .zip(&x)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(err < 1e-4, "full-rank round trip error {err}");
    // Whitened coefficients have unit variance on the training data and invert the same way.
    let w = m.transform(&x, n, k, true);
    for c in 0..k {
        let var: f64 = (0..n).map(|i| (w[i * k + c] as f64).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!((var - 1.0).abs() < 1e-3, "whitened variance {var}");
    }
    let a = m.inverse_transform(&w, n, k, true);
    let b = m.inverse_transform(&m.transform(&x, n, k, false), n, k, false);
    let err = a.iter().zip(&b).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(err < 1e-4);
}

#[test]
fn save_load_round_trip_and_bad_files() {
    let (n, d, k) = (80, 20, 5);
    let x = structured(n, d, 6, 4);
    let m = fit(&x, n, d, k, PcaSolver::Covariance);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pca.safetensors");
    m.save(&path).unwrap();
    let back = PcaModel::load(&path).unwrap();
    assert_eq!(back, m);
    assert_eq!(back.transform(&x, n, k, true), m.transform(&x, n, k, true));
    std::fs::write(dir.path().join("junk.safetensors"), b"not a model").unwrap();
    let e = PcaModel::load(&dir.path().join("junk.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("junk.safetensors"), "{e}");
    assert!(PcaModel::load(&dir.path().join("missing.safetensors")).is_err());
    let e = m.check_image_size(96 * 96, "1x96x96").unwrap_err().to_string();
    assert!(e.contains("20 pixels") && e.contains("1x96x96"), "{e}");
    assert!(m.check_image_size(20, "1x4x5").is_ok());
}

#[test]
fn ppca_nll_equals_direct_gaussian_log_density() {
    let (n, d, k) = (60, 6, 2);
    let x = structured(n, d, 3, 5);
    let m = fit(&x, n, d, k, PcaSolver::Covariance);
    let sigma2 = m.noise_variance(k);
    // Full covariance C = U^T diag(lambda) U + sigma^2 (I - U^T U), built explicitly.
    let c = Mat::<f64>::from_fn(d, d, |a, b| {
        let mut v = if a == b { sigma2 } else { 0.0 };
        for i in 0..k {
            let (ua, ub) = (m.components[i * d + a] as f64, m.components[i * d + b] as f64);
            v += (m.explained_variance[i] as f64 - sigma2) * ua * ub;
        }
        v
    });
    let llt = c.llt(Side::Lower).unwrap();
    let l = llt.L();
    let log_det: f64 = (0..d).map(|i| 2.0 * l[(i, i)].ln()).sum();
    let test = structured(7, d, 3, 6);
    let nll = m.ppca_nll(&test, 7, k).unwrap();
    for i in 0..7 {
        let r = Mat::<f64>::from_fn(d, 1, |j, _| test[i * d + j] as f64 - m.mean[j] as f64);
        let sol = llt.solve(&r);
        let quad: f64 = (0..d).map(|j| r[(j, 0)] * sol[(j, 0)]).sum();
        let direct = 0.5 * (d as f64 * (2.0 * std::f64::consts::PI).ln() + log_det + quad);
        assert!(
            (nll[i] - direct).abs() < 1e-3 * direct.abs().max(1.0),
            "image {i}: {} vs {direct}",
            nll[i]
        );
    }
    let met = evaluate(&m, &test, 7, k).unwrap();
    let mean_nll = nll.iter().sum::<f64>() / 7.0;
    assert!(rel(met.ppca_nll.unwrap(), mean_nll) < 1e-9);
    assert!(
        rel(
            met.ppca_bits_per_dim.unwrap(),
            crate::util::units::bits_per_dim(mean_nll, d)
        ) < 1e-12
    );
}

#[test]
fn errors_for_bad_shapes_and_counts() {
    let x = structured(10, 8, 3, 7);
    let p = |k| {
        PcaParams {
            n_components: k,
            ..Default::default()
        }
        .check()
        .unwrap()
    };
    let e = fit_pca(&x, 10, 8, &p(9)).unwrap_err();
    assert!(
        matches!(e, PcaError::TooManyComponents { k: 9, max: 8, .. }),
        "{e}"
    );
    let e = fit_pca(&x[..5 * 8], 5, 8, &p(6)).unwrap_err();
    assert!(matches!(e, PcaError::TooManyComponents { max: 5, .. }), "{e}");
    assert!(matches!(
        fit_pca(&[], 0, 8, &p(2)).unwrap_err(),
        PcaError::Empty { .. }
    ));
    assert!(matches!(
        fit_pca(&x[..8], 1, 8, &p(1)).unwrap_err(),
        PcaError::TooFewSamples(1)
    ));
    assert!(matches!(
        fit_pca(&x, 10, 7, &p(2)).unwrap_err(),
        PcaError::ShapeMismatch { .. }
    ));
    assert!(PcaParams {
        n_components: 0,
        ..Default::default()
    }
    .check()
    .is_err());
    let m = fit_pca(&x, 10, 8, &p(8)).unwrap();
    assert!(matches!(
        m.try_transform(&x[..7], 1, 2, false).unwrap_err(),
        PcaError::ShapeMismatch { .. }
    ));
    assert!(matches!(
        m.try_transform(&x, 10, 9, false).unwrap_err(),
        PcaError::TooManyComponentsForModel { .. }
    ));
    assert!(matches!(
        evaluate(&m, &[], 0, 2).unwrap_err(),
        PcaError::Empty { .. }
    ));
    // All components kept: no noise left, PPCA is undefined and says so.
    assert!(matches!(
        m.ppca_nll(&x, 10, 8).unwrap_err(),
        PcaError::DegenerateNoise { k: 8 }
    ));
    assert_eq!(evaluate(&m, &x, 10, 8).unwrap().ppca_nll, None);
}

#[test]
fn auto_solver_follows_shape() {
    let p = |k| {
        PcaParams {
            n_components: k,
            ..Default::default()
        }
        .check()
        .unwrap()
    };
    assert_eq!(choose_solver(1000, 64, 60, &p(60)), PcaSolver::Covariance);
    // Fashion-MNIST: forming the small covariance once is cheapest.
    assert_eq!(
        choose_solver(60000, 784, 200, &p(200)),
        PcaSolver::CovarianceRandomized
    );
    // 64x64 NORB: the exact eigendecomposition of a 4096 x 4096 covariance is affordable.
    assert_eq!(choose_solver(24300, 4096, 2000, &p(2000)), PcaSolver::Covariance);
    // 96x96 NORB: iterate over the data for few components, on the covariance for many; the
    // exact route fits in memory only in f32 and its 9216^3 eigendecomposition costs more.
    assert_eq!(choose_solver(24300, 9216, 100, &p(100)), PcaSolver::Randomized);
    for k in [500, 1000, 2000] {
        assert_eq!(
            choose_solver(24300, 9216, k, &p(k)),
            PcaSolver::CovarianceRandomized,
            "k = {k}"
        );
    }
    let costs = solver_costs(24300, 9216, 2000, &p(2000));
    assert!(costs[0].1.unwrap() > costs[1].1.unwrap());
    // 192x192 NORB: no d x d matrix fits, only the data passes do.
    assert_eq!(choose_solver(24300, 36864, 500, &p(500)), PcaSolver::Randomized);
}
