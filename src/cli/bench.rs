//! `norbvae bench`: training-step throughput of the two reference workloads (conv VAE 64x64
//! batch 64, dense PCA-VAE 500-d batch 128) at the given thread counts, side by side with the
//! PyTorch reference script when a Python with torch is available.
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
use norbvae_bench_line::BenchLine;
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
    /// Which workload(s) to train.
    #[arg(long, value_enum, default_value = "both")]
    pub workload: WorkloadArg,
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
}

impl WorkloadArg {
    fn list(self) -> Vec<Workload> {
        match self {
            WorkloadArg::Conv => vec![Workload::Conv],
            WorkloadArg::Mlp => vec![Workload::Mlp],
            WorkloadArg::Both => vec![Workload::Conv, Workload::Mlp],
        }
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
    }

    const TAG: &str = "NORBVAE_BENCH";

    impl BenchLine {
        pub fn format(&self) -> String {
            format!(
                "{TAG} {} {} {:.3} {} {}",
                self.workload, self.threads, self.samples_per_sec, self.first_loss, self.last_loss
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
    if args.worker {
        return run_worker(&args);
    }
    let torch = if args.no_torch { None } else { find_torch(&args)? };
    if let Some((python, script)) = &torch {
        eprintln!("torch reference: {} {}", python.display(), script.display());
    }
    eprintln!("measuring the FMA peak of one core ...");
    let peak = crate::kernels::peak::fma_peak_gflops(600);
    let workloads = args.workload.list();
    let n = args.repeats;
    let mut rows = Vec::new();
    for &t in &args.threads {
        let mut block: Vec<Row> = workloads.iter().map(|w| Row::new(w.name(), t)).collect();
        for r in 1..=n {
            for (&w, row) in workloads.iter().zip(&mut block) {
                eprintln!(
                    "repeat {r}/{n}: norbvae {} {t} thread(s), {} steps ...",
                    w.name(),
                    args.steps
                );
                row.push_ours(&spawn_worker(&args, t, w)?);
            }
            if let Some((python, script)) = &torch {
                // The script cannot pick one workload: it always trains conv then mlp, so one run
                // per thread count and repeat serves every row of the block.
                eprintln!("repeat {r}/{n}: torch conv+mlp {t} thread(s), 30 steps ...");
                let lines = run_torch(python, script, &[t], args.cpu_time)?;
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
        }
        rows.extend(block);
    }
    print_table(&rows, args.steps, n, args.cpu_time, peak);
    if torch.is_none() && !args.no_torch {
        println!(
            "(no PyTorch comparison: pass --python PATH or set NORBVAE_TORCH_PYTHON to a Python with torch)"
        );
    }
    Ok(())
}

fn run_worker(args: &Args) -> Result<()> {
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
        };
        println!("{}", line.format());
    }
    if std::env::var_os("NORBVAE_KERNEL_PROFILE").is_some() {
        eprint!("{}", crate::kernels::profile_report());
    }
    Ok(())
}

fn spawn_worker(args: &Args, threads: usize, w: Workload) -> Result<BenchLine> {
    let exe = std::env::current_exe().context("locating the norbvae executable")?;
    let out = Command::new(&exe)
        .args([
            "bench",
            "--worker",
            "--threads",
            &threads.to_string(),
            "--workload",
            w.name(),
        ])
        .args([
            "--steps",
            &args.steps.to_string(),
            "--warmup",
            &args.warmup.to_string(),
        ])
        .args(["--seed", &args.seed.to_string()])
        .args(args.cpu_time.then_some("--cpu-time"))
        .env("RAYON_NUM_THREADS", threads.to_string())
        // candle's own pool only runs small element-wise ops here; its spinning workers would
        // compete with the kernels' rayon threads for the cores (see process::init_process).
        .env("CANDLE_NUM_THREADS", "1")
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
        eprintln!("kernel profile, {} {threads} thread(s):", w.name());
        eprint!("{}", String::from_utf8_lossy(&out.stderr));
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(BenchLine::parse)
        .context("benchmark worker printed no result")
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
    let rel = Path::new("bench/pytorch_workloads.py");
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

/// Runs the reference script and parses its lines
/// `torch conv threads=1 B=64: 291 samples/s loss 2915.3 -> 2804.1`.
fn run_torch(python: &Path, script: &Path, threads: &[usize], cpu_time: bool) -> Result<Vec<BenchLine>> {
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
        .args(threads.iter().map(|t| t.to_string()))
        .output()
        .with_context(|| format!("running {}", python.display()))?;
    if !out.status.success() {
        bail!(
            "PyTorch reference failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
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
    Some(BenchLine {
        workload,
        threads,
        samples_per_sec,
        first_loss: a.trim().parse().ok()?,
        last_loss: b.trim().parse().ok()?,
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
    println!("full training steps (forward, backward, Adam), {unit}; norbvae {steps} timed steps, torch 30");
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
        "{:<6} {:>7} {:>12} {:>10} {:>8} {:>13} {:>11} {:>15}   {:<24} {:<24}",
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
        let pct = |rate: f64| peak.map(|p| 100.0 * rate * gflop_per_sample / (p * row.threads as f64));
        let pcts = match (pct(s.ours), s.torch.and_then(pct)) {
            (Some(a), Some(b)) => format!("{a:.0}% / {b:.0}%"),
            (Some(a), None) => format!("{a:.0}% / -"),
            _ => dash(),
        };
        let loss = |l: Option<(f64, f64)>| l.map(|(a, b)| format!("{a:.1} -> {b:.1}")).unwrap_or_else(dash);
        println!(
            "{:<6} {:>7} {:>12.0} {:>10} {:>8} {:>13} {:>11.1} {:>15}   {:<24} {:<24}",
            row.workload,
            row.threads,
            s.ours,
            s.torch.map(|t| format!("{t:.0}")).unwrap_or_else(dash),
            s.ratio.map(|r| format!("{r:.2}x")).unwrap_or_else(dash),
            s.paired_ratio
                .map(|(lo, hi)| format!("{lo:.2}..{hi:.2}x"))
                .unwrap_or_else(dash),
            gflops,
            pcts,
            loss(row.ours_loss),
            loss(row.torch_loss),
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
        };
        let back = BenchLine::parse(&w.format()).unwrap();
        assert_eq!(
            (back.workload.as_str(), back.threads, back.samples_per_sec),
            ("mlp", 1, 12.5)
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
