//! The report page: one self-contained HTML file (CSS inline, charts as inline SVG drawn by
//! [`crate::plot`], pictures as base64 PNG data URIs), so it can be mailed or opened offline.
//! The markup is a maud template: every interpolated value is escaped by the template engine.
use super::answers::{Answer, Table};
use super::runs::{RunInfo, RunKind};
use crate::format::{SampleScores, VaeSplitMetrics};
use crate::plot::{self, ModelPoint};
use anyhow::{Context, Result};
use maud::{html, Markup, PreEscaped, DOCTYPE};
use std::path::Path;

/// What the page says besides the runs.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub title: String,
    /// A line under the title (dataset, command that produced the runs, ...).
    pub subtitle: Option<String>,
    /// Questions of the experiment log with answers written from the numbers.
    pub answers: Vec<Answer>,
}

const CSS: &str = r#"
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1320px;margin:0 auto;padding:24px 28px 60px}
h1{font-size:26px;margin:4px 0 2px} h2{font-size:20px;margin:34px 0 10px;border-bottom:2px solid #dfe3ea;padding-bottom:4px}
h3{font-size:16px;margin:0 0 8px} .sub{color:#5a6475;margin:0 0 14px}
.note{background:#fff;border-left:4px solid #1f77b4;padding:8px 14px;margin:12px 0;border-radius:4px;font-size:14px}
table{border-collapse:collapse;background:#fff;font-size:12.5px;width:100%;box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{padding:6px 8px;border-bottom:1px solid #e8ebf0;text-align:right;white-space:nowrap}
th{background:#eef1f6;position:sticky;top:0;font-weight:600} td.l,th.l{text-align:left}
tr.pca td{color:#3d4a5c;background:#fbfcfd} tr:hover td{background:#f3f7ff}
td.best{font-weight:700;color:#0b6b2f}
table.runs th,table.runs td{padding:5px 7px} table.runs tr.groups th{text-align:center;border-bottom:1px solid #d5dae2;border-left:2px solid #fff}
table.runs td:first-child,table.runs tr.groups th:first-child{position:sticky;left:0;z-index:1;background:#fff;white-space:normal;min-width:7em;max-width:12em;border-right:1px solid #dfe3ea}
table.runs tr.groups th:first-child{z-index:2;background:#eef1f6} table.runs tr.pca td:first-child{background:#fbfcfd}
table.runs td:last-child{white-space:normal;text-align:left} span.fd{display:block;white-space:nowrap} span.pr{display:block;white-space:normal;font-size:11px;color:#3d4a5c;margin-bottom:2px} table.runs td:nth-child(3){white-space:normal;min-width:5.5em}
@media (max-width:1100px){main{padding:18px 14px 40px} table.runs{font-size:12px} table.runs th,table.runs td{padding:4px 5px}}
.qa{background:#fff;border-radius:6px;padding:10px 16px;margin:8px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.qa b{display:block;margin-bottom:2px}
.card{background:#fff;border-radius:8px;padding:14px 18px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.meta{color:#5a6475;font-size:13px;margin-bottom:10px}
.figs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0} figcaption{font-size:12px;color:#5a6475;margin-top:3px}
img.grid{image-rendering:pixelated;border:1px solid #d5dae2;max-width:100%}
figure.chart svg{display:block;max-width:100%;height:auto;background:#fff}
.qa p.verdict{margin:2px 0 8px;font-weight:600;color:#123a6b} table.qa-table{width:auto;min-width:40%;font-size:12.5px;margin:4px 0}
table.qa-table th,table.qa-table td{padding:4px 10px} ul.notes{margin:8px 0 2px;padding-left:20px;font-size:13px;color:#3d4a5c} ul.notes li{margin:2px 0}
.tablewrap{overflow-x:auto;max-width:100%} details{margin-top:10px} summary{cursor:pointer;color:#1f4f8a;font-size:13px}
"#;

fn fmt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        Some(x) if x.is_infinite() => "∞".into(),
        _ => "–".into(),
    }
}

fn fmt_count(v: Option<u64>) -> String {
    match v {
        None => "–".into(),
        Some(n) if n >= 1_000_000 => format!("{:.2} M", n as f64 / 1e6),
        Some(n) if n >= 1_000 => format!("{:.1} k", n as f64 / 1e3),
        Some(n) => n.to_string(),
    }
}

/// A PNG as an `<img>` with a data URI, shown at twice its size when it is small.
pub fn img_tag(path: &Path, alt: &str) -> Result<Markup> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (w, _h) = png_size(&bytes).with_context(|| format!("{} is not a PNG file", path.display()))?;
    // Small grids are shown enlarged (pixelated), large ones at their size.
    let scale = if w < 200 { 2 } else { 1 };
    let src = format!("data:image/png;base64,{}", base64::encode(&bytes));
    Ok(html! { img.grid alt=(alt) width=(w * scale) src=(src); })
}

fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

/// Sample-quality cell: per sampler found in the split's `samples` object, its Frechet distance,
/// and below it (when recorded) its precision / recall on pixels and on classifier features, one
/// sampler per line so the cell stays narrow.
fn sample_score(run: &RunInfo, split: &str) -> Markup {
    let scores: Vec<(&str, &SampleScores)> = run
        .split(split)
        .and_then(|m| m.eval.samples.as_ref())
        .map(|samples| {
            ["prior", "gmm", "two_stage"]
                .into_iter()
                .filter_map(|name| Some((name, samples.get(name)?)))
                .filter(|(_, s)| s.fd.is_some() || s.precision_pixels.is_some())
                .collect()
        })
        .unwrap_or_default();
    html! {
        @if scores.is_empty() {
            "–"
        }
        @for (i, (name, s)) in scores.iter().enumerate() {
            @if i > 0 { " " }
            span.fd { (if *name == "two_stage" { "2-stage" } else { name }) " " (fmt(s.fd, 2)) }
            @if let Some(pr) = pr_line(s) {
                span.pr title="precision / recall: pixels; features" { (pr) }
            }
        }
    }
}

/// "P/R 0.41/0.22 px, 0.60/0.35 feat." of whichever pairs are recorded, breakable only after
/// the comma (the other spaces are no-break spaces).
fn pr_line(s: &SampleScores) -> Option<String> {
    let pair =
        |p: Option<f64>, r: Option<f64>, space: &str| Some(format!("{:.2}/{:.2}\u{a0}{space}", p?, r?));
    let parts: Vec<String> = [
        pair(s.precision_pixels, s.recall_pixels, "px"),
        pair(s.precision_features, s.recall_features, "feat."),
    ]
    .into_iter()
    .flatten()
    .collect();
    (!parts.is_empty()).then(|| format!("P/R\u{a0}{}", parts.join(", ")))
}

fn caption_for(file: &str) -> String {
    let stem = file.trim_end_matches(".png");
    match stem {
        "recon_test" => "test: originals | reconstructions".into(),
        "recon_val" => "validation: originals | reconstructions".into(),
        "recon_train" => "train: originals | reconstructions".into(),
        "loss_curve" => "loss curve".into(),
        "explained_variance" => "explained variance".into(),
        s if s.starts_with("samples_") && s.ends_with("_nn") => format!(
            "{} samples | their nearest training image (pixel distance, whole training split)",
            s["samples_".len()..s.len() - "_nn".len()].replace('_', "-")
        ),
        s if s.starts_with("samples_") => {
            format!("samples, {} sampler", s["samples_".len()..].replace('_', "-"))
        }
        s if s.starts_with("recon_k") => {
            let rest = &s["recon_k".len()..];
            let (k, split) = rest.split_once('_').unwrap_or((rest, ""));
            format!("k = {k}, {split}: originals | reconstructions")
        }
        s => s.replace('_', " "),
    }
}

/// Order of pictures in a run's card: reconstructions (PCA's in increasing k), samples by sampler,
/// then the latent space.
fn picture_rank(file: &str) -> (usize, u64, String) {
    let order = [
        "recon_test",
        "recon_k",
        "samples_prior",
        "samples_gmm",
        "samples_two_stage",
        "traversal",
        "interpolation",
        "factor_",
        "explained_variance",
        "loss_curve",
    ];
    let i = order
        .iter()
        .position(|p| file.starts_with(p))
        .unwrap_or(order.len());
    let k = file
        .strip_prefix("recon_k")
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect::<String>())
        .and_then(|digits| digits.parse().ok())
        .unwrap_or(0);
    (i, k, file.to_string())
}

/// Is this picture shown open (else inside a "more pictures" fold)?
fn is_primary(file: &str, run: &RunInfo) -> bool {
    if file.contains("_train") || file.contains("_val") {
        return false;
    }
    // The loss curve is drawn as SVG from metrics.jsonl when that exists.
    file != "loss_curve.png" || run.epochs.is_empty()
}

fn vae_row(run: &RunInfo) -> Markup {
    let test = run.test();
    let t = |f: fn(&VaeSplitMetrics) -> Option<f64>| test.and_then(f);
    let epochs = match run.vae() {
        Some(m) => format!("{} ({})", m.epochs_run, m.best_epoch),
        None => "–".into(),
    };
    html! {
        tr {
            td.l { (run.name) }
            td.l { (run.model_label()) }
            td.l { (run.likelihood_label()) }
            td { (run.latent_dim().map(|d| d.to_string()).unwrap_or_else(|| "–".into())) }
            td { (fmt_count(run.n_params)) }
            td { (epochs) }
            td.l { (run.stopped_because().unwrap_or("–")) }
            td { (fmt(t(|m| Some(m.neg_elbo_pixels_or_model())), 1)) }
            td { (fmt(t(|m| m.bits_per_dim), 3)) }
            td { (fmt(t(|m| m.eval.iwae), 1)) }
            td { (fmt(t(|m| Some(m.mse)), 5)) }
            td { (fmt(t(|m| Some(m.psnr)), 2)) }
            td { (fmt(t(|m| m.eval.ssim), 3)) }
            td { (fmt(t(|m| m.eval.active_units.map(|u| u as f64)), 0)) }
            td.l { (sample_score(run, "test")) }
        }
    }
}

fn pca_rows(run: &RunInfo) -> Markup {
    html! {
        @for k in run.pca_components() {
            @let test = run.pca_test(k);
            tr.pca {
                td.l { (run.name) " k=" (k) }
                td.l { "PCA" }
                td.l { "Gaussian (PPCA)" }
                td { (k) }
                td { (fmt_count(run.pca_dim().map(|d| (k as u64 + 1) * d as u64))) }
                td { "–" }
                td.l { "closed form" }
                td { (fmt(test.and_then(|m| m.ppca_nll), 1)) }
                td { (fmt(test.and_then(|m| m.ppca_bits_per_dim), 3)) }
                td { "exact" }
                td { (fmt(test.map(|m| m.mse), 5)) }
                td { (fmt(test.map(|m| m.psnr), 2)) }
                // PCA has no SSIM in its metrics.
                td { "–" }
                td { "–" }
                td.l { "–" }
            }
        }
    }
}

fn runs_table(runs: &[RunInfo]) -> Markup {
    html! {
        table.runs {
            thead {
                tr.groups {
                    th.l rowspan="2" { "run" }
                    th colspan="4" { "model" }
                    th colspan="2" { "training" }
                    th colspan="3" { "test likelihood" }
                    th colspan="3" { "test reconstruction" }
                    th colspan="2" { "latents and samples" }
                }
                tr {
                    th.l { "model" }
                    th.l { "likelihood" }
                    th { "latent" }
                    th { "params" }
                    th { "epochs" br; "(best)" }
                    th.l { "stopped" }
                    th { "−ELBO" br; "nats/img" }
                    th { "bits/dim" }
                    th { "IWAE" br; "nats/img" }
                    th { "MSE" }
                    th { "PSNR" br; "dB" }
                    th { "SSIM" }
                    th { "active" br; "units" }
                    th.l { "sample FD" br; "(lower is better)" br; span.v { "P/R: precision / recall" } }
                }
            }
            tbody {
                @for run in runs {
                    @match run.kind {
                        RunKind::Vae => (vae_row(run)),
                        RunKind::Pca => (pca_rows(run)),
                    }
                }
            }
        }
    }
}

impl RunInfo {
    /// Pixels per image of a PCA run, from the saved model's header.
    pub fn pca_dim(&self) -> Option<usize> {
        use std::io::Read;
        let mut f = std::fs::File::open(self.dir.join("pca.safetensors")).ok()?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len).ok()?;
        let len = u64::from_le_bytes(len).min(10_000_000) as usize;
        let mut header = vec![0u8; len];
        f.read_exact(&mut header).ok()?;
        let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
        let shape = header.get("mean")?.get("shape")?.as_array()?;
        shape.iter().map(|v| v.as_u64().map(|x| x as usize)).product()
    }
}

/// An inline SVG chart; plotters writes the markup (its text escaped by the SVG backend).
fn chart(c: &plot::Chart) -> Result<Markup> {
    Ok(PreEscaped(c.svg()?))
}

/// Test MSE of PCA against k (a line per PCA run), each VAE a marked point at its latent size,
/// named in the legend.
pub fn mse_against_code_size(runs: &[RunInfo]) -> Option<plot::Chart> {
    let pcas: Vec<&RunInfo> = runs.iter().filter(|r| r.kind == RunKind::Pca).collect();
    let baseline: Vec<(f64, f64)> = pcas
        .first()
        .map(|run| {
            run.pca_components()
                .into_iter()
                .filter_map(|k| run.pca_test(k).map(|m| (k as f64, m.mse)))
                .collect()
        })
        .unwrap_or_default();
    let models: Vec<ModelPoint> = runs
        .iter()
        .filter(|r| r.kind == RunKind::Vae)
        .filter_map(|r| {
            Some(ModelPoint {
                name: r.name.clone(),
                k: r.latent_dim()? as f64,
                value: r.test()?.mse,
            })
        })
        .collect();
    if baseline.is_empty() && models.is_empty() {
        return None;
    }
    let baseline_name = match pcas.first() {
        Some(p) => format!("PCA ({}), test MSE at k", p.name),
        None => "PCA (no run)".into(),
    };
    let mut c = plot::pca_and_models(
        "Test reconstruction MSE against code size",
        "test MSE per pixel (log scale)",
        &baseline_name,
        &baseline,
        &models,
    );
    // Further PCA runs (e.g. another dataset size) as dashed lines.
    for (i, run) in pcas.iter().enumerate().skip(1) {
        let pts: Vec<(f64, f64)> = run
            .pca_components()
            .into_iter()
            .filter_map(|k| run.pca_test(k).map(|m| (k as f64, m.mse)))
            .collect();
        let mut s = plot::Series::new(&format!("PCA ({})", run.name), pts, plot::Mark::LinePoints, 0);
        s.dashed = true;
        s.shape = plot::Shape::ALL[i % plot::Shape::ALL.len()];
        c.series.push(s);
    }
    c.width = 900;
    c.height = 460;
    Some(c)
}

/// Train and validation loss per epoch of a run, the best epoch marked.
pub fn loss_chart(run: &RunInfo) -> Option<plot::Chart> {
    let train = run.train_losses();
    let val = run.val_losses();
    if train.is_empty() && val.is_empty() {
        return None;
    }
    let mut curves = vec![];
    if !train.is_empty() {
        curves.push(("train", train));
    }
    if !val.is_empty() {
        curves.push(("validation", val));
    }
    let best = run.vae().and_then(|m| {
        let e = m.best_epoch as f64;
        let p = curves.last()?.1.iter().find(|p| p.0 == e)?;
        Some((e, p.1))
    });
    let mut c = plot::loss_curves(
        &format!("{}: loss per epoch", run.name),
        "loss, nats per image",
        &curves,
        best,
    );
    c.width = 640;
    c.height = 380;
    Some(c)
}

fn run_card(run: &RunInfo) -> Result<Markup> {
    let mut meta = vec![run.model_label(), run.likelihood_label()];
    if let Some(l) = run.latent_dim() {
        meta.push(format!("latent {l}"));
    }
    if let Some(b) = run.config_str("kl.beta") {
        meta.push(format!("KL weight {b}"));
    }
    if let Some(st) = run.stopped_because() {
        meta.push(format!("stopped: {st}"));
    }
    if let Some(d) = run.config_str("data.spec") {
        meta.push(format!("data {d}"));
    }
    let loss = loss_chart(run).map(|c| chart(&c)).transpose()?;
    let mut images = run.images.clone();
    images.sort_by_key(|p| {
        picture_rank(
            &p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    });
    let mut primary = Vec::new();
    let mut more = Vec::new();
    for img in &images {
        let file = img
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fig = html! {
            figure {
                (img_tag(img, &file)?)
                figcaption { (caption_for(&file)) }
            }
        };
        if is_primary(&file, run) {
            primary.push(fig);
        } else {
            more.push(fig);
        }
    }
    Ok(html! {
        div.card id={ "run-" (run.name) } {
            h3 { (run.name) }
            div.meta { (meta.join(" · ")) " — " code { (run.dir.display()) } }
            div.figs {
                @if let Some(svg) = loss {
                    figure.chart { (svg) }
                }
                @for f in &primary { (f) }
            }
            @if !more.is_empty() {
                details {
                    summary { "training and validation pictures" }
                    div.figs { @for f in &more { (f) } }
                }
            }
        }
    })
}

fn answer_table(t: &Table) -> Markup {
    html! {
        div.tablewrap {
            table.qa-table {
                thead { tr { @for (i, c) in t.columns.iter().enumerate() { th.l[i == 0] { (c) } } } }
                tbody {
                    @for row in &t.rows {
                        tr { @for (i, c) in row.iter().enumerate() { td.l[i == 0] { (c) } } }
                    }
                }
            }
        }
    }
}

fn answer(i: usize, a: &Answer) -> Markup {
    html! {
        div.qa id={ "answer-" (i + 1) } {
            b { (a.question) }
            p.verdict { (a.verdict) }
            @if let Some(t) = &a.table { (answer_table(t)) }
            @if !a.notes.is_empty() {
                ul.notes { @for n in &a.notes { li { (n) } } }
            }
        }
    }
}

/// The whole page for these runs.
pub fn render(runs: &[RunInfo], opts: &ReportOptions) -> Result<String> {
    let title = if opts.title.is_empty() {
        "norbvae report"
    } else {
        &opts.title
    };
    let accuracy = runs.iter().find_map(|r| r.classifier().map(|c| c.test_accuracy));
    let real_fd = runs
        .iter()
        .find_map(|r| r.classifier().map(|c| c.fd_train_vs_test));
    let real_pr = runs
        .iter()
        .find_map(|r| pr_line(r.test()?.eval.real_vs_real.as_ref()?));
    let mse_chart = mse_against_code_size(runs).map(|c| chart(&c)).transpose()?;
    let cards = runs.iter().map(run_card).collect::<Result<Vec<_>>>()?;
    let ladder = super::ladder::section(runs)?;
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (title) }
                style { (PreEscaped(CSS)) (PreEscaped(super::ladder::CSS)) }
            }
            body {
                main {
                    h1 { (title) }
                    @if let Some(sub) = &opts.subtitle {
                        p.sub { (sub) }
                    }
                    div.note {
                        (runs.len()) " runs. Losses are negative log-likelihoods in nats per image (lower is better); PCA rows give the exact probabilistic-PCA likelihood. Sample FD is the Frechet distance between the features of real test images and of generated samples under a small classifier trained on this dataset's labels"
                        @if let Some(a) = accuracy { (format!(" (its test accuracy: {:.1}%)", 100.0 * a)) }
                        @if let Some(f) = real_fd { (format!("; real training images score {f:.2} against the test images, the floor to compare with")) }
                        ". Precision (P) is the fraction of samples within the 3-nearest-neighbour radius of some real test image, recall (R) the fraction of real test images within that radius of some sample (Kynkäänniemi et al. 2019), on raw pixels (px) and on the classifier's features (feat.)"
                        @if let Some(pr) = &real_pr { "; real training images score " (pr) ", what a perfect sampler would" }
                        ". Neither says a person would recognise a sample: the pictures of samples beside their nearest training images let one judge."
                    }
                    @if !opts.answers.is_empty() {
                        h2 { "The log's questions, answered from the numbers" }
                        @for (i, a) in opts.answers.iter().enumerate() { (answer(i, a)) }
                    }
                    @if let Some(l) = ladder {
                        h2 id="ladder" { "The improvement ladder" }
                        (l)
                    }
                    h2 { "All runs" }
                    div.tablewrap { (runs_table(runs)) }
                    @if let Some(svg) = mse_chart {
                        h2 { "PCA against the VAEs" }
                        div.card {
                            figure.chart {
                                (svg)
                                figcaption { "PCA test MSE for each k (line); each VAE at its latent size (marker, named in the legend with its k and MSE). A VAE below the line reconstructs better than PCA with as many numbers per image." }
                            }
                        }
                    }
                    h2 { "Runs" }
                    @for c in &cards { (c) }
                }
            }
        }
    };
    Ok(page.into_string() + "\n")
}
