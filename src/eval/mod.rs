//! Evaluation: reconstruction metrics (MSE, PSNR, SSIM), the ex-post Gaussian mixture sampler,
//! the Frechet distance between feature Gaussians, the sample-quality classifier, the two-stage
//! sampler, and the shared likelihood units (`units`).
pub mod classifier;
pub mod frechet;
pub mod gmm;
pub mod image_metrics;
pub mod two_stage;
pub mod units;
