//! The trainer stops cleanly on a signal: SIGINT mid-run exits 130 with the unfinished epoch
//! dropped, and `--resume` ends bit-identical to an uninterrupted run.
mod common;
use common::*;
use std::process::{Command, Stdio};

fn train_cmd(dir: &std::path::Path, base: &std::path::Path, data: &str, out: &str) -> Command {
    let mut c = Command::new(EXE);
    c.current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .args(["train", "--config"])
        .arg(base)
        .args(["--data", data, "--out", out])
        // Epochs long enough (30 steps) that the signal lands inside one.
        .args(["--set", "data.limit=480", "--set", "train.max_epochs=3"]);
    c
}

#[test]
fn sigint_mid_run_exits_130_and_resume_is_bit_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, base) = setup(dir);

    let full = train_cmd(dir, &base, &data, "full").output().unwrap();
    assert!(full.status.success(), "{}", text(&full));

    let child = train_cmd(dir, &base, &data, "cut")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(
        &dir.join("cut/checkpoints/last/state.json"),
        120.0,
        "the first epoch's checkpoint",
    );
    // Epoch 2 is under way: interrupt it.
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(130), "{t}");
    assert!(t.contains("stopped by SIGINT"), "{t}");
    assert!(t.contains("--resume"), "{t}");
    assert!(!dir.join("cut/metrics.json").exists(), "{t}");
    // Only finished epochs are on disk.
    let state = read_json(&dir.join("cut/checkpoints/last/state.json"));
    let done = state["epochs_done"].as_u64().unwrap();
    assert!((1..3).contains(&done), "epochs_done {done}\n{t}");
    let lines = std::fs::read_to_string(dir.join("cut/metrics.jsonl"))
        .unwrap()
        .lines()
        .count();
    assert_eq!(lines as u64, done);

    let resumed = Command::new(EXE)
        .current_dir(dir)
        .env("RAYON_NUM_THREADS", "1")
        .args(["train", "--out", "cut", "--resume"])
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
    let (a, b) = (outcome(&dir.join("full")), outcome(&dir.join("cut")));
    assert_eq!(a.0, b.0, "final metrics differ");
    assert_eq!(a.1, b.1, "epoch losses differ");
    assert!(a.2 == b.2, "final parameters differ");
    assert_eq!(a.1.len(), 3);
}

#[test]
fn sigterm_before_the_first_epoch_says_to_start_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (data, base) = setup(dir);
    let child = train_cmd(dir, &base, &data, "early")
        .args(["--set", "train.max_epochs=50", "--set", "data.limit=2000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // model.json is written just before the first epoch starts.
    wait_for(&dir.join("early/model.json"), 120.0, "the run to start");
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(143), "{t}");
    if !dir.join("early/checkpoints/last/state.json").exists() {
        assert!(t.contains("before its first epoch finished"), "{t}");
    }
}
