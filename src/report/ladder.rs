//! The improvement ladder in the report: the log's basic VAE, then one change at a time, each
//! step a row with its test bits/dim, its MSE against PCA at the same code size, its best
//! sampler's FD against the real-image floor, the classifier's view of its samples, and how it
//! compares with the step before (better / worse; with seeds, "within seed spread" when the
//! difference is not larger than `sqrt(sd_a^2 + sd_b^2)`, the sweep view's rule,
//! [`super::sweep::compare`]). Beside the table: the pictures of each step and one chart of the
//! two ratios per step; and the answer "Which change bought what?".
//!
//! The runs are recognised as a ladder by `ladder.json` in their directory's parent (written by
//! `norbvae reproduce --ladder`, [`crate::format::ladder`]), else by their names being the shipped
//! ladder's step names ([`crate::train::ladder::LADDER`]). Step `S` is run `S`, or runs
//! `S,seed=N` with seeds.
use super::answers::{Answer, Table};
use super::runs::{RunInfo, RunKind};
use super::sweep::{compare, num, num_pm, stats, Judgement, Stats};
use crate::format::ladder::LadderManifest;
use crate::format::StopReason;
use crate::plot::{Axis, Chart, Mark, Series, Shape};
use crate::train::ladder::{embedded_steps, run_of_step};
use anyhow::{Context, Result};
use maud::{html, Markup, PreEscaped};
use std::path::{Path, PathBuf};

/// Styles of the ladder section (appended to the report's).
pub const CSS: &str = r#"
table.ladder{font-size:12px} table.ladder th,table.ladder td{padding:4px 5px} table.ladder td.change{white-space:normal;min-width:10em;max-width:16em;text-align:left}
table.ladder tr.groups th{text-align:center;border-bottom:1px solid #d5dae2;border-left:2px solid #fff} table.ladder td.v,span.v{font-size:11px;color:#3d4a5c}
table.ladder td.better{color:#0b6b2f;font-weight:600} table.ladder td.worse{color:#a1261b;font-weight:600}
table.ladder-pics td{vertical-align:top;white-space:normal;text-align:left} table.ladder-pics td.desc{max-width:26em;font-size:12px;color:#3d4a5c}
img.thumb{width:150px;height:auto;border:1px solid #d5dae2;display:block}
"#;

/// One step: its runs (one per seed) and what it changes.
#[derive(Debug, Clone)]
pub struct LadderStepRuns<'a> {
    pub name: String,
    pub description: String,
    pub short: String,
    pub runs: Vec<&'a RunInfo>,
}

/// The ladder found among a report's runs, with the PCA run to compare with.
#[derive(Debug, Clone)]
pub struct LadderView<'a> {
    pub steps: Vec<LadderStepRuns<'a>>,
    pub pca: Option<&'a RunInfo>,
    /// Where the step order came from ("ladder.json in DIR" or "the shipped ladder's names").
    pub source: String,
}

/// Find the ladder among `runs`: None when they are not ladder steps.
pub fn find(runs: &[RunInfo]) -> Result<Option<LadderView<'_>>> {
    let vaes: Vec<&RunInfo> = runs.iter().filter(|r| r.kind == RunKind::Vae).collect();
    // A manifest beside the runs decides (the first one found, in run order).
    let mut parents: Vec<PathBuf> = vaes
        .iter()
        .filter_map(|r| r.dir.parent().map(Path::to_path_buf))
        .collect();
    parents.dedup();
    for parent in &parents {
        if let Some(m) = LadderManifest::read_in(parent)? {
            let steps: Vec<LadderStepRuns> = m
                .steps
                .iter()
                .map(|s| LadderStepRuns {
                    name: s.name.clone(),
                    description: s.description.clone(),
                    short: s.short.clone(),
                    runs: step_runs(&vaes, &s.name, Some(parent)),
                })
                .collect();
            if steps.iter().any(|s| !s.runs.is_empty()) {
                return Ok(Some(LadderView {
                    steps,
                    pca: pca_near(runs, parent),
                    source: format!(
                        "{} in {}",
                        crate::format::ladder::LADDER_MANIFEST_FILE,
                        parent.display()
                    ),
                }));
            }
        }
    }
    // Else the shipped ladder's step names, when at least two steps have runs.
    let steps: Vec<LadderStepRuns> = embedded_steps()
        .into_iter()
        .map(|s| LadderStepRuns {
            runs: step_runs(&vaes, &s.name, None),
            short: s.short(),
            name: s.name,
            description: s.description,
        })
        .collect();
    if steps.iter().filter(|s| !s.runs.is_empty()).count() < 2 {
        return Ok(None);
    }
    let parent = steps
        .iter()
        .find_map(|s| s.runs.first().and_then(|r| r.dir.parent().map(Path::to_path_buf)))
        .unwrap_or_default();
    Ok(Some(LadderView {
        pca: pca_near(runs, &parent),
        steps: steps.into_iter().filter(|s| !s.runs.is_empty()).collect(),
        source: "the shipped ladder's step names".into(),
    }))
}

fn step_runs<'a>(vaes: &[&'a RunInfo], step: &str, parent: Option<&Path>) -> Vec<&'a RunInfo> {
    let mut v: Vec<(Option<u64>, &RunInfo)> = vaes
        .iter()
        .filter(|r| parent.is_none_or(|p| r.dir.parent() == Some(p)))
        .filter_map(|r| run_of_step(&r.name, step).map(|seed| (seed, *r)))
        .collect();
    v.sort_by_key(|(s, _)| *s);
    v.into_iter().map(|(_, r)| r).collect()
}

/// The PCA run in `dir` if there is one, else the first PCA run.
fn pca_near<'a>(runs: &'a [RunInfo], dir: &Path) -> Option<&'a RunInfo> {
    let pcas: Vec<&RunInfo> = runs.iter().filter(|r| r.kind == RunKind::Pca).collect();
    pcas.iter()
        .find(|r| r.dir.parent() == Some(dir))
        .or(pcas.first())
        .copied()
}

/// How a step compares with the one before on a metric where lower is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Better,
    Worse,
    /// Equal means (one seed a side).
    Same,
    /// The difference is not larger than its seed spread.
    WithinSpread,
}

impl Verdict {
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Better => "better",
            Verdict::Worse => "worse",
            Verdict::Same => "same",
            Verdict::WithinSpread => "within seed spread",
        }
    }
}

/// `cur` against `prev`, lower is better: with seeds on both sides the sweep view's rule decides
/// (a difference not larger than `sqrt(sd_a^2 + sd_b^2)` is within the seed spread); with one run
/// on a side the sign does.
pub fn step_verdict(prev: &Stats, cur: &Stats) -> Verdict {
    let c = compare(prev, cur, Some(true));
    match c.judgement {
        Judgement::Better => Verdict::Better,
        Judgement::Worse => Verdict::Worse,
        Judgement::WithinSpread => Verdict::WithinSpread,
        Judgement::Different | Judgement::NoSpread => {
            if c.diff < 0.0 {
                Verdict::Better
            } else if c.diff > 0.0 {
                Verdict::Worse
            } else {
                Verdict::Same
            }
        }
    }
}

/// A step's numbers (means over its seeds).
#[derive(Debug, Clone)]
pub struct LadderRow {
    pub name: String,
    pub short: String,
    pub description: String,
    pub seeds: usize,
    pub code_size: Option<usize>,
    pub iwae_bits: Option<Stats>,
    pub elbo_bits: Option<Stats>,
    pub mse: Option<Stats>,
    /// PCA's test MSE at exactly `code_size` components (None when the PCA run lacks that k).
    pub pca_mse: Option<f64>,
    /// The sampler with the lowest mean test FD, and its FD over seeds.
    pub best_sampler: Option<String>,
    pub fd: Option<Stats>,
    /// The real-image floor (FD of real training images against the test images).
    pub floor: Option<f64>,
    /// FD of the test reconstructions: the decoder's own limit, below which no sampler through
    /// it can go.
    pub recon_fd: Option<Stats>,
    pub confidence: Option<f64>,
    pub real_confidence: Option<f64>,
    pub class_entropy: Option<f64>,
    pub max_class_entropy: Option<f64>,
    pub epochs: Option<Stats>,
    pub max_epochs: Option<usize>,
    /// Runs that stopped at the epoch cap, of `seeds`.
    pub at_cap: usize,
    /// Test bits/dim compared with the step before: IWAE when both have it, else the ELBO's.
    pub bits_change: Option<(f64, Verdict)>,
    /// Test MSE compared with the step before: relative change and verdict.
    pub mse_change: Option<(f64, Verdict)>,
    /// FD / floor compared with the step before (lower is better).
    pub fd_change: Option<(f64, Verdict)>,
    /// The best sampler's improved precision and recall (means over seeds), on pixels and on the
    /// classifier's features.
    pub pr_pixels: Option<(f64, f64)>,
    pub pr_features: Option<(f64, f64)>,
    /// The same for real training images against the test images: what a perfect sampler scores.
    pub real_pr_pixels: Option<(f64, f64)>,
    pub real_pr_features: Option<(f64, f64)>,
    /// Pictures of the first seed's run: reconstructions, the best sampler's samples, and those
    /// samples beside their nearest training images.
    pub recon_png: Option<PathBuf>,
    pub samples_png: Option<PathBuf>,
    pub nn_png: Option<PathBuf>,
}

impl LadderRow {
    pub fn mse_ratio(&self) -> Option<f64> {
        Some(self.mse?.mean / self.pca_mse?)
    }

    pub fn fd_ratio(&self) -> Option<f64> {
        Some(self.fd?.mean / self.floor?)
    }

    pub fn recon_fd_ratio(&self) -> Option<f64> {
        Some(self.recon_fd?.mean / self.floor?)
    }

    /// The bits/dim the row is compared by: IWAE, else the ELBO's (both from the same runs).
    fn bits(&self, iwae: bool) -> Option<Stats> {
        if iwae {
            self.iwae_bits
        } else {
            self.elbo_bits
        }
    }
}

fn over<'a>(runs: &[&'a RunInfo], f: impl Fn(&'a RunInfo) -> Option<f64>) -> Option<Stats> {
    let v: Vec<f64> = runs.iter().filter_map(|r| f(r)).collect();
    // A metric counts only when every seed has it (else the mean mixes different runs).
    if v.len() < runs.len() {
        return None;
    }
    stats(&v)
}

fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

impl LadderView<'_> {
    /// One row per step with runs, in ladder order, each compared with the row before.
    pub fn rows(&self) -> Vec<LadderRow> {
        let mut rows: Vec<LadderRow> = Vec::new();
        for s in self.steps.iter().filter(|s| !s.runs.is_empty()) {
            let runs = &s.runs;
            let code_size = runs[0].latent_dim();
            let samplers: Vec<String> = runs[0]
                .test()
                .and_then(|m| m.eval.samples.as_ref())
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default();
            let best = samplers
                .iter()
                .filter_map(|name| {
                    let fd = over(runs, |r| r.test()?.eval.samples.as_ref()?.get(name)?.fd)?;
                    Some((name.clone(), fd))
                })
                .min_by(|a, b| a.1.mean.total_cmp(&b.1.mean));
            let score = |f: fn(&crate::format::SampleScores) -> Option<f64>| -> Option<f64> {
                let name = &best.as_ref()?.0;
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| f(r.test()?.eval.samples.as_ref()?.get(name)?))
                    .collect();
                mean(&v)
            };
            let clf = |f: fn(&crate::format::ClassifierInfo) -> Option<f64>| -> Option<f64> {
                let v: Vec<f64> = runs.iter().filter_map(|r| f(r.classifier()?)).collect();
                mean(&v)
            };
            let real = |f: fn(&crate::format::SampleScores) -> Option<f64>| -> Option<f64> {
                let v: Vec<f64> = runs
                    .iter()
                    .filter_map(|r| f(r.test()?.eval.real_vs_real.as_ref()?))
                    .collect();
                mean(&v)
            };
            let first = runs[0];
            let picture = |file: &str| {
                let p = first.dir.join(file);
                p.is_file().then_some(p)
            };
            let mut row = LadderRow {
                name: s.name.clone(),
                short: s.short.clone(),
                description: s.description.clone(),
                seeds: runs.len(),
                code_size,
                iwae_bits: over(runs, |r| r.test()?.eval.iwae_bits_per_dim),
                elbo_bits: over(runs, |r| r.test()?.bits_per_dim),
                mse: over(runs, |r| Some(r.test()?.mse)),
                pca_mse: code_size.and_then(|k| Some(self.pca?.pca_test(k)?.mse)),
                fd: best.as_ref().map(|b| b.1),
                floor: clf(|c| Some(c.fd_train_vs_test)),
                recon_fd: over(runs, |r| r.test()?.eval.reconstructions.as_ref()?.fd),
                confidence: score(|s| s.confidence),
                real_confidence: clf(|c| c.real_confidence),
                class_entropy: score(|s| s.class_entropy),
                max_class_entropy: score(|s| s.max_class_entropy),
                epochs: over(runs, |r| Some(r.vae()?.epochs_run as f64)),
                max_epochs: first.config_str("train.max_epochs").and_then(|s| s.parse().ok()),
                at_cap: runs
                    .iter()
                    .filter(|r| {
                        r.vae()
                            .is_some_and(|m| m.stopped_because == StopReason::MaxEpochs)
                    })
                    .count(),
                bits_change: None,
                mse_change: None,
                fd_change: None,
                pr_pixels: score(|s| s.precision_pixels).zip(score(|s| s.recall_pixels)),
                pr_features: score(|s| s.precision_features).zip(score(|s| s.recall_features)),
                real_pr_pixels: real(|s| s.precision_pixels).zip(real(|s| s.recall_pixels)),
                real_pr_features: real(|s| s.precision_features).zip(real(|s| s.recall_features)),
                recon_png: picture("recon_test.png"),
                samples_png: best
                    .as_ref()
                    .and_then(|b| picture(&format!("samples_{}.png", b.0))),
                nn_png: best
                    .as_ref()
                    .and_then(|b| picture(&format!("samples_{}_nn.png", b.0))),
                best_sampler: best.map(|b| b.0),
            };
            if let Some(prev) = rows.last() {
                let iwae = prev.iwae_bits.is_some() && row.iwae_bits.is_some();
                row.bits_change = match (prev.bits(iwae), row.bits(iwae)) {
                    (Some(a), Some(b)) => Some((b.mean - a.mean, step_verdict(&a, &b))),
                    _ => None,
                };
                row.mse_change = match (prev.mse, row.mse) {
                    (Some(a), Some(b)) => Some((
                        100.0 * (b.mean - a.mean) / a.mean.abs().max(1e-300),
                        step_verdict(&a, &b),
                    )),
                    _ => None,
                };
                row.fd_change = match (prev.fd, row.fd, prev.floor, row.floor) {
                    (Some(a), Some(b), Some(fa), Some(fb)) => {
                        let scale = |s: Stats, f: f64| Stats {
                            mean: s.mean / f,
                            sd: s.sd.map(|d| d / f),
                            min: s.min / f,
                            max: s.max / f,
                            ..s
                        };
                        let (a, b) = (scale(a, fa), scale(b, fb));
                        Some((b.mean - a.mean, step_verdict(&a, &b)))
                    }
                    _ => None,
                };
            }
            rows.push(row);
        }
        rows
    }
}

fn stat_text(s: Option<Stats>) -> String {
    match s {
        None => "–".into(),
        Some(s) => match s.sd {
            Some(sd) => num_pm(s.mean, sd),
            None => num(s.mean),
        },
    }
}

fn opt(v: Option<f64>) -> String {
    v.map(num).unwrap_or_else(|| "–".into())
}

fn sampler_label(name: &str) -> String {
    match name {
        "two_stage" => "two-stage".into(),
        "gmm" => "GMM".into(),
        other => other.replace('_', " "),
    }
}

/// What a step's change against the step before shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Bits per dimension, absolute.
    Bits,
    /// Test MSE, percent.
    MsePercent,
    /// FD / floor, absolute.
    FdRatio,
}

/// A change as short signed text: "-0.026", "+5.4%", "-1.59".
pub fn change_text(d: f64, what: Change) -> String {
    match what {
        Change::Bits => format!("{d:+.3}"),
        Change::MsePercent => format!("{d:+.1}%"),
        Change::FdRatio => format!("{d:+.2}"),
    }
}

fn two(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.2}")).unwrap_or_else(|| "–".into())
}

/// "precision / recall" of a pair, two decimals each.
fn pr_text(pr: Option<(f64, f64)>) -> String {
    match pr {
        Some((p, r)) => format!("{p:.2} / {r:.2}"),
        None => "–".into(),
    }
}

/// The best sampler's precision / recall on pixels, on features below in small type; the real
/// training images' pair (the yardstick) on hover.
fn pr_cell(r: &LadderRow) -> Markup {
    let title = format!(
        "precision / recall of the best sampler's samples; real training images score {} (pixels), {} (features)",
        pr_text(r.real_pr_pixels),
        pr_text(r.real_pr_features)
    );
    html! {
        td title=(title) {
            (pr_text(r.pr_pixels))
            @if r.pr_features.is_some() {
                br; span.v { "features" br; (pr_text(r.pr_features)) }
            }
        }
    }
}

fn change_cell(change: Option<(f64, Verdict)>, what: Change) -> Markup {
    match change {
        None => html! { td.v { "–" } },
        Some((d, v)) => {
            let class = match v {
                Verdict::Better => "v better",
                Verdict::Worse => "v worse",
                _ => "v",
            };
            html! { td class=(class) { (change_text(d, what)) br; (v.word()) } }
        }
    }
}

/// A PNG shown as a small thumbnail (full size on click is not needed: the run's card has it).
fn thumb(path: &Path, alt: &str) -> Result<Markup> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let src = format!("data:image/png;base64,{}", base64::encode(&bytes));
    Ok(html! { img.thumb alt=(alt) src=(src); })
}

fn table(rows: &[LadderRow]) -> Markup {
    html! {
        table.ladder {
            thead {
                tr.groups {
                    th.l rowspan="2" { "step" }
                    th.l rowspan="2" { "what changed" }
                    th rowspan="2" { "code" br; "size" }
                    th colspan="3" { "test bits/dim" }
                    th colspan="4" { "test reconstruction" }
                    th colspan="4" { "best sampler" }
                    th colspan="2" { "classifier on samples" }
                    th rowspan="2" { "epochs" br; "(cap)" }
                }
                tr {
                    th { "IWAE" }
                    th { "ELBO" }
                    th { "vs step" br; "before" }
                    th { "MSE" }
                    th { "PCA MSE" br; "same k" }
                    th { "VAE /" br; "PCA" }
                    th { "vs step" br; "before" }
                    th.l { "sampler" }
                    th { "FD" }
                    th { "FD /" br; "floor" }
                    th title="improved precision / recall (k = 3 nearest neighbours) on raw pixels; on the classifier's features below" { "prec. / rec." br; "(pixels)" }
                    th { "confidence" br; "(real)" }
                    th { "class entropy" br; "(max ln K)" }
                }
            }
            tbody {
                @for r in rows {
                    tr id={ "ladder-" (r.name) } {
                        td.l { (r.name) @if r.seeds > 1 { br; span.v { (r.seeds) " seeds" } } }
                        td.change title=(r.description) { (r.short) }
                        td { (r.code_size.map(|k| k.to_string()).unwrap_or_else(|| "–".into())) }
                        td { (stat_text(r.iwae_bits)) }
                        td { (stat_text(r.elbo_bits)) }
                        (change_cell(r.bits_change, Change::Bits))
                        td { (stat_text(r.mse)) }
                        td { (opt(r.pca_mse)) }
                        td { (opt(r.mse_ratio())) }
                        (change_cell(r.mse_change, Change::MsePercent))
                        td.l { (r.best_sampler.as_deref().map(sampler_label).unwrap_or_else(|| "–".into())) }
                        td { (stat_text(r.fd)) }
                        td {
                            (opt(r.fd_ratio()))
                            @if let Some(x) = r.recon_fd_ratio() {
                                br; span.v title="FD of the test reconstructions / floor: the decoder's own limit" { "recons" br; (num(x)) }
                            }
                        }
                        (pr_cell(r))
                        td { (two(r.confidence)) " (" (two(r.real_confidence)) ")" }
                        td { (two(r.class_entropy)) " (" (two(r.max_class_entropy)) ")" }
                        td {
                            (r.epochs.map(|e| num(e.mean)).unwrap_or_else(|| "–".into()))
                            " (" (r.max_epochs.map(|m| m.to_string()).unwrap_or_else(|| "–".into())) ")"
                            @if r.at_cap > 0 {
                                br; span.v { @if r.seeds > 1 { (r.at_cap) "/" (r.seeds) " " } "hit the cap" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Test MSE / PCA MSE and FD / floor per step, on one log axis with the line at 1 (as good as
/// PCA / as real images).
pub fn ratio_chart(rows: &[LadderRow]) -> Option<Chart> {
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    let pts = |f: &dyn Fn(&LadderRow) -> Option<f64>| -> Vec<(f64, f64)> {
        rows.iter()
            .enumerate()
            .filter_map(|(i, r)| f(r).filter(|v| v.is_finite() && *v > 0.0).map(|v| (i as f64, v)))
            .collect()
    };
    let mse = pts(&|r| r.mse_ratio());
    let fd = pts(&|r| r.fd_ratio());
    if mse.is_empty() && fd.is_empty() {
        return None;
    }
    let mut c = Chart::new(
        "Each step against its baselines (lower is better; 1 = as good as the baseline)",
        Axis::categorical("ladder step", names),
        Axis::log("ratio (log scale)"),
    );
    let mut a = Series::new(
        "test MSE / PCA MSE at the same code size",
        mse,
        Mark::LinePoints,
        0,
    );
    a.shape = Shape::Circle;
    c.series.push(a);
    let mut b = Series::new("best sampler's FD / real-image floor", fd, Mark::LinePoints, 1);
    b.shape = Shape::Square;
    c.series.push(b);
    let n = rows.len().max(1) as f64;
    let mut one = Series::new(
        "1: PCA's MSE / the floor",
        vec![(-0.2, 1.0), (n - 0.8, 1.0)],
        Mark::Line,
        7,
    );
    one.dashed = true;
    one.width = 1;
    c.series.push(one);
    c.width = 900;
    c.height = 420;
    Some(c)
}

/// The real training images' precision / recall against the test images, the samplers' yardstick
/// (the mean over the steps that have it).
fn real_note(rows: &[LadderRow]) -> String {
    let avg = |f: fn(&LadderRow) -> Option<(f64, f64)>| {
        let v: Vec<(f64, f64)> = rows.iter().filter_map(f).collect();
        let n = v.len() as f64;
        (!v.is_empty()).then(|| {
            (
                v.iter().map(|x| x.0).sum::<f64>() / n,
                v.iter().map(|x| x.1).sum::<f64>() / n,
            )
        })
    };
    match (avg(|r| r.real_pr_pixels), avg(|r| r.real_pr_features)) {
        (None, None) => "no run recorded the real images' own precision / recall.".into(),
        (px, ft) => format!(
            "real training images score {} on pixels and {} on features (what a perfect sampler would; mean over the steps). High precision says samples lie near real images in that space, not that a person would recognise them: the samples beside their nearest training images let one judge.",
            pr_text(px),
            pr_text(ft)
        ),
    }
}

/// The ladder section of the report: the table, the pictures per step, the chart.
pub fn section(runs: &[RunInfo]) -> Result<Option<Markup>> {
    let Some(view) = find(runs)? else {
        return Ok(None);
    };
    let rows = view.rows();
    let chart = ratio_chart(&rows).map(|c| c.svg()).transpose()?;
    let mut pics = Vec::new();
    for r in &rows {
        let recon = r
            .recon_png
            .as_ref()
            .map(|p| thumb(p, &format!("{}: reconstructions", r.name)))
            .transpose()?;
        let samples = r
            .samples_png
            .as_ref()
            .map(|p| thumb(p, &format!("{}: samples", r.name)))
            .transpose()?;
        let nn = r
            .nn_png
            .as_ref()
            .map(|p| {
                thumb(
                    p,
                    &format!("{}: samples beside their nearest training images", r.name),
                )
            })
            .transpose()?;
        pics.push(html! {
            tr {
                td.l { a href={ "#run-" (view.steps.iter().find(|s| s.name == r.name).and_then(|s| s.runs.first()).map(|x| x.name.as_str()).unwrap_or("")) } { (r.name) } }
                td.desc { (r.description) }
                td { @if let Some(m) = recon { (m) } @else { "–" } }
                td {
                    @if let Some(m) = samples {
                        (m)
                        span.v { (r.best_sampler.as_deref().map(sampler_label).unwrap_or_default()) }
                    } @else { "–" }
                }
                td { @if let Some(m) = nn { (m) } @else { "–" } }
            }
        });
    }
    let pca_note = match view.pca {
        Some(p) => format!(
            "PCA MSE is run {} at k = the step's code size (every latent group counted).",
            p.name
        ),
        None => "No PCA run among these runs: no PCA column.".into(),
    };
    Ok(Some(html! {
        div.note {
            "One change per step (the order of " (view.source) "). Each step is compared with the step before it: "
            "better / worse by the sign with one run a side; with seeds, a difference not larger than sqrt(sd_a² + sd_b²) of the two steps' seed standard deviations is within seed spread. "
            "Bits/dim are compared by IWAE where both steps have it, else by the ELBO; Bernoulli steps have none (BCE is not a density on grey levels). "
            (pca_note)
            " FD / floor: the best sampler's Frechet distance over the real training images' FD against the test images."
            " Precision is the fraction of samples within the 3-nearest-neighbour radius of some real test image, recall the fraction of real test images within that radius of some sample (Kynkäänniemi et al. 2019), on raw pixels and on the classifier's features; "
            (real_note(&rows))
        }
        div.tablewrap { (table(&rows)) }
        @if let Some(svg) = chart {
            div.card { figure.chart { (PreEscaped(svg)) figcaption { "Below the dashed line a step beats PCA (MSE) or real images (FD)." } } }
        }
        div.tablewrap {
            table.ladder-pics {
                thead { tr { th.l { "step" } th.l { "what changed" } th.l { "reconstructions (test)" } th.l { "best sampler's samples" } th.l { "sample | nearest training image" } } }
                tbody { @for p in &pics { (p) } }
            }
        }
    }))
}

/// "Which change bought what?": the steps that helped most and the ones that did not.
pub fn answer(runs: &[RunInfo]) -> Option<Answer> {
    let view = find(runs).ok()??;
    let rows = view.rows();
    if rows.len() < 2 {
        return None;
    }
    let mut table = Table::new(&[
        "step",
        "what changed",
        "bits/dim",
        "test MSE",
        "FD / floor",
        "verdict",
    ]);
    // (name, MSE change %, bits/dim change) of the steps that helped
    let mut gains: Vec<(String, Option<f64>, Option<f64>)> = Vec::new();
    let mut no_help = Vec::new();
    let mut mixed = Vec::new();
    let fmt_change = |c: Option<(f64, Verdict)>, what: Change| match c {
        Some((d, v)) => format!("{} {}", change_text(d, what), v.word()),
        None => "–".into(),
    };
    for r in rows.iter().skip(1) {
        let verdicts: Vec<Verdict> = [r.bits_change, r.mse_change, r.fd_change]
            .iter()
            .flatten()
            .map(|c| c.1)
            .collect();
        let better = verdicts.contains(&Verdict::Better);
        let worse = verdicts.contains(&Verdict::Worse);
        let verdict = match (better, worse) {
            _ if verdicts.is_empty() => "no numbers to compare",
            (true, false) => {
                gains.push((
                    r.name.clone(),
                    r.mse_change.map(|c| c.0),
                    r.bits_change.map(|c| c.0),
                ));
                "helped"
            }
            (true, true) => {
                mixed.push(r.name.clone());
                "mixed"
            }
            _ => {
                no_help.push(r.name.clone());
                "did not help"
            }
        };
        table.row(vec![
            r.name.clone(),
            r.short.clone(),
            fmt_change(r.bits_change, Change::Bits),
            fmt_change(r.mse_change, Change::MsePercent),
            fmt_change(r.fd_change, Change::FdRatio),
            verdict.into(),
        ]);
    }
    let seeds = rows.iter().any(|r| r.seeds > 1);
    Some(Answer {
        question: "Which change bought what?".into(),
        verdict: ladder_verdict(&gains, &mixed, &no_help),
        table: Some(table),
        notes: vec![if seeds {
            "Each step against the step before; a difference within sqrt(sd_a² + sd_b²) of the seeds counts as no change.".into()
        } else {
            "Each step against the step before, one run per step: there is no seed spread to judge these differences by (reproduce --executor local --seeds 0,1,2 gives one).".into()
        }],
    })
}

/// The verdict line: the biggest gains first (by the MSE drop, then the bits/dim drop), then the
/// steps that did not help. `gains` are (step, MSE change %, bits/dim change); a change is
/// absent when the step before has no such number (a Bernoulli step has no bits/dim).
pub fn ladder_verdict(
    gains: &[(String, Option<f64>, Option<f64>)],
    mixed: &[String],
    no_help: &[String],
) -> String {
    let mut g = gains.to_vec();
    let key = |x: Option<f64>| x.unwrap_or(0.0);
    g.sort_by(|a, b| key(a.1).total_cmp(&key(b.1)).then(key(a.2).total_cmp(&key(b.2))));
    let biggest: Vec<String> = g
        .iter()
        .take(2)
        .map(|(n, mse, bits)| {
            let mut counts = Vec::new();
            if let Some(m) = mse {
                counts.push(format!("test MSE {}", change_text(*m, Change::MsePercent)));
            }
            if let Some(b) = bits {
                counts.push(format!("bits/dim {}", change_text(*b, Change::Bits)));
            }
            if counts.is_empty() {
                n.clone()
            } else {
                format!("{n} ({})", counts.join(", "))
            }
        })
        .collect();
    let mut parts = Vec::new();
    if biggest.is_empty() {
        parts.push("No step helped on every count.".to_string());
    } else {
        parts.push(format!("The biggest gains: {}.", biggest.join(" and ")));
    }
    if !mixed.is_empty() {
        parts.push(format!(
            "Mixed (better on one count, worse on another): {}.",
            mixed.join(", ")
        ));
    }
    if no_help.is_empty() && mixed.is_empty() && !gains.is_empty() {
        parts.push("Every step helped.".to_string());
    } else if !no_help.is_empty() {
        parts.push(format!("Did not help: {}.", no_help.join(", ")));
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::ladder::LadderStepEntry;
    use crate::report::tests::{write_pca_run, write_vae_run};

    fn entry(name: &str) -> LadderStepEntry {
        LadderStepEntry {
            name: name.into(),
            description: format!("Ladder step: {name} changes one thing (in full)."),
            short: format!("{name} changes one thing"),
            config: format!("configs/{name}.toml").into(),
        }
    }

    #[test]
    fn a_manifest_orders_the_steps_and_groups_their_seeds() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        write_pca_run(d, "pca");
        // Steps whose names sort against the ladder order: the manifest decides.
        for (i, mse) in [0.010, 0.012].iter().enumerate() {
            write_vae_run(
                d,
                &format!("b-first,seed={i}"),
                4,
                "gaussian_optimal",
                *mse,
                i as u32,
            );
        }
        for (i, mse) in [0.0112, 0.0118].iter().enumerate() {
            write_vae_run(
                d,
                &format!("a-second,seed={i}"),
                16,
                "gaussian_optimal",
                *mse,
                5 + i as u32,
            );
        }
        for (i, mse) in [0.005, 0.0052].iter().enumerate() {
            write_vae_run(
                d,
                &format!("c-third,seed={i}"),
                16,
                "gaussian_optimal",
                *mse,
                9 + i as u32,
            );
        }
        write_vae_run(d, "unrelated", 4, "gaussian_optimal", 0.5, 20);
        LadderManifest::new(vec![entry("b-first"), entry("a-second"), entry("c-third")])
            .write_in(d)
            .unwrap();
        let runs = crate::report::load_runs(&[d.to_path_buf()]).unwrap();
        let view = find(&runs).unwrap().expect("a ladder");
        let rows = view.rows();
        assert_eq!(
            rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["b-first", "a-second", "c-third"]
        );
        assert!(rows.iter().all(|r| r.seeds == 2));
        assert!((rows[0].mse.unwrap().mean - 0.011).abs() < 1e-15);
        // PCA at exactly each step's code size (the hand-made PCA run has k = 4, 16, 64).
        assert_eq!(rows[0].pca_mse, Some(0.02));
        assert_eq!(rows[1].pca_mse, Some(0.01));
        assert!(rows[0].mse_change.is_none());
        assert_eq!(rows[1].mse_change.unwrap().1, Verdict::WithinSpread);
        assert_eq!(rows[2].mse_change.unwrap().1, Verdict::Better);
        // The same FD everywhere: no change, judged within the spread (sd 0 on both sides).
        assert_eq!(rows[1].best_sampler.as_deref(), Some("gmm"));
        let html = section(&runs).unwrap().unwrap().into_string();
        assert_eq!(html.matches("<tr id=\"ladder-").count(), 3);
        assert!(html.contains("2 seeds") && html.contains("within seed spread"));
        // Precision / recall of the best sampler beside its FD: pixels, features below; the real
        // images' pair in the note; its samples beside their nearest training images.
        assert!(html.contains("prec. / rec.<br>(pixels)"), "{html}");
        assert_eq!(
            html.matches("0.41 / 0.22<br><span class=\"v\">features<br>0.60 / 0.35</span>")
                .count(),
            3
        );
        assert!(html.contains("real training images score 0.71 / 0.69 on pixels and 0.80 / 0.78 on features"));
        assert_eq!(
            html.matches("samples beside their nearest training images\"")
                .count(),
            3
        );
        let a = answer(&runs).unwrap();
        assert!(
            a.verdict.starts_with("The biggest gains: c-third"),
            "{}",
            a.verdict
        );
        assert!(a.verdict.contains("Did not help: a-second"), "{}", a.verdict);
    }

    #[test]
    fn without_a_manifest_the_shipped_step_names_make_a_ladder() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let steps = embedded_steps();
        write_vae_run(d, "some-run", 4, "gaussian_optimal", 0.01, 1);
        let runs = crate::report::load_runs(&[d.to_path_buf()]).unwrap();
        assert!(find(&runs).unwrap().is_none());
        assert!(answer(&runs).is_none());
        for (i, s) in steps.iter().take(2).enumerate() {
            write_vae_run(
                d,
                &s.name,
                4,
                "gaussian_optimal",
                0.01 - 0.001 * i as f64,
                i as u32,
            );
        }
        let runs = crate::report::load_runs(&[d.to_path_buf()]).unwrap();
        let rows = find(&runs).unwrap().expect("a ladder").rows();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, steps[0].name);
        assert_eq!(rows[0].description, steps[0].description);
        // One run a side: the sign decides.
        assert_eq!(rows[1].mse_change.unwrap().1, Verdict::Better);
        assert!(rows[0].pca_mse.is_none(), "no PCA run here");
    }

    fn st(v: &[f64]) -> Stats {
        stats(v).unwrap()
    }

    #[test]
    fn one_run_a_side_is_judged_by_the_sign() {
        assert_eq!(step_verdict(&st(&[1.0]), &st(&[0.9])), Verdict::Better);
        assert_eq!(step_verdict(&st(&[1.0]), &st(&[1.1])), Verdict::Worse);
        assert_eq!(step_verdict(&st(&[1.0]), &st(&[1.0])), Verdict::Same);
        // One side with seeds, the other without: still no spread to judge by.
        assert_eq!(step_verdict(&st(&[1.0, 1.2]), &st(&[1.05])), Verdict::Better);
    }

    #[test]
    fn with_seeds_a_difference_below_the_spread_is_within_it() {
        // sd 1 on each side: spread sqrt(2) ~ 1.414.
        let a = st(&[0.0, 1.0, 2.0]);
        assert_eq!(step_verdict(&a, &st(&[1.4, 2.4, 3.4])), Verdict::WithinSpread);
        assert_eq!(step_verdict(&a, &st(&[-0.4, 0.6, -1.4])), Verdict::WithinSpread);
        assert_eq!(step_verdict(&a, &st(&[1.5, 2.5, 3.5])), Verdict::Worse);
        assert_eq!(step_verdict(&a, &st(&[-0.5, 0.5, -1.5])), Verdict::Better);
    }

    #[test]
    fn the_verdict_names_the_biggest_gains_first_and_the_steps_that_did_not_help() {
        let g = vec![
            ("3-capacity".to_string(), Some(-5.0), Some(-0.01)),
            // After a Bernoulli step: no bits/dim to compare with.
            ("2-likelihood".to_string(), Some(-40.0), None),
            ("4-hierarchy".to_string(), Some(-12.0), Some(-0.2)),
        ];
        let v = ladder_verdict(&g, &[], &["5-residual".into(), "6-length".into()]);
        assert_eq!(
            v,
            "The biggest gains: 2-likelihood (test MSE -40.0%) and 4-hierarchy (test MSE -12.0%, bits/dim -0.200). Did not help: 5-residual, 6-length."
        );
        let v = ladder_verdict(&[], &["2-x".into()], &[]);
        assert_eq!(
            v,
            "No step helped on every count. Mixed (better on one count, worse on another): 2-x."
        );
        let v = ladder_verdict(&g[..1], &[], &[]);
        assert!(v.ends_with("Every step helped."), "{v}");
    }
}
