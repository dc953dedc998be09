use crate::cli::common::DeviceArgs;
use crate::data::Split;
use crate::eval::gmm::CovarianceType;
use crate::eval::{evaluate_run, EvalOptions, SamplerKind};
use crate::train::CheckpointKind;
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A VAE run directory written by `norbvae train`.
    pub run_dir: PathBuf,
    /// Which split to evaluate.
    #[arg(long, value_enum, default_value = "test")]
    pub split: Split,
    /// Importance samples per image for the IWAE bound.
    #[arg(long, default_value_t = 100)]
    pub iwae_samples: usize,
    /// Images used for the ELBO / IWAE bounds (the first of the split; 0: all).
    #[arg(long, default_value_t = 1000)]
    pub likelihood_images: usize,
    /// Samplers to score (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "prior,gmm,two-stage"
    )]
    pub samplers: Vec<SamplerKind>,
    /// Mixture components of the gmm sampler.
    #[arg(long, default_value_t = 10)]
    pub components: usize,
    /// Covariance of each mixture component of the gmm sampler: full (as scikit-learn's
    /// GaussianMixture) or diag.
    #[arg(long, value_enum, default_value = "full")]
    pub gmm_covariance: CovarianceType,
    /// The prior sampler's temperature (NVAE): every latent group's noise is scaled by it; 1
    /// samples the model's own prior, below 1 trades diversity for typical samples.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Samples per sampler for the sample-quality scores.
    #[arg(long, default_value_t = 1000)]
    pub quality_samples: usize,
    /// Skip the classifier-based sample scores.
    #[arg(long)]
    pub no_sample_quality: bool,
    /// Where the sample-quality classifier is cached (default: $NORBVAE_CACHE_DIR or ~/.cache/norbvae).
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Evaluate the last checkpoint instead of the best.
    #[arg(long)]
    pub last: bool,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    args.device.select()?;
    crate::eval::latent::check_temperature(args.temperature)?;
    let mut opts = EvalOptions {
        split: args.split,
        iwae_samples: args.iwae_samples,
        likelihood_images: (args.likelihood_images > 0).then_some(args.likelihood_images),
        samplers: args.samplers,
        quality_samples: args.quality_samples,
        sample_quality: !args.no_sample_quality,
        checkpoint: if args.last {
            CheckpointKind::Last
        } else {
            CheckpointKind::Best
        },
        seed: args.seed,
        ..Default::default()
    };
    opts.sampler.gmm_components = args.components;
    opts.sampler.gmm_covariance = args.gmm_covariance;
    opts.sampler.seed = args.seed;
    opts.sampler.temperature = args.temperature;
    if let Some(c) = args.cache_dir {
        opts.cache_dir = c;
    }
    let out = evaluate_run(&args.run_dir, &opts)?;
    let e = &out.eval;
    let f = |v: Option<f64>| v.unwrap_or(f64::NAN);
    let n = |v: Option<usize>| v.map_or(f64::NAN, |v| v as f64);
    println!("{} split of {}:", args.split.name(), args.run_dir.display());
    println!(
        "  pixel space, first {} images, K={}: -ELBO {:.2} nats/image, -IWAE {:.2} nats/image ({:.4} bits/dim)",
        n(e.likelihood_images),
        args.iwae_samples,
        f(e.iwae_neg_elbo),
        f(e.iwae),
        f(e.iwae_bits_per_dim)
    );
    println!(
        "  MSE {:.5}  PSNR {:.2} dB  SSIM {:.4}  active units {}/{}",
        out.mse,
        out.psnr,
        f(e.ssim),
        n(e.active_units),
        n(e.latent_dim)
    );
    for (name, q) in e.samples.iter().flatten() {
        println!(
            "  samples {name:>9}: FD {:.2}  confidence {:.3}  class entropy {:.3} of {:.3}",
            f(q.fd),
            f(q.confidence),
            f(q.class_entropy),
            f(q.max_class_entropy)
        );
        print_precision_recall(q);
    }
    for (what, q) in [
        ("reconstructions", &e.reconstructions),
        ("real training images (a perfect sampler)", &e.real_vs_real),
    ] {
        if let Some(q) = q.as_ref().filter(|q| q.precision_pixels.is_some()) {
            println!("  {what}:");
            print_precision_recall(q);
        }
    }
    println!("results added to {}", args.run_dir.join("metrics.json").display());
    Ok(())
}

/// Improved precision / recall (k = 3) of one scored set, when recorded.
fn print_precision_recall(q: &crate::format::SampleScores) {
    let pair = |p: Option<f64>, r: Option<f64>| Some(format!("{:.3} / {:.3}", p?, r?));
    let parts: Vec<String> = [
        pair(q.precision_pixels, q.recall_pixels).map(|t| format!("pixels {t}")),
        pair(q.precision_features, q.recall_features).map(|t| format!("features {t}")),
    ]
    .into_iter()
    .flatten()
    .collect();
    if !parts.is_empty() {
        println!("  {:>18} precision / recall: {}", "", parts.join(", "));
    }
}
