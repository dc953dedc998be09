//! Decoder distributions p(x|z). Each is a small type with one job: turn the decoder's output
//! tensor into a per-image negative log-likelihood in nats (all constants included, so numbers
//! compare across likelihoods on the same data) and into the distribution's mean.
//!
//! Dequantization convention (shared with the PCA's PPCA likelihood): pixels are u8/255 in [0,1];
//! continuous densities are evaluated at those values and reported in nats per image. Bits per
//! dimension come from `crate::util::units::bits_per_dim`, which adds the discretisation term once.
//! The discretized logistic (`super::discretized`) is a probability mass over the 256 levels:
//! its bits/dim are `util::units::discrete_bits_per_dim`, with no dequantization term.
//! The Bernoulli likelihood is a probability mass on binarised pixels used on grey values (the
//! usual "BCE" loss); its numbers are not densities and do not compare with the Gaussian ones.
use super::config::{LikelihoodConfig, LikelihoodKind, OutputActivation};
pub use super::discretized::DiscretizedLogistic;
use super::layers::Mode;
use candle_core::{Result, Tensor, Var};
use candle_nn::{Init, VarBuilder};

const LN_2PI: f64 = 1.8378770664093453;
/// A log-variance within this distance of its floor counts as "on the floor".
pub const ON_FLOOR_TOLERANCE: f64 = 0.05;
/// Running estimate of the sigma-VAE's optimal log sigma, for evaluation.
const OPTIMAL_SIGMA_MOMENTUM: f64 = 0.05;

/// Sum over every dimension but the first: [b, ...] -> [b].
pub fn sum_per_item(t: &Tensor) -> Result<Tensor> {
    t.flatten_from(1)?.sum(1)
}

/// Numerically stable softplus: max(x,0) + ln(1 + exp(-|x|)).
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    x.relu()? + (x.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// A lower bound that keeps gradients: floor + softplus(x - floor).
pub fn soft_floor(x: &Tensor, floor: f64) -> Result<Tensor> {
    softplus(&(x - floor)?)? + floor
}

/// Binary cross-entropy with logits, stable form: max(l,0) - l*x + ln(1 + exp(-|l|)), per element.
pub fn bce_with_logits(logits: &Tensor, x: &Tensor) -> Result<Tensor> {
    (logits.relu()? - logits.mul(x)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?
}

/// Gaussian NLL per element: 0.5 (ln 2 pi + lv + (x - mu)^2 e^-lv). `lv` broadcasts.
pub fn gaussian_nll(x: &Tensor, mu: &Tensor, lv: &Tensor) -> Result<Tensor> {
    let sq = (x - mu)?.sqr()?;
    let t = sq.broadcast_mul(&lv.neg()?.exp()?)?.broadcast_add(lv)?;
    (t + LN_2PI)? * 0.5
}

fn activate(raw: &Tensor, act: OutputActivation) -> Result<Tensor> {
    match act {
        OutputActivation::None => Ok(raw.clone()),
        OutputActivation::Sigmoid => candle_nn::ops::sigmoid(raw),
        OutputActivation::Tanh => raw.tanh(),
    }
}

/// The first `n` entries along dim 1 (the mean part of a decoder output).
fn first_half(dec: &Tensor, n: usize) -> Result<Tensor> {
    dec.narrow(1, 0, n)
}

/// How many outputs of a learned log-variance sit on the floor, of how many.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FloorCount {
    pub on_floor: usize,
    pub total: usize,
}

pub struct BernoulliLikelihood;

impl BernoulliLikelihood {
    pub fn nll(&self, x: &Tensor, logits: &Tensor) -> Result<Tensor> {
        sum_per_item(&bce_with_logits(logits, x)?)
    }
    pub fn mean(&self, logits: &Tensor) -> Result<Tensor> {
        candle_nn::ops::sigmoid(logits)
    }
}

pub struct GaussianFixed {
    pub log_variance: f64,
    pub activation: OutputActivation,
}

impl GaussianFixed {
    pub fn nll(&self, x: &Tensor, dec: &Tensor) -> Result<Tensor> {
        let mu = self.mean(dec)?;
        let sq = (x - mu)?.sqr()?;
        let per = ((sq * (-self.log_variance).exp())? + (LN_2PI + self.log_variance))? * 0.5;
        sum_per_item(&per?)
    }
    pub fn mean(&self, dec: &Tensor) -> Result<Tensor> {
        activate(dec, self.activation)
    }
}

/// The decoder outputs a mean map and a raw log-variance map (twice the channels / features);
/// the log-variance is soft-floored.
pub struct GaussianPerPixel {
    pub floor: f64,
    pub activation: OutputActivation,
}

impl GaussianPerPixel {
    fn split(&self, dec: &Tensor) -> Result<(Tensor, Tensor)> {
        let n = dec.dim(1)? / 2;
        let mu = activate(&first_half(dec, n)?, self.activation)?;
        let lv = soft_floor(&dec.narrow(1, n, n)?, self.floor)?;
        Ok((mu, lv))
    }
    pub fn nll(&self, x: &Tensor, dec: &Tensor) -> Result<Tensor> {
        let (mu, lv) = self.split(dec)?;
        sum_per_item(&gaussian_nll(x, &mu, &lv)?)
    }
    pub fn mean(&self, dec: &Tensor) -> Result<Tensor> {
        Ok(self.split(dec)?.0)
    }
    pub fn log_variance(&self, dec: &Tensor) -> Result<Tensor> {
        Ok(self.split(dec)?.1)
    }
    pub fn floor_count(&self, dec: &Tensor) -> Result<FloorCount> {
        let lv = self.log_variance(dec)?;
        let on = lv
            .lt(self.floor + ON_FLOOR_TOLERANCE)?
            .to_dtype(candle_core::DType::F32)?;
        Ok(FloorCount {
            on_floor: on.sum_all()?.to_scalar::<f32>()? as usize,
            total: lv.elem_count(),
        })
    }
}

/// One learned log-variance for every pixel (soft-floored), parameter `likelihood.raw_logvar`.
pub struct GaussianShared {
    pub raw_logvar: Tensor,
    pub floor: f64,
    pub activation: OutputActivation,
}

impl GaussianShared {
    pub fn log_variance(&self) -> Result<Tensor> {
        soft_floor(&self.raw_logvar, self.floor)
    }
    pub fn nll(&self, x: &Tensor, dec: &Tensor) -> Result<Tensor> {
        let mu = self.mean(dec)?;
        sum_per_item(&gaussian_nll(x, &mu, &self.log_variance()?)?)
    }
    pub fn mean(&self, dec: &Tensor) -> Result<Tensor> {
        activate(dec, self.activation)
    }
    pub fn floor_count(&self, n_outputs: usize) -> Result<FloorCount> {
        let lv = self.log_variance()?.flatten_all()?.to_vec1::<f32>()?[0] as f64;
        Ok(FloorCount {
            on_floor: if lv < self.floor + ON_FLOOR_TOLERANCE {
                n_outputs
            } else {
                0
            },
            total: n_outputs,
        })
    }
}

/// sigma-VAE: sigma^2 is the MSE of the batch (all images and pixels), log sigma soft-clipped below
/// at `min_log_sigma`. Training uses the batch value; evaluation uses a running average of it kept
/// as a buffer (`likelihood.buffer.log_sigma`), so an image's likelihood does not depend on which
/// other images share its batch.
pub struct GaussianOptimal {
    pub min_log_sigma: f64,
    pub activation: OutputActivation,
    pub running_log_sigma: Var,
}

impl GaussianOptimal {
    pub fn batch_log_sigma(&self, x: &Tensor, mu: &Tensor) -> Result<Tensor> {
        let mse = (x - mu)?.sqr()?.mean_all()?;
        let ls = (mse.log()? * 0.5)?;
        soft_floor(&ls.reshape(1)?, self.min_log_sigma)
    }
    pub fn nll(&self, x: &Tensor, dec: &Tensor, mode: Mode) -> Result<Tensor> {
        let mu = self.mean(dec)?;
        let ls = match mode {
            Mode::Train => {
                let ls = self.batch_log_sigma(x, &mu)?;
                let m = OPTIMAL_SIGMA_MOMENTUM;
                let run = ((self.running_log_sigma.as_tensor() * (1.0 - m))? + (ls.detach() * m)?)?;
                self.running_log_sigma.set(&run)?;
                ls
            }
            Mode::Eval => self.running_log_sigma.as_tensor().clone(),
        };
        sum_per_item(&gaussian_nll(x, &mu, &(ls * 2.0)?)?)
    }
    pub fn mean(&self, dec: &Tensor) -> Result<Tensor> {
        activate(dec, self.activation)
    }
}

/// The configured likelihood.
pub enum Likelihood {
    Bernoulli(BernoulliLikelihood),
    DiscretizedLogistic(DiscretizedLogistic),
    GaussianFixed(GaussianFixed),
    GaussianPerPixel(GaussianPerPixel),
    GaussianShared(GaussianShared),
    GaussianOptimal(GaussianOptimal),
}

impl Likelihood {
    pub fn new(cfg: &LikelihoodConfig, vb: VarBuilder) -> Result<Self> {
        let act = cfg.output_activation;
        Ok(match cfg.kind {
            LikelihoodKind::Bernoulli => Likelihood::Bernoulli(BernoulliLikelihood),
            LikelihoodKind::GaussianFixed => Likelihood::GaussianFixed(GaussianFixed {
                log_variance: cfg.variance.ln(),
                activation: act,
            }),
            LikelihoodKind::GaussianPerPixel => Likelihood::GaussianPerPixel(GaussianPerPixel {
                floor: cfg.logvar_floor,
                activation: act,
            }),
            LikelihoodKind::GaussianShared => Likelihood::GaussianShared(GaussianShared {
                raw_logvar: vb.get_with_hints(1, "raw_logvar", Init::Const(0.0))?,
                floor: cfg.logvar_floor,
                activation: act,
            }),
            LikelihoodKind::DiscretizedLogistic | LikelihoodKind::DiscretizedLogisticMixture => {
                Likelihood::DiscretizedLogistic(DiscretizedLogistic {
                    components: if cfg.kind == LikelihoodKind::DiscretizedLogistic {
                        1
                    } else {
                        cfg.components
                    },
                    min_log_scale: cfg.min_log_scale,
                    activation: act,
                })
            }
            LikelihoodKind::GaussianOptimal => Likelihood::GaussianOptimal(GaussianOptimal {
                min_log_sigma: cfg.min_log_sigma,
                activation: act,
                running_log_sigma: Var::from_tensor(&vb.get_with_hints(
                    1,
                    "buffer.log_sigma",
                    Init::Const(0.0),
                )?)?,
            }),
        })
    }

    /// Decoder outputs per data dimension (2 when the decoder also predicts a log-variance).
    pub fn outputs_per_dim(&self) -> usize {
        match self {
            Likelihood::GaussianPerPixel(_) => 2,
            Likelihood::DiscretizedLogistic(l) => l.outputs_per_dim(),
            _ => 1,
        }
    }

    /// -log p(x | decoder output) per item, nats, shape [b].
    pub fn nll(&self, x: &Tensor, dec: &Tensor, mode: Mode) -> Result<Tensor> {
        match self {
            Likelihood::Bernoulli(l) => l.nll(x, dec),
            Likelihood::DiscretizedLogistic(l) => l.nll(x, dec),
            Likelihood::GaussianFixed(l) => l.nll(x, dec),
            Likelihood::GaussianPerPixel(l) => l.nll(x, dec),
            Likelihood::GaussianShared(l) => l.nll(x, dec),
            Likelihood::GaussianOptimal(l) => l.nll(x, dec, mode),
        }
    }

    /// The distribution's mean, same shape as the data (model space: pixels or PCA coefficients).
    pub fn mean(&self, dec: &Tensor) -> Result<Tensor> {
        match self {
            Likelihood::Bernoulli(l) => l.mean(dec),
            Likelihood::DiscretizedLogistic(l) => l.mean(dec),
            Likelihood::GaussianFixed(l) => l.mean(dec),
            Likelihood::GaussianPerPixel(l) => l.mean(dec),
            Likelihood::GaussianShared(l) => l.mean(dec),
            Likelihood::GaussianOptimal(l) => l.mean(dec),
        }
    }

    /// For learned variances: how many outputs sit on the log-variance floor.
    pub fn floor_count(&self, dec: &Tensor) -> Result<Option<FloorCount>> {
        match self {
            Likelihood::GaussianPerPixel(l) => Ok(Some(l.floor_count(dec)?)),
            Likelihood::GaussianShared(l) => Ok(Some(l.floor_count(dec.elem_count())?)),
            _ => Ok(None),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::{DType, Device};

    /// Compare autograd gradients of `f(v)` (a scalar) against central finite differences in f64
    /// at every entry of `v`.
    pub(crate) fn check_grad(v: &Var, f: &dyn Fn(&Tensor) -> Result<Tensor>) {
        let loss = f(v.as_tensor()).unwrap();
        let grads = loss.backward().unwrap();
        let g: Vec<f64> = grads.get(v).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let base: Vec<f64> = v.flatten_all().unwrap().to_vec1().unwrap();
        let h = 1e-6;
        for i in 0..base.len() {
            let eval = |delta: f64| {
                let mut p = base.clone();
                p[i] += delta;
                let t = Tensor::from_vec(p, v.shape(), v.device()).unwrap();
                f(&t).unwrap().to_scalar::<f64>().unwrap()
            };
            let fd = (eval(h) - eval(-h)) / (2.0 * h);
            let tol = 1e-5 * (1.0 + fd.abs());
            assert!(
                (g[i] - fd).abs() < tol,
                "entry {i}: autograd {} vs finite difference {fd}",
                g[i]
            );
        }
    }

    fn data(shape: (usize, usize, usize, usize), seed: u64) -> (Tensor, Var) {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let mut rng = SeededRng::new(seed);
        let x: Vec<f64> = rng.uniform_vec(n).into_iter().map(|v| v as f64).collect();
        let d: Vec<f64> = rng.normal_vec(n).into_iter().map(|v| v as f64).collect();
        (
            Tensor::from_vec(x, shape, &Device::Cpu).unwrap(),
            Var::from_tensor(&Tensor::from_vec(d, shape, &Device::Cpu).unwrap()).unwrap(),
        )
    }

    #[test]
    fn bernoulli_and_fixed_gaussian_gradients_match_finite_differences() {
        let (x, dec) = data((2, 1, 3, 3), 1);
        let b = BernoulliLikelihood;
        check_grad(&dec, &|d| b.nll(&x, d)?.sum_all());
        for act in [
            OutputActivation::None,
            OutputActivation::Sigmoid,
            OutputActivation::Tanh,
        ] {
            let g = GaussianFixed {
                log_variance: 0.3f64.ln(),
                activation: act,
            };
            check_grad(&dec, &|d| g.nll(&x, d)?.sum_all());
        }
    }

    #[test]
    fn bernoulli_is_stable_and_exact_at_extreme_logits() {
        let l = Tensor::new(&[-200.0f32, -3.0, 0.0, 3.0, 200.0], &Device::Cpu).unwrap();
        let x = Tensor::new(&[1.0f32, 0.25, 0.5, 1.0, 0.0], &Device::Cpu).unwrap();
        let got: Vec<f32> = bce_with_logits(&l, &x).unwrap().to_vec1().unwrap();
        let want = |l: f64, x: f64| -> f64 {
            // -[x ln s(l) + (1-x) ln(1-s(l))], with ln s(l) = -ln(1+e^-l).
            let ln_s = -(1.0 + (-l).exp()).ln();
            let ln_1ms = -(1.0 + l.exp()).ln();
            if l.abs() > 50.0 {
                // Exact asymptote: the softplus of the wrong-side logit.
                if l > 0.0 {
                    (1.0 - x) * l
                } else {
                    x * -l
                }
            } else {
                -(x * ln_s + (1.0 - x) * ln_1ms)
            }
        };
        for (i, (&lv, &xv)) in [-200.0, -3.0, 0.0, 3.0, 200.0]
            .iter()
            .zip(&[1.0, 0.25, 0.5, 1.0, 0.0])
            .enumerate()
        {
            assert!(
                (got[i] as f64 - want(lv, xv)).abs() < 1e-4 * (1.0 + want(lv, xv)),
                "entry {i}"
            );
        }
    }

    #[test]
    fn learned_variance_gradients_match_finite_differences() {
        let (x, dec) = data((2, 2, 2, 3), 2);
        let pp = GaussianPerPixel {
            floor: -1.5,
            activation: OutputActivation::Sigmoid,
        };
        // x has 1 channel: the decoder output has 2 (mean, log-variance).
        let x1 = x.narrow(1, 0, 1).unwrap();
        check_grad(&dec, &|d| pp.nll(&x1, d)?.sum_all());

        let raw = Var::from_tensor(&Tensor::new(&[0.4f64], &Device::Cpu).unwrap()).unwrap();
        let (x, dec) = data((2, 1, 3, 3), 3);
        let mean = dec.as_tensor().clone();
        let shared = |r: &Tensor| GaussianShared {
            raw_logvar: r.clone(),
            floor: -2.0,
            activation: OutputActivation::None,
        };
        check_grad(&raw, &|r| shared(r).nll(&x, &mean)?.sum_all());
        let s = shared(raw.as_tensor());
        check_grad(&dec, &|d| s.nll(&x, d)?.sum_all());
    }

    #[test]
    fn optimal_sigma_gradients_match_finite_differences_and_value_is_the_mse() {
        let (x, dec) = data((3, 1, 2, 2), 4);
        let make = || GaussianOptimal {
            min_log_sigma: -6.0,
            activation: OutputActivation::None,
            running_log_sigma: Var::from_tensor(&Tensor::zeros(1, DType::F64, &Device::Cpu).unwrap())
                .unwrap(),
        };
        let g = make();
        check_grad(&dec, &|d| g.nll(&x, d, Mode::Train)?.sum_all());
        // sigma^2 = batch MSE, log sigma soft-clipped: ls = -6 + ln(1 + e^(ln sqrt(mse) + 6)).
        let nll: f64 = make()
            .nll(&x, dec.as_tensor(), Mode::Train)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        let mse: f64 = (&x - dec.as_tensor())
            .unwrap()
            .sqr()
            .unwrap()
            .mean_all()
            .unwrap()
            .to_scalar()
            .unwrap();
        let ls = -6.0 + (1.0 + (0.5 * mse.ln() + 6.0).exp()).ln();
        let n = x.elem_count() as f64;
        let want = 0.5 * n * ((2.0 * std::f64::consts::PI).ln() + 2.0 * ls + mse * (-2.0 * ls).exp());
        assert!((nll - want).abs() < 1e-9 * nll.abs(), "{nll} vs {want}");
        // Without the clip this is the Gaussian at its optimal variance: within 0.1% of n/2 (ln 2 pi mse + 1).
        let unclipped = 0.5 * n * ((2.0 * std::f64::consts::PI * mse).ln() + 1.0);
        assert!((nll - unclipped).abs() < 1e-3 * nll.abs());
    }

    #[test]
    fn floor_counts_pixels_on_the_floor() {
        let pp = GaussianPerPixel {
            floor: -3.0,
            activation: OutputActivation::None,
        };
        // Raw log-variances far below the floor sit on it; others do not.
        let dec = Tensor::new(&[[0.5f32, 0.5, -40.0, 2.0]], &Device::Cpu).unwrap();
        let c = pp.floor_count(&dec).unwrap();
        assert_eq!((c.on_floor, c.total), (1, 2));
        let lv: Vec<f32> = pp
            .log_variance(&dec)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(lv[0] >= -3.0 && lv[0] < -2.99 && (lv[1] - 2.0).abs() < 0.01);
    }
}
