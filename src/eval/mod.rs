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

#[cfg(test)]
mod tests;
