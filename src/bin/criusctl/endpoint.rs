//! Where criusctl connects and how long it waits: flags, then environment,
//! then crictl's config file (/etc/crictl.yaml), then crius's socket.

use anyhow::{Context, bail};
use crius::client;
use crius::cri::image_service_client::ImageServiceClient;
use crius::cri::runtime_service_client::RuntimeServiceClient;
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::Channel;

const DEFAULT_ENDPOINT: &str = "unix:///run/crius/crius.sock";
const DEFAULT_CONFIG: &str = "/etc/crictl.yaml";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct GlobalArgs {
    /// Runtime endpoint, e.g. unix:///run/crius/crius.sock
    #[arg(short = 'r', long, global = true, env = "CONTAINER_RUNTIME_ENDPOINT")]
    pub runtime_endpoint: Option<String>,
    /// Image endpoint [default: the runtime endpoint] (before the command: `exec -i` is stdin)
    #[arg(short = 'i', long, env = "IMAGE_SERVICE_ENDPOINT")]
    pub image_endpoint: Option<String>,
    /// Timeout for connecting and for each call, e.g. 2s, 500ms, 1m (before
    /// the command, as in crictl: `stop -t` is the stop's grace period)
    #[arg(short = 't', long, value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// crictl-format client config file
    #[arg(short = 'c', long, global = true, env = "CRI_CONFIG_FILE")]
    pub config: Option<PathBuf>,
    /// Enable debug output
    #[arg(short = 'D', long, global = true)]
    pub debug: bool,
}

/// crictl's config file keys.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct FileConfig {
    runtime_endpoint: Option<String>,
    image_endpoint: Option<String>,
    /// Seconds.
    timeout: Option<u64>,
    debug: Option<bool>,
    #[serde(flatten)]
    _other: serde_yaml_ng::Mapping,
}

/// The resolved connection settings.
#[derive(Clone)]
pub struct Settings {
    pub runtime_endpoint: String,
    pub image_endpoint: String,
    pub timeout: Duration,
    pub debug: bool,
}

impl Settings {
    pub fn resolve(args: &GlobalArgs) -> anyhow::Result<Settings> {
        let file = match &args.config {
            Some(path) => read_config(path)?,
            None if std::path::Path::new(DEFAULT_CONFIG).exists() => {
                read_config(DEFAULT_CONFIG.as_ref())?
            }
            None => FileConfig::default(),
        };
        let runtime_endpoint = args
            .runtime_endpoint
            .clone()
            .or(file.runtime_endpoint)
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let image_endpoint = args
            .image_endpoint
            .clone()
            .or(file.image_endpoint)
            .unwrap_or_else(|| runtime_endpoint.clone());
        Ok(Settings {
            runtime_endpoint,
            image_endpoint,
            timeout: args
                .timeout
                .or(file.timeout.map(Duration::from_secs))
                .unwrap_or(DEFAULT_TIMEOUT),
            debug: args.debug || file.debug.unwrap_or(false),
        })
    }

    pub async fn runtime(&self) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        self.runtime_with(Some(Duration::ZERO)).await
    }

    /// A runtime client whose calls may take `extra` longer than the
    /// timeout (a stop's grace period, an exec's timeout); `None`: no limit.
    pub async fn runtime_with(
        &self,
        extra: Option<Duration>,
    ) -> anyhow::Result<RuntimeServiceClient<Channel>> {
        if self.debug {
            eprintln!("connecting to runtime endpoint {}", self.runtime_endpoint);
        }
        let call = extra.map(|e| self.timeout + e);
        Ok(client::runtime_client(
            client::connect(&self.runtime_endpoint, self.timeout, call).await?,
        ))
    }

    pub async fn images(&self) -> anyhow::Result<ImageServiceClient<Channel>> {
        self.images_with(Some(Duration::ZERO)).await
    }

    /// An image client; `None` lets calls (pulls) take as long as needed.
    pub async fn images_with(
        &self,
        extra: Option<Duration>,
    ) -> anyhow::Result<ImageServiceClient<Channel>> {
        if self.debug {
            eprintln!("connecting to image endpoint {}", self.image_endpoint);
        }
        let call = extra.map(|e| self.timeout + e);
        Ok(client::image_client(
            client::connect(&self.image_endpoint, self.timeout, call).await?,
        ))
    }
}

fn read_config(path: &std::path::Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_yaml_ng::from_str(&text)
        .with_context(|| format!("{} is not a crictl config", path.display()))
}

/// Go-style durations as crictl takes them: "2s", "500ms", "1m30s", or plain
/// seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let value: f64 = number
            .parse()
            .with_context(|| format!("bad duration {text:?}"))?;
        let scale = match unit {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => bail!("bad duration {text:?}: unit {unit:?} (want ms, s, m, h)"),
        };
        total += Duration::from_secs_f64(value * scale);
        rest = next;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("7").unwrap(), Duration::from_secs(7));
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn crictl_config_file_keys() {
        let file: FileConfig = serde_yaml_ng::from_str(
            "runtime-endpoint: unix:///run/containerd/containerd.sock\ntimeout: 10\ndebug: false\npull-image-on-create: true\n",
        )
        .unwrap();
        assert_eq!(
            file.runtime_endpoint.as_deref(),
            Some("unix:///run/containerd/containerd.sock")
        );
        assert_eq!(file.timeout, Some(10));
    }
}
