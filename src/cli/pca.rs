//! `norbvae pca`: parses the options of [`crate::pca::run_baseline`] and prints its results.
use crate::cli::common::DataArgs;
use crate::data::DataOptions;
use crate::pca::{BaselineOptions, PcaSolver};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Numbers of components to evaluate (comma-separated); the fit uses the largest.
    #[arg(long, value_delimiter = ',', default_value = "100,500,1000,2000")]
    pub components: Vec<usize>,
    /// Run directory for metrics.json, config.toml, pca.safetensors and the pictures.
    #[arg(long)]
    pub out: PathBuf,
    /// Record that consumers (the PCA-VAE) should use whitened coefficients (unit variance per
    /// axis). Reconstructions and metrics do not depend on it.
    #[arg(long)]
    pub whiten: bool,
    /// Fitting algorithm: chosen by shape, k and memory (auto), exact covariance eigendecomposition,
    /// randomized subspace iteration on the covariance, or randomized over the data.
    #[arg(long, value_enum, default_value_t = PcaSolver::Auto)]
    pub solver: PcaSolver,
    /// Randomized solvers: subspace iterations (default 3 over the data, 5 on the covariance).
    #[arg(long)]
    pub power_iters: Option<usize>,
    /// Randomized solvers: extra basis vectors (default max(10, k/3)).
    #[arg(long)]
    pub oversample: Option<usize>,
    /// Seed of the randomized solver (the data split has its own, --data-seed).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Evaluate this saved model (pca.safetensors) instead of fitting one.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Replace the run already in --out (its files are deleted first).
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: Args) -> Result<()> {
    let opts = BaselineOptions {
        data: args.data.apply(DataOptions::default()),
        components: args.components,
        out: args.out,
        whiten: args.whiten,
        solver: args.solver,
        power_iters: args.power_iters,
        oversample: args.oversample,
        seed: args.seed,
        model: args.model,
        force: args.force,
    };
    let metrics = crate::pca::run_baseline(&opts)?;
    println!("{}", crate::pca::summary_text(&metrics, &opts.out));
    Ok(())
}
