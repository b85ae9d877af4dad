//! criusctl: a CRI client with crictl's commands, flags and config files.
//! It speaks plain CRI, so it drives crius, containerd or CRI-O alike.

mod config_file;
mod endpoint;
mod image;
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
    /// Pull an image from a registry
    Pull(image::PullArgs),
    /// List images
    #[command(alias = "image")]
    Images(image::ImagesArgs),
    /// Return the status of one or more images
    Inspecti(image::InspectArgs),
    /// Remove one or more images
    Rmi(image::RmiArgs),
    /// Return image filesystem info
    Imagefsinfo(image::FsInfoArgs),
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
            Command::Pull(args) => image::pull(&settings, args).await,
            Command::Images(args) => image::images(&settings, args).await,
            Command::Inspecti(args) => image::inspecti(&settings, args).await,
            Command::Rmi(args) => image::rmi(&settings, args).await,
            Command::Imagefsinfo(args) => image::imagefsinfo(&settings, args).await,
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
