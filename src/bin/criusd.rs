//! criusd: the crius CRI daemon.

use clap::{Parser, Subcommand};
use crius::config::{self, Config, LogFormat, Overrides};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "criusd",
    version = crius::VERSION,
    about = "crius: a Kubernetes container runtime serving the CRI"
)]
struct Cli {
    /// Configuration file [default: /etc/crius/config.toml, if present]
    #[arg(long, value_name = "PATH", env = "CRIUS_CONFIG")]
    config: Option<PathBuf>,
    /// Unix socket to serve the CRI on (config: listen)
    #[arg(long, value_name = "PATH")]
    listen: Option<PathBuf>,
    /// Durable data directory (config: root)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
    /// Runtime state directory (config: state)
    #[arg(long, value_name = "DIR")]
    state: Option<PathBuf>,
    /// Log filter, e.g. info or debug (config: log_level)
    #[arg(long, value_name = "FILTER")]
    log_level: Option<String>,
    /// Log output format (config: log_format)
    #[arg(long, value_parser = ["plain", "json"])]
    log_format: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Inspect the configuration
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the built-in default configuration, with its comments
    Default,
    /// Print the effective configuration (file and flags applied) as TOML
    Show,
    /// Check a configuration file without starting: "ok", or the first
    /// problem (naming the key) and exit code 1
    Check {
        /// The file [default: --config, else /etc/crius/config.toml]
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::Config {
            action: ConfigAction::Default,
        }) => {
            print!("{}", config::DEFAULT_TOML);
            return ExitCode::SUCCESS;
        }
        Some(Command::Config {
            action: ConfigAction::Check { file },
        }) => return check(file.as_deref().or(cli.config.as_deref())),
        _ => {}
    }
    let config = match load(&cli) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("criusd: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Config {
        action: ConfigAction::Show,
    }) = cli.command
    {
        match toml::to_string(&config) {
            Ok(text) => print!("{text}"),
            Err(e) => {
                eprintln!("criusd: {e}");
                return ExitCode::FAILURE;
            }
        }
        return ExitCode::SUCCESS;
    }
    // Before any thread exists; returns only when no re-exec is needed or
    // possible (then every exec goes through the OCI runtime).
    let read_only_exe = crius::read_only_exe::reexec(&config.state);
    if let Err(e) = crius::telemetry::init(&config.log_level, config.log_format) {
        eprintln!("criusd: {e}");
        return ExitCode::from(2);
    }
    if let Err(reason) = read_only_exe {
        tracing::warn!(%reason, "criusd's binary is writable");
    }
    if let Err(reason) = crius::container::enter::helper::open(&config.state) {
        tracing::warn!(%reason, "no exec helper: execs go through the OCI runtime");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("criusd: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(crius::daemon::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("criusd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `criusd config check`: loads the file as criusd would at start (merged
/// over the built-in default, every key and value checked).
fn check(file: Option<&std::path::Path>) -> ExitCode {
    let path = file.unwrap_or(config::DEFAULT_PATH.as_ref());
    match Config::load(Some(path)) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("criusd: {e}");
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> Result<Config, config::ConfigError> {
    let mut config = Config::load(cli.config.as_deref())?;
    config.apply(Overrides {
        listen: cli.listen.clone(),
        root: cli.root.clone(),
        state: cli.state.clone(),
        log_level: cli.log_level.clone(),
        log_format: cli.log_format.as_deref().map(|f| match f {
            "json" => LogFormat::Json,
            _ => LogFormat::Plain,
        }),
    })?;
    Ok(config)
}
