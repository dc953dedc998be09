//! Issue 18's training aids with the real trainer on tiny blob images: gradient clipping and
//! skipping (counted per epoch, a skipped update changes nothing), the weight average (equal to
//! the hand-computed average, used for best/, resumed exactly) and the hierarchical VAE's KL per
//! group per epoch. Seconds each.
mod common;

use candle_core::{Device, Tensor};
use common::{blob_splits, tiny_conv_config};
use norbvae::eval::latent;
use norbvae::format::GradGuardState;
use norbvae::model::params::is_buffer;
use norbvae::model::{InputShape, Mode, ParamStore, Vae};
use norbvae::train::grad_guard::{GradDecision, GradGuard};
use norbvae::train::optim::{Adam, AdamHyper};
use norbvae::train::{self, TrainConfig, TrainState};
use norbvae::util::SeededRng;
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// The tiny conv VAE on 16x16 blobs: 2 downsizings, 4 to 16 filters, batches of 16 (3 per epoch).
fn config(sets: &[&str]) -> TrainConfig {
    let base = tiny_conv_config(2, 16, "batch_size = 16\ngrid_images = 4\n");
    TrainConfig::from_toml_str(&base, &sets.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
}

fn run(dir: &Path, sets: &[&str], resume: bool) {
    let cfg = config(sets);
    train::train(&cfg.check().unwrap(), &blob_splits(16), dir, resume).unwrap();
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

fn history(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn last_state(dir: &Path) -> TrainState {
    serde_json::from_slice(&std::fs::read(dir.join("checkpoints/last/state.json")).unwrap()).unwrap()
}

#[test]
fn guard_path_without_clipping_matches_the_in_pass_path_and_skips_are_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let base = ["train.max_epochs=2"];
    run(&d("plain"), &base, false);
    // A clipping norm no gradient reaches: backward, norm, then Adam's step gives the very
    // weights of Adam inside the backward pass.
    run(&d("huge_clip"), &[base[0], "train.grad_clip=1e30"], false);
    let w = |n: &str| std::fs::read(d(n).join("checkpoints/last/model.safetensors")).unwrap();
    assert!(w("plain") == w("huge_clip"), "the guard path changed the update");
    let h = history(&d("huge_clip"));
    assert!(
        h.iter()
            .all(|r| r["skipped_updates"] == 0 && r["clipped_updates"] == 0),
        "{h:?}"
    );
    assert!(h.iter().all(|r| r["grad_norm"].as_f64().unwrap() > 0.0), "{h:?}");
    // The run without a guard writes none of the guard's fields.
    assert!(history(&d("plain"))
        .iter()
        .all(|r| r.get("skipped_updates").is_none()));

    // A tiny clipping norm clips every applied update. The running norm follows the raw norms
    // of the applied updates, so a generous threshold skips nothing even though every raw norm
    // is far above the clip (averaging clipped norms made the running norm 1e-3 and skipped
    // every update from the 21st on): 8 epochs of 3 batches.
    let clip = ["train.max_epochs=8", "train.grad_clip=1e-3"];
    run(
        &d("clip_far_below"),
        &[clip[0], clip[1], "train.grad_skip_threshold=10"],
        false,
    );
    let h = history(&d("clip_far_below"));
    assert!(
        h.iter()
            .all(|r| r["skipped_updates"] == 0 && r["clipped_updates"] == 3),
        "{h:?}"
    );
    let state = last_state(&d("clip_far_below"));
    assert_eq!(state.steps, 24);
    let mean_raw: f64 = h.iter().map(|r| r["grad_norm"].as_f64().unwrap()).sum::<f64>() / 8.0;
    let running = state.grad_guard.unwrap().running_norm.unwrap();
    assert!(
        running > 0.2 * mean_raw && running < 5.0 * mean_raw && running > 1e-2,
        "running norm {running}, mean raw norm {mean_raw}"
    );

    // A threshold just above 1 skips, from the 21st update on, those raw norms above the running
    // average of the applied ones: some of the 28 later updates, not all (16 epochs of 3).
    run(
        &d("guarded"),
        &["train.max_epochs=16", clip[1], "train.grad_skip_threshold=1.0001"],
        false,
    );
    let h = history(&d("guarded"));
    let skipped: Vec<u64> = h.iter().map(|r| r["skipped_updates"].as_u64().unwrap()).collect();
    let clipped: Vec<u64> = h.iter().map(|r| r["clipped_updates"].as_u64().unwrap()).collect();
    let total: u64 = skipped.iter().sum();
    assert!(total > 0 && total < 28, "skipped {skipped:?}");
    assert!(
        skipped[..6].iter().all(|&s| s == 0),
        "skipped before the warm-up ended: {skipped:?}"
    );
    for (s, c) in skipped.iter().zip(&clipped) {
        assert_eq!(
            s + c,
            3,
            "every applied update is clipped: {skipped:?} {clipped:?}"
        );
    }
    let state = last_state(&d("guarded"));
    // Skipped updates take no optimizer step; the guard's memory is saved for a resume.
    assert_eq!(state.steps, 48 - total);
    let guard = state.grad_guard.unwrap();
    assert_eq!((guard.skipped, guard.accepted), (total, 48 - total));
    assert!(guard.running_norm.unwrap() > 1e-2, "{guard:?}");
    let csv = std::fs::read_to_string(d("guarded").join("metrics.csv")).unwrap();
    assert!(csv.lines().next().unwrap().contains("skipped_updates"), "{csv}");
}

#[test]
fn a_skipped_update_leaves_the_weights_and_the_optimizer_unchanged() {
    // The real model and loss, Adam with a guard whose running norm makes any gradient "far above".
    let cfg = config(&[]);
    let store = ParamStore::new(1, &Device::Cpu);
    let shape = InputShape::Image {
        channels: 1,
        height: 16,
        width: 16,
    };
    let vae = Vae::new(&cfg.model, &cfg.likelihood, shape, store.var_builder()).unwrap();
    let vars: Vec<_> = store.trainable().into_iter().map(|(_, v)| v).collect();
    let hyper = AdamHyper {
        lr: 1e-2,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let mut opt = Adam::new(vars.clone(), hyper).unwrap();
    let blobs = common::blobs(16, 16, 4, false);
    let x = Tensor::from_vec(blobs.images.clone(), (16, 1, 16, 16), &Device::Cpu).unwrap();
    let mut rng = SeededRng::new(2);
    let mut loss = || {
        let eps = Tensor::from_vec(rng.normal_vec(16 * 4), (16, 4), &Device::Cpu).unwrap();
        vae.loss(&x, &eps, &cfg.kl, 1.0, Mode::Train).unwrap().loss
    };
    // One accepted update, so the moments are not zero.
    let mut open = GradGuard::new(None, Some(2.0));
    let first = opt.backward_guarded_step(&loss(), &mut open).unwrap();
    assert_eq!(first.decision, GradDecision::Apply { scale: 1.0 });
    let before: Vec<Vec<f32>> = vars.iter().map(|v| values(v.as_tensor())).collect();
    let moments = opt.state_tensors();
    let saved = GradGuardState {
        running_norm: Some(1e-12),
        accepted: 100,
        skipped: 0,
    };
    let mut strict = GradGuard::resumed(None, Some(2.0), &saved);
    let step = opt.backward_guarded_step(&loss(), &mut strict).unwrap();
    assert_eq!(step.decision, GradDecision::Skip);
    assert!(step.norm > 0.0);
    assert_eq!(strict.skipped, 1);
    assert_eq!(opt.steps(), 1);
    let after: Vec<Vec<f32>> = vars.iter().map(|v| values(v.as_tensor())).collect();
    assert!(before == after, "a skipped update changed the weights");
    for (name, t) in opt.state_tensors() {
        assert!(values(&t) == values(&moments[&name]), "moment {name} changed");
    }
    // The same batch through a guard that accepts it does change them.
    opt.backward_guarded_step(&loss(), &mut open).unwrap();
    let moved: Vec<Vec<f32>> = vars.iter().map(|v| values(v.as_tensor())).collect();
    assert!(moved != after);
}

#[test]
fn the_weight_average_equals_the_hand_computed_one_and_is_what_best_holds() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    // The raw weights after 1, 2 and 3 updates: runs of one epoch of k batches (the same first
    // batches and noise), and the initial weights from a store with the run's seed.
    for k in 1..=3 {
        run(
            &d(&format!("raw{k}")),
            &["train.max_epochs=1", &format!("train.max_steps_per_epoch={k}")],
            false,
        );
    }
    let decay = 0.6;
    run(
        &d("ema"),
        &[
            "train.max_epochs=1",
            "train.max_steps_per_epoch=3",
            &format!("train.ema_decay={decay}"),
        ],
        false,
    );
    let cfg = config(&[]);
    let store = ParamStore::new(cfg.seed, &Device::Cpu);
    let shape = InputShape::Image {
        channels: 1,
        height: 16,
        width: 16,
    };
    Vae::new(&cfg.model, &cfg.likelihood, shape, store.var_builder()).unwrap();
    let w0: HashMap<String, Tensor> = store
        .all()
        .into_iter()
        .map(|(n, v)| (n, v.as_tensor().clone()))
        .collect();
    let raw: Vec<HashMap<String, Tensor>> = (1..=3)
        .map(|k| tensors(&d(&format!("raw{k}")).join("checkpoints/last/model.safetensors")))
        .collect();
    let last = tensors(&d("ema").join("checkpoints/last/model.safetensors"));
    let ema = tensors(&d("ema").join("checkpoints/last/ema.safetensors"));
    let best = tensors(&d("ema").join("checkpoints/best/model.safetensors"));
    let mut compared = 0;
    for (name, t0) in &w0 {
        // The average does not touch training: last/ holds the raw weights of 3 updates.
        assert!(
            values(&last[name]) == values(&raw[2][name]),
            "{name}: raw weights differ"
        );
        if is_buffer(name) {
            // Buffers are the model's own, in the average and in best/.
            assert!(values(&best[name]) == values(&last[name]), "{name}");
            continue;
        }
        let mut want: Vec<f64> = values(t0).iter().map(|&v| v as f64).collect();
        for r in &raw {
            for (w, v) in want.iter_mut().zip(values(&r[name])) {
                *w = decay * *w + (1.0 - decay) * v as f64;
            }
        }
        let got = values(&ema[name]);
        for (g, w) in got.iter().zip(&want) {
            assert!(
                (*g as f64 - w).abs() <= 1e-5 * (1.0 + w.abs()),
                "{name}: {g} vs {w}"
            );
        }
        assert!(
            values(&best[name]) == got,
            "{name}: best/ does not hold the average"
        );
        compared += 1;
    }
    assert!(compared > 4, "only {compared} weight tensors compared");
    // Validation scores the average: another validation loss than the raw weights' run.
    let v = |n: &str| history(&d(n))[0]["val_loss"].as_f64().unwrap();
    assert!(v("ema") != v("raw3"), "validation did not use the average");
}

#[test]
fn resume_with_the_average_and_the_guard_matches_an_uninterrupted_run() {
    let tmp = tempfile::tempdir().unwrap();
    let d = |n: &str| tmp.path().join(n);
    let aids = [
        "train.ema_decay=0.9",
        "train.grad_clip=5.0",
        "train.grad_skip_threshold=1.5",
        "train.max_steps_per_epoch=3",
    ];
    let with = |epochs: &'static str| {
        let mut s = aids.to_vec();
        s.push(epochs);
        s
    };
    run(&d("a"), &with("train.max_epochs=10"), false);
    run(&d("b"), &with("train.max_epochs=8"), false);
    run(&d("b"), &with("train.max_epochs=10"), true);
    for f in [
        "checkpoints/last/model.safetensors",
        "checkpoints/last/ema.safetensors",
        "checkpoints/last/optim.safetensors",
        "checkpoints/best/model.safetensors",
        "metrics.json",
    ] {
        let read = |run: &str| std::fs::read(d(run).join(f)).unwrap();
        if f == "metrics.json" {
            let strip = |b: Vec<u8>| {
                let mut v: Value = serde_json::from_slice(&b).unwrap();
                v.as_object_mut().unwrap().remove("train_images_per_second");
                v
            };
            assert_eq!(strip(read("a")), strip(read("b")));
        } else {
            assert!(read("a") == read("b"), "{f} differs after the resume");
        }
    }
    let strip = |h: Vec<Value>| -> Vec<Value> {
        h.into_iter()
            .map(|mut r| {
                let o = r.as_object_mut().unwrap();
                o.remove("seconds");
                o.remove("train_images_per_second");
                r
            })
            .collect()
    };
    let ha = strip(history(&d("a")));
    assert_eq!(ha, strip(history(&d("b"))));
    // The resumed epochs crossed the 20 updates after which skipping starts.
    assert_eq!(last_state(&d("a")).grad_guard, last_state(&d("b")).grad_guard);
    // Resuming without the average (or with one the run never had) is refused, the run untouched.
    let cfg = config(&["train.max_epochs=11", "train.max_steps_per_epoch=3"]);
    let err = train::train(&cfg.check().unwrap(), &blob_splits(16), &d("b"), true).unwrap_err();
    assert!(format!("{err:#}").contains("ema_decay"), "{err:#}");
    assert_eq!(last_state(&d("b")).epochs_done, 10);
}

#[test]
fn hierarchical_kl_per_group_is_recorded_every_epoch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("hier");
    let mut cfg = config(&[
        "model.kind=\"hierarchical\"",
        "model.hierarchical.spatial_groups=2",
        "model.hierarchical.latent_channels=2",
        "model.conv.size_rule=\"pad\"",
        "train.max_epochs=2",
    ]);
    cfg.train.tensorboard.enabled = false;
    let m = train::train(&cfg.check().unwrap(), &blob_splits(16), &dir, false).unwrap();
    let h = history(&dir);
    assert_eq!(h.len(), 2);
    for r in &h {
        for (groups, total) in [("train_kl_groups", "train_kl"), ("val_kl_groups", "val_kl")] {
            let g: Vec<f64> = serde_json::from_value(r[groups].clone()).unwrap();
            assert_eq!(g.len(), 3, "{r}");
            assert!(g.iter().all(|k| k.is_finite() && *k >= 0.0), "{r}");
            let sum: f64 = g.iter().sum();
            let want = r[total].as_f64().unwrap();
            assert!(
                (sum - want).abs() <= 1e-4 * want.abs().max(1.0),
                "{groups}: {sum} vs {want}"
            );
        }
    }
    let csv = std::fs::read_to_string(dir.join("metrics.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    for col in ["train_kl_group_2", "val_kl_group_0", "val_on_floor"] {
        assert!(header.contains(&col), "{header:?}");
    }
    assert!(
        csv.lines().skip(1).all(|l| l.split(',').count() == header.len()),
        "{csv}"
    );
    // metrics.json: the code size counts every group.
    let groups = m.split("test").unwrap().kl_groups.clone().unwrap();
    assert_eq!(groups.len(), 3);
    let l = m.latent_dim.unwrap();
    assert!(l > 4, "latent_dim {l}");
    // Evaluation reconstructs through every group, as the trainer does: the same test MSE;
    // decoding the top group's mean alone (lower groups at their prior means) is another one.
    let run = norbvae::train::load_run(&dir, norbvae::train::CheckpointKind::Best).unwrap();
    assert_eq!(run.vae().latent_dim, l);
    let test = blob_splits(16).test;
    let recon = latent::reconstruct_to_pixels(&run, &test).unwrap();
    let mse = |r: &[f32]| {
        r.iter()
            .zip(&test.images)
            .map(|(a, b)| ((a - b) as f64).powi(2))
            .sum::<f64>()
            / test.images.len() as f64
    };
    let trained = m.split("test").unwrap().mse;
    assert!(
        (mse(&recon) - trained).abs() <= 1e-6 * trained,
        "{} vs {trained}",
        mse(&recon)
    );
    let post = latent::posterior(&run, &test).unwrap();
    let top_only = latent::decode_to_pixels(&run, &post.mu, test.n).unwrap();
    assert!(mse(&top_only) != mse(&recon));
    let units = latent::active_units_per_group(&run, &test).unwrap();
    assert_eq!(units.len(), 3);
    assert!(
        units.iter().zip(run.vae().group_dims()).all(|(u, d)| *u <= d),
        "{units:?}"
    );
}
