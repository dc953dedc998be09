//! The one font every chart and picture label uses: DejaVu Sans (regular and bold), embedded in
//! the binary from the `dejavu` crate (the fonts' licence, Bitstream Vera's with the DejaVu
//! changes in the public domain, ships with that crate). plotters draws text with ab_glyph from
//! these bytes, so nothing looks up system fonts at run time and CI machines without fonts draw
//! the same pixels. The SVG output names the family `sans-serif`, which the browser resolves.
use anyhow::{anyhow, Result};
use plotters::style::{FontFamily, FontStyle, IntoFont, TextStyle};
use std::sync::OnceLock;

/// The family name the font is registered under; SVG text carries it as its font-family.
pub const FAMILY: &str = "sans-serif";

/// Register the embedded font with plotters (once per process).
pub fn ensure() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        plotters::style::register_font(FAMILY, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| "embedded DejaVu Sans is not a valid font".to_string())?;
        plotters::style::register_font(FAMILY, FontStyle::Bold, dejavu::sans::bold())
            .map_err(|_| "embedded DejaVu Sans Bold is not a valid font".to_string())
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

/// Regular text of `size` pixels.
pub fn text(size: f64) -> TextStyle<'static> {
    (FontFamily::Name(FAMILY), size).into_font().into()
}

/// Bold text of `size` pixels.
pub fn bold(size: f64) -> TextStyle<'static> {
    (FontFamily::Name(FAMILY), size, FontStyle::Bold)
        .into_font()
        .into()
}
