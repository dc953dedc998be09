//! `norbvae reproduce`: PCA, the log's VAE presets and variants, eval, answers and the report.
use crate::cli::common::DataArgs;
use crate::data::DataOptions;
use crate::pipeline::{reproduce, ReproduceOptions, PRESETS};
use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Output directory: one run directory per step, and report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Presets to run (comma-separated; default all).
    #[arg(long, value_delimiter = ',')]
    pub presets: Option<Vec<String>>,
    /// Cap the epochs of every VAE (the presets' own caps are long).
    #[arg(long)]
    pub max_epochs: Option<usize>,
    /// Extra `key=value` config overrides for every VAE (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Importance samples for the IWAE bound.
    #[arg(long, default_value_t = 100)]
    pub iwae_samples: usize,
    /// Images for the likelihood bounds.
    #[arg(long, default_value_t = 1000)]
    pub likelihood_images: usize,
}

pub fn run(args: Args) -> Result<()> {
    let data = args.data.apply(DataOptions::default());
    if args.data.spec.is_none() {
        bail!("--data is required (norb:DIR, fashion-mnist or idx:DIR)");
    }
    let mut opts = ReproduceOptions::new(data, args.out);
    if let Some(p) = args.presets {
        for name in &p {
            if !PRESETS.iter().any(|q| q.0 == name) {
                bail!(
                    "--presets: unknown preset {name:?}; known: {}",
                    PRESETS.map(|q| q.0).join(", ")
                );
            }
        }
        opts.presets = p;
    }
    if let Some(e) = args.max_epochs {
        opts.train_overrides.push(format!("train.max_epochs={e}"));
    }
    opts.train_overrides.extend(args.set);
    opts.eval.iwae_samples = args.iwae_samples;
    opts.eval.likelihood_images = (args.likelihood_images > 0).then_some(args.likelihood_images);
    let report = reproduce(&opts)?;
    println!("report: {}", report.display());
    Ok(())
}
