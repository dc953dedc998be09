//! Per-split evaluation of a model: negative ELBO and its two terms (nats per image), and the
//! reconstruction error of the decoder mean at the posterior mean, in pixel space.
use super::input::ModelData;
use super::session::Session;
use crate::data::ImageSet;
use crate::format::{SplitEval, VaeSplitMetrics};
use crate::model::Mode;
use crate::util::SeededRng;
use anyhow::Result;
use candle_core::Tensor;

/// Images per evaluation batch. Kept at training-batch size, so that the conv VAE's buffers stay
/// below the allocator's mmap threshold (figures in bench/TRAINING_SPEED.md).
const EVAL_BATCH: usize = 64;

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

pub fn evaluate_split(s: &Session, set: &ImageSet, rng: SeededRng) -> Result<VaeSplitMetrics> {
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
        Some(crate::util::units::discrete_bits_per_dim(
            neg_elbo_pixels,
            set.dim(),
        ))
    } else {
        continuous.then(|| crate::util::units::bits_per_dim(neg_elbo_pixels, set.dim()))
    };
    Ok(VaeSplitMetrics {
        neg_elbo: t.neg_elbo,
        neg_elbo_pixels: Some(neg_elbo_pixels),
        bits_per_dim,
        rec: t.rec,
        kl: t.kl,
        mse,
        psnr: crate::util::units::psnr(mse),
        on_floor: t.on_floor,
        kl_groups: t.kl_groups,
        eval: SplitEval::default(),
    })
}
