//! Every command run with a closed stdout (`norbvae ... | head -c0`) exits without a panic: no
//! exit status 101, no "panicked at", and its results written as without the pipe.
mod common;

use common::{tiny_run, EXE, TINY_SYNTH};
use std::path::Path;
use std::process::{Command, Stdio};

struct Ran {
    code: Option<i32>,
    stderr: String,
}

/// Run norbvae with stdout a pipe whose reading end is already closed.
fn with_closed_stdout(args: &[&str]) -> Ran {
    let mut child = Command::new(EXE)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running norbvae");
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    Ran {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn check(args: &[&str]) {
    let r = with_closed_stdout(args);
    let what = args[..2.min(args.len())].join(" ");
    assert!(
        !r.stderr.contains("panicked"),
        "{what}: panicked with a closed stdout:\n{}",
        r.stderr
    );
    assert_eq!(r.code, Some(0), "{what}: exit {:?}:\n{}", r.code, r.stderr);
}

#[test]
fn every_command_with_a_closed_stdout_exits_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let norb = p("norb");
    let spec = format!("norb:{norb}");

    check(
        &[
            &["synth", "--out", &norb],
            &TINY_SYNTH[..],
            &["--preview", &p("synth.png")],
        ]
        .concat(),
    );
    assert!(Path::new(&p("synth.png")).is_file());
    check(&["data", "info", "--data", &spec]);
    check(&["data", "info", "--data", &spec, "--json"]);
    check(&[
        "data",
        "preview",
        "--data",
        &spec,
        "--out",
        &p("preview.png"),
        "--n",
        "8",
    ]);
    assert!(Path::new(&p("preview.png")).is_file());
    check(&["pca", "--data", &spec, "--components", "4", "--out", &p("pca")]);
    assert!(Path::new(&p("pca/metrics.json")).is_file());

    std::fs::write(p("tiny.toml"), tiny_run()).unwrap();
    let config = p("tiny.toml");
    let train = ["train", "--config", &config, "--data", &spec, "--out"];
    check(&[&train[..], &[&p("vae")]].concat());
    assert!(Path::new(&p("vae/metrics.json")).is_file());
    // The reader goes away while the command runs (the watcher's path, not the start-up check).
    let mut child = Command::new(EXE)
        .args(train)
        .arg(p("vae2"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !err.contains("panicked"), "{err}");
    assert!(Path::new(&p("vae2/metrics.json")).is_file());

    check(&[
        "eval",
        &p("vae"),
        "--iwae-samples",
        "2",
        "--likelihood-images",
        "8",
        "--no-sample-quality",
    ]);
    check(&["sample", &p("vae"), "--n", "4", "--out", &p("samples.png")]);
    assert!(Path::new(&p("samples.png")).is_file());
    check(&["report", &p("pca"), &p("vae"), "--out", &p("report.html")]);
    assert!(Path::new(&p("report.html")).is_file());
    // Errors still go to stderr with status 1 when stdout is closed.
    let r = with_closed_stdout(&["data", "info", "--data", "norb:/nonexistent"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("/nonexistent"), "{}", r.stderr);
}
