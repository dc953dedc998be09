//! Per-split evaluation of a model: negative ELBO and its two terms (nats per image), and the
//! reconstruction error of the decoder mean at the posterior mean, in pixel space.
use super::input::ModelData;
use super::session::Session;
use crate::data::ImageSet;
use crate::format::{SplitEval, VaeSplitMetrics};
use crate::model::{kl, Mode};
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
}

/// Negative ELBO terms over a whole split in eval mode, with noise from `rng`.
pub fn likelihood_terms(s: &Session, data: &ModelData, mut rng: SeededRng) -> Result<LikelihoodTerms> {
    let shape = s.input.shape();
    let l = s.vae.latent_dim;
    let (mut rec, mut klsum) = (0.0f64, 0.0f64);
    let (mut on, mut total) = (0usize, 0usize);
    let mut any_floor = false;
    let idx: Vec<usize> = (0..data.n).collect();
    for chunk in idx.chunks(EVAL_BATCH) {
        let b = chunk.len();
        let x = data.batch(chunk, shape, &s.device)?;
        let (mu, lv) = s.vae.encode(&x, Mode::Eval)?;
        let eps = Tensor::from_vec(rng.normal_vec(b * l), (b, l), &s.device)?;
        let z = crate::model::Vae::reparameterise(&mu, &lv, &eps)?;
        let dec = s.vae.decode(&z, Mode::Eval)?;
        rec += s
            .vae
            .likelihood
            .nll(&x, &dec, Mode::Eval)?
            .sum_all()?
            .to_scalar::<f32>()? as f64;
        klsum += kl::kl_per_item(&mu, &lv)?.sum_all()?.to_scalar::<f32>()? as f64;
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
    })
}

/// Decoder means at the posterior means, in pixel space [n, c, h, w], clamped to [0, 1].
pub fn reconstruct(s: &Session, data: &ModelData) -> Result<Vec<f32>> {
    let shape = s.input.shape();
    let idx: Vec<usize> = (0..data.n).collect();
    let mut out = Vec::new();
    for chunk in idx.chunks(EVAL_BATCH) {
        let x = data.batch(chunk, shape, &s.device)?;
        let (mu, _) = s.vae.encode(&x, Mode::Eval)?;
        let dec = s.vae.decode(&mu, Mode::Eval)?;
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
    Ok(VaeSplitMetrics {
        neg_elbo: t.neg_elbo,
        neg_elbo_pixels: Some(neg_elbo_pixels),
        bits_per_dim: continuous.then(|| crate::util::units::bits_per_dim(neg_elbo_pixels, set.dim())),
        rec: t.rec,
        kl: t.kl,
        mse,
        psnr: crate::util::units::psnr(mse),
        on_floor: t.on_floor,
        eval: SplitEval::default(),
    })
}
