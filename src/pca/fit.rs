//! Fitting: the principal subspace of centred data by one of three routes.
//!
//! - Covariance: C = Xc^T Xc / (n-1) accumulated over row blocks (lower half only), in f64, or in
//!   f32 from blocks centred in f64 when the f64 working set would exceed the memory budget; then
//!   faer's tridiagonalisation in place and divide-and-conquer, transforming back only the k kept
//!   eigenvectors. Exact; its cost grows with d^3, so it wins for small images or k near d.
//! - Randomized: subspace iteration on C from a Gaussian start (Halko, Martinsson & Tropp 2011,
//!   Alg. 4.4 applied to the covariance), orthonormalised by QR after every application of C, then
//!   Rayleigh-Ritz: the eigenvectors of Z^T C Z rotate the basis Z onto the principal axes. C is
//!   applied as two passes over the data; the big products stay in f32 and never form the centred
//!   matrix: Xc Z = X Z - 1 (mu^T Z).
//! - Covariance-randomized: the same iteration, with the f32 covariance formed once and applied
//!   directly (2 d^2 l flops per application instead of 4 n d l): large images, many components.
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatMut, MatRef, Par, Side};
use rayon::prelude::*;

use super::params::{PcaSolver, ValidPcaParams};
use super::{PcaError, PcaModel};
use crate::util::progress;
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
        PcaSolver::CovarianceRandomized => covariance_randomized(x, n, d, k, &mean, params)?,
        PcaSolver::Covariance | PcaSolver::Auto => covariance(x, n, d, k, &mean)?,
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

/// Relative cost weights of the solvers' steps, in f32 matrix-product flops, measured on the
/// 2-core AVX2 benchmark machine (bench/PCA_RESULTS.md): an f64 product runs at ~0.6x the f32
/// rate; faer's tridiagonalisation and divide-and-conquer at d = 9216 (memory-bound) take about
/// as long as `EIG_F32 * d^3` f32 flops would (f64: `EIG_F64`), plus 2 d^2 k for transforming the
/// k kept eigenvectors back; the data passes of the randomized solver (tall skinny products
/// split by rows) run at ~1/`X_PASS` of the rate of the d x d products.
const F64_WEIGHT: f64 = 1.6;
const EIG_F32: f64 = 7.3;
const EIG_F64: f64 = 9.0;
const X_PASS: f64 = 1.5;

/// The solver `Auto` picks: the cheapest by a cost estimate among the solvers whose working
/// memory fits (the exact route's 4 d^2 values, or the f32 covariance for subspace iteration on
/// it, within `EXTRA_MEMORY` x the data or 256 MB; iterating over the data always fits).
pub fn choose_solver(n: usize, d: usize, k: usize, params: &ValidPcaParams) -> PcaSolver {
    solver_costs(n, d, k, params)
        .into_iter()
        .filter_map(|(s, c)| c.map(|c| (s, c)))
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(s, _)| s)
        .unwrap_or(PcaSolver::Randomized)
}

/// Estimated cost (f32 flops, see the weights above) of each solver, `None` where its working
/// memory does not fit. Exact first, so it wins ties.
pub fn solver_costs(n: usize, d: usize, k: usize, params: &ValidPcaParams) -> Vec<(PcaSolver, Option<f64>)> {
    let (nf, df) = (n as f64, d as f64);
    let l = (k + params.oversample_for(k)).min(n.min(d)) as f64;
    let q = params.power_iters_for(PcaSolver::Randomized) as f64;
    let qc = params.power_iters_for(PcaSolver::CovarianceRandomized) as f64;
    let gram = nf * df * df; // lower half of Xc^T Xc
    let budget = memory_budget(n, d);
    let covariance = if exact_fits(n, d, 8) {
        Some((gram + 2.0 * df * df * k as f64) * F64_WEIGHT + EIG_F64 * df.powi(3))
    } else if exact_fits(n, d, 4) {
        Some(gram + 2.0 * df * df * k as f64 + EIG_F32 * df.powi(3))
    } else {
        None
    };
    let small_eig = EIG_F64 * l.powi(3) + 2.0 * df * l * k as f64;
    let cov_randomized = (df * df * 4.0 + 4.0 * df * l * 4.0 <= budget).then_some({
        gram + (qc + 2.0) * 2.0 * df * df * l + (qc + 1.0) * 4.0 * df * l * l + 2.0 * df * l * l + small_eig
    });
    let passes = 2.0 * (q + 1.0) + 1.0;
    let randomized = passes * 2.0 * nf * df * l * X_PASS
        + (q + 1.0) * 4.0 * df * l * l
        + nf * l * l * F64_WEIGHT
        + small_eig;
    vec![
        (PcaSolver::Covariance, covariance),
        (PcaSolver::CovarianceRandomized, cov_randomized),
        (PcaSolver::Randomized, Some(randomized)),
    ]
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

/// Scalar type a covariance matrix is accumulated and decomposed in.
pub(crate) trait Real: faer::traits::RealField + Copy {
    fn of(v: f64) -> Self;
    fn to_f64(self) -> f64;
}

impl Real for f32 {
    fn of(v: f64) -> Self {
        v as f32
    }
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Real for f64 {
    fn of(v: f64) -> Self {
        v
    }
    fn to_f64(self) -> f64 {
        self
    }
}

/// Lower triangle of C = Xc^T Xc / (n-1) in `T`, accumulated over row blocks (one step of `bar`
/// per block). Each block is centred in f64 before rounding to `T`, so f32 loses nothing to the
/// cancellation of uncentred sums; only the lower half of each block product is computed. When
/// one d x d accumulator per thread fits in half the data size (and 1 GB), threads take whole
/// blocks (sequential GEMMs, no synchronisation); otherwise the blocks run in turn with faer's
/// parallel GEMM.
pub(crate) fn covariance_lower<T: Real>(
    x: &[f32],
    n: usize,
    d: usize,
    mean: &[f64],
    bar: &indicatif::ProgressBar,
) -> Mat<T> {
    let scale = T::of(1.0 / (n - 1) as f64);
    let centred_block = |start: usize, rows: usize| -> Vec<T> {
        let mut b = Vec::with_capacity(rows * d);
        b.extend(
            x[start * d..(start + rows) * d]
                .chunks_exact(d)
                .flat_map(|row| row.iter().zip(mean).map(|(&v, &m)| T::of(v as f64 - m))),
        );
        b
    };
    let add_block = |acc: MatMut<'_, T>, blk: &[T], rows: usize, par: Par| {
        let b = MatRef::from_row_major_slice(blk, rows, d);
        triangular::matmul(
            acc,
            BlockStructure::TriangularLower,
            Accum::Add,
            b.transpose(),
            BlockStructure::Rectangular,
            b,
            BlockStructure::Rectangular,
            scale,
            par,
        );
    };
    let threads = rayon::current_num_threads().max(1);
    let starts: Vec<usize> = (0..n).step_by(GRAM_BLOCK).collect();
    if threads > 1 && threads * d * d * std::mem::size_of::<T>() <= (n * d * 4 / 2).min(1 << 30) {
        return starts
            .par_chunks(starts.len().div_ceil(threads))
            .map(|group| {
                let mut acc = Mat::<T>::zeros(d, d);
                for &start in group {
                    let rows = GRAM_BLOCK.min(n - start);
                    add_block(acc.as_mut(), &centred_block(start, rows), rows, Par::Seq);
                    bar.inc(1);
                }
                acc
            })
            .reduce_with(|a, b| a + b)
            .unwrap_or_else(|| Mat::zeros(d, d));
    }
    let mut cov = Mat::<T>::zeros(d, d);
    for start in starts {
        let rows = GRAM_BLOCK.min(n - start);
        add_block(cov.as_mut(), &centred_block(start, rows), rows, Par::rayon(0));
        bar.inc(1);
    }
    cov
}

/// Copy the lower triangle of a square matrix onto its upper triangle (tile by tile).
fn mirror_lower<T: Real>(c: &mut Mat<T>) {
    const TILE: usize = 64;
    let d = c.nrows();
    for jb in (0..d).step_by(TILE) {
        for ib in (jb..d).step_by(TILE) {
            for j in jb..(jb + TILE).min(d) {
                for i in ib.max(j + 1)..(ib + TILE).min(d) {
                    c[(j, i)] = c[(i, j)];
                }
            }
        }
    }
}

/// Every eigenvalue of the covariance (1/(n-1)), descending, computed exactly in f64 without
/// eigenvectors: the reference the benchmarks compare approximate fits against.
pub fn exact_eigenvalues(x: &[f32], n: usize, d: usize) -> Result<Vec<f64>, PcaError> {
    if n < 2 || x.len() != n * d {
        return Err(PcaError::TooFewSamples(n));
    }
    let (mean, _) = mean_and_total_variance(x, n, d);
    let bar = progress::bar(n.div_ceil(GRAM_BLOCK) as u64 + 1, "exact covariance", "steps");
    let cov = covariance_lower::<f64>(x, n, d, &mean, &bar);
    bar.set_prefix("eigenvalues");
    let mut s = cov
        .self_adjoint_eigenvalues(Side::Lower)
        .map_err(|e| PcaError::Numerical(format!("covariance eigenvalues: {e:?}")))?;
    bar.finish_and_clear();
    s.reverse();
    Ok(s)
}

/// Memory the solvers may use beyond the data matrix, as a multiple of the f32 data (so that the
/// peak stays below 3x the data with room for the allocator and small buffers); small problems
/// may always use 256 MB.
const EXTRA_MEMORY: f64 = 1.75;

fn memory_budget(n: usize, d: usize) -> f64 {
    (EXTRA_MEMORY * (n * d * 4) as f64).max(256e6)
}

/// Whether the exact route's working set fits [`memory_budget`] with `bytes_per_value`: the
/// covariance, the tridiagonal eigensolver's eigenvector matrix and its two d x d work matrices.
fn exact_fits(n: usize, d: usize, bytes_per_value: usize) -> bool {
    4.0 * (d * d * bytes_per_value) as f64 <= memory_budget(n, d)
}

/// Exact route: the covariance and its top-k eigenpairs, in f64 when its working set fits the
/// memory budget of [`exact_fits`] and in f32 (centred in f64) otherwise.
fn covariance(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    mean: &[f64],
) -> Result<(Vec<f32>, Vec<f32>), PcaError> {
    let bar = progress::bar(n.div_ceil(GRAM_BLOCK) as u64 + 1, "covariance", "steps");
    let (mut components, ev) = if exact_fits(n, d, 8) {
        let cov = covariance_lower::<f64>(x, n, d, mean, &bar);
        bar.set_prefix(format!("eigendecomposition {d}x{d}"));
        top_eigenpairs(cov, k)?
    } else {
        let cov = covariance_lower::<f32>(x, n, d, mean, &bar);
        bar.set_prefix(format!("eigendecomposition {d}x{d}"));
        top_eigenpairs(cov, k)?
    };
    bar.inc(1);
    bar.finish_and_clear();
    fix_signs(&mut components, d);
    Ok((components, ev))
}

/// Top-k eigenpairs (descending; components row-major k x d) of a symmetric matrix given by its
/// lower triangle, which is overwritten. faer's steps are called one by one so that the matrix is
/// tridiagonalised in place and only the k wanted eigenvectors are transformed back: peak memory
/// is 4 d^2 values (matrix, tridiagonal eigenvectors, divide-and-conquer workspace) instead of 5,
/// and the back-transformation costs 2 d^2 k instead of 2 d^3.
pub(crate) fn top_eigenpairs<T: Real>(mut c: Mat<T>, k: usize) -> Result<(Vec<f32>, Vec<f32>), PcaError> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::evd::{self, tridiag};
    let d = c.nrows();
    let par = Par::rayon(0);
    let bs = faer::linalg::qr::no_pivoting::factor::recommended_block_size::<T>(d, d);
    let mut householder = Mat::<T>::zeros(bs, d.saturating_sub(1));
    {
        let mut mem = MemBuffer::new(tridiag::tridiag_in_place_scratch::<T>(d, par, Default::default()));
        tridiag::tridiag_in_place(
            c.as_mut(),
            householder.as_mut(),
            par,
            MemStack::new(&mut mem),
            Default::default(),
        );
    }
    let diag = faer::Col::<T>::from_fn(d, |i| c[(i, i)]);
    let subdiag = faer::Col::<T>::from_fn(d, |i| if i + 1 < d { c[(i + 1, i)] } else { T::of(0.0) });
    let mut s = faer::diag::Diag::<T>::zeros(d);
    let mut u = Mat::<T>::zeros(d, d);
    {
        let mut mem = MemBuffer::new(evd::self_adjoint_evd_scratch::<T>(
            d,
            evd::ComputeEigenvectors::Yes,
            par,
            Default::default(),
        ));
        evd::tridiagonal_self_adjoint_evd(
            diag.as_diagonal(),
            subdiag.as_diagonal(),
            s.as_mut(),
            Some(u.as_mut()),
            par,
            MemStack::new(&mut mem),
            Default::default(),
        )
        .map_err(|e| PcaError::Numerical(format!("tridiagonal eigendecomposition: {e:?}")))?;
    }
    // Eigenvalues come in nondecreasing order: keep the last k, largest first.
    let mut top = Mat::<T>::from_fn(d, k, |i, j| u[(i, d - 1 - j)]);
    drop(u);
    if d > 1 {
        let mut mem = MemBuffer::new(
            faer::linalg::householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<T>(
                d - 1,
                bs,
                k,
            ),
        );
        faer::linalg::householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
            c.as_ref().submatrix(1, 0, d - 1, d - 1),
            householder.as_ref(),
            faer::Conj::No,
            top.as_mut().subrows_mut(1, d - 1),
            par,
            MemStack::new(&mut mem),
        );
    }
    let s = s.column_vector();
    let ev = (0..k).map(|j| s[d - 1 - j].to_f64() as f32).collect();
    let mut components = vec![0f32; k * d];
    for (j, row) in components.chunks_exact_mut(d).enumerate() {
        row.iter_mut()
            .enumerate()
            .for_each(|(i, v)| *v = top[(i, j)].to_f64() as f32);
    }
    Ok((components, ev))
}

/// Covariance route with an approximate eigensolver: C in f32 (centred in f64) formed once, then
/// randomized subspace iteration on C itself and Rayleigh-Ritz. Each product C Z costs 2 d^2 l
/// flops, against 4 n d l for the equivalent pair of passes over the data, so for n > d/2 and
/// wide bases this beats iterating over X, and is much cheaper than a full eigendecomposition.
fn covariance_randomized(
    x: &[f32],
    n: usize,
    d: usize,
    k: usize,
    mean: &[f64],
    params: &ValidPcaParams,
) -> Result<(Vec<f32>, Vec<f32>), PcaError> {
    let l = (k + params.oversample_for(k)).min(n.min(d));
    let q = params.power_iters_for(PcaSolver::CovarianceRandomized);
    let bar = progress::bar(
        n.div_ceil(GRAM_BLOCK) as u64 + q as u64 + 3,
        "covariance + subspace iteration",
        "steps",
    );
    let mut c = covariance_lower::<f32>(x, n, d, mean, &bar);
    mirror_lower(&mut c);
    let mut z = gaussian_start(params, d, l);
    let mut y = Mat::<f32>::zeros(d, l);
    for _ in 0..=q {
        matmul(
            y.as_mut(),
            Accum::Replace,
            c.as_ref(),
            z.as_ref(),
            1.0f32,
            Par::rayon(0),
        );
        // Householder QR every time: one product with C squares the spread of the basis (a
        // condition number of lambda_1 / lambda_l), and the cheaper LU basis scikit-learn uses
        // between half-steps lost most of the subspace in f32 at k = 500 on 96x96 NORB.
        z = y.qr().compute_thin_Q();
        bar.inc(1);
    }
    // Rayleigh-Ritz: G = Z^T C Z, symmetrised in f64.
    matmul(
        y.as_mut(),
        Accum::Replace,
        c.as_ref(),
        z.as_ref(),
        1.0f32,
        Par::rayon(0),
    );
    drop(c);
    let mut g32 = Mat::<f32>::zeros(l, l);
    matmul(
        g32.as_mut(),
        Accum::Replace,
        z.transpose(),
        y.as_ref(),
        1.0f32,
        Par::rayon(0),
    );
    drop(y);
    let g = Mat::<f64>::from_fn(l, l, |i, j| 0.5 * (g32[(i, j)] as f64 + g32[(j, i)] as f64));
    bar.inc(1);
    let result = ritz_components(&g, z.as_ref(), k);
    bar.inc(1);
    bar.finish_and_clear();
    result
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
    let q = params.power_iters_for(PcaSolver::Randomized);
    let mean: Vec<f32> = mean64.iter().map(|&m| m as f32).collect();
    let bar = progress::bar(2 * (q as u64 + 1) + 2, "randomized PCA", "steps");
    let mut z = gaussian_start(params, d, l);
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
    let result = ritz_components(&g, z.as_ref(), k);
    bar.inc(1);
    bar.finish_and_clear();
    result
}

/// The seeded Gaussian start basis [d, l] of subspace iteration (the same draw on both routes).
fn gaussian_start(params: &ValidPcaParams, d: usize, l: usize) -> Mat<f32> {
    let mut rng = SeededRng::derived(params.params().seed, "pca-randomized");
    let omega = rng.normal_vec(d * l);
    MatRef::from_column_major_slice(&omega, d, l).to_owned()
}

/// Rayleigh-Ritz: the top `k` eigenpairs of `g` = Z^T C Z [l, l], lifted back through the
/// orthonormal basis `z` [d, l]. Returns the components row-major [k, d] with fixed signs, and
/// their variances, largest first.
fn ritz_components(g: &Mat<f64>, z: MatRef<f32>, k: usize) -> Result<(Vec<f32>, Vec<f32>), PcaError> {
    let (d, l) = (z.nrows(), z.ncols());
    let evd = g
        .self_adjoint_eigen(Side::Lower)
        .map_err(|e| PcaError::Numerical(format!("Rayleigh-Ritz eigendecomposition: {e:?}")))?;
    // faer orders eigenvalues ascending: take them from the end.
    let s = evd.S().column_vector();
    let u = evd.U();
    let top = Mat::<f32>::from_fn(l, k, |i, j| u[(i, l - 1 - j)] as f32);
    let ev: Vec<f32> = (0..k).map(|j| s[l - 1 - j] as f32).collect();
    let mut components = vec![0f32; k * d];
    matmul(
        MatMut::from_column_major_slice_mut(&mut components, d, k),
        Accum::Replace,
        z,
        top.as_ref(),
        1.0f32,
        Par::rayon(0),
    );
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
