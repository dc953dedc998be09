//! The discretized logistic likelihood of PixelCNN++ (Salimans et al. 2017) on 8-bit pixels, and
//! its mixture of K components: a probability mass over the 256 levels, so its negative
//! log-likelihood is a code length and bits/dim need no dequantization term
//! (`util::units::discrete_bits_per_dim`).
//!
//! Pixels are `x = k / 255`. Level k owns the interval `[x - 1/510, x + 1/510]` of a logistic with
//! mean `mu` and scale `s`; the edge levels take the tails (`(-inf, 0.5/255]` and
//! `[254.5/255, inf)`), so the 256 probabilities sum to 1 exactly for every `mu`, `s`.
//!
//! Every log-probability is computed without cancellation. With `a = (x + h - mu) / s`,
//! `b = (x - h - mu) / s` (`h = 1/510`):
//!   sigma(a) - sigma(b) = sigma(a) (1 - sigma(b)) (1 - e^-(a-b)),
//! so `ln P = -softplus(-a) - softplus(b) + ln(1 - e^-(2h/s))`, finite for any scale (PixelCNN++
//! switches to the density at the bin centre when the difference underflows; this form needs no
//! switch). Edge levels: `ln sigma(a) = -softplus(-a)` and `ln(1 - sigma(b)) = -softplus(b)`.
//!
//! Decoder output layout (per data dimension, channel blocks as the Gaussian per-pixel variance
//! uses): one component: [means | log-scales]; K components: [logits (K blocks) | means (K) |
//! log-scales (K)]. Log-scales are soft-floored at `min_log_scale`.
use super::config::OutputActivation;
use super::likelihood::{soft_floor, softplus};
use candle_core::{DType, Result, Tensor};

/// Half the distance between neighbouring levels on the `k / 255` scale.
pub const HALF_BIN: f64 = 0.5 / 255.0;
/// Below this `d = 2h / s` the series of `ln(1 - e^-d)` is used (relative error below
/// d^7 / 8! < 3e-12).
const SERIES_BELOW: f64 = 0.1;

/// `ln(1 - e^-d)` for d > 0, accurate for tiny d (wide logistics) and without NaN gradients in
/// the branch not taken.
pub fn log1mexp_neg(d: &Tensor) -> Result<Tensor> {
    log1mexp_neg_of_log(&d.log()?)
}

/// `ln(1 - e^-d)` from `ln d`. Taking the logarithm rather than `d` keeps it finite where `d`
/// itself underflows: a bin of width `d = 2h / s` with a log-scale above ~87 is 0 in f32, and
/// `ln 0 = -inf` made the loss infinite (a freshly initialised hierarchical decoder put out
/// log-scales near 300). Here `ln d = ln 2h - ln s` exactly.
pub fn log1mexp_neg_of_log(log_d: &Tensor) -> Result<Tensor> {
    let log_below = SERIES_BELOW.ln();
    let small = log_d.lt(log_below)?;
    // ln d + ln((1 - e^-d) / d), the latter's series sum_n (-d)^n / (n+1)! to n = 6 by Horner,
    // on d <= 0.1 (its value stays in (0.95, 1]).
    let log_ds = log_d.minimum(log_below)?;
    let ds = log_ds.exp()?;
    let mut poly = (ds.ones_like()? * (1.0 / 5040.0))?;
    for n in (0..6).rev() {
        let coef = 1.0 / (1..=n + 1).product::<usize>() as f64;
        poly = (poly.mul(&ds)?.neg()? + coef)?;
    }
    let series = (log_ds + poly.log()?)?;
    let db = log_d.maximum(log_below)?.exp()?;
    let direct = (db.neg()?.exp()?.neg()? + 1.0)?.log()?;
    small.where_cond(&series, &direct)
}

/// ln P(x) per element under a discretized logistic with mean `mu` and log-scale `log_s`
/// (already floored); `x` holds levels k/255. All three broadcast to one shape.
pub fn log_prob(x: &Tensor, mu: &Tensor, log_s: &Tensor) -> Result<Tensor> {
    let inv_s = log_s.neg()?.exp()?;
    let centred = x.broadcast_sub(mu)?;
    let a = (&centred + HALF_BIN)?.broadcast_mul(&inv_s)?;
    let b = (&centred - HALF_BIN)?.broadcast_mul(&inv_s)?;
    let log_cdf_a = softplus(&a.neg()?)?.neg()?;
    let log_sf_b = softplus(&b)?.neg()?;
    let log_width = (log_s.neg()? + (2.0 * HALF_BIN).ln())?;
    let mid = ((&log_cdf_a + &log_sf_b)?.broadcast_add(&log1mexp_neg_of_log(&log_width)?))?;
    // Edge levels by the data value (k = 0 below half a bin, k = 255 above 254.5 / 255).
    let lowest = x.lt(HALF_BIN)?.broadcast_as(mid.shape())?;
    let highest = x.gt(1.0 - HALF_BIN)?.broadcast_as(mid.shape())?;
    let v = highest.where_cond(&log_sf_b, &mid)?;
    lowest.where_cond(&log_cdf_a, &v)
}

fn activate(raw: &Tensor, act: OutputActivation) -> Result<Tensor> {
    match act {
        OutputActivation::None => Ok(raw.clone()),
        OutputActivation::Sigmoid => candle_nn::ops::sigmoid(raw),
        // tanh's [-1, 1] mapped onto the pixels' [0, 1].
        OutputActivation::Tanh => (raw.tanh()? + 1.0)? * 0.5,
    }
}

/// A mixture of `components` discretized logistics per data dimension (1: a single logistic).
pub struct DiscretizedLogistic {
    pub components: usize,
    pub min_log_scale: f64,
    pub activation: OutputActivation,
}

/// The decoder output split into its parameters, each [b, K, D].
pub struct LogisticParams {
    /// ln of the mixture weights (zeros for one component).
    pub log_weights: Tensor,
    pub means: Tensor,
    pub log_scales: Tensor,
}

impl DiscretizedLogistic {
    /// Decoder outputs per data dimension.
    pub fn outputs_per_dim(&self) -> usize {
        if self.components == 1 {
            2
        } else {
            3 * self.components
        }
    }

    pub fn params(&self, dec: &Tensor) -> Result<LogisticParams> {
        let b = dec.dim(0)?;
        let k = self.components;
        let p = self.outputs_per_dim();
        let flat = dec.flatten_from(1)?;
        let d = flat.dim(1)? / p;
        let blocks = flat.reshape((b, p, d))?;
        let (log_weights, rest) = if k == 1 {
            (Tensor::zeros((b, 1, d), dec.dtype(), dec.device())?, blocks)
        } else {
            let logits = blocks.narrow(1, 0, k)?;
            (
                candle_nn::ops::log_softmax(&logits, 1)?,
                blocks.narrow(1, k, 2 * k)?,
            )
        };
        let means = activate(&rest.narrow(1, 0, k)?, self.activation)?;
        let log_scales = soft_floor(&rest.narrow(1, k, k)?, self.min_log_scale)?;
        Ok(LogisticParams {
            log_weights,
            means,
            log_scales,
        })
    }

    /// ln P(x) per element [b, D] for data `x` (any shape with b rows and D values per row).
    pub fn log_prob_per_dim(&self, x: &Tensor, dec: &Tensor) -> Result<Tensor> {
        let p = self.params(dec)?;
        let b = x.dim(0)?;
        let xf = x.flatten_from(1)?.reshape((b, 1, ()))?;
        let lp = log_prob(&xf, &p.means, &p.log_scales)?;
        if self.components == 1 {
            return lp.squeeze(1);
        }
        (lp + p.log_weights)?.log_sum_exp(1)
    }

    /// -ln P(x) per item, nats, [b].
    pub fn nll(&self, x: &Tensor, dec: &Tensor) -> Result<Tensor> {
        self.log_prob_per_dim(x, dec)?.sum(1)?.neg()
    }

    /// The mixture's mean (of the underlying continuous logistics), shaped like the data:
    /// [b, c, h, w] from a conv decoder's [b, c * outputs_per_dim, h, w].
    pub fn mean(&self, dec: &Tensor) -> Result<Tensor> {
        let p = self.params(dec)?;
        let m = (p.log_weights.exp()? * p.means)?.sum(1)?;
        let mut shape = dec.dims().to_vec();
        shape[1] /= self.outputs_per_dim();
        m.reshape(shape)
    }
}

/// ln P(level k) for k = 0..=255 under one discretized logistic: a check of normalisation.
pub fn level_log_probs(mu: f64, log_s: f64, dtype: DType) -> Result<Vec<f64>> {
    let dev = candle_core::Device::Cpu;
    let x: Vec<f64> = (0..256).map(|k| k as f64 / 255.0).collect();
    let x = Tensor::from_vec(x, 256, &dev)?.to_dtype(dtype)?;
    let mu = Tensor::new(&[mu], &dev)?.to_dtype(dtype)?;
    let ls = Tensor::new(&[log_s], &dev)?.to_dtype(dtype)?;
    log_prob(&x, &mu, &ls)?.to_dtype(DType::F64)?.to_vec1()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::SeededRng;
    use candle_core::{Device, Var};

    fn logsumexp(v: &[f64]) -> f64 {
        let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        m + v.iter().map(|x| (x - m).exp()).sum::<f64>().ln()
    }

    /// The plain definition in f64: CDF differences of the logistic, tails at the edges.
    fn direct_prob(k: usize, mu: f64, s: f64) -> f64 {
        let cdf = |v: f64| 1.0 / (1.0 + (-(v - mu) / s).exp());
        let x = k as f64 / 255.0;
        let hi = if k == 255 { 1.0 } else { cdf(x + HALF_BIN) };
        let lo = if k == 0 { 0.0 } else { cdf(x - HALF_BIN) };
        hi - lo
    }

    #[test]
    fn probabilities_over_the_256_levels_sum_to_one() {
        // Narrow, wide, off-range and edge-centred logistics, in f64 and in f32 (training dtype).
        let cases = [
            (0.5, 0.0),
            (0.3, -3.0),
            (0.0, -7.0),
            (1.0, -7.0),
            (0.5, -12.0),
            (137.0 / 255.0, -9.0),
            (0.2, 4.0),
            (0.7, 12.0),
            (-3.0, -1.0),
            (5.0, -5.0),
        ];
        for (mu, ls) in cases {
            let lp = level_log_probs(mu, ls, DType::F64).unwrap();
            assert!(
                lp.iter().all(|v| v.is_finite() && *v <= 1e-12),
                "{mu} {ls}: {lp:?}"
            );
            let total = logsumexp(&lp);
            assert!(total.abs() < 1e-9, "f64 mu {mu} log-scale {ls}: ln sum = {total}");
            // In f32 (training) the data's rounding (6e-8) is resolved only at scales above the
            // log-scale floor the likelihood applies (-7: 9e-4).
            if ls < -7.0 {
                continue;
            }
            let lp32 = level_log_probs(mu, ls, DType::F32).unwrap();
            let total32 = logsumexp(&lp32);
            assert!(
                total32.abs() < 1e-4,
                "f32 mu {mu} log-scale {ls}: ln sum = {total32}"
            );
        }
    }

    #[test]
    fn log_probs_match_the_direct_definition() {
        for (mu, ls) in [(0.4, -2.0), (0.9, -4.5), (0.1, 0.5), (0.5, 3.0)] {
            let lp = level_log_probs(mu, ls, DType::F64).unwrap();
            for k in [0usize, 1, 50, 102, 128, 200, 254, 255] {
                let p = direct_prob(k, mu, ls.exp());
                if p > 1e-200 {
                    assert!(
                        (lp[k] - p.ln()).abs() < 1e-8 * (1.0 + p.ln().abs()),
                        "k {k} mu {mu} ls {ls}: {} vs {}",
                        lp[k],
                        p.ln()
                    );
                }
            }
        }
    }

    fn mixture_case(k: usize, seed: u64) -> (DiscretizedLogistic, Tensor, Var) {
        let lik = DiscretizedLogistic {
            components: k,
            min_log_scale: -7.0,
            activation: OutputActivation::Sigmoid,
        };
        let (b, c, h, w) = (2, 1, 3, 2);
        let mut rng = SeededRng::new(seed);
        let levels: Vec<f64> = rng
            .uniform_vec(b * c * h * w)
            .into_iter()
            .enumerate()
            // Include both edge levels.
            .map(|(i, u)| match i {
                0 => 0.0,
                1 => 1.0,
                _ => (u as f64 * 255.0).floor() / 255.0,
            })
            .collect();
        let x = Tensor::from_vec(levels, (b, c, h, w), &Device::Cpu).unwrap();
        let p = lik.outputs_per_dim();
        let d: Vec<f64> = rng
            .normal_vec(b * c * p * h * w)
            .into_iter()
            .map(|v| v as f64)
            .collect();
        let dec = Var::from_tensor(&Tensor::from_vec(d, (b, c * p, h, w), &Device::Cpu).unwrap()).unwrap();
        (lik, x, dec)
    }

    #[test]
    fn mixture_nll_matches_a_direct_computation_and_gradients() {
        for k in [1usize, 3] {
            let (lik, x, dec) = mixture_case(k, 10 + k as u64);
            let nll: Vec<f64> = lik.nll(&x, dec.as_tensor()).unwrap().to_vec1().unwrap();
            // Direct: per pixel sum_k pi_k P_k(x), parameters read from the layout by hand.
            let xv: Vec<f64> = x.flatten_all().unwrap().to_vec1().unwrap();
            let dv: Vec<f64> = dec.flatten_all().unwrap().to_vec1().unwrap();
            let per_item = xv.len() / 2;
            let p = lik.outputs_per_dim();
            for item in 0..2 {
                let mut want = 0.0;
                for j in 0..per_item {
                    let at = |block: usize| dv[item * p * per_item + block * per_item + j];
                    let (logits, mo, so): (Vec<f64>, usize, usize) = if k == 1 {
                        (vec![0.0], 0, 1)
                    } else {
                        ((0..k).map(at).collect(), k, 2 * k)
                    };
                    let lse = logsumexp(&logits);
                    let mut prob = 0.0;
                    for c in 0..k {
                        let mu = 1.0 / (1.0 + (-at(mo + c)).exp());
                        let ls = -7.0 + (1.0 + (at(so + c) + 7.0).exp()).ln();
                        let level = (xv[item * per_item + j] * 255.0).round() as usize;
                        prob += (logits[c] - lse).exp() * direct_prob(level, mu, ls.exp());
                    }
                    want -= prob.ln();
                }
                assert!(
                    (nll[item] - want).abs() < 1e-8 * want.abs(),
                    "K {k} item {item}: {} vs {want}",
                    nll[item]
                );
            }
            crate::model::likelihood::tests::check_grad(&dec, &|d| lik.nll(&x, d)?.sum_all());
            // Mean has the data's shape and lies inside the means' range.
            let m = lik.mean(dec.as_tensor()).unwrap();
            assert_eq!(m.dims(), x.dims());
        }
    }

    #[test]
    fn gradients_are_finite_at_extreme_scales_in_f32() {
        let dev = Device::Cpu;
        let x = Tensor::new(&[0.0f32, 1.0, 0.5, 0.25, 0.0, 1.0], &dev)
            .unwrap()
            .reshape((1, 6))
            .unwrap();
        // Up to log-scales whose bin width 2h/s underflows f32 (above ~87).
        for ls in [-40.0f32, -7.0, 0.0, 15.0, 60.0, 95.0, 300.0] {
            let dec: Vec<f32> = vec![0.1, 3.0, -2.0, 0.0, 40.0, -40.0, ls, ls, ls, ls, ls, ls];
            let dec = Var::from_tensor(&Tensor::from_vec(dec, (1, 12), &dev).unwrap()).unwrap();
            let lik = DiscretizedLogistic {
                components: 1,
                min_log_scale: -7.0,
                activation: OutputActivation::Sigmoid,
            };
            let loss = lik.nll(&x, dec.as_tensor()).unwrap().sum_all().unwrap();
            let v: f32 = loss.to_scalar().unwrap();
            assert!(v.is_finite(), "log-scale {ls}: nll {v}");
            let g = loss.backward().unwrap();
            let gv: Vec<f32> = g.get(&dec).unwrap().flatten_all().unwrap().to_vec1().unwrap();
            assert!(gv.iter().all(|v| v.is_finite()), "log-scale {ls}: {gv:?}");
        }
    }
}
