use crate::cli::common::DeviceArgs;
use crate::eval::gmm::CovarianceType;
use crate::eval::{LatentSampler, SamplerKind, SamplerOptions};
use crate::train::{load_run, CheckpointKind};
use crate::util::SeededRng;
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// A VAE run directory written by `norbvae train`.
    pub run_dir: PathBuf,
    /// prior: z ~ N(0, I); gmm: a Gaussian mixture fitted to the training posterior means;
    /// two-stage: a second VAE trained on the latents.
    #[arg(long, value_enum, default_value = "prior")]
    pub sampler: SamplerKind,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
    /// Mixture components (gmm sampler).
    #[arg(long, default_value_t = 10)]
    pub components: usize,
    /// Covariance of each mixture component (gmm sampler): full (as scikit-learn's
    /// GaussianMixture) or diag.
    #[arg(long, value_enum, default_value = "full")]
    pub gmm_covariance: CovarianceType,
    /// The prior sampler's temperature (NVAE): every latent group's noise is scaled by it; 1
    /// samples the model's own prior, below 1 trades diversity for typical samples.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Output PNG grid.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    args.device.select()?;
    crate::eval::latent::check_temperature(args.temperature)?;
    if args.n == 0 {
        bail!("--n must be at least 1");
    }
    if args.out.extension().is_none_or(|e| e != "png") {
        bail!("--out {}: the output must be a .png file", args.out.display());
    }
    let run = load_run(&args.run_dir, CheckpointKind::Best)?;
    let (c, h, w) = run.image_shape();
    crate::model::budget::estimate(
        &run.config.model,
        &run.config.likelihood,
        crate::model::budget::ImageShape {
            channels: c,
            height: h,
            width: w,
        },
        &crate::model::budget::Workload::sampling(args.n, "sample --n"),
    )
    .check_available("sample")?;
    if let Some(name) = run.non_finite_tensor()? {
        bail!(
            "{}: the best checkpoint's tensor '{name}' holds NaN or infinity: refusing to sample from it \
             (the run diverged or its checkpoint was damaged; retrain it)",
            args.run_dir.display()
        );
    }
    let opts = SamplerOptions {
        gmm_components: args.components,
        gmm_covariance: args.gmm_covariance,
        seed: args.seed,
        temperature: args.temperature,
        ..Default::default()
    };
    let sampler = if args.sampler == SamplerKind::Prior {
        LatentSampler::prior(&run, args.temperature)?
    } else {
        eprintln!(
            "fitting the {} sampler on the training posterior",
            args.sampler.name()
        );
        let splits = crate::data::load(&run.config.data)?;
        LatentSampler::fit(args.sampler, &run, &splits.train, &opts)?
    };
    let mut rng = SeededRng::derived(args.seed, "sample");
    let px = crate::eval::latent::sample_images(&run, &sampler, args.n, &mut rng)?;
    if px.iter().any(|v| !v.is_finite()) {
        bail!(
            "{}: the model produced NaN or infinite pixels: refusing to write {}",
            args.run_dir.display(),
            args.out.display()
        );
    }
    let cols = (args.n as f64).sqrt().ceil() as usize;
    crate::data::grid::save_grid(&args.out, &px, args.n, c, h, w, cols)?;
    println!(
        "{} samples ({} sampler) written to {}",
        args.n,
        args.sampler.name(),
        args.out.display()
    );
    Ok(())
}
