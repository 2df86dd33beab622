//! Command-line interface (docs/reference.md §2).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "tandem",
    version,
    about = "Serves a site's precompressed static files, its JSON API and a WebSocket endpoint."
)]
pub struct Cli {
    /// Configuration file (else $TANDEM_CONFIG, else ./tandem.toml when it exists).
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Load and validate the configuration and static roots, print the effective configuration.
    Check,
    /// Request /healthz on the configured local address: exit 0 on 200, 1 otherwise.
    Healthcheck,
    /// Write .br, .zst and .gz siblings for compressible files (default: the htdocs and public roots).
    Precompress(PrecompressArgs),
}

#[derive(Debug, clap::Args)]
pub struct PrecompressArgs {
    /// Directories to walk (default: static.htdocs and static.public).
    #[arg(value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Rewrite every sibling, fresh or not.
    #[arg(long, conflicts_with = "check")]
    pub force: bool,
    /// Write nothing; exit 1 if a sibling is missing or does not decode to its source.
    #[arg(long)]
    pub check: bool,
    /// Also remove siblings whose source file is gone.
    #[arg(long)]
    pub prune: bool,
}
