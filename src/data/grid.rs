//! PNG grids of images, and of originals beside their reconstructions. Pixels come in as f32
//! [n, c, h, w] in [0, 1]; 3-channel images are shown as RGB, any other channel count as its
//! views side by side (NORB's stereo pair as left | right).
use crate::util::fs::write_atomic_with;
use anyhow::{ensure, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, ImageEncoder};
use std::path::Path;

/// Gap between the channels (views) of one image.
const VIEW_GAP: usize = 1;
/// Gap between tiles.
const TILE_GAP: usize = 3;
/// Background: a mid grey that is neither a black nor a white image.
const BACKGROUND: [u8; 3] = [128, 128, 160];

/// An RGB canvas the grids are drawn on.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&BACKGROUND);
        }
        Self { width, height, rgb }
    }

    fn to_u8(v: f32) -> u8 {
        // NaN becomes black rather than poisoning the picture.
        (if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) } * 255.0).round() as u8
    }

    /// Draw one image [c, h, w] with its top-left corner at (x0, y0).
    fn draw(&mut self, img: &[f32], c: usize, h: usize, w: usize, x0: usize, y0: usize) {
        let plane = h * w;
        for y in 0..h {
            for x in 0..w {
                if c == 3 {
                    let o = ((y0 + y) * self.width + x0 + x) * 3;
                    for k in 0..3 {
                        self.rgb[o + k] = Self::to_u8(img[k * plane + y * w + x]);
                    }
                } else {
                    for k in 0..c {
                        let o = ((y0 + y) * self.width + x0 + k * (w + VIEW_GAP) + x) * 3;
                        let g = Self::to_u8(img[k * plane + y * w + x]);
                        self.rgb[o..o + 3].fill(g);
                    }
                }
            }
        }
    }

    fn save(self, path: &Path) -> Result<()> {
        write_atomic_with(path, |w| {
            PngEncoder::new(w).write_image(
                &self.rgb,
                self.width as u32,
                self.height as u32,
                ExtendedColorType::Rgb8,
            )?;
            Ok(())
        })
    }
}

/// Drawn width of one image: its views side by side, or one RGB view.
fn image_width(c: usize, w: usize) -> usize {
    if c == 3 {
        w
    } else {
        c * w + (c - 1) * VIEW_GAP
    }
}

fn check(pixels: &[f32], n: usize, c: usize, h: usize, w: usize, cols: usize, what: &str) -> Result<()> {
    ensure!(
        n > 0 && c > 0 && h > 0 && w > 0 && cols > 0,
        "image grid: nothing to draw ({what}: n={n}, c={c}, h={h}, w={w}, cols={cols})"
    );
    ensure!(
        pixels.len() == n * c * h * w,
        "image grid: {what} has {} values, expected n*c*h*w = {n}*{c}*{h}*{w}",
        pixels.len()
    );
    Ok(())
}

/// Tiles of one size laid out `cols` per row with `TILE_GAP` around each.
struct Tiling {
    cols: usize,
    rows: usize,
    tile_w: usize,
    tile_h: usize,
}

impl Tiling {
    fn new(n: usize, cols: usize, tile_w: usize, tile_h: usize) -> Self {
        let cols = cols.min(n);
        Self {
            cols,
            rows: n.div_ceil(cols),
            tile_w,
            tile_h,
        }
    }

    fn canvas(&self) -> Canvas {
        Canvas::new(
            self.cols * self.tile_w + (self.cols + 1) * TILE_GAP,
            self.rows * self.tile_h + (self.rows + 1) * TILE_GAP,
        )
    }

    /// Top-left corner of tile `i`.
    fn origin(&self, i: usize) -> (usize, usize) {
        let (r, col) = (i / self.cols, i % self.cols);
        (
            TILE_GAP + col * (self.tile_w + TILE_GAP),
            TILE_GAP + r * (self.tile_h + TILE_GAP),
        )
    }
}

/// A grid of `n` images [n, channels, height, width] in [0, 1], `cols` per row.
pub fn save_grid(
    path: &Path,
    pixels: &[f32],
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    cols: usize,
) -> Result<()> {
    check(pixels, n, channels, height, width, cols, "pixels")?;
    let tiling = Tiling::new(n, cols, image_width(channels, width), height);
    let mut canvas = tiling.canvas();
    let d = channels * height * width;
    for i in 0..n {
        let (x0, y0) = tiling.origin(i);
        canvas.draw(&pixels[i * d..(i + 1) * d], channels, height, width, x0, y0);
    }
    canvas.save(path)
}

/// A grid of `n` (original | reconstruction) pairs, `cols` pairs per row.
#[allow(clippy::too_many_arguments)]
pub fn save_recon_grid(
    path: &Path,
    originals: &[f32],
    recons: &[f32],
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    cols: usize,
) -> Result<()> {
    check(originals, n, channels, height, width, cols, "originals")?;
    check(recons, n, channels, height, width, cols, "reconstructions")?;
    let tw = image_width(channels, width);
    // Original and reconstruction sit closer to each other than to the next pair.
    let tiling = Tiling::new(n, cols, 2 * tw + VIEW_GAP + 1, height);
    let mut canvas = tiling.canvas();
    let d = channels * height * width;
    for i in 0..n {
        let (x0, y0) = tiling.origin(i);
        canvas.draw(&originals[i * d..(i + 1) * d], channels, height, width, x0, y0);
        canvas.draw(
            &recons[i * d..(i + 1) * d],
            channels,
            height,
            width,
            x0 + tw + VIEW_GAP + 1,
            y0,
        );
    }
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_layout_and_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        // 5 two-channel 2x3 images, 2 per row: left view black, right view white.
        let mut px = Vec::new();
        for _ in 0..5 {
            px.extend(std::iter::repeat_n(0.0f32, 6));
            px.extend(std::iter::repeat_n(1.0f32, 6));
        }
        save_grid(&p, &px, 5, 2, 2, 3, 2).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        let tw = 2 * 3 + VIEW_GAP;
        assert_eq!(
            img.dimensions(),
            ((2 * tw + 3 * TILE_GAP) as u32, (3 * 2 + 4 * TILE_GAP) as u32)
        );
        let g = TILE_GAP as u32;
        assert_eq!(img.get_pixel(g, g).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(g + 3 + VIEW_GAP as u32, g).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(0, 0).0, BACKGROUND);
        // The sixth slot (row 2, col 1) is empty.
        assert_eq!(img.get_pixel(g + tw as u32 + g, 2 * (2 + g) + g).0, BACKGROUND);
    }

    #[test]
    fn recon_grid_puts_reconstruction_right_of_original_and_rejects_bad_lengths() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.png");
        let orig = vec![0.0f32; 3 * 4];
        let rec = vec![1.0f32; 3 * 4];
        save_recon_grid(&p, &orig, &rec, 3, 1, 2, 2, 3).unwrap();
        let img = image::open(&p).unwrap().to_rgb8();
        let g = TILE_GAP as u32;
        assert_eq!(img.get_pixel(g, g).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(g + 2 + VIEW_GAP as u32 + 1, g).0, [255, 255, 255]);
        assert!(save_recon_grid(&p, &orig, &rec[1..], 3, 1, 2, 2, 3).is_err());
        assert!(save_grid(&dir.path().join("e.png"), &[], 0, 1, 2, 2, 3).is_err());
        assert!(!dir.path().join("e.png").exists());
    }
}
