//! `norbvae eval RUN_DIR`: likelihood bounds, reconstruction quality, active units and sample
//! quality per sampler for one split, merged into the run's metrics.json (keys added under
//! `metrics.<split>`; settings and the classifier's accuracy under `eval`), plus pictures of the
//! latent space and of each sampler's samples.
use super::classifier::{self, ClassifierParams};
use super::frechet::{frechet_distance, GaussianStats};
use super::image_metrics::recon_quality;
use super::latent::{decode_to_pixels, posterior, LatentSampler, SamplerKind, SamplerOptions};
use super::likelihood::bounds;
use super::pictures;
use super::units::bits_per_dim;
use crate::data::{Split, Splits};
use crate::model::{LikelihoodKind, ModelKind};
use crate::train::{load_run, CheckpointKind, LoadedRun};
use crate::util::{RunDir, SeededRng};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub split: Split,
    /// Importance samples per image for the IWAE bound.
    pub iwae_samples: usize,
    /// Images the ELBO / IWAE bounds are computed on (the first of the split); None: all.
    pub likelihood_images: Option<usize>,
    pub samplers: Vec<SamplerKind>,
    /// Samples per sampler scored against the split's real images.
    pub quality_samples: usize,
    /// Score samples with the dataset's classifier (trained and cached on first use).
    pub sample_quality: bool,
    pub classifier: ClassifierParams,
    pub cache_dir: PathBuf,
    pub sampler: SamplerOptions,
    pub checkpoint: CheckpointKind,
    /// Write traversal / interpolation / factor / sample grids.
    pub pictures: bool,
    pub seed: u64,
    pub show_progress: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self {
            split: Split::Test,
            iwae_samples: 100,
            likelihood_images: Some(1000),
            samplers: SamplerKind::ALL.to_vec(),
            quality_samples: 1000,
            sample_quality: true,
            classifier: ClassifierParams::default(),
            cache_dir: classifier::default_cache_dir(),
            sampler: SamplerOptions::default(),
            checkpoint: CheckpointKind::Best,
            pictures: true,
            seed: 0,
            show_progress: true,
        }
    }
}

/// Bits per dimension of a pixel-space negative log-likelihood under the shared dequantization
/// convention of `eval::units`; None for Bernoulli, which is not a density on grey levels (as in
/// the trainer's metrics). Discretized logistics are masses on the 8-bit levels: their bits/dim
/// are exact (`discrete_bits_per_dim`).
pub fn continuous_bits_per_dim(kind: LikelihoodKind, nll: f64, d: usize) -> Option<f64> {
    if kind.is_discrete_pixels() {
        return Some(super::units::discrete_bits_per_dim(nll, d));
    }
    (kind != LikelihoodKind::Bernoulli).then(|| bits_per_dim(nll, d))
}

fn step(show: bool, started: std::time::Instant, msg: &str) {
    if show {
        eprintln!("eval [{:5.1} s] {msg}", started.elapsed().as_secs_f64());
    }
}

/// Evaluate `run_dir` and merge the results into its metrics.json. Returns the split's new entries.
pub fn evaluate_run(run_dir: &Path, opts: &EvalOptions) -> Result<Value> {
    let t0 = std::time::Instant::now();
    let rd = RunDir::open(run_dir)?;
    let metrics_path = rd.path("metrics.json");
    let mut metrics: Value = match std::fs::read_to_string(&metrics_path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("parsing {}", metrics_path.display()))?,
        Err(_) => bail!(
            "{} has no metrics.json: evaluate a finished training run",
            run_dir.display()
        ),
    };
    if metrics.get("kind").and_then(Value::as_str) != Some("vae") {
        bail!(
            "{}: `norbvae eval` evaluates VAE runs (metrics.json \"kind\" is not \"vae\")",
            metrics_path.display()
        );
    }
    let run = load_run(run_dir, opts.checkpoint)?;
    step(
        opts.show_progress,
        t0,
        &format!("loading data {}", run.config.data.spec),
    );
    let splits = crate::data::load(&run.config.data)?;
    let set = splits.get(opts.split);
    if set.n < 2 {
        bail!(
            "the {} split of {} has {} images; need at least 2",
            opts.split.name(),
            splits.name,
            set.n
        );
    }
    let mut rng = SeededRng::derived(opts.seed, "eval");
    let mut out = Map::new();

    // Likelihood bounds.
    let lik_set = match opts.likelihood_images {
        Some(m) if m < set.n => set.head(m),
        _ => set.clone(),
    };
    step(
        opts.show_progress,
        t0,
        &format!(
            "ELBO and IWAE bound, {} samples x {} images",
            opts.iwae_samples, lik_set.n
        ),
    );
    let b = bounds(&run, &lik_set, opts.iwae_samples, &mut rng)?;
    let (c, h, w) = run.image_shape();
    let d_pixels = c * h * w;
    let kind = run.config.likelihood.kind;
    // The trainer's single-sample `neg_elbo` over the whole split stays as it is; these bounds come
    // from K samples on the first `likelihood_images` images, always in pixel space.
    out.insert("iwae_neg_elbo".into(), json!(b.neg_elbo));
    out.insert("iwae".into(), json!(b.neg_iwae));
    if let Some(bpd) = continuous_bits_per_dim(kind, b.neg_iwae, d_pixels) {
        out.insert("iwae_bits_per_dim".into(), json!(bpd));
    }
    out.insert("iwae_samples".into(), json!(b.samples));
    out.insert("likelihood_images".into(), json!(b.images));
    out.insert("likelihood_space".into(), json!("pixels"));
    if run.config.model.kind == ModelKind::PcaDense {
        out.insert("pca_tail_nll".into(), json!(b.pixel_offset));
    }

    // Reconstructions of the decoder mean at the posterior mean, and active units.
    step(
        opts.show_progress,
        t0,
        &format!("reconstructions of {} images", set.n),
    );
    let post = posterior(&run, set)?;
    let recon = decode_to_pixels(&run, &post.mu, set.n)?;
    let q = recon_quality(&set.images, &recon, set.n, set.channels, set.height, set.width)?;
    out.insert("mse".into(), json!(q.mse));
    out.insert("psnr".into(), json!(q.psnr));
    out.insert("ssim".into(), json!(q.ssim));
    out.insert("active_units".into(), json!(post.active_units()));
    out.insert("latent_dim".into(), json!(post.latent));

    if opts.pictures {
        step(
            opts.show_progress,
            t0,
            "latent traversals, interpolations, factor reconstructions",
        );
        pictures::traversal(&run, &post, 8, &rd.path("traversal.png"))?;
        pictures::interpolation(&run, set, &post, 6, &rd.path("interpolation.png"))?;
        pictures::factor_reconstructions(&run, set, rd.root())?;
    }

    // Samplers and sample quality.
    let mut eval_info = Map::new();
    let mut sample_scores = Map::new();
    let mut sampler_info = Map::new();
    let scorer = if opts.sample_quality {
        step(
            opts.show_progress,
            t0,
            "sample-quality classifier (trained once per dataset, then cached)",
        );
        Some(classifier_and_reference(&splits, &run, opts, set)?)
    } else {
        None
    };
    // How far each sampler's codes are from the codes the decoder was trained on, z ~ q(z|x) over
    // the split: the prior's distance measures the prior hole directly, in the latent space.
    let q_codes = post.sample(&mut SeededRng::derived(opts.seed, "q-codes"));
    let q_stats = GaussianStats::from_rows(&q_codes, post.n, post.latent)?;
    for &kind in &opts.samplers {
        step(opts.show_progress, t0, &format!("sampler {}", kind.name()));
        let sampler = LatentSampler::fit(kind, &run, &splits.train, &opts.sampler)?;
        sampler_info.insert(kind.name().into(), sampler.describe());
        let mut srng = SeededRng::derived(opts.seed, kind.name());
        let n = opts.quality_samples.max(64);
        let z = sampler.latents(n, &mut srng)?;
        let px = decode_to_pixels(&run, &z, n)?;
        if opts.pictures && kind != SamplerKind::Prior {
            let (c, h, w) = run.image_shape();
            crate::data::grid::save_grid(
                &rd.path(&format!("samples_{}.png", kind.name())),
                &px[..64 * c * h * w],
                64,
                c,
                h,
                w,
                8,
            )?;
        }
        let mut entry = match &scorer {
            Some((clf, reference)) => serde_json::to_value(clf.sample_quality(reference, &px, n)?)?,
            None => json!({}),
        };
        let latent_fd = frechet_distance(&GaussianStats::from_rows(&z, n, post.latent)?, &q_stats)?;
        if let Some(obj) = entry.as_object_mut() {
            obj.insert("latent_fd".into(), json!(latent_fd));
        }
        sample_scores.insert(kind.name().into(), entry);
    }
    if let Some((clf, reference)) = &scorer {
        eval_info.insert(
            "classifier".into(),
            json!({
                "test_accuracy": clf.info.test_accuracy,
                "train_images": clf.info.train_images,
                "fd_train_vs_test": clf_floor(clf, reference, &splits, opts)?,
            }),
        );
    }
    if !sample_scores.is_empty() {
        out.insert("samples".into(), Value::Object(sample_scores));
    }
    eval_info.insert("checkpoint".into(), json!(opts.checkpoint.name()));
    eval_info.insert("seed".into(), json!(opts.seed));
    eval_info.insert("samplers".into(), Value::Object(sampler_info));

    // Merge and write atomically.
    let root = metrics
        .as_object_mut()
        .context("metrics.json is not a JSON object")?;
    let m = root.entry("metrics").or_insert_with(|| json!({}));
    let split_entry = m
        .as_object_mut()
        .context("metrics.json: \"metrics\" is not an object")?
        .entry(opts.split.name())
        .or_insert_with(|| json!({}));
    if let Some(obj) = split_entry.as_object_mut() {
        for (k, v) in &out {
            obj.insert(k.clone(), v.clone());
        }
    }
    let ev = root.entry("eval").or_insert_with(|| json!({}));
    if let Some(obj) = ev.as_object_mut() {
        for (k, v) in eval_info {
            obj.insert(k, v);
        }
    }
    rd.write_json("metrics.json", &metrics)?;
    step(opts.show_progress, t0, "done");
    Ok(Value::Object(out))
}

type Scorer = (classifier::Classifier, super::frechet::GaussianStats);

fn classifier_and_reference(
    splits: &Splits,
    run: &LoadedRun,
    opts: &EvalOptions,
    set: &crate::data::ImageSet,
) -> Result<Scorer> {
    let clf = classifier::load_or_train(
        splits,
        &run.config.data,
        &opts.classifier,
        &opts.cache_dir,
        opts.show_progress,
    )?;
    let reference = clf.feature_stats(set)?;
    Ok((clf, reference))
}

/// FD of real training images against the split: what a perfect sampler would score.
fn clf_floor(
    clf: &classifier::Classifier,
    reference: &GaussianStats,
    splits: &Splits,
    opts: &EvalOptions,
) -> Result<f64> {
    let n = opts.quality_samples.max(64).min(splits.train.n);
    let mut idx: Vec<usize> = (0..splits.train.n).collect();
    SeededRng::derived(opts.seed, "floor").shuffle(&mut idx);
    idx.truncate(n);
    let real = splits.train.select(&idx);
    Ok(clf.sample_quality(reference, &real.images, real.n)?.fd)
}
