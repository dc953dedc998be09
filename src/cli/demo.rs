//! `norbvae demo`: the README's main command ([`crate::pipeline::demo`]). A synthetic NORB at
//! 32x32, a showcase VAE trained until it shows the objects, PCA, short runs of every preset,
//! eval, and the report, in a few minutes on a laptop.
use crate::cli::common::DeviceArgs;
use crate::pipeline::{demo, DemoOptions};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Output directory (data, runs and report.html).
    #[arg(long, default_value = "demo")]
    pub out: PathBuf,
    /// Image side of the synthetic NORB.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Epochs per preset (each on a 1000-image subset).
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    /// Epochs of the showcase VAE (on every training image).
    #[arg(long, default_value_t = 8)]
    pub showcase_epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    args.device.select()?;
    let mut opts = DemoOptions::new(args.out);
    opts.synth.side = args.size;
    opts.epochs = args.epochs;
    opts.showcase_epochs = args.showcase_epochs;
    opts.seed = args.seed;
    let summary = demo(&opts)?;
    println!("\n{}", summary.showcase.text());
    println!("report: {}", summary.report.display());
    Ok(())
}
