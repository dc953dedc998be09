//! Drawing a [`Chart`] with plotters: one generic routine, run on the bitmap backend (PNG) and the
//! SVG backend. Log axes are drawn as linear axes over log10 values with explicit ticks, so both
//! scales share one coordinate type.
use super::{font, ticks, Chart, Mark, Scale, Series, Shape, PALETTE};
use anyhow::{anyhow, Result};
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use std::ops::Range;

fn err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// One axis as drawn: the shown range and ticks in plotted units (log10 of the value on a log
/// axis), and how to label them.
pub(super) struct AxisLayout {
    scale: Scale,
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
    step: f64,
    categories: Vec<String>,
}

impl AxisLayout {
    /// The plotted value of `v`, if it can be shown on this axis.
    fn t(scale: Scale, v: f64) -> Option<f64> {
        match scale {
            _ if !v.is_finite() => None,
            Scale::Linear => Some(v),
            Scale::Log if v > 0.0 => Some(v.log10()),
            Scale::Log => None,
        }
    }

    fn new(axis: &super::Axis, values: &[f64], ticks_wanted: usize) -> Self {
        let scale = if axis.categories.is_empty() {
            axis.scale
        } else {
            Scale::Linear
        };
        if !axis.categories.is_empty() {
            let n = axis.categories.len();
            return Self {
                scale,
                lo: -0.5,
                hi: n as f64 - 0.5,
                bold: (0..n).map(|i| i as f64).collect(),
                light: vec![],
                step: 1.0,
                categories: axis.categories.clone(),
            };
        }
        let mut lo = f64::INFINITY;
        let mut hi = f64::NEG_INFINITY;
        let include = axis.include.map(|(a, b)| vec![a, b]).unwrap_or_default();
        for v in values.iter().chain(&include).filter_map(|&v| Self::t(scale, v)) {
            lo = lo.min(v);
            hi = hi.max(v);
        }
        if !lo.is_finite() {
            (lo, hi) = match scale {
                Scale::Linear => (0.0, 1.0),
                Scale::Log => (0.0, 1.0),
            };
        }
        if hi - lo < 1e-12 * lo.abs().max(1.0) {
            let half = match scale {
                Scale::Linear if axis.integer => 1.0,
                Scale::Linear => (lo.abs() * 0.1).max(1e-3),
                Scale::Log => 0.5,
            };
            lo -= half;
            hi += half;
        }
        // A margin so points at the extremes sit inside the frame, not on it.
        let pad = (hi - lo) * 0.05;
        lo -= pad;
        hi += pad;
        let (bold, light, step) = match scale {
            Scale::Linear => {
                let (b, s) = ticks::linear(lo, hi, ticks_wanted);
                if axis.integer && s < 1.0 {
                    let whole: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64).map(|i| i as f64).collect();
                    (whole, vec![], 1.0)
                } else {
                    (b, vec![], s)
                }
            }
            Scale::Log => {
                let (b, l) = ticks::log(lo, hi, ticks_wanted);
                (b, l, 0.0)
            }
        };
        Self {
            scale,
            lo,
            hi,
            bold,
            light,
            step,
            categories: vec![],
        }
    }

    fn label(&self, v: f64) -> String {
        if !self.categories.is_empty() {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < self.categories.len() {
                return self.categories[i as usize].clone();
            }
            return String::new();
        }
        ticks::axis_label(v, self.scale, self.step)
    }

    /// The shown range in data units.
    pub(super) fn data_range(&self) -> (f64, f64) {
        match self.scale {
            Scale::Linear => (self.lo, self.hi),
            Scale::Log => (10f64.powf(self.lo), 10f64.powf(self.hi)),
        }
    }

    fn coord(&self) -> Ticked {
        Ticked {
            lo: self.lo,
            hi: self.hi,
            bold: self.bold.clone(),
            light: self.light.clone(),
        }
    }
}

/// A linear coordinate over plotted values with our own ticks (plotters' own f64 coordinate
/// would choose its ticks and cannot be labelled by a formatter of ours).
struct Ticked {
    lo: f64,
    hi: f64,
    bold: Vec<f64>,
    light: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let t = (v - self.lo) / (self.hi - self.lo);
        (limit.0 as f64 + t * (limit.1 - limit.0) as f64).round() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            self.light.clone()
        } else {
            self.bold.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

pub(super) struct Layout {
    pub(super) x: AxisLayout,
    pub(super) y: AxisLayout,
    /// Points that cannot be shown (not finite, or <= 0 on a log axis).
    dropped: usize,
    /// Horizontal offset of each series with error bars, in plotted x units.
    dodge: Vec<f64>,
}

impl Layout {
    pub(super) fn of(chart: &Chart) -> Self {
        let xs: Vec<f64> = chart
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .chain(chart.vlines.iter().map(|v| v.x))
            .collect();
        let ys: Vec<f64> = chart
            .series
            .iter()
            .flat_map(|s| {
                s.points
                    .iter()
                    .filter(|p| AxisLayout::t(chart.x.scale, p.0).is_some() || !chart.x.categories.is_empty())
                    .map(|p| p.1)
                    .chain(s.errors.iter().flat_map(|e| [e.0, e.1]))
            })
            .collect();
        let x = AxisLayout::new(&chart.x, &xs, (chart.width as usize / 110).max(3));
        let y = AxisLayout::new(&chart.y, &ys, (chart.height as usize / 70).max(3));
        let dropped = chart
            .series
            .iter()
            .flat_map(|s| &s.points)
            .filter(|p| AxisLayout::t(x.scale, p.0).is_none() || AxisLayout::t(y.scale, p.1).is_none())
            .count();
        let with_errors: Vec<usize> = (0..chart.series.len())
            .filter(|&i| !chart.series[i].errors.is_empty())
            .collect();
        let mut dodge = vec![0.0; chart.series.len()];
        if with_errors.len() > 1 {
            let unit = if x.categories.is_empty() {
                (x.hi - x.lo) * 0.012
            } else {
                0.5 / with_errors.len() as f64
            };
            let mid = (with_errors.len() - 1) as f64 / 2.0;
            for (j, &i) in with_errors.iter().enumerate() {
                dodge[i] = (j as f64 - mid) * unit;
            }
        }
        Self { x, y, dropped, dodge }
    }

    /// The plotted position of a data point, if it can be shown.
    fn at(&self, (px, py): (f64, f64), series: usize) -> Option<(f64, f64)> {
        let x = if self.x.categories.is_empty() {
            AxisLayout::t(self.x.scale, px)?
        } else {
            px.is_finite().then_some(px)?
        };
        Some((x + self.dodge[series], AxisLayout::t(self.y.scale, py)?))
    }
}

fn color(s: &Series) -> RGBAColor {
    let (r, g, b) = PALETTE[s.color % PALETTE.len()];
    RGBColor(r, g, b).mix(s.opacity)
}

const VLINE_COLOR: RGBColor = RGBColor(60, 60, 60);

/// Draw a marker of `shape` centred on `at`.
fn marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    shape: Shape,
    style: ShapeStyle,
) -> Result<()> {
    let e = EmptyElement::at(at);
    match shape {
        Shape::Circle => area.draw(&(e + Circle::new((0, 0), 5, style))),
        Shape::Square => area.draw(&(e + Rectangle::new([(-4, -4), (4, 4)], style))),
        Shape::Triangle => area.draw(&(e + TriangleMarker::new((0, 0), 6, style))),
        Shape::Diamond => area.draw(&(e + Polygon::new(vec![(0, -6), (6, 0), (0, 6), (-6, 0)], style))),
        Shape::Cross => area.draw(&(e + Cross::new((0, 0), 5, style.stroke_width(2)))),
    }
    .map_err(err)
}

/// One legend row: a sample of the series' line and marker, and its text.
struct Entry {
    text: String,
    line: Option<(RGBAColor, bool, u32)>,
    marker: Option<(RGBAColor, Shape)>,
    /// A grey dashed vertical marker line.
    vline: bool,
}

fn legend_entries(chart: &Chart, layout: &Layout) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for s in &chart.series {
        if s.name.is_empty() || seen.contains(&s.name.as_str()) {
            continue;
        }
        seen.push(&s.name);
        // The legend shows the colour at full strength, even for translucent lines.
        let (r, g, b) = PALETTE[s.color % PALETTE.len()];
        let c = RGBColor(r, g, b).mix(1.0);
        out.push(Entry {
            text: s.name.clone(),
            line: (s.mark != Mark::Points).then_some((c, s.dashed, s.width.max(2))),
            marker: (s.mark != Mark::Line).then_some((c, s.shape)),
            vline: false,
        });
    }
    for v in &chart.vlines {
        out.push(Entry {
            text: v.label.clone(),
            line: None,
            marker: None,
            vline: true,
        });
    }
    if layout.dropped > 0 {
        out.push(Entry {
            text: format!(
                "{} point{} not shown ({})",
                layout.dropped,
                if layout.dropped == 1 { "" } else { "s" },
                if chart.x.scale == Scale::Log || chart.y.scale == Scale::Log {
                    "not finite or <= 0 on a log axis"
                } else {
                    "not finite"
                }
            ),
            line: None,
            marker: None,
            vline: false,
        });
    }
    out
}

fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle) -> u32 {
    area.estimate_text_size(text, style)
        .map(|(w, _)| w)
        .unwrap_or(8 * text.len() as u32)
}

/// `text` shortened with an ellipsis until it fits `max` pixels.
fn fit<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str, style: &TextStyle, max: u32) -> String {
    if text_width(area, text, style) <= max {
        return text.to_string();
    }
    let chars: Vec<char> = text.chars().collect();
    for keep in (1..chars.len()).rev() {
        let t: String = chars[..keep].iter().collect::<String>() + "…";
        if text_width(area, &t, style) <= max {
            return t;
        }
    }
    "…".into()
}

const LEGEND_FONT: f64 = 14.0;
const LEGEND_ROW: i32 = 22;
const SWATCH: i32 = 34;

fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, entries: &[Entry], top: i32) -> Result<()> {
    let style = font::text(LEGEND_FONT);
    let (w, h) = area.dim_in_pixel();
    let max_text = w.saturating_sub(SWATCH as u32 + 14);
    let rows = ((h as i32 - top) / LEGEND_ROW).max(1) as usize;
    let shown = if entries.len() > rows {
        rows - 1
    } else {
        entries.len()
    };
    for (i, e) in entries.iter().take(shown).enumerate() {
        let y = top + i as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        let (x0, x1) = (6, 6 + SWATCH - 6);
        if let Some((c, dashed, width)) = e.line {
            let st = c.stroke_width(width);
            if dashed {
                for k in 0..3 {
                    area.draw(&PathElement::new(
                        vec![(x0 + k * 10, y), (x0 + k * 10 + 6, y)],
                        st,
                    ))
                    .map_err(err)?;
                }
            } else {
                area.draw(&PathElement::new(vec![(x0, y), (x1, y)], st))
                    .map_err(err)?;
            }
        }
        if let Some((c, shape)) = e.marker {
            marker(area, ((x0 + x1) / 2, y), shape, c.filled())?;
        }
        if e.vline {
            let st = VLINE_COLOR.stroke_width(2);
            for k in 0..3 {
                let yy = y - 9 + k * 7;
                area.draw(&PathElement::new(
                    vec![((x0 + x1) / 2, yy), ((x0 + x1) / 2, yy + 4)],
                    st,
                ))
                .map_err(err)?;
            }
        }
        let text = fit(area, &e.text, &style, max_text);
        area.draw_text(
            &text,
            &style.pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            )),
            (SWATCH + 8, y),
        )
        .map_err(err)?;
    }
    if shown < entries.len() {
        let y = top + shown as i32 * LEGEND_ROW + LEGEND_ROW / 2;
        area.draw_text(
            &format!("… and {} more", entries.len() - shown),
            &style.pos(plotters::style::text_anchor::Pos::new(
                plotters::style::text_anchor::HPos::Left,
                plotters::style::text_anchor::VPos::Center,
            )),
            (SWATCH + 8, y),
        )
        .map_err(err)?;
    }
    Ok(())
}

/// Draw `chart` on `root`.
fn draw<DB: DrawingBackend>(chart: &Chart, root: &DrawingArea<DB, Shift>) -> Result<()> {
    font::ensure()?;
    let layout = Layout::of(chart);
    root.fill(&WHITE).map_err(err)?;
    let (w, _) = root.dim_in_pixel();

    // Title: as large as fits the width, down to 14 px, then shortened.
    let mut size = 20.0;
    while size > 14.0 && text_width(root, &chart.title, &font::bold(size)) + 20 > w {
        size -= 1.0;
    }
    let title_style = font::bold(size);
    let title = fit(root, &chart.title, &title_style, w.saturating_sub(20));
    let area = root.titled(&title, title_style).map_err(err)?;

    // Legend on the right, as wide as its longest entry needs (at most 40% of the chart).
    let entries = legend_entries(chart, &layout);
    let legend_w = if entries.is_empty() {
        0
    } else {
        let style = font::text(LEGEND_FONT);
        let widest = entries
            .iter()
            .map(|e| text_width(root, &e.text, &style))
            .max()
            .unwrap_or(0);
        (widest + SWATCH as u32 + 20).min(w * 2 / 5)
    };
    let (plot_area, legend_area) = area.split_horizontally(w - legend_w);

    let tick_style = font::text(14.0);
    let y_tick_w = layout
        .y
        .bold
        .iter()
        .map(|v| text_width(root, &layout.y.label(*v), &tick_style))
        .max()
        .unwrap_or(20);
    let x_fmt = |v: &f64| layout.x.label(*v);
    let y_fmt = |v: &f64| layout.y.label(*v);
    let mut cc = ChartBuilder::on(&plot_area)
        .margin(12)
        .x_label_area_size(48)
        .y_label_area_size(y_tick_w + 34)
        .build_cartesian_2d(layout.x.coord(), layout.y.coord())
        .map_err(err)?;
    cc.configure_mesh()
        .x_desc(chart.x.title.as_str())
        .y_desc(chart.y.title.as_str())
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style(tick_style.clone())
        .axis_desc_style(font::text(16.0))
        .bold_line_style(RGBColor(215, 215, 215))
        .light_line_style(RGBColor(240, 240, 240))
        .axis_style(RGBColor(90, 90, 90))
        .draw()
        .map_err(err)?;

    for v in &chart.vlines {
        if let Some(x) = AxisLayout::t(layout.x.scale, v.x) {
            cc.draw_series(DashedLineSeries::new(
                vec![(x, layout.y.lo), (x, layout.y.hi)],
                6,
                5,
                VLINE_COLOR.stroke_width(2),
            ))
            .map_err(err)?;
        }
    }

    for (si, s) in chart.series.iter().enumerate() {
        let c = color(s);
        if s.mark != Mark::Points {
            // Break the line where a point cannot be shown, rather than bridging the gap.
            let mut segments: Vec<Vec<(f64, f64)>> = vec![vec![]];
            for p in &s.points {
                match layout.at(*p, si) {
                    Some(q) => segments.last_mut().expect("non-empty").push(q),
                    None => segments.push(vec![]),
                }
            }
            let style = c.stroke_width(s.width);
            for seg in segments.into_iter().filter(|g| g.len() > 1) {
                if s.dashed {
                    cc.draw_series(DashedLineSeries::new(seg, 8, 5, style))
                        .map_err(err)?;
                } else {
                    cc.draw_series(LineSeries::new(seg, style)).map_err(err)?;
                }
            }
        }
        for (p, e) in s.points.iter().zip(&s.errors) {
            if let (Some((x, y)), Some(lo), Some(hi)) = (
                layout.at(*p, si),
                AxisLayout::t(layout.y.scale, e.0),
                AxisLayout::t(layout.y.scale, e.1),
            ) {
                cc.draw_series(std::iter::once(ErrorBar::new_vertical(
                    x,
                    lo,
                    y,
                    hi,
                    c.stroke_width(2),
                    10,
                )))
                .map_err(err)?;
            }
        }
        if s.mark != Mark::Line {
            for p in &s.points {
                if let Some(q) = layout.at(*p, si) {
                    marker(cc.plotting_area(), q, s.shape, c.filled())?;
                }
            }
        }
    }

    if !entries.is_empty() {
        draw_legend(&legend_area, &entries, 12)?;
    }
    Ok(())
}

pub(super) fn png(chart: &Chart) -> Result<Vec<u8>> {
    use image::codecs::png::PngEncoder;
    use image::{ExtendedColorType, ImageEncoder};
    let (w, h) = (chart.width.max(200), chart.height.max(150));
    let mut buf = vec![0u8; w as usize * h as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(chart, &root)?;
        root.present().map_err(err)?;
    }
    let mut out = Vec::new();
    PngEncoder::new(&mut out).write_image(&buf, w, h, ExtendedColorType::Rgb8)?;
    Ok(out)
}

pub(super) fn svg(chart: &Chart) -> Result<String> {
    let (w, h) = (chart.width.max(200), chart.height.max(150));
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        draw(chart, &root)?;
        root.present().map_err(err)?;
    }
    Ok(out)
}
