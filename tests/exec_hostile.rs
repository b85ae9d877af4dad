//! Execs into containers that fight back (`container::enter` and the
//! `crius-enter` helper): a FIFO or a device at /etc/passwd and /etc/group
//! holds up neither criusd nor the probes' deadlines; a working dir swapped
//! for a symlink into /proc/self/fd never starts a command outside the
//! container's root; the command holds nothing but its stdio and is its own
//! exe; a profile denying the syscalls the set-up makes (getppid,
//! close_range, prctl) does not stop execs, because the filter comes last;
//! a start stuck in a frozen container ends at the call's deadline; and an
//! init that moved into a sub-cgroup still gets its execs.

mod common;

use common::pods::Pod;
use crius::cri;
use serde_json::json;
use std::time::{Duration, Instant};

/// ExecSync with a timeout; the error's code and message on failure.
async fn exec(pod: &Pod, id: &str, cmd: &[&str], timeout: i64) -> Result<(i32, String), String> {
    match pod.exec_with(id, cmd, timeout).await {
        Ok(r) => Ok((r.exit_code, String::from_utf8_lossy(&r.stdout).into_owned())),
        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn a_fifo_or_a_device_at_etc_passwd_holds_up_nothing() {
    let pod = Pod::new(json!({})).await;
    for (name, replace) in [
        ("fifo", "mkfifo /etc/passwd /etc/group"),
        // Host memory and a zero device: opened by host root they would be
        // read outside the container's device cgroup.
        (
            "device",
            "mknod /etc/passwd c 1 1 && mknod /etc/group c 1 5",
        ),
    ] {
        let id = pod.run(name, json!({"command": ["sleep", "600"]})).await;
        let setup = format!("rm -f /etc/passwd /etc/group && {replace}");
        let (code, _) = exec(&pod, &id, &["sh", "-c", &setup], 10).await.unwrap();
        assert_eq!(code, 0, "{name}: {setup}");

        let started = Instant::now();
        let mut probes = tokio::task::JoinSet::new();
        for n in 0..8 {
            let runtime = pod.daemon.runtime().await;
            let id = id.clone();
            // Half of them read the passwd file themselves and hang on the
            // FIFO until their deadline.
            let cmd: &[&str] = if n % 2 == 0 { &["true"] } else { &["id"] };
            let cmd: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            probes.spawn(async move {
                let mut runtime = runtime;
                let answer = runtime
                    .exec_sync(cri::ExecSyncRequest {
                        container_id: id,
                        cmd,
                        timeout: 2,
                    })
                    .await;
                (answer.map(|r| r.into_inner().exit_code), started.elapsed())
            });
        }
        // Other calls are answered meanwhile.
        let mut runtime = pod.daemon.runtime().await;
        while !probes.is_empty() && started.elapsed() < Duration::from_secs(5) {
            let asked = Instant::now();
            let version = tokio::time::timeout(
                Duration::from_secs(1),
                runtime.version(cri::VersionRequest::default()),
            )
            .await;
            assert!(
                matches!(version, Ok(Ok(_))),
                "{name}: Version did not answer within 1 s while probes ran"
            );
            assert!(asked.elapsed() < Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(100)).await;
            if started.elapsed() > Duration::from_millis(3500) {
                break;
            }
        }
        let mut answered = 0;
        while let Some(done) = probes.join_next().await {
            let (answer, took) = done.unwrap();
            assert!(took < Duration::from_millis(3500), "{name}: {took:?}");
            match answer {
                Ok(_) => {}
                Err(status) => assert_eq!(
                    status.code(),
                    tonic::Code::DeadlineExceeded,
                    "{name}: {status:?}"
                ),
            }
            answered += 1;
        }
        assert_eq!(answered, 8);
        // HOME fell back to / without waiting, and execs still work.
        let (code, out) = exec(&pod, &id, &["sh", "-c", "echo $HOME"], 5)
            .await
            .unwrap();
        assert_eq!((code, out.trim()), (0, "/"), "{name}");
    }
    pod.remove_pod().await;
}

/// A start that is truly stuck: the container's freezer cgroup is frozen,
/// so the process freezes as it joins it. The deadline still answers, the
/// helper is killed, and nothing of the exec is left once it thaws.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn a_start_stuck_in_a_frozen_container_ends_at_the_deadline() {
    let pod = Pod::new(json!({})).await;
    let id = pod
        .run("frozen", json!({"command": ["sleep", "600"]}))
        .await;
    let pid = pod.init_pid(&id).await as u32;
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let freezer = cgroups.lines().find_map(|l| {
        let mut f = l.splitn(3, ':');
        let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
        (controllers == "freezer").then(|| path.to_string())
    });
    let Some(path) = freezer else {
        // No v1 freezer on this node: cgroup v2 freezes through cgroup.freeze.
        let path = cgroups.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        return frozen_case(
            &pod,
            &id,
            format!("/sys/fs/cgroup{path}/cgroup.freeze"),
            "1",
            "0",
        )
        .await;
    };
    frozen_case(
        &pod,
        &id,
        format!("/sys/fs/cgroup/freezer{path}/freezer.state"),
        "FROZEN",
        "THAWED",
    )
    .await;
}

async fn frozen_case(pod: &Pod, id: &str, file: String, freeze: &str, thaw: &str) {
    /// Thaws the container even when the test fails.
    struct Thaw(String, String);
    impl Drop for Thaw {
        fn drop(&mut self) {
            let _ = std::fs::write(&self.0, &self.1);
        }
    }
    std::fs::write(&file, freeze).unwrap();
    let thawing = Thaw(file, thaw.to_string());
    let started = Instant::now();
    let answer = exec(pod, id, &["true"], 2).await;
    let took = started.elapsed();
    assert!(
        matches!(&answer, Err(e) if e.contains("DeadlineExceeded")),
        "{answer:?}"
    );
    assert!(took < Duration::from_millis(3500), "{took:?}");
    // criusd answers meanwhile, and its helper is gone.
    let mut runtime = pod.daemon.runtime().await;
    runtime
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    let helpers = || {
        descendants(pod.daemon.pid())
            .into_iter()
            .filter(|p| comm(*p) == "crius-enter")
            .count()
    };
    for _ in 0..50 {
        if helpers() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(helpers(), 0, "a helper outlived its deadline");
    drop(thawing);
    let (code, out) = exec(pod, id, &["echo", "thawed"], 5).await.unwrap();
    assert_eq!((code, out.trim()), (0, "thawed"));
    pod.remove_pod().await;
}

/// The directory of each cgroup hierarchy `pid` is in, from its
/// /proc/<pid>/cgroup line: (hierarchy mount joined with the path).
fn cgroup_dirs(pid: u32) -> Vec<std::path::PathBuf> {
    let unified_only = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    text.lines()
        .filter_map(|line| {
            let mut f = line.splitn(3, ':');
            let (_, controllers, path) = (f.next()?, f.next()?, f.next()?);
            let mount = match controllers {
                "" if unified_only => "/sys/fs/cgroup".to_string(),
                "" => "/sys/fs/cgroup/unified".to_string(),
                named => format!(
                    "/sys/fs/cgroup/{}",
                    named.strip_prefix("name=").unwrap_or(named)
                ),
            };
            let dir = std::path::Path::new(&mount).join(path.trim_start_matches('/'));
            dir.join("cgroup.procs").exists().then_some(dir)
        })
        .collect()
}

/// An init that moved itself into a cgroup below the container's (as
/// systemd in a container does) is not refused: the exec goes through the
/// runtime, which knows where to put it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn an_init_in_a_sub_cgroup_still_execs() {
    let pod = Pod::new(json!({})).await;
    let id = pod.run("moved", json!({"command": ["sleep", "600"]})).await;
    let pid = pod.init_pid(&id).await as u32;
    /// Moves the init back and removes the sub-cgroups, even on failure.
    struct MoveBack(u32, Vec<std::path::PathBuf>);
    impl Drop for MoveBack {
        fn drop(&mut self) {
            for dir in &self.1 {
                let _ = std::fs::write(dir.join("cgroup.procs"), self.0.to_string());
                let _ = std::fs::remove_dir(dir.join("moved"));
            }
        }
    }
    let dirs = cgroup_dirs(pid);
    assert!(!dirs.is_empty());
    let moved = MoveBack(pid, dirs.clone());
    for dir in &dirs {
        std::fs::create_dir(dir.join("moved")).unwrap();
        // A v1 cpuset cgroup starts with no CPUs or memory nodes.
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(value) = std::fs::read_to_string(dir.join(file)) {
                std::fs::write(dir.join("moved").join(file), value.trim()).unwrap();
            }
        }
        std::fs::write(dir.join("moved/cgroup.procs"), pid.to_string()).unwrap();
    }
    let (code, out) = exec(&pod, &id, &["echo", "still"], 10).await.unwrap();
    assert_eq!((code, out.trim()), (0, "still"));
    drop(moved);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn a_working_dir_swapped_for_proc_self_fd_never_starts_outside() {
    let pod = Pod::new(json!({})).await;
    // The container's working dir /wd flips between a real directory and
    // each of /proc/self/fd/3..64, which for a process holding a host
    // directory at that number is the host. Execs get the container's
    // working dir.
    let swapper = "rm -rf /wd; mkdir -p /real; while true; do for n in $(seq 3 64); do \
                   ln -sfn /proc/self/fd/$n /wd; ln -sfn /real /wd; done; done";
    let target = pod
        .run(
            "swapper",
            json!({"command": ["sh", "-c", swapper], "working_dir": "/wd"}),
        )
        .await;
    // Stats walks of the writable layer hold directory fds in criusd.
    let stats = tokio::spawn({
        let mut runtime = pod.daemon.runtime().await;
        let id = target.clone();
        async move {
            loop {
                let _ = runtime
                    .container_stats(cri::ContainerStatsRequest {
                        container_id: id.clone(),
                    })
                    .await;
            }
        }
    });
    let (mut inside, mut refused, mut caught, mut outside) = (0, 0, 0, Vec::new());
    for round in 0..125 {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let runtime = pod.daemon.runtime().await;
            let target = target.clone();
            batch.spawn(async move {
                let mut runtime = runtime;
                runtime
                    .exec_sync(cri::ExecSyncRequest {
                        container_id: target,
                        cmd: vec!["sh".into(), "-c".into(), "pwd -P".into()],
                        timeout: 10,
                    })
                    .await
            });
        }
        while let Some(done) = batch.join_next().await {
            match done.unwrap() {
                Ok(r) => {
                    let out = String::from_utf8_lossy(&r.into_inner().stdout).into_owned();
                    if out.trim() == "/real" {
                        inside += 1;
                    } else {
                        outside.push(format!("round {round}: {out:?}"));
                    }
                }
                Err(status) => {
                    refused += 1;
                    if status.message().contains("outside the container's root") {
                        caught += 1;
                    }
                }
            }
        }
    }
    stats.abort();
    eprintln!("{inside} started in /real, {refused} refused ({caught} as outside the root)");
    assert!(outside.is_empty(), "started outside the root: {outside:?}");
    assert_eq!(inside + refused, 500);
    assert!(inside > 0, "no exec started at all ({refused} refused)");
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn the_command_holds_only_its_stdio_and_is_its_own_exe() {
    let pod = Pod::new(json!({})).await;
    let id = pod.run("long", json!({"command": ["sleep", "600"]})).await;
    let (code, out) = exec(&pod, &id, &["readlink", "/proc/self/exe"], 5)
        .await
        .unwrap();
    // The command as found in PATH (the image's applets are hard links).
    assert_eq!((code, out.trim()), (0, "/bin/readlink"));
    // One that is not there is an error naming it, as from runc.
    let missing = exec(&pod, &id, &["no-such-command"], 5).await.unwrap_err();
    assert!(
        missing.contains("\"no-such-command\": executable file not found in $PATH"),
        "{missing}"
    );

    let exec = tokio::spawn({
        let mut runtime = pod.daemon.runtime().await;
        let id = id.clone();
        async move {
            runtime
                .exec_sync(cri::ExecSyncRequest {
                    container_id: id,
                    cmd: vec!["sleep".into(), "5".into()],
                    timeout: 0,
                })
                .await
        }
    });
    // The exec'd sleep, seen from the host: the helper's child.
    let mut command = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(30)).await;
        command = descendants(pod.daemon.pid())
            .into_iter()
            .find(|pid| cmdline(*pid) == ["sleep", "5"]);
        if command.is_some() {
            break;
        }
    }
    let pid = command.expect("the exec'd sleep");
    let mut fds: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    fds.sort();
    assert_eq!(fds, [0, 1, 2], "descriptors of the exec'd process");
    let exe = std::fs::metadata(format!("/proc/{pid}/exe")).unwrap();
    let sleep = std::fs::metadata(format!("/proc/{pid}/root/bin/sleep")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((exe.dev(), exe.ino()), (sleep.dev(), sleep.ino()));
    assert_eq!(exec.await.unwrap().unwrap().into_inner().exit_code, 0);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn a_profile_denying_the_set_up_syscalls_still_execs() {
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("no-setup-calls.json");
    let denied = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getppid", "close_range", "prctl"],
                      "action": "SCMP_ACT_ERRNO"}]
    });
    std::fs::write(&profile, denied.to_string()).unwrap();
    let pod = Pod::new(json!({})).await;
    let id = pod
        .run(
            "confined",
            json!({
                "command": ["sleep", "600"],
                "linux": {"security_context": {
                    "no_new_privs": true,
                    "seccomp": {"profile_type": 2, "localhost_ref": profile.to_str().unwrap()}
                }}
            }),
        )
        .await;
    let (code, out) = exec(&pod, &id, &["echo", "entered"], 5).await.unwrap();
    assert_eq!((code, out.trim()), (0, "entered"));
    // And the filter is the process's.
    let (code, out) = exec(&pod, &id, &["grep", "^Seccomp:", "/proc/self/status"], 5)
        .await
        .unwrap();
    assert_eq!(code, 0);
    assert_eq!(out.split_whitespace().nth(1), Some("2"), "{out}");
    pod.remove_pod().await;
}

fn descendants(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let mut queue = vec![pid];
    while let Some(parent) = queue.pop() {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{parent}/task")) else {
            continue;
        };
        for task in tasks.flatten() {
            let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in text.split_whitespace().filter_map(|p| p.parse().ok()) {
                all.push(child);
                queue.push(child);
            }
        }
    }
    all
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn cmdline(pid: u32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}
