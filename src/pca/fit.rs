//! Fitting: the principal subspace of centred data by one of two routes.
//!
//! - Covariance: C = Xc^T Xc / (n-1) accumulated in f64 over row blocks, then a self-adjoint
//!   eigendecomposition. Exact; its cost grows with d^3, so it wins for small images or k near d.
//! - Randomized: subspace iteration on C from a Gaussian start (Halko, Martinsson & Tropp 2011,
//!   Alg. 4.4 applied to the covariance), orthonormalised by QR after every application of C, then
//!   Rayleigh-Ritz: the eigenvectors of Z^T C Z rotate the basis Z onto the principal axes. The big
//!   products stay in f32 and never form the centred matrix: Xc Z = X Z - 1 (mu^T Z).
use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;

use super::params::{PcaSolver, ValidPcaParams};
use super::{progress_bar, PcaError, PcaModel};
use crate::util::SeededRng;

/// Rows per block when accumulating Gram matrices in f64.
const GRAM_BLOCK: usize = 1024;

/// Fit a PCA with `params.n_components` components on `n` images of `d` pixels (row-major `x`).
pub fn fit_pca(x: &[f32], n: usize, d: usize, params: &ValidPcaParams) -> Result<PcaModel, PcaError> {
    let k = params.params().n_components;
    if n == 0 || d == 0 {
        return Err(PcaError::Empty { n, d });
    }
    if x.len() != n * d {
        return Err(PcaError::ShapeMismatch {
            what: "images".into(),
            expected: n * d,
            got: x.len(),
            per_row: d,
        });
    }
    if n < 2 {
        return Err(PcaError::TooFewSamples(n));
    }
    let max = n.min(d);
    if k > max {
        return Err(PcaError::TooManyComponents { k, n, d, max });
    }
    let (mean, total_variance) = mean_and_total_variance(x, n, d);
    let solver = match params.params().solver {
        PcaSolver::Auto => choose_solver(n, d, k, params),
        s => s,
    };
    let (components, mut explained_variance) = match solver {
        PcaSolver::Randomized => randomized(x, n, d, k, &mean, params)?,
        _ => covariance(x, n, d, k, &mean)?,
    };
    explained_variance.iter_mut().for_each(|v| *v = v.max(0.0));
    let mut model = PcaModel {
        mean: mean.iter().map(|&m| m as f32).collect(),
        components,
        explained_variance,
        noise_variance_tail: 0.0,
        total_variance,
        n_samples: n,
    };
    model.noise_variance_tail = model.noise_variance(k);
    Ok(model)
}

/// The solver `Auto` picks: the cheaper by a flop estimate (f64 work and the eigensolver counted
/// at the speed they run relative to f32 matrix products).
pub fn choose_solver(n: usize, d: usize, k: usize, params: &ValidPcaParams) -> PcaSolver {
    let (nf, df) = (n as f64, d as f64);
    let l = (k + params.oversample_for(k)).min(n.min(d)) as f64;
    let q = params.params().power_iters as f64;
    let covariance = 2.0 * nf * df * df * 2.0 + 10.0 * df.powi(3) * 3.0;
    let passes = 2.0 * (q + 1.0) + 1.0;
    let randomized = passes * 2.0 * nf * df * l
        + (q + 1.0) * 4.0 * df * l * l
        + 2.0 * nf * l * l * 2.0
        + 10.0 * l.powi(3) * 3.0;
    if randomized < covariance {
        PcaSolver::Randomized
    } else {
        PcaSolver::Covariance
    }
}

/// Per-pixel mean and the sum of per-pixel variances (1/(n-1)), both accumulated in f64.
fn mean_and_total_variance(x: &[f32], n: usize, d: usize) -> (Vec<f64>, f64) {
    let rows_per_task = (n / rayon::current_num_threads().max(1)).clamp(1, 4096);
    let sum = x
        .par_chunks(rows_per_task * d)
        .map(|block| {
            let mut s = vec![0f64; d];
            for row in block.chunks_exact(d) {
                s.iter_mut().zip(row).for_each(|(a, &v)| *a += v as f64);
            }
            s
        })
        .reduce(
            || vec![0f64; d],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
    let ss: f64 = x
        .par_chunks(rows_per_task * d)
        .map(|block| {
            block
                .chunks_exact(d)
                .map(|row| {
                    row.iter()
                        .zip(&mean)
                        .map(|(&v, m)| (v as f64 - m).powi(2))
                        .sum::<f64>()
                })
                .sum::<f64>()
        })
        .sum();
    (mean, ss / (n - 1) as f64)
}

/// C = Xc^T Xc / (n-1) in f64, accumulated over row blocks (one step of `bar` per block). When
/// one d x d accumulator per thread fits in half the data size (and 1 GB), threads take whole blocks (sequential GEMMs, no
/// synchronisation); otherwise the blocks run in turn with faer's parallel GEMM.
fn covariance_matrix(x: &[f32], n: usize, d: usize, mean: &[f64], bar: &indicatif::ProgressBar) -> Mat<f64> {
    let scale = 1.0 / (n - 1) as f64;
    let centred_block = |start: usize, rows: usize| {
        Mat::<f64>::from_fn(rows, d, |i, j| x[(start + i) * d + j] as f64 - mean[j])
    };
    let threads = rayon::current_num_threads().max(1);
    let starts: Vec<usize> = (0..n).step_by(GRAM_BLOCK).collect();
    if threads > 1 && threads * d * d * 8 <= (n * d * 4 / 2).min(1 << 30) {
        return starts
            .par_chunks(starts.len().div_ceil(threads))
            .map(|group| {
                let mut acc = Mat::<f64>::zeros(d, d);
                for &start in group {
                    let blk = centred_block(start, GRAM_BLOCK.min(n - start));
                    matmul(
                        acc.as_mut(),
                        Accum::Add,
                        blk.transpose(),
                        blk.as_ref(),
                        scale,
                        Par::Seq,
                    );
                    bar.inc(1);
                }
                acc
            })
            .reduce_with(|a, b| a + b)
            .unwrap_or_else(|| Mat::zeros(d, d));
    }
    let mut cov = Mat::<f64>::zeros(d, d);
    for start in starts {
        let blk = centred_block(start, GRAM_BLOCK.min(n - start));
        matmul(
            cov.as_mut(),
            Accum::Add,
            blk.transpose(),
            blk.as_ref(),
            scale,
            Par::rayon(0),
        );
        bar.inc(1);
    }
    cov
}

/// Every eigenvalue of the covariance (1/(n-1)), descending, computed exactly in f64 without
/// eigenvectors: the reference the benchmarks compare approximate fits against.
pub fn exact_eigenvalues(x: &[f32], n: usize, d: usize) -> Result<Vec<f64>, PcaError> {
    if n < 2 || x.len() != n * d {
        return Err(PcaError::TooFewSamples(n));
    }
    let (mean, _) = mean_and_total_variance(x, n, d);
    let bar = progress_bar(n.div_ceil(GRAM_BLOCK) as u64 + 1, "exact covariance");
    let cov = covariance_matrix(x, n, d, &mean, &bar);
    bar.set_message("eigenvalues");
    let mut s = cov
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| PcaError::Numerical(format!("covariance eigenvalues: {e:?}")))?;
    bar.finish_and_clear();
    s.reverse();
    Ok(s)
}

/// Exact route: f64 covariance, full eigendecomposition, top k eigenpairs.
fn covariance(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    mean: &[f64],
) -> Result<(Vec<f32>, Vec<f32>), PcaError> {
    let bar = progress_bar(n.div_ceil(GRAM_BLOCK) as u64 + 1, "covariance");
    let cov = covariance_matrix(x, n, d, mean, &bar);
    bar.set_message("eigendecomposition");
    let evd = cov
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| PcaError::Numerical(format!("covariance eigendecomposition: {e:?}")))?;
    bar.inc(1);
    bar.finish_and_clear();
    let s = evd.S().column_vector();
    let u = evd.U();
    let mut components = vec![0f32; k * d];
    let mut ev = Vec::with_capacity(k);
    for c in 0..k {
        let src = d - 1 - c; // eigenvalues come in nondecreasing order
        ev.push(s[src] as f32);
        for j in 0..d {
            components[c * d + j] = u[(j, src)] as f32;
        }
    }
    fix_signs(&mut components, d);
    Ok((components, ev))
}

/// Randomized route: subspace iteration on the covariance, then Rayleigh-Ritz.
fn randomized(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    mean64: &[f64],
    params: &ValidPcaParams,
) -> Result<(Vec<f32>, Vec<f32>), PcaError> {
    let l = (k + params.oversample_for(k)).min(n.min(d));
    let q = params.params().power_iters;
    let mean: Vec<f32> = mean64.iter().map(|&m| m as f32).collect();
    let bar = progress_bar(2 * (q as u64 + 1) + 2, "randomized PCA");
    let mut rng = SeededRng::derived(params.params().seed, "pca-randomized");
    let omega = rng.normal_vec(d * l);
    let mut z = MatRef::from_column_major_slice(&omega, d, l).to_owned();
    drop(omega);
    for _ in 0..=q {
        let y = apply_x(x, n, d, &mean, z.as_ref());
        bar.inc(1);
        z = apply_xt(x, n, d, &mean, &y, l);
        drop(y);
        z = z.qr().compute_thin_Q();
        bar.inc(1);
    }
    // Rayleigh-Ritz: G = (Xc Z)^T (Xc Z) / (n-1) = Z^T C Z, accumulated in f64.
    let w = apply_x(x, n, d, &mean, z.as_ref());
    bar.inc(1);
    let g = gram_f64(&w, n, l, 1.0 / (n - 1) as f64);
    drop(w);
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| PcaError::Numerical(format!("Rayleigh-Ritz eigendecomposition: {e:?}")))?;
    let s = evd.S().column_vector();
    let u = evd.U();
    let top = Mat::<f32>::from_fn(l, k, |i, c| u[(i, l - 1 - c)] as f32);
    let ev: Vec<f32> = (0..k).map(|c| s[l - 1 - c] as f32).collect();
    let mut components = vec![0f32; k * d];
    matmul(
        MatMut::from_column_major_slice_mut(&mut components, d, k),
        Accum::Replace,
        z.as_ref(),
        top.as_ref(),
        1.0f32,
        Par::rayon(0),
    );
    bar.inc(1);
    bar.finish_and_clear();
    fix_signs(&mut components, d);
    Ok((components, ev))
}

/// Rows per task for the data passes: whole cache-friendly GEMMs, a few tasks per thread.
/// Each task runs a sequential GEMM; splitting the data ourselves keeps both cores busy without
/// fine-grained synchronisation (faer's own parallel split of a long inner dimension scales poorly).
fn rows_per_task(n: usize) -> usize {
    n.div_ceil(4 * rayon::current_num_threads().max(1)).max(256)
}

/// Xc z = X z - 1 (mean^T z) for row-major X [n, d]: returned row-major [n, l].
fn apply_x(x: &[f32], n: usize, d: usize, mean: &[f32], z: MatRef<'_, f32>) -> Vec<f32> {
    let l = z.ncols();
    let shift: Vec<f32> = (0..l)
        .map(|j| (0..d).map(|i| mean[i] as f64 * z[(i, j)] as f64).sum::<f64>() as f32)
        .collect();
    let mut y = vec![0f32; n * l];
    let rows = rows_per_task(n);
    y.par_chunks_mut(rows * l)
        .zip(x.par_chunks(rows * d))
        .for_each(|(yc, xc)| {
            let r = xc.len() / d;
            matmul(
                MatMut::from_row_major_slice_mut(yc, r, l),
                Accum::Replace,
                MatRef::from_row_major_slice(xc, r, d),
                z,
                1.0f32,
                Par::Seq,
            );
            for row in yc.chunks_exact_mut(l) {
                row.iter_mut().zip(&shift).for_each(|(v, s)| *v -= s);
            }
        });
    y
}

/// Xc^T y = X^T y - mean (1^T y) for row-major X [n, d] and y [n, l]: a d x l matrix, summed
/// over row blocks computed in parallel.
fn apply_xt(x: &[f32], n: usize, d: usize, mean: &[f32], y: &[f32], l: usize) -> Mat<f32> {
    let blocks = rayon::current_num_threads().max(1);
    let rows = n.div_ceil(blocks);
    let (mut z, sums) = x
        .par_chunks(rows * d)
        .zip(y.par_chunks(rows * l))
        .map(|(xc, yc)| {
            let r = xc.len() / d;
            let mut z = Mat::<f32>::zeros(d, l);
            matmul(
                z.as_mut(),
                Accum::Replace,
                MatRef::from_column_major_slice(xc, d, r),
                MatRef::from_row_major_slice(yc, r, l),
                1.0f32,
                Par::Seq,
            );
            let mut sums = vec![0f64; l];
            for row in yc.chunks_exact(l) {
                sums.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
            }
            (z, sums)
        })
        .reduce_with(|(mut za, mut sa), (zb, sb)| {
            za += &zb;
            sa.iter_mut().zip(&sb).for_each(|(a, b)| *a += b);
            (za, sa)
        })
        .unwrap_or_else(|| (Mat::zeros(d, l), vec![0f64; l]));
    for (j, s) in sums.iter().enumerate() {
        let s = *s as f32;
        let mut col = z.col_mut(j);
        for i in 0..d {
            col[i] -= mean[i] * s;
        }
    }
    z
}

/// scale * W^T W for row-major W [n, l], accumulated in f64 over row blocks in parallel.
fn gram_f64(w: &[f32], n: usize, l: usize, scale: f64) -> Mat<f64> {
    let rows = GRAM_BLOCK.min(n);
    w.par_chunks(rows * l)
        .map(|wc| {
            let r = wc.len() / l;
            let b = Mat::<f64>::from_fn(r, l, |i, j| wc[i * l + j] as f64);
            let mut g = Mat::<f64>::zeros(l, l);
            matmul(
                g.as_mut(),
                Accum::Replace,
                b.transpose(),
                b.as_ref(),
                scale,
                Par::Seq,
            );
            g
        })
        .reduce_with(|a, b| a + b)
        .unwrap_or_else(|| Mat::zeros(l, l))
}

/// Make each component's largest-magnitude entry positive, so fits are reproducible across solvers.
fn fix_signs(components: &mut [f32], d: usize) {
    for row in components.chunks_exact_mut(d) {
        let big = row
            .iter()
            .copied()
            .fold(0f32, |a, v| if v.abs() > a.abs() { v } else { a });
        if big < 0.0 {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
}
