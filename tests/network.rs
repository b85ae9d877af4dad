//! Pod networking through CNI with Debian's plugins (bridge, host-local):
//! pods get addresses, serve traffic on them, keep what DEL needs across a
//! daemon restart, and failed plugins roll back.

mod common;

use common::pods::{Pod, image};
use crius::cri;
use serde_json::json;
use std::path::Path;
use std::time::Duration;
use tonic::Code;

/// Deletes the test's bridge even when the test fails.
struct BridgeGuard(String);

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "del", &self.0])
            .output();
    }
}

/// A criusd config and CNI network (bridge `name`, subnet 10.199.`n`.0/24) in
/// `dir`.
fn network_config(dir: &Path, bridge: &str, n: u8, plugin: &str) {
    let net_d = dir.join("net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("[network]\ncni_conf_dir = \"{}\"\n", net_d.display()),
    )
    .unwrap();
    let list = json!({
        "cniVersion": "1.0.0",
        "name": "crius-test",
        "plugins": [{
            "type": plugin,
            "bridge": bridge,
            "isGateway": true,
            "ipMasq": false,
            "ipam": {
                "type": "host-local",
                "dataDir": dir.join("ipam"),
                "ranges": [[{"subnet": format!("10.199.{n}.0/24")}]]
            }
        }]
    });
    std::fs::write(net_d.join("10-test.conflist"), list.to_string()).unwrap();
}

async fn pod_ip(pod: &Pod) -> String {
    pod.daemon
        .runtime()
        .await
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap()
        .network
        .unwrap()
        .ip
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn cni_pods_get_addresses_that_serve() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = format!("crt{}", std::process::id() % 100_000);
    let _bridge = BridgeGuard(bridge.clone());
    network_config(dir.path(), &bridge, 1, "bridge");
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let mut pod = Pod::new_on(daemon, json!({})).await;
    let ip = pod_ip(&pod).await;
    assert!(ip.starts_with("10.199.1."), "pod IP {ip:?}");
    // Status says the network is ready.
    let status = pod
        .daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let ready = status.status.unwrap().conditions[1].clone();
    assert!(ready.status, "{ready:?}");

    // A web server in the pod answers on the pod's address.
    pod.daemon.pull(&image("httpd"), None).await.unwrap();
    let web = pod
        .run("web", json!({"image": {"image": image("httpd")}}))
        .await;
    let (_, out, _) = pod.exec(&web, &["ip", "-4", "addr", "show", "eth0"]).await;
    assert!(out.contains(&ip), "{out}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = format!("http://{ip}:80/");
    let mut body = String::new();
    for _ in 0..50 {
        if let Ok(resp) = reqwest::get(&url).await {
            body = resp.text().await.unwrap_or_default();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(body, "crius test page\n");

    // DEL needs nothing but the record: it works after a crash and restart.
    pod.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    pod.daemon = common::Daemon::start_in(dir.path(), &[]);
    let ipam_file = dir.path().join("ipam/crius-test").join(&ip);
    assert!(ipam_file.exists(), "host-local holds {ip}");
    let stop = || async {
        pod.daemon
            .runtime()
            .await
            .stop_pod_sandbox(cri::StopPodSandboxRequest {
                pod_sandbox_id: pod.id.clone(),
            })
            .await
    };
    stop().await.unwrap();
    assert!(!ipam_file.exists(), "DEL released {ip}");
    assert_eq!(pod_ip(&pod).await, "");
    stop().await.unwrap();
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_is_named_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    network_config(dir.path(), "crtnone", 2, "no-such-plugin");
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let config: cri::PodSandboxConfig = serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "default", "uid": "p-uid"},
        "linux": {"security_context": {"namespace_options": {"pid": 1}}}
    }))
    .unwrap();
    let err = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(err.message().contains("no-such-plugin"), "{err:?}");
    let left = std::fs::read_dir(dir.path().join("state/sandboxes"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the failed pod left nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cni_status_decides_network_readiness() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("cni-bin");
    let net_d = dir.path().join("net.d");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&net_d).unwrap();
    // A CNI 1.1 plugin that is not ready yet.
    let plugin = bin.join("waiting");
    std::fs::write(
        &plugin,
        "#!/bin/sh\ncat >/dev/null\nif [ \"$CNI_COMMAND\" = STATUS ]; then\n  echo '{\"cniVersion\": \"1.1.0\", \"code\": 50, \"msg\": \"waiting for the cluster network\"}'\n  exit 1\nfi\necho '{\"cniVersion\": \"1.1.0\"}'\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(
        net_d.join("10-waiting.conflist"),
        json!({"cniVersion": "1.1.0", "name": "slow", "plugins": [{"type": "waiting"}]})
            .to_string(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[network]\ncni_conf_dir = \"{}\"\ncni_bin_dirs = [\"{}\"]\n",
            net_d.display(),
            bin.display()
        ),
    )
    .unwrap();
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let network = status.status.unwrap().conditions[1].clone();
    assert!(!network.status, "{network:?}");
    assert_eq!(network.reason, "NetworkPluginNotReady");
    assert!(
        network.message.contains("waiting for the cluster network")
            && network.message.contains("\"waiting\""),
        "{network:?}"
    );
}
