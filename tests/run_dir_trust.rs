//! A run directory belongs to one run and one writer, through the CLI: kinds and finished runs are
//! refused (`--force` replaces), a resume whose config does not fit the checkpoint changes
//! nothing, concurrent writers are refused with the holder's pid, absurd sizes are refused before
//! anything is written, and the messages say one true thing.
mod common;

use common::{tiny_run, EXE, TINY_SYNTH};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(EXE);
    c.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    c
}

fn run(args: &[&str]) -> (Option<i32>, String) {
    let o = cmd(args).output().unwrap();
    (o.status.code(), text(&o))
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn ok(args: &[&str]) -> String {
    let (code, t) = run(args);
    assert_eq!(code, Some(0), "{args:?}: {t}");
    t
}

fn refused(args: &[&str], needles: &[&str]) -> String {
    let (code, t) = run(args);
    assert_eq!(code, Some(1), "{args:?} was not refused: {t}");
    assert!(!t.contains("panicked"), "{t}");
    for n in needles {
        assert!(t.contains(n), "{args:?}: {n:?} not in: {t}");
    }
    t
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    spec: String,
    config: String,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let norb = root.join("norb").to_string_lossy().into_owned();
        ok(&[&["synth", "--out", &norb], &TINY_SYNTH[..]].concat());
        let config = root.join("tiny.toml");
        std::fs::write(&config, tiny_run()).unwrap();
        Fixture {
            _tmp: tmp,
            spec: format!("norb:{norb}"),
            config: config.to_string_lossy().into_owned(),
            root,
        }
    }

    fn p(&self, name: &str) -> String {
        self.root.join(name).to_string_lossy().into_owned()
    }

    fn train<'a>(&'a self, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec![
            "train",
            "--config",
            &self.config,
            "--data",
            &self.spec,
            "--out",
            out,
        ];
        a.extend_from_slice(extra);
        a
    }

    fn pca<'a>(&'a self, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut a = vec!["pca", "--data", &self.spec, "--out", out];
        a.extend_from_slice(extra);
        a
    }
}

fn pngs(dir: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix) && n.ends_with(".png"))
        .collect();
    v.sort();
    v
}

#[test]
fn a_run_directory_holds_one_run_and_force_replaces_it() {
    let f = Fixture::new();
    let (pca, vae) = (f.p("pca"), f.p("vae"));
    ok(&f.pca(&pca, &["--components", "2,4"]));
    assert!(!pngs(&pca, "recon_k4").is_empty());
    // Into a PCA run: no VAE, no second PCA run without --force.
    refused(&f.train(&pca, &[]), &["holds a PCA run", "--force"]);
    refused(&f.pca(&pca, &["--components", "2"]), &["finished", "--force"]);
    assert!(!Path::new(&pca).join("model.json").exists());
    // --force clears it first: no recon_k4 pictures of the earlier run are left.
    ok(&f.pca(&pca, &["--components", "2", "--force"]));
    assert!(pngs(&pca, "recon_k4").is_empty(), "{:?}", pngs(&pca, "recon_k"));
    assert!(!pngs(&pca, "recon_k2").is_empty());

    ok(&f.train(&vae, &[]));
    refused(&f.pca(&vae, &["--components", "2"]), &["holds a VAE run"]);
    refused(&f.train(&vae, &[]), &["--resume", "--force"]);
    // A resumed config that does not fit the checkpoint fails before anything is rewritten.
    let before: Vec<Vec<u8>> = ["config.toml", "model.json", "metrics.json"]
        .iter()
        .map(|n| std::fs::read(Path::new(&vae).join(n)).unwrap())
        .collect();
    refused(
        &f.train(
            &vae,
            &[
                "--resume",
                "--set",
                "model.latent_dim=8",
                "--set",
                "train.max_epochs=2",
            ],
        ),
        &["resuming", "left as it was"],
    );
    let after: Vec<Vec<u8>> = ["config.toml", "model.json", "metrics.json"]
        .iter()
        .map(|n| std::fs::read(Path::new(&vae).join(n)).unwrap())
        .collect();
    assert!(before == after, "a failed resume changed the run's files");
    let sample = f.p("s.png");
    ok(&["sample", &vae, "--n", "4", "--out", &sample]);
    // --force replaces the finished run with a new one.
    ok(&f.train(&vae, &["--force", "--set", "model.latent_dim=3"]));
    let cfg = std::fs::read_to_string(Path::new(&vae).join("config.toml")).unwrap();
    assert!(cfg.contains("latent_dim = 3"), "{cfg}");
    let (code, t) = run(&f.train(&vae, &["--force", "--resume"]));
    assert!(
        code == Some(2) && t.contains("--resume") && t.contains("--force"),
        "{t}"
    );
}

fn wait_for_lock(dir: &str, child: &mut Child) -> u32 {
    let lock = Path::new(dir).join(".norbvae.lock");
    let t0 = std::time::Instant::now();
    loop {
        if let Ok(s) = std::fs::read_to_string(&lock) {
            if let Some(pid) = s.trim().strip_prefix("pid ").and_then(|p| p.parse().ok()) {
                return pid;
            }
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the first command ended ({status}) before its lock was seen");
        }
        assert!(t0.elapsed().as_secs() < 120, "no lock in {dir}");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn a_second_writer_is_refused_with_the_holders_pid() {
    let f = Fixture::new();
    let out = f.p("vae");
    let mut first = cmd(&f.train(&out, &["--set", "train.max_epochs=10000"]))
        .spawn()
        .unwrap();
    let pid = wait_for_lock(&out, &mut first);
    assert_eq!(pid, first.id());
    refused(&f.train(&out, &[]), &["in use", &format!("pid {pid}")]);
    refused(&f.train(&out, &["--resume"]), &["in use", &format!("pid {pid}")]);
    // SAFETY: kill(2) on our own child's pid, not yet reaped.
    assert_eq!(unsafe { libc::kill(first.id() as i32, libc::SIGTERM) }, 0);
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(143), "{}", text(&o));

    // Two evals on one run: the second is refused clearly, or (if the first was already done)
    // both results are kept.
    let run_dir = f.p("done");
    ok(&f.train(&run_dir, &[]));
    let eval = |split: &'static str| {
        let mut a = vec!["eval", run_dir.as_str(), "--split", split, "--no-sample-quality"];
        a.extend_from_slice(&[
            "--iwae-samples",
            "4",
            "--likelihood-images",
            "8",
            "--samplers",
            "prior",
        ]);
        a.into_iter().map(String::from).collect::<Vec<String>>()
    };
    let mut e1 = Command::new(EXE)
        .args(eval("test"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = Path::new(&run_dir).join(".norbvae.lock");
    while std::fs::read_to_string(&lock)
        .unwrap_or_default()
        .trim()
        .is_empty()
        && e1.try_wait().unwrap().is_none()
    {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    let second = cmd(&eval("val").iter().map(String::as_str).collect::<Vec<_>>())
        .output()
        .unwrap();
    let o1 = e1.wait_with_output().unwrap();
    assert_eq!(o1.status.code(), Some(0), "{}", text(&o1));
    assert!(text(&o1).contains("results added"));
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(Path::new(&run_dir).join("metrics.json")).unwrap())
            .unwrap();
    assert!(m["metrics"]["test"]["iwae"].is_number(), "{m}");
    let t2 = text(&second);
    if second.status.code() == Some(0) {
        assert!(
            m["metrics"]["val"]["eval"].is_object(),
            "the second eval's results were lost: {m}"
        );
    } else {
        assert_eq!(second.status.code(), Some(1), "{t2}");
        assert!(t2.contains("in use") && !t2.contains("results added"), "{t2}");
        eprintln!("the second eval was refused: {t2}");
    }
}

#[test]
fn absurd_sizes_and_bad_weights_are_refused_with_nothing_written() {
    let f = Fixture::new();
    for set in [
        "model.latent_dim=1000000000000",
        "model.conv.intermediate=4000000000",
        "model.conv.first_filters=100000000",
        "train.grid_images=100000000",
    ] {
        let out = f.p("big");
        let extra = ["--set", set, "--set", "model.conv.max_filters=100000000"];
        let key = set.split('=').next().unwrap();
        refused(&f.train(&out, &extra), &[key, "available"]);
        assert!(
            !Path::new(&out).join("config.toml").exists(),
            "{set}: wrote a config"
        );
    }
    // Divergence in epoch 1: one true message.
    let wild = f.p("wild");
    let t = refused(
        &f.train(&wild, &["--set", "train.lr=1e30"]),
        &["diverged", "no checkpoint was written"],
    );
    assert!(!t.contains("keeping the last good checkpoint"), "{t}");

    let vae = f.p("vae");
    ok(&f.train(&vae, &[]));
    refused(
        &["sample", &vae, "--n", "100000000", "--out", &f.p("huge.png")],
        &["sample --n", "available"],
    );
    assert!(!Path::new(&f.p("huge.png")).exists());
    // A temperature that is not a positive number: refused by name, no picture, no eval.
    for t in ["0", "-1", "nan"] {
        let flag = format!("--temperature={t}");
        refused(
            &["sample", &vae, &flag, "--n", "4", "--out", &f.p("cold.png")],
            &["--temperature", "positive"],
        );
        refused(&["eval", &vae, &flag], &["--temperature", "positive"]);
    }
    assert!(!Path::new(&f.p("cold.png")).exists());
    // Non-finite weights: refused, no picture.
    poison_best_checkpoint(Path::new(&vae));
    let png = f.p("nan.png");
    refused(&["sample", &vae, "--n", "4", "--out", &png], &["NaN", "refusing"]);
    assert!(!Path::new(&png).exists());
}

/// Rewrite the best checkpoint (a complete, valid unit) with every weight NaN, as a diverged run
/// that saved its weights would have it.
fn poison_best_checkpoint(run: &Path) {
    use norbvae::util::atomic_dir::{load_unit, UnitWriter};
    let dir = run.join("checkpoints/best");
    let unit = load_unit(&dir).unwrap();
    let dev = candle_core::Device::Cpu;
    let tensors =
        candle_core::safetensors::load_buffer(&unit.read("model.safetensors").unwrap(), &dev).unwrap();
    let poisoned: std::collections::HashMap<String, candle_core::Tensor> = tensors
        .into_iter()
        .map(|(n, t)| {
            let nan = (t.ones_like().unwrap() * f64::NAN).unwrap();
            (n, nan)
        })
        .collect();
    let bytes =
        norbvae::model::params::safetensors_bytes(&poisoned, norbvae::format::tensors::WEIGHTS_FORMAT)
            .unwrap();
    let state = unit.read("state.json").unwrap();
    let mut w = UnitWriter::begin(&dir, unit.epoch()).unwrap();
    w.write("model.safetensors", &bytes).unwrap();
    w.write("state.json", &state).unwrap();
    w.commit().unwrap();
}
