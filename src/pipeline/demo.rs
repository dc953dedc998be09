//! `norbvae demo`, the README's first command: a synthetic NORB at 32x32, then
//!
//! - the **showcase**: `configs/demo-showcase.toml` (the sigma-VAE conv model at 32x32, 5
//!   downsizings, 32 latents, 16 filters) trained for a few epochs on every training image, long
//!   enough that its reconstructions show the objects, and evaluated;
//! - the log's presets but [`LEFT_TO_REPRODUCE`], short (`epochs` each on a `PRESET_IMAGES`-image
//!   subset of every split), and PCA on the whole set, through [`super::reproduce`], whose report
//!   shows the showcase beside them;
//! - a summary that puts the showcase's test MSE beside the mean image's and PCA's at the same
//!   code size, computed on the same data.
//!
//! Every run keeps no resume state once finished (`train.keep_resume_state = false`): the demo's
//! results are final, and the Adam moments of `checkpoints/last/` were most of its disk use.
use super::{reproduce, train_preset, ReproduceOptions};
use crate::data::synth::SynthParams;
use crate::data::DataOptions;
use crate::eval::{evaluate_run, EvalOptions};
use crate::format::RunMetrics;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// The showcase's config (also usable on its own: `norbvae train --config configs/demo-showcase.toml`).
pub const SHOWCASE_CONFIG: &str = include_str!("../../configs/demo-showcase.toml");
/// The showcase's run directory under `OUT/runs/`.
pub const SHOWCASE_RUN: &str = "showcase";
/// Images per split for the short preset runs (a seeded subset, `data.limit`).
pub const PRESET_IMAGES: usize = 1000;

/// Presets the demo leaves to `norbvae reproduce`: the PCA-VAE with a fitted variance has a
/// 10-million-parameter network (41 MB per checkpoint, a third of the demo's disk and its slowest
/// preset), and `pca-vae-sigma` and `fitted-variance-convolutional-vae` already show a learned
/// variance.
pub const LEFT_TO_REPRODUCE: [&str; 1] = ["pca-vae-fitted-variance"];

/// `norbvae demo`'s options ([`DemoOptions::new`] gives the command's defaults).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Output directory (data, runs and report.html).
    pub out: PathBuf,
    /// The synthetic NORB to render into `OUT/data` (its side is the demo's image size).
    pub synth: SynthParams,
    /// Epochs per preset.
    pub epochs: usize,
    /// Epochs of the showcase.
    pub showcase_epochs: usize,
    /// Further `key=value` overrides of the showcase's config (after the demo's own).
    pub showcase_sets: Vec<String>,
    /// Presets to run (names of [`super::PRESETS`]; default all).
    pub presets: Vec<String>,
    /// Score samples with the sample-quality classifier (trained once per dataset, cached).
    pub sample_quality: bool,
    pub seed: u64,
}

impl DemoOptions {
    /// The demo's data: 32x32, all 5 training instances at every elevation and azimuth under 3 of
    /// the 6 lightings (12,150 pairs), and 2 of the 5 test instances (4,860 pairs).
    pub fn new(out: PathBuf) -> Self {
        Self {
            out,
            synth: SynthParams {
                side: 32,
                instances: vec![0, 1, 4, 6, 7, 8, 9],
                lightings: vec![0, 2, 4],
                ..SynthParams::default()
            },
            epochs: 6,
            showcase_epochs: 8,
            showcase_sets: vec![],
            presets: super::PRESETS
                .iter()
                .map(|p| p.0)
                .filter(|p| !LEFT_TO_REPRODUCE.contains(p))
                .map(String::from)
                .collect(),
            sample_quality: true,
            seed: 0,
        }
    }
}

/// What the demo produced.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    pub report: PathBuf,
    pub showcase: ShowcaseNumbers,
}

/// The showcase's test reconstruction error beside two baselines on the same test images, each
/// fitted on the same training images: the mean training image, and PCA with as many components
/// as the showcase has latent dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct ShowcaseNumbers {
    pub run: PathBuf,
    pub latent_dim: usize,
    pub epochs: usize,
    pub train_images: usize,
    pub test_images: usize,
    pub mse: f64,
    pub mean_image_mse: f64,
    pub pca_mse: f64,
}

impl ShowcaseNumbers {
    /// Lines for the terminal.
    pub fn text(&self) -> String {
        format!(
            "showcase {} (sigma-VAE conv, {} latents, {} epochs on {} training images):\n  \
             test MSE {:.5}: {:.1}x below the mean training image's {:.5}, {:.2}x PCA's {:.5} with {} components",
            self.run.display(),
            self.latent_dim,
            self.epochs,
            self.train_images,
            self.mse,
            self.mean_image_mse / self.mse,
            self.mean_image_mse,
            self.mse / self.pca_mse,
            self.pca_mse,
            self.latent_dim,
        )
    }
}

/// Evaluation settings of the demo: quick bounds and sample scores.
fn eval_options(sample_quality: bool) -> EvalOptions {
    let mut e = EvalOptions {
        iwae_samples: 20,
        likelihood_images: Some(100),
        quality_samples: 400,
        sample_quality,
        ..Default::default()
    };
    e.sampler.two_stage.steps = 600;
    e.sampler.two_stage.width = 128;
    e
}

/// The README's main command: data, showcase, presets, report. Returns the report's path and the
/// showcase's numbers.
pub fn demo(args: &DemoOptions) -> Result<DemoSummary> {
    let data_dir = args.out.join("data");
    let side = args.synth.side;
    render_data(&data_dir, &args.synth, args.seed)?;
    let data = DataOptions {
        spec: format!("norb:{}", data_dir.display()),
        image_size: None,
        val_fraction: 0.1,
        seed: args.seed,
        ..Default::default()
    };
    let runs = args.out.join("runs");
    // 32 pixels halve five times to 1x1; the presets' sixth halving would only pad the input.
    let downs = ((side as f64).log2().floor() as usize).clamp(1, 6);
    let finished = format!("train.keep_resume_state={}", false);

    eprintln!("\n[showcase] a VAE trained long enough to learn the objects");
    let showcase = runs.join(SHOWCASE_RUN);
    let showcase_eval = eval_options(false);
    if showcase.join("metrics.json").is_file() {
        eprintln!("  reusing {}", showcase.display());
    } else {
        let cfg_path = runs.join("configs").join("demo-showcase.toml");
        crate::util::write_atomic(&cfg_path, SHOWCASE_CONFIG.as_bytes())?;
        let mut sets = vec![
            format!("model.conv.downsizings={downs}"),
            format!("train.max_epochs={}", args.showcase_epochs),
            format!("seed={}", args.seed),
            finished.clone(),
        ];
        sets.extend(args.showcase_sets.iter().cloned());
        let mut showcase_data = data.clone();
        showcase_data.image_size = Some(side);
        train_preset(&cfg_path, &sets, &showcase_data, &showcase, false)
            .with_context(|| format!("training the showcase {}", showcase.display()))?;
    }
    let evaluated = RunMetrics::read(&showcase.join("metrics.json"))
        .ok()
        .and_then(|m| m.vae().map(|v| v.eval.is_some()))
        .unwrap_or(false);
    if !evaluated {
        // No sample scores: the classifier is trained per dataset, and the presets' subset is one.
        evaluate_run(&showcase, &showcase_eval)
            .with_context(|| format!("evaluating the showcase {}", showcase.display()))?;
    }

    let mut opts = ReproduceOptions::new(data.clone(), runs.clone());
    opts.title = format!("norbvae demo: synthetic NORB at {side}x{side}");
    opts.presets = args.presets.clone();
    opts.pca_components = vec![10, 20, 32, 50, 100, 128, 200, 500];
    opts.train_overrides = vec![
        format!("train.max_epochs={}", args.epochs),
        format!("seed={}", args.seed),
        format!("data.limit={PRESET_IMAGES}"),
        finished,
    ];
    opts.conv_overrides = vec![format!("model.conv.downsizings={downs}")];
    opts.eval = eval_options(args.sample_quality);
    opts.extra_runs = vec![showcase.clone()];
    let report = reproduce(&opts)?;
    let numbers = showcase_numbers(&showcase, &runs.join("pca"), &data)?;
    Ok(DemoSummary {
        report,
        showcase: numbers,
    })
}

/// The demo's data: `synth` (with the demo's seed) rendered once into `dir`.
pub fn render_data(dir: &Path, synth: &SynthParams, seed: u64) -> Result<()> {
    use crate::data::norb::{locate, NorbFile, NorbPart};
    // The testing info file is written last: if it is there, the set is complete.
    if locate(dir, NorbPart::Testing, NorbFile::Info).is_ok() {
        return Ok(());
    }
    let params = SynthParams {
        seed,
        progress: true,
        ..synth.clone()
    }
    .check()?;
    eprintln!(
        "rendering a synthetic NORB at {0}x{0} ({1} training and {2} testing pairs) into {3}",
        synth.side,
        params.count(NorbPart::Training),
        params.count(NorbPart::Testing),
        dir.display()
    );
    crate::data::synth::generate(&params, dir)
}

/// The showcase's test MSE (from its evaluation) beside the mean training image's and PCA's at
/// its code size (from the demo's PCA run, fitted on the same training images).
fn showcase_numbers(run: &Path, pca_run: &Path, data: &DataOptions) -> Result<ShowcaseNumbers> {
    let m = RunMetrics::read(&run.join("metrics.json"))?;
    let v = m
        .vae()
        .with_context(|| format!("{}: not a VAE run", run.display()))?;
    let latent_dim = v
        .latent_dim
        .context("the showcase's metrics.json has no latent_dim")?;
    let mse = v
        .split("test")
        .map(|s| s.mse)
        .context("the showcase's metrics.json has no test split")?;
    let pca = RunMetrics::read(&pca_run.join("metrics.json"))?;
    let pca_mse = pca
        .pca()
        .and_then(|p| p.at(latent_dim))
        .and_then(|k| k.split("test"))
        .map(|s| s.mse)
        .with_context(|| format!("{}: no test MSE at k = {latent_dim}", pca_run.display()))?;
    let splits = crate::data::load(data)?;
    Ok(ShowcaseNumbers {
        run: run.to_path_buf(),
        latent_dim,
        epochs: v.epochs_run,
        train_images: splits.train.n,
        test_images: splits.test.n,
        mse,
        mean_image_mse: mean_image_mse(&splits.train, &splits.test),
        pca_mse,
    })
}

/// Mean squared error of predicting every `test` image by the mean `train` image.
pub fn mean_image_mse(train: &crate::data::ImageSet, test: &crate::data::ImageSet) -> f64 {
    let d = train.dim();
    let mut mean = vec![0f64; d];
    for i in 0..train.n {
        for (m, &p) in mean.iter_mut().zip(train.image(i)) {
            *m += p as f64;
        }
    }
    mean.iter_mut().for_each(|m| *m /= train.n.max(1) as f64);
    let mut sum = 0f64;
    for i in 0..test.n {
        for (m, &p) in mean.iter().zip(test.image(i)) {
            sum += (p as f64 - m).powi(2);
        }
    }
    sum / (test.n * d).max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_image_mse_is_the_test_images_squared_distance_from_the_training_mean() {
        let set = |images: Vec<f32>| crate::data::ImageSet {
            n: images.len() / 2,
            images,
            channels: 1,
            height: 1,
            width: 2,
            labels: vec![],
            factors: None,
        };
        // Training mean (0.5, 0.25); test images (1, 0) and (0, 0.5).
        let train = set(vec![0.0, 0.0, 1.0, 0.5]);
        let test = set(vec![1.0, 0.0, 0.0, 0.5]);
        let want = ((0.25 + 0.0625) + (0.25 + 0.0625)) / 4.0;
        assert!((mean_image_mse(&train, &test) - want).abs() < 1e-12);
    }

    #[test]
    fn the_showcase_config_is_the_sigma_vae_at_32x32_with_32_latents() {
        let cfg = crate::train::TrainConfig::from_toml_str(SHOWCASE_CONFIG, &[]).unwrap();
        cfg.check().unwrap();
        assert_eq!(cfg.model.latent_dim, 32);
        assert_eq!(cfg.model.conv.downsizings, 5);
        assert_eq!(cfg.data.image_size, Some(32));
        assert_eq!(cfg.likelihood.kind, crate::model::LikelihoodKind::GaussianOptimal);
    }
}
