//! Containers through the CRI, end to end: real criusd, crius-shim, runc,
//! namespaces, cgroups and images from the harness registry.

mod common;

use common::pods::{Pod, image};
use crius::cri;
use serde_json::json;
use std::time::{Duration, Instant};
use tonic::Code;

const IGNORE: &str = "needs the e2e registry and images: run `make test`";
const WAIT: Duration = Duration::from_secs(20);

fn sh(script: &str) -> serde_json::Value {
    json!({"command": ["sh", "-c", script]})
}

/// Whether a capability bit is in a `/proc/<pid>/status` Cap line.
fn has_cap(status: &str, line: &str, bit: u32) -> bool {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(line))
        .unwrap()
        .trim();
    u64::from_str_radix(hex, 16).unwrap() & (1 << bit) != 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn lifecycle_logs_exit_codes_and_filters() {
    let _ = IGNORE;
    let pod = Pod::new(json!({})).await;
    let long = "x".repeat(20_000);
    let mut config = sh(&format!(
        "echo out; echo err >&2; echo {long}; printf partial; exit 3"
    ));
    common::pods::merge(&mut config, json!({"labels": {"role": "worker"}}));
    let id = pod.create("worker", config).await.unwrap();
    let created = pod.status(&id).await.unwrap();
    assert_eq!(created.state, cri::ContainerState::ContainerCreated as i32);
    assert!(created.log_path.ends_with("worker.log"));
    pod.start(&id).await.unwrap();
    let status = pod.wait_exit(&id, WAIT).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (3, "Error"));
    assert!(status.created_at <= status.started_at && status.started_at <= status.finished_at);
    assert_eq!(status.image.unwrap().image, image("busybox"));
    assert!(
        status.image_ref.contains("@sha256:"),
        "{}",
        status.image_ref
    );
    assert!(status.image_id.starts_with("sha256:"));

    let log = pod.log("worker");
    let stdout: Vec<(bool, String)> = log
        .iter()
        .filter(|l| l.0 == "stdout")
        .map(|l| (l.1, l.2.clone()))
        .collect();
    let stderr: Vec<&str> = log
        .iter()
        .filter(|l| l.0 == "stderr")
        .map(|l| l.2.as_str())
        .collect();
    assert_eq!(stderr, ["err"]);
    assert_eq!(stdout[0], (false, "out".to_string()));
    // 20 000 bytes: one 16 KiB partial record, then the rest as a full one.
    assert_eq!((stdout[1].0, stdout[1].1.len()), (true, 16 * 1024));
    assert_eq!(
        (stdout[2].0, stdout[2].1.len()),
        (false, 20_000 - 16 * 1024)
    );
    assert_eq!(stdout[3], (false, "partial".to_string()));

    // Filters: state, sandbox, labels; a second, running container.
    let runner = pod.run("runner", sh("sleep 60")).await;
    let list = |filter: cri::ContainerFilter| {
        let daemon = &pod.daemon;
        async move {
            let mut ids: Vec<String> = daemon
                .runtime()
                .await
                .list_containers(cri::ListContainersRequest {
                    filter: Some(filter),
                })
                .await
                .unwrap()
                .into_inner()
                .containers
                .into_iter()
                .map(|c| c.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let running = cri::ContainerStateValue {
        state: cri::ContainerState::ContainerRunning as i32,
    };
    assert_eq!(
        list(cri::ContainerFilter {
            state: Some(running),
            ..Default::default()
        })
        .await,
        vec![runner.clone()]
    );
    let mut labels = std::collections::HashMap::new();
    labels.insert("role".to_string(), "worker".to_string());
    assert_eq!(
        list(cri::ContainerFilter {
            label_selector: labels,
            pod_sandbox_id: pod.id[..8].to_string(),
            ..Default::default()
        })
        .await,
        vec![id.clone()]
    );
    assert_eq!(
        list(cri::ContainerFilter {
            id: id[..10].to_string(),
            ..Default::default()
        })
        .await,
        vec![id.clone()]
    );

    // Remove is idempotent; a removed container is not found.
    pod.remove(&id).await.unwrap();
    pod.remove(&id).await.unwrap();
    pod.stop(&id, 0).await.unwrap();
    assert_eq!(pod.status(&id).await.unwrap_err().code(), Code::NotFound);
    assert!(!pod.daemon.dir.join("state/containers").join(&id).exists());
    assert!(!pod.daemon.dir.join("root/rootfs").join(&id).exists());
    pod.remove_pod().await;
    assert_eq!(
        pod.status(&runner).await.unwrap_err().code(),
        Code::NotFound,
        "RemovePodSandbox removes its containers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn image_config_env_workdir_and_stop_signal() {
    let pod = Pod::new(json!({})).await;
    // ENTRYPOINT + CMD of the image.
    let plain = pod
        .run("plain", json!({"image": {"image": image("config")}}))
        .await;
    let status = pod.wait_exit(&plain, WAIT).await;
    assert_eq!((status.exit_code, status.reason.as_str()), (0, "Completed"));
    assert_eq!(pod.log("plain")[0].2, "entrypoint cmd-arg");
    assert_eq!(status.stop_signal, cri::Signal::Sigusr1 as i32);
    // args replace CMD only.
    let args = pod
        .run(
            "args",
            json!({"image": {"image": image("config")}, "args": ["given"]}),
        )
        .await;
    pod.wait_exit(&args, WAIT).await;
    assert_eq!(pod.log("args")[0].2, "entrypoint given");
    // command replaces both; env merges by name; WORKDIR holds.
    let mut config = sh("pwd; echo $GREETING $FROM_IMAGE $HOSTNAME");
    common::pods::merge(
        &mut config,
        json!({"image": {"image": image("config")}, "envs": [{"key": "GREETING", "value": "from cri"}]}),
    );
    let cmd = pod.run("cmd", config).await;
    pod.wait_exit(&cmd, WAIT).await;
    let lines: Vec<String> = pod.log("cmd").into_iter().map(|l| l.2).collect();
    assert_eq!(lines, ["/srv/work", "from cri yes test-pod"]);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn stop_signal_then_sigkill_after_the_timeout() {
    let pod = Pod::new(json!({})).await;
    let stubborn = pod
        .run(
            "stubborn",
            sh("trap 'echo got TERM' TERM; while true; do sleep 0.1; done"),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    pod.stop(&stubborn, 2).await.unwrap();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let status = pod.status(&stubborn).await.unwrap();
    assert_eq!(status.exit_code, 137, "{status:?}");
    assert!(
        pod.log("stubborn").iter().any(|l| l.2 == "got TERM"),
        "SIGTERM came first"
    );
    pod.stop(&stubborn, 2).await.unwrap();

    // Timeout 0 kills at once.
    let other = pod.run("other", sh("sleep 60")).await;
    let started = Instant::now();
    pod.stop(&other, 0).await.unwrap();
    assert!(started.elapsed() < common::patience(Duration::from_secs(2)));
    assert_eq!(pod.status(&other).await.unwrap().exit_code, 137);
    // A stopped container cannot start again.
    assert_eq!(
        pod.start(&other).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn users_capabilities_and_read_only_rootfs() {
    let pod = Pod::new(json!({})).await;
    // USER someuser, resolved in the image's /etc/passwd and /etc/group.
    let named = pod
        .run(
            "named",
            json!({"image": {"image": image("user-name")}, "command": ["sleep", "60"]}),
        )
        .await;
    let (_, out, _) = pod.exec(&named, &["id"]).await;
    assert!(
        out.contains("uid=1000(someuser) gid=1000(someuser)"),
        "{out}"
    );
    assert!(
        out.contains("2000(extra)") && out.contains("100(users)"),
        "{out}"
    );
    let user = pod
        .status(&named)
        .await
        .unwrap()
        .user
        .unwrap()
        .linux
        .unwrap();
    assert_eq!((user.uid, user.gid), (1000, 1000));
    // Strict: only the CRI's groups, not the image's /etc/group memberships.
    let strict = pod
        .run(
            "strict",
            json!({"image": {"image": image("user-name")}, "command": ["sleep", "60"],
                   "linux": {"security_context": {"supplemental_groups": [3000], "supplemental_groups_policy": 1}}}),
        )
        .await;
    let (_, out, _) = pod.exec(&strict, &["id", "-G"]).await;
    assert_eq!(out.trim(), "1000 3000");

    // run_as_user and read-only rootfs; capabilities dropped and added.
    let locked = pod
        .run(
            "locked",
            json!({
                "command": ["sleep", "60"],
                "linux": {"security_context": {
                    "readonly_rootfs": true,
                    "capabilities": {"drop_capabilities": ["NET_RAW", "CAP_CHOWN"], "add_capabilities": ["NET_ADMIN"]}
                }}
            }),
        )
        .await;
    let (code, _, err) = pod.exec(&locked, &["touch", "/newfile"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    let (_, status, _) = pod.exec(&locked, &["cat", "/proc/self/status"]).await;
    assert!(!has_cap(&status, "CapEff:", 13), "CAP_NET_RAW dropped");
    assert!(!has_cap(&status, "CapBnd:", 0), "CAP_CHOWN dropped");
    assert!(has_cap(&status, "CapEff:", 12), "CAP_NET_ADMIN added");
    assert!(has_cap(&status, "CapEff:", 1), "CAP_DAC_OVERRIDE kept");
    // The pod's files are there, and writable shm.
    let (_, hostname, _) = pod.exec(&locked, &["cat", "/etc/hostname"]).await;
    assert_eq!(hostname.trim(), "test-pod");
    let (_, resolv, _) = pod.exec(&locked, &["cat", "/etc/resolv.conf"]).await;
    assert!(resolv.contains("nameserver 10.96.0.10"), "{resolv}");
    let (code, _, _) = pod.exec(&locked, &["touch", "/dev/shm/ok"]).await;
    assert_eq!(code, 0);

    let uid = pod
        .run(
            "uid",
            json!({"command": ["sleep", "60"], "linux": {"security_context": {"run_as_user": {"value": 1234}, "run_as_group": {"value": 4321}}}}),
        )
        .await;
    let (_, out, _) = pod.exec(&uid, &["id"]).await;
    assert!(out.starts_with("uid=1234 gid=4321"), "{out}");
    let (_, status, _) = pod.exec(&uid, &["cat", "/proc/self/status"]).await;
    assert!(
        !has_cap(&status, "CapEff:", 1),
        "a non-root user has no effective capabilities"
    );
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn seccomp_runtime_default_blocks_unshare() {
    let pod = Pod::new(json!({})).await;
    let confined = pod
        .run(
            "confined",
            json!({"command": ["sleep", "60"], "linux": {"security_context": {"seccomp": {"profile_type": 0}}}}),
        )
        .await;
    let unconfined = pod
        .run(
            "unconfined",
            json!({"command": ["sleep", "60"], "linux": {"security_context": {"seccomp": {"profile_type": 1}}}}),
        )
        .await;
    let (_, status, _) = pod.exec(&confined, &["cat", "/proc/self/status"]).await;
    assert!(status.contains("Seccomp:\t2"), "{status}");
    // Creating a user namespace needs no capability; only the filter stops it.
    let (code, _, err) = pod.exec(&confined, &["unshare", "-U", "true"]).await;
    assert_ne!(code, 0, "unshare allowed under RuntimeDefault");
    assert!(err.contains("Operation not permitted"), "{err}");
    let (code, _, err) = pod.exec(&unconfined, &["unshare", "-U", "true"]).await;
    assert_eq!(code, 0, "unconfined: {err}");
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn memory_limit_oom_and_resource_updates() {
    let pod = Pod::new(json!({})).await;
    let limits = json!({"linux": {"resources": {
        "memory_limit_in_bytes": 33554432, "cpu_shares": 256, "cpu_quota": 20000, "cpu_period": 100000
    }}});
    let mut config = sh("sleep 60");
    common::pods::merge(&mut config, limits.clone());
    let limited = pod.run("limited", config).await;
    let read = |file: &'static str| {
        let pod = &pod;
        let id = limited.clone();
        async move {
            let (_, out, _) = pod.exec(&id, &["cat", file]).await;
            out.trim().to_string()
        }
    };
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if v2 {
        assert_eq!(read("/sys/fs/cgroup/memory.max").await, "33554432");
        assert_eq!(read("/sys/fs/cgroup/cpu.max").await, "20000 100000");
        // cpu_shares 256 in v2's weight scale, as runc converts it.
        assert_eq!(read("/sys/fs/cgroup/cpu.weight").await, "10");
    } else {
        assert_eq!(
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes").await,
            "33554432"
        );
        assert_eq!(read("/sys/fs/cgroup/cpu/cpu.shares").await, "256");
        assert_eq!(read("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").await, "20000");
    }
    // UpdateContainerResources changes the cgroup and the status.
    let mut update: cri::LinuxContainerResources =
        serde_json::from_value(limits["linux"]["resources"].clone()).unwrap();
    update.memory_limit_in_bytes = 67108864;
    pod.daemon
        .runtime()
        .await
        .update_container_resources(cri::UpdateContainerResourcesRequest {
            container_id: limited.clone(),
            linux: Some(update),
            ..Default::default()
        })
        .await
        .unwrap();
    if v2 {
        assert_eq!(read("/sys/fs/cgroup/memory.max").await, "67108864");
    } else {
        assert_eq!(
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes").await,
            "67108864"
        );
    }
    let status = pod.status(&limited).await.unwrap();
    let resources = status.resources.unwrap().linux.unwrap();
    assert_eq!(resources.memory_limit_in_bytes, 67108864);

    // oom_score_adj below criusd's own needs CAP_SYS_RESOURCE: without it
    // (as here) crius clamps instead of failing; higher values apply as is.
    let own: i64 = std::fs::read_to_string(format!("/proc/{}/oom_score_adj", pod.daemon.pid()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut low = sh("sleep 60");
    common::pods::merge(
        &mut low,
        json!({"linux": {"resources": {"oom_score_adj": -998}}}),
    );
    let low = pod.run("low", low).await;
    let (_, adj, _) = pod.exec(&low, &["cat", "/proc/1/oom_score_adj"]).await;
    let adj: i64 = adj.trim().parse().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{}/status", pod.daemon.pid())).unwrap();
    let expected = if has_cap(&status, "CapEff:", 24) {
        -998
    } else {
        own
    };
    assert_eq!(adj, expected, "criusd has {own}");
    let mut high = sh("sleep 60");
    common::pods::merge(
        &mut high,
        json!({"linux": {"resources": {"oom_score_adj": 500}}}),
    );
    let high = pod.run("high", high).await;
    let (_, adj, _) = pod.exec(&high, &["cat", "/proc/1/oom_score_adj"]).await;
    assert_eq!(adj.trim(), "500");

    // Past the limit, the kernel kills it: OOMKilled.
    let mut hog = sh("exec dd if=/dev/zero of=/dev/null bs=64M count=4");
    common::pods::merge(&mut hog, limits);
    let hog = pod.run("hog", hog).await;
    let status = pod.wait_exit(&hog, WAIT).await;
    assert_eq!(status.reason, "OOMKilled", "{status:?}");
    assert_ne!(status.exit_code, 0);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn shared_pid_namespace_and_target() {
    let pod =
        Pod::new(json!({"linux": {"security_context": {"namespace_options": {"pid": 0}}}})).await;
    let shared = json!({"command": ["sleep", "61"], "linux": {"security_context": {"namespace_options": {"pid": 0}}}});
    let first = pod.run("first", shared.clone()).await;
    let mut second = shared;
    common::pods::merge(&mut second, json!({"command": ["sleep", "62"]}));
    let second = pod.run("second", second).await;
    let (_, ps, _) = pod.exec(&second, &["ps", "-o", "pid,args"]).await;
    assert!(ps.contains("sleep 61") && ps.contains("sleep 62"), "{ps}");
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_default();
    assert!(
        pid1.contains("crius-pause"),
        "PID 1 is the pod's pause: {ps}"
    );
    pod.remove_pod().await;
    let _ = first;

    // TARGET: a debug container joins another container's PID namespace.
    let pod = Pod::new_on(common::Daemon::start(), json!({})).await;
    let target = pod.run("target", sh("sleep 63")).await;
    let debug = pod
        .run(
            "debug",
            json!({"command": ["sleep", "64"], "linux": {"security_context": {"namespace_options": {"pid": 3, "target_id": target}}}}),
        )
        .await;
    let (_, ps, _) = pod.exec(&debug, &["ps", "-o", "args"]).await;
    assert!(ps.contains("sleep 63") && ps.contains("sleep 64"), "{ps}");
    let (_, ps, _) = pod.exec(&target, &["ps", "-o", "args"]).await;
    assert!(ps.contains("sleep 64"), "{ps}");
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn exec_sync_output_exit_code_and_timeout() {
    let pod = Pod::new(json!({})).await;
    let id = pod.run("svc", sh("sleep 60")).await;
    let (code, out, err) = pod
        .exec(&id, &["sh", "-c", "echo hi; echo oops >&2; exit 7"])
        .await;
    assert_eq!((code, out.as_str(), err.as_str()), (7, "hi\n", "oops\n"));
    let started = Instant::now();
    let err = pod.exec_with(&id, &["sleep", "30"], 1).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    assert!(started.elapsed() < common::patience(Duration::from_secs(10)));
    let (_, ps, _) = pod.exec(&id, &["ps", "-o", "args"]).await;
    assert!(
        !ps.contains("sleep 30"),
        "the timed-out command was killed: {ps}"
    );
    let err = pod.exec_with(&id, &[], 0).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = pod
        .exec_with(&id, &["/no/such/program"], 0)
        .await
        .unwrap_err();
    assert!(err.message().contains("/no/such/program"), "{err:?}");
    pod.stop(&id, 0).await.unwrap();
    let err = pod.exec_with(&id, &["true"], 0).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn tty_output_and_log_reopen() {
    let pod = Pod::new(json!({})).await;
    let mut tty = sh("echo on a terminal; sleep 60");
    common::pods::merge(&mut tty, json!({"tty": true, "stdin": true}));
    let tty = pod.run("tty", tty).await;
    let ticker = pod
        .run(
            "ticker",
            sh("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"),
        )
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        pod.log("tty")
            .iter()
            .any(|l| l.2.starts_with("on a terminal")),
        "{:?}",
        pod.log("tty")
    );
    // kubelet rotates: rename, then ReopenContainerLog.
    let path = pod.logs.join("ticker.log");
    std::fs::rename(&path, pod.logs.join("ticker.log.1")).unwrap();
    pod.daemon
        .runtime()
        .await
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: ticker.clone(),
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = pod.log("ticker");
    assert!(
        !fresh.is_empty() && fresh[0].2.starts_with("tick "),
        "{fresh:?}"
    );
    pod.stop(&ticker, 0).await.unwrap();
    let err = pod
        .daemon
        .runtime()
        .await
        .reopen_container_log(cri::ReopenContainerLogRequest {
            container_id: ticker,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    let _ = tty;
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn volumes_devices_and_create_errors() {
    let pod = Pod::new(json!({})).await;
    let host = pod.daemon.dir.join("volume");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("from-host"), "hello\n").unwrap();
    let id = pod
        .run(
            "vols",
            json!({
                "command": ["sleep", "60"],
                "mounts": [
                    {"container_path": "/rw", "host_path": host},
                    {"container_path": "/ro", "host_path": host, "readonly": true}
                ],
                "devices": [{"container_path": "/dev/mynull", "host_path": "/dev/null", "permissions": "rw"}]
            }),
        )
        .await;
    let (_, out, _) = pod.exec(&id, &["cat", "/ro/from-host"]).await;
    assert_eq!(out, "hello\n");
    let (code, _, _) = pod
        .exec(&id, &["sh", "-c", "echo x > /rw/from-container"])
        .await;
    assert_eq!(code, 0);
    assert!(host.join("from-container").exists());
    let (code, _, _) = pod.exec(&id, &["sh", "-c", "echo x > /ro/nope"]).await;
    assert_ne!(code, 0);
    let (code, _, err) = pod.exec(&id, &["sh", "-c", "echo x > /dev/mynull"]).await;
    assert_eq!(code, 0, "{err}");

    // A hostPath of type "": kubelet leaves a missing directory to the
    // runtime, which makes it (0755, root's).
    let missing = pod.daemon.dir.join("hostpath/made/by/crius");
    let made = pod
        .run(
            "made",
            json!({"command": ["sleep", "60"], "mounts": [{"container_path": "/data", "host_path": missing}]}),
        )
        .await;
    let (code, _, err) = pod.exec(&made, &["sh", "-c", "echo x > /data/f"]).await;
    assert_eq!(code, 0, "{err}");
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&missing).unwrap();
    assert_eq!((meta.mode() & 0o777, meta.uid()), (0o755, 0));
    assert!(missing.join("f").exists());
    pod.stop(&made, 0).await.unwrap();
    pod.remove(&made).await.unwrap();

    // Errors name the field; nothing is left behind.
    let bad = |overlay: serde_json::Value| {
        let pod = &pod;
        async move { pod.create("bad", overlay).await.unwrap_err() }
    };
    // A missing host path inside criusd's own data is not made.
    let own = pod.daemon.dir.join("root/no/such/dir");
    let err = bad(json!({"mounts": [{"container_path": "/x", "host_path": own}]})).await;
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("config.mounts[0]"), "{err:?}");
    assert!(err.message().contains("criusd's own data"), "{err:?}");
    assert!(!own.exists());
    let err = bad(
        json!({"linux": {"security_context": {"capabilities": {"add_capabilities": ["FLY"]}}}}),
    )
    .await;
    assert!(err.message().contains("add_capabilities"), "{err:?}");
    let err = bad(json!({"image": {"image": image("absent")}})).await;
    assert_eq!(err.code(), Code::NotFound);
    let err = bad(json!({"command": ["/no/such/binary"]})).await;
    assert!(err.message().contains("/no/such/binary"), "{err:?}");
    let err = pod.create("vols", json!({})).await.unwrap_err();
    assert_eq!(err.code(), Code::AlreadyExists);
    assert!(err.message().contains(&id), "{err:?}");
    let dirs = std::fs::read_dir(pod.daemon.dir.join("state/containers"))
        .unwrap()
        .count();
    assert_eq!(dirs, 1, "failed creates left nothing");
    let rootfs = std::fs::read_dir(pod.daemon.dir.join("root/rootfs"))
        .unwrap()
        .count();
    assert_eq!(rootfs, 1);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn crun_handler_runs_containers() {
    let pod = Pod::new(json!({})).await;
    // A second pod on the crun handler.
    let mut config = pod.config.clone();
    config.metadata.as_mut().unwrap().name = "crun-pod".into();
    let result = pod
        .daemon
        .runtime()
        .await
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "crun".into(),
        })
        .await;
    let status = pod
        .daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap()
        .into_inner();
    let crun_usable = status.runtime_handlers.iter().any(|h| h.name == "crun");
    if !crun_usable {
        // A node where crun cannot work (crun 1.8 on a hybrid cgroup layout
        // with controllers on cgroup2): refused up front, with the reason.
        let err = result.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(err.message().contains("crun"), "{err:?}");
        pod.remove_pod().await;
        return;
    }
    let crun_pod = result.unwrap().into_inner().pod_sandbox_id;
    let container: cri::ContainerConfig = serde_json::from_value(json!({
        "metadata": {"name": "c"},
        "image": {"image": image("busybox")},
        "command": ["sh", "-c", "echo from crun; exit 4"],
        "log_path": "crun.log"
    }))
    .unwrap();
    let mut rt = pod.daemon.runtime().await;
    let id = rt
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: crun_pod.clone(),
            config: Some(container),
            sandbox_config: Some(config),
        })
        .await
        .unwrap()
        .into_inner()
        .container_id;
    pod.start(&id).await.unwrap();
    let status = pod.wait_exit(&id, WAIT).await;
    assert_eq!(status.exit_code, 4);
    assert_eq!(pod.log("crun")[0].2, "from crun");
    let info = rt
        .container_status(cri::ContainerStatusRequest {
            container_id: id,
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    assert!(
        info["info"].contains("\"runtimeHandler\":\"crun\""),
        "{info:?}"
    );
    rt.remove_pod_sandbox(cri::RemovePodSandboxRequest {
        pod_sandbox_id: crun_pod,
    })
    .await
    .unwrap();
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn containers_survive_a_criusd_crash() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let mut pod = Pod::new_on(daemon, json!({})).await;
    let long = pod
        .run(
            "long",
            sh("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"),
        )
        .await;
    let short = pod.run("short", sh("sleep 1; exit 5")).await;
    let shim_pids: Vec<i32> = [&long, &short]
        .iter()
        .map(|id| {
            std::fs::read_to_string(
                dir.path()
                    .join("state/containers")
                    .join(id)
                    .join("shim.pid"),
            )
            .unwrap()
            .parse()
            .unwrap()
        })
        .collect();
    pod.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    let before = pod.log("long").len();
    // A create that a crash cut short.
    let half_made = dir.path().join("state/containers/half-made");
    std::fs::create_dir_all(&half_made).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        pod.log("long").len() > before + 5,
        "the shim kept logging while criusd was down"
    );

    pod.daemon = common::Daemon::start_in(dir.path(), &[]);
    let status = pod.status(&long).await.unwrap();
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    let status = pod.status(&short).await.unwrap();
    assert_eq!(
        (status.state, status.exit_code, status.reason.as_str()),
        (cri::ContainerState::ContainerExited as i32, 5, "Error"),
        "the exit while criusd was down is known"
    );
    assert!(
        !half_made.exists(),
        "start-up removed the half-made container"
    );
    let (code, out, _) = pod.exec(&long, &["echo", "still here"]).await;
    assert_eq!((code, out.as_str()), (0, "still here\n"));

    // Removing the pod leaves nothing: shims, mounts, runtime state, cgroups.
    pod.remove_pod().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for pid in shim_pids {
        assert!(
            !crius::sandbox::namespaces::is_alive(pid),
            "shim {pid} still runs"
        );
    }
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&dir.path().display().to_string()),
        "mounts left under the test dir"
    );
    let runc_root = dir.path().join("state/oci/runc");
    assert_eq!(std::fs::read_dir(&runc_root).unwrap().count(), 0);
    let parent = pod.config.linux.as_ref().unwrap().cgroup_parent.clone();
    let memory = common::cgroup_dir("memory", &parent);
    if memory.exists() {
        let left = std::fs::read_dir(&memory)
            .unwrap()
            .flatten()
            .filter(|e| e.file_type().unwrap().is_dir())
            .count();
        assert_eq!(left, 0, "container cgroups left in {}", memory.display());
    }
    let _ = std::fs::remove_dir(memory);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn user_namespace_pods_with_idmapped_rootfs_and_volumes() {
    if !common::user_namespaces_supported() {
        eprintln!("skipped: user namespaces need Linux 5.19 (exec_entry checks the refusal)");
        return;
    }
    let maps = json!([{"host_id": 300000, "container_id": 0, "length": 65536}]);
    let pod = Pod::new(json!({"linux": {"security_context": {"namespace_options": {
        "userns_options": {"mode": 0, "uids": maps, "gids": maps}
    }}}}))
    .await;
    let host = pod.daemon.dir.join("userns-volume");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("from-host"), "hello\n").unwrap();
    let id = pod
        .run(
            "u",
            json!({"command": ["sleep", "60"], "mounts": [
                {"container_path": "/vol", "host_path": host, "uidMappings": maps, "gidMappings": maps}
            ]}),
        )
        .await;
    let (_, out, _) = pod.exec(&id, &["id"]).await;
    assert!(out.starts_with("uid=0(root) gid=0(root)"), "{out}");
    let (_, map, _) = pod.exec(&id, &["cat", "/proc/self/uid_map"]).await;
    assert_eq!(
        map.split_whitespace().collect::<Vec<_>>(),
        ["0", "300000", "65536"]
    );
    // Root inside owns its rootfs and the idmapped volume.
    let (code, _, err) = pod
        .exec(
            &id,
            &["sh", "-c", "touch /newfile && echo x > /vol/from-pod"],
        )
        .await;
    assert_eq!(code, 0, "{err}");
    let (_, ls, _) = pod
        .exec(&id, &["ls", "-ln", "/vol/from-host", "/bin/busybox"])
        .await;
    assert!(
        ls.lines().all(|l| l.split_whitespace().nth(2) == Some("0")),
        "{ls}"
    );
    // On the host: files are root's, the process is 300000.
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(host.join("from-pod")).unwrap().uid(), 0);
    let info = pod
        .daemon
        .runtime()
        .await
        .container_status(cri::ContainerStatusRequest {
            container_id: id.clone(),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner()
        .info;
    let info: serde_json::Value = serde_json::from_str(&info["info"]).unwrap();
    let pid = info["pid"].as_i64().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(uid_line.split_whitespace().nth(1), Some("300000"));
    pod.remove_pod().await;
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    assert!(
        !mounts.contains(&pod.daemon.dir.display().to_string()),
        "idmapped mounts left"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("from-host")).unwrap(),
        "hello\n"
    );
}
