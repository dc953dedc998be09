//! `norbvae reproduce --ladder` end to end on a tiny synthetic NORB: the shipped ladder's steps
//! (read from the embedded list, whatever their number and contents), shrunk by `--set` to one
//! epoch of two steps with a few filters; PCA at every step's code size; eval; the report's ladder
//! table. A step trained beforehand with `norbvae train --config configs/ladder/STEP.toml` is
//! reused, a re-run trains nothing, and a run of another config in a step's directory is refused.
mod common;
use common::*;
use norbvae::pipeline::{ladder::shared_data, reproduce, ReproduceOptions};
use norbvae::train::ladder::embedded_steps;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Every step shrunk to seconds (keys every model kind has).
const SETS: [&str; 7] = [
    "train.max_epochs=1",
    "train.max_steps_per_epoch=2",
    "train.batch_size=16",
    "train.grid_images=4",
    "model.conv.first_filters=4",
    "model.conv.max_filters=16",
    "model.conv.intermediate=16",
];
const LIMIT: usize = 96;

fn options(data_spec: &str, out: &Path, cache: &Path) -> ReproduceOptions {
    let steps = embedded_steps();
    let data = shared_data(&steps, |mut d| {
        d.spec = data_spec.to_string();
        d.limit = Some(LIMIT);
        d
    })
    .unwrap();
    let mut opts = ReproduceOptions::new(data, out.to_path_buf());
    opts.ladder = Some(steps);
    opts.pca_components = vec![4, 8];
    opts.train_overrides = SETS.iter().map(|s| s.to_string()).collect();
    opts.eval.iwae_samples = 2;
    opts.eval.likelihood_images = Some(10);
    opts.eval.quality_samples = 64;
    opts.eval.samplers = vec![norbvae::eval::SamplerKind::Prior, norbvae::eval::SamplerKind::Gmm];
    opts.eval.sampler.gmm_components = 2;
    opts.eval.classifier.epochs = 1;
    opts.eval.classifier.min_steps = 10;
    opts.eval.classifier.max_train = LIMIT;
    opts.eval.cache_dir = cache.to_path_buf();
    opts.eval.show_progress = false;
    opts
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .modified()
        .unwrap()
}

/// metrics.json and the best weights of every step's run.
fn stamps(out: &Path, names: &[String]) -> Vec<SystemTime> {
    names
        .iter()
        .flat_map(|n| {
            let d = out.join(n);
            [
                mtime(&d.join("metrics.json")),
                mtime(&d.join("checkpoints/best/model.safetensors")),
            ]
        })
        .collect()
}

#[test]
fn the_ladder_reproduces_reuses_a_pretrained_step_and_reports_one_row_per_step() {
    let t0 = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let norb = dir.join("norb");
    norbvae::data::synth::write_small(&norb, 32, 5).unwrap();
    let spec = format!("norb:{}", norb.display());
    let out = dir.join("ladder");
    let cache = dir.join("classifier");
    let opts = options(&spec, &out, &cache);
    let names: Vec<String> = opts
        .ladder
        .as_ref()
        .unwrap()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    assert!(names.len() >= 2, "the ladder has {} steps", names.len());

    // The lead's way: the first step trained beforehand by `norbvae train` from its config file.
    let first = out.join(&names[0]);
    let config: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/ladder")
        .join(format!("{}.toml", names[0]));
    let limit = LIMIT.to_string();
    let mut args = vec![
        "train",
        "--config",
        config.to_str().unwrap(),
        "--out",
        first.to_str().unwrap(),
        "--data",
        &spec,
        "--limit",
        &limit,
    ];
    for s in SETS {
        args.extend(["--set", s]);
    }
    let o = norbvae(&args, dir);
    assert!(o.status.success(), "{}", text(&o));
    let pretrained = [
        mtime(&first.join("metrics.json")),
        mtime(&first.join("checkpoints/best/model.safetensors")),
    ];

    let report = reproduce(&opts).unwrap();
    eprintln!(
        "ladder of {} steps on tiny data: {:.1} s",
        names.len(),
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(report, out.join("report.html"));
    // The pre-trained step was not trained again (its best weights untouched); eval added to it.
    assert_eq!(
        mtime(&first.join("checkpoints/best/model.safetensors")),
        pretrained[1]
    );
    assert_ne!(mtime(&first.join("metrics.json")), pretrained[0]);

    // Every step: a run directory with evaluated metrics and the code size PCA is compared at.
    let pca = read_json(&out.join("pca/metrics.json"));
    let runs = norbvae::report::load_runs(std::slice::from_ref(&out)).unwrap();
    let view = norbvae::report::ladder::find(&runs)
        .unwrap()
        .expect("the runs are a ladder");
    let rows = view.rows();
    assert_eq!(
        rows.iter().map(|r| &r.name).collect::<Vec<_>>(),
        names.iter().collect::<Vec<_>>()
    );
    for (name, row) in names.iter().zip(&rows) {
        let m = read_json(&out.join(name).join("metrics.json"));
        assert!(m["eval"].is_object(), "{name} not evaluated");
        let k = m["latent_dim"].as_u64().unwrap() as usize;
        assert_eq!(row.code_size, Some(k), "{name}");
        let pca_mse = pca["metrics"][k.to_string()]["test"]["mse"]
            .as_f64()
            .unwrap_or_else(|| panic!("PCA has no k = {k} (step {name})"));
        assert!((row.pca_mse.unwrap() - pca_mse).abs() <= 1e-12, "{name}");
        let mse = m["metrics"]["test"]["mse"].as_f64().unwrap();
        assert!((row.mse.unwrap().mean - mse).abs() <= 1e-12, "{name}");
        assert!((row.mse_ratio().unwrap() - mse / pca_mse).abs() <= 1e-12);
        assert!(
            row.fd.is_some() && row.floor.is_some() && row.real_confidence.is_some(),
            "{name}: {row:?}"
        );
        assert!(row.recon_png.is_some() && row.samples_png.is_some(), "{name}");
    }
    // Every step after the first is compared with the one before it.
    assert!(rows[0].mse_change.is_none());
    assert!(rows[1..].iter().all(|r| r.mse_change.is_some()));

    // The report: the ladder table with one row per step, in order, and the answer.
    let html = std::fs::read_to_string(&report).unwrap();
    let at: Vec<usize> = names
        .iter()
        .map(|n| {
            html.find(&format!("<tr id=\"ladder-{n}\">"))
                .unwrap_or_else(|| panic!("no ladder row for {n}"))
        })
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "ladder rows out of order");
    assert_eq!(html.matches("<tr id=\"ladder-").count(), names.len());
    assert!(html.contains("Which change bought what?"));
    assert!(html.contains("Each step against its baselines"), "no ratio chart");

    // `norbvae report` on the output directory shows the same ladder.
    let again = dir.join("again.html");
    let o = norbvae(
        &["report", out.to_str().unwrap(), "--out", again.to_str().unwrap()],
        dir,
    );
    assert!(o.status.success(), "{}", text(&o));
    let html2 = std::fs::read_to_string(&again).unwrap();
    assert_eq!(html2.matches("<tr id=\"ladder-").count(), names.len());

    // Again: nothing is trained or evaluated twice.
    let before = stamps(&out, &names);
    reproduce(&opts).unwrap();
    assert_eq!(before, stamps(&out, &names));

    // A step stopped before its metrics were written resumes from its last checkpoint: here at
    // its last epoch already, so it finishes without training an epoch more.
    let second = out.join(&names[1]);
    let epochs = std::fs::read_to_string(second.join("metrics.jsonl")).unwrap();
    std::fs::remove_file(second.join("metrics.json")).unwrap();
    reproduce(&opts).unwrap();
    let m = read_json(&second.join("metrics.json"));
    assert!(m["eval"].is_object(), "{m}");
    assert_eq!(
        std::fs::read_to_string(second.join("metrics.jsonl")).unwrap(),
        epochs
    );
    let before = stamps(&out, &names);

    // Another config for the same steps is refused before anything runs, naming the key.
    let mut other = options(&spec, &out, &cache);
    other.train_overrides.push("train.lr=0.01".into());
    let err = format!("{:#}", reproduce(&other).unwrap_err());
    assert!(
        err.contains("differing keys: train.lr") && err.contains(&names[0]),
        "{err}"
    );
    assert_eq!(before, stamps(&out, &names));

    // Through the sweep machinery (the print executor: configs and batch script, nothing
    // trained): one run per step and seed, named `<step>,seed=<S>`, each the step's config.
    use norbvae::format::sweep::ExecutorKind;
    let printed = dir.join("printed");
    let mut p = options(&spec, &printed, &cache);
    let mut x = norbvae::pipeline::ReproduceExecutor::new(ExecutorKind::Print, PathBuf::from(EXE));
    x.seeds = Some(vec![0, 1]);
    p.executor = Some(x);
    let script = reproduce(&p).unwrap();
    assert!(script.is_file());
    let m = read_json(&printed.join("sweep.json"));
    let planned: Vec<&str> = m["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    let expected: Vec<String> = names
        .iter()
        .flat_map(|n| [format!("{n},seed=0"), format!("{n},seed=1")])
        .collect();
    assert_eq!(planned, expected);
    let trained = norbvae::train::TrainConfig::load(&out.join(&names[1]).join("config.toml"), &[]).unwrap();
    let mut planned = norbvae::train::TrainConfig::load(
        &printed.join(format!("{},seed=1", names[1])).join("config.toml"),
        &[],
    )
    .unwrap();
    assert_eq!(planned.seed, 1);
    planned.seed = trained.seed;
    assert_eq!(planned, trained);
    assert!(printed.join("ladder.json").is_file());
    eprintln!("whole test: {:.1} s", t0.elapsed().as_secs_f64());
}
