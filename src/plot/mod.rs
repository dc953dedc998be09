//! Charts a person can read, on plotters: a PNG for run directories and an SVG string to inline
//! in the HTML report, from one description ([`Chart`]). Every chart has a title, axis titles,
//! ticks and a legend outside the plotting area (so it never hides a point, and point labels never
//! pile on each other); the axes' ranges cover every finite point, error bar and marker line.
//! Text uses the embedded DejaVu Sans (see [`font`]), so the pixels do not depend on the
//! machine's fonts, and the same input gives the same PNG bytes.
//!
//! The chart kinds the stages need are built by the functions below ([`loss_curves`],
//! [`pca_and_models`], [`explained_variance`], [`sweep_error_bars`], [`overlaid_curves`]);
//! anything else can fill a [`Chart`] directly.
pub mod font;
mod render;
mod ticks;

#[cfg(test)]
mod tests;

use anyhow::Result;
use std::path::Path;

/// How an axis maps values to positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Linear,
    /// log10; values <= 0 are left out (and said so in the legend).
    Log,
}

#[derive(Debug, Clone)]
pub struct Axis {
    pub title: String,
    pub scale: Scale,
    /// Range to show at least (it still grows to cover every point).
    pub include: Option<(f64, f64)>,
    /// Category names: the values are their indices 0, 1, ... and the ticks show the names.
    pub categories: Vec<String>,
    /// Counts (epochs): ticks only at whole numbers, never 0.95 or 1.05.
    pub integer: bool,
}

impl Axis {
    pub fn linear(title: &str) -> Self {
        Self {
            title: title.into(),
            scale: Scale::Linear,
            include: None,
            categories: vec![],
            integer: false,
        }
    }

    /// A linear axis of whole numbers (epochs, counts).
    pub fn integer(title: &str) -> Self {
        Self {
            integer: true,
            ..Self::linear(title)
        }
    }

    pub fn log(title: &str) -> Self {
        Self {
            scale: Scale::Log,
            ..Self::linear(title)
        }
    }

    pub fn categorical(title: &str, names: Vec<String>) -> Self {
        Self {
            categories: names,
            ..Self::linear(title)
        }
    }
}

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Line,
    Points,
    LinePoints,
}

/// Marker shapes, so series stay apart without colour too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
}

impl Shape {
    pub const ALL: [Shape; 5] = [
        Shape::Circle,
        Shape::Square,
        Shape::Triangle,
        Shape::Diamond,
        Shape::Cross,
    ];
}

/// Colours (matplotlib's tab10) that stay distinct on white.
pub const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

#[derive(Debug, Clone)]
pub struct Series {
    /// Legend entry; series with the same name share one entry (and should share a colour).
    /// Empty: no entry.
    pub name: String,
    pub points: Vec<(f64, f64)>,
    /// Error bar (low, high) for each point, or empty.
    pub errors: Vec<(f64, f64)>,
    pub mark: Mark,
    pub shape: Shape,
    /// Index into [`PALETTE`] (wraps around).
    pub color: usize,
    pub dashed: bool,
    /// Line width in pixels.
    pub width: u32,
    /// 0..1; below 1 for many overlaid lines.
    pub opacity: f64,
}

impl Series {
    pub fn new(name: &str, points: Vec<(f64, f64)>, mark: Mark, color: usize) -> Self {
        Self {
            name: name.into(),
            points,
            errors: vec![],
            mark,
            shape: Shape::Circle,
            color,
            dashed: false,
            width: 2,
            opacity: 1.0,
        }
    }
}

/// A vertical line across the plot at `x` (e.g. the best epoch), with a legend entry.
#[derive(Debug, Clone)]
pub struct VLine {
    pub x: f64,
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x: Axis,
    pub y: Axis,
    pub series: Vec<Series>,
    pub vlines: Vec<VLine>,
    /// Pixels (PNG) or user units (SVG).
    pub width: u32,
    pub height: u32,
}

impl Chart {
    pub fn new(title: &str, x: Axis, y: Axis) -> Self {
        Self {
            title: title.into(),
            x,
            y,
            series: vec![],
            vlines: vec![],
            width: 800,
            height: 480,
        }
    }

    /// The chart as PNG bytes.
    pub fn png(&self) -> Result<Vec<u8>> {
        render::png(self)
    }

    /// Write the PNG atomically (a reader never sees half a file).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let bytes = self.png()?;
        crate::util::write_atomic(path, &bytes)
    }

    /// The chart as one `<svg>` element, to inline in HTML.
    pub fn svg(&self) -> Result<String> {
        render::svg(self)
    }

    /// The value ranges the axes show (x, y), in data units: they contain every finite point
    /// (on a log axis: every positive one), error bar end and marker line.
    pub fn ranges(&self) -> ((f64, f64), (f64, f64)) {
        let l = render::Layout::of(self);
        (l.x.data_range(), l.y.data_range())
    }
}

/// The y axis of loss curves: logarithmic when every finite value is positive and they span more
/// than a factor of 10 (epoch 1 is often far above the rest), linear otherwise.
fn loss_axis(y_title: &str, values: impl Iterator<Item = f64>) -> Axis {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > 0.0 && hi / lo > 10.0 {
        Axis::log(&format!("{y_title} (log scale)"))
    } else {
        Axis::linear(y_title)
    }
}

/// A loss curve per split (e.g. train and validation) against the epoch, the best epoch marked.
/// The y axis turns logarithmic when every value is positive and they span more than a factor of
/// 10 (epoch 1 is often far above the rest), and covers every point either way.
pub fn loss_curves(
    title: &str,
    y_title: &str,
    curves: &[(&str, Vec<(f64, f64)>)],
    best: Option<(f64, f64)>,
) -> Chart {
    let y = loss_axis(y_title, curves.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    let mut chart = Chart::new(title, Axis::integer("epoch"), y);
    for (i, (name, points)) in curves.iter().enumerate() {
        let mark = if points.len() <= 40 {
            Mark::LinePoints
        } else {
            Mark::Line
        };
        let mut s = Series::new(name, points.clone(), mark, i);
        s.shape = Shape::ALL[i % Shape::ALL.len()];
        chart.series.push(s);
    }
    if let Some((epoch, value)) = best {
        chart.vlines.push(VLine {
            x: epoch,
            label: format!(
                "best epoch {epoch} ({})",
                ticks::label(value, significant_step(value))
            ),
        });
    }
    chart
}

/// A step that prints `v` with about five significant digits.
fn significant_step(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return 1.0;
    }
    10f64.powf(v.abs().log10().floor() - 4.0)
}

/// One model's point on the PCA chart.
#[derive(Debug, Clone)]
pub struct ModelPoint {
    pub name: String,
    /// Code size (latent dimensions).
    pub k: f64,
    pub value: f64,
}

/// A baseline line (e.g. PCA's test MSE against the number of components k, log x) and each
/// model as its own marked point at its code size; the legend names the models (with their
/// values), so labels never pile on each other however close the points are.
pub fn pca_and_models(
    title: &str,
    y_title: &str,
    baseline_name: &str,
    baseline: &[(f64, f64)],
    models: &[ModelPoint],
) -> Chart {
    let mut chart = Chart::new(
        title,
        Axis::log("code size k (latent dimensions / principal components)"),
        Axis::log(y_title),
    );
    let mut line = Series::new(baseline_name, baseline.to_vec(), Mark::LinePoints, 0);
    line.shape = Shape::Circle;
    chart.series.push(line);
    for (i, m) in models.iter().enumerate() {
        // Models at the same code size are spread a little sideways (the legend gives the exact
        // k), so no marker hides another.
        let same_k: Vec<usize> = (0..models.len()).filter(|&j| models[j].k == m.k).collect();
        let j = same_k.iter().position(|&j| j == i).unwrap_or(0) as f64;
        let shift = 10f64.powf((j - (same_k.len() - 1) as f64 / 2.0) * 0.04);
        let mut s = Series::new(
            &format!(
                "{} (k={}, {})",
                m.name,
                m.k,
                ticks::label(m.value, significant_step(m.value) * 10.0)
            ),
            vec![(m.k * shift, m.value)],
            Mark::Points,
            1 + i % (PALETTE.len() - 1),
        );
        s.shape = Shape::ALL[(1 + i) % Shape::ALL.len()];
        chart.series.push(s);
    }
    chart
}

/// The cumulative fraction of variance explained against the number of components, with the
/// requested ks marked (their values in the legend). The x axis is logarithmic when there are
/// more than 50 components, so the first few stay visible.
pub fn explained_variance(cumulative: &[f64], marks: &[usize]) -> Chart {
    let x = if cumulative.len() > 50 {
        Axis::log("number of components k")
    } else {
        Axis::linear("number of components k")
    };
    let mut y = Axis::linear("cumulative fraction of variance explained");
    y.include = Some((0.0, 1.0));
    let mut chart = Chart::new("PCA: explained variance", x, y);
    let points: Vec<(f64, f64)> = cumulative
        .iter()
        .enumerate()
        .map(|(i, v)| ((i + 1) as f64, *v))
        .collect();
    chart.series.push(Series::new(
        "cumulative explained variance",
        points,
        Mark::Line,
        0,
    ));
    for (i, &k) in marks
        .iter()
        .filter(|&&k| k >= 1 && k <= cumulative.len())
        .enumerate()
    {
        let v = cumulative[k - 1];
        let mut s = Series::new(
            &format!("k = {k}: {v:.3}"),
            vec![(k as f64, v)],
            Mark::Points,
            1 + i % (PALETTE.len() - 1),
        );
        s.shape = Shape::ALL[(1 + i) % Shape::ALL.len()];
        chart.series.push(s);
    }
    chart
}

/// How the spread over seeds is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    MinMax,
    /// Standard error of the mean (sample sd / sqrt(n)).
    StdErr,
}

/// One line of a sweep chart: the runs sharing the other parameters' values.
#[derive(Debug, Clone)]
pub struct SweepGroup {
    /// E.g. "first_filters=16".
    pub name: String,
    /// (swept value, the metric of each seed).
    pub points: Vec<(f64, Vec<f64>)>,
}

/// A metric against a swept parameter, one line per group, each point the mean over seeds with
/// an error bar (min..max or standard error). Points of different groups at the same x are
/// spread a little apart so their bars do not hide each other. `categories`, when not empty,
/// names the swept values (the points' x are then their indices).
pub fn sweep_error_bars(
    title: &str,
    param: &str,
    metric: &str,
    groups: &[SweepGroup],
    spread: Spread,
    log_x: bool,
    categories: Vec<String>,
) -> Chart {
    let x = if !categories.is_empty() {
        Axis::categorical(param, categories)
    } else if log_x {
        Axis::log(param)
    } else {
        Axis::linear(param)
    };
    let what = match spread {
        Spread::MinMax => "mean, bars min..max over seeds",
        Spread::StdErr => "mean, bars +-1 standard error over seeds",
    };
    let mut chart = Chart::new(&format!("{title} ({what})"), x, Axis::linear(metric));
    for (i, g) in groups.iter().enumerate() {
        let mut points = Vec::new();
        let mut errors = Vec::new();
        for (x, vals) in &g.points {
            let vals: Vec<f64> = vals.iter().copied().filter(|v| v.is_finite()).collect();
            if vals.is_empty() {
                continue;
            }
            let n = vals.len() as f64;
            let mean = vals.iter().sum::<f64>() / n;
            let (lo, hi) = match spread {
                Spread::MinMax => (
                    vals.iter().copied().fold(f64::INFINITY, f64::min),
                    vals.iter().copied().fold(f64::NEG_INFINITY, f64::max),
                ),
                Spread::StdErr => {
                    let var = if vals.len() > 1 {
                        vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
                    } else {
                        0.0
                    };
                    let se = (var / n).sqrt();
                    (mean - se, mean + se)
                }
            };
            points.push((*x, mean));
            errors.push((lo, hi));
        }
        let mut s = Series::new(&g.name, points, Mark::LinePoints, i);
        s.errors = errors;
        s.shape = Shape::ALL[i % Shape::ALL.len()];
        chart.series.push(s);
    }
    chart
}

/// Learning curves of many runs on one chart: thin, half-transparent lines, one colour per group
/// (e.g. a configuration, its seeds sharing the colour) and one legend entry per group.
pub fn overlaid_curves(title: &str, y_title: &str, runs: &[(String, Vec<(f64, f64)>)]) -> Chart {
    let y = loss_axis(y_title, runs.iter().flat_map(|(_, p)| p.iter().map(|q| q.1)));
    let mut chart = Chart::new(title, Axis::integer("epoch"), y);
    let mut groups: Vec<&str> = Vec::new();
    for (group, points) in runs {
        let idx = match groups.iter().position(|g| g == group) {
            Some(i) => i,
            None => {
                groups.push(group);
                groups.len() - 1
            }
        };
        let mut s = Series::new(group, points.clone(), Mark::Line, idx);
        s.width = 1;
        s.opacity = 0.7;
        s.dashed = idx / PALETTE.len() % 2 == 1;
        chart.series.push(s);
    }
    chart
}
