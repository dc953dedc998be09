//! `norbvae bench`: training-step throughput of the two reference workloads (conv VAE 64x64
//! batch 64, dense PCA-VAE 500-d batch 128) and of the improved models (the residual conv VAE and
//! the hierarchical VAE, built from their ladder configs by the code `norbvae train` uses) at the
//! given thread counts, side by side with the PyTorch reference script when a Python with torch
//! is available; and the weight average's update (fused kernel, candle ops, PyTorch).
//!
//! Each thread count runs in a child process of this binary: candle fixes its own thread count
//! once per process (from RAYON_NUM_THREADS / CANDLE_NUM_THREADS), so the child gets both set
//! (candle's own pool to one thread: the kernels do the parallel work), and runs the kernels on a
//! local rayon pool of the given size.
//!
//! On a shared VM one measurement of the same binary moves by a third between consecutive runs,
//! so each (threads, workload) pair is measured `--repeats` times, norbvae and torch runs
//! interleaved so both sides see the same neighbours, and the table shows medians plus the spread
//! of the paired ratios.
use anyhow::{bail, Context, Result};
use norbvae_bench_line::{BenchLine, EmaLine};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::kernels::workloads::{run_workload, Workload};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Thread counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    pub threads: Vec<usize>,
    /// Timed training steps per measurement (after the warm-up steps).
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Untimed warm-up steps.
    #[arg(long, default_value_t = 5)]
    pub warmup: usize,
    /// Measurements per side for each thread count, norbvae and torch interleaved; the table
    /// shows medians, since a single run on a shared machine is at the mercy of its neighbours.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Which workload(s) to train: conv, mlp, both (conv and mlp), residual, hierarchy, ema,
    /// improved (residual, hierarchy and ema) or all.
    #[arg(long, value_enum, default_value = "both")]
    pub workload: WorkloadArg,
    /// Training config of the residual workload (default: the repository's
    /// bench/configs/residual-conv-32.toml).
    #[arg(long)]
    pub residual_config: Option<PathBuf>,
    /// Training config of the hierarchy workload and of the EMA benchmark's parameter set
    /// (default: the repository's configs/ladder/5-residual.toml, the hierarchical VAE with
    /// residual cells).
    #[arg(long)]
    pub hierarchy_config: Option<PathBuf>,
    /// Timed weight-average updates per EMA measurement.
    #[arg(long, default_value_t = 200)]
    pub ema_updates: usize,
    /// Internal (worker): the config of the model workload to run.
    #[arg(long, hide = true)]
    pub config: Option<PathBuf>,
    /// Python interpreter with torch for the side-by-side reference (default: env
    /// NORBVAE_TORCH_PYTHON, else .venv-torch/bin/python in the working directory if present).
    #[arg(long)]
    pub python: Option<PathBuf>,
    /// The PyTorch reference script (default: the repository's bench/pytorch_workloads.py).
    #[arg(long)]
    pub reference: Option<PathBuf>,
    /// Skip the PyTorch reference even if it is available.
    #[arg(long)]
    pub no_torch: bool,
    /// Report samples per CPU-second (all threads' CPU time, for norbvae and torch alike) instead
    /// of per wall-clock second: comparable figures on a machine busy with other work.
    #[arg(long)]
    pub cpu_time: bool,
    /// Seed for data, initial weights and noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Internal: run one measurement in this process and print it as one machine-readable line.
    #[arg(long, hide = true)]
    pub worker: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkloadArg {
    Conv,
    Mlp,
    Both,
    Residual,
    Hierarchy,
    Ema,
    Improved,
    All,
}

/// A model built from a training config (the improved models of the ladder).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelWorkload {
    Residual,
    Hierarchy,
}

impl ModelWorkload {
    fn name(self) -> &'static str {
        match self {
            ModelWorkload::Residual => "residual",
            ModelWorkload::Hierarchy => "hierarchy",
        }
    }

    /// Its config: the option's path, else the repository's ladder config.
    fn config(self, args: &Args) -> Result<PathBuf> {
        let (given, option, rel) = match self {
            ModelWorkload::Residual => (
                &args.residual_config,
                "--residual-config",
                "bench/configs/residual-conv-32.toml",
            ),
            ModelWorkload::Hierarchy => (
                &args.hierarchy_config,
                "--hierarchy-config",
                "configs/ladder/5-residual.toml",
            ),
        };
        match given {
            Some(p) if p.is_file() => Ok(p.clone()),
            Some(p) => bail!("{option}: {} is not a file", p.display()),
            None => {
                find_in_repo(Path::new(rel)).with_context(|| format!("cannot find {rel}; pass {option} PATH"))
            }
        }
    }
}

impl WorkloadArg {
    fn list(self) -> Vec<Workload> {
        match self {
            WorkloadArg::Conv => vec![Workload::Conv],
            WorkloadArg::Mlp => vec![Workload::Mlp],
            WorkloadArg::Both | WorkloadArg::All => vec![Workload::Conv, Workload::Mlp],
            _ => vec![],
        }
    }

    fn models(self) -> Vec<ModelWorkload> {
        match self {
            WorkloadArg::Residual => vec![ModelWorkload::Residual],
            WorkloadArg::Hierarchy => vec![ModelWorkload::Hierarchy],
            WorkloadArg::Improved | WorkloadArg::All => {
                vec![ModelWorkload::Residual, ModelWorkload::Hierarchy]
            }
            _ => vec![],
        }
    }

    fn ema(self) -> bool {
        matches!(self, WorkloadArg::Ema | WorkloadArg::Improved | WorkloadArg::All)
    }
}

/// The worker's one-line result format, shared by writer and parser.
mod norbvae_bench_line {
    pub struct BenchLine {
        pub workload: String,
        pub threads: usize,
        pub samples_per_sec: f64,
        pub first_loss: f64,
        pub last_loss: f64,
        /// Trainable parameters (model workloads; 0 where not counted).
        pub params: usize,
    }

    const TAG: &str = "NORBVAE_BENCH";

    impl BenchLine {
        pub fn format(&self) -> String {
            format!(
                "{TAG} {} {} {:.3} {} {} {}",
                self.workload,
                self.threads,
                self.samples_per_sec,
                self.first_loss,
                self.last_loss,
                self.params
            )
        }

        pub fn parse(line: &str) -> Option<Self> {
            let mut it = line.strip_prefix(TAG)?.split_whitespace();
            Some(Self {
                workload: it.next()?.to_string(),
                threads: it.next()?.parse().ok()?,
                samples_per_sec: it.next()?.parse().ok()?,
                first_loss: it.next()?.parse().ok()?,
                last_loss: it.next()?.parse().ok()?,
                params: it.next()?.parse().ok()?,
            })
        }
    }

    /// The EMA worker's line: updates per second of the fused kernel and of candle's ops.
    pub struct EmaLine {
        pub threads: usize,
        pub fused_per_sec: f64,
        pub candle_per_sec: f64,
        pub tensors: usize,
        pub params: usize,
    }

    const EMA_TAG: &str = "NORBVAE_EMA";

    impl EmaLine {
        pub fn format(&self) -> String {
            format!(
                "{EMA_TAG} {} {:.3} {:.3} {} {}",
                self.threads, self.fused_per_sec, self.candle_per_sec, self.tensors, self.params
            )
        }

        pub fn parse(line: &str) -> Option<Self> {
            let mut it = line.strip_prefix(EMA_TAG)?.split_whitespace();
            Some(Self {
                threads: it.next()?.parse().ok()?,
                fused_per_sec: it.next()?.parse().ok()?,
                candle_per_sec: it.next()?.parse().ok()?,
                tensors: it.next()?.parse().ok()?,
                params: it.next()?.parse().ok()?,
            })
        }
    }
}

pub fn run(args: Args) -> Result<()> {
    if args.threads.is_empty() || args.threads.contains(&0) {
        bail!("--threads: give one or more thread counts of at least 1, e.g. --threads 1,2");
    }
    if args.steps == 0 {
        bail!("--steps must be at least 1");
    }
    if args.repeats == 0 {
        bail!("--repeats must be at least 1");
    }
    if args.ema_updates == 0 {
        bail!("--ema-updates must be at least 1");
    }
    if args.worker {
        return run_worker(&args);
    }
    let models: Vec<(ModelWorkload, PathBuf)> = args
        .workload
        .models()
        .into_iter()
        .map(|m| Ok((m, m.config(&args)?)))
        .collect::<Result<_>>()?;
    let ema_config = match args.workload.ema() {
        true => Some(ModelWorkload::Hierarchy.config(&args)?),
        false => None,
    };
    let torch = if args.no_torch { None } else { find_torch(&args)? };
    if let Some((python, script)) = &torch {
        eprintln!("torch reference: {} {}", python.display(), script.display());
    }
    eprintln!("measuring the FMA peak of one core ...");
    let peak = crate::kernels::peak::fma_peak_gflops(600);
    let workloads = args.workload.list();
    let n = args.repeats;
    let mut rows = Vec::new();
    let mut ema_rows = Vec::new();
    let mut notes = Vec::new();
    for &t in &args.threads {
        let mut block: Vec<Row> = workloads.iter().map(|w| Row::new(w.name(), t)).collect();
        let mut model_block: Vec<Row> = models.iter().map(|(m, _)| Row::new(m.name(), t)).collect();
        let mut ema_row = EmaRow::new(t);
        for r in 1..=n {
            for (&w, row) in workloads.iter().zip(&mut block) {
                eprintln!(
                    "repeat {r}/{n}: norbvae {} {t} thread(s), {} steps ...",
                    w.name(),
                    args.steps
                );
                row.push_ours(&spawn_worker(&args, t, w.name(), None)?);
            }
            if let (Some((python, script)), false) = (&torch, workloads.is_empty()) {
                // The script cannot pick one of these: it always trains conv then mlp, so one run
                // per thread count and repeat serves every row of the block.
                eprintln!("repeat {r}/{n}: torch conv+mlp {t} thread(s), 30 steps ...");
                let lines = run_torch(python, script, &[], &[t], args.cpu_time)?;
                for row in &mut block {
                    let line = lines
                        .iter()
                        .find(|l| l.workload == row.workload && l.threads == t)
                        .with_context(|| {
                            format!(
                                "PyTorch reference printed no {} result for {t} thread(s)",
                                row.workload
                            )
                        })?;
                    row.push_torch(line);
                }
            }
            for ((m, config), row) in models.iter().zip(&mut model_block) {
                eprintln!(
                    "repeat {r}/{n}: norbvae {} ({}) {t} thread(s), {} steps ...",
                    m.name(),
                    config.display(),
                    args.steps
                );
                let ours = spawn_worker(&args, t, m.name(), Some(config))?;
                row.push_ours(&ours);
                if let Some((python, script)) = &torch {
                    eprintln!(
                        "repeat {r}/{n}: torch {} {t} thread(s), {} steps ...",
                        m.name(),
                        args.steps
                    );
                    let extra = model_script_args(config, m.name(), &args);
                    let lines = run_torch(python, script, &extra, &[t], args.cpu_time)?;
                    let line = lines
                        .iter()
                        .find(|l| l.workload == m.name() && l.threads == t)
                        .with_context(|| format!("PyTorch reference printed no {} result", m.name()))?;
                    same_parameter_count(m.name(), config, ours.params, line.params)?;
                    if r == 1 && t == args.threads[0] {
                        notes.push(format!(
                            "{}: {} trainable parameters on both sides ({})",
                            m.name(),
                            ours.params,
                            config.display()
                        ));
                    }
                    row.push_torch(line);
                }
            }
            if let Some(config) = &ema_config {
                eprintln!(
                    "repeat {r}/{n}: norbvae EMA {t} thread(s), {} updates ...",
                    args.ema_updates
                );
                let ours = spawn_ema_worker(&args, t, config)?;
                let theirs = match &torch {
                    Some((python, script)) => {
                        eprintln!("repeat {r}/{n}: torch EMA {t} thread(s) ...");
                        let extra = ema_script_args(config, &args);
                        let out = run_script(python, script, &extra, &[t], false)?;
                        let line = out
                            .lines()
                            .find_map(parse_torch_ema_line)
                            .with_context(|| format!("PyTorch reference printed no EMA result:\n{out}"))?;
                        if (line.tensors, line.params) != (ours.tensors, ours.params) {
                            bail!(
                                "EMA benchmark of {}: norbvae averages {} tensors of {} parameters, the \
                                 PyTorch replica {} of {}; bench/pytorch_workloads.py no longer builds the same model",
                                config.display(),
                                ours.tensors,
                                ours.params,
                                line.tensors,
                                line.params
                            );
                        }
                        Some(line.per_sec)
                    }
                    None => None,
                };
                ema_row.push(&ours, theirs);
            }
        }
        rows.extend(block);
        rows.extend(model_block);
        if ema_config.is_some() {
            ema_rows.push(ema_row);
        }
    }
    if !rows.is_empty() {
        print_table(&rows, args.steps, n, args.cpu_time, peak);
    }
    for note in &notes {
        println!("{note}");
    }
    if let Some(config) = &ema_config {
        print_ema_table(&ema_rows, config, args.ema_updates, n);
    }
    if torch.is_none() && !args.no_torch {
        println!(
            "(no PyTorch comparison: pass --python PATH or set NORBVAE_TORCH_PYTHON to a Python with torch)"
        );
    }
    Ok(())
}

/// Refuses a comparison whose two sides are not the same model.
fn same_parameter_count(name: &str, config: &Path, ours: usize, theirs: usize) -> Result<()> {
    if ours != theirs {
        bail!(
            "{name} workload ({}): norbvae's model has {ours} trainable parameters, the PyTorch replica \
             {theirs}; bench/pytorch_workloads.py no longer builds the same architecture as this config, \
             so their speeds would not compare",
            config.display()
        );
    }
    Ok(())
}

/// The reference script's arguments for a model workload (before the thread counts).
fn model_script_args(config: &Path, name: &str, args: &Args) -> Vec<String> {
    vec![
        "--config".into(),
        config.display().to_string(),
        "--name".into(),
        name.into(),
        "--steps".into(),
        args.steps.to_string(),
        "--warmup".into(),
        args.warmup.to_string(),
    ]
}

fn ema_script_args(config: &Path, args: &Args) -> Vec<String> {
    vec![
        "--config".into(),
        config.display().to_string(),
        "--name".into(),
        ModelWorkload::Hierarchy.name().into(),
        "--ema".into(),
        "--ema-updates".into(),
        args.ema_updates.to_string(),
    ]
}

fn run_worker(args: &Args) -> Result<()> {
    use crate::train::step_bench::{run_ema, run_model_steps, BenchModel};
    let threads = args.threads[0];
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .context("building the thread pool")?;
    for w in args.workload.list() {
        let r = pool.install(|| run_workload(w, args.warmup, args.steps, args.seed))?;
        let line = BenchLine {
            workload: w.name().to_string(),
            threads,
            samples_per_sec: if args.cpu_time {
                r.samples_per_cpu_sec
            } else {
                r.samples_per_sec
            },
            first_loss: r.first_loss as f64,
            last_loss: r.last_loss as f64,
            params: 0,
        };
        println!("{}", line.format());
    }
    for m in args.workload.models() {
        let config = match &args.config {
            Some(c) => c.clone(),
            None => m.config(args)?,
        };
        let model = BenchModel::from_config(&config)?;
        let r = pool.install(|| run_model_steps(&model, args.warmup, args.steps, args.seed))?;
        let line = BenchLine {
            workload: m.name().to_string(),
            threads,
            samples_per_sec: if args.cpu_time {
                r.samples_per_cpu_sec
            } else {
                r.samples_per_sec
            },
            first_loss: r.first_loss,
            last_loss: r.last_loss,
            params: r.params,
        };
        println!("{}", line.format());
    }
    if args.workload == WorkloadArg::Ema {
        let config = match &args.config {
            Some(c) => c.clone(),
            None => ModelWorkload::Hierarchy.config(args)?,
        };
        let model = BenchModel::from_config(&config)?;
        let decay = model.cfg.train.ema_decay.unwrap_or(DEFAULT_EMA_DECAY);
        let r = pool.install(|| run_ema(&model, args.ema_updates, decay))?;
        let line = EmaLine {
            threads,
            fused_per_sec: r.fused_per_sec,
            candle_per_sec: r.candle_per_sec,
            tensors: r.tensors,
            params: r.params,
        };
        println!("{}", line.format());
    }
    if std::env::var_os("NORBVAE_KERNEL_PROFILE").is_some() {
        eprint!("{}", crate::kernels::profile_report());
    }
    Ok(())
}

/// The EMA benchmark's decay when the config has no `train.ema_decay` (VDVAE's; the reference
/// script uses the same).
const DEFAULT_EMA_DECAY: f64 = 0.999;

/// Runs one measurement in a child process (see the module doc) and returns its stdout.
fn spawn(args: &Args, threads: usize, workload: &str, config: Option<&Path>) -> Result<String> {
    let exe = std::env::current_exe().context("locating the norbvae executable")?;
    let mut cmd = Command::new(&exe);
    cmd.args([
        "bench",
        "--worker",
        "--threads",
        &threads.to_string(),
        "--workload",
        workload,
    ])
    .args([
        "--steps",
        &args.steps.to_string(),
        "--warmup",
        &args.warmup.to_string(),
        "--ema-updates",
        &args.ema_updates.to_string(),
    ])
    .args(["--seed", &args.seed.to_string()])
    .args(args.cpu_time.then_some("--cpu-time"))
    .env("RAYON_NUM_THREADS", threads.to_string())
    // candle's own pool only runs small element-wise ops here; its spinning workers would
    // compete with the kernels' rayon threads for the cores (see process::init_process).
    .env("CANDLE_NUM_THREADS", "1");
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "benchmark worker failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if std::env::var_os("NORBVAE_KERNEL_PROFILE").is_some() {
        // The worker's per-kernel profile (its stderr) would otherwise be dropped.
        eprintln!("kernel profile, {workload} {threads} thread(s):");
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn spawn_worker(args: &Args, threads: usize, workload: &str, config: Option<&Path>) -> Result<BenchLine> {
    spawn(args, threads, workload, config)?
        .lines()
        .find_map(BenchLine::parse)
        .context("benchmark worker printed no result")
}

fn spawn_ema_worker(args: &Args, threads: usize, config: &Path) -> Result<EmaLine> {
    spawn(args, threads, "ema", Some(config))?
        .lines()
        .find_map(EmaLine::parse)
        .context("EMA benchmark worker printed no result")
}

/// The Python with torch and the reference script, if both can be found.
fn find_torch(args: &Args) -> Result<Option<(PathBuf, PathBuf)>> {
    let python = match &args.python {
        Some(p) => {
            if !p.exists() {
                bail!("--python: {} does not exist", p.display());
            }
            Some(p.clone())
        }
        None => std::env::var_os("NORBVAE_TORCH_PYTHON")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from(".venv-torch/bin/python")).filter(|p| p.exists())),
    };
    let Some(python) = python else { return Ok(None) };
    let script = match &args.reference {
        Some(p) => {
            if !p.is_file() {
                bail!("--reference: {} is not a file", p.display());
            }
            p.clone()
        }
        None => match default_reference() {
            Some(p) => p,
            None => {
                if args.python.is_some() {
                    bail!("cannot find bench/pytorch_workloads.py; pass --reference PATH");
                }
                return Ok(None);
            }
        },
    };
    Ok(Some((python, script)))
}

/// bench/pytorch_workloads.py in the repository (found from the current directory or the
/// executable's location, walking up a few levels, else the source tree this binary was built from).
fn default_reference() -> Option<PathBuf> {
    find_in_repo(Path::new("bench/pytorch_workloads.py"))
}

/// A file of the repository at `rel` (found from the current directory or the executable's
/// location, walking up a few levels, else the source tree this binary was built from).
fn find_in_repo(rel: &Path) -> Option<PathBuf> {
    let mut starts = vec![];
    if let Ok(d) = std::env::current_dir() {
        starts.push(d);
    }
    if let Ok(e) = std::env::current_exe() {
        starts.push(e);
    }
    starts.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    for s in starts {
        for dir in s.ancestors().take(6) {
            let cand = dir.join(rel);
            if cand.is_file() {
                return Some(cand);
            }
        }
    }
    None
}

/// Runs the reference script with `extra` arguments and the thread counts; its stdout.
fn run_script(
    python: &Path,
    script: &Path,
    extra: &[String],
    threads: &[usize],
    cpu_time: bool,
) -> Result<String> {
    let mut cmd = Command::new(python);
    if cpu_time {
        // The script times with perf_counter; process_time counts the CPU time of all threads.
        cmd.args([
            "-c",
            "import sys, time, runpy; time.perf_counter = time.process_time; \
             sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
        ]);
    }
    let out = cmd
        .arg(script)
        .args(extra)
        .args(threads.iter().map(|t| t.to_string()))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs the reference script and parses its lines
/// `torch conv threads=1 B=64: 291 samples/s loss 2915.3 -> 2804.1` (model workloads add
/// ` params 4701473`).
fn run_torch(
    python: &Path,
    script: &Path,
    extra: &[String],
    threads: &[usize],
    cpu_time: bool,
) -> Result<Vec<BenchLine>> {
    let text = run_script(python, script, extra, threads, cpu_time)?;
    let lines: Vec<BenchLine> = text.lines().filter_map(parse_torch_line).collect();
    if lines.is_empty() {
        bail!("PyTorch reference printed no results:\n{text}");
    }
    Ok(lines)
}

fn parse_torch_line(line: &str) -> Option<BenchLine> {
    let rest = line.strip_prefix("torch ")?;
    let mut it = rest.split_whitespace();
    let workload = it.next()?.to_string();
    let threads = it.next()?.strip_prefix("threads=")?.parse().ok()?;
    let _batch = it.next()?;
    let samples_per_sec = it.next()?.parse().ok()?;
    let (_, losses) = rest.split_once(" loss ")?;
    let (a, b) = losses.split_once(" -> ")?;
    let (b, params) = match b.split_once(" params ") {
        Some((b, p)) => (b, p.trim().parse().ok()?),
        None => (b, 0),
    };
    Some(BenchLine {
        workload,
        threads,
        samples_per_sec,
        first_loss: a.trim().parse().ok()?,
        last_loss: b.trim().parse().ok()?,
        params,
    })
}

/// The reference script's EMA line:
/// `torch ema-hierarchy threads=1 tensors=144: 190.7 updates/s params 4870881`.
struct TorchEma {
    per_sec: f64,
    tensors: usize,
    params: usize,
}

fn parse_torch_ema_line(line: &str) -> Option<TorchEma> {
    let rest = line.strip_prefix("torch ema-")?;
    let mut it = rest.split_whitespace();
    let _name = it.next()?;
    let _threads = it.next()?.strip_prefix("threads=")?;
    let tensors = it
        .next()?
        .strip_prefix("tensors=")?
        .strip_suffix(':')?
        .parse()
        .ok()?;
    let per_sec = it.next()?.parse().ok()?;
    let (_, params) = rest.split_once(" params ")?;
    Some(TorchEma {
        per_sec,
        tensors,
        params: params.trim().parse().ok()?,
    })
}

/// Approximate FLOPs of one training step per sample (forward + both backward GEMMs), used to
/// state the fraction of the machine's GEMM peak reached.
fn flops_per_sample(workload: &str) -> f64 {
    match workload {
        // Encoder convs and decoder transposed convs: 2 * Cout * P * Cin * 16 each, x3 for the step.
        "conv" => {
            let ch = [1usize, 16, 32, 64, 128, 256, 512];
            let mut f = 0.0;
            for i in 0..6 {
                let p = (32 >> i) * (32 >> i);
                f += 2.0 * 2.0 * (ch[i + 1] * p * ch[i] * 16) as f64;
            }
            let dense = 2.0 * (512 * 256 + 256 * 20 + 10 * 256 + 256 * 512) as f64;
            3.0 * (f + dense)
        }
        "mlp" => {
            let mm = 500 * 512 + 3 * 512 * 512 + 512 * 256 + 128 * 512 + 3 * 512 * 512 + 512 * 500;
            3.0 * 2.0 * mm as f64
        }
        _ => f64::NAN,
    }
}

/// One table row: a workload at a thread count, with every repeat's figure from each side.
struct Row {
    workload: String,
    threads: usize,
    ours: Vec<f64>,
    torch: Vec<f64>,
    /// Loss trajectories of the first repeat only: every repeat trains from the same seed, so
    /// later ones add nothing but clutter.
    ours_loss: Option<(f64, f64)>,
    torch_loss: Option<(f64, f64)>,
}

impl Row {
    fn new(workload: &str, threads: usize) -> Self {
        Self {
            workload: workload.to_string(),
            threads,
            ours: Vec::new(),
            torch: Vec::new(),
            ours_loss: None,
            torch_loss: None,
        }
    }

    fn push_ours(&mut self, l: &BenchLine) {
        self.ours.push(l.samples_per_sec);
        self.ours_loss.get_or_insert((l.first_loss, l.last_loss));
    }

    fn push_torch(&mut self, l: &BenchLine) {
        self.torch.push(l.samples_per_sec);
        self.torch_loss.get_or_insert((l.first_loss, l.last_loss));
    }
}

/// What the table shows of one row's repeats.
#[derive(Debug, PartialEq)]
struct Summary {
    ours: f64,
    torch: Option<f64>,
    /// Ratio of the medians: one run slowed by a neighbour moves it less than it moves any pair.
    ratio: Option<f64>,
    /// min..max over i of ours[i] / torch[i]: runs i of both sides ran back to back, so each
    /// pair saw roughly the same machine, and the range shows how far the noise still reaches.
    paired_ratio: Option<(f64, f64)>,
}

/// Medians of both sides and the spread of the paired ratios; `torch` empty means no reference.
fn summarize(ours: &[f64], torch: &[f64]) -> Summary {
    let ours_med = median(ours);
    let torch_med = (!torch.is_empty()).then(|| median(torch));
    let pairs: Vec<f64> = ours.iter().zip(torch).map(|(o, t)| o / t).collect();
    let paired_ratio = pairs.iter().copied().fold(None, |acc, r| match acc {
        None => Some((r, r)),
        Some((lo, hi)) => Some((f64::min(lo, r), f64::max(hi, r))),
    });
    Summary {
        ours: ours_med,
        torch: torch_med,
        ratio: torch_med.map(|t| ours_med / t),
        paired_ratio,
    }
}

/// The middle value (mean of the two middle ones for an even count); NaN for no values.
fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// `peak`: the measured single-core FMA peak (GFLOP/s), for the "% of peak" columns.
fn print_table(rows: &[Row], steps: usize, repeats: usize, cpu_time: bool, peak: Option<f64>) {
    let unit = if cpu_time {
        "samples per CPU-second"
    } else {
        "samples/s (wall clock)"
    };
    println!(
        "full training steps (forward, backward, Adam), {unit}; norbvae {steps} timed steps, torch 30 \
         (conv, mlp) or {steps} (residual, hierarchy: the trainer's step of the model built from the config)"
    );
    let has_torch = rows.iter().any(|r| !r.torch.is_empty());
    if has_torch {
        println!(
            "medians of {repeats} run(s) per side, norbvae and torch interleaved; ratio = median / median, \
             pair ratios = min..max of norbvae run i / torch run i"
        );
    } else {
        println!("medians of {repeats} run(s)");
    }
    match peak {
        Some(p) => println!(
            "machine: measured f32 FMA peak {p:.1} GFLOP/s per core ({}); % peak = step GFLOP/s / (peak x threads)",
            crate::kernels::peak::fma_isa()
        ),
        None => println!("machine: FMA peak not measured (no AVX2/FMA)"),
    }
    println!(
        "{:<9} {:>7} {:>12} {:>10} {:>8} {:>13} {:>11} {:>15}   {:<24} {:<24}",
        "model",
        "threads",
        "norbvae/s",
        "torch/s",
        "ratio",
        "pair ratios",
        "GFLOP/s",
        "% peak ours/pt",
        "norbvae loss",
        "torch loss"
    );
    let dash = || "-".to_string();
    for row in rows {
        let s = summarize(&row.ours, &row.torch);
        let gflop_per_sample = flops_per_sample(&row.workload) / 1e9;
        let gflops = s.ours * gflop_per_sample;
        let pct = |rate: f64| {
            peak.filter(|_| gflop_per_sample.is_finite())
                .map(|p| 100.0 * rate * gflop_per_sample / (p * row.threads as f64))
        };
        let pcts = match (pct(s.ours), s.torch.and_then(pct)) {
            (Some(a), Some(b)) => format!("{a:.0}% / {b:.0}%"),
            (Some(a), None) => format!("{a:.0}% / -"),
            _ => dash(),
        };
        let loss = |l: Option<(f64, f64)>| l.map(|(a, b)| format!("{a:.1} -> {b:.1}")).unwrap_or_else(dash);
        println!(
            "{:<9} {:>7} {:>12.0} {:>10} {:>8} {:>13} {:>11} {:>15}   {:<24} {:<24}",
            row.workload,
            row.threads,
            s.ours,
            s.torch.map(|t| format!("{t:.0}")).unwrap_or_else(dash),
            s.ratio.map(|r| format!("{r:.2}x")).unwrap_or_else(dash),
            s.paired_ratio
                .map(|(lo, hi)| format!("{lo:.2}..{hi:.2}x"))
                .unwrap_or_else(dash),
            if gflops.is_finite() {
                format!("{gflops:.1}")
            } else {
                dash()
            },
            pcts,
            loss(row.ours_loss),
            loss(row.torch_loss),
        );
    }
}

/// The EMA benchmark at one thread count: updates per second of each repeat, per side.
struct EmaRow {
    threads: usize,
    fused: Vec<f64>,
    candle: Vec<f64>,
    torch: Vec<f64>,
    tensors: usize,
    params: usize,
}

impl EmaRow {
    fn new(threads: usize) -> Self {
        Self {
            threads,
            fused: Vec::new(),
            candle: Vec::new(),
            torch: Vec::new(),
            tensors: 0,
            params: 0,
        }
    }

    fn push(&mut self, ours: &EmaLine, torch: Option<f64>) {
        self.fused.push(ours.fused_per_sec);
        self.candle.push(ours.candle_per_sec);
        self.torch.extend(torch);
        (self.tensors, self.params) = (ours.tensors, ours.params);
    }
}

fn print_ema_table(rows: &[EmaRow], config: &Path, updates: usize, repeats: usize) {
    let Some(first) = rows.first() else { return };
    println!(
        "\nweight average (EMA) update of every trainable tensor of {} ({} tensors, {} parameters), \
         updates per second, {updates} timed updates, medians of {repeats} run(s):",
        config.display(),
        first.tensors,
        first.params
    );
    println!(
        "fused = kernels::ema_update (the trainer's), candle = avg * d + w * (1 - d) in candle ops, \
         torch = torch._foreach_lerp_ (swa_utils' multi-tensor EMA)"
    );
    println!(
        "{:>7} {:>10} {:>10} {:>10} {:>14} {:>14} {:>13}",
        "threads", "fused/s", "candle/s", "torch/s", "fused/candle", "fused/torch", "pair ratios"
    );
    for r in rows {
        let fused = median(&r.fused);
        let candle = median(&r.candle);
        let s = summarize(&r.fused, &r.torch);
        let dash = || "-".to_string();
        println!(
            "{:>7} {:>10.1} {:>10.1} {:>10} {:>14} {:>14} {:>13}",
            r.threads,
            fused,
            candle,
            s.torch.map(|t| format!("{t:.1}")).unwrap_or_else(dash),
            format!("{:.2}x", fused / candle),
            s.ratio.map(|x| format!("{x:.2}x")).unwrap_or_else(dash),
            s.paired_ratio
                .map(|(lo, hi)| format!("{lo:.2}..{hi:.2}x"))
                .unwrap_or_else(dash),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_script_output_and_worker_lines() {
        let t = parse_torch_line("torch conv threads=2 B=64: 476 samples/s loss 2915.3 -> 2804.1").unwrap();
        assert_eq!((t.workload.as_str(), t.threads), ("conv", 2));
        assert_eq!(
            (t.samples_per_sec, t.first_loss, t.last_loss),
            (476.0, 2915.3, 2804.1)
        );
        assert!(parse_torch_line("torch 2.15.0").is_none());
        let w = BenchLine {
            workload: "mlp".into(),
            threads: 1,
            samples_per_sec: 12.5,
            first_loss: 3.0,
            last_loss: 2.0,
            params: 17,
        };
        let back = BenchLine::parse(&w.format()).unwrap();
        assert_eq!(
            (
                back.workload.as_str(),
                back.threads,
                back.samples_per_sec,
                back.params
            ),
            ("mlp", 1, 12.5, 17)
        );
        let m = parse_torch_line(
            "torch residual threads=1 B=64: 87 samples/s loss 102148.1 -> 257.7 params 4701473",
        )
        .unwrap();
        assert_eq!(
            (m.workload.as_str(), m.params, m.last_loss),
            ("residual", 4701473, 257.7)
        );
        let e =
            parse_torch_ema_line("torch ema-hierarchy threads=2 tensors=144: 190.7 updates/s params 4870881")
                .unwrap();
        assert_eq!((e.per_sec, e.tensors, e.params), (190.7, 144, 4870881));
        let o = EmaLine {
            threads: 2,
            fused_per_sec: 900.5,
            candle_per_sec: 100.25,
            tensors: 144,
            params: 4870881,
        };
        let back = EmaLine::parse(&o.format()).unwrap();
        assert_eq!(
            (
                back.threads,
                back.fused_per_sec,
                back.candle_per_sec,
                back.tensors,
                back.params
            ),
            (2, 900.5, 100.25, 144, 4870881)
        );
    }

    #[test]
    fn medians_and_paired_ratio_spread() {
        // Odd count: the middle value, whatever the order.
        assert_eq!(median(&[3900.0, 2700.0, 3000.0]), 3000.0);
        // Even count: the mean of the two middle values.
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());

        let s = summarize(&[3000.0, 3900.0, 2700.0], &[2000.0, 3000.0, 2500.0]);
        assert_eq!(s.ours, 3000.0);
        assert_eq!(s.torch, Some(2500.0));
        assert_eq!(s.ratio, Some(1.2));
        // Pairs: 1.5, 1.3, 1.08.
        let (lo, hi) = s.paired_ratio.unwrap();
        assert!(
            (lo - 1.08).abs() < 1e-12 && (hi - 1.5).abs() < 1e-12,
            "{lo}..{hi}"
        );

        let s = summarize(&[100.0, 300.0], &[]);
        assert_eq!(
            s,
            Summary {
                ours: 200.0,
                torch: None,
                ratio: None,
                paired_ratio: None
            }
        );
    }

    #[test]
    fn conv_step_costs_about_130_mflop_per_image() {
        let f = flops_per_sample("conv");
        assert!((1.2e8..1.4e8).contains(&f), "{f}");
    }
}
