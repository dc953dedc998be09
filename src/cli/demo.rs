//! `norbvae demo`: the README's main command. A small synthetic NORB at 32x32, PCA, short runs of
//! every preset, eval, and the report, in minutes on a laptop.
use crate::data::DataOptions;
use crate::report::reproduce::{demo_data, reproduce, ReproduceOptions};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output directory (data, runs and report.html).
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Image side of the synthetic NORB.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Epochs per VAE.
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    let data_dir = args.out.join("data");
    demo_data(&data_dir, args.size, args.seed)?;
    let data = DataOptions {
        spec: format!("norb:{}", data_dir.display()),
        image_size: None,
        val_fraction: 0.1,
        seed: args.seed,
        ..Default::default()
    };
    let mut opts = ReproduceOptions::new(data, args.out.join("runs"));
    opts.title = format!("norbvae demo: synthetic NORB at {0}x{0}", args.size);
    opts.pca_components = vec![10, 20, 50, 100, 128, 200, 500];
    opts.train_overrides = vec![
        format!("train.max_epochs={}", args.epochs),
        format!("seed={}", args.seed),
    ];
    // 32 pixels halve five times to 1x1; the preset's sixth halving would only pad the input.
    let downs = (args.size as f64).log2().floor() as usize;
    opts.conv_overrides = vec![format!("model.conv.downsizings={}", downs.clamp(1, 6))];
    opts.eval.iwae_samples = 20;
    opts.eval.likelihood_images = Some(100);
    opts.eval.quality_samples = 400;
    opts.eval.sampler.two_stage.steps = 600;
    opts.eval.sampler.two_stage.width = 128;
    let report = reproduce(&opts)?;
    println!("\nreport: {}", report.display());
    Ok(())
}
