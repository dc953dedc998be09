//! The report page: one self-contained HTML file (CSS inline, charts as inline SVG, pictures as
//! base64 PNG data URIs), so it can be mailed or opened offline.
use super::runs::{RunInfo, RunKind};
use super::svg::{escape, Chart, Series, PALETTE};
use crate::format::VaeSplitMetrics;
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// What the page says besides the runs.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    pub title: String,
    /// A line under the title (dataset, command that produced the runs, ...).
    pub subtitle: Option<String>,
    /// Questions of the experiment log with answers written from the numbers.
    pub answers: Vec<(String, String)>,
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
table.runs td:last-child{white-space:normal;text-align:left} span.fd{display:block;white-space:nowrap} table.runs td:nth-child(3){white-space:normal;min-width:5.5em}
@media (max-width:1100px){main{padding:18px 14px 40px} table.runs{font-size:12px} table.runs th,table.runs td{padding:4px 5px}}
.qa{background:#fff;border-radius:6px;padding:10px 16px;margin:8px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.qa b{display:block;margin-bottom:2px}
.card{background:#fff;border-radius:8px;padding:14px 18px;margin:16px 0;box-shadow:0 1px 3px rgba(0,0,0,.08)}
.meta{color:#5a6475;font-size:13px;margin-bottom:10px}
.figs{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
figure{margin:0} figcaption{font-size:12px;color:#5a6475;margin-top:3px}
img.grid{image-rendering:pixelated;border:1px solid #d5dae2;max-width:100%}
svg.chart{background:#fff;font-size:11px;max-width:100%;height:auto} .ctitle{font-size:13px;font-weight:600} .tick{fill:#5a6475}
.axis{fill:#333;font-size:12px} .legend{font-size:12px} .plabel{font-size:11px;font-weight:600}
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
pub fn img_tag(path: &Path, alt: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let (w, _h) = png_size(&bytes).with_context(|| format!("{} is not a PNG file", path.display()))?;
    // Small grids are shown enlarged (pixelated), large ones at their size.
    let scale = if w < 200 { 2 } else { 1 };
    Ok(format!(
        r#"<img class="grid" alt="{}" width="{}" src="data:image/png;base64,{}">"#,
        escape(alt),
        w * scale,
        base64::encode(&bytes)
    ))
}

fn png_size(bytes: &[u8]) -> Option<(u32, u32)> {
    if bytes.len() < 24 || &bytes[..8] != b"\x89PNG\r\n\x1a\n" {
        return None;
    }
    let w = u32::from_be_bytes(bytes[16..20].try_into().ok()?);
    let h = u32::from_be_bytes(bytes[20..24].try_into().ok()?);
    Some((w, h))
}

/// Sample-quality cell (HTML): Frechet distance per sampler found in the split's `samples` object,
/// one sampler per line so the cell stays narrow.
fn sample_score(run: &RunInfo, split: &str) -> String {
    let Some(samples) = run.split(split).and_then(|m| m.eval.samples.as_ref()) else {
        return "–".into();
    };
    let mut parts = Vec::new();
    for name in ["prior", "gmm", "two_stage"] {
        if let Some(fd) = samples.get(name).and_then(|s| s.fd) {
            parts.push(format!(
                r#"<span class="fd">{} {:.2}</span>"#,
                if name == "two_stage" { "2-stage" } else { name },
                fd
            ));
        }
    }
    if parts.is_empty() {
        "–".into()
    } else {
        parts.join(" ")
    }
}

fn caption_for(file: &str) -> String {
    let stem = file.trim_end_matches(".png");
    match stem {
        "recon_test" => "test: originals | reconstructions".into(),
        "recon_val" => "validation: originals | reconstructions".into(),
        "recon_train" => "train: originals | reconstructions".into(),
        "loss_curve" => "loss curve".into(),
        "explained_variance" => "explained variance".into(),
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

fn table(runs: &[RunInfo]) -> String {
    let mut s = String::from(
        r#"<table class="runs"><thead><tr class="groups"><th class="l" rowspan="2">run</th><th colspan="4">model</th><th colspan="2">training</th><th colspan="3">test likelihood</th><th colspan="3">test reconstruction</th><th colspan="2">latents and samples</th></tr><tr><th class="l">model</th><th class="l">likelihood</th><th>latent</th><th>params</th><th>epochs<br>(best)</th><th class="l">stopped</th><th>−ELBO<br>nats/img</th><th>bits/dim</th><th>IWAE<br>nats/img</th><th>MSE</th><th>PSNR<br>dB</th><th>SSIM</th><th>active<br>units</th><th class="l">sample FD<br>(lower is better)</th></tr></thead><tbody>"#,
    );
    for run in runs {
        match run.kind {
            RunKind::Vae => {
                let test = run.test();
                let t = |f: fn(&VaeSplitMetrics) -> Option<f64>| test.and_then(f);
                let epochs = match run.vae() {
                    Some(m) => format!("{} ({})", m.epochs_run, m.best_epoch),
                    None => "–".into(),
                };
                let _ = write!(
                    s,
                    r#"<tr><td class="l">{}</td><td class="l">{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td class="l">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="l">{}</td></tr>"#,
                    escape(&run.name),
                    escape(&run.model_label()),
                    escape(&run.likelihood_label()),
                    run.latent_dim()
                        .map(|d| d.to_string())
                        .unwrap_or_else(|| "–".into()),
                    fmt_count(run.n_params),
                    epochs,
                    escape(run.stopped_because().unwrap_or("–")),
                    fmt(t(|m| Some(m.neg_elbo_pixels_or_model())), 1),
                    fmt(t(|m| m.bits_per_dim), 3),
                    fmt(t(|m| m.eval.iwae), 1),
                    fmt(t(|m| Some(m.mse)), 5),
                    fmt(t(|m| Some(m.psnr)), 2),
                    fmt(t(|m| m.eval.ssim), 3),
                    fmt(t(|m| m.eval.active_units.map(|u| u as f64)), 0),
                    sample_score(run, "test"),
                );
            }
            RunKind::Pca => {
                for k in run.pca_components() {
                    let test = run.pca_test(k);
                    let _ = write!(
                        s,
                        r#"<tr class="pca"><td class="l">{} k={}</td><td class="l">PCA</td><td class="l">Gaussian (PPCA)</td><td>{}</td><td>{}</td><td>–</td><td class="l">closed form</td><td>{}</td><td>{}</td><td>exact</td><td>{}</td><td>{}</td><td>{}</td><td>–</td><td class="l">–</td></tr>"#,
                        escape(&run.name),
                        k,
                        k,
                        fmt_count(run.pca_dim().map(|d| (k as u64 + 1) * d as u64)),
                        fmt(test.and_then(|m| m.ppca_nll), 1),
                        fmt(test.and_then(|m| m.ppca_bits_per_dim), 3),
                        fmt(test.map(|m| m.mse), 5),
                        fmt(test.map(|m| m.psnr), 2),
                        // PCA has no SSIM in its metrics.
                        fmt(None, 3)
                    );
                }
            }
        }
    }
    s + "</tbody></table>"
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

/// Test MSE of PCA against k, with each VAE placed at its latent size.
fn pca_curve(runs: &[RunInfo]) -> Option<String> {
    let mut series = Vec::new();
    for (i, run) in runs.iter().filter(|r| r.kind == RunKind::Pca).enumerate() {
        let pts: Vec<(f64, f64)> = run
            .pca_components()
            .into_iter()
            .filter_map(|k| run.pca_test(k).map(|m| (k as f64, m.mse)))
            .collect();
        let mut s = Series::line(
            &format!("PCA ({})", run.name),
            pts,
            if i == 0 { "#333" } else { "#777" },
        );
        s.dashed = i > 0;
        series.push(s);
    }
    let vaes: Vec<&RunInfo> = runs.iter().filter(|r| r.kind == RunKind::Vae).collect();
    for (i, run) in vaes.iter().enumerate() {
        if let (Some(l), Some(m)) = (run.latent_dim(), run.test().map(|m| m.mse)) {
            // Named by its label beside the point, not in the legend.
            let mut s = Series::line("", vec![(l as f64, m)], PALETTE[i % PALETTE.len()]);
            s.line = false;
            s.point_labels = vec![run.name.clone()];
            series.push(s);
        }
    }
    if series.iter().all(|s| s.points.is_empty()) {
        return None;
    }
    let chart = Chart {
        title: "Test reconstruction MSE against code size".into(),
        x_label: "PCA components k / VAE latent size (log scale)".into(),
        y_label: "test MSE per pixel".into(),
        log_x: true,
        log_y: true,
        width: 900.0,
        height: 440.0,
    };
    Some(chart.render(&series))
}

fn loss_chart(run: &RunInfo) -> Option<String> {
    let train = run.train_losses();
    let val = run.val_losses();
    if train.is_empty() && val.is_empty() {
        return None;
    }
    let mut series = vec![Series::line("train", train, PALETTE[0])];
    if !val.is_empty() {
        series.push(Series::line("validation", val, PALETTE[1]));
    }
    if let Some(best) = run.vae().map(|m| m.best_epoch as f64) {
        let v = series
            .last()
            .and_then(|s| s.points.iter().find(|p| p.0 == best).copied());
        if let Some(p) = v {
            let mut b = Series::line("", vec![p], "#0b6b2f");
            b.line = false;
            b.point_labels = vec![format!("best (epoch {best})")];
            series.push(b);
        }
    }
    let chart = Chart {
        title: "Loss per epoch (nats per image)".into(),
        x_label: "epoch".into(),
        y_label: "loss".into(),
        log_x: false,
        log_y: false,
        width: 520.0,
        height: 300.0,
    };
    Some(chart.render(&series))
}

fn run_card(run: &RunInfo) -> Result<String> {
    let mut s = format!(
        r#"<div class="card" id="run-{0}"><h3>{0}</h3>"#,
        escape(&run.name)
    );
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
    let _ = write!(
        s,
        r#"<div class="meta">{} — <code>{}</code></div>"#,
        escape(&meta.join(" · ")),
        escape(&run.dir.display().to_string())
    );
    let mut primary = String::new();
    let mut more = String::new();
    if let Some(svg) = loss_chart(run) {
        let _ = write!(primary, "<figure>{svg}</figure>");
    }
    let mut images = run.images.clone();
    images.sort_by_key(|p| {
        picture_rank(
            &p.file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default(),
        )
    });
    for img in &images {
        let file = img
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fig = format!(
            "<figure>{}<figcaption>{}</figcaption></figure>",
            img_tag(img, &file)?,
            escape(&caption_for(&file))
        );
        if is_primary(&file, run) {
            primary += &fig;
        } else {
            more += &fig;
        }
    }
    let _ = write!(s, r#"<div class="figs">{primary}</div>"#);
    if !more.is_empty() {
        let _ = write!(
            s,
            r#"<details><summary>training and validation pictures</summary><div class="figs">{more}</div></details>"#
        );
    }
    Ok(s + "</div>")
}

/// The whole page for these runs.
pub fn render(runs: &[RunInfo], opts: &ReportOptions) -> Result<String> {
    let title = if opts.title.is_empty() {
        "norbvae report"
    } else {
        &opts.title
    };
    let mut s = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{CSS}</style></head><body><main>",
        escape(title)
    );
    let _ = write!(s, "<h1>{}</h1>", escape(title));
    if let Some(sub) = &opts.subtitle {
        let _ = write!(s, r#"<p class="sub">{}</p>"#, escape(sub));
    }
    let accuracy = runs.iter().find_map(|r| r.classifier().map(|c| c.test_accuracy));
    let real_fd = runs
        .iter()
        .find_map(|r| r.classifier().map(|c| c.fd_train_vs_test));
    let _ = write!(
        s,
        r#"<div class="note">{} runs. Losses are negative log-likelihoods in nats per image (lower is better); PCA rows give the exact probabilistic-PCA likelihood. Sample FD is the Frechet distance between the features of real test images and of generated samples under a small classifier trained on this dataset's labels{}{}.</div>"#,
        runs.len(),
        accuracy
            .map(|a| format!(" (its test accuracy: {:.1}%)", 100.0 * a))
            .unwrap_or_default(),
        real_fd
            .map(|f| format!(
                "; real training images score {f:.2} against the test images, the floor to compare with"
            ))
            .unwrap_or_default()
    );
    if !opts.answers.is_empty() {
        s += "<h2>The log's questions, answered from the numbers</h2>";
        for (q, a) in &opts.answers {
            let _ = write!(s, r#"<div class="qa"><b>{}</b>{}</div>"#, escape(q), escape(a));
        }
    }
    s += "<h2>All runs</h2>";
    s += r#"<div class="tablewrap">"#;
    s += &table(runs);
    s += "</div>";
    if let Some(svg) = pca_curve(runs) {
        let _ = write!(
            s,
            r#"<h2>PCA against the VAEs</h2><div class="card"><figure>{svg}<figcaption>PCA test MSE for each k (line); each VAE at its latent size (points). A VAE below the line reconstructs better than PCA with as many numbers per image.</figcaption></figure></div>"#
        );
    }
    s += "<h2>Runs</h2>";
    for run in runs {
        s += &run_card(run)?;
    }
    s += "</main></body></html>\n";
    Ok(s)
}
