//! Reconstruction and likelihood metrics of a PCA on one split.
use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};

use super::model::centre_rows;
use super::ppca::Ppca;
use super::{PcaError, PcaModel};
use crate::util::units;

const CHUNK_ROWS: usize = 2048;

use crate::format::PcaSplitMetrics;

/// What the metrics need from one image: squared residual after reconstruction and the
/// Mahalanobis term sum_j c_j^2 / var_j of its coefficients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageStats {
    pub residual_sq: f64,
    pub maha: f64,
}

/// Project and reconstruct `x` in chunks, returning per-image statistics (f64 accumulation).
pub(crate) fn per_image_stats(
    model: &PcaModel,
    x: &[f32],
    n: usize,
    k: usize,
    variances: Option<&[f64]>,
) -> Result<Vec<ImageStats>, PcaError> {
    if n == 0 {
        return Err(PcaError::Empty { n, d: model.dim() });
    }
    model.check_input(x.len(), n, k, "images")?;
    let d = model.dim();
    let axes = MatRef::from_column_major_slice(&model.components[..k * d], d, k);
    let rows_max = CHUNK_ROWS.min(n);
    let mut centred = vec![0f32; rows_max * d];
    let mut coefs = vec![0f32; rows_max * k];
    let mut out = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK_ROWS) {
        let rows = CHUNK_ROWS.min(n - start);
        let xc = &mut centred[..rows * d];
        centre_rows(&x[start * d..(start + rows) * d], &model.mean, xc);
        let c = &mut coefs[..rows * k];
        matmul(
            MatMut::from_row_major_slice_mut(c, rows, k),
            Accum::Replace,
            MatRef::from_row_major_slice(xc, rows, d),
            axes,
            1.0f32,
            Par::rayon(0),
        );
        // Residual in place: xc - c U.
        matmul(
            MatMut::from_row_major_slice_mut(xc, rows, d),
            Accum::Add,
            MatRef::from_row_major_slice(c, rows, k),
            axes.transpose(),
            -1.0f32,
            Par::rayon(0),
        );
        for (r, cr) in xc.chunks_exact(d).zip(c.chunks_exact(k)) {
            let residual_sq = r.iter().map(|&v| (v as f64) * (v as f64)).sum();
            let maha = match variances {
                Some(var) => cr
                    .iter()
                    .zip(var)
                    .map(|(&c, v)| (c as f64) * (c as f64) / v)
                    .sum(),
                None => 0.0,
            };
            out.push(ImageStats { residual_sq, maha });
        }
    }
    Ok(out)
}

/// MSE, PSNR and PPCA likelihood of the first `k` components on `n` images.
pub fn evaluate(model: &PcaModel, x: &[f32], n: usize, k: usize) -> Result<PcaSplitMetrics, PcaError> {
    let d = model.dim();
    let ppca = Ppca::new(model, k).ok();
    let stats = per_image_stats(model, x, n, k, ppca.as_ref().map(|p| &p.variances[..]))?;
    let mse = stats.iter().map(|s| s.residual_sq).sum::<f64>() / (n * d) as f64;
    let ppca_nll = ppca.as_ref().map(|p| {
        stats
            .iter()
            .map(|s| p.nll_from_stats(s.maha, s.residual_sq))
            .sum::<f64>()
            / n as f64
    });
    Ok(PcaSplitMetrics {
        mse,
        psnr: units::psnr(mse),
        ppca_nll,
        ppca_bits_per_dim: ppca_nll.map(|nll| units::bits_per_dim(nll, d)),
    })
}
