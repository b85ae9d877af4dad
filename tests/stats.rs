//! ContainerStats and PodSandboxStats with real containers: CPU time and
//! rate from the cgroup, memory, the writable layer's disk use, the pod's
//! processes and its eth0 counters on the built-in network. Traffic goes only
//! to the pod's gateway on the test's own bridge.

mod common;

use common::net::{BridgeGuard, bridge_name, pod_ips};
use common::pods::Pod;
use crius::cri;
use serde_json::json;
use std::time::{Duration, Instant};
use tonic::Code;

/// A criusd config in `dir` with the built-in network on `bridge`.
fn builtin_config(dir: &std::path::Path, bridge: &str) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[network]\ncni_conf_dir = \"{}\"\n[network.builtin]\nbridge = \"{bridge}\"\nsubnets = [\"10.195.1.0/24\"]\n",
            dir.join("net.d").display()
        ),
    )
    .unwrap();
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

async fn pod_stats(pod: &Pod, id: &str) -> Result<cri::PodSandboxStats, tonic::Status> {
    Ok(pod
        .daemon
        .runtime()
        .await
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: id.into(),
        })
        .await?
        .into_inner()
        .stats
        .unwrap())
}

fn value(v: &Option<cri::UInt64Value>) -> u64 {
    v.as_ref().map(|v| v.value).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn stats_measure_a_busy_container_and_its_pod() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crs");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge);
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let pod = Pod::new_on(
        daemon,
        json!({"labels": {"app": "busy"}, "annotations": {"note": "stats"}}),
    )
    .await;
    // 8 MiB in the writable layer, then one core kept busy.
    let busy = pod
        .run(
            "busy",
            json!({
                "labels": {"role": "spinner"},
                "command": ["sh", "-c", "dd if=/dev/zero of=/data bs=1048576 count=8 2>/dev/null; touch /written; while :; do :; done"]
            }),
        )
        .await;
    let deadline = Instant::now() + common::patience(Duration::from_secs(20));
    while pod.exec(&busy, &["ls", "/written"]).await.0 != 0 {
        assert!(Instant::now() < deadline, "the container never wrote /data");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let first = container_stats(&pod, &busy).await;
    let attributes = first.attributes.clone().unwrap();
    assert_eq!(attributes.id, busy);
    assert_eq!(attributes.metadata.unwrap().name, "busy");
    assert_eq!(attributes.labels["role"], "spinner");
    let cpu = first.cpu.unwrap();
    assert!(value(&cpu.usage_core_nano_seconds) > 0, "{first:?}");
    let memory = first.memory.unwrap();
    assert!(value(&memory.usage_bytes) > 0, "{memory:?}");
    assert!(value(&memory.working_set_bytes) <= value(&memory.usage_bytes));
    let layer = first.writable_layer.clone().unwrap();
    assert!(value(&layer.used_bytes) >= 8 << 20, "{layer:?}");
    assert!(value(&layer.inodes_used) >= 3, "{layer:?}");
    assert!(
        layer.fs_id.unwrap().mountpoint.ends_with("rootfs"),
        "the writable layers' filesystem"
    );
    // The second sample gives a rate: the spinner uses a good share of a core.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let second = container_stats(&pod, &busy).await;
    let cpu2 = second.cpu.unwrap();
    assert!(cpu2.timestamp > cpu.timestamp);
    assert!(value(&cpu2.usage_core_nano_seconds) > value(&cpu.usage_core_nano_seconds));
    assert!(
        value(&cpu2.usage_nano_cores) > 50_000_000,
        "a spinning shell uses over 5% of a core: {cpu2:?}"
    );

    // Lists select by pod and labels.
    let list = |filter: cri::ContainerStatsFilter| {
        let daemon = &pod.daemon;
        async move {
            daemon
                .runtime()
                .await
                .list_container_stats(cri::ListContainerStatsRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .stats
        }
    };
    let by_pod = list(cri::ContainerStatsFilter {
        pod_sandbox_id: pod.id.clone(),
        ..Default::default()
    })
    .await;
    assert_eq!(by_pod.len(), 1);
    assert_eq!(by_pod[0].attributes.as_ref().unwrap().id, busy);
    let unlabelled = list(cri::ContainerStatsFilter {
        label_selector: [("role".to_string(), "other".to_string())].into(),
        ..Default::default()
    })
    .await;
    assert!(unlabelled.is_empty());

    // The pod: its cgroup's usage, processes, eth0, and the container.
    let (ip, _) = pod_ips(&pod.daemon, &pod.id).await;
    assert!(ip.starts_with("10.195.1."), "{ip}");
    // A connection attempt to the gateway (refused) is traffic on eth0.
    let _ = pod
        .exec(&busy, &["wget", "-qO-", "http://10.195.1.1:1/"])
        .await;
    let stats = pod_stats(&pod, &pod.id).await.unwrap();
    let attributes = stats.attributes.unwrap();
    assert_eq!(attributes.labels["app"], "busy");
    assert_eq!(attributes.annotations["note"], "stats");
    let linux = stats.linux.unwrap();
    assert!(
        value(&linux.cpu.unwrap().usage_core_nano_seconds) >= value(&cpu2.usage_core_nano_seconds)
    );
    assert!(value(&linux.memory.unwrap().usage_bytes) > 0);
    assert!(
        value(&linux.process.unwrap().process_count) >= 1,
        "the spinner runs in the pod's cgroup"
    );
    let network = linux.network.unwrap();
    let eth0 = network.default_interface.unwrap();
    assert_eq!(eth0.name, "eth0");
    assert!(value(&eth0.tx_bytes) > 0, "{eth0:?}");
    assert!(network.interfaces.iter().all(|i| i.name != "lo"));
    assert_eq!(linux.containers.len(), 1);

    // A host-network pod has no interfaces of its own to report.
    let host = pod
        .sibling(json!({
            "metadata": {"name": "host", "uid": "host-uid"},
            "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1}}}
        }))
        .await
        .unwrap();
    let host_stats = pod_stats(&pod, &host.id).await.unwrap().linux.unwrap();
    assert!(host_stats.network.is_none());
    assert!(host_stats.containers.is_empty());
    let listed = pod
        .daemon
        .runtime()
        .await
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                label_selector: [("app".to_string(), "busy".to_string())].into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].attributes.as_ref().unwrap().id, pod.id);

    // Unknown and empty ids.
    let err = pod_stats(&pod, "0123456789abcdef").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = pod
        .daemon
        .runtime()
        .await
        .container_stats(cri::ContainerStatsRequest {
            container_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("container_id"), "{err:?}");

    common::net::remove_sandbox(&pod.daemon, &host.id).await;
    pod.remove_pod().await;
}
