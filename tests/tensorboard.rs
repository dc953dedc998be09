//! TensorBoard logs read back by TensorBoard itself (python/read_tb.py in the venv made by
//! scripts/tb_venv.sh; the reader parts skip with a message when it is absent), and metrics.csv.
mod common;

use common::{blob_splits_of, tiny_conv_config};
use norbvae::train::{self, TrainConfig};
use norbvae::util::tensorboard::{EventWriter, HParam};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// TensorBoard's python: NORBVAE_TB_PYTHON, else `.venv-tb/bin/python` in the repository.
fn tb_python() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NORBVAE_TB_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-tb/bin/python");
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: reading the event files with TensorBoard needs {} (run scripts/tb_venv.sh)",
            p.display()
        );
        None
    }
}

/// What TensorBoard's reader sees in `logdir`.
fn read_tb(python: &Path, logdir: &Path) -> Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/read_tb.py");
    let out = std::process::Command::new(python)
        .arg(&script)
        .arg(logdir)
        .output()
        .expect("running python/read_tb.py");
    assert!(
        out.status.success(),
        "read_tb.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("read_tb.py prints JSON")
}

/// [[step, value], ...] of a scalar tag, as (u64, f64).
fn series(tb: &Value, tag: &str) -> Vec<(u64, f64)> {
    tb["scalars"][tag]
        .as_array()
        .unwrap_or_else(|| panic!("no scalar {tag} in {}", tb["scalars"]))
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_f64().unwrap()))
        .collect()
}

fn png(width: u32, height: u32, rgb: &[u8]) -> Vec<u8> {
    let img = image::RgbImage::from_raw(width, height, rgb.to_vec()).unwrap();
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest;
    format!("{:x}", md5::Md5::digest(bytes))
}

#[test]
fn tensorboard_reads_back_scalars_images_hparams_and_restarts() {
    let tmp = tempfile::tempdir().unwrap();
    let logdir = tmp.path().join("tb");
    // Values that are not round in binary, tiny and large: read back as exactly their f32.
    let values = [0.1, 123.456_789_012_3, -7.25e-7, 6.0e5 + 1.0 / 3.0];
    let rgb: Vec<u8> = (0..7 * 5 * 3).map(|i| (i * 37 % 256) as u8).collect();
    let mut hp = BTreeMap::new();
    hp.insert("model.latent_dim".to_string(), HParam::Number(8.0));
    hp.insert("model.kind".to_string(), HParam::Text("conv".into()));
    hp.insert("train.tensorboard.enabled".to_string(), HParam::Bool(true));
    {
        let mut w = EventWriter::create(&logdir).unwrap();
        w.restart_at(1).unwrap();
        w.hparams(&hp).unwrap();
        for step in 1..=10u64 {
            w.scalar("loss", step, values[step as usize % 4]).unwrap();
        }
        w.png_bytes("pic", 4, png(7, 5, &rgb)).unwrap();
        w.flush().unwrap();
    }
    // A resumed run: restarts at step 6, so steps 6..=10 of the first file are dropped.
    {
        let mut w = EventWriter::create(&logdir).unwrap();
        w.restart_at(6).unwrap();
        for step in 6..=8u64 {
            w.scalar("loss", step, 1000.0 + step as f64).unwrap();
        }
        w.flush().unwrap();
    }
    assert_eq!(std::fs::read_dir(&logdir).unwrap().count(), 2);
    let Some(py) = tb_python() else { return };
    let tb = read_tb(&py, &logdir);
    let expect: Vec<(u64, f64)> = (1..=5u64)
        .map(|s| (s, values[s as usize % 4] as f32 as f64))
        .chain((6..=8u64).map(|s| (s, (1000.0 + s as f64) as f32 as f64)))
        .collect();
    assert_eq!(series(&tb, "loss"), expect);
    let pic = &tb["images"]["pic"][0];
    assert_eq!(pic["step"], 4);
    assert_eq!(
        (pic["width"].as_u64(), pic["height"].as_u64()),
        (Some(7), Some(5))
    );
    assert_eq!(pic["format"], "PNG");
    assert_eq!(
        (pic["decoded_width"].as_u64(), pic["decoded_height"].as_u64()),
        (Some(7), Some(5))
    );
    assert_eq!(pic["rgb_md5"].as_str().unwrap(), md5_hex(&rgb));
    let start = &tb["hparams"]["_hparams_/session_start_info"];
    assert_eq!(start["kind"], "session_start_info", "{}", tb["hparams"]);
    assert_eq!(start["hparams"]["model.latent_dim"], 8.0);
    assert_eq!(start["hparams"]["model.kind"], "conv");
    assert_eq!(start["hparams"]["train.tensorboard.enabled"], true);
}

/// The tiny conv VAE with 2 downsizings and 4 to 8 filters, logging every 2 steps.
fn tiny_conv() -> String {
    tiny_conv_config(
        2,
        8,
        "batch_size = 8
max_epochs = 3
patience = 100
grid_images = 4
[train.tensorboard]
every_steps = 2
images_every_epochs = 2
",
    )
}

fn jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// metrics.jsonl without the wall-clock fields.
fn numbers(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let mut r = r.clone();
            let o = r.as_object_mut().unwrap();
            o.remove("seconds");
            o.remove("train_images_per_second");
            r
        })
        .collect()
}

#[test]
fn training_logs_tensorboard_and_csv_without_changing_the_run() {
    let splits = blob_splits_of(16, 40, 8, 8);
    let tmp = tempfile::tempdir().unwrap();
    // Two epochs, then resumed for a third: the event files of both invocations read as one run.
    let short = TrainConfig::from_toml_str(&tiny_conv(), &["train.max_epochs=2".into()])
        .unwrap()
        .check()
        .unwrap();
    let full = TrainConfig::from_toml_str(&tiny_conv(), &[])
        .unwrap()
        .check()
        .unwrap();
    let run = tmp.path().join("run");
    train::train(&short, &splits, &run, false).unwrap();
    train::train(&full, &splits, &run, true).unwrap();
    // The same run with TensorBoard off gives the same numbers.
    let off = TrainConfig::from_toml_str(&tiny_conv(), &["train.tensorboard.enabled=false".into()])
        .unwrap()
        .check()
        .unwrap();
    let plain = tmp.path().join("plain");
    train::train(&off, &splits, &plain, false).unwrap();
    assert!(!plain.join("tb").exists());
    let records = jsonl(&run.join("metrics.jsonl"));
    assert_eq!(records.len(), 3);
    assert_eq!(numbers(&records), numbers(&jsonl(&plain.join("metrics.jsonl"))));

    // metrics.csv: a header of EpochRecord's fields and one row per line of metrics.jsonl.
    let mut csv = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let header: Vec<String> = csv.headers().unwrap().iter().map(String::from).collect();
    let keys: Vec<String> = records[0].as_object().unwrap().keys().cloned().collect();
    let mut sorted_header = header.clone();
    sorted_header.sort();
    assert_eq!(sorted_header, keys, "csv header {header:?}");
    let rows: Vec<csv::StringRecord> = csv.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 3);
    for (row, rec) in rows.iter().zip(&records) {
        for (name, cell) in header.iter().zip(row.iter()) {
            match &rec[name.as_str()] {
                Value::Null => assert_eq!(cell, "", "{name}"),
                v => assert_eq!(cell.parse::<f64>().unwrap(), v.as_f64().unwrap(), "{name}"),
            }
        }
    }

    let tbdir = run.join("tb");
    let files = std::fs::read_dir(&tbdir).unwrap().count();
    assert_eq!(files, 2, "one event file per invocation");
    let Some(py) = tb_python() else { return };
    let tb = read_tb(&py, &tbdir);
    // 40 images in batches of 8: 5 steps per epoch; epoch e ends at step 5e.
    let steps: Vec<u64> = vec![5, 10, 15];
    for (tag, key) in [
        ("train/loss", "train_loss"),
        ("train/rec", "train_rec"),
        ("train/kl", "train_kl"),
        ("val/loss", "val_loss"),
        ("val/neg_elbo", "val_neg_elbo"),
        ("val/rec", "val_rec"),
        ("val/kl", "val_kl"),
        ("kl/beta", "beta"),
        ("speed/train_img_per_s", "train_images_per_second"),
        ("epoch", "epoch"),
    ] {
        let expect: Vec<(u64, f64)> = steps
            .iter()
            .zip(&records)
            .map(|(&s, r)| (s, r[key].as_f64().unwrap() as f32 as f64))
            .collect();
        assert_eq!(series(&tb, tag), expect, "{tag}");
    }
    assert_eq!(
        series(&tb, "opt/lr"),
        steps.iter().map(|&s| (s, 1e-3f32 as f64)).collect::<Vec<_>>()
    );
    let step_loss = series(&tb, "train/step_loss");
    assert_eq!(
        step_loss.iter().map(|p| p.0).collect::<Vec<_>>(),
        vec![2, 4, 6, 8, 10, 12, 14]
    );
    assert!(step_loss.iter().all(|p| p.1.is_finite() && p.1 > -1e6));
    // Pictures after epoch 1 and epoch 2, laid out as the run's own grids.
    let grid = image::open(run.join("recon_val.png")).unwrap();
    let samples = image::open(run.join("samples_prior.png")).unwrap();
    for (tag, png) in [
        ("images/reconstructions", &grid),
        ("images/prior_samples", &samples),
    ] {
        let imgs = tb["images"][tag].as_array().unwrap_or_else(|| panic!("no {tag}"));
        assert_eq!(
            imgs.iter()
                .map(|i| i["step"].as_u64().unwrap())
                .collect::<Vec<_>>(),
            vec![5, 10]
        );
        for i in imgs {
            assert_eq!(i["decoded_width"].as_u64().unwrap(), png.width() as u64, "{tag}");
            assert_eq!(
                i["decoded_height"].as_u64().unwrap(),
                png.height() as u64,
                "{tag}"
            );
        }
    }
    let start = &tb["hparams"]["_hparams_/session_start_info"]["hparams"];
    assert_eq!(start["model.latent_dim"], 4.0);
    assert_eq!(start["likelihood.kind"], "gaussian_optimal");
    assert_eq!(tb["hparams"]["_hparams_/session_end_info"]["status"], 1);
    assert!(!tbdir.join(".picture.png").exists());
}
