//! `norbvae data info|preview`: inspect a dataset as the rest of the toolkit will see it
//! (after camera choice, resizing, the validation carve and `limit`).
use super::common::DataArgs;
use crate::data::{self, DataOptions, Split, Splits};
use anyhow::{ensure, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum DataCmd {
    /// Per split: image count, image shape and label counts.
    Info(InfoArgs),
    /// Write a PNG grid of the first images of a split.
    Preview(PreviewArgs),
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print one JSON object (keys train, val, test, each with count, image_shape, label_counts).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PreviewArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Which split to show.
    #[arg(long, value_enum, default_value = "train")]
    pub split: Split,
    /// Output PNG.
    #[arg(long)]
    pub out: PathBuf,
    /// Number of images.
    #[arg(long, default_value_t = 64)]
    pub n: usize,
}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {
        DataCmd::Info(a) => info(a),
        DataCmd::Preview(a) => preview(a),
    }
}

fn load(args: &DataArgs) -> Result<Splits> {
    let opts: DataOptions = args.apply(DataOptions::default());
    data::load(&opts)
}

/// The info as JSON: `{"name", "num_classes", "class_names", "train": {"count", "image_shape", "label_counts"}, ...}`.
pub fn info_json(s: &Splits) -> serde_json::Value {
    let mut obj = serde_json::json!({
        "name": s.name,
        "num_classes": s.num_classes,
        "class_names": s.class_names,
    });
    for split in Split::ALL {
        let set = s.get(split);
        obj[split.name()] = serde_json::json!({
            "count": set.n,
            "image_shape": [set.channels, set.height, set.width],
            "label_counts": s.label_counts(split),
        });
    }
    obj
}

fn info(a: InfoArgs) -> Result<()> {
    let s = load(&a.data)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&info_json(&s))?);
        return Ok(());
    }
    println!("dataset {} ({} classes)", s.name, s.num_classes);
    for split in Split::ALL {
        let set = s.get(split);
        let counts: Vec<String> = s
            .label_counts(split)
            .iter()
            .zip(&s.class_names)
            .map(|(c, name)| format!("{name}: {c}"))
            .collect();
        println!(
            "{:>5}: {:>6} images of {}x{}x{} (c x h x w); labels {}",
            split.name(),
            set.n,
            set.channels,
            set.height,
            set.width,
            counts.join(", ")
        );
    }
    Ok(())
}

fn preview(a: PreviewArgs) -> Result<()> {
    ensure!(a.n > 0, "--n must be at least 1");
    let s = load(&a.data)?;
    let set = s.get(a.split);
    ensure!(
        set.n > 0,
        "split '{}' of {} is empty (validation needs --val-fraction > 0 or --val-instances)",
        a.split.name(),
        s.name
    );
    let shown = set.head(a.n);
    // Roughly square pictures: stereo pairs are twice as wide, so fewer of them per row.
    let per_row = if shown.channels == 2 {
        shown.n.div_ceil(2)
    } else {
        shown.n
    };
    let cols = ((per_row as f64).sqrt().ceil() as usize).max(1);
    data::grid::save_grid(
        &a.out,
        &shown.images,
        shown.n,
        shown.channels,
        shown.height,
        shown.width,
        cols,
    )?;
    println!(
        "wrote {} ({} {} images of {})",
        a.out.display(),
        shown.n,
        a.split.name(),
        s.name
    );
    Ok(())
}
