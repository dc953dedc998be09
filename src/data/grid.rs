//! PNG grids of images, and of originals beside their reconstructions. Pixels come in as f32
//! [n, c, h, w] in [0, 1]; 3-channel images are shown as RGB, any other channel count as its
//! views side by side (NORB's stereo pair as left | right).
//!
//! Pictures are for a person: each image is enlarged by an integer factor (nearest neighbour, so
//! no pixel is invented) until it is at least [`MIN_TILE`] pixels tall, the number of columns is
//! chosen so the last row is not left half empty, and labelled grids say what their rows and
//! columns show, in the charts' embedded font.
use crate::plot::font;
use crate::util::fs::write_atomic_with;
use anyhow::{anyhow, ensure, Result};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;

/// Gap between the channels (views) of one image, in enlarged pixels.
const VIEW_GAP: usize = 2;
/// Gap between tiles.
const TILE_GAP: usize = 8;
/// Gap between an original and its reconstruction (wider than between views, narrower than
/// between pairs).
const PAIR_GAP: usize = 5;
/// Background between tiles: a mid grey that is neither a black nor a white image.
const BACKGROUND: [u8; 3] = [128, 128, 160];
/// Background behind titles and labels.
const LABEL_BACKGROUND: [u8; 3] = [250, 250, 250];
/// Images are enlarged to at least this many pixels in height.
pub const MIN_TILE: usize = 64;
const LABEL_FONT: f64 = 14.0;
const TITLE_FONT: f64 = 15.0;
/// Height of the title line and of the column header line.
const TITLE_H: usize = 26;
const HEADER_H: usize = 22;

/// The enlargement factor for images `h` pixels tall.
pub fn upscale(h: usize) -> usize {
    MIN_TILE.div_ceil(h.max(1)).max(1)
}

/// Columns for `n` tiles with about `cols` per row (from 2/3 of it to 1.5 times it), chosen so
/// the last row is as full as possible, then as close to `cols` as possible: 10 images at about
/// 4 per row become 5 + 5, not 4 + 4 + 2.
pub fn balanced_cols(n: usize, cols: usize) -> usize {
    let n = n.max(1);
    let cols = cols.clamp(1, n);
    let lo = (2 * cols).div_ceil(3).max(1);
    let hi = (cols + cols / 2).min(n);
    (lo..=hi)
        .min_by_key(|&c| {
            let empty = n.div_ceil(c) * c - n;
            // A last row at least half full first, then fewest empty slots.
            (2 * (c - empty) < c, empty, c.abs_diff(cols), std::cmp::Reverse(c))
        })
        .unwrap_or(cols)
}

/// What a labelled grid says about itself; every part is optional.
#[derive(Debug, Clone, Default)]
pub struct GridLabels {
    /// One line above the grid.
    pub title: String,
    /// A header above each column (empty, or one per column).
    pub columns: Vec<String>,
    /// A label left of each row (empty, or one per row).
    pub rows: Vec<String>,
}

/// An RGB canvas the grids are drawn on.
struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
    /// Enlargement factor of every image drawn.
    scale: usize,
}

impl Canvas {
    fn new(width: usize, height: usize, scale: usize) -> Self {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for _ in 0..width * height {
            rgb.extend_from_slice(&BACKGROUND);
        }
        Self {
            width,
            height,
            rgb,
            scale,
        }
    }

    fn to_u8(v: f32) -> u8 {
        // NaN becomes black rather than poisoning the picture.
        (if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) } * 255.0).round() as u8
    }

    fn fill_rect(&mut self, x0: usize, y0: usize, w: usize, h: usize, colour: [u8; 3]) {
        for y in y0..(y0 + h).min(self.height) {
            for x in x0..(x0 + w).min(self.width) {
                let o = (y * self.width + x) * 3;
                self.rgb[o..o + 3].copy_from_slice(&colour);
            }
        }
    }

    /// Draw one image [c, h, w], enlarged, with its top-left corner at (x0, y0).
    fn draw(&mut self, img: &[f32], c: usize, h: usize, w: usize, x0: usize, y0: usize) {
        let (plane, s) = (h * w, self.scale);
        for y in 0..h {
            for x in 0..w {
                if c == 3 {
                    let p = y * w + x;
                    let rgb = [
                        Self::to_u8(img[p]),
                        Self::to_u8(img[plane + p]),
                        Self::to_u8(img[2 * plane + p]),
                    ];
                    self.fill_rect(x0 + x * s, y0 + y * s, s, s, rgb);
                } else {
                    for k in 0..c {
                        let g = Self::to_u8(img[k * plane + y * w + x]);
                        let left = x0 + k * (w * s + VIEW_GAP) + x * s;
                        self.fill_rect(left, y0 + y * s, s, s, [g, g, g]);
                    }
                }
            }
        }
    }

    /// Draw `text` with its anchor `pos` at (x, y).
    fn text(&mut self, text: &str, style: &TextStyle, pos: Pos, x: usize, y: usize) -> Result<()> {
        if text.is_empty() {
            return Ok(());
        }
        let root = BitMapBackend::with_buffer(&mut self.rgb, (self.width as u32, self.height as u32))
            .into_drawing_area();
        root.draw_text(
            text,
            &style.pos(pos).color(&RGBColor(20, 20, 20)),
            (x as i32, y as i32),
        )
        .map_err(|e| anyhow!("drawing a grid label: {e}"))?;
        root.present().map_err(|e| anyhow!("drawing a grid label: {e}"))
    }

    fn save(self, path: &Path) -> Result<()> {
        write_atomic_with(path, |w| {
            // The best deflate level and per-row filters: enlarged tiles repeat every row
            // `scale` times, which the Up filter turns into zeros; a demo writes dozens of grids.
            PngEncoder::new_with_quality(w, CompressionType::Best, FilterType::Adaptive).write_image(
                &self.rgb,
                self.width as u32,
                self.height as u32,
                ExtendedColorType::Rgb8,
            )?;
            Ok(())
        })
    }
}

/// Drawn width of one image at enlargement `s`: its views side by side, or one RGB view.
fn image_width(c: usize, w: usize, s: usize) -> usize {
    if c == 3 {
        w * s
    } else {
        c * w * s + (c - 1) * VIEW_GAP
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

fn text_width(text: &str, style: &TextStyle) -> usize {
    let mut buf = vec![0u8; 3];
    let area = BitMapBackend::with_buffer(&mut buf, (1, 1)).into_drawing_area();
    area.estimate_text_size(text, style)
        .map(|(w, _)| w as usize)
        .unwrap_or(8 * text.chars().count())
}

/// Tiles of one size laid out `cols` per row with `TILE_GAP` around each, below a title and
/// header band and right of a row-label band.
struct Tiling {
    cols: usize,
    rows: usize,
    tile_w: usize,
    tile_h: usize,
    left: usize,
    top: usize,
    min_width: usize,
}

impl Tiling {
    fn new(n: usize, cols: usize, tile_w: usize, tile_h: usize) -> Self {
        let cols = cols.min(n);
        Self {
            cols,
            rows: n.div_ceil(cols),
            tile_w,
            tile_h,
            left: 0,
            top: 0,
            min_width: 0,
        }
    }

    fn width(&self) -> usize {
        (self.left + self.cols * self.tile_w + (self.cols + 1) * TILE_GAP).max(self.min_width)
    }

    fn canvas(&self, scale: usize) -> Canvas {
        let height = self.top + self.rows * self.tile_h + (self.rows + 1) * TILE_GAP;
        let mut c = Canvas::new(self.width(), height, scale);
        let w = c.width;
        c.fill_rect(0, 0, w, self.top, LABEL_BACKGROUND);
        c.fill_rect(0, 0, self.left, height, LABEL_BACKGROUND);
        // A title wider than the tiles widens the canvas: that strip is label background too.
        let grid_right = self.left + self.cols * self.tile_w + (self.cols + 1) * TILE_GAP;
        c.fill_rect(
            grid_right,
            0,
            w.saturating_sub(grid_right),
            height,
            LABEL_BACKGROUND,
        );
        c
    }

    /// Top-left corner of tile `i`.
    fn origin(&self, i: usize) -> (usize, usize) {
        let (r, col) = (i / self.cols, i % self.cols);
        (
            self.left + TILE_GAP + col * (self.tile_w + TILE_GAP),
            self.top + TILE_GAP + r * (self.tile_h + TILE_GAP),
        )
    }
}

/// Draw the title, the column headers (each `sub` sub-columns of `sub_w` pixels: a header per
/// sub-column, e.g. "original" and "reconstruction" within a pair) and the row labels.
fn draw_labels(canvas: &mut Canvas, t: &Tiling, labels: &GridLabels, sub: usize, sub_w: usize) -> Result<()> {
    if !labels.title.is_empty() {
        let style = font::bold(TITLE_FONT);
        canvas.text(
            &labels.title,
            &style,
            Pos::new(HPos::Left, VPos::Center),
            8,
            TITLE_H / 2,
        )?;
    }
    if !labels.columns.is_empty() {
        let style = font::text(LABEL_FONT);
        let y = t.top - HEADER_H / 2;
        for col in 0..t.cols {
            for k in 0..sub {
                let Some(text) = labels
                    .columns
                    .get(col * sub + k)
                    .or(labels.columns.get(k).filter(|_| labels.columns.len() == sub))
                else {
                    continue;
                };
                let (x0, _) = t.origin(col);
                let x = x0 + k * (sub_w + PAIR_GAP) + sub_w / 2;
                canvas.text(text, &style, Pos::new(HPos::Center, VPos::Center), x, y)?;
            }
        }
    }
    if !labels.rows.is_empty() {
        let style = font::text(LABEL_FONT);
        for (r, text) in labels.rows.iter().enumerate().take(t.rows) {
            let (_, y0) = t.origin(r * t.cols);
            canvas.text(
                text,
                &style,
                Pos::new(HPos::Right, VPos::Center),
                t.left - 6,
                y0 + t.tile_h / 2,
            )?;
        }
    }
    Ok(())
}

/// Make room for `labels` around `t` (bands for the title, headers and row labels).
fn reserve(t: &mut Tiling, labels: &GridLabels) {
    ensure_font();
    if !labels.title.is_empty() {
        t.top += TITLE_H;
        t.min_width = text_width(&labels.title, &font::bold(TITLE_FONT)) + 16;
    }
    if !labels.columns.is_empty() {
        t.top += HEADER_H;
    }
    if !labels.rows.is_empty() {
        let style = font::text(LABEL_FONT);
        t.left = labels
            .rows
            .iter()
            .map(|r| text_width(r, &style))
            .max()
            .unwrap_or(0)
            + 12;
    }
}

fn ensure_font() {
    // Without the font, labels are skipped by plotters' error path below; registration of
    // embedded bytes only fails if the font data were corrupt.
    let _ = font::ensure();
}

/// The longest of `options` whose width fits `max` pixels (the last one otherwise).
fn fitting<'a>(options: &[&'a str], max: usize) -> &'a str {
    let style = font::text(LABEL_FONT);
    options
        .iter()
        .find(|o| text_width(o, &style) <= max)
        .copied()
        .unwrap_or(options[options.len() - 1])
}

/// A grid of `n` images [n, channels, height, width] in [0, 1], about `cols` per row (see
/// [`balanced_cols`]), enlarged to at least [`MIN_TILE`] pixels.
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
    save_labelled_grid(
        path,
        pixels,
        n,
        channels,
        height,
        width,
        balanced_cols(n, cols),
        &GridLabels::default(),
    )
}

/// A grid of `n` images laid out exactly `cols` per row, with a title, column headers and row
/// labels (e.g. a traversal: one latent per row, its value per column).
#[allow(clippy::too_many_arguments)]
pub fn save_labelled_grid(
    path: &Path,
    pixels: &[f32],
    n: usize,
    channels: usize,
    height: usize,
    width: usize,
    cols: usize,
    labels: &GridLabels,
) -> Result<()> {
    check(pixels, n, channels, height, width, cols, "pixels")?;
    let s = upscale(height);
    let tw = image_width(channels, width, s);
    let mut tiling = Tiling::new(n, cols, tw, height * s);
    reserve(&mut tiling, labels);
    let mut canvas = tiling.canvas(s);
    let d = channels * height * width;
    for i in 0..n {
        let (x0, y0) = tiling.origin(i);
        canvas.draw(&pixels[i * d..(i + 1) * d], channels, height, width, x0, y0);
    }
    draw_labels(&mut canvas, &tiling, labels, 1, tw)?;
    canvas.save(path)
}

/// A grid of `n` (original | reconstruction) pairs, about `cols` pairs per row, each column
/// headed "original" and "reconstruction".
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
    save_pair_grid(
        path,
        originals,
        recons,
        n,
        (channels, height, width),
        cols,
        [&["original", "orig."], &["reconstruction", "recon.", "rec."]],
    )
}

/// A grid of `n` (left | right) image pairs, about `cols` pairs per row, the two images of a pair
/// closer to each other than to the next pair. Each pair column is headed by the longest of
/// `headers[0]` (left) and `headers[1]` (right) that fits above its image.
pub fn save_pair_grid(
    path: &Path,
    left: &[f32],
    right: &[f32],
    n: usize,
    (channels, height, width): (usize, usize, usize),
    cols: usize,
    headers: [&[&str]; 2],
) -> Result<()> {
    check(left, n, channels, height, width, cols, "left images")?;
    check(right, n, channels, height, width, cols, "right images")?;
    ensure!(
        headers.iter().all(|h| !h.is_empty()),
        "image grid: each side of a pair needs a header"
    );
    let s = upscale(height);
    let tw = image_width(channels, width, s);
    let mut tiling = Tiling::new(n, balanced_cols(n, cols), 2 * tw + PAIR_GAP, height * s);
    ensure_font();
    let labels = GridLabels {
        columns: headers.iter().map(|h| fitting(h, tw).to_string()).collect(),
        ..GridLabels::default()
    };
    reserve(&mut tiling, &labels);
    let mut canvas = tiling.canvas(s);
    let d = channels * height * width;
    for i in 0..n {
        let (x0, y0) = tiling.origin(i);
        canvas.draw(&left[i * d..(i + 1) * d], channels, height, width, x0, y0);
        canvas.draw(
            &right[i * d..(i + 1) * d],
            channels,
            height,
            width,
            x0 + tw + PAIR_GAP,
            y0,
        );
    }
    draw_labels(&mut canvas, &tiling, &labels, 2, tw)?;
    canvas.save(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(p: &Path) -> image::RgbImage {
        image::open(p).unwrap().to_rgb8()
    }

    /// Pixels in the band [y0, y1) that are neither of the band's backgrounds: drawn text.
    fn ink(img: &image::RgbImage, y0: u32, y1: u32) -> usize {
        (y0..y1)
            .flat_map(|y| (0..img.width()).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = img.get_pixel(x, y).0;
                p != LABEL_BACKGROUND && p != BACKGROUND && p[0] < 200
            })
            .count()
    }

    #[test]
    fn columns_fill_the_last_row() {
        assert_eq!(balanced_cols(10, 4), 5);
        assert_eq!(balanced_cols(16, 4), 4);
        assert_eq!(balanced_cols(9, 3), 3);
        assert_eq!(balanced_cols(6, 4), 3);
        assert_eq!(balanced_cols(3, 8), 3);
        assert_eq!(balanced_cols(7, 4), 4);
        assert_eq!(balanced_cols(64, 8), 8);
        for n in 1..60 {
            for max in 1..12 {
                let c = balanced_cols(n, max);
                let last = n - (n.div_ceil(c) - 1) * c;
                assert!(
                    c <= max + max / 2
                        && (2 * last >= c
                            || ((2 * max.min(n)).div_ceil(3)..=max.min(n) + max.min(n) / 2)
                                .all(|c2| 2 * (n - (n.div_ceil(c2) - 1) * c2) < c2)),
                    "n={n} max={max}: {c} cols, {last} in the last row"
                );
            }
        }
    }

    #[test]
    fn grid_enlarges_each_view_and_keeps_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g.png");
        // 6 two-channel 2x3 images, at most 4 per row (3 + 3 fills the rows): left view black,
        // right view white.
        let mut px = Vec::new();
        for _ in 0..6 {
            px.extend(std::iter::repeat_n(0.0f32, 6));
            px.extend(std::iter::repeat_n(1.0f32, 6));
        }
        save_grid(&p, &px, 6, 2, 2, 3, 4).unwrap();
        let img = load(&p);
        let s = upscale(2);
        assert_eq!(s, 32);
        let tw = 2 * 3 * s + VIEW_GAP;
        assert_eq!(
            img.dimensions(),
            ((3 * tw + 4 * TILE_GAP) as u32, (2 * 2 * s + 3 * TILE_GAP) as u32)
        );
        let g = TILE_GAP as u32;
        let s = s as u32;
        // The whole enlarged left view is black, the right one white.
        for (x, y) in [(g, g), (g + 3 * s - 1, g + 2 * s - 1)] {
            assert_eq!(img.get_pixel(x, y).0, [0, 0, 0], "({x}, {y})");
        }
        assert_eq!(img.get_pixel(g + 3 * s + VIEW_GAP as u32, g).0, [255, 255, 255]);
        assert_eq!(img.get_pixel(g + 3 * s, g).0, BACKGROUND);
        assert_eq!(img.get_pixel(0, 0).0, BACKGROUND);
        // The last tile (row 2, column 3) is drawn: no empty slot.
        let (lx, ly) = (g + 2 * (tw as u32 + g), g + (2 * s + g));
        assert_eq!(img.get_pixel(lx, ly).0, [0, 0, 0]);
    }

    #[test]
    fn recon_grid_heads_its_columns_and_puts_reconstruction_right_of_original() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.png");
        let (h, w) = (32, 32);
        let orig = vec![0.0f32; 4 * h * w];
        let rec = vec![1.0f32; 4 * h * w];
        save_recon_grid(&p, &orig, &rec, 4, 1, h, w, 2).unwrap();
        let img = load(&p);
        let s = upscale(h) as u32;
        assert_eq!(s, 2);
        let top = HEADER_H as u32;
        let g = TILE_GAP as u32;
        let tw = w as u32 * s;
        assert_eq!(
            img.dimensions(),
            (
                2 * (2 * tw + PAIR_GAP as u32) + 3 * g,
                top + 2 * h as u32 * s + 3 * g
            )
        );
        assert_eq!(img.get_pixel(g, top + g).0, [0, 0, 0]);
        assert_eq!(img.get_pixel(g + tw - 1, top + g + tw - 1).0, [0, 0, 0]);
        assert_eq!(
            img.get_pixel(g + tw + PAIR_GAP as u32, top + g).0,
            [255, 255, 255]
        );
        // The header band holds text.
        assert!(ink(&img, 0, top) > 50, "no header text");
        assert!(save_recon_grid(&p, &orig, &rec[1..], 4, 1, h, w, 2).is_err());
        assert!(save_grid(&dir.path().join("e.png"), &[], 0, 1, 2, 2, 3).is_err());
        assert!(!dir.path().join("e.png").exists());
    }

    #[test]
    fn pair_grid_heads_both_sides_with_what_fits() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("nn.png");
        // 6 pairs of two-view 8x8 images, about 4 pairs per row: 3 + 3 fills the rows.
        let (n, c, h, w) = (6, 2, 8, 8);
        let left = vec![0.0f32; n * c * h * w];
        let right = vec![1.0f32; n * c * h * w];
        save_pair_grid(
            &p,
            &left,
            &right,
            n,
            (c, h, w),
            4,
            [&["sample"], &["nearest training image", "nearest"]],
        )
        .unwrap();
        let img = load(&p);
        let s = upscale(h);
        assert_eq!(s, 8);
        let tw = c * w * s + VIEW_GAP;
        let pair = 2 * tw + PAIR_GAP;
        assert_eq!(
            img.dimensions(),
            (
                (3 * pair + 4 * TILE_GAP) as u32,
                (HEADER_H + 2 * h * s + 3 * TILE_GAP) as u32
            )
        );
        let (g, top) = (TILE_GAP as u32, HEADER_H as u32);
        assert_eq!(img.get_pixel(g, top + g).0, [0, 0, 0]);
        assert_eq!(
            img.get_pixel(g + (tw + PAIR_GAP) as u32, top + g).0,
            [255, 255, 255]
        );
        assert!(ink(&img, 0, top) > 50, "no header text");
        assert!(save_pair_grid(&p, &left, &right[1..], n, (c, h, w), 2, [&["a"], &["b"]]).is_err());
        assert!(save_pair_grid(&p, &left, &right, n, (c, h, w), 2, [&["a"], &[]]).is_err());
    }

    #[test]
    fn labelled_grid_has_title_headers_and_row_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.png");
        let (n, cols) = (6, 3);
        let px: Vec<f32> = (0..n * 16 * 16).map(|i| (i % 7) as f32 / 6.0).collect();
        let labels = GridLabels {
            title: "latent traversal".into(),
            columns: vec!["-3".into(), "0".into(), "+3".into()],
            rows: vec!["z12".into(), "z3".into()],
        };
        save_labelled_grid(&p, &px, n, 1, 16, 16, cols, &labels).unwrap();
        let img = load(&p);
        let top = (TITLE_H + HEADER_H) as u32;
        assert!(img.height() == top + 2 * 64 + 3 * TILE_GAP as u32);
        assert!(ink(&img, 0, TITLE_H as u32) > 50, "no title");
        assert!(ink(&img, TITLE_H as u32, top) > 20, "no column headers");
        // Row labels: ink in the left band below the headers.
        let left_ink = (top..img.height())
            .flat_map(|y| (0..20).map(move |x| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] < 200 && img.get_pixel(x, y).0 != BACKGROUND)
            .count();
        assert!(left_ink > 10, "no row labels");
        // Same input, same bytes.
        let p2 = dir.path().join("t2.png");
        save_labelled_grid(&p2, &px, n, 1, 16, 16, cols, &labels).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), std::fs::read(&p2).unwrap());
    }
}
