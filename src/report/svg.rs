//! Small inline-SVG line charts (no JavaScript, no external files), so the report opens offline.

/// One line (or set of labelled points) on a chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
    pub color: String,
    /// Draw the points joined by a line (else markers only).
    pub line: bool,
    pub dashed: bool,
    /// Text beside each marker (same length as `points`, or empty).
    pub point_labels: Vec<String>,
}

impl Series {
    pub fn line(name: &str, points: Vec<(f64, f64)>, color: &str) -> Self {
        Self {
            name: name.into(),
            points,
            color: color.into(),
            line: true,
            dashed: false,
            point_labels: vec![],
        }
    }
}

#[derive(Debug, Clone)]
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub log_x: bool,
    pub log_y: bool,
    pub width: f64,
    pub height: f64,
}

/// Colours that stay distinct for the first few series and on white.
pub const PALETTE: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2",
];

pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_ticks(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if !(hi > lo) {
        return vec![lo];
    }
    let raw = (hi - lo) / n as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Ticks on a log10 axis (values are exponents): decades, or 1-2-5 steps when the range is short.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let decades: Vec<f64> = (lo.ceil() as i64..=hi.floor() as i64).map(|e| e as f64).collect();
    if decades.len() >= 3 {
        return decades;
    }
    let mut out = Vec::new();
    for e in (lo.floor() as i64)..=(hi.ceil() as i64) {
        for m in [1.0f64, 2.0, 5.0] {
            let t = e as f64 + m.log10();
            if t >= lo && t <= hi {
                out.push(t);
            }
        }
    }
    out
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e4).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{}", (v * 100.0).round() / 100.0)
    } else {
        format!("{}", (v * 10000.0).round() / 10000.0)
    }
}

impl Chart {
    /// Render the series as an `<svg>` element. Non-positive values are dropped on log axes.
    pub fn render(&self, series: &[Series]) -> String {
        let tx = |v: f64| if self.log_x { v.log10() } else { v };
        let ty = |v: f64| if self.log_y { v.log10() } else { v };
        let valid = |&(x, y): &(f64, f64)| {
            x.is_finite() && y.is_finite() && (!self.log_x || x > 0.0) && (!self.log_y || y > 0.0)
        };
        let all: Vec<(f64, f64)> = series
            .iter()
            .flat_map(|s| s.points.iter().copied().filter(valid))
            .map(|(x, y)| (tx(x), ty(y)))
            .collect();
        let (w, h) = (self.width, self.height);
        // The legend sits right of the plot so it never hides a line.
        let legend_w = if series.iter().any(|s| !s.name.is_empty()) {
            180.0
        } else {
            0.0
        };
        let (ml, mr, mt, mb) = (70.0, 20.0 + legend_w, 34.0, 48.0);
        let mut svg = format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" class="chart" role="img"><title>{}</title>"#,
            escape(&self.title)
        );
        svg += &format!(
            r#"<text x="{}" y="20" text-anchor="middle" class="ctitle">{}</text>"#,
            w / 2.0,
            escape(&self.title)
        );
        if all.is_empty() {
            svg += &format!(
                r#"<text x="{}" y="{}" text-anchor="middle">no data</text></svg>"#,
                w / 2.0,
                h / 2.0
            );
            return svg;
        }
        let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
            (f64::INFINITY, f64::NEG_INFINITY, f64::INFINITY, f64::NEG_INFINITY),
            |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
        );
        if x1 - x0 < 1e-12 {
            x0 -= 0.5;
            x1 += 0.5;
        }
        if y1 - y0 < 1e-12 {
            y0 -= 0.5 * y0.abs().max(1e-3);
            y1 += 0.5 * y1.abs().max(1e-3);
        }
        let pad = (y1 - y0) * 0.06;
        y0 -= pad;
        y1 += pad;
        let xpad = (x1 - x0) * 0.04;
        x0 -= xpad;
        x1 += xpad;
        let px = |x: f64| ml + (x - x0) / (x1 - x0) * (w - ml - mr);
        let py = |y: f64| mt + (1.0 - (y - y0) / (y1 - y0)) * (h - mt - mb);
        // Grid and ticks.
        let xt: Vec<f64> = if self.log_x {
            log_ticks(x0, x1)
        } else {
            nice_ticks(x0, x1, 6)
        };
        let yt: Vec<f64> = if self.log_y {
            log_ticks(y0, y1)
        } else {
            nice_ticks(y0, y1, 5)
        };
        for t in &xt {
            let label = if self.log_x {
                fmt_tick(10f64.powf(*t))
            } else {
                fmt_tick(*t)
            };
            svg += &format!(
                r##"<line x1="{0:.1}" x2="{0:.1}" y1="{1}" y2="{2}" stroke="#e5e5e5"/><text x="{0:.1}" y="{3}" text-anchor="middle" class="tick">{4}</text>"##,
                px(*t),
                mt,
                h - mb,
                h - mb + 16.0,
                label
            );
        }
        for t in &yt {
            let label = if self.log_y {
                fmt_tick(10f64.powf(*t))
            } else {
                fmt_tick(*t)
            };
            svg += &format!(
                r##"<line x1="{1}" x2="{2}" y1="{0:.1}" y2="{0:.1}" stroke="#e5e5e5"/><text x="{3}" y="{4:.1}" text-anchor="end" class="tick">{5}</text>"##,
                py(*t),
                ml,
                w - mr,
                ml - 6.0,
                py(*t) + 4.0,
                label
            );
        }
        svg += &format!(
            r##"<rect x="{ml}" y="{mt}" width="{}" height="{}" fill="none" stroke="#999"/>"##,
            w - ml - mr,
            h - mt - mb
        );
        svg += &format!(
            r#"<text x="{}" y="{}" text-anchor="middle" class="axis">{}</text>"#,
            (ml + w - mr) / 2.0,
            h - 10.0,
            escape(&self.x_label)
        );
        svg += &format!(
            r#"<text x="16" y="{0}" text-anchor="middle" transform="rotate(-90 16 {0})" class="axis">{1}</text>"#,
            (mt + h - mb) / 2.0,
            escape(&self.y_label)
        );
        // Series.
        for (si, s) in series.iter().enumerate() {
            let pts: Vec<(usize, f64, f64)> = s
                .points
                .iter()
                .enumerate()
                .filter(|(_, p)| valid(p))
                .map(|(i, &(x, y))| (i, px(tx(x)), py(ty(y))))
                .collect();
            if s.line && pts.len() > 1 {
                let d: Vec<String> = pts.iter().map(|(_, x, y)| format!("{x:.1},{y:.1}")).collect();
                svg += &format!(
                    r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{}/>"#,
                    d.join(" "),
                    s.color,
                    if s.dashed {
                        r#" stroke-dasharray="6 4""#
                    } else {
                        ""
                    }
                );
            }
            for (i, x, y) in &pts {
                svg += &format!(
                    r##"<circle cx="{x:.1}" cy="{y:.1}" r="{}" fill="{}" stroke="#fff"/>"##,
                    if s.line { 3.0 } else { 5.5 },
                    s.color
                );
                if let Some(l) = s.point_labels.get(*i).filter(|l| !l.is_empty()) {
                    // Labels near the right edge go to the left of their marker.
                    let right = *x > ml + 0.6 * (w - ml - mr);
                    svg += &format!(
                        r#"<text x="{:.1}" y="{:.1}" class="plabel" fill="{}"{}>{}</text>"#,
                        if right { x - 8.0 } else { x + 8.0 },
                        // Alternate above and below, so labels of points at one x do not overlap.
                        if si % 2 == 0 { y - 6.0 } else { y + 15.0 },
                        s.color,
                        if right { r#" text-anchor="end""# } else { "" },
                        escape(l)
                    );
                }
            }
        }
        // Legend, top right inside the plot.
        let mut ly = mt + 16.0;
        for s in series.iter().filter(|s| !s.name.is_empty()) {
            svg += &format!(
                r#"<rect x="{}" y="{}" width="14" height="4" fill="{}"/><text x="{}" y="{}" class="legend">{}</text>"#,
                w - mr + 12.0,
                ly - 5.0,
                s.color,
                w - mr + 32.0,
                ly,
                escape(&s.name)
            );
            ly += 16.0;
        }
        svg + "</svg>"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chart_places_points_and_escapes_text() {
        let c = Chart {
            title: "a<b".into(),
            x_label: "k".into(),
            y_label: "mse".into(),
            log_x: true,
            log_y: false,
            width: 400.0,
            height: 300.0,
        };
        let svg = c.render(&[Series::line(
            "pca",
            vec![(10.0, 1.0), (100.0, 0.5), (0.0, 0.2)],
            "#000",
        )]);
        assert!(svg.contains("a&lt;b") && !svg.contains("a<b"));
        // Two valid points on a log axis (x=0 dropped): one polyline with two vertices.
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert!(c.render(&[]).contains("no data"));
    }
}
