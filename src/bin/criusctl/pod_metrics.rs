//! `metricdescs` and `metricsp`: the CRI's metric descriptors and pods'
//! metrics, printed as crictl prints them (the protobuf JSON mapping with
//! default values: camelCase keys, 64-bit numbers as strings, enums by
//! name; YAML with sorted keys). `metricsp -w` prints them every 500 ms.

use anyhow::Context;
use crius::cri;
use serde::Serialize;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Yaml,
}

#[derive(clap::Args)]
pub struct MetricDescsArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
}

#[derive(clap::Args)]
pub struct MetricspArgs {
    /// Output format
    #[arg(short, long, value_enum, default_value = "json")]
    output: Format,
    /// Print the metrics again every 500 ms until interrupted
    #[arg(short, long)]
    watch: bool,
}

pub async fn metricdescs(
    settings: &crate::endpoint::Settings,
    args: MetricDescsArgs,
) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    let descriptors = client
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .context("list metric descriptors")?
        .into_inner()
        .descriptors;
    print(&descriptors_json(&descriptors), args.output)
}

pub async fn metricsp(
    settings: &crate::endpoint::Settings,
    args: MetricspArgs,
) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    loop {
        let metrics = client
            .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
            .await
            .context("list pod sandbox metrics")?
            .into_inner()
            .pod_metrics;
        print(&pod_metrics_json(&metrics), args.output)?;
        if !args.watch {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[derive(Serialize)]
struct Descriptors<'a> {
    descriptors: Vec<Descriptor<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodMetricsList<'a> {
    pod_metrics: Vec<PodMetrics<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor<'a> {
    name: &'a str,
    help: &'a str,
    label_keys: &'a [String],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodMetrics<'a> {
    pod_sandbox_id: &'a str,
    metrics: Vec<Metric<'a>>,
    container_metrics: Vec<ContainerMetrics<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerMetrics<'a> {
    container_id: &'a str,
    metrics: Vec<Metric<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Metric<'a> {
    name: &'a str,
    timestamp: String,
    metric_type: &'static str,
    label_values: &'a [String],
    value: Option<Value>,
}

#[derive(Serialize)]
struct Value {
    value: String,
}

fn descriptors_json(descriptors: &[cri::MetricDescriptor]) -> Descriptors<'_> {
    let descriptors = descriptors
        .iter()
        .map(|d| Descriptor {
            name: &d.name,
            help: &d.help,
            label_keys: &d.label_keys,
        })
        .collect();
    Descriptors { descriptors }
}

fn metric(m: &cri::Metric) -> Metric<'_> {
    Metric {
        name: &m.name,
        timestamp: m.timestamp.to_string(),
        metric_type: cri::MetricType::try_from(m.metric_type)
            .map(|t| t.as_str_name())
            .unwrap_or("COUNTER"),
        label_values: &m.label_values,
        value: m.value.as_ref().map(|v| Value {
            value: v.value.to_string(),
        }),
    }
}

fn pod_metrics_json(pods: &[cri::PodSandboxMetrics]) -> PodMetricsList<'_> {
    let pod_metrics = pods
        .iter()
        .map(|p| PodMetrics {
            pod_sandbox_id: &p.pod_sandbox_id,
            metrics: p.metrics.iter().map(metric).collect(),
            container_metrics: p
                .container_metrics
                .iter()
                .map(|c| ContainerMetrics {
                    container_id: &c.container_id,
                    metrics: c.metrics.iter().map(metric).collect(),
                })
                .collect(),
        })
        .collect();
    PodMetricsList { pod_metrics }
}

/// JSON in the message's field order; YAML with sorted keys (crictl turns
/// its JSON into YAML through a map).
fn print<T: Serialize>(value: &T, format: Format) -> anyhow::Result<()> {
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(value)?),
        Format::Yaml => print!(
            "{}",
            serde_yaml_ng::to_string(&sorted(serde_json::to_value(value)?))?
        ),
    }
    Ok(())
}

fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => items.into_iter().map(sorted).collect(),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_print_as_protobuf_json_with_defaults() {
        let pods = [cri::PodSandboxMetrics {
            pod_sandbox_id: "p1".into(),
            metrics: vec![],
            container_metrics: vec![cri::ContainerMetrics {
                container_id: "c1".into(),
                metrics: vec![cri::Metric {
                    name: "container_memory_rss".into(),
                    timestamp: 0,
                    metric_type: cri::MetricType::Gauge as i32,
                    label_values: vec!["app".into()],
                    value: Some(cri::UInt64Value { value: u64::MAX }),
                }],
            }],
        }];
        let text = serde_json::to_string(&pod_metrics_json(&pods)).unwrap();
        // protojson's order: the message's field numbers.
        assert!(
            text.starts_with(
                r#"{"podMetrics":[{"podSandboxId":"p1","metrics":[],"containerMetrics""#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"{"name":"container_memory_rss","timestamp":"0","metricType":"GAUGE""#),
            "{text}"
        );
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let metric = &json["podMetrics"][0]["containerMetrics"][0]["metrics"][0];
        assert_eq!(json["podMetrics"][0]["podSandboxId"], "p1");
        assert_eq!(json["podMetrics"][0]["metrics"], serde_json::json!([]));
        assert_eq!(metric["metricType"], "GAUGE");
        assert_eq!(metric["timestamp"], "0");
        assert_eq!(metric["labelValues"][0], "app");
        assert_eq!(metric["value"]["value"], u64::MAX.to_string());
        let yaml = serde_yaml_ng::to_string(&sorted(json)).unwrap();
        assert!(
            yaml.starts_with("podMetrics:\n- containerMetrics:\n  - containerId: c1\n"),
            "{yaml}"
        );

        let descriptors = serde_json::to_value(descriptors_json(&[cri::MetricDescriptor {
            name: "container_last_seen".into(),
            help: "h".into(),
            label_keys: vec!["container".into()],
        }]))
        .unwrap();
        assert_eq!(descriptors["descriptors"][0]["labelKeys"][0], "container");
    }
}
