//! Evaluation: likelihood bounds (ELBO, IWAE), reconstruction metrics (MSE, PSNR, SSIM), active
//! units, latent samplers (prior, ex-post Gaussian mixture, two-stage VAE), the sample-quality
//! classifier and the Frechet distance, improved precision / recall and nearest training images,
//! and pictures of the latent space. [`evaluate::evaluate_run`]
//! is `norbvae eval`.
pub mod classifier;
pub mod evaluate;
pub mod frechet;
pub mod gmm;
pub mod image_metrics;
pub mod latent;
pub mod likelihood;
pub mod pictures;
pub mod precision_recall;
pub mod two_stage;

pub use evaluate::{evaluate_run, EvalOptions};
pub use latent::{LatentSampler, SamplerKind, SamplerOptions};

/// Mean of each column of `rows` (row-major, `dim` per row), accumulated in f64: the Frechet
/// statistics, the two-stage VAE's standardisation and the precision / recall shift share it.
pub(crate) fn column_means(rows: &[f32], dim: usize) -> Vec<f64> {
    let mut sum = vec![0.0f64; dim];
    let mut n = 0usize;
    for row in rows.chunks_exact(dim) {
        sum.iter_mut().zip(row).for_each(|(s, &v)| *s += v as f64);
        n += 1;
    }
    sum.iter_mut().for_each(|s| *s /= n.max(1) as f64);
    sum
}

#[cfg(test)]
mod tests;
