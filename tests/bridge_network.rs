//! crius's built-in network (no CNI config): pods on the bridge reach each
//! other over IPv4 and IPv6, host ports reach pods from loopback, addresses
//! are leased without running out, a daemon crash between set-up and
//! teardown leaks nothing, and a failed set-up leaves nothing behind.
//! Traffic goes only to loopback and to the test's pods.

mod common;

use common::net::{
    BridgeGuard, bridge_name, http_get, network_check, network_ready, pod_ips, ports_of,
    remove_sandbox, shell_pod,
};
use common::pods::{Pod, image};
use crius::cri;
use serde_json::json;
use std::path::Path;
use tonic::Code;

/// A criusd config in `dir` with no CNI config and the built-in network on
/// `bridge`, subnets 10.198.`n`.0/24 and fd98:0:0:`n`::/64.
fn builtin_config(dir: &Path, bridge: &str, n: u8) {
    std::fs::write(
        dir.join("config.toml"),
        format!(
            "[network]\ncni_conf_dir = \"{}\"\n[network.builtin]\nbridge = \"{bridge}\"\nsubnets = [\"10.198.{n}.0/24\", \"fd98:0:0:{n}::/64\"]\n",
            dir.join("net.d").display()
        ),
    )
    .unwrap();
}

/// The addresses the daemon in `dir` has leased in its IPv4 subnet.
fn leases(dir: &Path, n: u8) -> usize {
    std::fs::read_dir(dir.join(format!("root/network/ipam/10.198.{n}.0_24")))
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("10."))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn builtin_network_connects_pods_and_host_ports() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crb");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge, 1);
    let host_port = 20_000 + (std::process::id() % 10_000) as i32;
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let ready = network_ready(&daemon).await;
    assert!(ready.status, "{ready:?}");

    let mut pod = Pod::new_on(
        daemon,
        json!({"port_mappings": [{"protocol": 0, "container_port": 80, "host_port": host_port}]}),
    )
    .await;
    pod.daemon.pull(&image("httpd"), None).await.unwrap();
    let web = pod
        .run("web", json!({"image": {"image": image("httpd")}}))
        .await;
    let (ip, additional) = pod_ips(&pod.daemon, &pod.id).await;
    assert!(ip.starts_with("10.198.1."), "primary {ip:?}");
    assert!(
        additional.len() == 1 && additional[0].starts_with("fd98:0:0:1::"),
        "{additional:?}"
    );

    // Another pod reaches the web pod by both addresses; DNS config is there.
    let (client, shell) = shell_pod(&pod, "client").await;
    for url in [
        format!("http://{ip}/"),
        format!("http://[{}]/", additional[0]),
    ] {
        let (code, out, err) = pod.exec(&shell, &["wget", "-qO-", &url]).await;
        assert_eq!(
            (code, out.as_str()),
            (0, "crius test page\n"),
            "{url}: {err}"
        );
    }
    let (_, resolv, _) = pod.exec(&shell, &["cat", "/etc/resolv.conf"]).await;
    assert!(
        resolv.contains("nameserver 10.96.0.10") && resolv.contains("search svc.cluster.local"),
        "{resolv}"
    );

    // The host port answers on loopback.
    let page = http_get(&format!("http://127.0.0.1:{host_port}/")).await;
    assert_eq!(page, "crius test page\n");
    // Through the node's addresses on the bridge (the gateways): from another
    // pod over IPv6 (ip6tables DNAT), and from the web pod to itself (hairpin).
    let gateway6 = format!("http://[fd98:0:0:1::1]:{host_port}/");
    let (code, out, err) = pod.exec(&shell, &["wget", "-qO-", &gateway6]).await;
    assert_eq!((code, out.as_str()), (0, "crius test page\n"), "{err}");
    let gateway = format!("http://10.198.1.1:{host_port}/");
    let (code, out, err) = pod.exec(&web, &["wget", "-qO-", &gateway]).await;
    assert_eq!((code, out.as_str()), (0, "crius test page\n"), "{err}");

    // A host-network pod sees the node's interfaces, this bridge among them.
    let node = pod
        .sibling(json!({
            "metadata": {"name": "node", "uid": "node-uid"},
            "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1}}}
        }))
        .await
        .unwrap();
    let (node_ip, _) = pod_ips(&pod.daemon, &node.id).await;
    assert_eq!(node_ip, "", "host-network pods get no pod address");
    let lister = pod
        .create_in(&node, "links", json!({"command": ["sleep", "3600"]}))
        .await
        .unwrap();
    pod.start(&lister).await.unwrap();
    let (_, links, _) = pod.exec(&lister, &["ip", "-o", "link"]).await;
    assert!(links.contains(&format!(": {bridge}:")), "{links}");

    // A second pod asking for the same host port is refused and rolled back.
    assert_eq!(ports_of(&bridge).len(), 2);
    let taken = pod
        .sibling(json!({
            "metadata": {"name": "taken", "uid": "taken-uid"},
            "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": host_port}]
        }))
        .await
        .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");
    assert!(
        taken
            .message()
            .contains(&format!("host port {host_port}/tcp")),
        "{taken:?}"
    );
    assert_eq!(
        ports_of(&bridge).len(),
        2,
        "no veth left by the refused pod"
    );
    assert_eq!(
        leases(dir.path(), 1),
        2,
        "no address left by the refused pod"
    );
    let sandboxes = std::fs::read_dir(dir.path().join("state/sandboxes"))
        .unwrap()
        .count();
    assert_eq!(sandboxes, 3, "no netns or dir left by the refused pod");

    // Teardown needs only the record: it works after a crash and restart.
    pod.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    pod.daemon = common::Daemon::start_in(dir.path(), &[]);
    for id in [&pod.id, &client.id, &node.id] {
        remove_sandbox(&pod.daemon, id).await;
    }
    assert!(ports_of(&bridge).is_empty(), "veths are gone");
    assert_eq!(leases(dir.path(), 1), 0, "addresses are released");
    let rules = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S", &format!("CRIUS-PORTS-{bridge}")])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&rules.stdout).trim(),
        format!("-N CRIUS-PORTS-{bridge}"),
        "the host port rules are gone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builtin_network_leases_300_pods_in_a_slash_24() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crc");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge, 2);
    let daemon = std::sync::Arc::new(common::Daemon::start_in(dir.path(), &[]));
    // Two workers, so pods come and go side by side; a /24 holds 253.
    let workers: Vec<_> = (0..2)
        .map(|worker| {
            let daemon = daemon.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                let mut runtime = daemon.runtime().await;
                for i in 0..150 {
                    let config: cri::PodSandboxConfig = serde_json::from_value(json!({
                        "metadata": {"name": format!("p{worker}-{i}"), "namespace": "default", "uid": format!("u{worker}-{i}")},
                        "linux": {"security_context": {"namespace_options": {"pid": 1}}}
                    }))
                    .unwrap();
                    let id = runtime
                        .run_pod_sandbox(cri::RunPodSandboxRequest {
                            config: Some(config),
                            runtime_handler: String::new(),
                        })
                        .await
                        .unwrap_or_else(|e| panic!("pod {i} of worker {worker}: {e:?}"))
                        .into_inner()
                        .pod_sandbox_id;
                    let (ip, _) = pod_ips(&daemon, &id).await;
                    assert!(ip.starts_with("10.198.2."), "{ip:?}");
                    seen.push(ip);
                    remove_sandbox(&daemon, &id).await;
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.unwrap());
    }
    assert_eq!(all.len(), 300);
    // Round-robin: the first 200 leases (fewer than the subnet holds) are
    // all different addresses.
    let mut first: Vec<_> = all
        .iter()
        .take(100)
        .chain(all.iter().skip(150).take(100))
        .collect();
    first.sort();
    first.dedup();
    assert_eq!(first.len(), 200, "no address was handed out twice");
    assert_eq!(leases(dir.path(), 2), 0);
    assert!(ports_of(&bridge).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_pod_cidr_replaces_the_configured_subnet() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crd");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge, 3);
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let mut runtime = daemon.runtime().await;
    runtime
        .update_runtime_config(cri::UpdateRuntimeConfigRequest {
            runtime_config: Some(cri::RuntimeConfig {
                network_config: Some(cri::NetworkConfig {
                    pod_cidr: "10.198.4.0/24".into(),
                }),
            }),
        })
        .await
        .unwrap();
    let config: cri::PodSandboxConfig = serde_json::from_value(json!({
        "metadata": {"name": "cidr", "namespace": "default", "uid": "cidr-uid"},
        "linux": {"security_context": {"namespace_options": {"pid": 1}}}
    }))
    .unwrap();
    let id = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let (ip, additional) = pod_ips(&daemon, &id).await;
    assert!(ip.starts_with("10.198.4."), "{ip}");
    // The IPv6 subnet, which kubelet did not replace, stays.
    assert!(additional[0].starts_with("fd98:0:0:3::"), "{additional:?}");
    let addresses = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", &bridge])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&addresses.stdout).contains("10.198.4.1/24"));
    assert_eq!(network_check(&daemon, &id).await, "passed");
    let veth = format!("crv{}", &id[..12]);
    std::process::Command::new("ip")
        .args(["link", "del", &veth])
        .status()
        .unwrap();
    let check = network_check(&daemon, &id).await;
    assert_eq!(check, format!("failed: veth {veth} is missing"));
    remove_sandbox(&daemon, &id).await;
    assert_eq!(leases(dir.path(), 3), 0);

    // The bridge deleted behind crius's back is made again for the next pod.
    std::process::Command::new("ip")
        .args(["link", "del", &bridge])
        .status()
        .unwrap();
    let id = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    assert_eq!(ports_of(&bridge).len(), 1);
    remove_sandbox(&daemon, &id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_removes_what_a_crash_mid_attach_left() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("cre");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge, 5);
    let mut daemon = common::Daemon::start_in(dir.path(), &[]);
    let config: cri::PodSandboxConfig = serde_json::from_value(json!({
        "metadata": {"name": "live", "namespace": "default", "uid": "live-uid"},
        "port_mappings": [{"protocol": 1, "container_port": 53, "host_port": 5353}],
        "linux": {"security_context": {"namespace_options": {"pid": 1}}}
    }))
    .unwrap();
    let live = daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);

    // What a crash between set-up steps and the record leaves: a veth on the
    // bridge, a host-port chain and a lease, of a pod that never was.
    let sh = |script: &str| {
        let status = std::process::Command::new("sh")
            .args(["-c", script])
            .status()
            .unwrap();
        assert!(status.success(), "{script}");
    };
    sh(&format!(
        "ip link add crv0123456789ab type veth peer name crvpeer$$ && ip link set crv0123456789ab master {bridge}"
    ));
    sh(&format!(
        "printf '*nat\\n:CRIUS-POD-0123456789abcdef - [0:0]\\n-A CRIUS-PORTS-{bridge} -j CRIUS-POD-0123456789abcdef\\nCOMMIT\\n' | iptables-restore -w 5 --noflush"
    ));
    let lease = dir
        .path()
        .join("root/network/ipam/10.198.5.0_24/10.198.5.200");
    std::fs::write(&lease, "0123456789abcdef").unwrap();

    daemon = common::Daemon::start_in(dir.path(), &[]);
    daemon.runtime().await; // start-up is over once it serves
    assert_eq!(ports_of(&bridge), [format!("crv{}", &live[..12])]);
    assert!(!lease.exists(), "the orphan lease is released");
    assert_eq!(leases(dir.path(), 5), 1, "the live pod keeps its lease");
    let chains = std::process::Command::new("iptables")
        .args(["-t", "nat", "-S", &format!("CRIUS-PORTS-{bridge}")])
        .output()
        .unwrap();
    let chains = String::from_utf8_lossy(&chains.stdout).into_owned();
    assert!(!chains.contains("0123456789abcdef"), "{chains}");
    assert!(
        chains.contains(&live[..16]),
        "the live pod keeps its host port: {chains}"
    );
    remove_sandbox(&daemon, &live).await;
}

/// Many pods with host ports set up and torn down at once (as when a node
/// drains): every call succeeds, and no rule, veth or lease is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_pods_with_host_ports_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let bridge = bridge_name("crg");
    let _bridge = BridgeGuard(bridge.clone());
    builtin_config(dir.path(), &bridge, 6);
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let base = 20_000 + (std::process::id() % 1000) as i32 * 20;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut runtime = daemon.runtime().await;
        tasks.push(tokio::spawn(async move {
            let config: cri::PodSandboxConfig = serde_json::from_value(json!({
                "metadata": {"name": format!("p{i}"), "namespace": "default", "uid": format!("p{i}-uid")},
                "port_mappings": [{"protocol": 0, "container_port": 80, "host_port": base + i}],
                "linux": {"security_context": {"namespace_options": {"pid": 1}}}
            }))
            .unwrap();
            runtime
                .run_pod_sandbox(cri::RunPodSandboxRequest {
                    config: Some(config),
                    runtime_handler: String::new(),
                })
                .await
                .map(|r| r.into_inner().pod_sandbox_id)
        }));
    }
    let mut ids = Vec::new();
    for task in tasks {
        ids.push(task.await.unwrap().unwrap());
    }
    assert_eq!(ports_of(&bridge).len(), 16);
    assert_eq!(leases(dir.path(), 6), 16);
    let mut tasks = Vec::new();
    for id in ids {
        let mut runtime = daemon.runtime().await;
        tasks.push(tokio::spawn(async move {
            runtime
                .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(ports_of(&bridge).is_empty(), "no veth is left");
    assert_eq!(leases(dir.path(), 6), 0, "no lease is left");
    let rules = std::process::Command::new("iptables-save")
        .args(["-t", "nat"])
        .output()
        .unwrap();
    let rules = String::from_utf8_lossy(&rules.stdout).into_owned();
    let pod_chains = rules
        .lines()
        .filter(|l| l.contains("CRIUS-POD-") && l.contains(&format!("CRIUS-PORTS-{bridge}")))
        .count();
    assert_eq!(pod_chains, 0, "no host-port rule is left:\n{rules}");
}
