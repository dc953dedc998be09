//! Priors over the latent code of the flat VAEs: the standard normal, or the VampPrior (Tomczak &
//! Welling 2018), `p(z) = (1/K) sum_k q(z | u_k)` with K learned pseudo-inputs `u_k` pushed through
//! the VAE's own encoder. Its KL has no closed form: the loss uses the single-sample estimate
//! `ln q(z|x) - ln p(z)` at the reparameterised sample (unbiased, like the ELBO itself).
//!
//! The pseudo-inputs are encoded in evaluation mode (batch-norm running statistics), so they
//! neither shift the batch's statistics nor the running ones; gradients still reach them and
//! the encoder. Image pseudo-inputs are `sigmoid(raw)` so they stay valid pixels.
use candle_core::{Result, Tensor};
use candle_nn::{Init, VarBuilder};

const LN_2PI: f64 = 1.8378770664093453;

pub struct VampPrior {
    raw: Tensor,
    image: bool,
    pub components: usize,
}

impl VampPrior {
    /// `input_shape`: one encoder input without the batch dimension.
    pub fn new(vb: VarBuilder, components: usize, input_shape: &[usize], image: bool) -> Result<Self> {
        let mut shape = vec![components];
        shape.extend_from_slice(input_shape);
        let raw = vb.get_with_hints(
            shape,
            "pseudo_inputs",
            Init::Randn {
                mean: 0.0,
                stdev: if image { 1.0 } else { 0.1 },
            },
        )?;
        Ok(Self {
            raw,
            image,
            components,
        })
    }

    /// The pseudo-inputs as the encoder takes them.
    pub fn inputs(&self) -> Result<Tensor> {
        if self.image {
            candle_nn::ops::sigmoid(&self.raw)
        } else {
            Ok(self.raw.clone())
        }
    }
}

/// ln N(z; mu, e^lv) summed over the latent, [b].
pub fn log_normal(z: &Tensor, mu: &Tensor, lv: &Tensor) -> Result<Tensor> {
    let t = ((z - mu)?.sqr()?.mul(&lv.neg()?.exp()?)? + lv)?;
    ((t + LN_2PI)? * -0.5)?.sum(1)
}

/// ln p(z) [b] under the equal-weight mixture of diagonal Gaussians with means `mu_k` and
/// log-variances `lv_k` ([K, l] each), for codes `z` [b, l].
pub fn log_mixture(z: &Tensor, mu_k: &Tensor, lv_k: &Tensor) -> Result<Tensor> {
    let k = mu_k.dim(0)?;
    let zb = z.unsqueeze(1)?; // [b, 1, l]
    let mu = mu_k.unsqueeze(0)?; // [1, K, l]
    let lv = lv_k.unsqueeze(0)?;
    let sq = zb.broadcast_sub(&mu)?.sqr()?.broadcast_mul(&lv.neg()?.exp()?)?;
    let t = (sq.broadcast_add(&lv)? + LN_2PI)?;
    let per_k = (t * -0.5)?.sum(2)?; // [b, K]
    per_k.log_sum_exp(1)? - (k as f64).ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::Device;

    #[test]
    fn mixture_density_matches_a_direct_sum() {
        let dev = Device::Cpu;
        let mut rng = SeededRng::new(4);
        let (b, k, l) = (3, 4, 2);
        let z = Tensor::from_vec(rng.normal_vec(b * l), (b, l), &dev).unwrap();
        let mu = Tensor::from_vec(rng.normal_vec(k * l), (k, l), &dev).unwrap();
        let lv = Tensor::from_vec(rng.normal_vec(k * l), (k, l), &dev).unwrap();
        let got: Vec<f32> = log_mixture(&z, &mu, &lv).unwrap().to_vec1().unwrap();
        let (zv, mv, lvv) = (
            z.to_vec2::<f32>().unwrap(),
            mu.to_vec2::<f32>().unwrap(),
            lv.to_vec2::<f32>().unwrap(),
        );
        for i in 0..b {
            let mut p = 0.0f64;
            for c in 0..k {
                let mut d = 1.0f64;
                for t in 0..l {
                    let var = (lvv[c][t] as f64).exp();
                    let e = zv[i][t] as f64 - mv[c][t] as f64;
                    d *= (-(e * e) / (2.0 * var)).exp() / (2.0 * std::f64::consts::PI * var).sqrt();
                }
                p += d / k as f64;
            }
            assert!((got[i] as f64 - p.ln()).abs() < 1e-4, "{} vs {}", got[i], p.ln());
        }
    }
}
