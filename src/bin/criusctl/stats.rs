//! `stats` and `statsp`: containers' and pods' resource usage, as crictl
//! shows it. CPU % comes from two samples `--seconds` apart, so it does not
//! depend on the runtime having sampled before.

use crate::endpoint::Settings;
use crate::output::{Format, human_size, print_structured, print_table};
use anyhow::Context;
use crius::cri;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;

#[derive(clap::Args)]
pub struct StatsArgs {
    /// A container id (or prefix)
    id_arg: Option<String>,
    /// Show all containers, not only running ones
    #[arg(short, long)]
    all: bool,
    /// Only the container whose id starts with this
    #[arg(long, default_value = "")]
    id: String,
    /// Only containers of this pod sandbox
    #[arg(short, long, default_value = "")]
    pod: String,
    /// Only containers with this label (key=value), repeatable
    #[arg(long)]
    label: Vec<String>,
    /// Sample window for CPU %
    #[arg(short, long, default_value_t = 1)]
    seconds: u64,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

#[derive(clap::Args)]
pub struct StatspArgs {
    /// A pod sandbox id (or prefix)
    id_arg: Option<String>,
    /// Only the pod whose id starts with this
    #[arg(long, default_value = "")]
    id: String,
    /// Only pods with this label (key=value), repeatable
    #[arg(long)]
    label: Vec<String>,
    /// Sample window for CPU %
    #[arg(short, long, default_value_t = 1)]
    seconds: u64,
    /// Output format
    #[arg(short, long, value_enum, default_value = "table")]
    output: Format,
}

pub async fn stats(settings: &Settings, args: StatsArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    let filter = cri::ContainerStatsFilter {
        id: args.id_arg.clone().unwrap_or(args.id.clone()),
        pod_sandbox_id: args.pod.clone(),
        label_selector: crate::label_selector(&args.label)?,
    };
    let running: Option<Vec<String>> = if args.all {
        None
    } else {
        let state = cri::ContainerStateValue {
            state: cri::ContainerState::ContainerRunning as i32,
        };
        let request = cri::ListContainersRequest {
            filter: Some(cri::ContainerFilter {
                state: Some(state),
                ..Default::default()
            }),
        };
        let containers = client.list_containers(request).await?.into_inner();
        Some(containers.containers.into_iter().map(|c| c.id).collect())
    };
    let mut sample = async || -> anyhow::Result<Vec<cri::ContainerStats>> {
        let request = cri::ListContainerStatsRequest {
            filter: Some(filter.clone()),
        };
        let mut stats = client
            .list_container_stats(request)
            .await
            .context("listing container stats")?
            .into_inner()
            .stats;
        stats.retain(|s| {
            let id = s.attributes.as_ref().map(|a| a.id.as_str()).unwrap_or("");
            running.as_ref().is_none_or(|r| r.iter().any(|r| r == id))
        });
        Ok(stats)
    };
    let first = sample().await?;
    if args.output != Format::Table {
        return print_structured(&json!({ "stats": first }), args.output);
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let second = sample().await?;
    let before: HashMap<String, Option<cri::CpuUsage>> = first
        .into_iter()
        .map(|s| (s.attributes.unwrap_or_default().id, s.cpu))
        .collect();
    let rows: Vec<Vec<String>> = second
        .into_iter()
        .map(|s| {
            let attributes = s.attributes.unwrap_or_default();
            let previous = before.get(&attributes.id).cloned().flatten();
            let layer = s.writable_layer.unwrap_or_default();
            vec![
                attributes.id.chars().take(13).collect(),
                attributes.metadata.unwrap_or_default().name,
                cpu_percent(previous.as_ref(), s.cpu.as_ref()),
                human_size(working_set(s.memory.as_ref())),
                human_size(layer.used_bytes.unwrap_or_default().value),
                layer.inodes_used.unwrap_or_default().value.to_string(),
            ]
        })
        .collect();
    print_table(
        &["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"],
        &rows,
    );
    Ok(())
}

pub async fn statsp(settings: &Settings, args: StatspArgs) -> anyhow::Result<()> {
    let mut client = settings.runtime().await?;
    let filter = cri::PodSandboxStatsFilter {
        id: args.id_arg.clone().unwrap_or(args.id.clone()),
        label_selector: crate::label_selector(&args.label)?,
    };
    let mut sample = async || -> anyhow::Result<Vec<cri::PodSandboxStats>> {
        let request = cri::ListPodSandboxStatsRequest {
            filter: Some(filter.clone()),
        };
        Ok(client
            .list_pod_sandbox_stats(request)
            .await
            .context("listing pod sandbox stats")?
            .into_inner()
            .stats)
    };
    let first = sample().await?;
    if args.output != Format::Table {
        return print_structured(&json!({ "stats": first }), args.output);
    }
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let second = sample().await?;
    let before: HashMap<String, Option<cri::CpuUsage>> = first
        .into_iter()
        .map(|s| {
            let cpu = s.linux.and_then(|l| l.cpu);
            (s.attributes.unwrap_or_default().id, cpu)
        })
        .collect();
    let rows: Vec<Vec<String>> = second
        .into_iter()
        .map(|s| {
            let attributes = s.attributes.unwrap_or_default();
            let linux = s.linux.unwrap_or_default();
            let previous = before.get(&attributes.id).cloned().flatten();
            vec![
                attributes.id.chars().take(13).collect(),
                attributes.metadata.unwrap_or_default().name,
                cpu_percent(previous.as_ref(), linux.cpu.as_ref()),
                human_size(working_set(linux.memory.as_ref())),
            ]
        })
        .collect();
    print_table(&["POD", "NAME", "CPU %", "MEM"], &rows);
    Ok(())
}

fn working_set(memory: Option<&cri::MemoryUsage>) -> u64 {
    memory
        .and_then(|m| m.working_set_bytes)
        .unwrap_or_default()
        .value
}

/// CPU time used between two samples per wall time, in percent of a core.
fn cpu_percent(before: Option<&cri::CpuUsage>, after: Option<&cri::CpuUsage>) -> String {
    let used = |c: &cri::CpuUsage| c.usage_core_nano_seconds.unwrap_or_default().value;
    match (before, after) {
        (Some(b), Some(a)) if a.timestamp > b.timestamp => {
            let cpu = used(a).saturating_sub(used(b)) as f64;
            format!("{:.2}", cpu / (a.timestamp - b.timestamp) as f64 * 100.0)
        }
        _ => "0.00".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_percent_from_two_samples() {
        let at = |timestamp, used| cri::CpuUsage {
            timestamp,
            usage_core_nano_seconds: Some(cri::UInt64Value { value: used }),
            ..Default::default()
        };
        assert_eq!(
            cpu_percent(Some(&at(0, 0)), Some(&at(1_000_000_000, 250_000_000))),
            "25.00"
        );
        assert_eq!(cpu_percent(None, Some(&at(1, 1))), "0.00");
    }
}
