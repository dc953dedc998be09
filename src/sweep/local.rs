//! The local executor: at most `jobs` child `norbvae train` processes at once, each with
//! `threads_per_run` rayon threads, one progress view for the sweep. A failed run is recorded with
//! its error and the others go on. SIGINT/SIGTERM/SIGUSR1 to the sweep are forwarded to the
//! running children (which stop at a clean point with a checkpoint) and the sweep stops launching.
use super::{has_checkpoint, write_failure, LOG_FILE};
use crate::format::sweep::{RunStatus, SweepManifest};
use crate::util::device::DeviceChoice;
use crate::util::signals::{self, Interrupted, StopSignal};
use anyhow::{Context, Result};
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// The norbvae binary the children run.
    pub exe: PathBuf,
    /// Runs at once.
    pub jobs: usize,
    /// RAYON_NUM_THREADS of each child.
    pub threads_per_run: usize,
    /// Each child's `--device`.
    pub device: DeviceChoice,
}

impl LocalOptions {
    /// `jobs` runs at once sharing this machine's cores.
    pub fn new(exe: PathBuf, jobs: usize) -> Self {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let jobs = jobs.max(1);
        Self {
            exe,
            jobs,
            threads_per_run: (cores / jobs).max(1),
            device: DeviceChoice::Auto,
        }
    }
}

/// How a local sweep went.
#[derive(Debug, Clone, Default)]
pub struct LocalReport {
    /// Runs trained to the end in this invocation.
    pub trained: Vec<String>,
    /// Runs already finished before it (not touched).
    pub skipped: usize,
    /// (run, error) of the runs that failed in this invocation.
    pub failed: Vec<(String, String)>,
    /// Wall time of each run trained here, seconds.
    pub run_seconds: Vec<f64>,
}

struct Running {
    index: usize,
    child: Child,
    started: Instant,
}

/// Run every unfinished run of `manifest` (statuses must be fresh, see `refresh_from_disk`).
/// Returns `Err(Interrupted)` after a stop signal, once the children have stopped.
pub fn run_local(sweep_dir: &Path, manifest: &mut SweepManifest, opts: &LocalOptions) -> Result<LocalReport> {
    signals::install().context("installing signal handlers")?;
    let mut report = LocalReport::default();
    let todo: Vec<usize> = manifest
        .runs
        .iter()
        .filter(|r| r.status != RunStatus::Done)
        .map(|r| r.index)
        .collect();
    report.skipped = manifest.runs.len() - todo.len();
    let pb = indicatif::ProgressBar::new(todo.len() as u64);
    pb.set_style(
        indicatif::ProgressStyle::with_template("sweep [{bar:30}] {pos}/{len} runs, {elapsed} {msg}")
            .expect("static progress template")
            .progress_chars("=> "),
    );
    let say = |msg: String| pb.suspend(|| eprintln!("{msg}"));
    say(format!(
        "sweep {}: {} runs, {} finished already, {} to run, {} at once with {} threads each",
        sweep_dir.display(),
        manifest.runs.len(),
        report.skipped,
        todo.len(),
        opts.jobs,
        opts.threads_per_run
    ));
    let mut next = 0usize;
    let mut running: Vec<Running> = Vec::new();
    let mut forwarded: Option<StopSignal> = None;
    let t0 = Instant::now();
    loop {
        let stop = signals::pending();
        if let Some(sig) = stop {
            if forwarded.is_none() {
                say(format!(
                    "{}: stopping {} running run(s) at their next clean point; queued runs are not started",
                    sig.name(),
                    running.len()
                ));
                for r in &running {
                    // SAFETY: kill(2) with the pid of a child we spawned and have not yet reaped
                    // (so the pid cannot have been reused); it touches no memory.
                    unsafe {
                        libc::kill(r.child.id() as libc::pid_t, sig.number());
                    }
                }
                forwarded = Some(sig);
            }
        }
        while stop.is_none() && running.len() < opts.jobs && next < todo.len() {
            let index = todo[next];
            next += 1;
            let child = spawn(sweep_dir, manifest, index, opts)?;
            manifest.runs[index].status = RunStatus::Running;
            manifest.runs[index].error = None;
            running.push(Running {
                index,
                child,
                started: Instant::now(),
            });
            manifest.save(sweep_dir)?;
        }
        let mut i = 0;
        while i < running.len() {
            let Some(status) = running[i].child.try_wait()? else {
                i += 1;
                continue;
            };
            let r = running.swap_remove(i);
            let secs = r.started.elapsed().as_secs_f64();
            let entry = &mut manifest.runs[r.index];
            let dir = sweep_dir.join(&entry.dir);
            let code = status.code();
            let stopped = matches!(code, Some(c) if StopSignal::ALL.iter().any(|s| s.exit_code() == c));
            if status.success() && dir.join("metrics.json").is_file() {
                entry.status = RunStatus::Done;
                report.trained.push(entry.name.clone());
                report.run_seconds.push(secs);
                say(format!("done    {} ({secs:.1} s)", entry.name));
            } else if stopped || status.code().is_none() && has_checkpoint(&dir) {
                entry.status = if has_checkpoint(&dir) {
                    RunStatus::Partial
                } else {
                    RunStatus::Queued
                };
                say(format!(
                    "stopped {} ({}); it resumes on the next `norbvae sweep`",
                    entry.name,
                    describe(status)
                ));
            } else {
                let err = write_failure(&dir, &format!("exit: {}", describe(status)))?;
                entry.status = RunStatus::Failed;
                entry.error = Some(err.clone());
                say(format!(
                    "FAILED  {} ({}), log {}:\n{}",
                    entry.name,
                    describe(status),
                    dir.join(LOG_FILE).display(),
                    indent(&err)
                ));
                report.failed.push((entry.name.clone(), err));
            }
            manifest.save(sweep_dir)?;
            pb.inc(1);
        }
        let queued = todo.len() - next;
        pb.set_message(format!(
            "{} running, {queued} queued, {} failed{}",
            running.len(),
            report.failed.len(),
            eta(&report.run_seconds, &running, queued, opts.jobs)
        ));
        if running.is_empty() && (next == todo.len() || stop.is_some()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    pb.finish_and_clear();
    say(format!(
        "sweep {}: {} trained, {} failed, {} finished before, in {:.1} s",
        sweep_dir.display(),
        report.trained.len(),
        report.failed.len(),
        report.skipped,
        t0.elapsed().as_secs_f64()
    ));
    if let Some(signal) = forwarded {
        return Err(Interrupted { signal }.into());
    }
    Ok(report)
}

fn spawn(sweep_dir: &Path, manifest: &SweepManifest, index: usize, opts: &LocalOptions) -> Result<Child> {
    let entry = &manifest.runs[index];
    let dir = sweep_dir.join(&entry.dir);
    let _ = std::fs::remove_file(dir.join(super::FAILED_FILE));
    let log_path = dir.join(LOG_FILE);
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("opening {}", log_path.display()))?;
    let resume = has_checkpoint(&dir);
    let args = train_args(&dir, resume, opts.device);
    writeln!(
        log,
        "--- norbvae sweep: {} run {}: {} {}",
        if resume { "resuming" } else { "starting" },
        entry.name,
        opts.exe.display(),
        args.iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    )?;
    let mut cmd = Command::new(&opts.exe);
    cmd.args(&args);
    cmd.env("RAYON_NUM_THREADS", opts.threads_per_run.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // Its own process group: a Ctrl-C in the terminal reaches the sweep only, which forwards
        // it once (a second SIGINT would make the trainer exit without its clean stop).
        .process_group(0);
    cmd.spawn()
        .with_context(|| format!("starting {} for run {}", opts.exe.display(), entry.name))
}

/// A child's arguments: `train --config RUN/config.toml --out RUN --device D [--resume]`.
pub fn train_args(run_dir: &Path, resume: bool, device: DeviceChoice) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "train".into(),
        "--config".into(),
        run_dir.join("config.toml").into(),
        "--out".into(),
        run_dir.into(),
        "--device".into(),
        device.to_string().into(),
    ];
    if resume {
        args.push("--resume".into());
    }
    args
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown exit".into(),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    | {l}\n")).collect::<String>()
}

/// Remaining time from the mean duration of the runs finished so far.
fn eta(done_secs: &[f64], running: &[Running], queued: usize, jobs: usize) -> String {
    if done_secs.is_empty() {
        return String::new();
    }
    let mean = done_secs.iter().sum::<f64>() / done_secs.len() as f64;
    let left_running: f64 = running
        .iter()
        .map(|r| (mean - r.started.elapsed().as_secs_f64()).max(0.0))
        .sum();
    let secs = (left_running + queued as f64 * mean) / jobs.max(1) as f64;
    format!(
        ", ETA {}",
        indicatif::HumanDuration(Duration::from_secs_f64(secs))
    )
}
