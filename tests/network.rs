//! Pod networking through CNI with Debian's plugins (bridge, host-local,
//! portmap): pods get addresses, reach each other, serve host ports on
//! loopback, keep what DEL needs across a daemon restart, and failed plugins
//! roll back. Traffic goes only to loopback and to the test's pods.

mod common;

use common::net::{
    BridgeGuard, bridge_name, http_get, network_check, network_ready, pod_ips, ports_of, shell_pod,
};
use common::pods::{Pod, image};
use crius::cri;
use serde_json::{Value, json};
use std::path::Path;
use tonic::Code;

/// A criusd config and CNI network (bridge `name`, subnet 10.199.`n`.0/24,
/// then `more` plugins) in `dir`.
fn network_config(dir: &Path, bridge: &str, n: u8, plugin: &str, more: &[Value]) {
    let net_d = dir.join("net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    std::fs::write(
        dir.join("config.toml"),
        format!("[network]\ncni_conf_dir = \"{}\"\n", net_d.display()),
    )
    .unwrap();
    let mut list = json!({
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
    let plugins = list["plugins"].as_array_mut().unwrap();
    plugins.extend(more.iter().cloned());
    std::fs::write(net_d.join("10-test.conflist"), list.to_string()).unwrap();
}

async fn pod_ip(pod: &Pod) -> String {
    pod_ips(&pod.daemon, &pod.id).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn cni_pods_get_addresses_that_serve() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crt");
    let _bridge = BridgeGuard(bridge.clone());
    let portmap = json!({"type": "portmap", "capabilities": {"portMappings": true}});
    network_config(dir.path(), &bridge, 1, "bridge", &[portmap]);
    let host_port = 30_000 + (std::process::id() % 10_000) as i32;
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let mut pod = Pod::new_on(
        daemon,
        json!({"port_mappings": [{"protocol": 0, "container_port": 80, "host_port": host_port}]}),
    )
    .await;
    let ip = pod_ip(&pod).await;
    assert!(ip.starts_with("10.199.1."), "pod IP {ip:?}");
    let ready = network_ready(&pod.daemon).await;
    assert!(ready.status, "{ready:?}");
    // CHECK, as crictl inspectp asks for it. Debian's portmap 1.1.1 fails
    // CHECK for IPv4-only pods (it looks for its IPv6 chain); the bridge
    // plugin before it passes.
    let check = network_check(&pod.daemon, &pod.id).await;
    assert!(
        check == "passed" || check.starts_with("failed: CNI plugin \"portmap\" (CHECK)"),
        "{check}"
    );

    // A web server in the pod answers on the pod's address.
    pod.daemon.pull(&image("httpd"), None).await.unwrap();
    let web = pod
        .run("web", json!({"image": {"image": image("httpd")}}))
        .await;
    let (_, out, _) = pod.exec(&web, &["ip", "-4", "addr", "show", "eth0"]).await;
    assert!(out.contains(&ip), "{out}");
    assert_eq!(
        http_get(&format!("http://{ip}:80/")).await,
        "crius test page\n"
    );
    // portmap's host port answers on loopback.
    let page = http_get(&format!("http://127.0.0.1:{host_port}/")).await;
    assert_eq!(page, "crius test page\n");
    // Another pod on the network reaches it by its address.
    let (client, shell) = shell_pod(&pod, "client").await;
    let (code, out, err) = pod
        .exec(&shell, &["wget", "-qO-", &format!("http://{ip}/")])
        .await;
    assert_eq!((code, out.as_str()), (0, "crius test page\n"), "{err}");

    // With its veth gone, the bridge plugin's CHECK says so.
    let info = pod
        .daemon
        .runtime()
        .await
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: pod.id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: Value = serde_json::from_str(&info["info"]).unwrap();
    let veth = info["network"]["result"]["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i.get("sandbox").is_none() && i["name"] != bridge.as_str())
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    std::process::Command::new("ip")
        .args(["link", "del", &veth])
        .status()
        .unwrap();
    let check = network_check(&pod.daemon, &pod.id).await;
    assert!(
        check.starts_with("failed: CNI plugin \"bridge\" (CHECK)"),
        "{check}"
    );

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
    let mut runtime = pod.daemon.runtime().await;
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: client.id.clone(),
        })
        .await
        .unwrap();
    assert!(ports_of(&bridge).is_empty(), "DEL removed the veths");
}

/// A CNI network of Debian's bridge and host-local (subnet 10.199.`n`.0/24),
/// then a fake plugin `name` whose ADD runs `add` (VERSION and DEL answer);
/// `extra` is added to criusd's `[network]` config.
fn fake_plugin_network(dir: &Path, bridge: &str, n: u8, name: &str, add: &str, extra: &str) {
    use std::os::unix::fs::PermissionsExt;
    let bin = dir.join("cni-bin");
    std::fs::create_dir_all(&bin).unwrap();
    for plugin in ["bridge", "host-local"] {
        std::os::unix::fs::symlink(Path::new("/usr/lib/cni").join(plugin), bin.join(plugin))
            .unwrap();
    }
    let fake = bin.join(name);
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\ncat >/dev/null\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\nif [ \"$CNI_COMMAND\" = VERSION ]; then\n  echo '{{\"cniVersion\": \"1.0.0\", \"supportedVersions\": [\"0.4.0\", \"1.0.0\"]}}'\n  exit 0\nfi\n{add}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    network_config(dir, bridge, n, "bridge", &[json!({"type": name})]);
    let mut config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    config += &format!("cni_bin_dirs = [\"{}\"]\n{extra}", bin.display());
    std::fs::write(dir.join("config.toml"), config).unwrap();
}

/// RunPodSandbox of a pod named `name` with its own network.
async fn run_sandbox(
    daemon: &common::Daemon,
    name: &str,
    annotations: Value,
) -> Result<String, tonic::Status> {
    let config: cri::PodSandboxConfig = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid")},
        "annotations": annotations,
        "linux": {"security_context": {"namespace_options": {"pid": 1}}}
    }))
    .unwrap();
    daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .map(|r| r.into_inner().pod_sandbox_id)
}

/// What a pod that failed its network set-up may leave: nothing.
fn assert_rolled_back(dir: &Path, bridge: &str) {
    let left = std::fs::read_dir(dir.join("state/sandboxes"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the failed pod left no netns or dir");
    assert!(
        Path::new("/sys/class/net").join(bridge).exists(),
        "the bridge plugin ran before the failing one"
    );
    assert!(ports_of(bridge).is_empty(), "no veth is left");
    let addresses = std::fs::read_dir(dir.join("ipam/crius-test"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0);
    assert_eq!(addresses, 0, "no address is left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_is_named_and_rolled_back() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crf");
    let _bridge = BridgeGuard(bridge.clone());
    // The bridge plugin succeeds (veth, address), then a plugin fails.
    let refuse = "echo '{\"cniVersion\": \"1.0.0\", \"code\": 11, \"msg\": \"refusing on purpose\"}'\nexit 1";
    fake_plugin_network(dir.path(), &bridge, 2, "refuse", refuse, "");
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let err = run_sandbox(&daemon, "p", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::Internal);
    assert!(
        err.message().contains("refuse") && err.message().contains("refusing on purpose"),
        "{err:?}"
    );
    assert_rolled_back(dir.path(), &bridge);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_plugin_times_out_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crh");
    let _bridge = BridgeGuard(bridge.clone());
    // A child of the plugin's that would outlive it: the timeout kills the
    // plugin's whole process group.
    let marker = format!("{}", 5000 + std::process::id() % 1000);
    let hang = format!("sleep {marker}\nexit 0");
    fake_plugin_network(
        dir.path(),
        &bridge,
        5,
        "hang",
        &hang,
        "cni_plugin_timeout_seconds = 1\n",
    );
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let started = std::time::Instant::now();
    let err = run_sandbox(&daemon, "slow", json!({})).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(
        err.message().contains("\"hang\"") && err.message().contains("within 1s"),
        "{err:?}"
    );
    assert_rolled_back(dir.path(), &bridge);
    let sleepers = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
        })
        .count();
    assert_eq!(sleepers, 0, "the plugin's child was killed with it");
}

/// A criusd killed while a plugin runs (after the bridge plugin has taken an
/// address) must not leak it: the next start runs DEL for the half-made pod.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_during_cni_add_releases_the_address_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crk");
    let _bridge = BridgeGuard(bridge.clone());
    let marker = format!("{}", 6000 + std::process::id() % 1000);
    let hang = format!("sleep {marker}\nexit 0");
    fake_plugin_network(
        dir.path(),
        &bridge,
        7,
        "hang",
        &hang,
        "cni_plugin_timeout_seconds = 120\n",
    );
    let leases = || {
        std::fs::read_dir(dir.path().join("ipam/crius-test"))
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                    .count()
            })
            .unwrap_or(0)
    };
    let mut daemon = common::Daemon::start_in(dir.path(), &[]);
    let endpoint = daemon.endpoint();
    let pending = tokio::spawn(async move {
        let channel = crius::client::connect(&endpoint, std::time::Duration::from_secs(5), None)
            .await
            .unwrap();
        let config: cri::PodSandboxConfig = serde_json::from_value(json!({
            "metadata": {"name": "cut", "namespace": "default", "uid": "cut-uid"},
            "linux": {"security_context": {"namespace_options": {"pid": 1}}}
        }))
        .unwrap();
        let _ = crius::client::runtime_client(channel)
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await;
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while leases() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the bridge plugin never took an address"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    pending.abort();
    // The plugin outlived criusd: stop it (the test started it).
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if std::fs::read(entry.path().join("cmdline"))
            .is_ok_and(|c| c == format!("sleep\0{marker}\0").as_bytes())
            && let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>()
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    assert_eq!(leases(), 1, "the address is taken while criusd is down");
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    assert_eq!(leases(), 0, "start-up released it: {}", daemon.log());
    assert!(ports_of(&bridge).is_empty(), "no veth is left");
    let left = std::fs::read_dir(dir.path().join("state/sandboxes"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "the half-made pod is gone");
}

/// The pod's bandwidth annotations reach Debian's bandwidth plugin, and
/// kubelet's pod CIDR reaches host-local as `ipRanges`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_annotations_and_the_pod_cidr_reach_the_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crw");
    let _bridge = BridgeGuard(bridge.clone());
    network_config(
        dir.path(),
        &bridge,
        6,
        "bridge",
        &[json!({"type": "bandwidth", "capabilities": {"bandwidth": true}})],
    );
    // ipRanges is declared by the plugin that delegates to host-local, and
    // is host-local's only range (it would add its own ranges after it).
    let list_file = dir.path().join("net.d/10-test.conflist");
    let mut list: Value =
        serde_json::from_str(&std::fs::read_to_string(&list_file).unwrap()).unwrap();
    list["plugins"][0]["capabilities"] = json!({"ipRanges": true});
    list["plugins"][0]["ipam"]
        .as_object_mut()
        .unwrap()
        .remove("ranges");
    std::fs::write(&list_file, list.to_string()).unwrap();
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    daemon
        .runtime()
        .await
        .update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: "10.199.7.0/24".into(),
                }),
            }),
        })
        .await
        .unwrap();
    let id = run_sandbox(
        &daemon,
        "shaped",
        json!({
            "kubernetes.io/ingress-bandwidth": "1M",
            "kubernetes.io/egress-bandwidth": "2M"
        }),
    )
    .await
    .unwrap();
    let (ip, _) = pod_ips(&daemon, &id).await;
    assert!(ip.starts_with("10.199.7."), "the pod CIDR's address: {ip}");
    let qdiscs = || {
        let out = std::process::Command::new("tc")
            .args(["qdisc", "show"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let veth = ports_of(&bridge).pop().expect("the pod's veth");
    let shaped = qdiscs();
    let on_veth = shaped
        .lines()
        .find(|l| l.contains("tbf") && l.contains(&format!("dev {veth} ")))
        .unwrap_or_default()
        .to_string();
    // Ingress to the pod is shaped on the host's end of its veth, egress
    // from it on an ifb device the plugin names after the pod.
    assert!(on_veth.contains("rate 1Mbit"), "{shaped}");
    assert!(
        shaped
            .lines()
            .any(|l| l.contains("tbf") && l.contains("rate 2Mbit") && !l.contains(&veth)),
        "{shaped}"
    );
    let mut runtime = daemon.runtime().await;
    runtime
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    let after = qdiscs();
    assert!(
        !after.contains("rate 2Mbit"),
        "DEL removed the ifb: {after}"
    );
    runtime
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn the_shipped_cni_config_works_with_debians_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let net_d = dir.path().join("net.d");
    std::fs::create_dir_all(&net_d).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/cni");
    // As shipped, but with the address store in the test's dir.
    let mut list: Value = serde_json::from_str(
        &std::fs::read_to_string(shipped.join("10-crius-bridge.conflist")).unwrap(),
    )
    .unwrap();
    list["plugins"][0]["ipam"]["dataDir"] = json!(dir.path().join("ipam"));
    let bridge = list["plugins"][0]["bridge"].as_str().unwrap().to_string();
    let _bridge = BridgeGuard(bridge.clone());
    std::fs::write(net_d.join("10-crius-bridge.conflist"), list.to_string()).unwrap();
    std::fs::copy(
        shipped.join("99-loopback.conf"),
        net_d.join("99-loopback.conf"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("config.toml"),
        format!("[network]\ncni_conf_dir = \"{}\"\n", net_d.display()),
    )
    .unwrap();
    let host_port = 40_000 + (std::process::id() % 10_000) as i32;
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let ready = network_ready(&daemon).await;
    assert!(ready.status, "{ready:?}");
    let pod = Pod::new_on(
        daemon,
        json!({"port_mappings": [{"protocol": 0, "container_port": 80, "host_port": host_port}]}),
    )
    .await;
    pod.daemon.pull(&image("httpd"), None).await.unwrap();
    pod.run("web", json!({"image": {"image": image("httpd")}}))
        .await;
    let ip = pod_ip(&pod).await;
    assert!(ip.starts_with("10.85."), "{ip}");
    assert_eq!(
        http_get(&format!("http://{ip}/")).await,
        "crius test page\n"
    );
    let page = http_get(&format!("http://127.0.0.1:{host_port}/")).await;
    assert_eq!(page, "crius test page\n");
    pod.remove_pod().await;
    assert!(ports_of(&bridge).is_empty());
}
