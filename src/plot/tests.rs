use super::*;

/// Decode a PNG and check its size and that it holds a drawing (many non-white pixels, several
/// colours), not a blank or single-colour image.
fn check_png(bytes: &[u8], chart: &Chart) -> image::RgbImage {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png)
        .expect("valid PNG")
        .to_rgb8();
    assert_eq!(img.dimensions(), (chart.width, chart.height));
    let non_white = img.pixels().filter(|p| p.0 != [255, 255, 255]).count();
    let total = (chart.width * chart.height) as usize;
    assert!(
        non_white > total / 100,
        "only {non_white} of {total} pixels drawn"
    );
    assert!(non_white < total / 2, "{non_white} of {total} pixels not white");
    let mut colours: Vec<[u8; 3]> = img.pixels().map(|p| p.0).collect();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 10, "only {} distinct colours", colours.len());
    img
}

/// The texts of the SVG's `<text>` elements.
fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            let body = &t[t.find('>')? + 1..];
            Some(body[..body.find("</text>")?].to_string())
        })
        .collect()
}

fn check_svg(svg: &str, must_contain: &[&str]) {
    assert!(
        svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"),
        "{}",
        &svg[..60.min(svg.len())]
    );
    let texts = svg_texts(svg);
    for m in must_contain {
        assert!(texts.iter().any(|t| t.contains(m)), "no text {m:?} in {texts:?}");
    }
    assert!(
        !svg.contains("NaN") && !svg.contains("inf\""),
        "non-finite coordinates in the SVG"
    );
}

/// Loss curves whose epoch 1 is far above the rest: y covers it, the best epoch is in the legend.
fn outlier_loss_chart() -> Chart {
    let train: Vec<(f64, f64)> = (1..=12)
        .map(|e| (e as f64, if e == 1 { 9000.0 } else { 1500.0 - 20.0 * e as f64 }))
        .collect();
    let val: Vec<(f64, f64)> = (1..=12)
        .map(|e| {
            (
                e as f64,
                if e == 1 {
                    5000.0
                } else {
                    1550.0 - 15.0 * e as f64 + (e as f64 - 8.0).powi(2)
                },
            )
        })
        .collect();
    loss_curves(
        "conv VAE: loss per epoch",
        "negative ELBO per image",
        &[("train", train), ("validation", val)],
        Some((8.0, 1430.0)),
    )
}

#[test]
fn loss_chart_covers_the_outlier_and_marks_the_best_epoch() {
    let chart = outlier_loss_chart();
    let ((x0, x1), (y0, y1)) = chart.ranges();
    assert!(x0 < 1.0 && x1 > 12.0, "x range {x0}..{x1}");
    assert!(y0 < 1260.0 && y1 > 9000.0, "y range {y0}..{y1} clips a point");
    let png = chart.png().unwrap();
    check_png(&png, &chart);
    // Deterministic: the same chart gives the same bytes.
    assert_eq!(png, chart.png().unwrap());
    check_svg(
        &chart.svg().unwrap(),
        &[
            "conv VAE: loss per epoch",
            "epoch",
            "negative ELBO",
            "train",
            "validation",
            "best epoch 8",
        ],
    );
}

#[test]
fn loss_chart_switches_to_log_y_for_wide_ranges_and_skips_non_finite() {
    let train: Vec<(f64, f64)> = vec![(1.0, 1e5), (2.0, 300.0), (3.0, f64::NAN), (4.0, 250.0)];
    let chart = loss_curves("diverging", "loss", &[("train", train)], None);
    assert_eq!(chart.y.scale, Scale::Log);
    let (_, (y0, y1)) = chart.ranges();
    assert!(y0 < 250.0 && y1 > 1e5);
    let svg = chart.svg().unwrap();
    check_svg(&svg, &["1 point not shown", "log scale"]);
    check_png(&chart.png().unwrap(), &chart);
}

#[test]
fn pca_chart_names_every_model_in_the_legend() {
    let pca: Vec<(f64, f64)> = [1, 2, 5, 10, 20, 50, 100, 200]
        .iter()
        .map(|&k| (k as f64, 0.05 / (k as f64).sqrt()))
        .collect();
    // Three models at almost the same place: their names must not overlap, so they go in the legend.
    let models = vec![
        ModelPoint {
            name: "conv-vae".into(),
            k: 10.0,
            value: 0.0151,
        },
        ModelPoint {
            name: "conv-vae-sigma".into(),
            k: 10.0,
            value: 0.0149,
        },
        ModelPoint {
            name: "pca-vae".into(),
            k: 128.0,
            value: 0.0062,
        },
        ModelPoint {
            name: "dense-vae".into(),
            k: 10.0,
            value: 0.0150,
        },
    ];
    let chart = pca_and_models("test MSE against code size", "test MSE", "PCA", &pca, &models);
    assert_eq!(chart.x.scale, Scale::Log);
    let ((x0, x1), (y0, y1)) = chart.ranges();
    assert!(x0 < 1.0 && x1 > 200.0 && y0 < 0.05 / 200f64.sqrt() && y1 > 0.05);
    check_png(&chart.png().unwrap(), &chart);
    let svg = chart.svg().unwrap();
    check_svg(
        &svg,
        &[
            "test MSE against code size",
            "code size k",
            "PCA",
            "conv-vae-sigma (k=10",
            "pca-vae (k=128",
        ],
    );
    // Legend rows are stacked: no two legend texts share a y position.
    let texts: Vec<&str> = svg.split("<text").skip(1).collect();
    let mut ys: Vec<String> = texts
        .iter()
        .filter(|t| t.contains("(k="))
        .map(|t| {
            t.split("y=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(ys.len(), 4);
    ys.sort();
    ys.dedup();
    assert_eq!(ys.len(), 4, "legend rows overlap");
}

#[test]
fn explained_variance_chart_marks_requested_ks() {
    let cumulative: Vec<f64> = (1..=300).map(|k| 1.0 - (-(k as f64) / 40.0).exp()).collect();
    let chart = explained_variance(&cumulative, &[10, 50, 100, 400]);
    // k = 400 is beyond the curve and not marked.
    assert_eq!(chart.series.len(), 4);
    let (_, (y0, y1)) = chart.ranges();
    assert!(y0 <= 0.0 && y1 >= 1.0);
    check_png(&chart.png().unwrap(), &chart);
    check_svg(
        &chart.svg().unwrap(),
        &["explained variance", "number of components", "k = 50: 0.713"],
    );
}

#[test]
fn sweep_chart_has_error_bars_covering_every_seed() {
    let groups = vec![
        SweepGroup {
            name: "first_filters=16".into(),
            points: vec![
                (10.0, vec![0.010, 0.012, 0.011]),
                (32.0, vec![0.008, 0.0085, 0.009]),
                (100.0, vec![0.007, 0.0071, 0.02]),
            ],
        },
        SweepGroup {
            name: "first_filters=32".into(),
            points: vec![
                (10.0, vec![0.009, 0.0095, 0.010]),
                (32.0, vec![0.007, 0.0072, 0.0074]),
                (100.0, vec![0.006, 0.0061, 0.0065]),
            ],
        },
    ];
    let chart = sweep_error_bars(
        "capacity",
        "model.latent_dim",
        "test MSE",
        &groups,
        Spread::MinMax,
        true,
        vec![],
    );
    assert_eq!(chart.series[0].errors[2], (0.007, 0.02));
    let (_, (y0, y1)) = chart.ranges();
    assert!(y0 < 0.006 && y1 > 0.02, "{y0}..{y1}");
    let img = check_png(&chart.png().unwrap(), &chart);
    let svg = chart.svg().unwrap();
    check_svg(
        &svg,
        &[
            "capacity",
            "min..max",
            "model.latent_dim",
            "test MSE",
            "first_filters=32",
        ],
    );
    // An error bar is drawn as vertical lines: the SVG has more lines than the two series need.
    assert!(svg.matches("<line").count() + svg.matches("<polyline").count() >= 6);
    drop(img);

    let se = sweep_error_bars(
        "activation",
        "model.output_activation",
        "bits/dim",
        &[SweepGroup {
            name: "seeds".into(),
            points: vec![(0.0, vec![4.5, 4.7]), (1.0, vec![4.9, 5.1, f64::NAN])],
        }],
        Spread::StdErr,
        false,
        vec!["sigmoid".into(), "tanh".into()],
    );
    let (lo, hi) = se.series[0].errors[1];
    assert!(
        (hi - lo - 0.2).abs() < 1e-12,
        "std error of (4.9, 5.1) is 0.1: {lo}..{hi}"
    );
    check_png(&se.png().unwrap(), &se);
    check_svg(&se.svg().unwrap(), &["sigmoid", "tanh", "standard error"]);
}

#[test]
fn overlaid_curves_share_a_colour_and_legend_entry_per_group() {
    let mut runs = Vec::new();
    for (g, base) in [
        ("latent_dim=10", 1500.0),
        ("latent_dim=32", 1400.0),
        ("latent_dim=100", 1350.0),
    ] {
        for seed in 0..3 {
            let pts = (1..=20)
                .map(|e| (e as f64, base + 2000.0 / e as f64 + 10.0 * seed as f64))
                .collect();
            runs.push((g.to_string(), pts));
        }
    }
    let chart = overlaid_curves("validation loss of every run", "validation loss", &runs);
    assert_eq!(chart.series.len(), 9);
    assert_eq!(chart.series[0].color, chart.series[2].color);
    assert_ne!(chart.series[0].color, chart.series[3].color);
    check_png(&chart.png().unwrap(), &chart);
    let svg = chart.svg().unwrap();
    check_svg(&svg, &["validation loss of every run", "latent_dim=100"]);
    assert_eq!(
        svg_texts(&svg)
            .iter()
            .filter(|t| t.contains("latent_dim=10"))
            .count(),
        2,
        "one legend entry per group"
    );
}

#[test]
fn empty_chart_still_renders_axes() {
    let chart = Chart::new("nothing yet", Axis::linear("x"), Axis::log("y"));
    let png = chart.png().unwrap();
    image::load_from_memory(&png).unwrap();
    check_svg(&chart.svg().unwrap(), &["nothing yet"]);
}

/// Writes each chart kind to $NORBVAE_PLOT_DIR (when set) to look at them.
#[test]
fn write_examples_when_asked() {
    let Some(dir) = std::env::var_os("NORBVAE_PLOT_DIR") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    outlier_loss_chart().save_png(&dir.join("loss.png")).unwrap();
    std::fs::write(dir.join("loss.svg"), outlier_loss_chart().svg().unwrap()).unwrap();
    let pca: Vec<(f64, f64)> = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000]
        .iter()
        .map(|&k| (k as f64, 0.05 / (k as f64).sqrt()))
        .collect();
    let models: Vec<ModelPoint> = [
        "conv-vae",
        "conv-vae-sigma",
        "conv-vae-tanh",
        "dense-vae",
        "pca-vae",
        "pca-vae-sigma",
    ]
    .iter()
    .enumerate()
    .map(|(i, n)| ModelPoint {
        name: n.to_string(),
        k: if i < 4 { 10.0 } else { 128.0 },
        value: 0.016 + 0.0003 * i as f64,
    })
    .collect();
    pca_and_models(
        "Reconstruction: test MSE against code size",
        "test MSE",
        "PCA (k components)",
        &pca,
        &models,
    )
    .save_png(&dir.join("pca.png"))
    .unwrap();
    let cumulative: Vec<f64> = (1..=1000)
        .map(|k| 1.0 - (-(k as f64) / 60.0).exp() * 0.9 - 0.1 / k as f64)
        .collect();
    explained_variance(&cumulative, &[10, 50, 100, 500])
        .save_png(&dir.join("ev.png"))
        .unwrap();
    let groups: Vec<SweepGroup> = [16.0, 32.0]
        .iter()
        .map(|f| SweepGroup {
            name: format!("first_filters={f}"),
            points: [10.0, 32.0, 100.0]
                .iter()
                .map(|l| {
                    (
                        *l,
                        vec![0.1 / f + 0.01 / l, 0.11 / f + 0.012 / l, 0.09 / f + 0.011 / l],
                    )
                })
                .collect(),
        })
        .collect();
    sweep_error_bars(
        "Capacity sweep: test MSE",
        "model.latent_dim",
        "test MSE",
        &groups,
        Spread::MinMax,
        true,
        vec![],
    )
    .save_png(&dir.join("sweep.png"))
    .unwrap();
    let mut runs = Vec::new();
    for (g, base) in [
        ("latent_dim=10", 1500.0),
        ("latent_dim=32", 1400.0),
        ("latent_dim=100", 1350.0),
    ] {
        for seed in 0..3 {
            let pts = (1..=30)
                .map(|e| (e as f64, base + 2000.0 / e as f64 + 15.0 * seed as f64))
                .collect();
            runs.push((g.to_string(), pts));
        }
    }
    overlaid_curves("Validation loss of every run", "validation loss", &runs)
        .save_png(&dir.join("overlay.png"))
        .unwrap();
    let (h, w) = (32, 32);
    let px: Vec<f32> = (0..10 * 2 * h * w)
        .map(|i| ((i / 7) % 13) as f32 / 12.0)
        .collect();
    let rec: Vec<f32> = px.iter().map(|v| 1.0 - v).collect();
    crate::data::grid::save_recon_grid(&dir.join("recon.png"), &px, &rec, 10, 2, h, w, 4).unwrap();
    let labels = crate::data::grid::GridLabels {
        title: "Traversal: each row sets one latent to -3..+3 prior sd, the others at test image 1's mean"
            .into(),
        columns: (0..5).map(|s| format!("{:+}", -3.0 + 1.5 * s as f32)).collect(),
        rows: vec!["z3".into(), "z17".into()],
    };
    crate::data::grid::save_labelled_grid(
        &dir.join("traversal.png"),
        &px[..10 * h * w],
        10,
        1,
        h,
        w,
        5,
        &labels,
    )
    .unwrap();
}

#[test]
fn epoch_axes_tick_whole_epochs_only() {
    // One epoch (the demo's shortest runs) and three: no 0.95 or 1.05 epochs on the axis.
    for n in [1usize, 3] {
        let train: Vec<(f64, f64)> = (1..=n).map(|e| (e as f64, 700.0 - e as f64)).collect();
        let val: Vec<(f64, f64)> = (1..=n).map(|e| (e as f64, 705.0 - e as f64)).collect();
        let chart = loss_curves(
            "short run",
            "loss",
            &[("train", train), ("validation", val)],
            None,
        );
        let ((x0, x1), _) = chart.ranges();
        assert!(x0 < 1.0 && x1 > n as f64, "x range {x0}..{x1}");
        let texts = svg_texts(&chart.svg().unwrap());
        // The y ticks are near 700; the epoch ticks are the small numbers.
        let x_ticks: Vec<&str> = texts
            .iter()
            .map(|t| t.trim())
            .filter(|t| t.parse::<f64>().is_ok_and(|v| v < 10.0))
            .collect();
        assert!(!x_ticks.is_empty(), "no epoch ticks in {texts:?}");
        for t in x_ticks {
            assert!(!t.contains('.'), "fractional epoch tick {t} in {texts:?}");
        }
    }
}
