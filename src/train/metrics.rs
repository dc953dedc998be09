//! Per-split evaluation of a model: negative ELBO and its two terms (nats per image), and the
//! reconstruction error of the decoder mean at the posterior mean, in pixel space.
use super::input::ModelData;
use super::trainer::Session;
use crate::data::ImageSet;
use crate::model::Mode;
use crate::util::SeededRng;
use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Images per evaluation batch. Kept at training-batch size: at 256, the conv VAE's larger
/// buffers (64x64 images) passed the allocator's 32 MB mmap threshold and were mapped and unmapped
/// at every call; a 1-epoch run's final evaluation took 29 s, 15 s of it in the kernel zeroing
/// pages (6.2M page faults), against 18 s and 0.3M at 64.
const EVAL_BATCH: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitMetrics {
    /// rec + kl, nats per image (one posterior sample per image).
    pub neg_elbo: f64,
    /// -log p(x|z), nats per image (in model space: pixels, or PCA coefficients).
    pub rec: f64,
    /// KL(q(z|x) || p(z)), nats per image.
    pub kl: f64,
    /// Negative ELBO of the pixels, nats per image: equals `neg_elbo` for image models; for the
    /// PCA-coefficient VAE it adds PPCA's density of the discarded directions (see
    /// `InputMap::pixel_nll_offset`), so it compares with the conv VAEs and with PCA.
    pub neg_elbo_pixels: f64,
    /// `neg_elbo_pixels` in bits per dimension (`eval::units::bits_per_dim`); continuous
    /// likelihoods only (Bernoulli is not a density on grey levels).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub bits_per_dim: Option<f64>,
    /// Mean squared error of the decoder mean at z = mu, pixels in [0,1].
    pub mse: f64,
    /// 10 log10(1 / mse).
    pub psnr: f64,
    /// Learned variances: fraction of decoder outputs sitting on the log-variance floor.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub on_floor: Option<f64>,
    /// Hierarchical VAE: KL per group, nats per image (top group first, then coarse to fine).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub kl_groups: Option<Vec<f64>>,
}

pub struct LikelihoodTerms {
    pub neg_elbo: f64,
    pub rec: f64,
    pub kl: f64,
    pub on_floor: Option<f64>,
    pub kl_groups: Option<Vec<f64>>,
}

/// Negative ELBO terms over a whole split in eval mode, with noise from `rng`.
pub fn likelihood_terms(s: &Session, data: &ModelData, mut rng: SeededRng) -> Result<LikelihoodTerms> {
    let shape = s.input.shape();
    let l = s.vae.latent_dim;
    let (mut rec, mut klsum) = (0.0f64, 0.0f64);
    let (mut on, mut total) = (0usize, 0usize);
    let mut any_floor = false;
    let mut kl_groups: Option<Vec<f64>> = None;
    let idx: Vec<usize> = (0..data.n).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = chunk.len();
        let x = data.batch(chunk, shape, &s.device)?;
        let eps = Tensor::from_vec(rng.normal_vec(b * l), (b, l), &s.device)?;
        // Every latent group of the model (the KL against its prior, conditional or learned).
        let t = s.vae.elbo_terms(&x, &eps, Mode::Eval)?;
        rec += t.rec.sum_all()?.to_scalar::<f32>()? as f64;
        klsum += t.kl.sum_all()?.to_scalar::<f32>()? as f64;
        if let Some(groups) = &t.kl_groups {
            let sums = kl_groups.get_or_insert_with(|| vec![0.0f64; groups.len()]);
            for (acc, g) in sums.iter_mut().zip(groups) {
                *acc += g.sum_all()?.to_scalar::<f32>()? as f64;
            }
        }
        let dec = t.dec;
        if let Some(fc) = s.vae.likelihood.floor_count(&dec)? {
            any_floor = true;
            on += fc.on_floor;
            total += fc.total;
        }
    }
    let n = data.n.max(1) as f64;
    Ok(LikelihoodTerms {
        neg_elbo: (rec + klsum) / n,
        rec: rec / n,
        kl: klsum / n,
        on_floor: any_floor.then(|| on as f64 / total.max(1) as f64),
        kl_groups: kl_groups.map(|v| v.into_iter().map(|s| s / n).collect()),
    })
}

/// Decoder means at the posterior means, in pixel space [n, c, h, w], clamped to [0, 1].
pub fn reconstruct(s: &Session, data: &ModelData) -> Result<Vec<f32>> {
    let shape = s.input.shape();
    let idx: Vec<usize> = (0..data.n).collect();
    let mut out = Vec::new();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = data.batch(chunk, shape, &s.device)?;
        let dec = s.vae.reconstruct(&x, Mode::Eval)?;
        let mean = s.vae.likelihood.mean(&dec)?.flatten_all()?.to_vec1::<f32>()?;
        out.extend(s.input.to_pixels(mean, chunk.len()));
    }
    Ok(out)
}

pub fn evaluate_split(s: &Session, set: &ImageSet, rng: SeededRng) -> Result<SplitMetrics> {
    let data = s.input.to_model(set)?;
    let t = likelihood_terms(s, &data, rng)?;
    let recon = reconstruct(s, &data)?;
    let mse = recon
        .iter()
        .zip(&set.images)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum::<f64>()
        / set.images.len().max(1) as f64;
    let offset = s.input.pixel_nll_offset(set)?;
    let neg_elbo_pixels = t.neg_elbo + offset.iter().sum::<f64>() / set.n.max(1) as f64;
    let continuous = !matches!(s.vae.likelihood, crate::model::Likelihood::Bernoulli(_));
    let bits_per_dim = if s.config.likelihood.kind.is_discrete_pixels() {
        Some(crate::eval::units::discrete_bits_per_dim(
            neg_elbo_pixels,
            set.dim(),
        ))
    } else {
        continuous.then(|| crate::eval::units::bits_per_dim(neg_elbo_pixels, set.dim()))
    };
    Ok(SplitMetrics {
        neg_elbo: t.neg_elbo,
        neg_elbo_pixels,
        bits_per_dim,
        rec: t.rec,
        kl: t.kl,
        mse,
        psnr: crate::eval::units::psnr(mse),
        on_floor: t.on_floor,
        kl_groups: t.kl_groups,
    })
}
