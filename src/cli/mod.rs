//! Command-line interface: a thin layer over the library. Each subcommand lives in its own file
//! with its `Args` and a `run` function.
use anyhow::Result;
use clap::{Parser, Subcommand};

pub mod bench;
pub mod common;
pub mod data;
pub mod demo;
pub mod eval;
pub mod pca;
pub mod report;
pub mod reproduce;
pub mod sample;
pub mod sweep;
pub mod synth;
pub mod train;

#[derive(Debug, Parser)]
#[command(
    name = "norbvae",
    version,
    about = "Train and evaluate VAEs on NORB, with PCA as the baseline"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect and preview datasets.
    #[command(subcommand)]
    Data(data::DataCmd),
    /// Write a synthetic dataset with smallNORB's structure and files.
    Synth(synth::Args),
    /// Fit the PCA baseline and evaluate reconstructions.
    Pca(pca::Args),
    /// Train a VAE from a config file.
    Train(train::Args),
    /// Evaluate a trained run (likelihood bounds, sample quality).
    Eval(eval::Args),
    /// Draw samples from a trained run.
    Sample(sample::Args),
    /// Build an HTML report of runs side by side.
    Report(report::Args),
    /// Re-run the experiment log: PCA, the presets, and the report.
    Reproduce(reproduce::Args),
    /// The quick demo: synthetic NORB, PCA, short preset runs, report.
    Demo(demo::Args),
    /// Training-speed benchmark (against PyTorch when available).
    Bench(bench::Args),
    /// Train a grid of config overrides x seeds, locally or as one Slurm job array.
    Sweep(sweep::Args),
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Data(cmd) => data::run(cmd),
        Command::Synth(a) => synth::run(a),
        Command::Pca(a) => pca::run(a),
        Command::Train(a) => train::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Sample(a) => sample::run(a),
        Command::Report(a) => report::run(a),
        Command::Reproduce(a) => reproduce::run(a),
        Command::Demo(a) => demo::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Sweep(a) => sweep::run(a),
    }
}
