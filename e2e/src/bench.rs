//! The pod benchmark client: drives any CRI runtime (crius or containerd)
//! through the same calls kubelet makes to start a pod with one container,
//! and measures the memory of the processes a running pod costs.
//!
//! Pods use the node's network namespace, so that the figures compare the
//! runtimes' own work and not their network set-up.

use anyhow::Context;
use crius::cri;
use crius::cri::runtime_service_client::RuntimeServiceClient;
use std::time::{Duration, Instant};
use tonic::transport::Channel;

pub struct Options {
    pub endpoint: String,
    pub image: String,
    pub runs: usize,
    pub concurrent: usize,
    /// The runtime's daemon process.
    pub daemon_pid: u32,
    /// Name of the per-pod or per-container monitor binary.
    pub shim: String,
    pub label: String,
    /// Where the pods' log directories go.
    pub log_dir: std::path::PathBuf,
}

pub(crate) fn pod_config(name: &str, log_dir: &std::path::Path) -> cri::PodSandboxConfig {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "bench", "uid": format!("{name}-uid"), "attempt": 0},
        "log_directory": log_dir.join(name),
        "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}}
    }))
    .expect("static config")
}

pub(crate) fn container_config(image: &str) -> cri::ContainerConfig {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "sleeper"},
        "image": {"image": image},
        "command": ["sleep", "3600"],
        "log_path": "sleeper.log",
        "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1}}}
    }))
    .expect("static config")
}

pub(crate) async fn client(endpoint: &str) -> anyhow::Result<RuntimeServiceClient<Channel>> {
    let channel = crius::client::connect(endpoint, Duration::from_secs(10), None).await?;
    Ok(crius::client::runtime_client(channel))
}

/// RunPodSandbox + CreateContainer + StartContainer; returns the pod id.
pub(crate) async fn start_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    name: &str,
    image: &str,
    log_dir: &std::path::Path,
) -> anyhow::Result<String> {
    run_pod(rt, pod_config(name, log_dir), container_config(image)).await
}

/// Runs `pod` with one container made from `container` and started;
/// returns the pod id. Shared by the benchmarks.
pub(crate) async fn run_pod(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: cri::PodSandboxConfig,
    container: cri::ContainerConfig,
) -> anyhow::Result<String> {
    Ok(run_pod_timed(rt, pod, container).await?.0)
}

/// `run_pod`, with the time of each call: RunPodSandbox, CreateContainer,
/// StartContainer (ms).
pub(crate) async fn run_pod_timed(
    rt: &mut RuntimeServiceClient<Channel>,
    pod: cri::PodSandboxConfig,
    container: cri::ContainerConfig,
) -> anyhow::Result<(String, [f64; 3])> {
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    let started = Instant::now();
    let pod_id = rt
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        })
        .await
        .context("RunPodSandbox")?
        .into_inner()
        .pod_sandbox_id;
    let run = ms(started);
    let started = Instant::now();
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod_id.clone(),
            config: Some(container),
            sandbox_config: Some(pod),
        })
        .await
        .context("CreateContainer")?
        .into_inner()
        .container_id;
    let create = ms(started);
    let started = Instant::now();
    rt.start_container(cri::StartContainerRequest { container_id: id })
        .await
        .context("StartContainer")?;
    Ok((pod_id, [run, create, ms(started)]))
}

pub(crate) async fn remove_pods(
    rt: &mut RuntimeServiceClient<Channel>,
    ids: &[String],
) -> anyhow::Result<()> {
    for id in ids {
        rt.stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
        rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await?;
    }
    Ok(())
}

/// (RSS, PSS) in KiB of a process.
fn memory_kib(pid: u32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    (field("Rss:"), field("Pss:"))
}

fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(") ")
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The processes a running pod costs beyond its workload: the monitors
/// (shims) serving this runtime and their descendants other than the
/// workload (`sleep 3600`) — a pause process, for instance.
fn pod_overhead_processes(shim: &str, endpoint_hint: &str) -> Vec<u32> {
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    let shims: Vec<u32> = pids
        .iter()
        .copied()
        .filter(|p| {
            let c = cmdline(*p);
            c.split_whitespace()
                .next()
                .is_some_and(|argv0| argv0.ends_with(shim))
                && c.contains(endpoint_hint)
        })
        .collect();
    let under_shim = |mut pid: u32| {
        while let Some(up) = parent(pid) {
            if shims.contains(&up) {
                return true;
            }
            if up <= 1 {
                return false;
            }
            pid = up;
        }
        false
    };
    pids.into_iter()
        .filter(|p| shims.contains(p) || (under_shim(*p) && !cmdline(*p).starts_with("sleep 3600")))
        .collect()
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let mut rt = client(&options.endpoint).await?;
    let label = &options.label;
    // Sequential pod starts.
    let mut times = Vec::new();
    let mut ids = Vec::new();
    for i in 0..options.runs {
        let started = Instant::now();
        let id = start_pod(
            &mut rt,
            &format!("seq-{i}"),
            &options.image,
            &options.log_dir,
        )
        .await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        ids.push(id);
    }
    remove_pods(&mut rt, &ids).await?;
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!("{label}.pod_start_median_ms={median:.1}");
    println!(
        "{label}.pod_start_min_max_ms={:.1}/{:.1}",
        times[0],
        times[times.len() - 1]
    );

    // Concurrent pod starts.
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..options.concurrent {
        let endpoint = options.endpoint.clone();
        let image = options.image.clone();
        let log_dir = options.log_dir.clone();
        tasks.push(tokio::spawn(async move {
            let mut rt = client(&endpoint).await?;
            start_pod(&mut rt, &format!("par-{i}"), &image, &log_dir).await
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await??);
    }
    let total = started.elapsed().as_secs_f64() * 1e3;
    println!(
        "{label}.concurrent_{}_total_ms={total:.0}",
        options.concurrent
    );

    // Memory with the pods running.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (daemon_rss, _) = memory_kib(options.daemon_pid);
    let hint = options
        .endpoint
        .trim_start_matches("unix://")
        .rsplit_once('/')
        .map(|(dir, _)| dir.to_string())
        .unwrap_or_default();
    let overhead = pod_overhead_processes(&options.shim, &hint);
    let (rss, pss) = overhead
        .iter()
        .map(|p| memory_kib(*p))
        .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
    let pods = ids.len().max(1) as u64;
    println!(
        "{label}.daemon_rss_mib_with_{}_pods={:.1}",
        ids.len(),
        daemon_rss as f64 / 1024.0
    );
    println!("{label}.pod_overhead_processes={}", overhead.len());
    println!(
        "{label}.per_pod_rss_mib={:.2}",
        rss as f64 / 1024.0 / pods as f64
    );
    println!(
        "{label}.per_pod_pss_mib={:.2}",
        pss as f64 / 1024.0 / pods as f64
    );
    stats_latency(&mut rt, label, ids.len()).await;
    remove_pods(&mut rt, &ids).await?;
    Ok(())
}

/// What kubelet's periodic stats polling costs with `pods` running pods:
/// ListContainerStats and ListPodSandboxStats, median of 10 calls each (the
/// first call, which may prime caches, is not counted). A runtime that does
/// not serve a call gets "n/a".
async fn stats_latency(rt: &mut RuntimeServiceClient<Channel>, label: &str, pods: usize) {
    let mut containers = Vec::new();
    let mut sandboxes = Vec::new();
    for i in 0..11 {
        let started = Instant::now();
        let ok = rt
            .list_container_stats(cri::ListContainerStatsRequest::default())
            .await
            .is_ok();
        if ok && i > 0 {
            containers.push(started.elapsed().as_secs_f64() * 1e3);
        }
        let started = Instant::now();
        let ok = rt
            .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
            .await
            .is_ok();
        if ok && i > 0 {
            sandboxes.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times
            .get(times.len() / 2)
            .map_or("n/a".to_string(), |m| format!("{m:.1}"))
    };
    println!(
        "{label}.list_container_stats_{pods}_pods_median_ms={}",
        median(containers)
    );
    println!(
        "{label}.list_pod_sandbox_stats_{pods}_pods_median_ms={}",
        median(sandboxes)
    );
}

/// RunPodSandbox latency (no containers), median of `runs`, with the pod in
/// its own network (`pod_network`) or the node's. The difference between the
/// two is the runtime's network set-up (CNI ADD, or crius's built-in
/// network). Every pod is stopped and removed (untimed) before the next.
pub async fn sandboxes(
    endpoint: &str,
    runs: usize,
    pod_network: bool,
    label: &str,
) -> anyhow::Result<()> {
    let mut rt = client(endpoint).await?;
    let mode = if pod_network { 0 } else { 2 };
    let mut times = Vec::new();
    for i in 0..runs {
        let name = format!("net-{mode}-{i}");
        let config: cri::PodSandboxConfig = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "bench", "uid": format!("{name}-uid"), "attempt": 0},
            "linux": {"security_context": {"namespace_options": {"network": mode, "pid": 1, "ipc": 0}}}
        }))?;
        let started = Instant::now();
        let id = rt
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .context("RunPodSandbox")?
            .into_inner()
            .pod_sandbox_id;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        remove_pods(&mut rt, &[id]).await?;
    }
    times.sort_by(f64::total_cmp);
    let network = if pod_network { "pod" } else { "node" };
    println!(
        "{label}.runp_{network}_median_ms={:.1}",
        times[times.len() / 2]
    );
    Ok(())
}
