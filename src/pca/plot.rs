//! The explained-variance curve as a PNG: cumulative fraction of variance (y, 0..1) against the
//! number of components (x, 1..K), grey gridlines at quarters, a red marker and its value at each
//! requested k, and axis end values in a tiny built-in digit font (no font dependency).
use image::{Rgb, RgbImage};
use std::path::Path;

use crate::util::raster::{line, put, text};

const W: i64 = 720;
const H: i64 = 420;
const LEFT: i64 = 50;
const RIGHT: i64 = 30;
const TOP: i64 = 20;
const BOTTOM: i64 = 40;

/// Write the curve of `cumulative[i]` (fraction after i+1 components) with markers at `marks`.
pub fn explained_variance_png(path: &Path, cumulative: &[f64], marks: &[usize]) -> anyhow::Result<()> {
    let mut img = RgbImage::from_pixel(W as u32, H as u32, Rgb([255, 255, 255]));
    let (x0, x1, y0, y1) = (LEFT, W - RIGHT, TOP, H - BOTTOM);
    let kmax = cumulative.len().max(1);
    let px = |k: usize| x0 + ((k as f64 - 1.0) / (kmax.max(2) - 1) as f64 * (x1 - x0) as f64).round() as i64;
    let py = |v: f64| y1 - (v.clamp(0.0, 1.0) * (y1 - y0) as f64).round() as i64;
    for q in 1..=4 {
        let y = py(q as f64 / 4.0);
        line(&mut img, (x0, y), (x1, y), Rgb([225, 225, 225]));
        text(&mut img, &format!("{:.2}", q as f64 / 4.0), 6, y - 5, 2);
    }
    line(&mut img, (x0, y1), (x1, y1), Rgb([0, 0, 0]));
    line(&mut img, (x0, y0), (x0, y1), Rgb([0, 0, 0]));
    text(&mut img, "0", 30, y1 - 5, 2);
    text(&mut img, "1", x0 - 2, y1 + 10, 2);
    if !marks.contains(&kmax) {
        let label = kmax.to_string();
        text(&mut img, &label, x1 - 8 * label.len() as i64 + 8, y1 + 10, 2);
    }
    for w in cumulative.windows(2).enumerate() {
        let (i, pair) = w;
        line(
            &mut img,
            (px(i + 1), py(pair[0])),
            (px(i + 2), py(pair[1])),
            Rgb([31, 119, 180]),
        );
    }
    for &k in marks.iter().filter(|&&k| k >= 1 && k <= cumulative.len()) {
        let (x, y) = (px(k), py(cumulative[k - 1]));
        line(&mut img, (x, y1), (x, y1 + 6), Rgb([0, 0, 0]));
        for dy in -3..=3 {
            for dx in -3..=3 {
                put(&mut img, x + dx, y + dy, Rgb([214, 39, 40]));
            }
        }
        text(
            &mut img,
            &format!("{:.3}", cumulative[k - 1]),
            (x - 20).clamp(x0 + 4, W - 44),
            y + 8,
            2,
        );
        let kl = k.to_string();
        text(&mut img, &kl, x - 4 * kl.len() as i64, y1 + 24, 2);
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    crate::util::write_atomic(path, &bytes)
}
