//! Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
//! for Assessing Generative Models"), and nearest neighbours, over rows of f32 vectors.
//!
//! Each set's manifold is the union of balls around its points, each ball reaching to the point's
//! k-th nearest other point of the same set. Precision is the fraction of samples inside the real
//! manifold (are samples like some real image?); recall is the fraction of real points inside the
//! samples' manifold (do the samples cover the real images' variety?). Distances are Euclidean in
//! whatever space the rows are given in: the sample-quality classifier's features, or raw pixels.
use anyhow::{ensure, Result};
use rayon::prelude::*;
use std::borrow::Cow;

/// The neighbour count of the paper (its default, k = 3).
pub const K: usize = 3;

/// Query rows per block of distances: a block is `BLOCK x points` f32 values.
const BLOCK: usize = 256;

/// `n` row-major points of `dim` values each.
#[derive(Debug, Clone, Copy)]
pub struct Points<'a> {
    pub data: &'a [f32],
    pub n: usize,
    pub dim: usize,
}

impl<'a> Points<'a> {
    /// `data` as `n` rows of `dim`; `what` names the set in the error.
    pub fn new(data: &'a [f32], n: usize, dim: usize, what: &str) -> Result<Self> {
        ensure!(dim > 0, "{what}: points need at least one dimension");
        ensure!(
            data.len() == n * dim,
            "{what}: {} values is not {n} points of {dim} dimensions",
            data.len()
        );
        Ok(Self { data, n, dim })
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

/// Improved precision and recall of a sample set against a real set.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PrecisionRecall {
    /// Fraction of samples within the k-NN radius of at least one real point.
    pub precision: f64,
    /// Fraction of real points within the k-NN radius of at least one sample.
    pub recall: f64,
}

/// Precision and recall of `samples` against `real` with `k`-nearest-neighbour balls. Both sets
/// need the same dimension and more than `k` points (a radius is the distance to the k-th nearest
/// *other* point of the set).
pub fn precision_recall(real: Points, samples: Points, k: usize) -> Result<PrecisionRecall> {
    RealManifold::new(real, k)?.score(samples)
}

/// The real set's side of precision and recall, computed once for scoring several sample sets:
/// its points (shifted by their mean) and their k-NN radii.
pub struct RealManifold {
    mean: Vec<f32>,
    set: DistanceTo<'static>,
    /// Squared distance of each real point to its k-th nearest other real point.
    radii: Vec<f32>,
    k: usize,
}

impl RealManifold {
    pub fn new(real: Points, k: usize) -> Result<Self> {
        ensure!(k >= 1, "precision/recall: k must be at least 1");
        ensure!(
            real.n > k,
            "precision/recall with k = {k} needs more than {k} real points, got {}",
            real.n
        );
        // Every set is shifted by the real mean: distances do not change, and the norms in
        // |a|^2 + |b|^2 - 2 a.b become small, so f32 loses little to cancellation.
        let mean: Vec<f32> = super::column_means(real.data, real.dim)
            .into_iter()
            .map(|m| m as f32)
            .collect();
        let set = DistanceTo::new(shifted(real, &mean), real.n, real.dim);
        let radii = set.kth_neighbour_within(k);
        Ok(Self { mean, set, radii, k })
    }

    /// Real points.
    pub fn len(&self) -> usize {
        self.set.n
    }

    pub fn is_empty(&self) -> bool {
        self.set.n == 0
    }

    /// Precision and recall of `samples` (more than k of them, the real points' dimension).
    pub fn score(&self, samples: Points) -> Result<PrecisionRecall> {
        let k = self.k;
        ensure!(
            samples.dim == self.set.dim,
            "precision/recall: real points have {} dimensions but samples have {}",
            self.set.dim,
            samples.dim
        );
        ensure!(
            samples.n > k,
            "precision/recall with k = {k} needs more than {k} samples, got {}",
            samples.n
        );
        let samples = DistanceTo::new(shifted(samples, &self.mean), samples.n, samples.dim);
        let sample_radii = samples.kth_neighbour_within(k);
        // One pass over the sample-to-real distances serves both: a row says whether its sample
        // is in some real ball (precision), and which real points are in its sample's ball
        // (recall).
        let n_real = self.set.n;
        let mut precise = 0usize;
        let mut covered = vec![false; n_real];
        self.set.blocks(&samples.data, samples.n, |first, block| {
            let (p, cov) = block
                .par_chunks(n_real)
                .enumerate()
                .fold(
                    || (0usize, vec![false; n_real]),
                    |(mut p, mut cov), (r, row)| {
                        if row.iter().zip(&self.radii).any(|(d, radius)| d <= radius) {
                            p += 1;
                        }
                        let radius = sample_radii[first + r];
                        for (c, d) in cov.iter_mut().zip(row) {
                            *c |= *d <= radius;
                        }
                        (p, cov)
                    },
                )
                .reduce(
                    || (0, vec![false; n_real]),
                    |(pa, mut a), (pb, b)| {
                        a.iter_mut().zip(&b).for_each(|(x, y)| *x |= *y);
                        (pa + pb, a)
                    },
                );
            precise += p;
            covered.iter_mut().zip(&cov).for_each(|(x, y)| *x |= *y);
        });
        Ok(PrecisionRecall {
            precision: precise as f64 / samples.n as f64,
            recall: covered.iter().filter(|&&c| c).count() as f64 / n_real as f64,
        })
    }
}

/// For each query row, the index of its nearest point and the Euclidean distance to it. `points`
/// are searched in place (no copy, so a whole training split can be), unshifted: points nearer
/// than f32 rounding of their norms can tie, the distance returned is exact (f64) for the one
/// chosen.
pub fn nearest(queries: Points, points: Points) -> Result<Vec<(usize, f32)>> {
    ensure!(
        queries.dim == points.dim,
        "nearest neighbours: queries have {} dimensions but points have {}",
        queries.dim,
        points.dim
    );
    ensure!(points.n > 0, "nearest neighbours: no points to search");
    let set = DistanceTo::new(Cow::Borrowed(points.data), points.n, points.dim);
    let mut index = vec![0usize; queries.n];
    set.blocks(queries.data, queries.n, |first, block| {
        index[first..first + block.len() / set.n]
            .par_iter_mut()
            .zip(block.par_chunks(set.n))
            .for_each(|(o, row)| {
                let mut best = (0, f32::INFINITY);
                for (j, &d) in row.iter().enumerate() {
                    if d < best.1 {
                        best = (j, d);
                    }
                }
                *o = best.0;
            });
    });
    Ok(index
        .into_iter()
        .enumerate()
        .map(|(i, j)| {
            let d: f64 = queries
                .row(i)
                .iter()
                .zip(points.row(j))
                .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
                .sum();
            (j, d.sqrt() as f32)
        })
        .collect())
}

fn shifted<'a>(p: Points, mean: &[f32]) -> Cow<'a, [f32]> {
    Cow::Owned(
        p.data
            .chunks(p.dim)
            .flat_map(|row| row.iter().zip(mean).map(|(v, m)| v - m))
            .collect(),
    )
}

/// A set of points to measure squared Euclidean distances to, with their squared norms.
struct DistanceTo<'a> {
    data: Cow<'a, [f32]>,
    n: usize,
    dim: usize,
    norms: Vec<f32>,
}

impl<'a> DistanceTo<'a> {
    fn new(data: Cow<'a, [f32]>, n: usize, dim: usize) -> Self {
        let norms = data.par_chunks(dim).map(squared_norm).collect();
        Self { data, n, dim, norms }
    }

    /// Calls `f(first, block)` for consecutive blocks of query rows, `block` holding the squared
    /// distances of rows `first..` to every point (row-major, `self.n` per row), as
    /// |q|^2 + |p|^2 - 2 q.p with the products by GEMM, clamped at 0. A NaN stays NaN, so a point
    /// with a NaN is inside no ball and holds none.
    fn blocks(&self, queries: &[f32], nq: usize, mut f: impl FnMut(usize, &[f32])) {
        use faer::linalg::matmul::matmul;
        use faer::{Accum, MatMut, MatRef, Par};
        let (n, d) = (self.n, self.dim);
        let mut block = vec![0.0f32; BLOCK.min(nq.max(1)) * n];
        let points = MatRef::from_row_major_slice(&self.data, n, d);
        for first in (0..nq).step_by(BLOCK) {
            let b = (nq - first).min(BLOCK);
            let q = &queries[first * d..(first + b) * d];
            let dst = &mut block[..b * n];
            matmul(
                MatMut::from_row_major_slice_mut(dst, b, n),
                Accum::Replace,
                MatRef::from_row_major_slice(q, b, d),
                points.transpose(),
                1.0f32,
                Par::rayon(0),
            );
            dst.par_chunks_mut(n).zip(q.par_chunks(d)).for_each(|(row, qi)| {
                let qn = squared_norm(qi);
                for (v, &pn) in row.iter_mut().zip(&self.norms) {
                    // Not `max(0.0)`, which would turn a NaN (a diverged decoder's pixel) into 0.
                    let d = qn + pn - 2.0 * *v;
                    *v = if d < 0.0 { 0.0 } else { d };
                }
            });
            f(first, dst);
        }
    }

    /// Squared distance of each point to its k-th nearest other point of the set (itself left
    /// out by index, so a duplicate counts as a neighbour at distance 0).
    fn kth_neighbour_within(&self, k: usize) -> Vec<f32> {
        let mut radii = vec![0.0f32; self.n];
        let n = self.n;
        self.blocks(&self.data, n, |first, block| {
            radii[first..first + block.len() / n]
                .par_iter_mut()
                .zip(block.par_chunks(n))
                .enumerate()
                .for_each(|(r, (radius, row))| {
                    let i = first + r;
                    let mut others: Vec<f32> = row
                        .iter()
                        .enumerate()
                        .filter(|&(j, _)| j != i)
                        .map(|(_, &d)| if d.is_nan() { f32::INFINITY } else { d })
                        .collect();
                    let (_, kth, _) = others.select_nth_unstable_by(k - 1, f32::total_cmp);
                    *radius = *kth;
                });
        });
        radii
    }
}

fn squared_norm(v: &[f32]) -> f32 {
    v.iter().map(|x| (*x as f64) * (*x as f64)).sum::<f64>() as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;

    fn pts(data: &[f32], dim: usize) -> Points<'_> {
        Points::new(data, data.len() / dim, dim, "test").unwrap()
    }

    /// `n` points of a Gaussian blob of sd `sd` around `centre` (dimension `centre.len()`).
    fn blob(n: usize, centre: &[f32], sd: f32, seed: u64) -> Vec<f32> {
        let noise = SeededRng::new(seed).normal_vec(n * centre.len());
        noise
            .chunks(centre.len())
            .flat_map(|z| z.iter().zip(centre).map(|(z, c)| c + sd * z).collect::<Vec<_>>())
            .collect()
    }

    #[test]
    fn identical_sets_score_one_and_one() {
        let a = blob(300, &[0.5; 20], 0.2, 1);
        let pr = precision_recall(pts(&a, 20), pts(&a, 20), K).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 1.0,
                recall: 1.0
            }
        );
    }

    #[test]
    fn far_apart_clusters_score_zero_and_zero() {
        let real = blob(200, &[0.0; 16], 0.1, 2);
        let samples = blob(150, &[5.0; 16], 0.1, 3);
        let pr = precision_recall(pts(&real, 16), pts(&samples, 16), K).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 0.0,
                recall: 0.0
            }
        );
    }

    #[test]
    fn samples_on_one_of_two_real_clusters_are_precise_but_cover_half() {
        // Real: two far-apart clusters of 200 each.
        let d = 8;
        let mut real = blob(200, &[0.0; 8], 1.0, 4);
        real.extend(blob(200, &[50.0; 8], 1.0, 5));
        // Samples collapsed onto the first cluster: its real points, jittered far less than the
        // spacing of points. Every sample is in a real ball, every point of the first cluster in
        // its copy's ball, none of the second: precision 1, recall 1/2.
        let jitter = SeededRng::new(6).normal_vec(200 * d);
        let copies: Vec<f32> = real[..200 * d]
            .iter()
            .zip(&jitter)
            .map(|(x, j)| x + 0.01 * j)
            .collect();
        let pr = precision_recall(pts(&real, d), pts(&copies, d), K).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 1.0,
                recall: 0.5
            }
        );
        // Fresh draws from the first cluster: the k-NN balls miss some of its tails, so both
        // numbers fall short of their ideal (1 and 1/2), but recall can never pass 1/2.
        let fresh = blob(400, &[0.0; 8], 1.0, 7);
        let pr = precision_recall(pts(&real, d), pts(&fresh, d), K).unwrap();
        assert!(
            pr.precision > 0.8 && pr.recall > 0.4 && pr.recall <= 0.5,
            "{pr:?}"
        );
        // The other way round, precision and recall swap roles.
        let rp = precision_recall(pts(&fresh, d), pts(&real, d), K).unwrap();
        assert!(
            rp.precision > 0.4 && rp.precision <= 0.5 && rp.recall > 0.8,
            "{rp:?}"
        );
    }

    #[test]
    fn a_tiny_case_by_hand() {
        // One dimension. Real: 0, 1, 3, 10. k = 1 radii: 1, 1, 2, 7.
        // Balls: [-1, 1], [0, 2], [1, 5], [3, 17].
        let real = [0.0f32, 1.0, 3.0, 10.0];
        // Samples: 0.5 (in), 4.5 (in the ball of 3), 18 (out), -2 (out).
        // Sample radii (k = 1): 0.5 -> 2.5 (to -2), 4.5 -> 4 (to 0.5), 18 -> 13.5, -2 -> 2.5.
        // Real points covered: 0 and 1 (by 0.5), 3 (by 4.5), 10 (not by 4.5: 5.5 > 4; by 18:
        // 8 <= 13.5). All four.
        let samples = [0.5f32, 4.5, 18.0, -2.0];
        let pr = precision_recall(pts(&real, 1), pts(&samples, 1), 1).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 0.5,
                recall: 1.0
            }
        );
        // k = 2: real radii 3, 2, 3, 9 -> balls [-3, 3], [-1, 3], [0, 6], [1, 19]: every
        // sample but 18 is inside one; 18 is inside [1, 19] too. Precision 1.
        // Sample radii (k = 2): 0.5 -> 4 (to 4.5), 4.5 -> 6.5 (to -2), 18 -> 17.5, -2 -> 6.5.
        // Real covered: all (0.5's ball [-3.5, 4.5] holds 0, 1, 3; 4.5's [-2, 11] holds 10).
        let pr = precision_recall(pts(&real, 1), pts(&samples, 1), 2).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 1.0,
                recall: 1.0
            }
        );
        // Samples with a gap the real set does not have: real 0..=4, samples 0, 0.2, 4, 4.2.
        // Sample radii (k = 1): 0.2 each: the balls hold real 0 and 4 only -> recall 2/5.
        let real = [0.0f32, 1.0, 2.0, 3.0, 4.0];
        let samples = [0.0f32, 0.2, 4.0, 4.2];
        let pr = precision_recall(pts(&real, 1), pts(&samples, 1), 1).unwrap();
        assert_eq!(
            pr,
            PrecisionRecall {
                precision: 1.0,
                recall: 0.4
            }
        );
    }

    #[test]
    fn samples_with_nan_are_in_no_ball_and_cover_nothing() {
        // Identical sets but for a NaN in two samples: those two are in no real ball (precision
        // 98 of 100), and hold no real point (the two they copied may lie in other samples'
        // balls, so recall is at least 98 of 100). The nearest-neighbour search skips them.
        let a = blob(100, &[0.5; 6], 0.2, 8);
        let mut b = a.clone();
        b[0] = f32::NAN;
        b[6 * 50 + 3] = f32::NAN;
        let pr = precision_recall(pts(&a, 6), pts(&b, 6), K).unwrap();
        assert_eq!(pr.precision, 0.98, "{pr:?}");
        assert!(pr.recall >= 0.98, "{pr:?}");
        let nn = nearest(pts(&b[..12], 6), pts(&a, 6)).unwrap();
        assert_eq!(nn[1], (1, 0.0));
    }

    #[test]
    fn refuses_too_few_points_and_unequal_dimensions() {
        let a = [0.0f32; 12];
        let err = precision_recall(pts(&a, 4), pts(&a, 4), 3).unwrap_err();
        assert!(
            err.to_string().contains("needs more than 3 real points, got 3"),
            "{err}"
        );
        let b = [0.0f32; 40];
        let err = precision_recall(pts(&b, 4), pts(&a, 4), 3).unwrap_err();
        assert!(
            err.to_string().contains("needs more than 3 samples, got 3"),
            "{err}"
        );
        let err = precision_recall(pts(&b, 4), pts(&b, 5), 3).unwrap_err();
        assert!(
            err.to_string()
                .contains("real points have 4 dimensions but samples have 5"),
            "{err}"
        );
        let err = Points::new(&b, 7, 4, "samples").unwrap_err();
        assert!(
            err.to_string()
                .contains("samples: 40 values is not 7 points of 4 dimensions"),
            "{err}"
        );
        assert!(precision_recall(pts(&b, 4), pts(&b, 4), 0).is_err());
    }

    #[test]
    fn nearest_finds_the_closest_row_across_blocks() {
        // More queries than a block, and points in 3 dimensions on a grid.
        let d = 3;
        let points: Vec<f32> = (0..500)
            .flat_map(|i| [i as f32, (i % 7) as f32, 0.5 * (i % 3) as f32])
            .collect();
        // Each query is point (i * 7) % 500 nudged by 0.1 in the last coordinate.
        let nq = BLOCK + 40;
        let queries: Vec<f32> = (0..nq)
            .flat_map(|q| {
                let i = (q * 7) % 500;
                let p = &points[i * d..(i + 1) * d];
                [p[0], p[1], p[2] + 0.1]
            })
            .collect();
        let nn = nearest(pts(&queries, d), pts(&points, d)).unwrap();
        for (q, &(j, dist)) in nn.iter().enumerate() {
            assert_eq!(j, (q * 7) % 500, "query {q}");
            assert!((dist - 0.1).abs() < 1e-6, "query {q}: {dist}");
        }
        assert!(nearest(pts(&queries, d), pts(&points[..499], 1)).is_err());
    }
}
