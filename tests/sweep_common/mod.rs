//! Shared by the sweep tests: a tiny synthetic NORB, a tiny conv VAE config, and running the
//! real `norbvae` binary.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EXE: &str = env!("CARGO_BIN_EXE_norbvae");

/// A tiny conv VAE on 32x32 synthetic NORB: 3 downsizings, 4 filters, 16 units, 2 epochs of a
/// few batches. Seconds per run.
pub const TINY_BASE: &str = "\
seed = 0
[data]
image_size = 32
limit = 96
[model]
kind = \"conv\"
latent_dim = 4
[model.conv]
downsizings = 3
first_filters = 4
max_filters = 16
intermediate = 16
[likelihood]
kind = \"gaussian_optimal\"
output_activation = \"sigmoid\"
[train]
batch_size = 16
max_epochs = 2
grid_images = 4
";

/// Write the tiny synthetic NORB (32x32, 900 pairs per half) and the base config into `dir`;
/// returns (data spec, base config path).
pub fn setup(dir: &Path) -> (String, PathBuf) {
    let norb = dir.join("norb");
    norbvae::data::synth::write_small(&norb, 32, 5).unwrap();
    let base = dir.join("base.toml");
    std::fs::write(&base, TINY_BASE).unwrap();
    (format!("norb:{}", norb.display()), base)
}

pub fn norbvae(args: &[&str], cwd: &Path) -> Output {
    Command::new(EXE)
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("running norbvae")
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .unwrap()
}

/// What must be identical between two runs of the same config: the final metrics of every
/// split, each epoch's losses, and the final parameters (timings excluded).
pub fn outcome(run: &Path) -> (serde_json::Value, Vec<(f64, f64, f64)>, Vec<u8>) {
    let m = read_json(&run.join("metrics.json"));
    let hist = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["train_loss"].as_f64().unwrap(),
                v["val_loss"].as_f64().unwrap(),
                v["val_kl"].as_f64().unwrap(),
            )
        })
        .collect();
    let params = std::fs::read(run.join("checkpoints/last/model.safetensors")).unwrap();
    (m["metrics"].clone(), hist, params)
}

/// Wait until `path` exists (or panic after `secs`).
pub fn wait_for(path: &Path, secs: f64, what: &str) {
    let t0 = std::time::Instant::now();
    while !path.exists() {
        if t0.elapsed().as_secs_f64() > secs {
            panic!("timed out after {secs} s waiting for {what} ({})", path.display());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
