//! Shared by the integration tests: a tiny synthetic NORB and blob images, tiny conv VAE configs,
//! and running the real `norbvae` binary.
#![allow(dead_code)] // each test crate is compiled on its own and uses a different subset
use norbvae::cli::common::DataArgs;
use norbvae::data::{ImageSet, Splits};
use norbvae::util::SeededRng;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const EXE: &str = env!("CARGO_BIN_EXE_norbvae");

/// The `[model.conv]` and `[likelihood]` tables of the tiny conv VAEs: 4 filters growing to
/// `max_filters`, a Gaussian decoder with optimal variance. Follows a `[model]` table.
pub fn conv_tables(downsizings: u32, max_filters: u32) -> String {
    format!(
        "[model.conv]
downsizings = {downsizings}
first_filters = 4
max_filters = {max_filters}
intermediate = {max_filters}
[likelihood]
kind = \"gaussian_optimal\"
output_activation = \"sigmoid\"
"
    )
}

/// A tiny conv VAE config (latent dimension 4, `conv_tables`) whose `[train]` table holds `train`
/// (which may go on with subtables).
pub fn tiny_conv_config(downsizings: u32, max_filters: u32, train: &str) -> String {
    format!(
        "
[model]
latent_dim = 4
{}[train]
{train}",
        conv_tables(downsizings, max_filters)
    )
}

/// A tiny conv VAE on 32x32 synthetic NORB: 3 downsizings, 4 filters, 16 units, 2 epochs of a
/// few batches. Seconds per run.
pub fn tiny_base() -> String {
    format!(
        "seed = 0
[data]
image_size = 32
limit = 96
[model]
kind = \"conv\"
latent_dim = 4
{}[train]
batch_size = 16
max_epochs = 2
grid_images = 4
",
        conv_tables(3, 16)
    )
}

/// A tiny conv VAE on 16x16 images for one epoch of 2 steps, seeded: a whole CLI run in a second.
pub fn tiny_run() -> String {
    format!(
        "
seed = 1
[data]
image_size = 16
val_fraction = 0.2
[model]
latent_dim = 4
{}[train]
batch_size = 8
max_epochs = 1
max_steps_per_epoch = 2
grid_images = 4
",
        conv_tables(3, 16)
    )
}

/// CLI data options all left unset: the config decides.
pub fn no_data_args() -> DataArgs {
    DataArgs {
        spec: None,
        camera: None,
        image_size: None,
        val_fraction: None,
        val_instances: None,
        limit: None,
        data_seed: None,
    }
}

/// Gaussian blobs at random places; `binary` thresholds them at 0.5.
pub fn blobs(n: usize, side: usize, seed: u64, binary: bool) -> ImageSet {
    let mut rng = SeededRng::new(seed);
    let mut images = Vec::with_capacity(n * side * side);
    for _ in 0..n {
        let c = rng.uniform_vec(2);
        let (cx, cy) = (c[0] * side as f32, c[1] * side as f32);
        for y in 0..side {
            for x in 0..side {
                let d2 = (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2);
                let v = (-d2 / (side as f32)).exp();
                images.push(if binary { (v > 0.5) as u8 as f32 } else { v });
            }
        }
    }
    ImageSet {
        images,
        n,
        channels: 1,
        height: side,
        width: side,
        labels: vec![0; n],
        factors: None,
    }
}

/// Blob splits of `train`, `val` and `test` images of `side` x `side` (seeds 1, 2, 3).
pub fn blob_splits_of(side: usize, train: usize, val: usize, test: usize) -> Splits {
    Splits {
        name: "blobs".into(),
        train: blobs(train, side, 1, false),
        val: blobs(val, side, 2, false),
        test: blobs(test, side, 3, false),
        num_classes: 1,
        class_names: vec!["blob".into()],
    }
}

/// 48 training, 16 validation and 16 test blobs of `side` x `side`.
pub fn blob_splits(side: usize) -> Splits {
    blob_splits_of(side, 48, 16, 16)
}

/// The options of `norbvae synth` for a tiny 16x16 NORB (2 train and 2 test instances, 2
/// elevations, 3 azimuths, 1 lighting).
pub const TINY_SYNTH: [&str; 10] = [
    "--size",
    "16",
    "--instances",
    "4,6,0,1",
    "--elevations",
    "0,4",
    "--azimuths",
    "0,12,24",
    "--lightings",
    "0",
];

/// Write the tiny synthetic NORB (32x32, 900 pairs per half) and the base config into `dir`;
/// returns (data spec, base config path).
pub fn setup(dir: &Path) -> (String, PathBuf) {
    let norb = dir.join("norb");
    norbvae::data::synth::write_small(&norb, 32, 5).unwrap();
    let base = dir.join("base.toml");
    std::fs::write(&base, tiny_base()).unwrap();
    (format!("norb:{}", norb.display()), base)
}

/// The sweep grid both executors run: 2 latent sizes x 2 filter counts x 2 seeds, 8 runs.
pub const GRID_2X2_SEEDS_2: [&str; 6] = [
    "--grid",
    "model.latent_dim=2,4",
    "--grid",
    "model.conv.first_filters=2,4",
    "--seeds",
    "0,1",
];

/// `sweep --config base --data data` followed by `rest`.
pub fn sweep_args<'a>(base: &'a Path, data: &'a str, rest: &[&'a str]) -> Vec<&'a str> {
    let head = ["sweep", "--config", base.to_str().unwrap(), "--data", data];
    [&head[..], rest].concat()
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
