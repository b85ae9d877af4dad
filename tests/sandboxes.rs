//! Pod sandboxes through the CRI: real namespaces pinned by crius-pinns, the
//! pod's files, lifecycle, filters, errors with rollback, restart.

mod common;

use common::{Daemon, criusctl};
use crius::cri;
use nix::sys::signal::Signal;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use tonic::Code;

fn pod(name: &str, attempt: u32) -> cri::PodSandboxConfig {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("{name}-uid"), "attempt": attempt},
        "hostname": format!("{name}-host"),
        "dns_config": {"servers": ["10.96.0.10"], "searches": ["svc.cluster.local"], "options": ["ndots:5"]},
        "labels": {"app": name, "tier": "test"},
        "annotations": {"note": "kept as is"},
        "linux": {
            "sysctls": {"net.ipv4.ip_unprivileged_port_start": "0", "kernel.shmmni": "2048"},
            "security_context": {"namespace_options": {"network": 0, "pid": 1, "ipc": 0}}
        }
    }))
    .unwrap()
}

async fn run(
    daemon: &Daemon,
    config: cri::PodSandboxConfig,
    handler: &str,
) -> Result<String, tonic::Status> {
    let request = cri::RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: handler.into(),
    };
    Ok(daemon
        .runtime()
        .await
        .run_pod_sandbox(request)
        .await?
        .into_inner()
        .pod_sandbox_id)
}

async fn status(
    daemon: &Daemon,
    id: &str,
) -> Result<(cri::PodSandboxStatus, serde_json::Value), tonic::Status> {
    let resp = daemon
        .runtime()
        .await
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.into(),
            verbose: true,
        })
        .await?
        .into_inner();
    Ok((
        resp.status.unwrap(),
        serde_json::from_str(&resp.info["info"]).unwrap(),
    ))
}

async fn list(daemon: &Daemon, filter: cri::PodSandboxFilter) -> Vec<String> {
    let items = daemon
        .runtime()
        .await
        .list_pod_sandbox(cri::ListPodSandboxRequest {
            filter: Some(filter),
        })
        .await
        .unwrap()
        .into_inner()
        .items;
    items.into_iter().map(|p| p.id).collect()
}

fn in_namespace(ns: &Path, kind: &str, command: &[&str]) -> String {
    let out = std::process::Command::new("nsenter")
        .arg(format!("--{kind}={}", ns.display()))
        .args(command)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "nsenter {command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn mounts_under(dir: &Path) -> usize {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(dir.to_str().unwrap()))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_has_its_namespaces_and_files() {
    let daemon = Daemon::start();
    let id = run(&daemon, pod("web", 0), "").await.unwrap();
    let (found, info) = status(&daemon, &id).await.unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.state(), cri::PodSandboxState::SandboxReady);
    assert!(found.created_at > 0);
    assert_eq!(found.metadata.unwrap().name, "web");
    assert_eq!(found.labels["app"], "web");
    assert_eq!(found.annotations["note"], "kept as is");
    assert_eq!(found.runtime_handler, "runc");
    let options = found.linux.unwrap().namespaces.unwrap().options.unwrap();
    assert_eq!(options.pid(), cri::NamespaceMode::Container);

    let dir = PathBuf::from(info["dir"].as_str().unwrap());
    let net = PathBuf::from(info["namespaces"]["network"].as_str().unwrap());
    let uts = PathBuf::from(info["namespaces"]["uts"].as_str().unwrap());
    let ipc = PathBuf::from(info["namespaces"]["ipc"].as_str().unwrap());
    assert_ne!(
        std::fs::metadata(&net).unwrap().ino(),
        std::fs::metadata("/proc/self/ns/net").unwrap().ino()
    );
    assert_eq!(in_namespace(&uts, "uts", &["hostname"]), "web-host");
    assert_eq!(
        in_namespace(
            &net,
            "net",
            &["cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"]
        ),
        "0"
    );
    assert_eq!(
        in_namespace(&ipc, "ipc", &["cat", "/proc/sys/kernel/shmmni"]),
        "2048"
    );
    assert!(
        in_namespace(&net, "net", &["ip", "-o", "link", "show", "lo"]).contains("UP"),
        "lo is up"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("hostname")).unwrap(),
        "web-host\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("resolv.conf")).unwrap(),
        "search svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"
    );
    assert!(
        std::fs::read_to_string(dir.join("hosts"))
            .unwrap()
            .contains("web-host")
    );
    assert_eq!(mounts_under(&dir), 4, "net, ipc, uts and shm");
    assert!(
        std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(&format!("{} tmpfs", dir.join("shm").display()))
    );

    let mut client = daemon.runtime().await;
    client
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        status(&daemon, &id).await.unwrap().0.state(),
        cri::PodSandboxState::SandboxNotready
    );
    client
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    client
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    assert_eq!(mounts_under(&dir), 0);
    assert!(!dir.exists());
    assert_eq!(
        status(&daemon, &id).await.unwrap_err().code(),
        Code::NotFound
    );
    // Unknown sandboxes: stop and remove succeed, as the CRI asks.
    client
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: "nope".into(),
        })
        .await
        .unwrap();
    client
        .remove_pod_sandbox(cri::RemovePodSandboxRequest {
            pod_sandbox_id: "nope".into(),
        })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_are_unique_and_lists_filter() {
    let daemon = Daemon::start();
    let a = run(&daemon, pod("a", 0), "").await.unwrap();
    let err = run(&daemon, pod("a", 0), "").await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(
        err.message().contains(&a),
        "names the existing sandbox: {}",
        err.message()
    );
    // A handler named explicitly (crun cannot run on every node; runc can).
    let a1 = run(&daemon, pod("a", 1), "runc").await.unwrap();
    let b = run(&daemon, pod("b", 0), "").await.unwrap();
    daemon
        .runtime()
        .await
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: b.clone(),
        })
        .await
        .unwrap();

    let mut all = list(&daemon, Default::default()).await;
    all.sort();
    let mut expected = vec![a.clone(), a1.clone(), b.clone()];
    expected.sort();
    assert_eq!(all, expected);
    assert_eq!(
        list(
            &daemon,
            cri::PodSandboxFilter {
                id: a[..12].into(),
                ..Default::default()
            }
        )
        .await,
        std::slice::from_ref(&a)
    );
    let ready = cri::PodSandboxStateValue {
        state: cri::PodSandboxState::SandboxNotready as i32,
    };
    assert_eq!(
        list(
            &daemon,
            cri::PodSandboxFilter {
                state: Some(ready),
                ..Default::default()
            }
        )
        .await,
        std::slice::from_ref(&b)
    );
    let labels = [("app".to_string(), "a".to_string())].into_iter().collect();
    assert_eq!(
        list(
            &daemon,
            cri::PodSandboxFilter {
                label_selector: labels,
                ..Default::default()
            }
        )
        .await
        .len(),
        2
    );
    assert_eq!(
        status(&daemon, &a1).await.unwrap().0.runtime_handler,
        "runc"
    );
    // Status accepts a unique id prefix.
    assert_eq!(status(&daemon, &b[..10]).await.unwrap().0.id, b);
    // The stream and stats forms select the same pods.
    let app_a: std::collections::HashMap<String, String> =
        [("app".to_string(), "a".to_string())].into();
    let mut stream = daemon
        .runtime()
        .await
        .stream_pod_sandboxes(cri::StreamPodSandboxesRequest {
            filter: Some(cri::PodSandboxFilter {
                label_selector: app_a.clone(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let mut streamed = Vec::new();
    while let Some(message) = stream.message().await.unwrap() {
        streamed.extend(message.pod_sandboxes.into_iter().map(|p| p.id));
    }
    streamed.sort();
    let mut pods_a = vec![a.clone(), a1.clone()];
    pods_a.sort();
    assert_eq!(streamed, pods_a);
    let stats = daemon
        .runtime()
        .await
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest {
            filter: Some(cri::PodSandboxStatsFilter {
                label_selector: app_a,
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .stats;
    let mut with_stats: Vec<String> = stats
        .into_iter()
        .map(|s| s.attributes.unwrap().id)
        .collect();
    with_stats.sort();
    assert_eq!(with_stats, pods_a);
    for id in [a, a1, b] {
        daemon
            .runtime()
            .await
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    }
}

/// UpdatePodSandboxResources (after kubelet resized the pod's cgroup) is
/// recorded in the sandbox's config, across a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_resources_updates_are_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let id = run(&daemon, pod("resized", 0), "").await.unwrap();
    let update = |pod_sandbox_id: &str| cri::UpdatePodSandboxResourcesRequest {
        pod_sandbox_id: pod_sandbox_id.into(),
        overhead: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        }),
        resources: Some(cri::LinuxContainerResources {
            cpu_shares: 512,
            memory_limit_in_bytes: 256 << 20,
            ..Default::default()
        }),
    };
    daemon
        .runtime()
        .await
        .update_pod_sandbox_resources(update(&id))
        .await
        .unwrap();
    daemon.stop_with(Signal::SIGKILL);
    daemon = Daemon::start_in(dir.path(), &[]);
    let (_, info) = status(&daemon, &id).await.unwrap();
    let linux = &info["config"]["linux"];
    assert_eq!(linux["resources"]["cpu_shares"], 512, "{linux}");
    assert_eq!(linux["resources"]["memory_limit_in_bytes"], 256 << 20);
    assert_eq!(linux["overhead"]["memory_limit_in_bytes"], 1 << 20);
    let err = daemon
        .runtime()
        .await
        .update_pod_sandbox_resources(update("feedbeef"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert!(err.message().contains("feedbeef"), "{err:?}");
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_namespaces_are_the_hosts() {
    let daemon = Daemon::start();
    let mut config = pod("hostnet", 0);
    config.linux.as_mut().unwrap().sysctls.clear();
    config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options = Some(cri::NamespaceOption {
        network: 2,
        pid: 1,
        ipc: 2,
        ..Default::default()
    });
    let id = run(&daemon, config, "").await.unwrap();
    let (_, info) = status(&daemon, &id).await.unwrap();
    assert!(
        info["namespaces"]["network"].is_null()
            && info["namespaces"]["ipc"].is_null()
            && info["namespaces"]["uts"].is_null()
    );
    let host = nix::unistd::gethostname()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert_eq!(info["hostname"], host);
    let dir = PathBuf::from(info["dir"].as_str().unwrap());
    assert_eq!(mounts_under(&dir), 0, "no pins, no shm");
    assert_eq!(
        std::fs::read_to_string(dir.join("hosts")).unwrap(),
        std::fs::read_to_string("/etc/hosts").unwrap()
    );
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configs_are_refused_and_leave_nothing() {
    let daemon = Daemon::start();
    let sandboxes = daemon.dir.join("state/sandboxes");
    let mut no_uid = pod("x", 0);
    no_uid.metadata.as_mut().unwrap().uid.clear();
    let mut pid_pod = pod("x", 0);
    pid_pod
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = 3;
    let mut bad_sysctl = pod("x", 0);
    bad_sysctl
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("vm.swappiness".into(), "1".into());
    let mut failing_sysctl = pod("x", 0);
    failing_sysctl
        .linux
        .as_mut()
        .unwrap()
        .sysctls
        .insert("net.ipv4.no_such_knob".into(), "1".into());
    let cases = [
        (
            cri::PodSandboxConfig::default(),
            "",
            Code::InvalidArgument,
            "config.metadata is required",
        ),
        (
            no_uid,
            "",
            Code::InvalidArgument,
            "config.metadata.uid is empty",
        ),
        (pid_pod, "", Code::InvalidArgument, "pid = TARGET"),
        (bad_sysctl, "", Code::InvalidArgument, "vm.swappiness"),
        (
            pod("x", 0),
            "kata",
            Code::InvalidArgument,
            "runtime_handler \"kata\"",
        ),
        // Passes validation, fails in the helper: everything made is undone.
        (failing_sysctl, "", Code::Internal, "net.ipv4.no_such_knob"),
    ];
    for (config, handler, code, needle) in cases {
        let err = run(&daemon, config, handler).await.unwrap_err();
        assert_eq!(err.code(), code, "{needle}: {err:?}");
        assert!(
            err.message().contains(needle),
            "{needle}: {}",
            err.message()
        );
        assert_eq!(
            std::fs::read_dir(&sandboxes).unwrap().count(),
            0,
            "{needle}: nothing left"
        );
        assert_eq!(mounts_under(&sandboxes), 0, "{needle}: no mounts left");
    }
    // The name freed by the failure can be used.
    run(&daemon, pod("x", 0), "").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandboxes_survive_a_daemon_crash() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let id = run(&daemon, pod("durable", 0), "").await.unwrap();
    let (_, info) = status(&daemon, &id).await.unwrap();
    let net = PathBuf::from(info["namespaces"]["network"].as_str().unwrap());
    let inode = std::fs::metadata(&net).unwrap().ino();
    daemon.stop_with(Signal::SIGKILL);

    let daemon = Daemon::start_in(dir.path(), &[]);
    let (status_after, _) = status(&daemon, &id).await.unwrap();
    assert_eq!(status_after.state(), cri::PodSandboxState::SandboxReady);
    assert_eq!(
        std::fs::metadata(&net).unwrap().ino(),
        inode,
        "the same network namespace"
    );
    let err = run(&daemon, pod("durable", 0), "").await.unwrap_err();
    assert_eq!(
        err.code(),
        Code::AlreadyExists,
        "the name is still taken after restart"
    );
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
    assert_eq!(mounts_under(dir.path()), 0);
}

#[test]
fn criusctl_runs_and_removes_pods_from_crictl_configs() {
    let daemon = Daemon::start();
    let shared = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crictl-tests/configs/pod-config.yaml"
    );
    // The scenarios' config, with its log directory (which criusd makes and,
    // as kubelet owns it, leaves) inside this test's own dir.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shared).unwrap();
    let logs = dir.path().join("pod-logs");
    assert!(text.contains("/tmp/crius-pod-logs"), "{text}");
    let text = text.replace("/tmp/crius-pod-logs", logs.to_str().unwrap());
    let config = dir.path().join("pod-config.yaml");
    std::fs::write(&config, text).unwrap();
    let config = config.to_str().unwrap();
    let (ok, id, err) = criusctl(&daemon.endpoint(), &["runp", config]);
    assert!(ok, "{err}");
    let id = id.trim().to_string();
    let (ok, out, _) = criusctl(&daemon.endpoint(), &["pods", "-q"]);
    assert!(ok && out.trim() == id, "{out}");
    let (ok, _, err) = criusctl(&daemon.endpoint(), &["runp", config]);
    assert!(!ok && err.contains("AlreadyExists"), "{err}");
    let (ok, out, _) = criusctl(&daemon.endpoint(), &["inspectp", &id[..8]]);
    assert!(ok && out.contains("crius-sandbox-yaml"), "{out}");
    let (ok, _, err) = criusctl(&daemon.endpoint(), &["rmp", &id]);
    assert!(ok, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_repairs_what_a_crash_or_reboot_left() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let kept = run(&daemon, pod("kept", 0), "").await.unwrap();
    let lost = run(&daemon, pod("lost", 0), "").await.unwrap();
    daemon.stop_with(Signal::SIGKILL);
    let sandboxes = dir.path().join("state/sandboxes");
    // A RunPodSandbox cut short: pins made, no record.
    let half = sandboxes.join("half-made");
    std::fs::create_dir_all(&half).unwrap();
    let out = std::process::Command::new(common::CRIUSD.replace("criusd", "crius-pinns"))
        .args([
            "--dir",
            half.to_str().unwrap(),
            "--net",
            "--uts",
            "--hostname",
            "half",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A reboot would have taken the namespaces of every pod; take one's.
    let lost_dir = sandboxes.join(&lost);
    for ns in ["net", "ipc", "uts"] {
        let _ = nix::mount::umount2(&lost_dir.join(ns), nix::mount::MntFlags::MNT_DETACH);
        let _ = std::fs::remove_file(lost_dir.join(ns));
    }

    let daemon = Daemon::start_in(dir.path(), &[]);
    assert!(!half.exists(), "the half-made sandbox is gone");
    assert_eq!(mounts_under(&half), 0);
    assert_eq!(
        status(&daemon, &kept).await.unwrap().0.state(),
        cri::PodSandboxState::SandboxReady
    );
    assert_eq!(
        status(&daemon, &lost).await.unwrap().0.state(),
        cri::PodSandboxState::SandboxNotready
    );
    for id in [kept, lost] {
        daemon
            .runtime()
            .await
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
            .await
            .unwrap();
    }
    assert_eq!(mounts_under(dir.path()), 0);
}

fn pause_of(info: &serde_json::Value) -> i32 {
    info["namespaces"]["pause_pid"]
        .as_i64()
        .expect("a pause process") as i32
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|s| !s.contains("Z (zombie)"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_wide_pid_namespace_has_a_pause_process_as_pid_1() {
    let daemon = Daemon::start();
    let mut config = pod("shared", 0);
    config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = 0;
    let id = run(&daemon, config, "").await.unwrap();
    let (_, info) = status(&daemon, &id).await.unwrap();
    let pause = pause_of(&info);
    let proc_status = std::fs::read_to_string(format!("/proc/{pause}/status")).unwrap();
    let nspid = proc_status
        .lines()
        .find(|l| l.starts_with("NSpid:"))
        .unwrap();
    assert!(
        nspid.trim_end().ends_with("\t1"),
        "PID 1 in its namespace: {nspid}"
    );
    let ino = |p: &str| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&format!("/proc/{pause}/ns/pid")),
        ino(info["namespaces"]["pid"].as_str().unwrap())
    );
    assert_eq!(
        ino(&format!("/proc/{pause}/ns/net")),
        ino(info["namespaces"]["network"].as_str().unwrap())
    );
    assert_eq!(
        std::fs::read_link(format!("/proc/{pause}/exe"))
            .unwrap()
            .file_name()
            .unwrap(),
        "crius-pause"
    );

    daemon
        .runtime()
        .await
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.clone(),
        })
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive(pause) {
        assert!(
            std::time::Instant::now() < deadline,
            "pause survived StopPodSandbox"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let dir = PathBuf::from(info["dir"].as_str().unwrap());
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
    assert_eq!(mounts_under(&dir), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandbox_whose_pause_died_is_not_ready_after_restart() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let mut config = pod("fragile", 0);
    config
        .linux
        .as_mut()
        .unwrap()
        .security_context
        .as_mut()
        .unwrap()
        .namespace_options
        .as_mut()
        .unwrap()
        .pid = 0;
    let id = run(&daemon, config, "").await.unwrap();
    let pause = pause_of(&status(&daemon, &id).await.unwrap().1);
    daemon.stop_with(Signal::SIGKILL);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pause), Signal::SIGKILL).unwrap();
    while alive(pause) {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let daemon = Daemon::start_in(dir.path(), &[]);
    assert_eq!(
        status(&daemon, &id).await.unwrap().0.state(),
        cri::PodSandboxState::SandboxNotready
    );
    daemon
        .runtime()
        .await
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
        .await
        .unwrap();
    assert_eq!(mounts_under(dir.path()), 0);
}
