//! `train.keep_resume_state = false`: a finished run drops `checkpoints/last/` (weights, Adam
//! moments) and keeps its results and `best/`; `--resume` and `eval --last` then refuse it with a
//! message naming the run and the key, and nothing in it changes. The default keeps `last/`.
mod common;

use common::{text, tiny_run, EXE, TINY_SYNTH};
use std::path::Path;
use std::process::Command;

fn norbvae(args: &[&str]) -> std::process::Output {
    Command::new(EXE).args(args).output().unwrap()
}

fn ok(args: &[&str]) {
    let o = norbvae(args);
    assert!(o.status.success(), "{args:?}: {}", text(&o));
}

/// Every file under `dir` with its bytes, for "nothing changed".
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n != ".norbvae.lock") {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_finished_run_without_resume_state_keeps_its_results_and_refuses_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let norb = root.join("norb").display().to_string();
    ok(&[&["synth", "--out", &norb], &TINY_SYNTH[..]].concat());
    let config = root.join("tiny.toml");
    std::fs::write(&config, tiny_run()).unwrap();
    let spec = format!("norb:{norb}");
    let cfg = config.to_str().unwrap();

    // The default keeps the resume state.
    let kept = root.join("kept");
    ok(&[
        "train",
        "--config",
        cfg,
        "--data",
        &spec,
        "--out",
        kept.to_str().unwrap(),
    ]);
    assert!(kept.join("checkpoints/last/optim.safetensors").is_file());

    let run = root.join("dropped");
    let r = run.to_str().unwrap();
    ok(&[
        "train",
        "--config",
        cfg,
        "--data",
        &spec,
        "--out",
        r,
        "--set",
        "train.keep_resume_state=false",
    ]);
    assert!(run.join("metrics.json").is_file());
    assert!(run.join("checkpoints/best/model.safetensors").is_file());
    let left: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["best"], "checkpoints/ holds only best/");
    let saved = norbvae::train::TrainConfig::load(&run.join("config.toml"), &[]).unwrap();
    assert!(!saved.train.keep_resume_state, "the choice is in config.toml");
    // The same results as the run that kept its state (same seed and data).
    let metrics = |d: &Path| common::read_json(&d.join("metrics.json"))["metrics"].clone();
    assert_eq!(metrics(&run), metrics(&kept));
    assert_eq!(
        std::fs::read(run.join("checkpoints/best/model.safetensors")).unwrap(),
        std::fs::read(kept.join("checkpoints/best/model.safetensors")).unwrap()
    );

    let before = snapshot(&run);
    for args in [
        vec!["train", "--out", r, "--resume", "--set", "train.max_epochs=3"],
        vec![
            "train",
            "--out",
            r,
            "--resume",
            "--set",
            "train.max_epochs=3",
            "--set",
            "train.keep_resume_state=true",
        ],
        vec!["eval", r, "--last", "--no-sample-quality"],
    ] {
        let o = norbvae(&args);
        let t = text(&o);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {t}");
        assert!(!t.contains("panicked"), "{t}");
        for needle in [
            r,
            "this run finished and kept no resume state",
            "train.keep_resume_state = false",
        ] {
            assert!(t.contains(needle), "{args:?}: {needle:?} not in {t}");
        }
    }
    assert_eq!(before, snapshot(&run), "a refused resume changed the run");
    // What the run kept still works.
    ok(&["eval", r, "--no-sample-quality", "--iwae-samples", "2"]);
}
