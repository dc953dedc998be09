//! The sweep view of the report (`norbvae report SWEEP_DIR`): a sweep's runs read from its
//! manifest and run directories, each final metric against each swept parameter (mean over seeds,
//! error bars), the learning curves of all runs overlaid, a table of the grid points, and the
//! answers to the log's three sweep questions computed from the numbers: more capacity? longer
//! training? random variation?
//!
//! The run directories are the truth (as for `norbvae sweep status`): a run is finished when its
//! `metrics.json` can be read; a queued, running, stopped or failed run is listed as such and
//! left out of the means, never a reason to fail. A difference between two grid points counts
//! only when it is larger than its seed spread, `sqrt(sd_a^2 + sd_b^2)` (the spread of the
//! difference of two single runs); with one seed per point there is no spread to judge by, and
//! the answers say so.
use crate::format::sweep::{RunEntry, RunStatus, SweepManifest};
use crate::format::{EpochLosses, PcaMetrics, RunMetrics, StopReason, VaeMetrics};
use crate::plot::{self, Chart, Mark, Series, Spread, SweepGroup};
use anyhow::{Context, Result};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A final metric of a run, as the sweep view shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    TestNegElbo,
    TestMse,
    TestBitsPerDim,
    EpochsTrained,
}

impl Metric {
    pub const ALL: [Metric; 4] = [
        Metric::TestNegElbo,
        Metric::TestMse,
        Metric::TestBitsPerDim,
        Metric::EpochsTrained,
    ];

    /// Stable identifier (chart file names, `data-metric` in the HTML).
    pub fn id(self) -> &'static str {
        match self {
            Metric::TestNegElbo => "test_neg_elbo",
            Metric::TestMse => "test_mse",
            Metric::TestBitsPerDim => "test_bits_per_dim",
            Metric::EpochsTrained => "epochs_trained",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Metric::TestNegElbo => "test neg-ELBO (nats/image)",
            Metric::TestMse => "test MSE",
            Metric::TestBitsPerDim => "test bits/dim",
            Metric::EpochsTrained => "epochs trained",
        }
    }

    /// Whether a lower value is better (None: neither, e.g. epochs).
    pub fn lower_is_better(self) -> Option<bool> {
        match self {
            Metric::EpochsTrained => None,
            _ => Some(true),
        }
    }

    /// The metric of a finished run (the pixels' neg-ELBO, comparable across model kinds).
    pub fn of(self, m: &VaeMetrics) -> Option<f64> {
        let test = m.split("test");
        let v = match self {
            Metric::TestNegElbo => test.map(|t| t.neg_elbo_pixels_or_model()),
            Metric::TestMse => test.map(|t| t.mse),
            Metric::TestBitsPerDim => test.and_then(|t| t.bits_per_dim),
            Metric::EpochsTrained => Some(m.epochs_run as f64),
        };
        v.filter(|v| v.is_finite())
    }
}

/// One run of the sweep as found on disk.
#[derive(Debug, Clone)]
pub struct SweepRun {
    pub entry: RunEntry,
    pub dir: PathBuf,
    /// From the run directory (`running` when the manifest says so and nothing on disk says
    /// otherwise).
    pub status: RunStatus,
    /// A failed run's error, or why a `metrics.json` could not be read.
    pub error: Option<String>,
    /// A finished run's metrics.
    pub metrics: Option<VaeMetrics>,
    /// metrics.jsonl so far.
    pub epochs: Vec<EpochLosses>,
    pub max_epochs: Option<usize>,
    pub patience: Option<usize>,
}

impl SweepRun {
    fn load(sweep_dir: &Path, entry: &RunEntry) -> Self {
        let dir = sweep_dir.join(&entry.dir);
        let (mut status, mut error) = crate::sweep::disk_status(&dir);
        if entry.status == RunStatus::Running && matches!(status, RunStatus::Queued | RunStatus::Partial) {
            status = RunStatus::Running;
        }
        let mut metrics = None;
        if status == RunStatus::Done {
            match RunMetrics::read(&dir.join("metrics.json")) {
                Ok(RunMetrics::Vae(m)) => metrics = Some(m),
                Ok(RunMetrics::Pca(_)) => {
                    status = RunStatus::Failed;
                    error = Some("metrics.json is a PCA run's, not a VAE's".into());
                }
                Err(e) => {
                    status = RunStatus::Failed;
                    error = Some(format!("unreadable metrics.json: {e}"));
                }
            }
        }
        let epochs = EpochLosses::read_history(&dir);
        let config = std::fs::read_to_string(dir.join("config.toml"))
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok());
        let train_key = |k: &str| {
            config
                .as_ref()
                .and_then(|c| c.get("train")?.get(k)?.as_integer())
                .map(|v| v.max(0) as usize)
        };
        Self {
            entry: entry.clone(),
            dir,
            status,
            error,
            metrics,
            epochs,
            max_epochs: train_key("max_epochs"),
            patience: train_key("patience"),
        }
    }

    pub fn value(&self, metric: Metric) -> Option<f64> {
        metric.of(self.metrics.as_ref()?)
    }

    /// (epoch, validation loss) so far.
    pub fn val_losses(&self) -> Vec<(f64, f64)> {
        series(&self.epochs, |e| e.val_loss)
    }

    pub fn train_losses(&self) -> Vec<(f64, f64)> {
        series(&self.epochs, |e| e.train_loss)
    }
}

fn series(epochs: &[EpochLosses], f: impl Fn(&EpochLosses) -> Option<f64>) -> Vec<(f64, f64)> {
    epochs
        .iter()
        .enumerate()
        .filter_map(|(i, e)| {
            let y = f(e).filter(|y| y.is_finite())?;
            Some((e.epoch.unwrap_or(i as f64 + 1.0), y))
        })
        .collect()
}

/// The runs sharing every swept value but the seed.
#[derive(Debug, Clone)]
pub struct GridPoint {
    /// Swept key -> value (TOML literal), the seed left out.
    pub params: BTreeMap<String, String>,
    /// E.g. `first_filters=16, latent_dim=10` (`all runs` when only seeds were swept).
    pub label: String,
    /// Indices into [`SweepView::runs`], in seed order.
    pub runs: Vec<usize>,
}

/// Mean and spread of a metric over the seeds of a grid point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    /// Sample standard deviation (n - 1); None with one value.
    pub sd: Option<f64>,
    pub min: f64,
    pub max: f64,
}

/// Stats of the finite values; None when there are none.
pub fn stats(values: &[f64]) -> Option<Stats> {
    let v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    let n = v.len();
    let mean = v.iter().sum::<f64>() / n as f64;
    let sd = (n > 1).then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt());
    Some(Stats {
        n,
        mean,
        sd,
        min: v.iter().copied().fold(f64::INFINITY, f64::min),
        max: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    })
}

/// How one grid point compares with another on a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judgement {
    /// Better beyond the seed spread.
    Better,
    /// Worse beyond the seed spread.
    Worse,
    /// Higher / lower beyond the spread, for a metric with no better direction.
    Different,
    /// The difference is not larger than its seed spread.
    WithinSpread,
    /// A point has one seed: no spread to judge by.
    NoSpread,
}

impl Judgement {
    pub fn text(self) -> &'static str {
        match self {
            Judgement::Better => "better beyond seed spread",
            Judgement::Worse => "worse beyond seed spread",
            Judgement::Different => "differs beyond seed spread",
            Judgement::WithinSpread => "within seed spread",
            Judgement::NoSpread => "no seed spread (one seed)",
        }
    }
}

/// A comparison of `to` against `from`: the difference of the means, its seed spread
/// `sqrt(sd_from^2 + sd_to^2)` and the judgement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    pub diff: f64,
    pub spread: Option<f64>,
    pub judgement: Judgement,
}

pub fn compare(from: &Stats, to: &Stats, lower_is_better: Option<bool>) -> Comparison {
    let diff = to.mean - from.mean;
    let spread = match (from.sd, to.sd) {
        (Some(a), Some(b)) => Some((a * a + b * b).sqrt()),
        _ => None,
    };
    let judgement = match spread {
        None => Judgement::NoSpread,
        Some(s) if diff.abs() <= s => Judgement::WithinSpread,
        Some(_) => match lower_is_better {
            None => Judgement::Different,
            Some(lower) if (diff < 0.0) == lower => Judgement::Better,
            Some(_) => Judgement::Worse,
        },
    };
    Comparison {
        diff,
        spread,
        judgement,
    }
}

/// A written answer: a one-line verdict, then a small table.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: String,
    pub question: String,
    pub verdict: String,
    pub head: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

/// A sweep, read.
#[derive(Debug, Clone)]
pub struct SweepView {
    pub dir: PathBuf,
    pub manifest: SweepManifest,
    pub runs: Vec<SweepRun>,
    pub points: Vec<GridPoint>,
    /// A PCA run to compare with: (its directory, its metrics).
    pub pca: Option<(PathBuf, PcaMetrics)>,
}

/// `dir` holds a sweep manifest.
pub fn is_sweep_dir(dir: &Path) -> bool {
    SweepManifest::path(dir).is_file()
}

/// The PCA run beside a sweep: `SWEEP_DIR/pca` or a sibling `pca` directory with a PCA
/// `metrics.json`.
pub fn find_sibling_pca(sweep_dir: &Path) -> Option<PathBuf> {
    let parent = sweep_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    [sweep_dir.join("pca"), parent.join("pca")]
        .into_iter()
        .find(|d| matches!(RunMetrics::read(&d.join("metrics.json")), Ok(RunMetrics::Pca(_))))
}

impl SweepView {
    /// Read `sweep_dir`'s manifest and run directories; `pca` is a PCA run directory to compare
    /// with (default: a sibling one, see [`find_sibling_pca`]).
    pub fn load(sweep_dir: &Path, pca: Option<&Path>) -> Result<Self> {
        let manifest = SweepManifest::load(sweep_dir)?;
        let runs: Vec<SweepRun> = manifest
            .runs
            .iter()
            .map(|e| SweepRun::load(sweep_dir, e))
            .collect();
        let labels: BTreeMap<String, String> = short_labels(manifest.grid.iter().map(|a| a.key.as_str()));
        let mut points: Vec<GridPoint> = Vec::new();
        for (i, r) in runs.iter().enumerate() {
            let mut params = r.entry.params.clone();
            params.remove("seed");
            match points.iter_mut().find(|p| p.params == params) {
                Some(p) => p.runs.push(i),
                None => {
                    let label = if params.is_empty() {
                        "all runs".to_string()
                    } else {
                        params
                            .iter()
                            .map(|(k, v)| {
                                format!("{}={}", labels.get(k).map_or(k.as_str(), |s| s), unquote(v))
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    points.push(GridPoint {
                        params,
                        label,
                        runs: vec![i],
                    })
                }
            }
        }
        let pca_dir = match pca {
            Some(p) => Some(p.to_path_buf()),
            None => find_sibling_pca(sweep_dir),
        };
        let pca = match pca_dir {
            None => None,
            Some(d) => match RunMetrics::read(&d.join("metrics.json"))
                .with_context(|| format!("--pca {}", d.display()))?
            {
                RunMetrics::Pca(m) => Some((d, m)),
                RunMetrics::Vae(_) => anyhow::bail!(
                    "--pca {}: that is a VAE run; give a PCA run directory (norbvae pca --out ...)",
                    d.display()
                ),
            },
        };
        Ok(Self {
            dir: sweep_dir.to_path_buf(),
            manifest,
            runs,
            points,
            pca,
        })
    }

    /// The metric of each finished run of a point, in seed order.
    pub fn values(&self, point: &GridPoint, metric: Metric) -> Vec<f64> {
        point
            .runs
            .iter()
            .filter_map(|&i| self.runs[i].value(metric))
            .collect()
    }

    pub fn point_stats(&self, point: &GridPoint, metric: Metric) -> Option<Stats> {
        stats(&self.values(point, metric))
    }

    /// Metrics with a value in some finished run.
    pub fn metrics(&self) -> Vec<Metric> {
        Metric::ALL
            .into_iter()
            .filter(|m| self.runs.iter().any(|r| r.value(*m).is_some()))
            .collect()
    }

    /// A swept key's values in grid order, as f64 when every one is a number.
    fn numeric_values(&self, key: &str) -> Option<Vec<f64>> {
        let axis = self.manifest.grid.iter().find(|a| a.key == key)?;
        axis.values.iter().map(|v| v.trim().parse::<f64>().ok()).collect()
    }

    /// The slices along `key`: for each combination of the other swept values, the grid points
    /// in the order of `key`'s values.
    fn slices(&self, key: &str) -> Vec<(String, Vec<&GridPoint>)> {
        let Some(axis) = self.manifest.grid.iter().find(|a| a.key == key) else {
            return vec![];
        };
        let labels = short_labels(self.manifest.grid.iter().map(|a| a.key.as_str()));
        let mut out: Vec<(BTreeMap<String, String>, Vec<&GridPoint>)> = Vec::new();
        for p in &self.points {
            let mut others = p.params.clone();
            others.remove(key);
            match out.iter_mut().find(|(o, _)| *o == others) {
                Some((_, v)) => v.push(p),
                None => out.push((others, vec![p])),
            }
        }
        out.into_iter()
            .map(|(others, mut pts)| {
                pts.sort_by_key(|p| axis.values.iter().position(|v| Some(v) == p.params.get(key)));
                let name = if others.is_empty() {
                    "all".to_string()
                } else {
                    others
                        .iter()
                        .map(|(k, v)| format!("{}={}", labels.get(k).map_or(k.as_str(), |s| s), unquote(v)))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                (name, pts)
            })
            .collect()
    }
}

/// The last component of each key, or the whole key where two share a last component.
fn short_labels<'a>(keys: impl Iterator<Item = &'a str> + Clone) -> BTreeMap<String, String> {
    let last = |k: &'a str| k.rsplit('.').next().unwrap_or(k);
    keys.clone()
        .map(|k| {
            let l = last(k);
            let label = if keys.clone().filter(|o| last(o) == l).count() > 1 {
                k
            } else {
                l
            };
            (k.to_string(), label.to_string())
        })
        .collect()
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"').and_then(|s| s.strip_suffix('"')).unwrap_or(v)
}

/// About four significant digits.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if v.fract() == 0.0 && a < 1e5 {
        format!("{v:.0}")
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.3e}")
    } else {
        let decimals = (3 - a.log10().floor() as i32).max(0) as usize;
        format!("{v:.decimals$}")
    }
}

/// `mean ± sd` with the sd at the mean's precision (`5.589 ± 0.014`, `0.002185 ± 0.000034`), so
/// the two line up and the sd carries no digits the mean does not have.
pub fn num_pm(mean: f64, sd: f64) -> String {
    let m = num(mean);
    if m.contains('e') || !sd.is_finite() {
        return format!("{m} ± {}", num(sd));
    }
    let d = m.split_once('.').map_or(0, |(_, decimals)| decimals.len());
    format!("{m} ± {sd:.d$}")
}

fn mean_sd(s: &Stats) -> String {
    match s.sd {
        Some(sd) => num_pm(s.mean, sd),
        None => format!("{} (1 seed)", num(s.mean)),
    }
}

/// The metrics the answers judge: test neg-ELBO and MSE (bits/dim is the neg-ELBO in other
/// units: it stays in the charts and the grid table, not twice in every answer).
fn judged_metrics(view: &SweepView) -> Vec<Metric> {
    let have = view.metrics();
    [Metric::TestNegElbo, Metric::TestMse]
        .into_iter()
        .filter(|m| have.contains(m))
        .collect()
}

/// Keys that set a model's capacity (size of the code or of the networks).
pub fn is_capacity_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    [
        "latent_dim",
        "filters",
        "intermediate",
        "hidden",
        "blocks",
        "channels",
        "components",
        "width",
        "units",
        "groups",
        "pseudo_inputs",
    ]
    .iter()
    .any(|w| last.contains(w))
}

/// "More capacity?": one answer per swept capacity key, comparing each step up in the key
/// within each slice of the other swept values.
pub fn capacity_answers(view: &SweepView) -> Vec<Answer> {
    let keys: Vec<&str> = view
        .manifest
        .grid
        .iter()
        .map(|a| a.key.as_str())
        .filter(|k| is_capacity_key(k) && view.numeric_values(k).is_some())
        .collect();
    if keys.is_empty() {
        return vec![Answer {
            id: "capacity".into(),
            question: "More capacity?".into(),
            verdict: format!(
                "Not asked by this sweep: no capacity key (latent_dim, filters, ...) was swept ({}).",
                swept_keys(view)
            ),
            head: vec![],
            rows: vec![],
        }];
    }
    let metrics = judged_metrics(view);
    let mut answers = Vec::new();
    for key in keys {
        let mut rows = Vec::new();
        let mut primary = Vec::new();
        for (slice, pts) in view.slices(key) {
            for w in pts.windows(2) {
                for &m in &metrics {
                    let (Some(a), Some(b)) = (view.point_stats(w[0], m), view.point_stats(w[1], m)) else {
                        continue;
                    };
                    let c = compare(&a, &b, m.lower_is_better());
                    if m == metrics[0] {
                        primary.push(c);
                    }
                    rows.push(vec![
                        slice.clone(),
                        format!("{} → {}", unquote(&w[0].params[key]), unquote(&w[1].params[key])),
                        m.label().to_string(),
                        mean_sd(&a),
                        mean_sd(&b),
                        num(c.diff),
                        c.spread.map(num).unwrap_or_else(|| "-".into()),
                        c.judgement.text().to_string(),
                    ]);
                }
            }
        }
        let what = metrics.first().map(|m| m.label()).unwrap_or("the metrics");
        answers.push(Answer {
            id: format!("capacity-{}", key.replace('.', "-")),
            question: format!("More capacity: does a larger {key} help?"),
            verdict: capacity_verdict(key, what, &primary),
            head: [
                "other settings",
                key,
                "metric",
                "before (mean ± sd)",
                "after (mean ± sd)",
                "difference",
                "seed spread",
                "verdict",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        });
    }
    answers
}

/// The one-line verdict from the steps up in `key` (judged on `what`).
pub fn capacity_verdict(key: &str, what: &str, steps: &[Comparison]) -> String {
    let n = steps.len();
    let count = |j: Judgement| steps.iter().filter(|c| c.judgement == j).count();
    let (better, worse, within, nospread) = (
        count(Judgement::Better),
        count(Judgement::Worse),
        count(Judgement::WithinSpread),
        count(Judgement::NoSpread),
    );
    if n == 0 {
        return format!("Cannot tell yet: no two finished grid points differ only in {key}.");
    }
    if nospread == n {
        let lower = steps.iter().filter(|c| c.diff < 0.0).count();
        return format!(
            "Cannot tell: one seed per point, so no seed spread to judge by ({what} is lower after {lower} of {n} steps up in {key})."
        );
    }
    let judged = n - nospread;
    if better == judged {
        format!("Yes: every step up in {key} improves {what} beyond the seed spread ({better} of {judged} steps).")
    } else if better > 0 {
        format!(
            "Partly: a larger {key} improves {what} beyond the seed spread in {better} of {judged} steps; {within} within the spread, {worse} worse."
        )
    } else if worse > 0 {
        format!(
            "No: a larger {key} makes {what} worse beyond the seed spread in {worse} of {judged} steps; {within} within the spread."
        )
    } else {
        format!(
            "No clear gain: every difference from a larger {key} in {what} is within the seed spread ({within} of {judged} steps)."
        )
    }
}

fn swept_keys(view: &SweepView) -> String {
    if view.manifest.grid.is_empty() {
        "only seeds".into()
    } else {
        view.manifest
            .grid
            .iter()
            .map(|a| a.key.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Whether the validation loss still improved in the last epochs of a run: the best of the last
/// `min(3, n - 1)` epochs against the best before them (as a relative change). None with fewer
/// than two epochs.
pub fn still_improving(val: &[f64]) -> Option<(bool, usize, f64)> {
    let v: Vec<f64> = val.iter().copied().filter(|x| x.is_finite()).collect();
    if v.len() < 2 {
        return None;
    }
    let w = 3.min(v.len() - 1);
    let (before, last) = v.split_at(v.len() - w);
    let best_before = before.iter().copied().fold(f64::INFINITY, f64::min);
    let best_last = last.iter().copied().fold(f64::INFINITY, f64::min);
    let rel = (best_last - best_before) / best_before.abs().max(f64::MIN_POSITIVE);
    Some((best_last < best_before, w, rel))
}

/// "Longer training / was the stopping condition met?": per run, what stopped it and whether its
/// validation loss was still improving at the end.
pub fn training_answer(view: &SweepView) -> Answer {
    let mut rows = Vec::new();
    let (mut finished, mut patience, mut max_hit, mut max_improving, mut diverged, mut unfinished) =
        (0, 0, 0, 0, 0, 0);
    for r in &view.runs {
        let val: Vec<f64> = r.val_losses().iter().map(|p| p.1).collect();
        let improving = still_improving(&val);
        let improving_text = match improving {
            None => "-".to_string(),
            Some((yes, w, rel)) => format!(
                "{} ({:+.2}% over the last {w})",
                if yes { "yes" } else { "no" },
                100.0 * rel
            ),
        };
        let cap = r.max_epochs.map(|m| m.to_string()).unwrap_or_else(|| "?".into());
        let (epochs, best, stopped) = match &r.metrics {
            Some(m) => {
                finished += 1;
                match m.stopped_because {
                    StopReason::Patience => patience += 1,
                    StopReason::MaxEpochs => {
                        max_hit += 1;
                        if improving.is_some_and(|i| i.0) {
                            max_improving += 1;
                        }
                    }
                    StopReason::Diverged => diverged += 1,
                }
                (
                    format!("{} of {cap}", m.epochs_run),
                    m.best_epoch.to_string(),
                    m.stopped_because.name().to_string(),
                )
            }
            None => {
                if r.status != RunStatus::Failed {
                    unfinished += 1;
                }
                (
                    format!("{} of {cap} so far", r.epochs.len()),
                    "-".into(),
                    format!("not finished ({})", r.status.name()),
                )
            }
        };
        rows.push(vec![
            r.entry.name.clone(),
            epochs,
            best,
            r.patience.map(|p| p.to_string()).unwrap_or_else(|| "-".into()),
            stopped,
            improving_text,
        ]);
    }
    let verdict = training_verdict(finished, patience, max_hit, max_improving, diverged, unfinished);
    Answer {
        id: "training".into(),
        question: "Longer training: was the stopping condition met?".into(),
        verdict,
        head: [
            "run",
            "epochs",
            "best epoch",
            "patience",
            "stopped by",
            "val loss still improving at the end",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

pub fn training_verdict(
    finished: usize,
    patience: usize,
    max_hit: usize,
    max_improving: usize,
    diverged: usize,
    unfinished: usize,
) -> String {
    let tail = if unfinished > 0 {
        format!(" ({unfinished} runs not finished yet)")
    } else {
        String::new()
    };
    let div = if diverged > 0 {
        format!("; {diverged} diverged")
    } else {
        String::new()
    };
    if finished == 0 {
        return format!("Cannot tell yet: no run has finished{tail}.");
    }
    if max_improving > 0 {
        format!(
            "Longer training may help: {max_improving} of {finished} runs hit max_epochs with the validation loss still improving; {patience} stopped by patience{div}{tail}."
        )
    } else if max_hit > 0 {
        format!(
            "Probably not: {max_hit} of {finished} runs hit max_epochs but their validation loss had stopped improving; {patience} stopped by patience{div}{tail}."
        )
    } else {
        format!(
            "No: every finished run met its stopping condition (patience: {patience} of {finished}) before max_epochs{div}{tail}."
        )
    }
}

/// "Random variation?": the seed spread against the differences between grid points, per metric.
pub fn variation_answer(view: &SweepView) -> Answer {
    let metrics = judged_metrics(view);
    let mut rows = Vec::new();
    let mut verdict = None;
    for &m in &metrics {
        let st: Vec<Stats> = view
            .points
            .iter()
            .filter_map(|p| view.point_stats(p, m))
            .collect();
        let v = variation(&st, m.lower_is_better());
        if verdict.is_none() {
            verdict = Some(variation_verdict(m.label(), &v));
        }
        rows.push(vec![
            m.label().to_string(),
            v.pooled_sd.map(num).unwrap_or_else(|| "-".into()),
            v.range.map(num).unwrap_or_else(|| "-".into()),
            match (v.range, v.pooled_sd) {
                (Some(r), Some(s)) if s > 0.0 => format!("{:.1}", r / s),
                _ => "-".into(),
            },
            format!("{} of {}", v.pairs_within, v.pairs_judged),
        ]);
    }
    Answer {
        id: "variation".into(),
        question: "Random variation: do the grid points differ by more than the seeds do?".into(),
        verdict: verdict.unwrap_or_else(|| "Cannot tell yet: no run has finished.".into()),
        head: [
            "metric",
            "seed sd (pooled)",
            "range of grid-point means",
            "range / seed sd",
            "pairs of points within their seed spread",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    }
}

/// Seed spread against the spread of grid points, for one metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Variation {
    pub points: usize,
    /// sqrt of the mean variance over the points with two or more seeds.
    pub pooled_sd: Option<f64>,
    /// max - min of the points' means.
    pub range: Option<f64>,
    pub pairs_judged: usize,
    pub pairs_within: usize,
}

pub fn variation(points: &[Stats], lower_is_better: Option<bool>) -> Variation {
    let vars: Vec<f64> = points.iter().filter_map(|s| s.sd.map(|d| d * d)).collect();
    let pooled_sd = (!vars.is_empty()).then(|| (vars.iter().sum::<f64>() / vars.len() as f64).sqrt());
    let range = (!points.is_empty()).then(|| {
        let hi = points.iter().map(|s| s.mean).fold(f64::NEG_INFINITY, f64::max);
        let lo = points.iter().map(|s| s.mean).fold(f64::INFINITY, f64::min);
        hi - lo
    });
    let (mut judged, mut within) = (0, 0);
    for i in 0..points.len() {
        for j in i + 1..points.len() {
            match compare(&points[i], &points[j], lower_is_better).judgement {
                Judgement::NoSpread => {}
                Judgement::WithinSpread => {
                    judged += 1;
                    within += 1;
                }
                _ => judged += 1,
            }
        }
    }
    Variation {
        points: points.len(),
        pooled_sd,
        range,
        pairs_judged: judged,
        pairs_within: within,
    }
}

pub fn variation_verdict(what: &str, v: &Variation) -> String {
    match (v.pooled_sd, v.range) {
        (_, None) => "Cannot tell yet: no run has finished.".into(),
        (None, Some(_)) => format!(
            "Cannot tell: one seed per grid point, so no seed spread to compare the {what} differences with."
        ),
        (Some(sd), Some(_)) if v.points < 2 => format!(
            "Only one grid point: its seeds spread the {what} by sd {}.",
            num(sd)
        ),
        (Some(sd), Some(range)) if v.pairs_within == v.pairs_judged => format!(
            "Yes, random variation: every difference between grid points in {what} is within its seed spread (means span {}, seed sd {}).",
            num(range),
            num(sd)
        ),
        (Some(sd), Some(range)) if v.pairs_within > 0 => format!(
            "Partly: {} of {} pairs of grid points differ in {what} by less than their seed spread; the means span {} against a seed sd of {}.",
            v.pairs_within,
            v.pairs_judged,
            num(range),
            num(sd)
        ),
        (Some(sd), Some(range)) => format!(
            "No: every pair of grid points differs in {what} by more than its seed spread (means span {}, seed sd {}).",
            num(range),
            num(sd)
        ),
    }
}

/// PCA's test MSE at k = each grid point's latent size, beside the sweep's MSE.
pub fn pca_answer(view: &SweepView) -> Option<Answer> {
    let (dir, pca) = view.pca.as_ref()?;
    let mut rows = Vec::new();
    let mut below = 0;
    let mut judged = 0;
    for p in &view.points {
        let Some(k) = latent_dim_of(view, p) else {
            continue;
        };
        let vae = view.point_stats(p, Metric::TestMse);
        let pca_mse = pca.at(k).and_then(|m| m.test.as_ref()).map(|t| t.mse);
        let verdict = match (vae, pca_mse) {
            (Some(s), Some(q)) => {
                judged += 1;
                let spread = s.sd.unwrap_or(0.0);
                if s.mean + spread < q {
                    below += 1;
                    "VAE below PCA".to_string()
                } else if s.mean - spread > q {
                    "VAE above PCA".to_string()
                } else {
                    "within seed spread of PCA".to_string()
                }
            }
            (None, _) => "VAE not finished".into(),
            (_, None) => format!("PCA has no k = {k}"),
        };
        rows.push(vec![
            p.label.clone(),
            k.to_string(),
            vae.map(|s| mean_sd(&s)).unwrap_or_else(|| "-".into()),
            pca_mse.map(num).unwrap_or_else(|| "-".into()),
            match (vae, pca_mse) {
                (Some(s), Some(q)) if q > 0.0 => format!("{:.2}", s.mean / q),
                _ => "-".into(),
            },
            verdict,
        ]);
    }
    Some(Answer {
        id: "pca".into(),
        question: format!(
            "Below PCA? Test MSE against PCA ({}) at k = latent_dim",
            dir.display()
        ),
        verdict: if judged == 0 {
            "Cannot tell yet: no finished grid point has a PCA value at its latent size.".into()
        } else {
            format!("{below} of {judged} grid points reconstruct better than PCA with as many components, beyond their seed spread.")
        },
        head: [
            "grid point",
            "k",
            "VAE test MSE",
            "PCA test MSE",
            "VAE / PCA",
            "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows,
    })
}

/// A point's code size: the metrics' latent_dim, else the swept or configured model.latent_dim.
fn latent_dim_of(view: &SweepView, p: &GridPoint) -> Option<usize> {
    p.runs
        .iter()
        .find_map(|&i| view.runs[i].metrics.as_ref()?.latent_dim)
        .or_else(|| p.params.get("model.latent_dim")?.trim().parse().ok())
        .or_else(|| {
            let dir = &view.runs[*p.runs.first()?].dir;
            let t: toml::Table = std::fs::read_to_string(dir.join("config.toml"))
                .ok()?
                .parse()
                .ok()?;
            Some(t.get("model")?.get("latent_dim")?.as_integer()? as usize)
        })
}

/// A chart of the page, written as `<id>.png` and `<id>.svg` and inlined as SVG.
#[derive(Debug, Clone)]
pub struct ChartFile {
    pub id: String,
    pub chart: Chart,
}

/// Every chart of the sweep view.
pub fn charts(view: &SweepView) -> Vec<ChartFile> {
    let mut out = Vec::new();
    for m in view.metrics() {
        for axis in &view.manifest.grid {
            let key = axis.key.as_str();
            let numeric = view.numeric_values(key);
            let categories: Vec<String> = if numeric.is_none() {
                axis.values.iter().map(|v| unquote(v).to_string()).collect()
            } else {
                vec![]
            };
            let x_of = |v: &str| -> f64 {
                match &numeric {
                    Some(_) => v.trim().parse().unwrap_or(f64::NAN),
                    None => axis.values.iter().position(|a| a == v).unwrap_or(0) as f64,
                }
            };
            let groups: Vec<SweepGroup> = view
                .slices(key)
                .into_iter()
                .map(|(name, pts)| SweepGroup {
                    name,
                    points: pts
                        .iter()
                        .filter_map(|p| {
                            let vals = view.values(p, m);
                            (!vals.is_empty()).then(|| (x_of(&p.params[key]), vals))
                        })
                        .collect(),
                })
                .filter(|g| !g.points.is_empty())
                .collect();
            if groups.is_empty() {
                continue;
            }
            let log_x = numeric.as_ref().is_some_and(|v| {
                let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                lo > 0.0 && hi / lo >= 8.0
            });
            let mut chart = plot::sweep_error_bars(
                &format!("{} against {key}", m.label()),
                key,
                m.label(),
                &groups,
                Spread::MinMax,
                log_x,
                categories,
            );
            if m == Metric::TestMse && key == "model.latent_dim" && numeric.is_some() {
                if let Some((_, pca)) = &view.pca {
                    let line: Vec<(f64, f64)> = pca
                        .ks()
                        .into_iter()
                        .filter(|k| numeric.as_ref().is_some_and(|v| v.contains(&(*k as f64))))
                        .filter_map(|k| Some((k as f64, pca.at(k)?.test.as_ref()?.mse)))
                        .collect();
                    if !line.is_empty() {
                        let mut s =
                            Series::new("PCA at k = latent_dim", line, Mark::LinePoints, groups.len());
                        s.dashed = true;
                        s.shape = plot::Shape::Cross;
                        chart.series.push(s);
                    }
                }
            }
            out.push(ChartFile {
                id: format!("{}-vs-{}", m.id(), key.replace('.', "-")),
                chart,
            });
        }
    }
    for (id, title, y, val) in [
        (
            "curves-val",
            "Validation loss of every run",
            "validation loss",
            true,
        ),
        (
            "curves-train",
            "Training loss of every run",
            "training loss",
            false,
        ),
    ] {
        let runs: Vec<(String, Vec<(f64, f64)>)> = view
            .points
            .iter()
            .flat_map(|p| {
                p.runs.iter().map(move |&i| {
                    let r = &view.runs[i];
                    (
                        p.label.clone(),
                        if val { r.val_losses() } else { r.train_losses() },
                    )
                })
            })
            .filter(|(_, pts)| !pts.is_empty())
            .collect();
        if runs.is_empty() {
            continue;
        }
        out.push(ChartFile {
            id: id.into(),
            chart: plot::overlaid_curves(
                &format!("{title} (one colour per grid point, its seeds overlaid)"),
                y,
                &runs,
            ),
        });
    }
    out
}

/// Options of the sweep view.
#[derive(Debug, Clone, Default)]
pub struct SweepReportOptions {
    pub title: Option<String>,
    /// A PCA run to compare with (default: a sibling `pca` run, if any).
    pub pca: Option<PathBuf>,
}

/// What [`build_sweep_report`] wrote.
#[derive(Debug, Clone)]
pub struct SweepReport {
    pub html: PathBuf,
    pub charts_dir: PathBuf,
    pub charts: Vec<PathBuf>,
    pub runs: usize,
    pub finished: usize,
}

/// The chart directory of a report file: `report.html` -> `report_charts/`.
pub fn charts_dir_of(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    out.with_file_name(format!("{stem}_charts"))
}

/// Read the sweep in `sweep_dir` and write its page to `out` (charts inline, and as PNG and SVG
/// files in [`charts_dir_of`]`(out)`). The page is written last and atomically.
pub fn build_sweep_report(sweep_dir: &Path, out: &Path, opts: &SweepReportOptions) -> Result<SweepReport> {
    let view = SweepView::load(sweep_dir, opts.pca.as_deref())?;
    let charts = charts(&view);
    let charts_dir = charts_dir_of(out);
    std::fs::create_dir_all(&charts_dir).with_context(|| format!("creating {}", charts_dir.display()))?;
    let mut files = Vec::new();
    let mut svgs = Vec::new();
    for c in &charts {
        let png = charts_dir.join(format!("{}.png", c.id));
        c.chart
            .save_png(&png)
            .with_context(|| format!("drawing {}", png.display()))?;
        let svg = c.chart.svg()?;
        let svg_path = charts_dir.join(format!("{}.svg", c.id));
        crate::util::write_atomic(&svg_path, svg.as_bytes())?;
        files.push(png);
        files.push(svg_path);
        svgs.push(svg);
    }
    let rel_dir = charts_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let page = render(&view, &charts, &svgs, &rel_dir, opts);
    crate::util::write_atomic(out, page.as_bytes())?;
    Ok(SweepReport {
        html: out.to_path_buf(),
        charts_dir,
        charts: files,
        runs: view.runs.len(),
        finished: view.runs.iter().filter(|r| r.metrics.is_some()).count(),
    })
}

const CSS: &str = "
body { font-family: 'DejaVu Sans', Arial, sans-serif; margin: 0 auto; padding: 1em; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2em; margin-top: 1.6em; }
p.sub { color: #555; margin-top: 0; }
.answer { margin: 1em 0 1.6em 0; }
.answer h3 { margin-bottom: 0.3em; }
p.verdict { font-weight: bold; margin: 0.3em 0 0.5em 0; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.failed td { background: #fdecea; }
tr.unfinished td { color: #777; }
pre.error { margin: 0; white-space: pre-wrap; font-size: 0.9em; max-width: 40em; }
figure { margin: 1em 0; }
figure svg { width: 100%; height: auto; max-width: 800px; display: block; }
figcaption { font-size: 0.85em; color: #555; }
";

fn answer_html(a: &Answer) -> Markup {
    html! {
        div.answer id=(format!("answer-{}", a.id)) {
            h3 { (a.question) }
            p.verdict { (a.verdict) }
            @if !a.rows.is_empty() {
                div.scroll { table {
                    tr { @for h in &a.head { th { (h) } } }
                    @for row in &a.rows { tr { @for c in row { td { (c) } } } }
                } }
            }
        }
    }
}

fn render(
    view: &SweepView,
    charts: &[ChartFile],
    svgs: &[String],
    rel_dir: &str,
    opts: &SweepReportOptions,
) -> String {
    let m = &view.manifest;
    let title = opts
        .title
        .clone()
        .unwrap_or_else(|| format!("norbvae sweep: {}", view.dir.display()));
    let finished = view.runs.iter().filter(|r| r.metrics.is_some()).count();
    let counts: Vec<String> = {
        let mut c: BTreeMap<&str, usize> = BTreeMap::new();
        for r in &view.runs {
            *c.entry(r.status.name()).or_default() += 1;
        }
        c.into_iter().map(|(k, v)| format!("{v} {k}")).collect()
    };
    let metrics = view.metrics();
    let mut answers = capacity_answers(view);
    answers.push(training_answer(view));
    answers.push(variation_answer(view));
    answers.extend(pca_answer(view));
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) }
                style { (PreEscaped(CSS)) }
            }
            body {
                h1 { (title) }
                p.sub {
                    (m.runs.len()) " runs (" (counts.join(", ")) "); base config " (m.base_config.display())
                    @if let Some(d) = &m.data { "; data " (d) }
                    "; swept: " (swept_keys(view)) "; seeds " (format!("{:?}", m.seeds))
                    "; executor " (format!("{:?}", m.executor).to_lowercase())
                    @if let Some(j) = &m.slurm_job { "; Slurm job " (j.job_id) }
                    "."
                }
                @if finished < view.runs.len() {
                    p.sub id="unfinished" { (view.runs.len() - finished) " of " (view.runs.len()) " runs are not finished (queued, running, stopped or failed): they are listed, and left out of the means." }
                }
                section id="answers" {
                    h2 { "Answers" }
                    p.sub { "A difference counts only when it is larger than its seed spread, sqrt(sd_a² + sd_b²) of the two points' seed standard deviations." }
                    @for a in &answers { (answer_html(a)) }
                }
                section id="grid" {
                    h2 { "Grid points (mean ± sd over seeds)" }
                    div.scroll { table id="grid-table" {
                        tr {
                            th { "grid point" }
                            th { "seeds done" }
                            @for mt in &metrics { th { (mt.label()) } }
                            th { "not finished / failed" }
                        }
                        @for p in &view.points {
                            tr data-point=(p.label) {
                                td { (p.label) }
                                td.num { (view.values(p, Metric::EpochsTrained).len()) " of " (p.runs.len()) }
                                @for mt in &metrics {
                                    @if let Some(s) = view.point_stats(p, *mt) {
                                        td.num data-metric=(mt.id()) data-mean=(s.mean.to_string()) data-n=(s.n.to_string()) { (mean_sd(&s)) }
                                    } @else {
                                        td.num data-metric=(mt.id()) { "-" }
                                    }
                                }
                                td {
                                    @for &i in &p.runs {
                                        @let r = &view.runs[i];
                                        @if r.metrics.is_none() {
                                            div { "seed " (r.entry.seed) ": " (r.status.name())
                                                @if let Some(e) = &r.error { pre.error { (e) } } }
                                        }
                                    }
                                }
                            }
                        }
                    } }
                }
                section id="charts" {
                    h2 { "Charts" }
                    @for (c, svg) in charts.iter().zip(svgs) {
                        figure id=(format!("chart-{}", c.id)) {
                            (PreEscaped(svg))
                            figcaption { (c.chart.title) " — files: "
                                a href=(format!("{rel_dir}/{}.png", c.id)) { "PNG" } ", "
                                a href=(format!("{rel_dir}/{}.svg", c.id)) { "SVG" } }
                        }
                    }
                    @if charts.is_empty() { p { "No run has finished or logged an epoch yet." } }
                }
                section id="runs" {
                    h2 { "Runs" }
                    div.scroll { table id="runs-table" {
                        tr {
                            th { "run" } th { "status" } th { "epochs" } th { "stopped by" }
                            @for mt in &metrics { @if *mt != Metric::EpochsTrained { th { (mt.label()) } } }
                            th { "directory / error" }
                        }
                        @for r in &view.runs {
                            tr.failed[r.status == RunStatus::Failed] .unfinished[r.metrics.is_none() && r.status != RunStatus::Failed] data-run=(r.entry.name) data-status=(r.status.name()) {
                                td { (r.entry.name) }
                                td { (r.status.name()) }
                                td.num { (r.metrics.as_ref().map_or(r.epochs.len(), |m| m.epochs_run)) }
                                td { (r.metrics.as_ref().map_or("-", |m| m.stopped_because.name())) }
                                @for mt in &metrics {
                                    @if *mt != Metric::EpochsTrained {
                                        td.num { (r.value(*mt).map(num).unwrap_or_else(|| "-".into())) }
                                    }
                                }
                                td {
                                    (r.entry.dir.display())
                                    @if let Some(e) = &r.error { pre.error { (e) } }
                                }
                            }
                        }
                    } }
                }
            }
        }
    };
    markup.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(values: &[f64]) -> Stats {
        stats(values).unwrap()
    }

    #[test]
    fn stats_are_mean_and_sample_sd_over_finite_values() {
        let s = st(&[1.0, 3.0, f64::NAN]);
        assert_eq!((s.n, s.mean, s.min, s.max), (2, 2.0, 1.0, 3.0));
        assert!((s.sd.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(st(&[5.0]).sd, None);
        assert!(stats(&[f64::NAN]).is_none());
    }

    #[test]
    fn a_difference_within_the_seed_spread_is_called_so() {
        // sd 1 at each point: spread sqrt(2) ~ 1.41.
        let a = st(&[9.0, 11.0, 10.0]);
        let b = st(&[8.0, 10.0, 9.0]);
        let c = compare(&a, &b, Some(true));
        assert_eq!(c.diff, -1.0);
        assert!((c.spread.unwrap() - 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(c.judgement, Judgement::WithinSpread);
        // The same means three units apart: beyond the spread, and lower is better.
        let b = st(&[6.0, 8.0, 7.0]);
        assert_eq!(compare(&a, &b, Some(true)).judgement, Judgement::Better);
        assert_eq!(compare(&b, &a, Some(true)).judgement, Judgement::Worse);
        assert_eq!(compare(&a, &b, None).judgement, Judgement::Different);
        // One seed: no spread, whatever the difference.
        assert_eq!(
            compare(&st(&[10.0]), &st(&[1.0]), Some(true)).judgement,
            Judgement::NoSpread
        );
    }

    #[test]
    fn capacity_verdicts_lead_with_what_the_steps_say() {
        let within = compare(&st(&[9.0, 11.0]), &st(&[9.5, 10.5]), Some(true));
        let better = compare(&st(&[9.0, 11.0]), &st(&[2.0, 3.0]), Some(true));
        let worse = compare(&st(&[2.0, 3.0]), &st(&[9.0, 11.0]), Some(true));
        let none = compare(&st(&[9.0]), &st(&[3.0]), Some(true));
        let v = capacity_verdict("model.latent_dim", "test MSE", &[within, within]);
        assert!(
            v.starts_with("No clear gain") && v.contains("within the seed spread"),
            "{v}"
        );
        let v = capacity_verdict("model.latent_dim", "test MSE", &[better, better]);
        assert!(v.starts_with("Yes"), "{v}");
        let v = capacity_verdict("model.latent_dim", "test MSE", &[better, within]);
        assert!(v.starts_with("Partly") && v.contains("1 of 2"), "{v}");
        let v = capacity_verdict("model.latent_dim", "test MSE", &[worse, within]);
        assert!(v.starts_with("No:") && v.contains("worse"), "{v}");
        let v = capacity_verdict("model.latent_dim", "test MSE", &[none]);
        assert!(
            v.starts_with("Cannot tell") && v.contains("no seed spread"),
            "{v}"
        );
        assert!(capacity_verdict("k", "m", &[]).starts_with("Cannot tell yet"));
    }

    #[test]
    fn random_variation_compares_seed_spread_with_grid_differences() {
        let pts = [st(&[10.0, 12.0]), st(&[10.5, 11.5]), st(&[11.0, 12.0])];
        let v = variation(&pts, Some(true));
        assert_eq!((v.pairs_judged, v.pairs_within), (3, 3));
        let text = variation_verdict("test MSE", &v);
        assert!(text.starts_with("Yes, random variation"), "{text}");
        let pts = [st(&[10.0, 10.1]), st(&[20.0, 20.1]), st(&[10.05, 10.1])];
        let v = variation(&pts, Some(true));
        assert_eq!((v.pairs_judged, v.pairs_within), (3, 1));
        assert!(variation_verdict("m", &v).starts_with("Partly"));
        let v = variation(&[st(&[1.0]), st(&[2.0])], Some(true));
        assert!(variation_verdict("m", &v).contains("one seed per grid point"));
        let v = variation(&[st(&[1.0, 1.1]), st(&[5.0, 5.1])], Some(true));
        assert!(variation_verdict("m", &v).starts_with("No:"));
    }

    #[test]
    fn still_improving_looks_at_the_last_epochs() {
        assert_eq!(still_improving(&[5.0]), None);
        let (yes, w, rel) = still_improving(&[5.0, 4.0, 3.0, 2.9, 2.8]).unwrap();
        assert!(yes && w == 3 && rel < 0.0);
        let (yes, _, rel) = still_improving(&[5.0, 2.0, 2.1, 2.2, 2.3]).unwrap();
        assert!(!yes && rel > 0.0);
        let v = training_verdict(4, 1, 3, 2, 0, 1);
        assert!(
            v.starts_with("Longer training may help: 2 of 4") && v.contains("1 runs not finished"),
            "{v}"
        );
        assert!(training_verdict(4, 2, 2, 0, 0, 0).starts_with("Probably not"));
        assert!(training_verdict(3, 3, 0, 0, 0, 0).starts_with("No: every finished run"));
        assert!(training_verdict(0, 0, 0, 0, 0, 2).starts_with("Cannot tell yet"));
    }

    #[test]
    fn capacity_keys_are_the_size_settings() {
        for k in [
            "model.latent_dim",
            "model.conv.first_filters",
            "model.conv.max_filters",
            "model.dense.components",
        ] {
            assert!(is_capacity_key(k), "{k}");
        }
        for k in ["train.lr", "likelihood.output_activation", "train.max_epochs"] {
            assert!(!is_capacity_key(k), "{k}");
        }
    }

    #[test]
    fn numbers_show_about_four_significant_digits() {
        assert_eq!(num(1234.5678), "1235");
        assert_eq!(num(12.345678), "12.35");
        assert_eq!(num(0.0123456), "0.01235");
        assert_eq!(num(0.0), "0");
        assert_eq!(num(3.0), "3");
        assert_eq!(num(1.5e-5), "1.500e-5");
    }

    #[test]
    fn a_spread_is_shown_at_its_means_precision() {
        assert_eq!(num_pm(5.589, 0.01365), "5.589 ± 0.014");
        assert_eq!(num_pm(0.002185, 3.41e-5), "0.002185 ± 0.000034");
        assert_eq!(num_pm(49.3, 14.49), "49.30 ± 14.49");
        assert_eq!(num_pm(-1435.2, 5.9), "-1435 ± 6");
        assert_eq!(num_pm(1.5e-5, 2e-6), "1.500e-5 ± 2.000e-6");
    }
}
