//! `norbvae sweep`: train a grid of config overrides x seeds, locally or as one Slurm job array;
//! `norbvae sweep status DIR [--wait]`: where a sweep stands.
use crate::cli::common::DeviceArgs;
use crate::format::sweep::{ExecutorKind, GridAxis, RunStatus, SweepManifest};
use crate::sweep::spec::{parse_grid_arg, parse_seeds, DEFAULT_MAX_RUNS};
use crate::sweep::{self, local, slurm, SlurmOptions, SweepFile, SweepSpec};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<SweepCmd>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, clap::Subcommand)]
pub enum SweepCmd {
    /// Show each run's status (run directories, and squeue for a Slurm sweep).
    Status(StatusArgs),
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The sweep directory (holding sweep.json).
    pub dir: PathBuf,
    /// Block until no run is queued or running.
    #[arg(long)]
    pub wait: bool,
    /// Seconds between checks with --wait.
    #[arg(long, default_value_t = 5.0)]
    pub interval: f64,
}

#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Passed to every run's `norbvae train` (local children and the Slurm batch script).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Sweep file (configs/sweeps/*.toml); the options below override or extend it.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Base training config (TOML).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Dataset for every run (replaces the config's data.spec), e.g. norb:DIR.
    #[arg(long)]
    pub data: Option<String>,
    /// Override a config key for every run (repeatable), as for `norbvae train`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// A swept key and its values, e.g. --grid model.latent_dim=10,32,100 (repeatable).
    #[arg(long = "grid", value_name = "KEY=V1,V2,...")]
    pub grid: Vec<String>,
    /// Seeds, one run per seed and grid point: 0,1,2 or 0..3 (default: the config's seed).
    #[arg(long)]
    pub seeds: Option<String>,
    /// Sweep directory (manifest sweep.json, runs/<name>/).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where the runs train (default local).
    #[arg(long, value_enum)]
    pub executor: Option<ExecutorKind>,
    /// Local executor: runs at once (each gets cores / jobs threads).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Refuse grids with more runs than this (default 256).
    #[arg(long)]
    pub max_runs: Option<usize>,
    /// Slurm: --cpus-per-task of each task (default 1).
    #[arg(long)]
    pub cpus_per_task: Option<usize>,
    /// Slurm: --mem of each task, e.g. 4G.
    #[arg(long)]
    pub mem: Option<String>,
    /// Slurm: --time of each task, e.g. 02:00:00.
    #[arg(long)]
    pub time: Option<String>,
    /// Slurm: --partition.
    #[arg(long)]
    pub partition: Option<String>,
    /// Slurm: --account.
    #[arg(long)]
    pub account: Option<String>,
    /// Slurm: at most this many tasks at once (--array=...%P).
    #[arg(long)]
    pub parallel: Option<usize>,
    /// Slurm: SIGUSR1 this many seconds before the time limit (default 120).
    #[arg(long)]
    pub signal_seconds: Option<u32>,
    /// Slurm: a further sbatch option passed through, e.g. --sbatch-opt=--qos=low (repeatable).
    #[arg(long = "sbatch-opt", value_name = "OPTION", allow_hyphen_values = true)]
    pub sbatch_opt: Vec<String>,
}

pub fn run(args: Args) -> Result<()> {
    match args.command {
        Some(SweepCmd::Status(s)) => status(s),
        None => run_sweep(args.run),
    }
}

/// Command line over the sweep file: scalars replace, lists (--set, --sbatch-opt) extend,
/// --grid keys replace the file's axis of the same key.
fn resolve(a: RunArgs) -> Result<(SweepSpec, PathBuf, ExecutorKind, usize, SlurmOptions)> {
    let file = match &a.file {
        Some(p) => SweepFile::load(p)?,
        None => SweepFile::default(),
    };
    let mut grid: Vec<GridAxis> = file.axes();
    for g in &a.grid {
        let axis = parse_grid_arg(g)?;
        grid.retain(|x| x.key != axis.key);
        grid.push(axis);
    }
    let config = a.config.or(file.config).ok_or_else(|| {
        anyhow::anyhow!("give the base config: --config FILE (or `config` in the --file sweep file)")
    })?;
    let base_config =
        std::fs::canonicalize(&config).with_context(|| format!("base config {}", config.display()))?;
    let out = a
        .out
        .or(file.out)
        .ok_or_else(|| anyhow::anyhow!("give the sweep directory: --out DIR (or `out` in the sweep file)"))?;
    let seeds = match &a.seeds {
        Some(s) => Some(parse_seeds(s)?),
        None => file.seeds,
    };
    let mut set = file.set;
    set.extend(a.set);
    let spec = SweepSpec {
        base_config,
        data: a.data.or(file.data),
        set,
        grid,
        seeds,
        max_runs: a.max_runs.or(file.max_runs).unwrap_or(DEFAULT_MAX_RUNS),
    };
    let executor = a.executor.or(file.executor.kind).unwrap_or(ExecutorKind::Local);
    let jobs = a.jobs.or(file.executor.jobs).unwrap_or(1);
    if jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let mut s = file.slurm;
    s.cpus_per_task = a.cpus_per_task.or(s.cpus_per_task);
    s.mem = a.mem.or(s.mem);
    s.time = a.time.or(s.time);
    s.partition = a.partition.or(s.partition);
    s.account = a.account.or(s.account);
    s.parallel = a.parallel.or(s.parallel);
    s.signal_seconds = a.signal_seconds.or(s.signal_seconds);
    s.extra.extend(a.sbatch_opt);
    Ok((spec, out, executor, jobs, s))
}

fn run_sweep(a: RunArgs) -> Result<()> {
    // Checked, not opened: the children open it (on a Slurm node, not here).
    let device = a.device.choice()?.check_built()?;
    let (spec, out, executor, jobs, slurm_opts) = resolve(a)?;
    // Everything is checked before anything is written or submitted.
    let runs = sweep::plan(&spec)?;
    if executor == ExecutorKind::Slurm {
        slurm::require_sbatch()?;
        if let Ok(m) = SweepManifest::load(&out) {
            if let Some(job) = &m.slurm_job {
                let queued = slurm::queued_tasks(&job.job_id)?;
                if !queued.is_empty() {
                    bail!(
                        "job {} of this sweep still has {} task(s) in the queue: wait for it \
                         (norbvae sweep status {} --wait) or scancel {} first",
                        job.job_id,
                        queued.len(),
                        out.display(),
                        job.job_id
                    );
                }
            }
        }
    }
    let exe = std::env::current_exe().context("locating the norbvae binary")?;
    let mut manifest = sweep::prepare(&out, &spec, &runs, executor)?;
    let finished = manifest
        .runs
        .iter()
        .filter(|r| r.status == RunStatus::Done)
        .count();
    match executor {
        ExecutorKind::Local => {
            let mut opts = local::LocalOptions::new(exe, jobs);
            opts.device = device;
            let report = local::run_local(&out, &mut manifest, &opts)?;
            print!("{}", sweep::status_table(&out, &manifest));
            if !report.failed.is_empty() {
                let names: Vec<&str> = report.failed.iter().map(|(n, _)| n.as_str()).collect();
                bail!(
                    "{} of {} runs failed ({}); the others are in {}",
                    report.failed.len(),
                    manifest.runs.len(),
                    names.join("; "),
                    out.display()
                );
            }
            Ok(())
        }
        ExecutorKind::Print | ExecutorKind::Slurm => {
            if finished == manifest.runs.len() {
                print!("{}", sweep::status_table(&out, &manifest));
                println!("every run is finished: nothing to submit");
                return Ok(());
            }
            let workdir = std::env::current_dir()?;
            let (script, tasks) = slurm::write_script(&out, &manifest, &slurm_opts, &exe, device, &workdir)?;
            if executor == ExecutorKind::Print {
                println!(
                    "wrote {} run configs under {} and the batch script {} ({} tasks); submit with: sbatch {}",
                    manifest.runs.len(),
                    out.join("runs").display(),
                    script.display(),
                    tasks.len(),
                    script.display()
                );
                return Ok(());
            }
            let job = slurm::submit(&script, tasks)?;
            println!(
                "submitted job array {} ({} tasks, {} finished already); follow with: norbvae sweep status {} --wait",
                job.job_id,
                job.tasks.len(),
                finished,
                out.display()
            );
            manifest.slurm_job = Some(job);
            manifest.save(&out)?;
            Ok(())
        }
    }
}

fn status(a: StatusArgs) -> Result<()> {
    let dir = &a.dir;
    loop {
        let mut manifest = SweepManifest::load(dir)?;
        let queued = if manifest.slurm_job.is_some() {
            slurm::refresh(dir, &mut manifest)?
        } else {
            sweep::refresh_from_disk(dir, &mut manifest);
            Default::default()
        };
        manifest.save(dir)?;
        let still_in_queue = !queued.is_empty();
        if !a.wait || !still_in_queue {
            print_status(dir, &manifest, &queued);
            let failed = manifest
                .runs
                .iter()
                .filter(|r| r.status == RunStatus::Failed)
                .count();
            if a.wait && failed > 0 {
                bail!("{failed} of {} runs failed", manifest.runs.len());
            }
            let unfinished = manifest
                .runs
                .iter()
                .filter(|r| r.status != RunStatus::Done)
                .count();
            if a.wait && unfinished > 0 {
                bail!(
                    "{unfinished} of {} runs are not finished and nothing in the queue runs them: \
                     run the same `norbvae sweep` again to resume them",
                    manifest.runs.len()
                );
            }
            return Ok(());
        }
        eprintln!(
            "{}: {} task(s) in the queue, waiting",
            dir.display(),
            queued.len()
        );
        std::thread::sleep(Duration::from_secs_f64(a.interval.max(0.2)));
    }
}

fn print_status(
    dir: &Path,
    manifest: &SweepManifest,
    queued: &std::collections::BTreeMap<usize, slurm::QueuedTask>,
) {
    if let Some(job) = &manifest.slurm_job {
        println!(
            "Slurm job array {} ({} tasks in the queue)",
            job.job_id,
            queued.len()
        );
        if let Some(acct) = slurm::accounting_states(&job.job_id) {
            for (k, s) in acct {
                println!("  sacct: task {k} {s}");
            }
        }
        for (k, t) in queued {
            println!("  squeue: task {k} {} ({})", t.state, t.reason);
        }
    }
    print!("{}", sweep::status_table(dir, manifest));
}
