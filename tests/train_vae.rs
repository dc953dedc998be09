//! The VAE engine end to end: presets train on a small synthetic NORB through the CLI, a tiny
//! model overfits, resume is exact, bad configs fail clearly, and a run loads back for eval.
mod common;

use common::{blob_splits, blobs, no_data_args, tiny_conv_config};
use norbvae::model::{Mode, ParamStore, Vae};
use norbvae::train::optim::{Adam, AdamHyper};
use norbvae::train::{self, CheckpointKind, TrainConfig};
use norbvae::util::SeededRng;
use std::path::{Path, PathBuf};

fn train_cli(config: Option<PathBuf>, out: &Path, set: &[&str], resume: bool) -> anyhow::Result<()> {
    norbvae::cli::train::run(norbvae::cli::train::Args {
        device: Default::default(),
        config,
        data: no_data_args(),
        out: Some(out.to_path_buf()),
        set: set.iter().map(|s| s.to_string()).collect(),
        resume,
        force: false,
    })
}

fn configs_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("configs")
}

/// The tiny conv VAE of these tests: 3 downsizings, 4 to 16 filters, batches of 16.
fn tiny_conv() -> String {
    tiny_conv_config(3, 16, "batch_size = 16\ngrid_images = 4\n")
}

#[test]
fn every_preset_trains_one_epoch_on_small_synthetic_norb() {
    let tmp = tempfile::tempdir().unwrap();
    let norb = tmp.path().join("norb");
    norbvae::data::synth::write_small(&norb, 32, 7).unwrap();
    let spec = format!("data.spec=\"norb:{}\"", norb.display());
    let mut presets: Vec<PathBuf> = std::fs::read_dir(configs_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    presets.sort();
    assert!(presets.len() >= 6, "expected the six presets, found {presets:?}");
    for preset in presets {
        let name = preset.file_stem().unwrap().to_string_lossy().into_owned();
        let out = tmp.path().join(&name);
        // The preset's architecture, shrunk: fewer filters and units, 32x32 images (padded to
        // 64 by the 6 downsizings), 2 steps of 8 images.
        let set = [
            spec.as_str(),
            "data.image_size=32",
            "data.limit=40",
            "model.conv.first_filters=2",
            "model.conv.max_filters=8",
            "model.conv.intermediate=8",
            "model.dense.components=12",
            "model.dense.width=16",
            "train.batch_size=8",
            "train.max_epochs=1",
            "train.max_steps_per_epoch=2",
            "train.grid_images=4",
        ];
        train_cli(Some(preset.clone()), &out, &set, false).unwrap_or_else(|e| panic!("{name}: {e:#}"));
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
        assert_eq!(m["kind"], "vae", "{name}");
        assert_eq!(m["epochs_run"], 1, "{name}");
        assert_eq!(m["stopped_because"], "max_epochs", "{name}");
        for split in ["train", "val", "test"] {
            for key in ["neg_elbo", "rec", "kl", "mse", "psnr"] {
                let v = m["metrics"][split][key].as_f64().unwrap_or(f64::NAN);
                assert!(v.is_finite(), "{name}: {split}.{key} = {v}");
            }
        }
        for f in [
            "config.toml",
            "metrics.jsonl",
            "loss_curve.png",
            "recon_train.png",
            "recon_val.png",
            "recon_test.png",
            "samples_prior.png",
            "checkpoints/best/model.safetensors",
            "checkpoints/last/model.safetensors",
            "checkpoints/last/optim.safetensors",
            "checkpoints/last/state.json",
        ] {
            assert!(out.join(f).is_file(), "{name}: missing {f}");
        }
        // The resolved config reloads to the same config.
        let resolved = TrainConfig::load(&out.join("config.toml"), &[]).unwrap();
        assert_eq!(resolved.train.max_steps_per_epoch, Some(2));
        // And the run loads back for evaluation.
        let run = train::load_run(&out, CheckpointKind::Best).unwrap();
        let splits = norbvae::data::load(&resolved.data).unwrap();
        let x = run.model_input(&splits.test.head(3)).unwrap();
        let (mu, lv) = run.encode(&x).unwrap();
        assert_eq!(mu.dims(), &[3, run.latent_dim()]);
        assert_eq!(lv.dims(), mu.dims());
        let dec = run.decode(&mu).unwrap();
        let lp: Vec<f32> = run.log_px_given_z(&x, &dec).unwrap().to_vec1().unwrap();
        assert!(
            lp.len() == 3 && lp.iter().all(|v| v.is_finite()),
            "{name}: {lp:?}"
        );
        let px = run.mean_pixels(&dec).unwrap();
        let (c, h, w) = run.image_shape();
        assert_eq!((c, h, w), (1, 32, 32));
        assert_eq!(px.len(), 3 * c * h * w);
        assert!(px.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}

#[test]
fn tiny_model_overfits_a_handful_of_images() {
    // 8 binary 16x16 blobs, Bernoulli decoder: the loss can approach 0, so it must fall a lot.
    let set = blobs(8, 16, 11, true);
    let cfg = TrainConfig::from_toml_str(
        "[model]\nlatent_dim = 8\n[model.conv]\ndownsizings = 2\nfirst_filters = 8\nmax_filters = 16\nintermediate = 32\n",
        &[],
    )
    .unwrap();
    let dev = candle_core::Device::Cpu;
    let store = ParamStore::new(3, &dev);
    let shape = norbvae::model::InputShape::Image {
        channels: 1,
        height: 16,
        width: 16,
    };
    let vae = Vae::new(&cfg.model, &cfg.likelihood, shape, store.var_builder()).unwrap();
    let vars = store.trainable().into_iter().map(|(_, v)| v).collect();
    let mut opt = Adam::new(
        vars,
        AdamHyper {
            lr: 3e-3,
            ..Default::default()
        },
    )
    .unwrap();
    let x = candle_core::Tensor::from_vec(set.images.clone(), (8, 1, 16, 16), &dev).unwrap();
    let mut rng = SeededRng::new(1);
    let mut losses = Vec::new();
    for _ in 0..200 {
        let eps = candle_core::Tensor::from_vec(rng.normal_vec(8 * 8), (8, 8), &dev).unwrap();
        let parts = vae.loss(&x, &eps, &cfg.kl, 1.0, Mode::Train).unwrap();
        losses.push(parts.loss.to_scalar::<f32>().unwrap());
        opt.step(&parts.loss.backward().unwrap()).unwrap();
    }
    let first = losses[0];
    let last = losses[losses.len() - 10..].iter().sum::<f32>() / 10.0;
    // Measured: 248 -> 22 nats per image (mean of the last 10 steps); require a factor 5.
    assert!(last < first / 5.0, "loss {first} -> {last}");
}

#[test]
fn resume_after_a_stop_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let splits = blob_splits(16);
    let base = TrainConfig::from_toml_str(&tiny_conv(), &["model.conv.downsizings=2".into()]).unwrap();
    let mut full = base.clone();
    full.train.max_epochs = 4;
    let a = train::train(&full.check().unwrap(), &splits, &tmp.path().join("a"), false).unwrap();

    let mut short = base.clone();
    short.train.max_epochs = 2;
    let b_dir = tmp.path().join("b");
    let b1 = train::train(&short.check().unwrap(), &splits, &b_dir, false).unwrap();
    assert_eq!(b1.epochs_run, 2);
    // Training into an existing run without --resume is refused.
    let err = train::train(&short.check().unwrap(), &splits, &b_dir, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--resume"), "{err}");
    let b = train::train(&full.check().unwrap(), &splits, &b_dir, true).unwrap();
    assert_eq!(b.epochs_run, 4);
    assert_eq!(a.metrics, b.metrics);
    let last = |d: &Path| std::fs::read(d.join("checkpoints/last/model.safetensors")).unwrap();
    assert!(
        last(&tmp.path().join("a")) == last(&b_dir),
        "final parameters differ"
    );
    let hist = |d: &Path| {
        std::fs::read_to_string(d.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (v["train_loss"].as_f64().unwrap(), v["val_loss"].as_f64().unwrap())
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(hist(&tmp.path().join("a")), hist(&b_dir));
}

#[test]
fn early_stopping_stops_a_real_run_for_patience() {
    // A negligible lr, no batch norm and a likelihood without running state keep the model fixed:
    // the validation loss (with its fixed noise) never improves after epoch 1.
    let tmp = tempfile::tempdir().unwrap();
    let splits = blob_splits(16);
    let cfg = TrainConfig::from_toml_str(
        &tiny_conv(),
        &[
            "model.conv.downsizings=2".into(),
            "train.lr=1e-12".into(),
            "model.conv.batch_norm=false".into(),
            "likelihood.kind=\"bernoulli\"".into(),
            "train.patience=2".into(),
            "train.min_delta=0.5".into(),
            "train.max_epochs=20".into(),
            "train.max_steps_per_epoch=1".into(),
        ],
    )
    .unwrap();
    let s = train::train(&cfg.check().unwrap(), &splits, tmp.path(), false).unwrap();
    assert_eq!(s.stopped_because, train::StopReason::Patience);
    assert_eq!((s.epochs_run, s.best_epoch), (3, 1));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["stopped_because"], "patience");
}

#[test]
fn bad_configs_give_clear_errors() {
    let err = |text: &str, set: &[&str]| -> String {
        let set: Vec<String> = set.iter().map(|s| s.to_string()).collect();
        match TrainConfig::from_toml_str(text, &set) {
            Err(e) => format!("{e:#}"),
            Ok(c) => match c.check() {
                Err(e) => e.to_string(),
                Ok(_) => panic!("config accepted: {text} {set:?}"),
            },
        }
    };
    let e = err("[model]\nlatnet_dim = 3\n", &[]);
    assert!(e.contains("latnet_dim"), "{e}");
    let e = err("", &["train.bacth_size=3"]);
    assert!(e.contains("bacth_size"), "{e}");
    let e = err("[model]\nlatent_dim = 0\n", &[]);
    assert!(e.contains("model.latent_dim") && e.contains("at least 1"), "{e}");
    let e = err(
        "[data]\nimage_size = 96\n[model.conv]\nsize_rule = \"strict\"\ndownsizings = 6\n",
        &[],
    );
    assert!(
        e.contains("96") && e.contains("not divisible") && e.contains("64"),
        "{e}"
    );
    let e = err(
        "[model]\nkind = \"pca_dense\"\n[model.dense]\npca_model = \"/nonexistent/pca.safetensors\"\n[likelihood]\nkind = \"gaussian_fixed\"\n",
        &[],
    );
    assert!(
        e.contains("model.dense.pca_model") && e.contains("does not exist"),
        "{e}"
    );
    let e = err("[likelihood]\nkind = \"gaussian_fixed\"\nvariance = 0.0\n", &[]);
    assert!(e.contains("likelihood.variance"), "{e}");
    // Through the command: the error names the config file.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("bad.toml");
    std::fs::write(&cfg, "[train]\nmax_epochs = 0\n").unwrap();
    let e = format!(
        "{:#}",
        train_cli(Some(cfg), &tmp.path().join("out"), &[], false).unwrap_err()
    );
    assert!(e.contains("bad.toml") && e.contains("train.max_epochs"), "{e}");
    // Strict sizes are also refused when the data decides the size.
    let splits = blob_splits(20);
    let c = TrainConfig::from_toml_str(&tiny_conv(), &["model.conv.size_rule=\"strict\"".into()]).unwrap();
    let e = format!(
        "{:#}",
        train::train(&c.check().unwrap(), &splits, &tmp.path().join("s"), false).unwrap_err()
    );
    assert!(e.contains("20x20") && e.contains("not divisible"), "{e}");
    // Loading a directory that was never trained.
    let e = format!(
        "{:#}",
        train::load_run(tmp.path(), CheckpointKind::Best).err().unwrap()
    );
    assert!(e.contains("config.toml"), "{e}");
}

#[test]
fn odd_sizes_pad_and_crop() {
    // 20x20 with 3 downsizings pads to 24 and crops back; 28 with 2 fits exactly.
    let tmp = tempfile::tempdir().unwrap();
    for (side, d) in [(20usize, 3usize), (28, 2)] {
        let splits = blob_splits(side);
        let cfg = TrainConfig::from_toml_str(
            &tiny_conv(),
            &[
                format!("model.conv.downsizings={d}"),
                "train.max_epochs=1".into(),
                "train.max_steps_per_epoch=1".into(),
            ],
        )
        .unwrap();
        let dir = tmp.path().join(format!("s{side}"));
        train::train(&cfg.check().unwrap(), &splits, &dir, false).unwrap();
        let run = train::load_run(&dir, CheckpointKind::Last).unwrap();
        let x = run.model_input(&splits.test.head(2)).unwrap();
        let (mu, _) = run.encode(&x).unwrap();
        let dec = run.decode(&mu).unwrap();
        assert_eq!(dec.dims(), &[2, 1, side, side]);
    }
}

#[test]
fn divergence_stops_with_the_reason_and_keeps_the_last_good_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let splits = blob_splits(16);
    let cfg = TrainConfig::from_toml_str(&tiny_conv(), &["model.conv.downsizings=2".into()]).unwrap();
    let mut one = cfg.clone();
    one.train.max_epochs = 1;
    train::train(&one.check().unwrap(), &splits, tmp.path(), false).unwrap();
    let good = std::fs::read(tmp.path().join("checkpoints/best/model.safetensors")).unwrap();
    // An absurd learning rate sends the weights to infinity in the resumed epoch 2.
    let mut wild = cfg.clone();
    wild.train.max_epochs = 3;
    wild.train.lr = 1e30;
    let s = train::train(&wild.check().unwrap(), &splits, tmp.path(), true).unwrap();
    assert_eq!(s.stopped_because, train::StopReason::Diverged);
    assert_eq!((s.epochs_run, s.best_epoch), (1, 1));
    assert!(s.metrics["test"].neg_elbo.is_finite());
    assert_eq!(
        std::fs::read(tmp.path().join("checkpoints/best/model.safetensors")).unwrap(),
        good
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["stopped_because"], "diverged");
}

#[test]
fn learning_rate_schedule_reaches_the_updates() {
    // A warm-up longer than the run keeps every rate near lr * step / warmup: the training loss
    // barely moves, while the same run at the constant rate learns. A cosine schedule and a
    // constant one give different weights.
    let tmp = tempfile::tempdir().unwrap();
    let splits = blob_splits(16);
    let run = |name: &str, set: &[&str]| {
        let mut sets = vec![
            "model.conv.downsizings=2".to_string(),
            "train.max_epochs=3".into(),
        ];
        sets.extend(set.iter().map(|s| s.to_string()));
        let cfg = TrainConfig::from_toml_str(&tiny_conv(), &sets).unwrap();
        let dir = tmp.path().join(name);
        train::train(&cfg.check().unwrap(), &splits, &dir, false).unwrap();
        let losses: Vec<f64> = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["train_loss"]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        (
            losses,
            std::fs::read(dir.join("checkpoints/last/model.safetensors")).unwrap(),
        )
    };
    let (constant, w_constant) = run("constant", &["train.lr=0.01"]);
    let (warm, _) = run("warm", &["train.lr=0.01", "train.lr_warmup_steps=100000000"]);
    let (cosine, w_cosine) = run("cosine", &["train.lr=0.01", "train.lr_schedule=\"cosine\""]);
    let drop = |l: &[f64]| (l[0] - l[l.len() - 1]) / l[0].abs();
    assert!(
        drop(&constant) > 0.01,
        "constant rate did not learn: {constant:?}"
    );
    assert!(
        drop(&warm).abs() < drop(&constant) / 20.0,
        "warm-up {warm:?} vs {constant:?}"
    );
    assert!(drop(&cosine) > 0.01, "cosine schedule did not learn: {cosine:?}");
    assert!(w_cosine != w_constant, "the cosine schedule changed nothing");
    // Bad values of the training aids are config errors naming the key.
    for (set, key) in [
        ("train.ema_decay=1.0", "train.ema_decay"),
        ("train.ema_decay=-0.1", "train.ema_decay"),
        ("train.grad_clip=0.0", "train.grad_clip"),
        ("train.grad_skip_threshold=0.5", "train.grad_skip_threshold"),
    ] {
        let err = TrainConfig::from_toml_str(&tiny_conv(), &[set.into()])
            .unwrap()
            .check()
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{set}: {err}");
    }
}

#[test]
fn a_decoder_without_batch_norm_from_before_model_json_2_is_not_resumed() {
    // A run of the decoder that had no activation without batch norm (model.json without an
    // architecture) must not resume into today's decoder; the same run with today's model.json does.
    let tmp = tempfile::tempdir().unwrap();
    let splits = blob_splits(16);
    let sets = |epochs: usize| -> Vec<String> {
        vec![
            "model.conv.downsizings=2".into(),
            "model.conv.batch_norm=false".into(),
            format!("train.max_epochs={epochs}"),
            "train.max_steps_per_epoch=1".into(),
        ]
    };
    let cfg = |epochs| {
        TrainConfig::from_toml_str(&tiny_conv(), &sets(epochs))
            .unwrap()
            .check()
            .unwrap()
    };
    let run = tmp.path().join("run");
    train::train(&cfg(1), &splits, &run, false).unwrap();
    let model_json = run.join("model.json");
    let today = std::fs::read_to_string(&model_json).unwrap();
    let mut old: serde_json::Value = serde_json::from_str(&today).unwrap();
    old.as_object_mut().unwrap().remove("architecture");
    old["format_version"] = 1.into();
    std::fs::write(&model_json, serde_json::to_string(&old).unwrap()).unwrap();
    let config_before = std::fs::read(run.join("config.toml")).unwrap();

    let e = format!("{:#}", train::train(&cfg(2), &splits, &run, true).unwrap_err());
    assert!(e.contains("no activation") && e.contains("model.json"), "{e}");
    assert_eq!(std::fs::read(run.join("config.toml")).unwrap(), config_before);
    assert!(
        run.join("metrics.json").is_file(),
        "the finished run is left as it was"
    );

    std::fs::write(&model_json, today).unwrap();
    let s = train::train(&cfg(2), &splits, &run, true).unwrap();
    assert_eq!(s.epochs_run, 2);
}
