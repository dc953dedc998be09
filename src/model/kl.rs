//! The KL term of the ELBO against a standard normal prior, with the training-time knobs: weight
//! (beta), linear warm-up and free bits.
use super::config::KlConfig;
use candle_core::{Result, Tensor};

/// KL(N(mu, e^lv) || N(0, I)) per latent dimension: 0.5 (mu^2 + e^lv - lv - 1), shape [b, l].
pub fn kl_per_dim(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    ((mu.sqr()? + logvar.exp()?)? - logvar)?.affine(0.5, -0.5)
}

/// KL per item, nats, shape [b].
pub fn kl_per_item(mu: &Tensor, logvar: &Tensor) -> Result<Tensor> {
    kl_per_dim(mu, logvar)?.sum(1)
}

/// The KL weight at a (fractional) epoch: beta times the linear warm-up factor.
pub fn beta_at(cfg: &KlConfig, epoch: f64) -> f64 {
    if cfg.warmup_epochs > 0.0 {
        cfg.beta * (epoch / cfg.warmup_epochs).clamp(0.0, 1.0)
    } else {
        cfg.beta
    }
}

/// The KL term as trained, averaged over the batch: with free bits, each dimension's
/// batch-averaged KL is raised to at least `free_bits` nats (no gradient below it).
pub fn kl_training_term(kl_dims: &Tensor, free_bits: f64) -> Result<Tensor> {
    if free_bits > 0.0 {
        kl_dims.mean(0)?.maximum(free_bits)?.sum_all()
    } else {
        kl_dims.sum(1)?.mean_all()
    }
}
