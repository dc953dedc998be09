//! `norbvae reproduce`: PCA, the log's VAE presets and variants, eval, answers and the report.
use crate::cli::common::DataArgs;
use crate::cli::common::DeviceArgs;
use crate::data::DataOptions;
use crate::format::sweep::ExecutorKind;
use crate::pipeline::{reproduce, ReproduceExecutor, ReproduceOptions, PRESETS};
use crate::sweep::spec::parse_seeds;
use anyhow::{bail, Context, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub data: DataArgs,
    /// Output directory: one run directory per step, and report.html.
    #[arg(long)]
    pub out: PathBuf,
    /// Presets to run (comma-separated; default all).
    #[arg(long, value_delimiter = ',', conflicts_with = "ladder")]
    pub presets: Option<Vec<String>>,
    /// The improvement ladder instead of the log's presets: PCA, then each step of
    /// configs/ladder/ (embedded) trained and evaluated in order (run directories OUT/<step>), and
    /// the report's ladder table. --data and the other data options apply over the steps' [data].
    #[arg(long)]
    pub ladder: bool,
    /// With --ladder: read the steps from this directory's *.toml files instead of the embedded ones.
    #[arg(long, requires = "ladder", value_name = "DIR")]
    pub ladder_dir: Option<PathBuf>,
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
    /// Train the presets as one sweep in --out: local child processes (--jobs at once), one
    /// Slurm job array (waited for), or print (the batch script only). Default: in this process.
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// With --executor local: runs at once (each gets cores / jobs threads).
    #[arg(long, default_value_t = 1, requires = "executor")]
    pub jobs: usize,
    /// With --executor: one run per preset and seed (0,1,2 or 0..3); OUT/sweep_report.html shows
    /// each preset's mean and spread.
    #[arg(long, requires = "executor")]
    pub seeds: Option<String>,
    /// Slurm: --cpus-per-task, --mem, --time, --partition of each task.
    #[arg(long, requires = "executor")]
    pub cpus_per_task: Option<usize>,
    #[arg(long, requires = "executor")]
    pub mem: Option<String>,
    #[arg(long, requires = "executor")]
    pub time: Option<String>,
    #[arg(long, requires = "executor")]
    pub partition: Option<String>,
    /// Slurm: a further sbatch option passed through (repeatable).
    #[arg(
        long = "sbatch-opt",
        value_name = "OPTION",
        allow_hyphen_values = true,
        requires = "executor"
    )]
    pub sbatch_opt: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    args.device.select()?;
    let ladder = if args.ladder {
        let steps = match &args.ladder_dir {
            Some(dir) => crate::train::ladder::steps_from_dir(dir)?,
            None => crate::train::ladder::embedded_steps(),
        };
        Some(steps)
    } else {
        None
    };
    let data = match &ladder {
        Some(steps) => crate::pipeline::ladder::shared_data(steps, |d| args.data.apply(d))?,
        None => {
            if args.data.spec.is_none() {
                bail!("--data is required (norb:DIR, fashion-mnist or idx:DIR)");
            }
            args.data.apply(DataOptions::default())
        }
    };
    let mut opts = ReproduceOptions::new(data, args.out);
    if let Some(steps) = ladder {
        opts.title = format!("norbvae: the improvement ladder ({} steps)", steps.len());
        opts.ladder = Some(steps);
    }
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
    if let Some(kind) = args.executor {
        if args.jobs == 0 {
            bail!("--jobs must be at least 1");
        }
        let exe = std::env::current_exe().context("locating the norbvae binary")?;
        let mut x = ReproduceExecutor::new(kind, exe);
        x.device = args.device.choice()?;
        x.jobs = args.jobs;
        x.seeds = args.seeds.as_deref().map(parse_seeds).transpose()?;
        x.slurm.cpus_per_task = args.cpus_per_task;
        x.slurm.mem = args.mem;
        x.slurm.time = args.time;
        x.slurm.partition = args.partition;
        x.slurm.extra = args.sbatch_opt;
        opts.executor = Some(x);
    }
    let printed = opts
        .executor
        .as_ref()
        .is_some_and(|x| x.kind == ExecutorKind::Print);
    let report = reproduce(&opts)?;
    if printed {
        println!("batch script: {}", report.display());
    } else {
        println!("report: {}", report.display());
    }
    Ok(())
}
