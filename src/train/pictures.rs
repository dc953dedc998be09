//! The run's pictures: reconstructions (original beside decoder mean at the posterior mean) for
//! each split, and decoder means of samples from the prior.
use super::input::to_tensor;
use super::metrics::reconstruct;
use super::trainer::Session;
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
            cols.max(2) / 2 * 2,
        )?;
    }
    let samples = prior_samples(s, n_grid, &mut SeededRng::derived(s.config.seed, "samples"))?;
    save_grid(&run.path("samples_prior.png"), &samples, n_grid, c, h, w, cols)?;
    Ok(())
}

/// Decoder means of `n` latents drawn from the prior, pixels [n, c, h, w] in [0, 1].
pub fn prior_samples(s: &Session, n: usize, rng: &mut SeededRng) -> Result<Vec<f32>> {
    let l = s.vae.latent_dim;
    let z = Tensor::from_vec(rng.normal_vec(n * l), (n, l), &s.device)?;
    let dec = s.vae.decode(&z, Mode::Eval)?;
    let mean = s.vae.likelihood.mean(&dec)?.flatten_all()?.to_vec1::<f32>()?;
    let _ = to_tensor;
    Ok(s.input.to_pixels(mean, n))
}

// Until the data layer's grid writer lands on main (data::grid::save_grid / save_recon_grid,
// same signatures), the run's grids are written by these two.
#[allow(clippy::too_many_arguments)]
fn save_recon_grid(
    path: &std::path::Path,
    originals: &[f32],
    recons: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<()> {
    let d = c * h * w;
    let mut both = Vec::with_capacity(2 * n * d);
    for i in 0..n {
        both.extend_from_slice(&originals[i * d..(i + 1) * d]);
        both.extend_from_slice(&recons[i * d..(i + 1) * d]);
    }
    save_grid(path, &both, 2 * n, c, h, w, cols.max(2))
}

fn save_grid(
    path: &std::path::Path,
    px: &[f32],
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    cols: usize,
) -> Result<()> {
    let cols = cols.max(1).min(n.max(1));
    let rows = n.div_ceil(cols);
    let tile_w = w * c + 2;
    let (gw, gh) = ((cols * tile_w) as u32, (rows * (h + 2)) as u32);
    let mut img = image::GrayImage::from_pixel(gw.max(1), gh.max(1), image::Luma([128]));
    let d = c * h * w;
    for i in 0..n {
        let (r, col) = (i / cols, i % cols);
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let v = px[i * d + ch * h * w + y * w + x].clamp(0.0, 1.0);
                    img.put_pixel(
                        (col * tile_w + 1 + ch * w + x) as u32,
                        (r * (h + 2) + 1 + y) as u32,
                        image::Luma([(v * 255.0).round() as u8]),
                    );
                }
            }
        }
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    crate::util::write_atomic(path, &bytes)
}
