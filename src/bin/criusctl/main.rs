//! criusctl: a CRI client with crictl's commands, flags and config files.
//! It speaks plain CRI, so it drives crius, containerd or CRI-O alike.

mod endpoint;
mod node;
mod output;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "criusctl",
    version,
    about = "CRI client for crius (and any CRI runtime), crictl-compatible"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: endpoint::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Display runtime version information
    Version(node::VersionArgs),
    /// Display information of the container runtime
    Info(node::InfoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match endpoint::Settings::resolve(&cli.global) {
        Ok(settings) => settings,
        Err(e) => return fail(e),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(e.into()),
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Version(args) => node::version(&settings, args).await,
            Command::Info(args) => node::info(&settings, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

fn fail(error: anyhow::Error) -> ExitCode {
    eprintln!("criusctl: {error:#}");
    ExitCode::FAILURE
}
