//! Likelihood bounds of a trained VAE: the ELBO and the importance-weighted bound (IWAE, Burda et
//! al. 2016) with K samples from the encoder,
//!   log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x)  >=  (1/K) sum_k log [p(x|z_k) p(z_k) / q(z_k|x)].
//! Both are computed from the same K log-weights per image, so the IWAE bound is never below that
//! ELBO estimate (log-mean-exp >= mean); reported as negative bounds in nats per image of the
//! pixels: for the PCA-coefficient VAE each log-weight also carries PPCA's density of the discarded
//! directions (`LoadedRun::pixel_nll_offset`, an exact change of variables), so the bounds compare
//! with the conv VAEs and with PCA's own likelihood.
use super::latent::EVAL_BATCH;
use crate::data::ImageSet;
use crate::train::LoadedRun;
use crate::util::SeededRng;
use anyhow::{bail, Result};
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BoundEstimate {
    /// -ELBO, nats per image (mean over the K samples' log-weights).
    pub neg_elbo: f64,
    /// -IWAE bound, nats per image (<= neg_elbo).
    pub neg_iwae: f64,
    /// Nats per image added to the model-space NLL to reach pixel space (mean over the images;
    /// 0 for image models).
    pub pixel_offset: f64,
    pub samples: usize,
    pub images: usize,
}

/// Log-weights [n, K] of `set` under `run`: log p(x|z) + log p(z) - log q(z|x), z ~ q(z|x).
pub fn log_weights(run: &LoadedRun, set: &ImageSet, k: usize, rng: &mut SeededRng) -> Result<Vec<Vec<f64>>> {
    if k == 0 {
        bail!("--iwae-samples must be at least 1");
    }
    if !run.vae().is_flat_standard() {
        return model_log_weights(run, set, k, rng);
    }
    let l = run.latent_dim();
    // Images per pass, each repeated K times in one decoder batch.
    let per_pass = (EVAL_BATCH * 4 / k).max(1);
    let mut out = Vec::with_capacity(set.n);
    for start in (0..set.n).step_by(per_pass) {
        let idx: Vec<usize> = (start..(start + per_pass).min(set.n)).collect();
        let b = idx.len();
        let x = run.model_input(&set.select(&idx))?;
        let (mu, lv) = run.encode(&x)?;
        // Sample-major repetition: row j * b + i is image i's j-th sample.
        let rep = |t: &Tensor| Tensor::cat(&vec![t; k], 0);
        let (x_r, mu_r, lv_r) = (rep(&x)?, rep(&mu)?, rep(&lv)?);
        let eps = Tensor::from_vec(rng.normal_vec(k * b * l), (k * b, l), &run.device)?;
        let z = (&mu_r + (&lv_r * 0.5)?.exp()?.mul(&eps)?)?;
        let dec = run.decode(&z)?;
        let log_px = run
            .log_px_given_z(&x_r, &dec)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        // log p(z) - log q(z|x) = -z^2/2 + eps^2/2 + logvar/2 summed over latents (2 pi cancels).
        let z_v = z.flatten_all()?.to_vec1::<f32>()?;
        let e_v = eps.flatten_all()?.to_vec1::<f32>()?;
        let lv_v = lv_r.flatten_all()?.to_vec1::<f32>()?;
        let mut w = vec![Vec::with_capacity(k); b];
        for j in 0..k {
            for (i, wi) in w.iter_mut().enumerate() {
                let r = j * b + i;
                let mut s = 0.0f64;
                for t in r * l..(r + 1) * l {
                    s += 0.5 * (-(z_v[t] as f64).powi(2) + (e_v[t] as f64).powi(2) + lv_v[t] as f64);
                }
                wi.push(log_px[r] as f64 + s);
            }
        }
        out.extend(w);
    }
    Ok(out)
}

/// Log-weights from the model's own `Vae::log_weights`: every latent group of a hierarchy, the
/// learned prior's density for the VampPrior.
fn model_log_weights(
    run: &LoadedRun,
    set: &ImageSet,
    k: usize,
    rng: &mut SeededRng,
) -> Result<Vec<Vec<f64>>> {
    let vae = run.vae();
    let l = vae.latent_dim;
    let per_pass = (EVAL_BATCH * 4 / k).max(1);
    let mut out = Vec::with_capacity(set.n);
    for start in (0..set.n).step_by(per_pass) {
        let idx: Vec<usize> = (start..(start + per_pass).min(set.n)).collect();
        let b = idx.len();
        let x = run.model_input(&set.select(&idx))?;
        let x_r = Tensor::cat(&vec![&x; k], 0)?;
        let eps = Tensor::from_vec(rng.normal_vec(k * b * l), (k * b, l), &run.device)?;
        let lw = vae
            .log_weights(&x_r, &eps, crate::model::Mode::Eval)?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1::<f32>()?;
        for i in 0..b {
            out.push((0..k).map(|j| lw[j * b + i] as f64).collect());
        }
    }
    Ok(out)
}

fn log_mean_exp(v: &[f64]) -> f64 {
    let m = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    if !m.is_finite() {
        return m;
    }
    m + (v.iter().map(|x| (x - m).exp()).sum::<f64>() / v.len() as f64).ln()
}

/// ELBO and IWAE bound of `set` with `k` importance samples per image.
pub fn bounds(run: &LoadedRun, set: &ImageSet, k: usize, rng: &mut SeededRng) -> Result<BoundEstimate> {
    if set.n == 0 {
        bail!("no images to evaluate the likelihood on");
    }
    let mut w = log_weights(run, set, k, rng)?;
    let offsets = run.pixel_nll_offset(set)?;
    for (wi, off) in w.iter_mut().zip(&offsets) {
        for v in wi.iter_mut() {
            *v -= off;
        }
    }
    let n = w.len() as f64;
    let elbo: f64 = w
        .iter()
        .map(|wi| wi.iter().sum::<f64>() / wi.len() as f64)
        .sum::<f64>()
        / n;
    let iwae: f64 = w.iter().map(|wi| log_mean_exp(wi)).sum::<f64>() / n;
    if !elbo.is_finite() || !iwae.is_finite() {
        bail!("the likelihood bound is not finite (ELBO {elbo}, IWAE {iwae}): the model may have diverged");
    }
    Ok(BoundEstimate {
        neg_elbo: -elbo,
        neg_iwae: -iwae,
        pixel_offset: offsets.iter().sum::<f64>() / n,
        samples: k,
        images: set.n,
    })
}
