//! Processes criusd starts in containers itself (`container::enter`) are the
//! processes `runc exec` would start: the same ids, groups, capabilities,
//! no_new_privs, seccomp, cgroups, namespaces, environment and working dir,
//! checked against a daemon that execs through runc, for an ordinary, a
//! hardened non-root and a user-namespaced container, and the same answer
//! for a syscall newer than a denying seccomp profile. And neither criusd's
//! binary nor its exec helper's (`crius-enter`) can be written through the
//! processes they start.

mod common;

use common::Daemon;
use common::pods::Pod;
use serde_json::{Value, json};

/// What a process can see of itself, normalised so that two containers of
/// the same config print the same.
const PROBE: &str = r#"
grep -E '^(Uid|Gid|Groups|CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status
echo "oom $(cat /proc/self/oom_score_adj)"
sed -e 's/crius-it-[^/]*/DAEMON/' -e 's/crius-[0-9a-f]\{64\}/CONTAINER/' /proc/self/cgroup
for ns in cgroup ipc mnt net pid user uts; do
  if [ "$(readlink /proc/self/ns/$ns)" = "$(readlink /proc/1/ns/$ns)" ]; then echo "$ns: the container's"; else echo "$ns: another"; fi
done
echo "uid_map $(cat /proc/self/uid_map)"
echo "cwd $(pwd)"
echo "umask $(umask)"
echo "nofile $(ulimit -n)"
echo "sid is pid: $(awk '{print ($6 == $5) ? "leader" : "not"}' /proc/self/stat)"
env | grep -v -e '^HOSTNAME=' -e '^SHLVL=' -e '^_=' | sort
"#;

async fn probe(pod: &Pod, name: &str, overlay: Value) -> String {
    let mut config = json!({"command": ["sleep", "600"]});
    common::pods::merge(&mut config, overlay);
    let id = pod.run(name, config).await;
    let (code, out, err) = pod.exec(&id, &["sh", "-c", PROBE]).await;
    assert_eq!(code, 0, "{name}: {err}");
    out
}

fn field<'a>(out: &'a str, key: &str) -> &'a str {
    out.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in {out}"))
        .trim()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn entered_processes_are_what_runc_exec_makes() {
    let maps = json!([{"host_id": 320000, "container_id": 0, "length": 65536}]);
    let userns = json!({"linux": {"security_context": {"namespace_options": {
        "userns_options": {"mode": 0, "uids": maps, "gids": maps}
    }}}});
    let hardened = json!({
        "working_dir": "/tmp",
        "envs": [{"key": "GREETING", "value": "hello"}],
        "linux": {
            "resources": {"oom_score_adj": 700},
            "security_context": {
                "run_as_user": {"value": 1000},
                "run_as_group": {"value": 3000},
                "supplemental_groups": [4000, 5000],
                "capabilities": {"add_capabilities": ["NET_ADMIN"],
                                 "drop_capabilities": ["CHOWN"],
                                 "add_ambient_capabilities": ["NET_BIND_SERVICE"]},
                "no_new_privs": true,
                "seccomp": {"profile_type": 0},
                "readonly_rootfs": true
            }
        }
    });
    let mut outputs = Vec::new();
    let through_runc = "[runtime]\nexec_in_runtime = true\n";
    for daemon in [Daemon::start(), Daemon::start_with_config(through_runc)] {
        let pod = Pod::new_on(daemon, json!({})).await;
        let plain = probe(&pod, "plain", json!({})).await;
        let hard = probe(&pod, "hardened", hardened.clone()).await;
        let mut sandbox = json!({"metadata": {"name": "userns", "uid": "userns-uid"}});
        common::pods::merge(&mut sandbox, userns.clone());
        if !common::user_namespaces_supported() {
            // An older kernel: refused by name, and compared without it.
            let err = pod.sibling(sandbox).await.unwrap_err();
            assert_eq!(err.code(), tonic::Code::Unimplemented, "{err:?}");
            assert!(err.message().contains("userns_options"), "{err:?}");
            outputs.push((plain, hard, String::new()));
            pod.remove_pod().await;
            continue;
        }
        let sibling = pod.sibling(sandbox).await.unwrap();
        let id = pod
            .create_in(&sibling, "userns", json!({"command": ["sleep", "600"]}))
            .await
            .unwrap();
        pod.start(&id).await.unwrap();
        let (code, user, err) = pod.exec(&id, &["sh", "-c", PROBE]).await;
        assert_eq!(code, 0, "userns: {err}");
        outputs.push((plain, hard, user));
        common::net::remove_sandbox(&pod.daemon, &sibling.id).await;
        pod.remove_pod().await;
    }
    let (entered, runc) = (&outputs[0], &outputs[1]);
    assert_eq!(entered.0, runc.0, "a plain container");
    assert_eq!(entered.1, runc.1, "a hardened container");
    assert_eq!(entered.2, runc.2, "a user-namespaced container");

    // And they are what the configs asked for.
    let (plain, hard, user) = entered;
    for ns in ["cgroup", "ipc", "mnt", "net", "pid", "uts"] {
        assert!(plain.contains(&format!("{ns}: the container's")), "{plain}");
    }
    assert_eq!(field(plain, "Uid:"), "0\t0\t0\t0");
    assert_eq!(
        field(plain, "Seccomp:"),
        "0",
        "the CRI default is unconfined"
    );
    assert_eq!(field(hard, "Uid:"), "1000\t1000\t1000\t1000");
    assert_eq!(field(hard, "Gid:"), "3000\t3000\t3000\t3000");
    // The image's groups of uid 1000, then the supplemental ones.
    assert!(field(hard, "Groups:").ends_with("4000 5000"), "{hard}");
    assert_eq!(field(hard, "NoNewPrivs:"), "1");
    assert_eq!(field(hard, "Seccomp:"), "2");
    // NET_BIND_SERVICE (10) ambient, so also permitted and effective.
    assert_eq!(field(hard, "CapAmb:"), "0000000000000400");
    assert_eq!(field(hard, "CapEff:"), "0000000000000400");
    let bounding = u64::from_str_radix(field(hard, "CapBnd:"), 16).unwrap();
    assert_eq!(bounding & 1, 0, "CHOWN dropped");
    assert_ne!(bounding & (1 << 12), 0, "NET_ADMIN added");
    assert_eq!(field(hard, "oom"), "700");
    assert_eq!(field(hard, "cwd"), "/tmp");
    assert!(hard.contains("GREETING=hello"), "{hard}");
    assert_eq!(field(hard, "sid is pid:"), "leader");
    if common::user_namespaces_supported() {
        assert!(user.contains("user: the container's"), "{user}");
        assert!(field(user, "uid_map").starts_with('0'), "{user}");
        assert!(field(user, "uid_map").contains("320000"), "{user}");
    }
}

/// A Localhost profile in Docker's style (deny by default) that allows
/// every x86_64 syscall numbered below setns (308): setns is newer than the
/// profile, so under runc it fails with ENOSYS, as from an older kernel,
/// not with the profile's default EPERM (nor the kernel's, for want of
/// CAP_SYS_ADMIN). The entered process must see the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn a_syscall_newer_than_a_denying_profile_fails_as_under_runc() {
    use libseccomp::{ScmpArch, ScmpSyscall};
    const SETNS: i32 = 308;
    let names: Vec<String> = (0..SETNS)
        .filter_map(|nr| ScmpSyscall::from(nr).get_name_by_arch(ScmpArch::X8664).ok())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let profile = dir.path().join("older-than-setns.json");
    let json = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    std::fs::write(&profile, json.to_string()).unwrap();
    let confined = json!({"linux": {"security_context": {
        "seccomp": {"profile_type": 2, "localhost_ref": profile.to_str().unwrap()}
    }}});
    let mut answers = Vec::new();
    let through_runc = "[runtime]\nexec_in_runtime = true\n";
    for daemon in [Daemon::start(), Daemon::start_with_config(through_runc)] {
        let pod = Pod::new_on(daemon, json!({})).await;
        let mut config = json!({"command": ["sleep", "600"]});
        common::pods::merge(&mut config, confined.clone());
        let id = pod.run("confined", config).await;
        answers.push(
            pod.exec(
                &id,
                &["sh", "-c", "nsenter --net=/proc/self/ns/net true; nproc"],
            )
            .await,
        );
        pod.remove_pod().await;
    }
    assert_eq!(answers[0], answers[1], "entered, then through runc");
    let (code, out, err) = &answers[0];
    assert!(
        err.contains("Function not implemented"),
        "{code} {out} {err}"
    );
    // Older syscalls (sched_getaffinity) are allowed.
    assert!(out.trim().parse::<u32>().is_ok(), "{out} {err}");
}

/// Whether a file opened through `path` is on a read-only mount, so that
/// once it is no longer being executed (when writing it fails with
/// ETXTBSY) writing still fails, with EROFS.
fn opens_read_only(path: &str) -> bool {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    nix::sys::statvfs::fstatvfs(&file)
        .unwrap()
        .flags()
        .contains(nix::sys::statvfs::FsFlags::ST_RDONLY)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn criusd_cannot_be_written_through_its_forks() {
    let pod = Pod::new(json!({})).await;
    let criusd = pod.daemon.pid();
    assert!(opens_read_only(&format!("/proc/{criusd}/exe")));
    // No mount was left behind for it.
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains("criusd.exe"), "{mountinfo}");
    // Its helpers are still found where it was installed.
    let id = pod.run("long", json!({"command": ["sleep", "600"]})).await;

    // While an exec runs, its relay (the helper) is as read-only.
    let runtime = pod.daemon.runtime().await;
    let exec = tokio::spawn({
        let mut runtime = runtime.clone();
        let id = id.clone();
        async move {
            runtime
                .exec_sync(crius::cri::ExecSyncRequest {
                    container_id: id,
                    cmd: vec!["sleep".into(), "3".into()],
                    timeout: 0,
                })
                .await
        }
    });
    let mut relays = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        relays = children(criusd)
            .into_iter()
            .filter(|pid| children(*pid).iter().any(|c| comm(*c) == "sleep"))
            .collect();
        if !relays.is_empty() {
            break;
        }
    }
    let relay = *relays.first().expect("a relay for the exec");
    assert_eq!(
        comm(relay),
        "crius-enter",
        "the helper, not a fork of criusd"
    );
    assert!(opens_read_only(&format!("/proc/{relay}/exe")));
    let done = exec.await.unwrap().unwrap().into_inner();
    assert_eq!(done.exit_code, 0);
    pod.remove_pod().await;
}

fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return all;
    };
    for task in tasks.flatten() {
        let text = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
        all.extend(
            text.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok()),
        );
    }
    all
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The keyrings named `name` in /proc/keys (what root may view), each
/// with its usage count: a session keyring's count rises with every
/// process that holds it.
fn keyrings_named(name: &str) -> Vec<u32> {
    std::fs::read_to_string("/proc/keys")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let description = fields.get(8)?.trim_end_matches(':');
            (fields.get(7) == Some(&"keyring") && description == name)
                .then(|| fields.get(2)?.parse().ok())
                .flatten()
        })
        .collect()
}

/// An exec'd process holds its container's session keyring (`_ses.<id>`,
/// made by runc's init) as `runc exec`'s does: no new keyring, and never
/// criusd's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn entered_processes_hold_the_containers_session_keyring() {
    if !std::path::Path::new("/proc/keys").exists() {
        eprintln!("SKIPPED: a kernel without /proc/keys");
        return;
    }
    let through_runc = "[runtime]\nexec_in_runtime = true\n";
    for daemon in [Daemon::start(), Daemon::start_with_config(through_runc)] {
        let pod = Pod::new_on(daemon, json!({})).await;
        let id = pod.run("keys", json!({"command": ["sleep", "600"]})).await;
        let name = format!("_ses.{id}");
        let before = keyrings_named(&name);
        assert_eq!(before.len(), 1, "runc's init made {name}: {before:?}");
        let (exec, during) = tokio::join!(pod.exec(&id, &["sleep", "2"]), async {
            tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
            keyrings_named(&name)
        });
        assert_eq!(exec.0, 0, "{}", exec.2);
        assert_eq!(during.len(), 1, "joined, not made anew: {during:?}");
        assert!(
            during[0] > before[0],
            "the exec'd process holds {name}: {before:?} then {during:?}"
        );
        pod.remove_pod().await;
    }
}
