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
        &[
            &GRID_2X2_SEEDS_2[..],
            &["--out", "sw", "--jobs", "2", "--device", "cpu"],
        ]
        .concat(),
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
        // The child ran with the sweep's --device (its command line heads its log; paths as
        // given to the sweep, --out sw from the test's directory).
        let log = std::fs::read_to_string(run.join("train.log")).unwrap();
        let line = log.lines().find(|l| l.starts_with("--- norbvae sweep:")).unwrap();
        let rel = Path::new("sw").join(r["dir"].as_str().unwrap());
        assert!(
            line.ends_with(&format!(
                "train --config {} --out {} --device cpu",
                rel.join("config.toml").display(),
                rel.display()
            )),
            "{line}"
        );
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

    report_agrees_with_the_sweep(dir, &sweep);
}

/// An attribute's value in the first tag after `anchor` that has it.
fn attr_after<'a>(html: &'a str, anchor: &str, attr: &str) -> &'a str {
    let at = html
        .find(anchor)
        .unwrap_or_else(|| panic!("{anchor} not in the report"));
    let key = format!("{attr}=\"");
    let start = at
        + html[at..]
            .find(&key)
            .unwrap_or_else(|| panic!("no {attr} after {anchor}"))
        + key.len();
    &html[start..start + html[start..].find('"').unwrap()]
}

/// `norbvae report SWEEP_DIR`: every run listed with its status, each grid point's means over
/// seeds equal to its runs' metrics.json values, charts that decode; then unfinished and broken
/// runs are shown as such instead of failing the report.
fn report_agrees_with_the_sweep(dir: &Path, sweep: &Path) {
    let o = norbvae(&["report", "sw", "--out", "sw/report.html"], dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("sweep report of 8 runs (8 finished)"), "{t}");
    let html = std::fs::read_to_string(sweep.join("report.html")).unwrap();
    let m = manifest(sweep);
    let runs = m["runs"].as_array().unwrap();
    let mut points: std::collections::BTreeMap<String, Vec<serde_json::Value>> = Default::default();
    for r in runs {
        let name = r["name"].as_str().unwrap();
        assert_eq!(
            attr_after(&html, &format!("data-run=\"{name}\""), "data-status"),
            "done"
        );
        let p = &r["params"];
        let label = format!(
            "first_filters={}, latent_dim={}",
            p["model.conv.first_filters"].as_str().unwrap(),
            p["model.latent_dim"].as_str().unwrap()
        );
        let metrics = read_json(&sweep.join(r["dir"].as_str().unwrap()).join("metrics.json"));
        points.entry(label).or_default().push(metrics);
    }
    assert_eq!(points.len(), 4);
    for (label, seeds) in &points {
        assert_eq!(seeds.len(), 2, "{label}");
        let row = &html[html.find(&format!("data-point=\"{label}\"")).unwrap()..];
        for (metric, value) in [
            (
                "test_mse",
                &(|m: &serde_json::Value| m["metrics"]["test"]["mse"].as_f64().unwrap())
                    as &dyn Fn(&serde_json::Value) -> f64,
            ),
            ("test_neg_elbo", &|m: &serde_json::Value| {
                m["metrics"]["test"]["neg_elbo_pixels"].as_f64().unwrap()
            }),
            ("test_bits_per_dim", &|m: &serde_json::Value| {
                m["metrics"]["test"]["bits_per_dim"].as_f64().unwrap()
            }),
            ("epochs_trained", &|m: &serde_json::Value| {
                m["epochs_run"].as_f64().unwrap()
            }),
        ] {
            let anchor = format!("data-metric=\"{metric}\"");
            let shown: f64 = attr_after(row, &anchor, "data-mean").parse().unwrap();
            let expect = seeds.iter().map(value).sum::<f64>() / seeds.len() as f64;
            assert!(
                (shown - expect).abs() <= 1e-12 * expect.abs(),
                "{label} {metric}: report {shown}, runs {expect}"
            );
            assert_eq!(attr_after(row, &anchor, "data-n"), "2", "{label} {metric}");
        }
    }
    for id in [
        "capacity-model-latent_dim",
        "capacity-model-conv-first_filters",
        "training",
        "variation",
    ] {
        // Each answer leads with a one-line verdict, then its table.
        let at = html
            .find(&format!("id=\"answer-{id}\""))
            .unwrap_or_else(|| panic!("answer {id}"));
        let rest = &html[at..];
        let v = rest.find("class=\"verdict\">").unwrap() + "class=\"verdict\">".len();
        let verdict = &rest[v..v + rest[v..].find('<').unwrap()];
        assert!(
            [
                "Yes",
                "Partly",
                "No",
                "Cannot tell",
                "Longer training may help",
                "Probably not"
            ]
            .iter()
            .any(|p| verdict.starts_with(p)),
            "{id}: {verdict}"
        );
        assert!(
            rest[v..].find("<table").unwrap() < rest[v..].find("</div>").unwrap(),
            "{id}: no table"
        );
    }
    // Two epochs of max_epochs 2: every run hit the cap.
    assert!(html.contains("2 of 2"), "epochs column");
    // The charts: each metric against each swept key, and the learning curves, as PNG and SVG.
    let charts = sweep.join("report_charts");
    let mut ids = vec!["curves-val".to_string(), "curves-train".to_string()];
    for metric in ["test_neg_elbo", "test_mse", "test_bits_per_dim", "epochs_trained"] {
        for key in ["model-latent_dim", "model-conv-first_filters"] {
            ids.push(format!("{metric}-vs-{key}"));
        }
    }
    for id in &ids {
        let png = image::open(charts.join(format!("{id}.png"))).unwrap_or_else(|e| panic!("{id}.png: {e}"));
        assert_eq!((png.width(), png.height()), (800, 480), "{id}");
        let svg = std::fs::read_to_string(charts.join(format!("{id}.svg"))).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
            "{id}.svg"
        );
        assert!(html.contains(&format!("id=\"chart-{id}\"")), "{id} not inline");
    }
    assert!(
        html.contains("latent_dim against model.latent_dim") || html.contains("against model.latent_dim")
    );

    // A run without metrics.json (stopped) and one with a broken metrics.json: listed as such,
    // left out of the means, the report still written.
    let a = sweep.join("runs/first_filters=2,latent_dim=2,seed=0");
    let b = sweep.join("runs/first_filters=4,latent_dim=4,seed=1");
    std::fs::remove_file(a.join("metrics.json")).unwrap();
    std::fs::write(b.join("metrics.json"), "{").unwrap();
    let o = norbvae(&["report", "sw", "--out", "sw/report2.html"], dir);
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    assert!(t.contains("8 runs (6 finished)"), "{t}");
    let html = std::fs::read_to_string(sweep.join("report2.html")).unwrap();
    assert_eq!(
        attr_after(
            &html,
            "data-run=\"first_filters=2,latent_dim=2,seed=0\"",
            "data-status"
        ),
        "partial"
    );
    assert_eq!(
        attr_after(
            &html,
            "data-run=\"first_filters=4,latent_dim=4,seed=1\"",
            "data-status"
        ),
        "failed"
    );
    assert!(html.contains("unreadable metrics.json"), "no error shown");
    let row = &html[html.find("data-point=\"first_filters=2, latent_dim=2\"").unwrap()..];
    assert_eq!(attr_after(row, "data-metric=\"test_mse\"", "data-n"), "1");
    assert!(
        html.contains("2 of 8 runs are not finished"),
        "no unfinished note"
    );
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
    let mut cases: Vec<(Vec<&str>, &str)> = vec![
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
        (
            vec!["--grid", "train.max_epochs=2", "--device", "gpu"],
            "--device \"gpu\": expected auto, cpu, cuda or cuda:N",
        ),
    ];
    if !norbvae::util::device::CUDA_BUILT {
        cases.push((
            vec!["--grid", "train.max_epochs=2", "--device", "cuda:1"],
            "--device cuda:1: this norbvae was built without CUDA support",
        ));
    }
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
            "--device",
            "cpu",
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
        "DEVICE='cpu'",
        r#""$NORBVAE" train --config "$RUN/config.toml" --out "$RUN" --device "$DEVICE" "${RESUME[@]}""#,
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

#[test]
fn reproduce_with_the_local_executor_trains_the_presets_as_one_sweep() {
    use norbvae::format::sweep::ExecutorKind;
    use norbvae::pipeline::{reproduce, ReproduceExecutor, ReproduceOptions};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, _) = setup(dir);
    let out = dir.join("rep");
    let data = norbvae::data::DataOptions {
        spec: data,
        limit: Some(96),
        val_fraction: 0.1,
        ..Default::default()
    };
    let mut opts = ReproduceOptions::new(data, out.clone());
    opts.presets = vec!["pca-vae".into(), "pca-vae-tanh".into()];
    opts.pca_components = vec![4, 8];
    opts.train_overrides = vec!["train.max_epochs=1".into(), "train.batch_size=16".into()];
    opts.eval.iwae_samples = 2;
    opts.eval.likelihood_images = Some(10);
    opts.eval.sample_quality = false;
    opts.eval.pictures = false;
    opts.eval.samplers = vec![norbvae::eval::SamplerKind::Prior];
    let mut x = ReproduceExecutor::new(ExecutorKind::Local, std::path::PathBuf::from(EXE));
    x.jobs = 2;
    x.seeds = Some(vec![0, 1]);
    opts.executor = Some(x);
    let t0 = std::time::Instant::now();
    let report = reproduce(&opts).unwrap();
    eprintln!(
        "reproduce, 2 presets x 2 seeds, --jobs 2: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(report, out.join("report.html"));
    assert!(report.is_file());
    let m = manifest(&out);
    assert_eq!(m["executor"], "local");
    assert_eq!(m["grid"][0]["key"], "preset");
    let runs = m["runs"].as_array().unwrap();
    let names: Vec<&str> = runs.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "pca-vae,seed=0",
            "pca-vae,seed=1",
            "pca-vae-tanh,seed=0",
            "pca-vae-tanh,seed=1"
        ]
    );
    let html = std::fs::read_to_string(&report).unwrap();
    for r in runs {
        assert_eq!(r["status"], "done", "{r}");
        let run = out.join(r["dir"].as_str().unwrap());
        let cfg = norbvae::train::TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
        assert_eq!(cfg.seed.to_string(), r["params"]["seed"].as_str().unwrap());
        assert_eq!(cfg.train.max_epochs, 1);
        // The PCA-VAEs use the PCA fitted first, as in the in-process path.
        assert_eq!(cfg.model.dense.components, 8);
        let tanh = r["name"].as_str().unwrap().starts_with("pca-vae-tanh");
        assert_eq!(
            format!("{:?}", cfg.likelihood.output_activation).to_lowercase(),
            if tanh { "tanh" } else { "none" }.to_string()
        );
        // Evaluated after the sweep, and in the report.
        let metrics = read_json(&run.join("metrics.json"));
        assert!(metrics["eval"].is_object(), "{}", r["name"]);
        assert!(html.contains(r["name"].as_str().unwrap()));
    }
    // Seeds make different runs.
    assert_ne!(
        outcome(&out.join("pca-vae,seed=0")).0,
        outcome(&out.join("pca-vae,seed=1")).0
    );
    let view = std::fs::read_to_string(out.join("sweep_report.html")).unwrap();
    assert!(view.contains("data-point=\"preset=pca-vae\""), "sweep view");
    assert!(view.contains("answer-pca"), "PCA beside the sweep");

    // Again: nothing is trained or evaluated twice.
    let stamp = |p: &str| {
        std::fs::metadata(out.join(p).join("metrics.json"))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before: Vec<_> = names.iter().map(|n| stamp(n)).collect();
    reproduce(&opts).unwrap();
    assert_eq!(before, names.iter().map(|n| stamp(n)).collect::<Vec<_>>());
}

#[test]
fn reproduce_with_the_print_executor_writes_the_device_into_the_batch_script() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, _) = setup(dir);
    let o = norbvae(
        &[
            "reproduce",
            "--data",
            &data,
            "--limit",
            "96",
            "--presets",
            "pca-vae,basic-convolutional-vae",
            "--max-epochs",
            "1",
            "--executor",
            "print",
            "--device",
            "cpu",
            "--out",
            "rep",
        ],
        dir,
    );
    let t = text(&o);
    assert!(o.status.success(), "{t}");
    let script = std::fs::read_to_string(dir.join("rep/slurm/sweep.sbatch")).unwrap();
    for line in [
        "DEVICE='cpu'",
        r#""$NORBVAE" train --config "$RUN/config.toml" --out "$RUN" --device "$DEVICE" "${RESUME[@]}""#,
        "  'pca-vae'",
        "  'basic-convolutional-vae'",
    ] {
        assert!(script.contains(line), "missing {line:?} in\n{script}");
    }
    // Nothing trained: only the configs are there.
    assert!(dir.join("rep/pca-vae/config.toml").is_file());
    assert!(!dir.join("rep/pca-vae/metrics.json").exists());
}
