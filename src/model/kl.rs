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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::{Device, Var};

    #[test]
    fn kl_gradients_match_finite_differences_and_closed_form() {
        let mut rng = SeededRng::new(5);
        let v = |r: &mut SeededRng| {
            let d: Vec<f64> = r.normal_vec(6).into_iter().map(|v| v as f64).collect();
            Var::from_tensor(&Tensor::from_vec(d, (2, 3), &Device::Cpu).unwrap()).unwrap()
        };
        let (mu, lv) = (v(&mut rng), v(&mut rng));
        let lvt = lv.as_tensor().clone();
        let mut_ = mu.as_tensor().clone();
        crate::model::likelihood::tests::check_grad(&mu, &|m| kl_per_item(m, &lvt)?.sum_all());
        crate::model::likelihood::tests::check_grad(&lv, &|l| kl_per_item(&mut_, l)?.sum_all());
        // Closed form for one entry: mu = 1, lv = ln 4 -> 0.5 (1 + 4 - ln 4 - 1).
        let k: Vec<f64> = kl_per_dim(
            &Tensor::new(&[[1.0f64]], &Device::Cpu).unwrap(),
            &Tensor::new(&[[4f64.ln()]], &Device::Cpu).unwrap(),
        )
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
        assert!((k[0] - 0.5 * (4.0 - 4f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn warmup_and_free_bits_shape_the_kl_term() {
        let cfg = KlConfig {
            beta: 2.0,
            warmup_epochs: 4.0,
            free_bits: 0.0,
        };
        assert_eq!(beta_at(&cfg, 0.0), 0.0);
        assert_eq!(beta_at(&cfg, 1.0), 0.5);
        assert_eq!(beta_at(&cfg, 9.0), 2.0);
        // Per-dim batch-mean KL [0.1, 2.0]: free bits 0.5 lift the first to 0.5 -> 2.5.
        let dims = Tensor::new(&[[0.0f64, 1.0], [0.2, 3.0]], &Device::Cpu).unwrap();
        let t: f64 = kl_training_term(&dims, 0.5).unwrap().to_scalar().unwrap();
        assert!((t - 2.5).abs() < 1e-12);
        let t: f64 = kl_training_term(&dims, 0.0).unwrap().to_scalar().unwrap();
        assert!((t - 2.1).abs() < 1e-12);
    }
}
