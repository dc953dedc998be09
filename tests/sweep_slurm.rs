//! `norbvae sweep --executor slurm` on a real single-node Slurm cluster
//! (scripts/local_slurm.sh, Debian slurm-wlm + munge): a 2x2 grid x 2 seeds as one job array, a
//! re-run that submits nothing, options sbatch rejects, and a task sent SIGUSR1 mid-training that
//! requeues itself and ends bit-identical to an uninterrupted run. Skips (with the reason) when
//! sbatch is absent or the test is not root.
mod common;
use common::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/local_slurm.sh")
}

/// Stops the cluster at the end if this test started it.
struct Cluster {
    started_here: bool,
}

impl Cluster {
    fn start() -> Self {
        let status = Command::new(script()).arg("status").output().unwrap();
        let running = String::from_utf8_lossy(&status.stdout).contains("slurmctld running");
        let o = Command::new(script()).arg("start").output().unwrap();
        assert!(o.status.success(), "local_slurm.sh start failed: {}", text(&o));
        Cluster {
            started_here: !running,
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.started_here {
            let _ = Command::new(script()).arg("stop").output();
        }
    }
}

fn sh(cmd: &str, args: &[&str]) -> String {
    let o = Command::new(cmd).args(args).output().unwrap();
    assert!(o.status.success(), "{cmd} {args:?}: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn job_id(sweep: &Path) -> String {
    read_json(&sweep.join("sweep.json"))["slurm_job"]["job_id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn task_state(job_task: &str) -> String {
    let o = Command::new("squeue")
        .args(["-h", "-j", job_task, "-o", "%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn wait_until(secs: f64, what: &str, mut ok: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !ok() {
        assert!(
            t0.elapsed().as_secs_f64() < secs,
            "timed out after {secs} s waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn sweeps_run_as_one_slurm_job_array_and_a_usr1_task_requeues_and_resumes_exactly() {
    if which("sbatch").is_none() {
        eprintln!("SKIPPED: sbatch is not on PATH (apt-get install -y slurm-wlm munge; CI installs them)");
        return;
    }
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        eprintln!("SKIPPED: the local Slurm cluster's daemons run as root; run as root");
        return;
    }
    let _cluster = Cluster::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, base) = setup(dir);
    let b = base.to_str().unwrap();
    let common = |out: &'static str| -> Vec<String> {
        [
            "sweep",
            "--config",
            b,
            "--data",
            &data,
            "--out",
            out,
            "--executor",
            "slurm",
            "--cpus-per-task",
            "1",
            "--mem",
            "600M",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let run = |args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        norbvae(&a, dir)
    };

    // Options sbatch rejects: its error is shown and nothing is submitted.
    for (opt, expect) in [
        (vec!["--partition", "nosuch"], "invalid partition"),
        (vec!["--sbatch-opt=--no-such-option"], "unrecognized option"),
    ] {
        let mut a = common("bad");
        a.extend(["--grid", "model.latent_dim=2"].map(String::from));
        a.extend(opt.iter().map(|s| s.to_string()));
        let o = run(a);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{t}");
        assert!(
            t.contains("sbatch rejected") && t.to_lowercase().contains(expect),
            "{t}"
        );
        assert!(read_json(&dir.join("bad/sweep.json"))["slurm_job"].is_null());
    }

    // 2x2 grid x 2 seeds: one array of 8 tasks.
    let mut a = common("sw");
    a.extend(GRID_2X2_SEEDS_2.map(String::from));
    let t0 = Instant::now();
    let o = run(a.clone());
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("submitted job array") && t.contains("(8 tasks"), "{t}");
    let sweep = dir.join("sw");
    let script_text = std::fs::read_to_string(sweep.join("slurm/sweep.sbatch")).unwrap();
    assert!(script_text.contains("#SBATCH --array=0-7\n"), "{script_text}");
    let o = norbvae(&["sweep", "status", "sw", "--wait", "--interval", "1"], dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    eprintln!("8-run sweep through Slurm: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(t.contains("8 runs: 8 done"), "{t}");
    let m = read_json(&sweep.join("sweep.json"));
    for r in m["runs"].as_array().unwrap() {
        assert_eq!(r["status"], "done", "{r}");
        let run_dir = sweep.join(r["dir"].as_str().unwrap());
        let cfg = norbvae::train::TrainConfig::load(&run_dir.join("config.toml"), &[]).unwrap();
        assert_eq!(cfg.seed.to_string(), r["params"]["seed"].as_str().unwrap());
        assert_eq!(read_json(&run_dir.join("metrics.json"))["epochs_run"], 2);
        let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
        assert!(log.contains("--- norbvae sweep: task"), "{log}");
    }
    // A finished sweep submits nothing.
    let o = run(a);
    let t = text(&o);
    assert!(o.status.success() && t.contains("nothing to submit"), "{t}");

    // SIGUSR1 mid-training: the task stops with a checkpoint, requeues itself and resumes.
    let long = ["--set", "data.limit=810", "--set", "train.max_epochs=3"];
    let mut a = common("usr1");
    a.extend(["--grid", "model.latent_dim=4"].map(String::from));
    a.extend(long.map(String::from));
    let o = run(a);
    assert!(o.status.success(), "{}", text(&o));
    let usr1 = dir.join("usr1");
    let task = format!("{}_0", job_id(&usr1));
    let run_dir = usr1.join("runs/latent_dim=4,seed=0");
    wait_for(
        &run_dir.join("checkpoints/last/state.json"),
        300.0,
        "epoch 1 of the Slurm task",
    );
    sh("scancel", &["--signal=USR1", "--batch", &task]);
    // Slurm holds a requeued task (BeginTime, ~2 min, against requeue loops): start it now.
    wait_until(120.0, "the task to be requeued", || {
        task_state(&task) == "PENDING"
    });
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
    assert!(log.contains("stopped by SIGUSR1"), "{log}");
    assert!(!run_dir.join("metrics.json").exists());
    // slurmd refuses to relaunch a job within the second its credential was revoked (the
    // requeue's kill): "Job credential revoked". Slurm's own 2-minute hold avoids that; here
    // wait 2 s before moving the start time.
    std::thread::sleep(Duration::from_secs(2));
    sh("scontrol", &["update", &format!("jobid={task}"), "StartTime=now"]);
    let o = norbvae(&["sweep", "status", "usr1", "--wait", "--interval", "1"], dir);
    let t = text(&o);
    let logs = || {
        let mut s = std::fs::read_to_string(run_dir.join("train.log")).unwrap_or_default();
        for e in std::fs::read_dir(usr1.join("slurm")).unwrap() {
            s.push_str(&std::fs::read_to_string(e.unwrap().path()).unwrap_or_default());
        }
        s
    };
    assert!(o.status.success(), "{t}\n{}", logs());
    assert!(t.contains("1 runs: 1 done"), "{t}\n{}", logs());
    let log = std::fs::read_to_string(run_dir.join("train.log")).unwrap();
    assert!(log.contains("(restart 1) --resume"), "{log}");

    // The same config, uninterrupted, one thread as in the task.
    let reference = Command::new(EXE)
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .args(["train", "--config"])
        .arg(run_dir.join("config.toml"))
        .args(["--out", "reference"])
        .output()
        .unwrap();
    assert!(reference.status.success(), "{}", text(&reference));
    let (x, y) = (outcome(&dir.join("reference")), outcome(&run_dir));
    assert_eq!(x.0, y.0, "final metrics differ");
    assert_eq!(x.1, y.1, "epoch losses differ");
    assert!(x.2 == y.2, "final parameters differ");
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
