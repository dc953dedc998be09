//! `norbvae data info|preview`: inspect a dataset as the rest of the toolkit will see it
//! (after camera choice, resizing, the validation carve and `limit`).
use super::common::DataArgs;
use crate::data::{self, DataOptions, Split, Splits};
use anyhow::{ensure, Result};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum DataCmd {
    /// Per split: image count, image shape and label counts.
    Info(InfoArgs),
    /// Write a PNG grid of the first images of a split.
    Preview(PreviewArgs),
    /// Download a dataset's published files (resumes a partial download, verifies md5 sums).
    Download(DownloadArgs),
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Downloadable {
    /// The six .mat.gz files of NYU's smallNORB; use them with --data norb:DIR.
    Smallnorb,
}

/// Fetch the dataset into DIR. Each file arrives as NAME.part, which a later run resumes (HTTP
/// Range), and is renamed to NAME only when its md5 matches the expected sum. The expected sums
/// are the ones the disent library lists for NYU's files (NYU publishes none); a file that does
/// not match is removed.
#[derive(Debug, clap::Args)]
pub struct DownloadArgs {
    pub dataset: Downloadable,
    /// Destination directory.
    #[arg(long)]
    pub to: PathBuf,
    /// Directory URL the file names are appended to [default: $NORBVAE_SMALLNORB_URL, else
    /// NYU's https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/].
    #[arg(long)]
    pub base_url: Option<String>,
    /// Expected md5 of one file, NAME=HEX (repeatable); replaces the built-in sum for NAME.
    #[arg(long = "md5", value_name = "NAME=HEX")]
    pub md5: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct InfoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print one JSON object: name, num_classes, class_names, and train/val/test each with count,
    /// image_shape [c, h, w] and label_counts. Reads headers and labels only (no image decoding).
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
        DataCmd::Download(a) => download(a),
    }
}

fn download(a: DownloadArgs) -> Result<()> {
    use crate::data::download as dl;
    let Downloadable::Smallnorb = a.dataset;
    let mut files = dl::smallnorb_files();
    for o in &a.md5 {
        let (name, sum) = o
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--md5 {o}: expected NAME=HEX"))?;
        let f = files
            .iter_mut()
            .find(|f| f.name == name)
            .ok_or_else(|| anyhow::anyhow!("--md5 {o}: {name} is not one of the dataset's files"))?;
        f.md5 = sum.to_string();
    }
    let base_url = a
        .base_url
        .or_else(|| std::env::var("NORBVAE_SMALLNORB_URL").ok())
        .unwrap_or_else(|| dl::SMALLNORB_BASE_URL.to_string());
    let opts = dl::DownloadOptions {
        base_url,
        files,
        to: a.to.clone(),
        progress: true,
    };
    for (f, fetched) in dl::download(&opts)? {
        match fetched {
            dl::Fetched::AlreadyPresent => println!("{}: already present, md5 ok", f.name),
            dl::Fetched::Downloaded { bytes, resumed_from } if resumed_from > 0 => println!(
                "{}: md5 ok ({bytes} bytes downloaded, resumed after {resumed_from})",
                f.name
            ),
            dl::Fetched::Downloaded { bytes, .. } => println!("{}: md5 ok ({bytes} bytes)", f.name),
        }
    }
    println!("smallNORB is in {0}: use it with --data norb:{0}", a.to.display());
    Ok(())
}

fn load(args: &DataArgs) -> Result<Splits> {
    let opts: DataOptions = args.apply(DataOptions::default());
    Ok(data::load(&opts)?)
}

fn info(a: InfoArgs) -> Result<()> {
    let opts: DataOptions = a.data.apply(DataOptions::default());
    let s = data::summarize(&opts)?;
    // writeln! rather than println!: a closed pipe (`| head`) is an error, not a panic.
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&s)?)?;
        return Ok(());
    }
    writeln!(out, "dataset {} ({} classes)", s.name, s.num_classes)?;
    for (name, split) in [("train", &s.train), ("val", &s.val), ("test", &s.test)] {
        let counts: Vec<String> = split
            .label_counts
            .iter()
            .zip(&s.class_names)
            .map(|(c, class)| format!("{class}: {c}"))
            .collect();
        let [c, h, w] = split.image_shape;
        writeln!(
            out,
            "{name:>5}: {:>6} images of {c}x{h}x{w} (c x h x w); labels {}",
            split.count,
            counts.join(", ")
        )?;
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
