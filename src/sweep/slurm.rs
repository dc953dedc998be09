//! The Slurm executor: one batch script, ONE job array (`sbatch --array=...%P`), one task per run.
//!
//! Each task runs `norbvae train --device D` on its run directory (the sweep's `--device`; with
//! `--resume` when a checkpoint exists;
//! a finished run exits at once). The job asks Slurm for SIGUSR1 some seconds before its time
//! limit (`--signal=B:USR1@SECONDS`, sent to the batch shell) and is requeueable (`--requeue`): the
//! script traps USR1 and forwards it to the trainer, which stops at its next step and exits with
//! 75 ("requeue me", `util::signals`); the script then requeues its own task
//! (`scontrol requeue JOB_TASK`), which later resumes from the checkpoint. Slurm holds a requeued
//! task for about two minutes (`BeginTime`) before it may start again.
use super::spec::{SlurmOptions, DEFAULT_SIGNAL_SECONDS};
use super::{FAILED_FILE, LOG_FILE};
use crate::format::sweep::{RunStatus, SlurmJob, SweepManifest};
use crate::util::device::DeviceChoice;
use crate::util::signals::REQUEUE_EXIT_CODE;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the batch script goes.
pub fn script_path(sweep_dir: &Path) -> PathBuf {
    sweep_dir.join("slurm").join("sweep.sbatch")
}

/// `program` on PATH, if there.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Fail clearly when sbatch is missing (before anything is written).
pub fn require_sbatch() -> Result<PathBuf> {
    find_on_path("sbatch").ok_or_else(|| {
        anyhow::anyhow!(
            "sbatch not found on PATH: the slurm executor needs Slurm's client commands \
             (Debian: apt-get install slurm-client; a local cluster: scripts/local_slurm.sh start), \
             or use --executor local, or --executor print to write the batch script only"
        )
    })
}

/// Single-quote for bash.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `0-3,5,7-9` from sorted indices.
pub fn array_ranges(indices: &[usize]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// The batch script for the runs `tasks` of the sweep (absolute paths throughout, so the script
/// works from any directory). `workdir` is where relative data paths of the configs resolve.
pub fn batch_script(
    sweep_dir: &Path,
    manifest: &SweepManifest,
    tasks: &[usize],
    opts: &SlurmOptions,
    exe: &Path,
    device: DeviceChoice,
    workdir: &Path,
) -> Result<String> {
    if tasks.is_empty() {
        bail!("no runs to submit");
    }
    let sweep_dir = &if sweep_dir.is_absolute() {
        sweep_dir.to_path_buf()
    } else {
        workdir.join(sweep_dir)
    };
    let mut s = String::from("#!/bin/bash\n");
    let name = opts.job_name.clone().unwrap_or_else(|| {
        format!(
            "norbvae-{}",
            sweep_dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into())
        )
    });
    let mut sb = |line: String| {
        s.push_str("#SBATCH ");
        s.push_str(&line);
        s.push('\n');
    };
    sb(format!("--job-name={name}"));
    let mut array = format!("--array={}", array_ranges(tasks));
    if let Some(p) = opts.parallel {
        array.push_str(&format!("%{p}"));
    }
    sb(array);
    sb(format!("--cpus-per-task={}", opts.cpus_per_task.unwrap_or(1)));
    if let Some(m) = &opts.mem {
        sb(format!("--mem={m}"));
    }
    if let Some(t) = &opts.time {
        sb(format!("--time={t}"));
    }
    if let Some(p) = &opts.partition {
        sb(format!("--partition={p}"));
    }
    if let Some(a) = &opts.account {
        sb(format!("--account={a}"));
    }
    sb(format!(
        "--signal=B:USR1@{}",
        opts.signal_seconds.unwrap_or(DEFAULT_SIGNAL_SECONDS)
    ));
    sb("--requeue".into());
    sb("--open-mode=append".into());
    sb(format!("--output={}/slurm/%A_%a.out", sweep_dir.display()));
    sb(format!("--chdir={}", workdir.display()));
    for e in &opts.extra {
        if !e.starts_with('-') {
            bail!("sbatch option {e:?}: expected an option such as --qos=low");
        }
        sb(e.clone());
    }
    s.push_str(&format!(
        "# Written by `norbvae sweep` for {}: array task i trains run i of sweep.json.\n",
        sweep_dir.display()
    ));
    s.push_str("set -u\n");
    s.push_str(&format!("NORBVAE={}\n", sh_quote(&exe.display().to_string())));
    s.push_str(&format!("DEVICE={}\n", sh_quote(&device.to_string())));
    s.push_str(&format!("SWEEP={}\n", sh_quote(&sweep_dir.display().to_string())));
    s.push_str("RUNS=(\n");
    for r in &manifest.runs {
        s.push_str(&format!("  {}\n", sh_quote(&r.dir.display().to_string())));
    }
    s.push_str(")\n");
    s.push_str(&format!(
        r#"RUN="$SWEEP/${{RUNS[$SLURM_ARRAY_TASK_ID]}}"
LOG="$RUN/{LOG_FILE}"
if [ -f "$RUN/metrics.json" ]; then
    echo "run $RUN is finished already"
    exit 0
fi
rm -f "$RUN/{FAILED_FILE}"
RESUME=()
if [ -f "$RUN/checkpoints/last/manifest.json" ] || [ -f "$RUN/checkpoints/last.json" ]; then RESUME=(--resume); fi
echo "--- norbvae sweep: task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}} (restart ${{SLURM_RESTART_COUNT:-0}}) ${{RESUME[*]:-starting}} on $(hostname)" >>"$LOG"
export RAYON_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
CHILD=""
forward() {{ if [ -n "$CHILD" ]; then kill -USR1 "$CHILD" 2>/dev/null; fi; }}
trap forward USR1
"$NORBVAE" train --config "$RUN/config.toml" --out "$RUN" --device "$DEVICE" "${{RESUME[@]}}" >>"$LOG" 2>&1 &
CHILD=$!
while :; do
    wait "$CHILD"
    CODE=$?
    # wait returns early (status > 128) when the trap runs; the trainer goes on until it stops.
    if [ "$CODE" -le 128 ]; then break; fi
    if kill -0 "$CHILD" 2>/dev/null; then continue; fi
    wait "$CHILD"; C2=$?
    if [ "$C2" -ne 127 ]; then CODE=$C2; fi
    break
done
case "$CODE" in
0) echo "run $RUN finished" ;;
{REQUEUE_EXIT_CODE})
    echo "run $RUN stopped for SIGUSR1 with a checkpoint: requeueing task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
    exit 0
    ;;
*)
    {{
        echo "exit: exit code $CODE (Slurm task ${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}})"
        if grep -q '^error:' "$LOG"; then
            sed -n "$(grep -n '^error:' "$LOG" | tail -n1 | cut -d: -f1),\$p" "$LOG"
        else
            tail -n 8 "$LOG"
        fi
    }} >"$RUN/.{FAILED_FILE}.tmp" && mv "$RUN/.{FAILED_FILE}.tmp" "$RUN/{FAILED_FILE}"
    exit "$CODE"
    ;;
esac
"#
    ));
    Ok(s)
}

/// Write the batch script for the unfinished runs; returns its path and the task ids.
pub fn write_script(
    sweep_dir: &Path,
    manifest: &SweepManifest,
    opts: &SlurmOptions,
    exe: &Path,
    device: DeviceChoice,
    workdir: &Path,
) -> Result<(PathBuf, Vec<usize>)> {
    let tasks: Vec<usize> = manifest
        .runs
        .iter()
        .filter(|r| r.status != RunStatus::Done)
        .map(|r| r.index)
        .collect();
    let text = batch_script(sweep_dir, manifest, &tasks, opts, exe, device, workdir)?;
    let path = script_path(sweep_dir);
    std::fs::create_dir_all(sweep_dir.join("slurm"))?;
    crate::util::write_atomic(&path, text.as_bytes())?;
    Ok((path, tasks))
}

/// Submit the script with sbatch; its own error is shown when it rejects the job.
pub fn submit(script: &Path, tasks: Vec<usize>) -> Result<SlurmJob> {
    let sbatch = require_sbatch()?;
    let out = Command::new(&sbatch)
        .arg("--parsable")
        .arg(script)
        .output()
        .with_context(|| format!("running {}", sbatch.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "sbatch rejected the job array ({}), nothing was submitted:\n{}{}",
            script.display(),
            stderr.trim_end(),
            if stdout.trim().is_empty() {
                String::new()
            } else {
                format!("\n{}", stdout.trim_end())
            }
        );
    }
    // --parsable prints "jobid" or "jobid;cluster".
    let job_id = stdout.trim().split(';').next().unwrap_or("").to_string();
    if job_id.is_empty() || !job_id.chars().all(|c| c.is_ascii_digit()) {
        bail!("sbatch printed no job id (stdout {stdout:?}, stderr {stderr:?})");
    }
    Ok(SlurmJob {
        job_id,
        script: std::path::absolute(script).unwrap_or_else(|_| script.to_path_buf()),
        tasks,
    })
}

/// A task's state in the queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedTask {
    pub state: String,
    pub reason: String,
}

/// The job's tasks still in `squeue` (pending, running, requeued...), by array task id. Finished
/// tasks leave the queue; their outcome is in the run directories.
pub fn queued_tasks(job_id: &str) -> Result<BTreeMap<usize, QueuedTask>> {
    let Some(squeue) = find_on_path("squeue") else {
        bail!("squeue not found on PATH: cannot read the state of job {job_id}");
    };
    let out = Command::new(squeue)
        .args(["-h", "-r", "-j", job_id, "-o", "%K|%T|%r"])
        .output()
        .context("running squeue")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        // A job that left the queue entirely is "Invalid job id" for squeue.
        if stderr.contains("Invalid job id") {
            return Ok(BTreeMap::new());
        }
        bail!("squeue -j {job_id} failed: {}", stderr.trim());
    }
    let mut tasks = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.trim().split('|').collect();
        if f.len() < 3 {
            continue;
        }
        if let Ok(k) = f[0].parse::<usize>() {
            tasks.insert(
                k,
                QueuedTask {
                    state: f[1].to_string(),
                    reason: f[2].to_string(),
                },
            );
        }
    }
    Ok(tasks)
}

/// Final states from `sacct` when accounting is enabled (None when it is not, as on the local
/// test cluster: then the run directories are the record).
pub fn accounting_states(job_id: &str) -> Option<BTreeMap<usize, String>> {
    let sacct = find_on_path("sacct")?;
    let out = Command::new(sacct)
        .args(["-n", "-P", "-X", "-j", job_id, "-o", "JobID,State"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let mut states = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((id, state)) = line.split_once('|') else {
            continue;
        };
        if let Some((_, task)) = id.split_once('_') {
            if let Ok(k) = task.parse::<usize>() {
                states.insert(k, state.to_string());
            }
        }
    }
    Some(states)
}

/// Statuses from the run directories, then from the queue for runs not finished on disk.
pub fn refresh(sweep_dir: &Path, manifest: &mut SweepManifest) -> Result<BTreeMap<usize, QueuedTask>> {
    super::refresh_from_disk(sweep_dir, manifest);
    let Some(job) = manifest.slurm_job.clone() else {
        return Ok(BTreeMap::new());
    };
    let queued = queued_tasks(&job.job_id)?;
    for r in &mut manifest.runs {
        if r.status == RunStatus::Done {
            continue;
        }
        if let Some(t) = queued.get(&r.index) {
            match t.state.as_str() {
                "RUNNING" | "COMPLETING" | "CONFIGURING" => {
                    r.status = RunStatus::Running;
                    r.error = None;
                }
                "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "SUSPENDED" => {
                    if r.status == RunStatus::Failed {
                        r.error = None;
                    }
                    if r.status != RunStatus::Partial {
                        r.status = RunStatus::Queued;
                    }
                }
                _ => {}
            }
        }
    }
    Ok(queued)
}
