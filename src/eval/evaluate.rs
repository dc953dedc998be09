//! `norbvae eval RUN_DIR`: likelihood bounds, reconstruction quality, active units and sample
//! quality per sampler for one split, merged into the run's metrics.json (keys added under
//! `metrics.<split>`; settings and the classifier's accuracy under `eval`), plus pictures of the
//! latent space and of each sampler's samples.
//!
//! Sample quality does not rest on the classifier's FD alone: each sampler's samples, the
//! reconstructions and real training images (what a perfect sampler scores) also get improved
//! precision and recall ([`super::precision_recall`]) against a random subset of the split, on
//! the classifier's features and on raw pixels, and `samples_<sampler>_nn.png` shows the first
//! samples beside their nearest training image (pixel distance, the whole training split).
use super::classifier::{self, ClassifierParams};
use super::frechet::{frechet_distance, GaussianStats};
use super::image_metrics::recon_quality;
use super::latent::{
    draw, posterior_full, reconstruct_to_pixels, Drawn, LatentSampler, SamplerKind, SamplerOptions,
};
use super::likelihood::bounds;
use super::pictures;
use super::precision_recall::{self, nearest, Points, RealManifold};
use crate::data::{Split, Splits};
use crate::format::{ClassifierInfo, RunMetrics, SampleScores, SplitEval, VaeSplitMetrics};
use crate::model::{LikelihoodKind, ModelKind};
use crate::train::{load_run, CheckpointKind, LoadedRun};
use crate::util::units::bits_per_dim;
use crate::util::{RunDir, SeededRng};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
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
/// convention of `util::units`; None for Bernoulli, which is not a density on grey levels (as in
/// the trainer's metrics). Discretized logistics are masses on the 8-bit levels: their bits/dim
/// are exact (`discrete_bits_per_dim`).
pub fn continuous_bits_per_dim(kind: LikelihoodKind, nll: f64, d: usize) -> Option<f64> {
    if kind.is_discrete_pixels() {
        return Some(crate::util::units::discrete_bits_per_dim(nll, d));
    }
    (kind != LikelihoodKind::Bernoulli).then(|| bits_per_dim(nll, d))
}

fn step(show: bool, started: std::time::Instant, msg: &str) {
    if show {
        eprintln!("eval [{:5.1} s] {msg}", started.elapsed().as_secs_f64());
    }
}

/// Evaluate `run_dir` and merge the results into its metrics.json. Returns the split's metrics
/// as merged.
pub fn evaluate_run(run_dir: &Path, opts: &EvalOptions) -> Result<VaeSplitMetrics> {
    let t0 = std::time::Instant::now();
    let rd = RunDir::open(run_dir)?;
    // One writer at a time: metrics.json is read here and merged into at the end, so a second
    // eval (or a resumed train) on this run is refused rather than losing one side's results.
    let _lock = crate::util::lock::RunLock::acquire(run_dir)?;
    let metrics_path = rd.path("metrics.json");
    if !metrics_path.is_file() {
        bail!(
            "{} has no metrics.json: evaluate a finished training run",
            run_dir.display()
        );
    }
    let mut metrics = match RunMetrics::read(&metrics_path)? {
        RunMetrics::Vae(m) => m,
        RunMetrics::Pca(_) => bail!(
            "{}: `norbvae eval` evaluates VAE runs (metrics.json \"kind\" is not \"vae\")",
            metrics_path.display()
        ),
    };
    let Some(trained) = metrics.split(opts.split.name()).cloned() else {
        bail!(
            "{}: no {} split to evaluate (the trainer recorded none)",
            metrics_path.display(),
            opts.split.name()
        );
    };
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
    let mut out = SplitEval::default();

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
    out.iwae_neg_elbo = Some(b.neg_elbo);
    out.iwae = Some(b.neg_iwae);
    out.iwae_bits_per_dim = continuous_bits_per_dim(kind, b.neg_iwae, d_pixels);
    out.iwae_samples = Some(b.samples);
    out.likelihood_images = Some(b.images);
    out.likelihood_space = Some("pixels".into());
    if run.config.model.kind == ModelKind::PcaDense {
        out.pca_tail_nll = Some(b.pixel_offset);
    }

    // Reconstructions of the decoder mean at the posterior mean, and active units.
    step(
        opts.show_progress,
        t0,
        &format!("reconstructions of {} images", set.n),
    );
    // One encoder pass: the full code (every group), whose leading columns are the top group.
    let post_full = posterior_full(&run, set)?;
    let post = post_full.columns(0, run.latent_dim());
    let recon = reconstruct_to_pixels(&run, set)?;
    let q = recon_quality(&set.images, &recon, set.n, set.channels, set.height, set.width)?;
    out.ssim = Some(q.ssim);
    // The code size and active units count every latent group (a hierarchy's too), so the
    // comparison with PCA uses k = all the latents.
    let groups = run.vae().group_dims();
    if groups.len() > 1 {
        let units = post_full.active_units_per_group(&groups);
        out.active_units = Some(units.iter().sum());
        out.active_units_groups = Some(units);
    } else {
        out.active_units = Some(post.active_units());
    }
    out.latent_dim = Some(run.vae().latent_dim);

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
    let n = opts.quality_samples.max(64);
    // Seeded random subsets of the split (it is stored in category order, so its first images
    // would be one or two categories): the reconstructed images scored like samples, and, disjoint
    // from them, the real images precision and recall are measured against (a reconstruction
    // would otherwise sit next to its own original).
    let mut order: Vec<usize> = (0..set.n).collect();
    SeededRng::derived(opts.seed, "reconstructions").shuffle(&mut order);
    let recon_idx = &order[..n.min(set.n)];
    let pr_idx = &order[recon_idx.len()..(recon_idx.len() + n).min(set.n)];
    let mut sample_scores = BTreeMap::new();
    let mut sampler_info = BTreeMap::new();
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
    let manifolds = real_manifolds(set, pr_idx, scorer.as_ref().map(|s| &s.0))?;
    if manifolds.is_none() {
        step(
            opts.show_progress,
            t0,
            &format!(
                "no precision / recall: {} {} images leave {} beside the {} reconstructed (need more than {})",
                set.n,
                opts.split.name(),
                pr_idx.len(),
                recon_idx.len(),
                precision_recall::K
            ),
        );
    }
    // How far each sampler's codes are from the codes the decoder was trained on, z ~ q(z|x) over
    // the split: the prior's distance measures the prior hole directly, in the latent space.
    // The samplers draw full codes (every group of a hierarchy), so their distance is taken there.
    let q_codes = post_full.sample(&mut SeededRng::derived(opts.seed, "q-codes"));
    let q_stats = GaussianStats::from_rows(&q_codes, post_full.n, post_full.latent)?;
    for &kind in &opts.samplers {
        step(opts.show_progress, t0, &format!("sampler {}", kind.name()));
        let sampler = LatentSampler::fit(kind, &run, &splits.train, &opts.sampler)?;
        sampler_info.insert(kind.name().into(), sampler.describe());
        let mut srng = SeededRng::derived(opts.seed, kind.name());
        let Drawn { codes: z, pixels: px } = draw(&run, &sampler, n, &mut srng)?;
        if opts.pictures && kind != SamplerKind::Prior {
            crate::data::grid::save_grid(
                &rd.path(&format!("samples_{}.png", kind.name())),
                &px[..64 * d_pixels],
                64,
                c,
                h,
                w,
                8,
            )?;
        }
        if opts.pictures {
            nearest_panel(
                &px[..NN_PANEL * d_pixels],
                &splits.train,
                kind.name(),
                &rd.path(&format!("samples_{}_nn.png", kind.name())),
            )?;
        }
        let mut entry = score_images(scorer.as_ref(), manifolds.as_ref(), &px, n)?;
        entry.latent_fd = Some(frechet_distance(
            &GaussianStats::from_rows(&z, n, post_full.latent)?,
            &q_stats,
        )?);
        sample_scores.insert(kind.name().to_string(), entry);
    }
    if scorer.is_some() || manifolds.is_some() {
        step(
            opts.show_progress,
            t0,
            "reconstructions and real training images scored like samples",
        );
        let picked: Vec<f32> = recon_idx
            .iter()
            .flat_map(|&i| recon[i * d_pixels..(i + 1) * d_pixels].iter().copied())
            .collect();
        out.reconstructions = Some(score_images(
            scorer.as_ref(),
            manifolds.as_ref(),
            &picked,
            recon_idx.len(),
        )?);
        // Real training images: the scores of a perfect sampler (the FD floor among them).
        let mut idx: Vec<usize> = (0..splits.train.n).collect();
        SeededRng::derived(opts.seed, "floor").shuffle(&mut idx);
        idx.truncate(n.min(splits.train.n));
        let real = splits.train.select(&idx);
        out.real_vs_real = Some(score_images(
            scorer.as_ref(),
            manifolds.as_ref(),
            &real.images,
            real.n,
        )?);
        out.pr_real_images = manifolds.as_ref().map(|m| m.pixels.len());
    }
    let classifier = match &scorer {
        Some((clf, _, real)) => Some(ClassifierInfo {
            test_accuracy: clf.info.test_accuracy,
            train_images: clf.info.train_images,
            fd_train_vs_test: out
                .real_vs_real
                .as_ref()
                .and_then(|s| s.fd)
                .context("real training images were not scored by the classifier")?,
            real_confidence: Some(real.confidence),
            real_class_entropy: Some(real.class_entropy),
        }),
        None => None,
    };
    if !sample_scores.is_empty() {
        out.samples = Some(sample_scores);
    }

    // Merge: this evaluation's fields replace the split's old ones (its MSE and PSNR those of
    // the trainer); a classifier from an earlier evaluation is kept when this one used none.
    let merged = VaeSplitMetrics {
        mse: q.mse,
        psnr: q.psnr,
        eval: merge_split_eval(trained.eval, out),
        ..trained
    };
    metrics
        .metrics
        .insert(opts.split.name().to_string(), merged.clone());
    let info = metrics.eval.get_or_insert_with(Default::default);
    if classifier.is_some() {
        info.classifier = classifier;
    }
    info.checkpoint = Some(opts.checkpoint.name().to_string());
    info.seed = Some(opts.seed);
    info.samplers = Some(sampler_info);
    if merged.eval.pr_real_images.is_some() {
        info.pr_k = Some(precision_recall::K);
    }
    metrics.format_version = crate::format::FORMAT_VERSION;
    rd.write_json("metrics.json", &RunMetrics::Vae(metrics))?;
    step(opts.show_progress, t0, "done");
    Ok(merged)
}

/// An earlier evaluation's fields, with every field this one computed replacing its value.
fn merge_split_eval(old: SplitEval, new: SplitEval) -> SplitEval {
    SplitEval {
        iwae_neg_elbo: new.iwae_neg_elbo.or(old.iwae_neg_elbo),
        iwae: new.iwae.or(old.iwae),
        iwae_bits_per_dim: new.iwae_bits_per_dim.or(old.iwae_bits_per_dim),
        iwae_samples: new.iwae_samples.or(old.iwae_samples),
        likelihood_images: new.likelihood_images.or(old.likelihood_images),
        likelihood_space: new.likelihood_space.or(old.likelihood_space),
        pca_tail_nll: new.pca_tail_nll.or(old.pca_tail_nll),
        ssim: new.ssim.or(old.ssim),
        active_units: new.active_units.or(old.active_units),
        active_units_groups: new.active_units_groups.or(old.active_units_groups),
        latent_dim: new.latent_dim.or(old.latent_dim),
        samples: new.samples.or(old.samples),
        reconstructions: new.reconstructions.or(old.reconstructions),
        real_vs_real: new.real_vs_real.or(old.real_vs_real),
        pr_real_images: new.pr_real_images.or(old.pr_real_images),
    }
}

/// The classifier, the split's feature statistics, and how it sees the split's real images (what
/// samples should match).
type Scorer = (
    classifier::Classifier,
    super::frechet::GaussianStats,
    classifier::SampleQuality,
);

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
    let (reference, real) = clf.reference_and_quality(set)?;
    Ok((clf, reference, real))
}

fn scores(q: classifier::SampleQuality) -> SampleScores {
    SampleScores {
        fd: Some(q.fd),
        confidence: Some(q.confidence),
        mean_entropy: Some(q.mean_entropy),
        class_entropy: Some(q.class_entropy),
        max_class_entropy: Some(q.max_class_entropy),
        n_samples: Some(q.n_samples),
        ..Default::default()
    }
}

/// Pictures of the nearest training image of each of the first samples.
const NN_PANEL: usize = 32;

/// The real images precision and recall measure against, in both spaces.
struct RealManifolds {
    pixels: RealManifold,
    /// Absent without the classifier.
    features: Option<RealManifold>,
}

/// The split's images `idx` as real manifolds (None when there are too few of them).
fn real_manifolds(
    set: &crate::data::ImageSet,
    idx: &[usize],
    clf: Option<&classifier::Classifier>,
) -> Result<Option<RealManifolds>> {
    if idx.len() <= precision_recall::K {
        return Ok(None);
    }
    let real = set.select(idx);
    let pixels = RealManifold::new(
        Points::new(&real.images, real.n, real.dim(), "real images")?,
        precision_recall::K,
    )?;
    let features = match clf {
        Some(clf) => {
            let (f, _) = clf.features_and_probs(&real.images, real.n)?;
            Some(RealManifold::new(
                Points::new(&f, real.n, classifier::FEATURE_DIM, "real image features")?,
                precision_recall::K,
            )?)
        }
        None => None,
    };
    Ok(Some(RealManifolds { pixels, features }))
}

/// `n` images scored against the split: by the classifier (FD, confidence, class entropy, and
/// precision / recall of its features) when there is one, and by precision / recall of their
/// pixels when there are real images to compare with.
fn score_images(
    scorer: Option<&Scorer>,
    manifolds: Option<&RealManifolds>,
    images: &[f32],
    n: usize,
) -> Result<SampleScores> {
    let mut entry = SampleScores::default();
    let mut features = None;
    if let Some((clf, reference, _)) = scorer {
        let (f, q) = clf.features_and_quality(reference, images, n)?;
        entry = scores(q);
        features = Some(f);
    }
    let Some(m) = manifolds else {
        return Ok(entry);
    };
    if n <= precision_recall::K {
        return Ok(entry);
    }
    let d = images.len() / n.max(1);
    let px = m.pixels.score(Points::new(images, n, d, "images")?)?;
    entry.precision_pixels = Some(px.precision);
    entry.recall_pixels = Some(px.recall);
    if let (Some(real), Some(f)) = (&m.features, &features) {
        let pr = real.score(Points::new(f, n, classifier::FEATURE_DIM, "image features")?)?;
        entry.precision_features = Some(pr.precision);
        entry.recall_features = Some(pr.recall);
    }
    Ok(entry)
}

/// `samples` beside their nearest image of `train` in pixel space (the whole split, searched by
/// GEMM), as a labelled pair grid.
fn nearest_panel(samples: &[f32], train: &crate::data::ImageSet, sampler: &str, path: &Path) -> Result<()> {
    let d = train.dim();
    let n = samples.len() / d;
    let nn = nearest(
        Points::new(samples, n, d, &format!("{sampler} samples"))?,
        Points::new(&train.images, train.n, d, "training images")?,
    )?;
    let neighbours: Vec<f32> = nn
        .iter()
        .flat_map(|&(j, _)| train.image(j).iter().copied())
        .collect();
    crate::data::grid::save_pair_grid(
        path,
        samples,
        &neighbours,
        n,
        (train.channels, train.height, train.width),
        4,
        [
            &["sample"],
            &["nearest training image", "nearest train", "nearest"],
        ],
    )
}
