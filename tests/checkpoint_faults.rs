//! A checkpoint interrupted after each of its writes (the fault-injection hook of
//! `train::checkpoint`, which stops the write dead as a kill would) either resumes to exactly the
//! uninterrupted run's results or is refused; never a mix. One test in its own binary: the hook is
//! process-wide. Also: run directories in the flat layout from before the units still resume.
mod common;

use common::{blob_splits, tiny_conv_config};
use norbvae::train::{self, checkpoint, CheckpointKind, TrainConfig};
use norbvae::util::atomic_dir::Step;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// 3 epochs of the tiny conv VAE with 2 downsizings on 16x16 blobs.
fn tiny() -> String {
    tiny_conv_config(2, 16, "batch_size = 16\ngrid_images = 4\nmax_epochs = 3\n")
}

fn metrics_json(m: &norbvae::format::VaeMetrics) -> String {
    serde_json::to_string(&m.metrics).unwrap()
}

#[test]
fn an_interrupted_checkpoint_resumes_exactly_or_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let splits = blob_splits(16);
    let cfg = TrainConfig::from_toml_str(&tiny(), &[]).unwrap().check().unwrap();
    let reference = train::train(&cfg, &splits, &tmp.path().join("ref"), false).unwrap();
    let want = metrics_json(&reference);
    let ref_params = std::fs::read(tmp.path().join("ref/checkpoints/last/model.safetensors")).unwrap();
    // Adam moments only where resume needs them.
    assert!(!tmp.path().join("ref/checkpoints/best/optim.safetensors").exists());
    assert!(tmp
        .path()
        .join("ref/checkpoints/last/optim.safetensors")
        .is_file());

    let steps = |kind: CheckpointKind| {
        let mut s = vec![
            Step::FileWritten(checkpoint::PARAMS_FILE.into()),
            Step::FileWritten(checkpoint::STATE_FILE.into()),
            Step::ManifestWritten,
            Step::Swapped,
        ];
        if kind == CheckpointKind::Last {
            s.insert(1, Step::FileWritten(checkpoint::OPTIM_FILE.into()));
        }
        s
    };
    let mut table = Vec::new();
    for kind in [CheckpointKind::Best, CheckpointKind::Last] {
        for step in steps(kind) {
            let dir = tmp
                .path()
                .join(format!("{}-{step:?}", kind.name()).replace(['"', '(', ')'], ""));
            let fired = Arc::new(AtomicBool::new(false));
            let (f, target) = (fired.clone(), step.clone());
            checkpoint::set_fault_hook(Some(Box::new(move |k, epoch, s| {
                let hit = k == kind && epoch == 2 && *s == target && !f.load(Ordering::SeqCst);
                if hit {
                    f.store(true, Ordering::SeqCst);
                }
                hit
            })));
            let first = train::train(&cfg, &splits, &dir, false);
            checkpoint::set_fault_hook(None);
            if !fired.load(Ordering::SeqCst) {
                // The best checkpoint was not rewritten in epoch 2: nothing was interrupted.
                assert_eq!(metrics_json(&first.unwrap()), want, "{kind:?} {step:?}");
                table.push(format!("{} {step:?}: not reached", kind.name()));
                continue;
            }
            let e = format!(
                "{:#}",
                first.expect_err("the injected fault did not stop training")
            );
            assert!(e.contains("injected fault"), "{e}");
            assert!(
                !dir.join("metrics.json").exists(),
                "an interrupted run looks finished"
            );
            match train::train(&cfg, &splits, &dir, true) {
                Ok(m) => {
                    assert_eq!(
                        metrics_json(&m),
                        want,
                        "{kind:?} {step:?}: resumed into a different result"
                    );
                    assert_eq!(
                        std::fs::read(dir.join("checkpoints/last/model.safetensors")).unwrap(),
                        ref_params,
                        "{kind:?} {step:?}: final parameters differ"
                    );
                    table.push(format!("{} {step:?}: resumed exactly", kind.name()));
                }
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(
                        e.contains("checkpoint"),
                        "{kind:?} {step:?}: unclear refusal: {e}"
                    );
                    table.push(format!("{} {step:?}: refused: {e}", kind.name()));
                }
            }
        }
    }
    eprintln!("{}", table.join("\n"));

    // The flat layout written before the units (checkpoints/{best,last}.{safetensors,
    // optim.safetensors,json}) still loads and resumes exactly.
    let mut two = TrainConfig::from_toml_str(&tiny(), &[]).unwrap();
    two.train.max_epochs = 2;
    let old = tmp.path().join("old");
    train::train(&two.check().unwrap(), &splits, &old, false).unwrap();
    let ck = old.join("checkpoints");
    for kind in ["best", "last"] {
        let unit = ck.join(kind);
        std::fs::rename(
            unit.join("model.safetensors"),
            ck.join(format!("{kind}.safetensors")),
        )
        .unwrap();
        std::fs::rename(unit.join("state.json"), ck.join(format!("{kind}.json"))).unwrap();
        if kind == "last" {
            std::fs::rename(unit.join("optim.safetensors"), ck.join("last.optim.safetensors")).unwrap();
        }
        std::fs::remove_dir_all(&unit).unwrap();
    }
    let run = train::load_run(&old, CheckpointKind::Best).unwrap();
    assert_eq!(run.latent_dim(), 4);
    drop(run);
    let resumed = train::train(&cfg, &splits, &old, true).unwrap();
    assert_eq!(
        metrics_json(&resumed),
        want,
        "the flat layout resumed into a different result"
    );
}
