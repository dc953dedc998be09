//! `norbvae sweep` with the local and print executors, and its bad-input errors, through the real
//! binary on a tiny synthetic NORB.
mod common;
use common::*;
use std::path::Path;

fn manifest(sweep: &Path) -> serde_json::Value {
    read_json(&sweep.join("sweep.json"))
}

fn mtimes(sweep: &Path) -> Vec<std::time::SystemTime> {
    let m = manifest(sweep);
    m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| {
            let d = sweep.join(r["dir"].as_str().unwrap());
            ["metrics.json", "checkpoints/last/model.safetensors", "train.log"]
                .map(|f| std::fs::metadata(d.join(f)).unwrap().modified().unwrap())
        })
        .collect()
}

#[test]
fn a_2x2_grid_with_2_seeds_runs_locally_and_a_rerun_trains_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, base) = setup(dir);
    let args = sweep_args(
        &base,
        &data,
        &[&GRID_2X2_SEEDS_2[..], &["--out", "sw", "--jobs", "2"]].concat(),
    );
    let t0 = std::time::Instant::now();
    let o = norbvae(&args, dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    eprintln!("8-run sweep, --jobs 2: {:.1} s", t0.elapsed().as_secs_f64());
    assert!(t.contains("8 trained, 0 failed"), "{t}");
    assert!(t.contains("2 at once with 1 threads each"), "{t}");

    let sweep = dir.join("sw");
    let m = manifest(&sweep);
    assert_eq!(m["version"], 1);
    let runs = m["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 8);
    let mut names = std::collections::BTreeSet::new();
    for r in runs {
        assert_eq!(r["status"], "done", "{r}");
        let name = r["name"].as_str().unwrap();
        names.insert(name.to_string());
        let run = sweep.join(r["dir"].as_str().unwrap());
        // The run directory agrees with its manifest entry: resolved config, metrics, name.
        let cfg = norbvae::train::TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
        let p = &r["params"];
        assert_eq!(
            cfg.model.latent_dim.to_string(),
            p["model.latent_dim"].as_str().unwrap()
        );
        assert_eq!(
            cfg.model.conv.first_filters.to_string(),
            p["model.conv.first_filters"].as_str().unwrap()
        );
        assert_eq!(cfg.seed.to_string(), p["seed"].as_str().unwrap());
        assert_eq!(cfg.data.spec, data);
        assert_eq!(
            name,
            format!(
                "first_filters={},latent_dim={},seed={}",
                cfg.model.conv.first_filters, cfg.model.latent_dim, cfg.seed
            )
        );
        let metrics = read_json(&run.join("metrics.json"));
        assert_eq!(metrics["epochs_run"], 2, "{name}");
        assert_eq!(
            metrics["latent_dim"].as_u64().unwrap() as usize,
            cfg.model.latent_dim
        );
        assert!(metrics["metrics"]["test"]["mse"].as_f64().unwrap().is_finite());
    }
    assert_eq!(names.len(), 8);
    // Seeds make different runs.
    let a = outcome(&sweep.join("runs/first_filters=2,latent_dim=2,seed=0"));
    let b = outcome(&sweep.join("runs/first_filters=2,latent_dim=2,seed=1"));
    assert_ne!(a.0, b.0);

    // A re-run trains nothing: no file of any run is rewritten.
    let before = mtimes(&sweep);
    let o = norbvae(&args, dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("8 finished already, 0 to run"), "{t}");
    assert!(t.contains("0 trained"), "{t}");
    assert_eq!(before, mtimes(&sweep));

    // The same grid with another base into the same directory is refused.
    let o = norbvae(&[&args[..], &["--set", "train.lr=0.01"]].concat(), dir);
    let t = text(&o);
    assert!(!o.status.success(), "{t}");
    assert!(t.contains("different config"), "{t}");

    // status reads the run directories.
    let o = norbvae(&["sweep", "status", "sw"], dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("8 runs: 8 done"), "{t}");
}

#[test]
fn a_failed_run_is_reported_and_the_others_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, base) = setup(dir);
    // 1000 px passes the config checks but not the data loader (native size 32).
    let o = norbvae(
        &sweep_args(
            &base,
            &data,
            &[
                "--grid",
                "data.image_size=16,1000,32",
                "--out",
                "sw",
                "--jobs",
                "2",
            ],
        ),
        dir,
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("1 of 3 runs failed (image_size=1000,seed=0)"), "{t}");
    assert!(t.contains("larger than the native"), "{t}");
    let m = manifest(&dir.join("sw"));
    let status: Vec<(&str, &str)> = m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        status,
        vec![
            ("image_size=16,seed=0", "done"),
            ("image_size=1000,seed=0", "failed"),
            ("image_size=32,seed=0", "done")
        ]
    );
    let failed = &m["runs"][1];
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("larger than the native"),
        "{failed}"
    );
    assert!(dir
        .join("sw/runs/image_size=1000,seed=0/sweep_failed.txt")
        .is_file());
    let o = norbvae(&["sweep", "status", "sw"], dir);
    let t = text(&o);
    assert!(
        t.contains("failed") && t.contains("larger than the native"),
        "{t}"
    );
}

#[test]
fn bad_grids_and_missing_sbatch_fail_clearly_and_start_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = dir.join("base.toml");
    std::fs::write(&base, tiny_base()).unwrap();
    let b = base.to_str().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--grid", "model.latent_dimm=2,4"],
            "unknown field `latent_dimm`",
        ),
        (
            vec!["--grid", "model.latent_dim="],
            "--grid model.latent_dim: empty value list",
        ),
        (
            vec![
                "--grid",
                "model.latent_dim=1,2,3,4,5",
                "--seeds",
                "0..3",
                "--max-runs",
                "10",
            ],
            "15 runs (5 values of model.latent_dim x 3 seeds), more than --max-runs 10",
        ),
        (
            vec![
                "--grid",
                "model.latent_dim=1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17",
                "--seeds",
                "0..16",
            ],
            "272 runs",
        ),
        (
            vec!["--grid", "model.latent_dim=0,4"],
            "model.latent_dim must be at least 1",
        ),
        (vec!["--grid", "seed=1,2"], "--seeds"),
        (
            vec!["--grid", "train.max_epochs=2", "--executor", "slurm"],
            "sbatch not found on PATH",
        ),
    ];
    for (extra, expect) in cases {
        let mut args = vec!["sweep", "--config", b, "--out", "sw"];
        args.extend(extra.iter());
        let o = std::process::Command::new(EXE)
            .args(&args)
            .current_dir(dir)
            // No Slurm here, whatever the machine has.
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {t}");
        assert!(t.contains(expect), "{extra:?}: expected {expect:?} in\n{t}");
        assert!(!t.contains("panicked"), "{t}");
        assert!(!dir.join("sw").exists(), "{extra:?} created the sweep directory");
    }
}

#[test]
fn the_print_executor_writes_configs_and_one_array_script() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let base = dir.join("base.toml");
    std::fs::write(&base, tiny_base()).unwrap();
    let sweep_file = dir.join("capacity.toml");
    std::fs::write(
        &sweep_file,
        "config = \"base.toml\"\ndata = \"norb:somewhere\"\nseeds = [0, 1, 2]\n\
         [grid]\n\"model.latent_dim\" = [4, 8]\n\
         [executor]\nkind = \"print\"\n\
         [slurm]\ncpus_per_task = 2\ntime = \"00:30:00\"\nmem = \"2G\"\nparallel = 3\nextra = [\"--qos=low\"]\n",
    )
    .unwrap();
    let o = norbvae(
        &[
            "sweep",
            "--file",
            "capacity.toml",
            "--out",
            "sw",
            "--signal-seconds",
            "300",
        ],
        dir,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("6 tasks"), "{t}");
    let script = std::fs::read_to_string(dir.join("sw/slurm/sweep.sbatch")).unwrap();
    for line in [
        "#SBATCH --array=0-5%3",
        "#SBATCH --cpus-per-task=2",
        "#SBATCH --mem=2G",
        "#SBATCH --time=00:30:00",
        "#SBATCH --signal=B:USR1@300",
        "#SBATCH --requeue",
        "#SBATCH --qos=low",
        "scontrol requeue",
        "'runs/latent_dim=8,seed=2'",
    ] {
        assert!(script.contains(line), "missing {line:?} in\n{script}");
    }
    let m = manifest(&dir.join("sw"));
    assert_eq!(m["executor"], "print");
    assert!(m["slurm_job"].is_null());
    for r in m["runs"].as_array().unwrap() {
        assert_eq!(r["status"], "queued");
        assert!(dir
            .join("sw")
            .join(r["dir"].as_str().unwrap())
            .join("config.toml")
            .is_file());
    }
    // bash accepts the script.
    let o = std::process::Command::new("bash")
        .args(["-n", dir.join("sw/slurm/sweep.sbatch").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn the_sweep_presets_plan_without_errors() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/sweeps");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let f = norbvae::sweep::SweepFile::load(&p).unwrap();
        let spec = norbvae::sweep::SweepSpec {
            base_config: f.config.clone().unwrap(),
            data: f.data.clone(),
            set: f.set.clone(),
            grid: f.axes(),
            seeds: f.seeds.clone(),
            max_runs: f.max_runs.unwrap_or(256),
        };
        let runs = norbvae::sweep::plan(&spec).unwrap_or_else(|e| panic!("{}: {e:#}", p.display()));
        assert!(runs.len() >= 12, "{}: {} runs", p.display(), runs.len());
        assert_eq!(f.seeds.as_ref().map(|s| s.len()), Some(3), "{}", p.display());
        n += 1;
    }
    assert!(n >= 3);
}

#[test]
fn sigint_to_a_local_sweep_stops_its_runs_with_checkpoints_and_a_rerun_resumes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, base) = setup(dir);
    let args = sweep_args(
        &base,
        &data,
        &[
            "--grid",
            "model.latent_dim=2,4",
            "--set",
            "data.limit=480",
            "--set",
            "train.max_epochs=3",
            "--out",
            "sw",
            "--jobs",
            "2",
        ],
    );
    let child = std::process::Command::new(EXE)
        .args(&args)
        .current_dir(dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let first = dir.join("sw/runs/latent_dim=2,seed=0/checkpoints/last/state.json");
    wait_for(&first, 120.0, "a run's first checkpoint");
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let o = child.wait_with_output().unwrap();
    let t = text(&o);
    assert_eq!(o.status.code(), Some(130), "{t}");
    assert!(t.contains("SIGINT: stopping"), "{t}");
    let m = manifest(&dir.join("sw"));
    let statuses: Vec<&str> = m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[0], "partial", "{statuses:?}\n{t}");
    assert!(
        statuses.iter().all(|s| ["partial", "queued", "done"].contains(s)),
        "{statuses:?}"
    );
    let o = norbvae(&args, dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let m = manifest(&dir.join("sw"));
    assert!(
        m["runs"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "done"),
        "{m}"
    );
    let log = std::fs::read_to_string(dir.join("sw/runs/latent_dim=2,seed=0/train.log")).unwrap();
    assert!(
        log.contains("stopped by SIGINT") && log.contains("resuming run"),
        "{log}"
    );
}
