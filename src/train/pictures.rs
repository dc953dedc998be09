//! The run's pictures: reconstructions (original beside decoder mean at the posterior mean) for
//! each split, and decoder means of samples from the prior.
use super::metrics::reconstruct;
use super::session::Session;
use crate::data::grid::{save_grid, save_recon_grid};
use crate::data::Splits;
use crate::model::Mode;
use crate::util::{RunDir, SeededRng};
use anyhow::Result;
use candle_core::Tensor;

pub fn write_all(s: &Session, splits: &Splits, run: &RunDir) -> Result<()> {
    let n_grid = s.config.train.grid_images.max(1);
    let (c, h, w) = s.input.image_shape();
    let cols = (n_grid as f64).sqrt().ceil().max(1.0) as usize;
    for split in crate::data::Split::ALL {
        let set = splits.get(split).head(n_grid);
        if set.n == 0 {
            continue;
        }
        let data = s.input.to_model(&set)?;
        let recon = reconstruct(s, &data)?;
        save_recon_grid(
            &run.path(&format!("recon_{}.png", split.name())),
            &set.images,
            &recon,
            set.n,
            c,
            h,
            w,
            cols,
        )?;
    }
    let samples = prior_samples(s, n_grid, &mut SeededRng::derived(s.config.seed, "samples"))?;
    save_grid(&run.path("samples_prior.png"), &samples, n_grid, c, h, w, cols)?;
    Ok(())
}

/// Decoder means of `n` latents drawn from the prior, pixels [n, c, h, w] in [0, 1] (a
/// hierarchy's lower groups drawn from their conditional priors).
pub fn prior_samples(s: &Session, n: usize, rng: &mut SeededRng) -> Result<Vec<f32>> {
    let dec = if s.vae.is_hierarchical() {
        let eps = Tensor::from_vec(
            rng.normal_vec(n * s.vae.full_code_dim()),
            (n, s.vae.full_code_dim()),
            &s.device,
        )?;
        s.vae.generate(&eps, 1.0, Mode::Eval)?.0
    } else {
        let l = s.vae.code_dim();
        let z = Tensor::from_vec(s.vae.prior_codes(n, rng)?, (n, l), &s.device)?;
        s.vae.decode(&z, Mode::Eval)?
    };
    let mean = s.vae.likelihood.mean(&dec)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(s.input.to_pixels(mean, n))
}
