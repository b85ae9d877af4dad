//! ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics
//! with real containers: a container that spins and fills /dev/shm shows
//! rising CPU seconds and working set, equal to what ContainerStats reports
//! around the same moment; the pod's eth0 counters move after traffic (only
//! to the pod's gateway on the test's own bridge); every metric has a
//! descriptor with its labels; criusctl prints both as crictl does.

mod common;

use common::net::{BridgeGuard, bridge_name, pod_ips};
use common::pods::Pod;
use crius::cri;
use serde_json::json;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const NS_PER_S: u64 = 1_000_000_000;

fn builtin_config(dir: &std::path::Path, bridge: &str) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[network]\ncni_conf_dir = \"{}\"\n[network.builtin]\nbridge = \"{bridge}\"\nsubnets = [\"10.196.7.0/24\"]\n",
            dir.join("net.d").display()
        ),
    )
    .unwrap();
}

async fn pod_metrics(pod: &Pod) -> Vec<cri::PodSandboxMetrics> {
    pod.daemon
        .runtime()
        .await
        .list_pod_sandbox_metrics(cri::ListPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner()
        .pod_metrics
}

async fn container_stats(pod: &Pod, id: &str) -> cri::ContainerStats {
    pod.daemon
        .runtime()
        .await
        .container_stats(cri::ContainerStatsRequest {
            container_id: id.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .stats
        .unwrap()
}

fn value(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

/// The one metric `name` whose labels after the base ones are `extra`.
fn metric(metrics: &[cri::Metric], name: &str, extra: &[&str]) -> u64 {
    let found: Vec<_> = metrics
        .iter()
        .filter(|m| m.name == name && m.label_values[6..] == *extra)
        .collect();
    assert_eq!(found.len(), 1, "{name} {extra:?} in {metrics:#?}");
    value(&found[0].value)
}

fn of_container<'a>(pods: &'a [cri::PodSandboxMetrics], id: &str) -> &'a [cri::Metric] {
    pods.iter()
        .flat_map(|p| &p.container_metrics)
        .find(|c| c.container_id == id)
        .map(|c| c.metrics.as_slice())
        .unwrap_or_else(|| panic!("no metrics of container {id}"))
}

fn of_pod<'a>(pods: &'a [cri::PodSandboxMetrics], id: &str) -> &'a [cri::Metric] {
    pods.iter()
        .find(|p| p.pod_sandbox_id == id)
        .map(|p| p.metrics.as_slice())
        .unwrap_or_else(|| panic!("no metrics of pod {id}"))
}

/// Container metrics and ContainerStats taken before and after them.
async fn bracketed(
    pod: &Pod,
    id: &str,
) -> (
    cri::ContainerStats,
    Vec<cri::PodSandboxMetrics>,
    cri::ContainerStats,
) {
    let before = container_stats(pod, id).await;
    let metrics = pod_metrics(pod).await;
    let after = container_stats(pod, id).await;
    (before, metrics, after)
}

/// The metric lies between the two stats readings (in whole seconds for
/// CPU), i.e. it is the same reading as ContainerStats within one sample.
fn assert_matches_stats(
    before: &cri::ContainerStats,
    metrics: &[cri::Metric],
    after: &cri::ContainerStats,
) {
    let cpu = |s: &cri::ContainerStats| value(&s.cpu.as_ref().unwrap().usage_core_nano_seconds);
    let seconds = metric(metrics, "container_cpu_usage_seconds_total", &[]);
    assert!(
        cpu(before) / NS_PER_S <= seconds && seconds <= cpu(after) / NS_PER_S,
        "{} <= {seconds} <= {}",
        cpu(before),
        cpu(after)
    );
    let ws = |s: &cri::ContainerStats| value(&s.memory.as_ref().unwrap().working_set_bytes);
    let working_set = metric(metrics, "container_memory_working_set_bytes", &[]);
    let (low, high) = (ws(before).min(ws(after)), ws(before).max(ws(after)));
    // The kernel's counters move by a few pages between readings.
    let slack = 256 << 10;
    assert!(
        low.saturating_sub(slack) <= working_set && working_set <= high + slack,
        "{low} <= {working_set} <= {high}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn metrics_follow_a_busy_container_and_its_pods_traffic() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crm");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge);
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let pod = Pod::new_on(
        daemon,
        json!({"metadata": {"name": "web", "namespace": "shop", "uid": "web-uid"}}),
    )
    .await;
    // One core kept busy while 8 MiB a second go to /dev/shm (memory the
    // kernel cannot reclaim as inactive file pages), up to 48 MiB.
    let busy = pod
        .run(
            "busy",
            json!({
                "command": ["sh", "-c", "(i=0; while [ $i -lt 6 ]; do head -c 8388608 /dev/zero > /dev/shm/m$i; i=$((i+1)); sleep 1; done) & while :; do :; done"],
                "linux": {"resources": {"cpu_period": 100000, "cpu_quota": 200000, "memory_limit_in_bytes": 268435456}}
            }),
        )
        .await;

    let (before, first, after) = bracketed(&pod, &busy).await;
    let container = of_container(&first, &busy);
    assert_matches_stats(&before, container, &after);
    let cpu0 = metric(container, "container_cpu_usage_seconds_total", &[]);
    let ws0 = metric(container, "container_memory_working_set_bytes", &[]);
    assert!(metric(container, "container_processes", &[]) >= 2);
    assert!(metric(container, "container_threads", &[]) >= 2);
    assert!(metric(container, "container_file_descriptors", &[]) >= 3);
    assert_eq!(metric(container, "container_spec_cpu_quota", &[]), 200_000);
    assert_eq!(
        metric(container, "container_spec_memory_limit_bytes", &[]),
        256 << 20
    );
    let started = metric(container, "container_start_time_seconds", &[]);
    let status = pod.status(&busy).await.unwrap();
    assert_eq!(started, status.started_at as u64 / NS_PER_S);

    // Both rise: whole CPU seconds need a second or two of spinning.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (cpu1, ws1) = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (before, now, after) = bracketed(&pod, &busy).await;
        let container = of_container(&now, &busy);
        assert_matches_stats(&before, container, &after);
        let cpu = metric(container, "container_cpu_usage_seconds_total", &[]);
        let ws = metric(container, "container_memory_working_set_bytes", &[]);
        if (cpu > cpu0 && ws > ws0 + (8 << 20)) || Instant::now() > deadline {
            break (cpu, ws);
        }
    };
    assert!(cpu1 > cpu0, "CPU seconds {cpu0} -> {cpu1}");
    assert!(ws1 > ws0 + (8 << 20), "working set {ws0} -> {ws1}");

    // Traffic in the pod moves its eth0 counters (a refused connection to
    // the gateway is still packets out and in).
    let (ip, _) = pod_ips(&pod.daemon, &pod.id).await;
    assert!(ip.starts_with("10.196.7."), "{ip}");
    let sent = |pods: &[cri::PodSandboxMetrics]| {
        let m = of_pod(pods, &pod.id);
        (
            metric(m, "container_network_transmit_packets_total", &["eth0"]),
            metric(m, "container_network_transmit_bytes_total", &["eth0"]),
            metric(m, "container_network_receive_packets_total", &["eth0"]),
        )
    };
    let quiet = sent(&pod_metrics(&pod).await);
    for _ in 0..3 {
        let (code, _, err) = pod
            .exec(&busy, &["wget", "-qO-", "http://10.196.7.1:1/"])
            .await;
        assert_eq!(code, 1, "{err}");
    }
    let pods = pod_metrics(&pod).await;
    let busy_net = sent(&pods);
    assert!(busy_net.0 >= quiet.0 + 3, "{quiet:?} -> {busy_net:?}");
    assert!(
        busy_net.1 > quiet.1 && busy_net.2 > quiet.2,
        "{quiet:?} -> {busy_net:?}"
    );
    let pod_level = of_pod(&pods, &pod.id);
    assert!(!pod_level.iter().any(|m| m.label_values[6..] == ["lo"]));
    assert!(
        metric(pod_level, "container_cpu_usage_seconds_total", &[]) >= cpu1,
        "the pod's cgroup holds the container's"
    );

    // Every metric is described, with its labels in the descriptor's order.
    let descriptors: HashMap<String, Vec<String>> = pod
        .daemon
        .runtime()
        .await
        .list_metric_descriptors(cri::ListMetricDescriptorsRequest {})
        .await
        .unwrap()
        .into_inner()
        .descriptors
        .into_iter()
        .map(|d| (d.name, d.label_keys))
        .collect();
    let check = |m: &cri::Metric, container: &str| {
        let keys = descriptors
            .get(&m.name)
            .unwrap_or_else(|| panic!("{} has no descriptor", m.name));
        assert_eq!(keys.len(), m.label_values.len(), "{}", m.name);
        let label = |key: &str| &m.label_values[keys.iter().position(|k| k == key).unwrap()];
        assert_eq!(label("container"), container, "{}", m.name);
        assert_eq!(label("pod"), "web");
        assert_eq!(label("namespace"), "shop");
        if keys.iter().any(|k| k == "interface") {
            assert_eq!(label("interface"), "eth0");
        }
    };
    let ours = pods.iter().find(|p| p.pod_sandbox_id == pod.id).unwrap();
    for m in &ours.metrics {
        check(m, "");
    }
    for m in &ours.container_metrics[0].metrics {
        check(m, "busy");
        assert_eq!(m.label_values[3], busy, "name is the container id");
    }

    // The stream sends the same pods, then ends.
    let mut stream = pod
        .daemon
        .runtime()
        .await
        .stream_pod_sandbox_metrics(cri::StreamPodSandboxMetricsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        streamed.extend(message.pod_sandbox_metrics);
    }
    assert_eq!(streamed.len(), pods.len());
    assert_eq!(streamed[0].pod_sandbox_id, pod.id);

    // criusctl prints crictl's JSON.
    let (ok, out, err) = common::criusctl(&pod.daemon.endpoint(), &["metricsp"]);
    assert!(ok, "{err}");
    let printed: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["podMetrics"][0]["podSandboxId"], pod.id.as_str());
    assert_eq!(
        printed["podMetrics"][0]["containerMetrics"][0]["containerId"],
        busy.as_str()
    );
    let (ok, out, err) = common::criusctl(&pod.daemon.endpoint(), &["metricdescs", "-o", "yaml"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("descriptors:\n- help: "), "{out}");
    assert!(
        out.contains("name: container_cpu_usage_seconds_total"),
        "{out}"
    );

    pod.remove_pod().await;
}

/// Stopped containers and pods that are not ready are not measured: they
/// have no cgroup (cAdvisor no longer reports them either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn only_running_containers_of_ready_pods_are_measured() {
    let pod = Pod::new(
        json!({"linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1}}}}),
    )
    .await;
    let running = pod
        .run("running", json!({"command": ["sleep", "3600"]}))
        .await;
    let done = pod.run("done", json!({"command": ["true"]})).await;
    pod.wait_exit(&done, Duration::from_secs(20)).await;
    let pods = pod_metrics(&pod).await;
    assert_eq!(pods.len(), 1);
    let ids: Vec<_> = pods[0]
        .container_metrics
        .iter()
        .map(|c| &c.container_id)
        .collect();
    assert_eq!(ids, [&running]);
    // A host-network pod has no interfaces of its own.
    assert!(
        !pods[0]
            .metrics
            .iter()
            .any(|m| m.name.starts_with("container_network_"))
    );
    pod.daemon
        .runtime()
        .await
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    assert!(pod_metrics(&pod).await.is_empty());
    pod.remove_pod().await;
}
