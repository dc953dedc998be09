//! The one progress-bar style of every long step (data loading, PCA, training epochs): a label,
//! counts in named units, the rate in those units per second, elapsed time and ETA. Hidden when
//! stderr is not a terminal (indicatif's default).
use indicatif::{ProgressBar, ProgressState, ProgressStyle};
use std::fmt::Write;

/// A bar of `len` steps counted in `unit` (e.g. "images", "batches"), labelled `label` on the
/// left; `set_message` text shows on the right. It redraws twice a second, so the elapsed time
/// keeps moving through long single steps (an eigendecomposition).
pub fn bar(len: u64, label: &str, unit: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let template = format!(
        "{{prefix:>24}} [{{bar:30}}] {{pos}}/{{len}} {unit} ({{rate}}) elapsed {{elapsed}} ETA {{eta}} {{msg}}"
    );
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .with_key("rate", move |s: &ProgressState, w: &mut dyn Write| {
            let _ = write!(w, "{:.1} {unit}/s", s.per_sec());
        })
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(label.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(500));
    bar
}
