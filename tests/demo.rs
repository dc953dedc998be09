//! `norbvae demo` at a reduced size (a 16x16 synthetic NORB of 900 pairs per half, one preset, a
//! short showcase): the showcase learns (its test MSE clearly below the mean training image's),
//! the summary's numbers agree with the run directories, the report shows the showcase, every
//! finished run dropped its resume state, and the output stays small.
use norbvae::data::synth::small_params;
use norbvae::pipeline::{demo, DemoOptions};
use std::path::Path;

fn du(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let m = e.metadata().unwrap();
        total += if m.is_dir() { du(&e.path()) } else { m.len() };
    }
    total
}

#[test]
fn the_demo_shows_a_vae_that_learned_and_keeps_only_what_a_reader_needs() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("demo");
    let mut opts = DemoOptions::new(out.clone());
    opts.synth = small_params(16, 0);
    opts.presets = vec!["pca-vae".into()];
    opts.epochs = 1;
    // 16 epochs of 50 updates at a constant rate (the demo's own: 8 epochs of 170 updates, a
    // 100-update warm-up and a cosine decay).
    opts.showcase_epochs = 16;
    opts.showcase_sets = vec![
        "train.batch_size=16".into(),
        "train.lr_warmup_steps=0".into(),
        "train.lr_schedule=\"constant\"".into(),
    ];
    opts.sample_quality = false;
    let t0 = std::time::Instant::now();
    let summary = demo(&opts).unwrap();
    eprintln!(
        "demo at 16x16, 1 preset: {:.1} s\n{}",
        t0.elapsed().as_secs_f64(),
        summary.showcase.text()
    );
    let s = &summary.showcase;
    assert_eq!(s.latent_dim, 32);
    assert_eq!(s.epochs, 16);
    assert_eq!((s.train_images, s.test_images), (810, 900));
    // It learned more than the average image...
    assert!(
        s.mse < 0.7 * s.mean_image_mse,
        "showcase MSE {} not clearly below the mean image's {}",
        s.mse,
        s.mean_image_mse
    );
    // ...and the numbers are the run directories' own.
    let m = norbvae::format::RunMetrics::read(&out.join("runs/showcase/metrics.json")).unwrap();
    assert_eq!(m.vae().unwrap().split("test").unwrap().mse, s.mse);
    let pca = norbvae::format::RunMetrics::read(&out.join("runs/pca/metrics.json")).unwrap();
    assert_eq!(
        pca.pca().unwrap().at(32).unwrap().test.as_ref().unwrap().mse,
        s.pca_mse
    );
    assert!(s.pca_mse < s.mean_image_mse);

    let html = std::fs::read_to_string(&summary.report).unwrap();
    assert!(html.contains("showcase"), "the report shows the showcase");
    assert!(html.contains("pca-vae"));

    // Finished runs keep their best checkpoint and no resume state.
    for run in ["showcase", "pca-vae"] {
        let dir = out.join("runs").join(run);
        assert!(dir.join("checkpoints/best/model.safetensors").is_file(), "{run}");
        assert!(
            !dir.join("checkpoints/last").exists(),
            "{run} kept checkpoints/last"
        );
    }
    // The presets ran on the demo's subset, the showcase on every training image.
    let cfg = |run: &str| {
        norbvae::train::TrainConfig::load(&out.join("runs").join(run).join("config.toml"), &[]).unwrap()
    };
    assert_eq!(
        cfg("pca-vae").data.limit,
        Some(norbvae::pipeline::demo::PRESET_IMAGES)
    );
    assert_eq!(cfg("showcase").data.limit, None);

    // Data, two runs, PCA and the report: a few MB at this size (the full demo: under 150 MB).
    let bytes = du(&out);
    eprintln!("demo output: {:.1} MB", bytes as f64 / 1e6);
    assert!(bytes < 25_000_000, "the demo wrote {bytes} bytes");

    // Running it again reuses everything.
    let again = demo(&opts).unwrap();
    assert_eq!(again.showcase, summary.showcase);
}
