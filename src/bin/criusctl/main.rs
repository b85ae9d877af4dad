//! criusctl: a CRI client with crictl's commands, flags and config files.
//! It speaks plain CRI, so it drives crius, containerd or CRI-O alike.

mod config_file;
mod container;
mod daemon_metrics;
mod endpoint;
mod image;
mod node;
mod output;
mod pod;
mod pod_metrics;
mod stats;
mod stream;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "criusctl",
    version = crius::VERSION,
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
    /// Create a new container in a pod sandbox
    Create(container::CreateArgs),
    /// Run a new container inside a new pod sandbox
    Run(container::RunArgs),
    /// Start one or more created containers
    Start(container::IdsArgs),
    /// Stop one or more running containers
    Stop(container::StopArgs),
    /// Remove one or more containers
    Rm(container::RmArgs),
    /// List containers
    Ps(container::PsArgs),
    /// Display the status of one or more containers
    Inspect(container::InspectArgs),
    /// Fetch the logs of a container
    Logs(container::LogsArgs),
    /// Run a command in a running container (`-it` for a shell, `-s` synchronously)
    Exec(container::ExecArgs),
    /// Attach to a running container's stdio
    Attach(stream::AttachArgs),
    /// Forward local ports to a pod sandbox's ports
    PortForward(stream::PortForwardArgs),
    /// List containers' resource usage
    Stats(stats::StatsArgs),
    /// List pod sandboxes' resource usage
    Statsp(stats::StatspArgs),
    /// Follow container and pod sandbox events
    Events(node::EventsArgs),
    /// Update one or more running containers' resources
    Update(container::UpdateArgs),
    /// Checkpoint running containers into archives (they keep running)
    Checkpoint(container::CheckpointArgs),
    /// Print a shell completion script (bash, zsh or fish)
    Completion(CompletionArgs),
    /// Print criusd's own Prometheus metrics
    Metrics(daemon_metrics::MetricsArgs),
    /// List the metric descriptors the runtime serves through the CRI
    Metricdescs(pod_metrics::MetricDescsArgs),
    /// List pod sandboxes' metrics (cAdvisor's names, through the CRI)
    Metricsp(pod_metrics::MetricspArgs),
}

#[derive(clap::Args)]
struct CompletionArgs {
    #[arg(value_enum)]
    shell: CompletionShell,
}

/// The shells crictl also completes for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the completion script for `shell` to stdout. It is generated from
/// the command definition, so it never falls behind the commands.
fn completion(args: &CompletionArgs) {
    use clap::CommandFactory;
    use clap_complete::Shell;
    let shell = match args.shell {
        CompletionShell::Bash => Shell::Bash,
        CompletionShell::Zsh => Shell::Zsh,
        CompletionShell::Fish => Shell::Fish,
    };
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "criusctl",
        &mut std::io::stdout(),
    );
}

fn main() -> ExitCode {
    // Like other command-line tools, end quietly when the reader of our
    // output goes away (`criusctl pods | head`) instead of panicking.
    // SAFETY: setting a signal's disposition before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    // Needs no runtime, nor a readable crictl config.
    if let Command::Completion(args) = &cli.command {
        completion(args);
        return ExitCode::SUCCESS;
    }
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
            Command::Create(args) => container::create(&settings, args).await,
            Command::Run(args) => container::run(&settings, args).await,
            Command::Start(args) => container::start(&settings, args).await,
            Command::Stop(args) => container::stop(&settings, args).await,
            Command::Rm(args) => container::rm(&settings, args).await,
            Command::Ps(args) => container::ps(&settings, args).await,
            Command::Inspect(args) => container::inspect(&settings, args).await,
            Command::Logs(args) => container::logs(&settings, args).await,
            Command::Exec(args) => container::exec(&settings, args).await,
            Command::Attach(args) => stream::attach(&settings, args).await,
            Command::PortForward(args) => stream::port_forward(&settings, args).await,
            Command::Stats(args) => stats::stats(&settings, args).await,
            Command::Statsp(args) => stats::statsp(&settings, args).await,
            Command::Events(args) => node::events(&settings, args).await,
            Command::Update(args) => container::update(&settings, args).await,
            Command::Checkpoint(args) => container::checkpoint(&settings, args).await,
            Command::Completion(args) => {
                completion(&args);
                Ok(())
            }
            Command::Metrics(args) => daemon_metrics::metrics(&settings, args).await,
            Command::Metricdescs(args) => pod_metrics::metricdescs(&settings, args).await,
            Command::Metricsp(args) => pod_metrics::metricsp(&settings, args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

/// `--label key=value` flags as a CRI label selector.
pub fn label_selector(
    labels: &[String],
) -> anyhow::Result<std::collections::HashMap<String, String>> {
    labels
        .iter()
        .map(|label| {
            let (k, v) = label
                .split_once('=')
                .ok_or_else(|| anyhow::anyhow!("--label {label:?} is not key=value"))?;
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
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
            "create --no-pull pod c.json p.json",
            "run --runtime crun c.yaml p.yaml",
            "start abc",
            "stop -t 10 abc def",
            "rm -f -a",
            "ps -a -q --pod p --state exited --label a=b --name n -o json",
            "inspect abc -o yaml",
            "logs -f --tail 10 --timestamps abc",
            "exec -s --timeout 5 abc ls -l /",
            "exec -it --transport spdy abc sh",
            "attach -i -t --transport websocket abc",
            "port-forward --transport spdy pod 8080:80 9090",
            "update --memory 1000000 --cpu-share 512 abc",
            "stats -a --pod p --label a=b -s 2 -o json abc",
            "statsp --id p -s 1 -o yaml",
            "events -o yaml",
            "completion bash",
            "metrics --address 127.0.0.1:9327 crius_rpc",
            "metricdescs -o yaml",
            "metricsp -w -o json",
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
