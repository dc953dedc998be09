//! Every float key refuses NaN and infinity, and absurd sizes are refused by the memory estimate
//! with a message naming the option, before anything is allocated.
use norbvae::model::budget::{estimate, ImageShape, Workload};
use norbvae::train::TrainConfig;

/// Every float key of the training config, found in the serialised default config.
fn float_keys() -> Vec<String> {
    fn walk(v: &toml::Value, key: &str, out: &mut Vec<String>) {
        match v {
            toml::Value::Float(_) => out.push(key.to_string()),
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let path = if key.is_empty() {
                        k.clone()
                    } else {
                        format!("{key}.{k}")
                    };
                    walk(v, &path, out);
                }
            }
            _ => {}
        }
    }
    let v = toml::Value::try_from(TrainConfig::default()).unwrap();
    let mut out = Vec::new();
    walk(&v, "", &mut out);
    out
}

#[test]
fn every_float_key_refuses_nan_and_inf() {
    let keys = float_keys();
    for k in [
        "train.min_delta",
        "kl.beta",
        "train.eps",
        "kl.free_bits",
        "kl.warmup_epochs",
    ] {
        assert!(
            keys.iter().any(|x| x == k),
            "{k} not among the float keys {keys:?}"
        );
    }
    assert!(keys.len() >= 12, "{keys:?}");
    for key in &keys {
        for bad in ["nan", "inf", "-inf"] {
            let cfg = TrainConfig::from_toml_str("", &[format!("{key}={bad}")]).unwrap();
            let e = cfg
                .check()
                .expect_err(&format!("{key}={bad} passed the check"))
                .to_string();
            assert!(
                e.contains(key.as_str()) && e.contains("finite"),
                "{key}={bad}: {e}"
            );
        }
    }
    TrainConfig::default().check().unwrap();
}

fn train_estimate(set: &[&str], side: usize) -> norbvae::model::budget::MemoryEstimate {
    let cfg = TrainConfig::from_toml_str("", &set.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    let shape = ImageShape {
        channels: 1,
        height: side,
        width: side,
    };
    estimate(
        &cfg.model,
        &cfg.likelihood,
        shape,
        &Workload::training(cfg.train.batch_size, cfg.train.grid_images),
    )
}

#[test]
fn absurd_sizes_are_refused_against_this_machines_memory() {
    let cases: [(&[&str], &str); 4] = [
        (&["model.latent_dim=1000000000000"], "model.latent_dim"),
        (&["model.conv.intermediate=4000000000"], "model.conv.intermediate"),
        (
            &[
                "model.conv.first_filters=100000000",
                "model.conv.max_filters=100000000",
            ],
            "model.conv.first_filters",
        ),
        (&["train.grid_images=100000000"], "train.grid_images"),
    ];
    for (set, option) in cases {
        let e = train_estimate(set, 32)
            .check_available("train")
            .expect_err(&format!("{set:?} was not refused"))
            .to_string();
        assert!(e.starts_with(option) && e.contains("available"), "{set:?}: {e}");
    }
    let cfg = TrainConfig::default();
    let shape = ImageShape {
        channels: 1,
        height: 96,
        width: 96,
    };
    let e = estimate(
        &cfg.model,
        &cfg.likelihood,
        shape,
        &Workload::sampling(100_000_000, "sample --n"),
    )
    .check_available("sample")
    .unwrap_err()
    .to_string();
    assert!(e.starts_with("sample --n 100000000"), "{e}");
    // The presets at their own sizes pass.
    let configs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    for entry in std::fs::read_dir(configs).unwrap() {
        let p = entry.unwrap().path();
        // configs/sweeps/ holds sweep grids, not training presets.
        if p.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        let cfg = TrainConfig::load(&p, &[]).unwrap();
        let side = cfg.data.image_size.unwrap_or(96);
        let shape = ImageShape {
            channels: 1,
            height: side,
            width: side,
        };
        let est = estimate(
            &cfg.model,
            &cfg.likelihood,
            shape,
            &Workload::training(cfg.train.batch_size, cfg.train.grid_images),
        );
        est.check_against(4 << 30, "train")
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}
