//! `norbvae synth`: render the synthetic NORB and write it as smallNORB files.
use crate::data::synth::{self, SynthParams};
use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to write the six smallNORB files into.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed: shapes of the toys and sensor noise.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Image side in pixels (rendered directly at this size).
    #[arg(long, default_value_t = 96)]
    pub size: usize,
    /// Instances to render (comma-separated, 0-9); each goes to its published half
    /// (training 4,6,7,8,9; testing 0,1,2,3,5). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub instances: Option<Vec<usize>>,
    /// Elevation indices (0-8: 30 to 70 degrees in steps of 5). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub elevations: Option<Vec<usize>>,
    /// Azimuths in smallNORB units (0,2,...,34: tens of degrees). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub azimuths: Option<Vec<usize>>,
    /// Lighting conditions (0-5). Default: all.
    #[arg(long, value_delimiter = ',')]
    pub lightings: Option<Vec<usize>>,
    /// Write gzipped `.mat.gz` files, as published (the default).
    #[arg(long, overrides_with = "no_gzip")]
    pub gzip: bool,
    /// Write plain `.mat` files.
    #[arg(long, overrides_with = "gzip")]
    pub no_gzip: bool,
    /// Also write a contact sheet of renders (categories x instances, azimuth, elevation and
    /// lighting sweeps) to this PNG.
    #[arg(long)]
    pub preview: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let d = SynthParams::default();
    let params = SynthParams {
        seed: args.seed,
        side: args.size,
        instances: args.instances.unwrap_or(d.instances),
        elevations: args.elevations.unwrap_or(d.elevations),
        azimuths: args.azimuths.unwrap_or(d.azimuths),
        lightings: args.lightings.unwrap_or(d.lightings),
        gzip: !args.no_gzip,
        progress: true,
    };
    let valid = params.check()?;
    if let Some(p) = &args.preview {
        synth::save_preview(p, args.seed, args.size)?;
        println!("preview: {}", p.display());
    }
    let start = std::time::Instant::now();
    synth::generate(&valid, &args.out)?;
    let (train, test) = (
        valid.count(crate::data::norb::NorbPart::Training),
        valid.count(crate::data::norb::NorbPart::Testing),
    );
    println!(
        "wrote synthetic NORB to {}: {train} training and {test} testing stereo pairs of {s}x{s} in {:.1} s",
        args.out.display(),
        start.elapsed().as_secs_f64(),
        s = valid.params().side,
    );
    Ok(())
}
