//! `norbvae demo`: the README's main command ([`crate::pipeline::demo`]). A small synthetic NORB at
//! 32x32, PCA, short runs of every preset, eval, and the report, in minutes on a laptop.
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
    /// Epochs per VAE.
    #[arg(long, default_value_t = 6)]
    pub epochs: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

pub fn run(args: Args) -> Result<()> {
    args.device.select()?;
    let report = demo(&DemoOptions {
        out: args.out,
        size: args.size,
        epochs: args.epochs,
        seed: args.seed,
    })?;
    println!("\nreport: {}", report.display());
    Ok(())
}
