//! Helpers for network tests: a guard that removes a test's bridge and its
//! rules, pod addresses, and HTTP fetches that go only to loopback or to pod
//! addresses.

use super::Daemon;
use super::pods::{Pod, Sandbox};
use crius::cri;
use crius::network::iptables::{self, Family};
use serde_json::json;
use std::time::Duration;

/// Deletes the test's bridge and the built-in network's rules for it, even
/// when the test fails.
pub struct BridgeGuard(pub String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        for family in [Family::V4, Family::V6] {
            iptables::remove_base(family, &self.0);
        }
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// A bridge name unique to this test process and `tag`.
pub fn bridge_name(tag: &str) -> String {
    format!("{tag}{}", std::process::id() % 100_000)
}

/// The pod's (primary, additional) addresses from PodSandboxStatus.
pub async fn pod_ips(daemon: &Daemon, id: &str) -> (String, Vec<String>) {
    let network = daemon
        .runtime()
        .await
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap();
    (
        network.ip,
        network.additional_ips.into_iter().map(|ip| ip.ip).collect(),
    )
}

/// GETs `url` (loopback or a pod's address), retrying while the server
/// starts; "" when it never answers.
pub async fn http_get(url: &str) -> String {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .unwrap();
    for _ in 0..50 {
        if let Ok(resp) = client.get(url).send().await {
            return resp.text().await.unwrap_or_default();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    String::new()
}

/// The node's interfaces enslaved to `bridge`.
pub fn ports_of(bridge: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect()
}

/// The NetworkReady condition.
pub async fn network_ready(daemon: &Daemon) -> cri::RuntimeCondition {
    daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap()
}

/// A second pod beside `pod` (named `name`) with a busybox container that
/// sleeps, for commands run from another pod: (sandbox, container id).
pub async fn shell_pod(pod: &Pod, name: &str) -> (Sandbox, String) {
    let sandbox = pod
        .sibling(json!({"metadata": {"name": name, "uid": format!("{name}-uid")}}))
        .await
        .unwrap();
    let shell = pod
        .create_in(&sandbox, "shell", json!({"command": ["sleep", "3600"]}))
        .await
        .unwrap();
    pod.start(&shell).await.unwrap();
    (sandbox, shell)
}

/// Stops and removes a pod sandbox.
pub async fn remove_sandbox(daemon: &Daemon, id: &str) {
    let mut runtime = daemon.runtime().await;
    runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .unwrap();
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_string(),
        })
        .await
        .unwrap();
}

/// What PodSandboxStatus with `verbose` says of the pod's network check.
pub async fn network_check(daemon: &Daemon, id: &str) -> String {
    daemon
        .runtime()
        .await
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_string(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info
        .remove("network_check")
        .unwrap_or_default()
}
