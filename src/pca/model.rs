//! A fitted PCA: projection, reconstruction, and its safetensors file.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use safetensors::{Dtype, SafeTensors};
use std::path::Path;

use super::PcaError;

/// Whitening divides by `sqrt(max(variance, floor))`, floor = `total_variance / dim` times this
/// (and at least `f64::MIN_POSITIVE`), so axes without variance stay finite.
pub const WHITENING_FLOOR_FACTOR: f64 = 1e-12;

/// Rows processed at once by the projections (bounds the temporary centred copy).
const CHUNK_ROWS: usize = 2048;

/// A fitted PCA model. Components are the rows of `components` ([k, d], orthonormal), ordered by
/// decreasing explained variance; any prefix of them is the PCA with fewer components.
#[derive(Debug, Clone, PartialEq)]
pub struct PcaModel {
    /// Per-pixel mean of the training data, [d].
    pub mean: Vec<f32>,
    /// Principal axes, [k, d] row-major, rows orthonormal.
    pub components: Vec<f32>,
    /// Variance of the training data along each axis (eigenvalues of the covariance with the
    /// unbiased 1/(n-1) normalisation, as scikit-learn), [k].
    pub explained_variance: Vec<f32>,
    /// Mean variance in the directions not kept (PPCA's maximum-likelihood noise variance at k).
    pub noise_variance_tail: f64,
    /// Total variance of the training data (sum of per-pixel variances, 1/(n-1)); exact.
    pub total_variance: f64,
    pub n_samples: usize,
}

impl PcaModel {
    /// Number of components stored.
    pub fn k(&self) -> usize {
        self.explained_variance.len()
    }

    /// Pixels per image.
    pub fn dim(&self) -> usize {
        self.mean.len()
    }

    /// Fraction of the total variance captured by the first `k` components.
    pub fn explained_variance_ratio(&self, k: usize) -> f64 {
        let kept: f64 = self.explained_variance[..k.min(self.k())]
            .iter()
            .map(|&v| v as f64)
            .sum();
        if self.total_variance > 0.0 {
            kept / self.total_variance
        } else {
            1.0
        }
    }

    /// PPCA's maximum-likelihood noise variance with the first `k` components: the mean of the
    /// discarded eigenvalues, (total variance - kept variance) / (d - k). Exact for every k <= k(),
    /// since the total variance is exact. Zero when k == d.
    pub fn noise_variance(&self, k: usize) -> f64 {
        let d = self.dim();
        if k >= d {
            return 0.0;
        }
        let kept: f64 = self.explained_variance[..k].iter().map(|&v| v as f64).sum();
        ((self.total_variance - kept) / (d - k) as f64).max(0.0)
    }

    /// Errors unless `k` components exist and `x` holds `n` images of this model's size.
    pub(crate) fn check_input(&self, len: usize, n: usize, k: usize, what: &str) -> Result<(), PcaError> {
        if k == 0 || k > self.k() {
            return Err(PcaError::TooManyComponentsForModel {
                k,
                available: self.k(),
            });
        }
        let d = if what == "coefficients" { k } else { self.dim() };
        if len != n * d {
            return Err(PcaError::ShapeMismatch {
                what: what.to_string(),
                expected: n * d,
                got: len,
                per_row: d,
            });
        }
        Ok(())
    }

    /// The first `k` axes as a d x k column-major view (the same memory as rows of `components`).
    fn axes(&self, k: usize) -> MatRef<'_, f32> {
        MatRef::from_column_major_slice(&self.components[..k * self.dim()], self.dim(), k)
    }

    /// Coefficients of `n` images on the first `k` components, [n, k]; with `whiten`, each
    /// coefficient is divided by the standard deviation along its axis (unit variance on train).
    pub fn transform(&self, x: &[f32], n: usize, k: usize, whiten: bool) -> Vec<f32> {
        self.try_transform(x, n, k, whiten)
            .unwrap_or_else(|e| panic!("PcaModel::transform: {e}"))
    }

    /// [`Self::transform`] returning an error on a shape mismatch instead of panicking.
    pub fn try_transform(&self, x: &[f32], n: usize, k: usize, whiten: bool) -> Result<Vec<f32>, PcaError> {
        self.check_input(x.len(), n, k, "images")?;
        let d = self.dim();
        let mut out = vec![0f32; n * k];
        let mut centred = vec![0f32; CHUNK_ROWS.min(n) * d];
        let axes = self.axes(k);
        for start in (0..n).step_by(CHUNK_ROWS) {
            let rows = CHUNK_ROWS.min(n - start);
            let buf = &mut centred[..rows * d];
            centre_rows(&x[start * d..(start + rows) * d], &self.mean, buf);
            let xc = MatRef::from_row_major_slice(buf, rows, d);
            let dst = MatMut::from_row_major_slice_mut(&mut out[start * k..(start + rows) * k], rows, k);
            matmul(dst, Accum::Replace, xc, axes, 1.0f32, Par::rayon(0));
        }
        if whiten {
            let inv: Vec<f32> = self.whitening_scales(k).iter().map(|s| 1.0 / s).collect();
            for row in out.chunks_mut(k) {
                row.iter_mut().zip(&inv).for_each(|(c, s)| *c *= s);
            }
        }
        Ok(out)
    }

    /// Images [n, d] from coefficients [n, k] on the first `k` components (whitened coefficients
    /// when `whiten`). Not clamped to [0, 1].
    pub fn inverse_transform(&self, coefs: &[f32], n: usize, k: usize, whiten: bool) -> Vec<f32> {
        self.try_inverse_transform(coefs, n, k, whiten)
            .unwrap_or_else(|e| panic!("PcaModel::inverse_transform: {e}"))
    }

    /// [`Self::inverse_transform`] returning an error on a shape mismatch instead of panicking.
    pub fn try_inverse_transform(
        &self,
        coefs: &[f32],
        n: usize,
        k: usize,
        whiten: bool,
    ) -> Result<Vec<f32>, PcaError> {
        self.check_input(coefs.len(), n, k, "coefficients")?;
        let d = self.dim();
        let scaled;
        let coefs = if whiten {
            let s = self.whitening_scales(k);
            scaled = coefs
                .chunks(k)
                .flat_map(|row| row.iter().zip(&s).map(|(c, s)| c * s).collect::<Vec<_>>())
                .collect::<Vec<f32>>();
            &scaled[..]
        } else {
            coefs
        };
        let mut out: Vec<f32> = Vec::with_capacity(n * d);
        for _ in 0..n {
            out.extend_from_slice(&self.mean);
        }
        let c = MatRef::from_row_major_slice(coefs, n, k);
        let dst = MatMut::from_row_major_slice_mut(&mut out, n, d);
        matmul(
            dst,
            Accum::Add,
            c,
            self.axes(k).transpose(),
            1.0f32,
            Par::rayon(0),
        );
        Ok(out)
    }

    /// Standard deviation along each of the first `k` axes (floored to keep whitening finite).
    fn whitening_scales(&self, k: usize) -> Vec<f32> {
        let floor =
            (self.total_variance / self.dim() as f64 * WHITENING_FLOOR_FACTOR).max(f64::MIN_POSITIVE) as f32;
        self.explained_variance[..k]
            .iter()
            .map(|&v| v.max(floor).sqrt())
            .collect()
    }

    /// A model with only the first `k` components (the PCA with k components).
    pub fn truncated(&self, k: usize) -> PcaModel {
        let k = k.min(self.k());
        PcaModel {
            mean: self.mean.clone(),
            components: self.components[..k * self.dim()].to_vec(),
            explained_variance: self.explained_variance[..k].to_vec(),
            noise_variance_tail: self.noise_variance(k),
            total_variance: self.total_variance,
            n_samples: self.n_samples,
        }
    }

    /// Save as safetensors (`mean` [d], `components` [k,d], `explained_variance` [k] as f32;
    /// `total_variance`, `noise_variance_tail` as f64 [1]; `n_samples` in the metadata), atomically.
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let bytes = self.to_safetensors()?;
        crate::util::write_atomic(path, &bytes)
    }

    /// The safetensors bytes [`Self::save`] writes.
    pub fn to_safetensors(&self) -> Result<Vec<u8>, PcaError> {
        use safetensors::tensor::TensorView;
        let (k, d) = (self.k(), self.dim());
        let f32s = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let mean = f32s(&self.mean);
        let comps = f32s(&self.components);
        let ev = f32s(&self.explained_variance);
        let tv = self.total_variance.to_le_bytes();
        let nv = self.noise_variance_tail.to_le_bytes();
        let st = |e| PcaError::ModelFile {
            path: "<memory>".into(),
            msg: format!("{e}"),
        };
        let tensors = vec![
            (
                "components",
                TensorView::new(Dtype::F32, vec![k, d], &comps).map_err(st)?,
            ),
            (
                "explained_variance",
                TensorView::new(Dtype::F32, vec![k], &ev).map_err(st)?,
            ),
            ("mean", TensorView::new(Dtype::F32, vec![d], &mean).map_err(st)?),
            (
                "noise_variance_tail",
                TensorView::new(Dtype::F64, vec![1], &nv).map_err(st)?,
            ),
            (
                "total_variance",
                TensorView::new(Dtype::F64, vec![1], &tv).map_err(st)?,
            ),
        ];
        let mut meta = crate::format::tensors::header(crate::format::tensors::PCA_FORMAT);
        meta.insert("kind".to_string(), "norbvae-pca".to_string());
        meta.insert("n_samples".to_string(), self.n_samples.to_string());
        safetensors::serialize(tensors, Some(meta))
            .map(crate::format::tensors::canonical)
            .map_err(st)
    }

    /// Load a model written by [`Self::save`].
    pub fn load(path: &Path) -> Result<PcaModel, PcaError> {
        let bytes = std::fs::read(path).map_err(|e| PcaError::ModelFile {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
        Self::from_safetensors(&bytes).map_err(|e| match e {
            PcaError::ModelFile { msg, .. } => PcaError::ModelFile {
                path: path.display().to_string(),
                msg,
            },
            other => other,
        })
    }

    /// Parse the bytes of a model file.
    pub fn from_safetensors(bytes: &[u8]) -> Result<PcaModel, PcaError> {
        let bad = |msg: String| PcaError::ModelFile {
            path: "<memory>".into(),
            msg,
        };
        let st = SafeTensors::deserialize(bytes).map_err(|e| bad(format!("not a safetensors file: {e}")))?;
        let get = |name: &str, dtype: Dtype| -> Result<(Vec<usize>, Vec<u8>), PcaError> {
            let t = st
                .tensor(name)
                .map_err(|_| bad(format!("no tensor '{name}' (not a PCA model?)")))?;
            if t.dtype() != dtype {
                return Err(bad(format!(
                    "tensor '{name}' has dtype {:?}, expected {:?}",
                    t.dtype(),
                    dtype
                )));
            }
            Ok((t.shape().to_vec(), t.data().to_vec()))
        };
        let to_f32 = |b: Vec<u8>| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let to_f64 = |b: Vec<u8>| -> f64 {
            b.get(..8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                .unwrap_or(f64::NAN)
        };
        let (ms, mean) = get("mean", Dtype::F32)?;
        let (cs, comps) = get("components", Dtype::F32)?;
        let (es, ev) = get("explained_variance", Dtype::F32)?;
        let (_, tv) = get("total_variance", Dtype::F64)?;
        let (_, nv) = get("noise_variance_tail", Dtype::F64)?;
        if ms.len() != 1 || cs.len() != 2 || es.len() != 1 || cs[1] != ms[0] || cs[0] != es[0] {
            return Err(bad(format!(
                "inconsistent shapes: mean {ms:?}, components {cs:?}, explained_variance {es:?}"
            )));
        }
        let (_, meta) = SafeTensors::read_metadata(bytes).map_err(|e| bad(e.to_string()))?;
        let n_samples = meta
            .metadata()
            .as_ref()
            .and_then(|m| m.get("n_samples"))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("metadata lacks n_samples".into()))?;
        Ok(PcaModel {
            mean: to_f32(mean),
            components: to_f32(comps),
            explained_variance: to_f32(ev),
            noise_variance_tail: to_f64(nv),
            total_variance: to_f64(tv),
            n_samples,
        })
    }

    /// Errors unless images of `d` pixels (described as `what`, e.g. "1x96x96") fit this model.
    pub fn check_image_size(&self, d: usize, what: &str) -> Result<(), PcaError> {
        if d != self.dim() {
            return Err(PcaError::ImageSizeMismatch {
                model: self.dim(),
                data: d,
                shape: what.to_string(),
            });
        }
        Ok(())
    }
}

/// `out[i, j] = x[i, j] - mean[j]` for row-major rows of `mean.len()` pixels.
pub(crate) fn centre_rows(x: &[f32], mean: &[f32], out: &mut [f32]) {
    let d = mean.len();
    for (src, dst) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        for ((o, &v), &m) in dst.iter_mut().zip(src).zip(mean) {
            *o = v - m;
        }
    }
}
