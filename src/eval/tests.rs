//! Evaluation of a real (tiny) trained run on a small synthetic NORB.
use super::*;
use crate::data::DataOptions;
use crate::train::TrainConfig;
use std::path::Path;

/// The default config on a small 16x16 synthetic NORB written under `root` (data seed
/// `data_seed`), first `limit` images, training seed `seed`.
fn synth_config(root: &Path, data_seed: u64, limit: usize, seed: u64) -> TrainConfig {
    let data_dir = root.join("norb");
    crate::data::synth::write_small(&data_dir, 16, data_seed).unwrap();
    TrainConfig {
        seed,
        data: DataOptions {
            spec: format!("norb:{}", data_dir.display()),
            limit: Some(limit),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Train a tiny conv VAE for a few steps on 16x16 synthetic NORB; returns the run dir.
fn tiny_run(root: &Path) -> std::path::PathBuf {
    let mut cfg = synth_config(root, 1, 300, 3);
    cfg.model.latent_dim = 4;
    cfg.model.conv.downsizings = 2;
    cfg.model.conv.first_filters = 4;
    cfg.model.conv.intermediate = 32;
    cfg.train.batch_size = 32;
    cfg.train.max_epochs = 2;
    cfg.train.max_steps_per_epoch = Some(8);
    cfg.train.grid_images = 8;
    let splits = crate::data::load(&cfg.data).unwrap();
    let run = root.join("run");
    crate::train::train(&cfg.check().unwrap(), &splits, &run, false).unwrap();
    run
}

#[test]
fn eval_adds_bounds_quality_and_samples_iwae_never_worse_than_elbo() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tiny_run(tmp.path());
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let mut opts = EvalOptions {
        iwae_samples: 20,
        likelihood_images: Some(60),
        quality_samples: 100,
        cache_dir: tmp.path().join("cache"),
        show_progress: false,
        ..Default::default()
    };
    opts.classifier.epochs = 1;
    opts.classifier.max_train = 300;
    opts.classifier.min_steps = 0;
    opts.sampler.two_stage.steps = 100;
    opts.sampler.gmm_components = 3;
    let out = serde_json::to_value(evaluate_run(&run, &opts).unwrap()).unwrap();
    let f = |k: &str| out[k].as_f64().unwrap();
    // The importance-weighted bound is at least as tight as the ELBO from the same samples.
    assert!(f("iwae") <= f("iwae_neg_elbo") && f("iwae").is_finite(), "{out}");
    assert!(
        f("iwae_neg_elbo") - f("iwae") < 0.2 * f("iwae_neg_elbo").abs(),
        "{out}"
    );
    // Bernoulli is not a density on grey levels: no bits/dim, as in the trainer's metrics.
    assert!(out.get("iwae_bits_per_dim").is_none(), "{out}");
    // MSE of the decoder mean at the posterior mean agrees with the trainer's own test MSE.
    let train_mse = before["metrics"]["test"]["mse"].as_f64().unwrap();
    assert!(
        (f("mse") - train_mse).abs() < 1e-6 * train_mse.max(1e-3),
        "{} vs {train_mse}",
        f("mse")
    );
    assert!(f("ssim") > -1.0 && f("ssim") <= 1.0);
    assert!(out["active_units"].as_u64().unwrap() <= 4);
    for s in ["prior", "gmm", "two_stage"] {
        let fd = out["samples"][s]["fd"].as_f64().unwrap();
        assert!(fd.is_finite() && fd >= 0.0, "{s}: {fd}");
        let latent_fd = out["samples"][s]["latent_fd"].as_f64().unwrap();
        assert!(latent_fd.is_finite() && latent_fd >= 0.0, "{s}: {latent_fd}");
    }
    // Merged into metrics.json without losing the trainer's entries; pictures written.
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(after["stopped_because"], before["stopped_because"]);
    assert_eq!(
        after["metrics"]["test"]["neg_elbo"],
        before["metrics"]["test"]["neg_elbo"]
    );
    assert_eq!(after["metrics"]["test"]["iwae"], out["iwae"]);
    assert!(after["eval"]["classifier"]["test_accuracy"].as_f64().unwrap() > 0.0);
    // The reconstructions scored like samples: the decoder's own FD, with 100 images.
    let rec = &out["reconstructions"];
    assert_eq!(rec["n_samples"], 100, "{out}");
    let rec_fd = rec["fd"].as_f64().unwrap();
    assert!(rec_fd.is_finite() && rec_fd >= 0.0, "{rec}");
    // Precision and recall in both spaces for every sampler, the reconstructions and real
    // training images; real images against real images cover each other well.
    let unit = |v: &serde_json::Value, k: &str| {
        let x = v[k].as_f64().unwrap_or_else(|| panic!("{k} missing in {v}"));
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
        x
    };
    let pr_keys = [
        "precision_features",
        "recall_features",
        "precision_pixels",
        "recall_pixels",
    ];
    for s in ["prior", "gmm", "two_stage"] {
        for k in pr_keys {
            unit(&out["samples"][s], k);
        }
    }
    for k in pr_keys {
        unit(rec, k);
        assert!(unit(&out["real_vs_real"], k) > 0.5, "{}", out["real_vs_real"]);
    }
    // The split's 300 test images: 100 reconstructed, the next 100 the real set.
    assert_eq!(out["pr_real_images"], 100, "{out}");
    assert_eq!(out["real_vs_real"]["n_samples"], 100, "{out}");
    // The real-vs-real FD is the classifier's floor.
    assert_eq!(
        out["real_vs_real"]["fd"],
        after["eval"]["classifier"]["fd_train_vs_test"]
    );
    assert_eq!(after["eval"]["pr_k"], 3);
    // The nearest-neighbour panels: 32 (sample | nearest training image) pairs of one-view
    // 16x16 images enlarged 4 times, 4 pairs a row: 4 * (2 * 64 + 5) + 5 * 8 wide, a 22-pixel
    // header and 8 rows of 64 with 9 gaps of 8 tall.
    for s in ["prior", "gmm", "two_stage"] {
        let p = run.join(format!("samples_{s}_nn.png"));
        let img = image::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!((img.width(), img.height()), (572, 606), "{s}");
    }
    // The mixture sampler records its (default, full) covariance type.
    assert_eq!(after["eval"]["samplers"]["gmm"]["covariance"], "full");
    assert_eq!(after["eval"]["samplers"]["gmm"]["components"], 3);
    for p in [
        "traversal.png",
        "interpolation.png",
        "samples_gmm.png",
        "samples_two_stage.png",
    ] {
        assert!(run.join(p).is_file(), "{p} missing");
    }
    // The report shows the evaluated run with its new numbers and pictures.
    let html = tmp.path().join("report.html");
    crate::report::build_report(std::slice::from_ref(&run), &html, &Default::default()).unwrap();
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains(&format!("{:.1}", f("iwae"))) && page.contains("traversal"));
    assert!(
        page.contains("nearest training image"),
        "no nearest-neighbour panel caption"
    );

    // Without checkpoints, eval says so and leaves metrics.json alone.
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let saved = std::fs::read(run.join("metrics.json")).unwrap();
    let err = evaluate_run(&run, &opts).unwrap_err();
    assert!(format!("{err:#}").contains("has no best checkpoint"), "{err:#}");
    assert_eq!(std::fs::read(run.join("metrics.json")).unwrap(), saved);
}

/// The PCA-coefficient VAE's bounds are reported for the pixels: eval's K-sample ELBO over the
/// whole test split estimates the same number as the trainer's pixel-space `neg_elbo_pixels`, and
/// differs from the model-space `neg_elbo` by PPCA's density of the discarded directions.
#[test]
fn pca_vae_bounds_are_in_pixel_space() {
    let tmp = tempfile::tempdir().unwrap();
    let mut cfg = synth_config(tmp.path(), 2, 400, 5);
    cfg.model.kind = crate::model::ModelKind::PcaDense;
    cfg.model.latent_dim = 4;
    cfg.model.dense.components = 24;
    cfg.model.dense.hidden_layers = 2;
    cfg.model.dense.width = 32;
    cfg.likelihood.kind = crate::model::LikelihoodKind::GaussianShared;
    cfg.train.batch_size = 32;
    cfg.train.max_epochs = 3;
    cfg.train.grid_images = 8;
    let splits = crate::data::load(&cfg.data).unwrap();
    let run = tmp.path().join("run");
    crate::train::train(&cfg.check().unwrap(), &splits, &run, false).unwrap();
    let before: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let opts = EvalOptions {
        iwae_samples: 50,
        likelihood_images: None,
        sample_quality: false,
        pictures: false,
        samplers: vec![],
        show_progress: false,
        ..Default::default()
    };
    let out = serde_json::to_value(evaluate_run(&run, &opts).unwrap()).unwrap();
    let f = |k: &str| out[k].as_f64().unwrap();
    let trainer = |k: &str| before["metrics"]["test"][k].as_f64().unwrap();
    let (pixels, model_space) = (trainer("neg_elbo_pixels"), trainer("neg_elbo"));
    let tail = f("pca_tail_nll");
    assert!(tail.abs() > 10.0, "the discarded directions carry density: {out}");
    assert!(
        (pixels - model_space - tail).abs() < 1e-3 * tail.abs(),
        "{before} {out}"
    );
    // One-sample and K-sample estimates of the same ELBO agree to a few percent of its size.
    let rel = (f("iwae_neg_elbo") - pixels).abs() / pixels.abs();
    assert!(
        rel < 0.05,
        "eval {} vs trainer {pixels}: {out}",
        f("iwae_neg_elbo")
    );
    assert!(f("iwae") <= f("iwae_neg_elbo"));
    // Gaussian bounds are densities: bits/dim on the pixel count (256), dequantised.
    let bpd = crate::util::units::bits_per_dim(f("iwae"), 256);
    assert!((f("iwae_bits_per_dim") - bpd).abs() < 1e-9);
}
