//! A trained run's latent space: posteriors of a split, decoding codes to pixels, and the three
//! samplers (`prior`, `gmm`, `two-stage`) that choose which codes to decode.
use super::gmm::{CovarianceType, Gmm, GmmParams};
use super::two_stage::{self, TwoStageParams, TwoStageVae};
use crate::data::ImageSet;
use crate::train::LoadedRun;
use crate::util::SeededRng;
use anyhow::Result;
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

/// Images per forward pass in evaluation.
pub const EVAL_BATCH: usize = 128;

/// Posterior means and log-variances of a set, each [n, latent].
pub struct Posterior {
    pub mu: Vec<f32>,
    pub logvar: Vec<f32>,
    pub n: usize,
    pub latent: usize,
}

impl Posterior {
    /// Variance over the images of each latent's posterior mean.
    pub fn mean_variance_per_dim(&self) -> Vec<f64> {
        let (n, l) = (self.n, self.latent);
        let mut mean = vec![0.0f64; l];
        for row in self.mu.chunks(l) {
            for t in 0..l {
                mean[t] += row[t] as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n.max(1) as f64);
        let mut var = vec![0.0f64; l];
        for row in self.mu.chunks(l) {
            for t in 0..l {
                var[t] += (row[t] as f64 - mean[t]).powi(2);
            }
        }
        var.iter_mut().for_each(|v| *v /= n.max(1) as f64);
        var
    }

    /// Active units (Burda et al. 2016): latents whose posterior mean varies over the data with
    /// variance above 0.01.
    pub fn active_units(&self) -> usize {
        self.mean_variance_per_dim().iter().filter(|&&v| v > 0.01).count()
    }

    /// Columns `start..start + width` of every row (one latent group of a full code).
    pub fn columns(&self, start: usize, width: usize) -> Posterior {
        let pick = |v: &[f32]| -> Vec<f32> {
            v.chunks(self.latent)
                .flat_map(|row| row[start..start + width].iter().copied())
                .collect()
        };
        Posterior {
            mu: pick(&self.mu),
            logvar: pick(&self.logvar),
            n: self.n,
            latent: width,
        }
    }

    /// Active units of each group of a full code whose groups are `dims` wide, in order.
    pub fn active_units_per_group(&self, dims: &[usize]) -> Vec<usize> {
        let mut start = 0;
        dims.iter()
            .map(|&d| {
                let units = self.columns(start, d).active_units();
                start += d;
                units
            })
            .collect()
    }

    /// z = mu + sigma * eps for every image, [n, latent].
    pub fn sample(&self, rng: &mut SeededRng) -> Vec<f32> {
        let eps = rng.normal_vec(self.mu.len());
        self.mu
            .iter()
            .zip(&self.logvar)
            .zip(eps)
            .map(|((m, lv), e)| m + (0.5 * lv).exp() * e)
            .collect()
    }
}

pub fn posterior(run: &LoadedRun, set: &ImageSet) -> Result<Posterior> {
    encode_set(run, set, run.latent_dim(), |x| run.encode(x))
}

/// The posterior of the full code (every latent group; see `Vae::posterior_full`) over a set:
/// what the ex-post samplers fit. The same as [`posterior`] for the flat VAEs; a hierarchy's top
/// group is its leading `latent_dim` columns.
pub fn posterior_full(run: &LoadedRun, set: &ImageSet) -> Result<Posterior> {
    encode_set(run, set, run.full_code_dim(), |x| run.encode_full(x))
}

/// (mu, logvar), `width` columns, of every image of `set`; `encode` takes batches of model input.
fn encode_set(
    run: &LoadedRun,
    set: &ImageSet,
    width: usize,
    encode: impl Fn(&Tensor) -> Result<(Tensor, Tensor)>,
) -> Result<Posterior> {
    let mut mu = Vec::with_capacity(set.n * width);
    let mut logvar = Vec::with_capacity(set.n * width);
    for start in (0..set.n).step_by(EVAL_BATCH) {
        let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(set.n)).collect();
        let x = run.model_input(&set.select(&idx))?;
        let (m, lv) = encode(&x)?;
        mu.extend(m.flatten_all()?.to_vec1::<f32>()?);
        logvar.extend(lv.flatten_all()?.to_vec1::<f32>()?);
    }
    Ok(Posterior {
        mu,
        logvar,
        n: set.n,
        latent: width,
    })
}

/// Decoder means of full codes `z` ([n, full_code_dim]) in pixel space [n, c, h, w], in [0, 1].
pub fn decode_full_to_pixels(run: &LoadedRun, z: &[f32], n: usize) -> Result<Vec<f32>> {
    decode_set(run, z, n, run.full_code_dim(), |z| run.decode_full(z))
}

/// Decoder means of codes `z` ([n, latent]) in pixel space [n, c, h, w], clamped to [0, 1].
pub fn decode_to_pixels(run: &LoadedRun, z: &[f32], n: usize) -> Result<Vec<f32>> {
    decode_set(run, z, n, run.latent_dim(), |z| run.decode(z))
}

fn decode_set(
    run: &LoadedRun,
    z: &[f32],
    n: usize,
    width: usize,
    decode: impl Fn(&Tensor) -> Result<Tensor>,
) -> Result<Vec<f32>> {
    let mut out = Vec::new();
    for start in (0..n).step_by(EVAL_BATCH) {
        let b = (n - start).min(EVAL_BATCH);
        let zt = Tensor::from_slice(&z[start * width..(start + b) * width], (b, width), &run.device)?;
        out.extend(run.mean_pixels(&decode(&zt)?)?);
    }
    Ok(out)
}

/// Reconstructions of a set: decoder means at the posterior means of every latent group
/// (`Vae::reconstruct`; for a hierarchy, decoding the top group's mean alone would put the lower
/// groups at their prior means), pixels [n, c, h, w] in [0, 1].
pub fn reconstruct_to_pixels(run: &LoadedRun, set: &ImageSet) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(set.images.len());
    for start in (0..set.n).step_by(EVAL_BATCH) {
        let idx: Vec<usize> = (start..(start + EVAL_BATCH).min(set.n)).collect();
        let x = run.model_input(&set.select(&idx))?;
        let dec = run.vae().reconstruct(&x, crate::model::Mode::Eval)?;
        out.extend(run.mean_pixels(&dec)?);
    }
    Ok(out)
}

/// Active units (Burda's criterion) of each latent group, top group first: a hierarchy's lower
/// groups at the posterior means of the groups above.
pub fn active_units_per_group(run: &LoadedRun, set: &ImageSet) -> Result<Vec<usize>> {
    Ok(posterior_full(run, set)?.active_units_per_group(&run.vae().group_dims()))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum SamplerKind {
    /// z ~ N(0, I), the VAE's own prior.
    Prior,
    /// An ex-post Gaussian mixture fitted to the training posterior means.
    Gmm,
    /// A second VAE on the latents (Dai & Wipf 2019).
    TwoStage,
}

impl SamplerKind {
    pub const ALL: [SamplerKind; 3] = [SamplerKind::Prior, SamplerKind::Gmm, SamplerKind::TwoStage];
    pub fn name(self) -> &'static str {
        match self {
            SamplerKind::Prior => "prior",
            SamplerKind::Gmm => "gmm",
            SamplerKind::TwoStage => "two_stage",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SamplerOptions {
    pub gmm_components: usize,
    /// Covariance of each mixture component: full (scikit-learn's default) or diagonal.
    #[serde(default)]
    pub gmm_covariance: CovarianceType,
    /// Fit the GMM / second stage on at most this many training images.
    pub max_fit_images: usize,
    pub two_stage: TwoStageParams,
    pub seed: u64,
    /// The prior sampler's temperature (NVAE): every group's noise scaled by it; 1 draws from
    /// the model's own prior.
    #[serde(default = "unit_temperature")]
    pub temperature: f64,
}

fn unit_temperature() -> f64 {
    1.0
}

impl Default for SamplerOptions {
    fn default() -> Self {
        Self {
            gmm_components: 10,
            gmm_covariance: CovarianceType::Full,
            max_fit_images: 10_000,
            two_stage: TwoStageParams::default(),
            seed: 0,
            temperature: 1.0,
        }
    }
}

/// The prior sampler's temperature is a positive number (`--temperature`).
pub fn check_temperature(temperature: f64) -> Result<()> {
    if !(temperature.is_finite() && temperature > 0.0) {
        anyhow::bail!("--temperature {temperature}: the prior's temperature must be a positive number");
    }
    Ok(())
}

/// A fitted sampler of full codes (every latent group of a hierarchy: the ex-post samplers fit
/// the code the decoder consumes, not only its top group).
pub enum LatentSampler {
    /// The model's N(0, I) prior; a hierarchy's lower groups from their conditional priors
    /// (ancestral sampling through the decoder).
    Prior {
        latent: usize,
        temperature: f64,
        hierarchical: bool,
    },
    /// The run's VampPrior: an equal-weight mixture of diagonal Gaussians, means and
    /// log-variances [K, latent].
    Vamp {
        means: Vec<f32>,
        logvars: Vec<f32>,
        latent: usize,
    },
    Gmm(Gmm),
    TwoStage(TwoStageVae),
}

impl LatentSampler {
    /// Fit the sampler of `kind` to the training posterior of `run`.
    pub fn fit(kind: SamplerKind, run: &LoadedRun, train: &ImageSet, opts: &SamplerOptions) -> Result<Self> {
        let l = run.full_code_dim();
        if kind == SamplerKind::Prior {
            return Self::prior(run, opts.temperature);
        }
        let mut rng = SeededRng::derived(opts.seed, "sampler-fit");
        let set = if train.n > opts.max_fit_images {
            let mut idx: Vec<usize> = (0..train.n).collect();
            rng.shuffle(&mut idx);
            idx.truncate(opts.max_fit_images);
            idx.sort_unstable();
            train.select(&idx)
        } else {
            train.clone()
        };
        let post = posterior_full(run, &set)?;
        Ok(match kind {
            SamplerKind::Prior => unreachable!("handled above"),
            SamplerKind::Gmm => {
                let params = GmmParams {
                    n_components: opts.gmm_components,
                    covariance_type: opts.gmm_covariance,
                    seed: opts.seed,
                    ..Default::default()
                };
                LatentSampler::Gmm(params.check()?.fit(&post.mu, post.n, l)?)
            }
            SamplerKind::TwoStage => {
                let z = post.sample(&mut rng);
                let params = TwoStageParams {
                    seed: opts.seed,
                    ..opts.two_stage.clone()
                };
                LatentSampler::TwoStage(two_stage::fit(&z, post.n, l, &params)?)
            }
        })
    }

    /// The run's own prior over the code at `temperature`: N(0, I) (a hierarchy's lower groups
    /// from their conditional priors), or its VampPrior (sampled as is).
    pub fn prior(run: &LoadedRun, temperature: f64) -> Result<Self> {
        check_temperature(temperature)?;
        let latent = run.full_code_dim();
        Ok(match run.vae().prior_components()? {
            None => LatentSampler::Prior {
                latent,
                temperature,
                hierarchical: run.vae().is_hierarchical(),
            },
            Some((mu, lv)) => LatentSampler::Vamp {
                means: mu.flatten_all()?.to_vec1()?,
                logvars: lv.flatten_all()?.to_vec1()?,
                latent,
            },
        })
    }

    /// `n` codes [n, full_code_dim] (a hierarchy's prior: the noise `draw` turns into codes).
    fn latents(&self, n: usize, rng: &mut SeededRng) -> Result<Vec<f32>> {
        match self {
            LatentSampler::Prior {
                latent, temperature, ..
            } => {
                let mut z = rng.normal_vec(n * latent);
                if *temperature != 1.0 {
                    z.iter_mut().for_each(|v| *v *= *temperature as f32);
                }
                Ok(z)
            }
            LatentSampler::Vamp {
                means,
                logvars,
                latent,
            } => {
                let l = *latent;
                let k = means.len() / l;
                let mut out = Vec::with_capacity(n * l);
                for _ in 0..n {
                    let c = rng.below(k);
                    let e = rng.normal_vec(l);
                    out.extend((0..l).map(|t| means[c * l + t] + (0.5 * logvars[c * l + t]).exp() * e[t]));
                }
                Ok(out)
            }
            LatentSampler::Gmm(g) => Ok(g.sample(n, rng)),
            LatentSampler::TwoStage(t) => t.sample(n, rng),
        }
    }

    /// What was fitted, for metrics.json.
    pub fn describe(&self) -> serde_json::Value {
        match self {
            LatentSampler::Prior { temperature, .. } => serde_json::json!({ "temperature": temperature }),
            LatentSampler::Vamp { means, latent, .. } => {
                serde_json::json!({ "vamp_components": means.len() / latent })
            }
            LatentSampler::Gmm(g) => serde_json::json!({
                "code_dim": g.dim,
                "components": g.n_components(),
                "covariance": g.covariance_type.name(),
                "mean_log_likelihood": g.mean_log_likelihood,
                "iterations": g.iterations,
                "converged": g.converged,
            }),
            LatentSampler::TwoStage(t) => serde_json::json!({
                "code_dim": t.latent_dim,
                "final_loss": t.final_loss,
            }),
        }
    }
}

/// Samples drawn through a sampler: their full codes [n, full_code_dim] and decoder means in
/// pixel space [n, c, h, w].
pub struct Drawn {
    pub codes: Vec<f32>,
    pub pixels: Vec<f32>,
}

/// Draw `n` samples from `run` through `sampler`.
pub fn draw(run: &LoadedRun, sampler: &LatentSampler, n: usize, rng: &mut SeededRng) -> Result<Drawn> {
    let LatentSampler::Prior {
        latent,
        temperature,
        hierarchical: true,
    } = *sampler
    else {
        let codes = sampler.latents(n, rng)?;
        let pixels = decode_full_to_pixels(run, &codes, n)?;
        return Ok(Drawn { codes, pixels });
    };
    // Ancestral sampling: the lower groups' codes come out of the top-down pass.
    let noise = rng.normal_vec(n * latent);
    let mut drawn = Drawn {
        codes: Vec::with_capacity(n * latent),
        pixels: Vec::new(),
    };
    for start in (0..n).step_by(EVAL_BATCH) {
        let b = (n - start).min(EVAL_BATCH);
        let eps = Tensor::from_slice(
            &noise[start * latent..(start + b) * latent],
            (b, latent),
            &run.device,
        )?;
        let (dec, codes) = run.generate(&eps, temperature)?;
        drawn.codes.extend(codes.flatten_all()?.to_vec1::<f32>()?);
        drawn.pixels.extend(run.mean_pixels(&dec)?);
    }
    Ok(drawn)
}

/// Sample `n` images from `run` through `sampler`, pixels [n, c, h, w].
pub fn sample_images(
    run: &LoadedRun,
    sampler: &LatentSampler,
    n: usize,
    rng: &mut SeededRng,
) -> Result<Vec<f32>> {
    Ok(draw(run, sampler, n, rng)?.pixels)
}
