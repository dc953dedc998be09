use anyhow::Result;

#[derive(Debug, clap::Subcommand)]
pub enum DataCmd {}

pub fn run(cmd: DataCmd) -> Result<()> {
    match cmd {}
}
