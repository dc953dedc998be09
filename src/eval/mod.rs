//! Evaluation: reconstruction metrics (MSE, PSNR, SSIM), the ex-post Gaussian mixture sampler,
//! the Frechet distance between feature Gaussians, and the sample-quality classifier.
pub mod classifier;
pub mod frechet;
pub mod gmm;
pub mod image_metrics;
pub mod two_stage;
pub mod units;
