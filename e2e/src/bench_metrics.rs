//! The metrics benchmark client: starts `pods` pods with one container each
//! on a CRI runtime, then times ListPodSandboxMetrics (what kubelet's
//! `/metrics/cadvisor` costs with PodAndContainerStatsFromCRI) and the
//! daemon's CPU per call. A runtime that answers Unimplemented gets the
//! calls kubelet would make instead timed: ListPodSandboxStats followed by
//! ListContainerStats.

use anyhow::Context;
use crius::cri;
use crius::cri::runtime_service_client::RuntimeServiceClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Options {
    pub endpoint: String,
    pub image: String,
    pub pods: usize,
    pub calls: usize,
    pub daemon_pid: u32,
    pub label: String,
    pub log_dir: std::path::PathBuf,
}

fn pod_config(name: &str, log_dir: &std::path::Path) -> cri::PodSandboxConfig {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "bench", "uid": format!("{name}-uid"), "attempt": 0},
        "log_directory": log_dir.join(name),
        // As kubelet gives every pod (containerd's pod stats need one).
        "linux": {"cgroup_parent": format!("/crius-bench-metrics/pod-{name}")},
    }))
    .expect("static config")
}

fn container_config(image: &str) -> cri::ContainerConfig {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleeper"},
        "image": {"image": image},
        "command": ["sleep", "3600"],
        "log_path": "sleeper.log",
    }))
    .expect("static config")
}

async fn client(endpoint: &str) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    let channel = crius::client::connect(endpoint, Duration::from_secs(60), None).await?;
    Ok(crius::client::runtime_client(channel))
}

async fn start_pod(
    endpoint: &str,
    name: &str,
    image: &str,
    log_dir: &std::path::Path,
) -> anyhow::Result<String> {
    let mut rt = client(endpoint).await?;
    crate::bench::run_pod(&mut rt, pod_config(name, log_dir), container_config(image)).await
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which may hold spaces: ") S ppid ...".
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of stat(5); 12 and 13 here.
    field(11) + field(12)
}

/// USER_HZ, as getconf reports it (100 where it cannot be asked).
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(f64::NAN)
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    // Start the pods ten at a time.
    let mut ids = Vec::new();
    for first in (0..options.pods).step_by(10) {
        let tasks: Vec<_> = (first..(first + 10).min(options.pods))
            .map(|i| {
                let (endpoint, image, log_dir) = (
                    options.endpoint.clone(),
                    options.image.clone(),
                    options.log_dir.clone(),
                );
                tokio::spawn(async move {
                    start_pod(&endpoint, &format!("metrics-{i}"), &image, &log_dir).await
                })
            })
            .collect();
        for task in tasks {
            ids.push(task.await??);
        }
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut rt = client(&options.endpoint).await?;
    // The pods go whatever the measurement did: a runtime's pause
    // processes, namespaces and CNI rules must not outlive the benchmark.
    let measured = measure(&options, &mut rt).await;
    crate::bench::remove_pods(&mut rt, &ids).await?;
    measured
}

/// Times `options.calls` scrapes of the running pods and prints the figures.
async fn measure(options: &Options, rt: &mut RuntimeServiceClient<Channel>) -> anyhow::Result<()> {
    let label = &options.label;
    let implemented = match rt
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
    {
        Ok(answer) => {
            let answer = answer.into_inner();
            let metrics: usize = answer
                .pod_metrics
                .iter()
                .map(|p| {
                    p.metrics.len()
                        + p.container_metrics
                            .iter()
                            .map(|c| c.metrics.len())
                            .sum::<usize>()
                })
                .sum();
            println!("{label}.metrics_pods={}", answer.pod_metrics.len());
            println!("{label}.metrics_per_scrape={metrics}");
            true
        }
        Err(status) if status.code() == tonic::Code::Unimplemented => false,
        Err(status) => return Err(status).context("ListPodSandboxMetrics"),
    };
    println!(
        "{label}.scrape_call={}",
        if implemented {
            "ListPodSandboxMetrics"
        } else {
            "ListPodSandboxStats+ListContainerStats"
        }
    );
    let mut times = Vec::new();
    let ticks_before = cpu_ticks(options.daemon_pid);
    for _ in 0..options.calls {
        let started = Instant::now();
        if implemented {
            rt.list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
                .await?;
        } else {
            rt.list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
                .await?;
            rt.list_container_stats(cri::ListContainerStatsRequest::default())
                .await?;
        }
        times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let ticks = cpu_ticks(options.daemon_pid) - ticks_before;
    let hz = clock_ticks_per_second();
    println!("{label}.scrape_median_ms={:.1}", median(times));
    println!(
        "{label}.daemon_cpu_ms_per_scrape={:.1}",
        ticks as f64 * 1e3 / hz / options.calls.max(1) as f64
    );
    Ok(())
}
