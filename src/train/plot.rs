//! The loss-curve PNG: training loss (blue) and validation loss (orange) per epoch, the best
//! epoch marked by a green vertical line, y-axis range written at its ends and the epoch count at
//! the right end of the x-axis (a tiny built-in digit font keeps this dependency-free).
use crate::format::EpochRecord;
use anyhow::Result;
use image::{Rgb, RgbImage};
use std::path::Path;

use crate::util::raster::{line, put, text};

const W: u32 = 640;
const H: u32 = 400;
const LEFT: i64 = 70;
const RIGHT: i64 = 20;
const TOP: i64 = 20;
const BOTTOM: i64 = 30;

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e5 || (v != 0.0 && v.abs() < 1e-2) {
        format!("{v:.2e}")
    } else {
        format!("{v:.2}")
    }
}

pub fn loss_curve(path: &Path, history: &[EpochRecord]) -> Result<()> {
    let mut img = RgbImage::from_pixel(W, H, Rgb([255, 255, 255]));
    let (x0, x1, y0, y1) = (LEFT, W as i64 - RIGHT, TOP, H as i64 - BOTTOM);
    let axis = Rgb([0, 0, 0]);
    line(&mut img, (x0, y1), (x1, y1), axis);
    line(&mut img, (x0, y0), (x0, y1), axis);
    let finite = |v: f64| v.is_finite();
    // Skip the first epoch in the range when there are several: it is often far above the rest.
    let skip = usize::from(history.len() > 2);
    let vals: Vec<f64> = history[skip.min(history.len())..]
        .iter()
        .flat_map(|r| [r.train_loss, r.val_loss])
        .filter(|v| finite(*v))
        .collect();
    if !vals.is_empty() {
        let lo = vals.iter().cloned().fold(f64::INFINITY, f64::min);
        let mut hi = vals.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        if hi - lo < 1e-9 {
            hi = lo + 1.0;
        }
        let n = history.len();
        let px = |i: usize| x0 + ((i as f64 + 0.5) / n as f64 * (x1 - x0) as f64) as i64;
        let py = |v: f64| {
            let t = ((v - lo) / (hi - lo)).clamp(-0.05, 1.05);
            y1 - (t * (y1 - y0) as f64) as i64
        };
        let best = history
            .iter()
            .filter(|r| finite(r.val_loss))
            .min_by(|a, b| a.val_loss.total_cmp(&b.val_loss));
        if let Some(b) = best {
            let x = px(b.epoch - 1);
            line(&mut img, (x, y0), (x, y1), Rgb([80, 180, 80]));
        }
        let series: [(fn(&EpochRecord) -> f64, Rgb<u8>); 2] = [
            (|r| r.train_loss, Rgb([40, 90, 200])),
            (|r| r.val_loss, Rgb([230, 120, 20])),
        ];
        for (get, col) in series {
            let pts: Vec<(i64, i64)> = history
                .iter()
                .enumerate()
                .filter(|(_, r)| finite(get(r)))
                .map(|(i, r)| (px(i), py(get(r))))
                .collect();
            for w in pts.windows(2) {
                line(&mut img, w[0], w[1], col);
            }
            for p in &pts {
                for d in -2..=2 {
                    put(&mut img, p.0 + d, p.1, col);
                    put(&mut img, p.0, p.1 + d, col);
                }
            }
        }
        text(&mut img, &fmt_num(hi), 4, y0, 2);
        text(&mut img, &fmt_num(lo), 4, y1 - 10, 2);
        text(&mut img, &n.to_string(), x1 - 20, y1 + 8, 2);
        text(&mut img, "1", x0, y1 + 8, 2);
    }
    let mut bytes = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)?;
    crate::util::write_atomic(path, &bytes)
}
