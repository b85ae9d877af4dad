//! `criusctl metrics`: criusd's own Prometheus metrics, as served.

use crate::endpoint::Settings;
use anyhow::{Context, bail};
use crius::cri;

#[derive(clap::Args)]
pub struct MetricsArgs {
    /// The metrics endpoint's ip:port [default: the address the runtime
    /// reports in its verbose Status]
    #[arg(long, value_name = "IP:PORT")]
    address: Option<String>,
    /// Print only the metrics whose names start with one of these
    #[arg(value_name = "PREFIX")]
    names: Vec<String>,
}

pub async fn metrics(settings: &Settings, args: MetricsArgs) -> anyhow::Result<()> {
    let address = match args.address {
        Some(address) => address,
        None => served_at(settings).await?,
    };
    let text = crius::metrics::endpoint::fetch(&address, settings.timeout).await?;
    print!("{}", select(&text, &args.names));
    Ok(())
}

/// The endpoint's address, from the runtime's verbose Status.
async fn served_at(settings: &Settings) -> anyhow::Result<String> {
    let mut client = settings.runtime().await?;
    let status = client
        .status(cri::StatusRequest { verbose: true })
        .await
        .context("getting the runtime status")?
        .into_inner();
    let Some(raw) = status.info.get("metrics") else {
        bail!("the runtime does not report a metrics endpoint; give --address");
    };
    let info: serde_json::Value =
        serde_json::from_str(raw).context("the runtime's metrics info is not JSON")?;
    if let Some(address) = info["address"].as_str() {
        return Ok(address.to_string());
    }
    match (info["error"].as_str(), info["reason"].as_str()) {
        (Some(error), _) => bail!("the runtime serves no metrics: {error}"),
        (None, Some(reason)) => bail!("the runtime serves no metrics: {reason}"),
        _ => bail!("the runtime serves no metrics"),
    }
}

/// The lines of `text` about metrics named with one of `prefixes` (all of
/// them when there is none).
fn select(text: &str, prefixes: &[String]) -> String {
    if prefixes.is_empty() {
        return text.to_string();
    }
    text.lines()
        .filter(|line| {
            let name = line
                .strip_prefix("# HELP ")
                .or_else(|| line.strip_prefix("# TYPE "))
                .unwrap_or(line);
            prefixes.iter().any(|p| name.starts_with(p.as_str()))
        })
        .map(|line| format!("{line}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_select_families_with_their_help_and_type() {
        let text = "# HELP crius_a_total A.\n# TYPE crius_a_total counter\ncrius_a_total 1\n# HELP crius_b B.\ncrius_b 2\n";
        assert_eq!(select(text, &[]), text);
        assert_eq!(
            select(text, &["crius_a".into()]),
            "# HELP crius_a_total A.\n# TYPE crius_a_total counter\ncrius_a_total 1\n"
        );
    }
}
