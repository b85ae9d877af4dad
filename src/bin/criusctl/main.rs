//! criusctl: a CRI client with crictl's commands, flags and config files.
//! It speaks plain CRI, so it drives crius, containerd or CRI-O alike.

mod config_file;
mod endpoint;
mod image;
mod node;
mod output;
mod pod;

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
    /// Run a new pod sandbox
    Runp(pod::RunpArgs),
    /// Stop one or more pod sandboxes
    Stopp(pod::IdsArgs),
    /// Remove one or more pod sandboxes
    Rmp(pod::IdsArgs),
    /// List pod sandboxes
    Pods(pod::PodsArgs),
    /// Display the status of one or more pod sandboxes
    Inspectp(pod::InspectpArgs),
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
            Command::Runp(args) => pod::runp(&settings, args).await,
            Command::Stopp(args) => pod::stopp(&settings, args).await,
            Command::Rmp(args) => pod::rmp(&settings, args).await,
            Command::Pods(args) => pod::pods(&settings, args).await,
            Command::Inspectp(args) => pod::inspectp(&settings, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// Prints the error chain; a gRPC status as `Code: message`.
fn fail(error: anyhow::Error) -> ExitCode {
    let mut parts = Vec::new();
    for cause in error.chain() {
        match cause.downcast_ref::<tonic::Status>() {
            Some(status) => {
                parts.push(format!("{:?}: {}", status.code(), status.message()));
                break;
            }
            None => parts.push(cause.to_string()),
        }
    }
    eprintln!("criusctl: {}", parts.join(": "));
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Flag clashes (e.g. a command's -r against the global -r) fail here,
    /// not at a user's prompt.
    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    /// Every command parses a typical line, global flags included (argument
    /// ids shared with global flags only fail when parsed).
    #[test]
    fn typical_command_lines_parse() {
        let lines = [
            "version -o json",
            "info -o yaml",
            "pull --creds u:p -p pod.json busybox",
            "images -q --digests busybox",
            "inspecti busybox",
            "rmi -a",
            "imagefsinfo",
            "runp --runtime crun pod.json",
            "stopp -a",
            "rmp abc def",
            "pods --state ready --label a=b -q --name x --namespace y --id z",
            "inspectp abc",
        ];
        for line in lines {
            let args = [
                "criusctl",
                "-r",
                "unix:///x.sock",
                "-t",
                "5s",
                "-c",
                "/dev/null",
            ]
            .into_iter()
            .chain(line.split_whitespace());
            Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{line}: {e}"));
        }
    }
}
