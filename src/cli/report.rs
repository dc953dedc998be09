use anyhow::Result;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Run directories (VAE or PCA), or directories that hold run directories.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The HTML file to write (self-contained: pictures are embedded).
    #[arg(long, default_value = "report.html")]
    pub out: PathBuf,
    /// Title of the page.
    #[arg(long, default_value = "norbvae report")]
    pub title: String,
}

pub fn run(args: Args) -> Result<()> {
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
