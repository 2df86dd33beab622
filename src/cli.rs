//! Command-line interface (SPEC §2).

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
}
