use anyhow::{bail, Result};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories (VAE or PCA), or directories that hold run directories; or one sweep
    /// directory (with sweep.json) for the sweep view.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The HTML file to write (self-contained: pictures are embedded).
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// Title of the page.
    #[arg(long, default_value = "norbvae report")]
    pub title: String,
    /// Sweep view: a PCA run to draw beside the sweep's MSE (default: a sibling `pca` run).
    #[arg(long)]
    pub pca: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    // A `reproduce --ladder --executor` directory is a sweep too, but its report is the ladder's.
    let ladder = |d: &std::path::Path| crate::format::ladder::LadderManifest::path(d).is_file();
    if args
        .runs
        .iter()
        .any(|d| crate::report::sweep::is_sweep_dir(d) && !ladder(d))
    {
        if args.runs.len() != 1 {
            bail!("a sweep directory (with sweep.json) goes alone: norbvae report SWEEP_DIR [--pca PCA_RUN]");
        }
        return sweep(args);
    }
    if args.pca.is_some() {
        bail!("--pca is for the sweep view: norbvae report SWEEP_DIR --pca PCA_RUN");
    }
    let runs = crate::report::load_runs(&args.runs)?;
    let opts = crate::report::ReportOptions {
        title: args.title,
        subtitle: None,
        answers: crate::report::answers::answers(&runs),
    };
    crate::report::write_report(&runs, &args.out, &opts)?;
    println!("report of {} runs written to {}", runs.len(), args.out.display());
    Ok(())
}

fn sweep(args: Args) -> Result<()> {
    use crate::report::sweep::{build_sweep_report, SweepReportOptions};
    let opts = SweepReportOptions {
        // The default title names the sweep directory instead.
        title: (args.title != "norbvae report").then_some(args.title),
        pca: args.pca,
    };
    let r = build_sweep_report(&args.runs[0], &args.out, &opts)?;
    println!(
        "sweep report of {} runs ({} finished) written to {}, charts in {}",
        r.runs,
        r.finished,
        r.html.display(),
        r.charts_dir.display()
    );
    Ok(())
}
