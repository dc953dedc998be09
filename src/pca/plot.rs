//! The explained-variance curve as a PNG: cumulative fraction of variance (y, 0..1) against the
//! number of components (x, 1..K), grey gridlines at quarters, a red marker and its value at each
//! requested k, and axis end values in a tiny built-in digit font (no font dependency).
use image::{Rgb, RgbImage};
use std::path::Path;

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

fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && x < W && y < H {
        img.put_pixel(x as u32, y as u32, c);
    }
}

fn line(img: &mut RgbImage, (xa, ya): (i64, i64), (xb, yb): (i64, i64), c: Rgb<u8>) {
    let steps = (xb - xa).abs().max((yb - ya).abs()).max(1);
    for s in 0..=steps {
        let x = xa + (xb - xa) * s / steps;
        let y = ya + (yb - ya) * s / steps;
        put(img, x, y, c);
        put(img, x, y + 1, c);
    }
}

/// 3x5 glyphs for digits and '.', top row in the high bits.
fn glyph(ch: char) -> u16 {
    match ch {
        '0' => 0b111_101_101_101_111,
        '1' => 0b010_110_010_010_111,
        '2' => 0b111_001_111_100_111,
        '3' => 0b111_001_111_001_111,
        '4' => 0b101_101_111_001_001,
        '5' => 0b111_100_111_001_111,
        '6' => 0b111_100_111_101_111,
        '7' => 0b111_001_010_010_010,
        '8' => 0b111_101_111_101_111,
        '9' => 0b111_101_111_001_111,
        '.' => 0b000_000_000_000_010,
        _ => 0,
    }
}

fn text(img: &mut RgbImage, s: &str, x: i64, y: i64, scale: i64) {
    for (n, ch) in s.chars().enumerate() {
        let g = glyph(ch);
        for bit in 0..15 {
            if g >> (14 - bit) & 1 == 1 {
                let (gx, gy) = (
                    x + n as i64 * 4 * scale + (bit % 3) * scale,
                    y + (bit / 3) * scale,
                );
                for dy in 0..scale {
                    for dx in 0..scale {
                        put(img, gx + dx, gy + dy, Rgb([0, 0, 0]));
                    }
                }
            }
        }
    }
}
