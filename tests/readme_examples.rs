//! Every `norbvae ...` command line in README.md's code blocks runs as written, in README order,
//! with the built binary in one temporary directory that holds what the README's paths point at:
//! the repository's `configs/`, and small synthetic sets where it says `DIR` and
//! `data/synth-norb`. New examples are picked up automatically; an example that cannot run here is
//! skipped only by an entry of [`SKIPS`], which says why (and an entry that no longer matches an
//! example fails the test, so the list stays true).
//!
//! The tiny data makes every example that runs take seconds: the training examples ask for a few
//! epochs (`--set train.max_epochs=...`), as a first run should.
mod common;

use common::{read_json, text, EXE};
use std::path::Path;
use std::process::Command;

/// (text the command line contains, why it does not run here). The first entry that matches
/// decides; every entry must match at least one example.
const SKIPS: &[(&str, &str)] = &[
    (
        "data download smallnorb",
        "downloads from cs.nyu.edu, which test machines cannot reach (tests/data_download.rs runs \
         the command against a local HTTP server)",
    ),
    (
        "synth --out data/synth-norb ",
        "renders the full set, 2 x 24,300 pairs at 96x96 (~90 s of CPU in a release build); the \
         test writes a small set there for the commands that read it",
    ),
    (
        "--executor slurm",
        "needs a Slurm cluster (tests/sweep_slurm.rs starts one where Slurm is installed)",
    ),
    (
        "sweep --config configs/sigma-vae-convolutional-vae.toml",
        "18 runs of up to 200 epochs; tests/sweep_local.rs runs a sweep of the same shape (2 x 2 \
         grid x 2 seeds, --jobs 2) on tiny configs",
    ),
    (
        "sweep status sweeps/capacity",
        "reads the sweep of the skipped example above",
    ),
    (
        "report sweeps/capacity",
        "reads the sweep of the skipped example above",
    ),
    (
        "--components 10,32,100 --out sweeps/pca",
        "100 components need at least 100 training images; the test's DIR holds a handful",
    ),
    (
        "reproduce --data norb:DIR --executor local",
        "21 runs (7 presets x 3 seeds) of up to 300 epochs; tests/sweep_local.rs runs reproduce \
         with the local executor on two presets",
    ),
    (
        "--components 100,500,1000,2000",
        "2,000 components need at least 2,000 training images; the test's DIR holds a handful",
    ),
    (
        "--model runs/pca/pca.safetensors",
        "reuses the fit of the skipped example above (tests/pca_cli.rs reuses a saved model)",
    ),
    (
        "reproduce --ladder",
        "the improvement ladder: six steps of 20 to 60 epochs on the full set, then their \
         evaluations; tests/ladder.rs runs `reproduce --ladder` end to end on tiny data",
    ),
    ("report ladder", "reads the ladder of the skipped example above"),
    (
        "norbvae bench",
        "the speed benchmark: minutes of training in a release build",
    ),
    (
        "reproduce --data fashion-mnist",
        "the whole reproduction: 7 presets on 60,000 images, hours",
    ),
    (
        "norbvae eval ",
        "trains the sample-quality classifier, ~25 s of CPU in a debug build on top of the \
         samplers; tests/ evaluate runs (e.g. sweep_local, torch_loader)",
    ),
    (
        "norbvae sample ",
        "needs the evaluated run of the skipped eval example above",
    ),
    (
        "report runs/pca runs/basic",
        "reads runs/pca of the skipped PCA example above",
    ),
    (
        "norbvae demo",
        "the demo itself, a few minutes in a release build; tests/demo.rs runs it at 16x16",
    ),
];

/// Skipped only where Fashion-MNIST (Debian `dataset-fashion-mnist`) is not installed.
const NEEDS_FASHION_MNIST: &str = "fashion-mnist";

/// The command lines of README.md's code blocks (not the Python ones): continuation lines joined,
/// comments dropped, split into words as a shell would (quotes, no expansions).
fn readme_commands(readme: &str) -> Vec<(usize, Vec<String>)> {
    let mut out = Vec::new();
    let mut in_block = false;
    let mut runnable = false;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_block = !in_block;
            runnable = in_block && !lang.trim().starts_with("python");
            continue;
        }
        if !in_block || !runnable {
            continue;
        }
        let (start, mut text) = pending.take().unwrap_or((i + 1, String::new()));
        text.push_str(line.trim());
        if let Some(stripped) = text.strip_suffix('\\') {
            pending = Some((start, format!("{} ", stripped.trim_end())));
            continue;
        }
        let words = shell_words(&text);
        if !words.is_empty() {
            out.push((start, words));
        }
    }
    out
}

/// Words of one shell line: whitespace-separated, single and double quotes group and are removed,
/// a `#` starting a word begins a comment.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    for c in line.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => cur.push(c),
            None if c == '\'' || c == '"' => {
                quote = Some(c);
                in_word = true;
            }
            None if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            None if c == '#' && !in_word => break,
            None => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// The program is norbvae (on the PATH, or `target/release/norbvae`).
fn is_norbvae(program: &str) -> bool {
    program == "norbvae" || program.ends_with("/norbvae")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn synth(dir: &Path, args: &[&str]) {
    let o = Command::new(EXE)
        .args(["synth", "--out"])
        .arg(dir)
        .args(args)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

#[test]
fn readme_commands_split_as_a_shell_would() {
    let readme = "```sh\nnorbvae a --x 'b c' \\\n    --set k=\"v\"   # comment\ncargo test\n```\n\
                  ```python\nnorbvae never\n```\n";
    let cmds = readme_commands(readme);
    assert_eq!(
        cmds,
        vec![
            (
                2,
                vec!["norbvae", "a", "--x", "b c", "--set", "k=v"]
                    .into_iter()
                    .map(String::from)
                    .collect()
            ),
            (4, vec!["cargo".to_string(), "test".to_string()]),
        ]
    );
}

#[test]
fn every_readme_example_runs_as_written() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    copy_dir(&repo.join("configs"), &dir.join("configs"));
    // DIR: 64x64 (the presets' size), 10 training and 10 test pairs.
    let tiny = [
        "--size",
        "64",
        "--instances",
        "0,4",
        "--elevations",
        "0",
        "--azimuths",
        "0,18",
        "--lightings",
        "0",
    ];
    synth(&dir.join("DIR"), &tiny);
    synth(&dir.join("data/synth-norb"), &tiny);
    let fashion = Path::new(norbvae::data::spec::FASHION_MNIST_DIR).is_dir();

    let commands: Vec<(usize, Vec<String>)> = readme_commands(&readme)
        .into_iter()
        .filter(|(_, w)| is_norbvae(&w[0]))
        .collect();
    assert!(commands.len() >= 20, "found only {} examples", commands.len());
    let mut used = vec![false; SKIPS.len()];
    let (mut ran, mut skipped) = (Vec::new(), Vec::new());
    let t0 = std::time::Instant::now();
    for (line, words) in &commands {
        let shown = words.join(" ");
        let spaced = format!("{shown} ");
        if let Some(k) = SKIPS.iter().position(|(m, _)| spaced.contains(m)) {
            used[k] = true;
            skipped.push(format!("README:{line}: {shown}\n    skipped: {}", SKIPS[k].1));
            continue;
        }
        if !fashion && words.iter().any(|w| w.contains(NEEDS_FASHION_MNIST)) {
            skipped.push(format!(
                "README:{line}: {shown}\n    skipped: needs Debian dataset-fashion-mnist (not installed here)"
            ));
            continue;
        }
        let started = std::time::Instant::now();
        let o = Command::new(EXE)
            .args(&words[1..])
            .current_dir(dir)
            .env("NORBVAE_CACHE_DIR", dir.join("cache"))
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "README line {line} failed as written: {shown}\n{}",
            text(&o)
        );
        ran.push(format!(
            "README:{line}: {shown}  ({:.1} s)",
            started.elapsed().as_secs_f64()
        ));
    }
    eprintln!(
        "ran {} README examples in {:.1} s:\n{}\nskipped {}:\n{}",
        ran.len(),
        t0.elapsed().as_secs_f64(),
        ran.join("\n"),
        skipped.len(),
        skipped.join("\n")
    );
    let stale: Vec<&str> = SKIPS
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(s, _)| s.0)
        .collect();
    assert!(stale.is_empty(), "skip entries that match no example: {stale:?}");
    // The training example ran 5 epochs and the resume continued the same run to 10.
    let m = read_json(&dir.join("runs/basic/metrics.json"));
    assert_eq!(m["stopped_because"], "max_epochs", "{m}");
    assert_eq!(m["epochs_run"], 10, "{m}");
    assert!(dir.join("runs/tiny/checkpoints/best/model.safetensors").is_file());
    assert!(dir.join("data/tiny").is_dir() && dir.join("tiny.png").is_file());
}
