//! Requests shaped as kubelet (1.32–1.36) sends them for a simple pod,
//! field by field, on this node: hugepage limits of 0 for every page size the
//! node has (with or without a hugetlb controller), a BestEffort
//! oom_score_adj, a pod cgroup under /kubepods, the /etc/hosts and
//! termination-log mounts, the service-account volume, kubelet's labels and
//! annotations, the user-specified image and its resolved id.

mod common;

use common::Daemon;
use common::pods::{Pod, image};
use serde_json::json;
use std::path::{Path, PathBuf};
use tonic::Code;

const POD_UID: &str = "8c1bd5d4-1f7e-4b55-a6d3-kubelet-shape";

/// The pod's `cgroup_parent` as kubelet sends it with the node's cgroup
/// driver (the systemd driver escapes the uid's dashes).
fn pod_cgroup_parent() -> String {
    if common::systemd_node() {
        let uid = POD_UID.replace('-', "_");
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid}.slice")
    } else {
        format!("/kubepods/besteffort/pod{POD_UID}")
    }
}

/// Removes the pod cgroup kubelet would have made, and the kubepods levels
/// above it that did not exist before the test (slices under systemd).
struct KubepodsGuard {
    made: Vec<PathBuf>,
}

impl KubepodsGuard {
    fn new() -> KubepodsGuard {
        let mut made = Vec::new();
        let levels: Vec<String> = pod_cgroup_parent()
            .trim_start_matches('/')
            .split('/')
            .map(String::from)
            .collect();
        let hierarchies: Vec<PathBuf> = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            vec![PathBuf::from("/sys/fs/cgroup")]
        } else {
            std::fs::read_dir("/sys/fs/cgroup")
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .collect()
        };
        for mut dir in hierarchies {
            for level in &levels {
                dir.push(level);
                if !dir.exists() {
                    made.push(dir.clone());
                }
            }
        }
        KubepodsGuard { made }
    }
}

impl Drop for KubepodsGuard {
    fn drop(&mut self) {
        // Deepest first.
        self.made
            .sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for dir in &self.made {
            if common::systemd_node() {
                let unit = dir.file_name().unwrap().to_string_lossy().to_string();
                let _ = std::process::Command::new("systemctl")
                    .args(["stop", &unit])
                    .output();
            } else {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn hugepage_sizes() -> Vec<String> {
    // kubelet names them "2MB", "1GB" from /sys/kernel/mm/hugepages.
    std::fs::read_dir("/sys/kernel/mm/hugepages")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let kb: u64 = e
                        .file_name()
                        .to_str()?
                        .strip_prefix("hugepages-")?
                        .strip_suffix("kB")?
                        .parse()
                        .ok()?;
                    Some(if kb >= 1 << 20 {
                        format!("{}GB", kb >> 20)
                    } else {
                        format!("{}MB", kb >> 10)
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

fn node_has_hugetlb() -> bool {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        std::fs::read_to_string(root.join("cgroup.controllers"))
            .is_ok_and(|c| c.split_whitespace().any(|n| n == "hugetlb"))
    } else {
        root.join("hugetlb/tasks").exists()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kubelet_shaped_pod_runs() {
    let _cgroups = KubepodsGuard::new();
    let daemon = Daemon::start();
    let kubelet_dir = daemon.dir.join("var/lib/kubelet/pods").join(POD_UID);
    let name = "app";
    std::fs::create_dir_all(kubelet_dir.join("containers").join(name)).unwrap();
    std::fs::write(
        kubelet_dir.join("etc-hosts"),
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n10.244.0.7\tweb-0\n",
    )
    .unwrap();
    let termination_log = kubelet_dir.join("containers").join(name).join("5f2a3c1e");
    std::fs::write(&termination_log, "").unwrap();
    let token_dir = kubelet_dir.join("volumes/kubernetes.io~projected/kube-api-access-x7k2p");
    std::fs::create_dir_all(&token_dir).unwrap();
    std::fs::write(token_dir.join("token"), "a-token").unwrap();
    let labels = json!({
        "io.kubernetes.pod.name": "web-0",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": POD_UID,
    });
    let pod = Pod::new_on(
        daemon,
        json!({
            "metadata": {"name": "web-0", "namespace": "default", "uid": POD_UID, "attempt": 0},
            "hostname": "web-0",
            "labels": labels,
            "annotations": {
                "kubernetes.io/config.seen": "2026-11-30T05:00:00.000000000Z",
                "kubernetes.io/config.source": "api"
            },
            "linux": {
                "cgroup_parent": pod_cgroup_parent(),
                "security_context": {
                    "namespace_options": {"network": 0, "pid": 1, "ipc": 0},
                    "seccomp": {"profile_type": 1}
                },
                "sysctls": {}
            }
        }),
    )
    .await;

    let hugepages: Vec<_> = hugepage_sizes()
        .into_iter()
        .map(|size| json!({"page_size": size, "limit": 0}))
        .collect();
    assert!(!hugepages.is_empty(), "this node lists its hugepage sizes");
    let busybox = image("busybox");
    let image_id = pod.daemon.pull(&busybox, None).await.unwrap();
    let mut container_labels = labels.clone();
    container_labels["io.kubernetes.container.name"] = json!(name);
    let config = json!({
        "metadata": {"name": name, "attempt": 0},
        // kubelet sends the resolved id, and what the user wrote beside it.
        "image": {"image": image_id, "user_specified_image": busybox},
        "command": ["sleep", "3600"],
        "envs": [
            {"key": "KUBERNETES_SERVICE_HOST", "value": "10.96.0.1"},
            {"key": "KUBERNETES_SERVICE_PORT", "value": "443"}
        ],
        "mounts": [
            {"container_path": "/var/run/secrets/kubernetes.io/serviceaccount",
             "host_path": token_dir, "readonly": true, "selinux_relabel": false},
            {"container_path": "/etc/hosts", "host_path": kubelet_dir.join("etc-hosts")},
            {"container_path": "/dev/termination-log", "host_path": termination_log}
        ],
        "labels": container_labels,
        "annotations": {
            "io.kubernetes.container.hash": "2f8c3a1b",
            "io.kubernetes.container.restartCount": "0",
            "io.kubernetes.container.terminationMessagePath": "/dev/termination-log",
            "io.kubernetes.container.terminationMessagePolicy": "File",
            "io.kubernetes.pod.terminationGracePeriod": "30"
        },
        "log_path": format!("{name}/0.log"),
        "linux": {
            "resources": {
                "cpu_period": 100000, "cpu_quota": 0, "cpu_shares": 2,
                "memory_limit_in_bytes": 0, "oom_score_adj": 1000,
                "hugepage_limits": hugepages,
            },
            "security_context": {
                "namespace_options": {"network": 0, "pid": 1, "ipc": 0},
                "seccomp": {"profile_type": 1},
                "masked_paths": ["/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys",
                    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                    "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
                    "/sys/devices/virtual/powercap"],
                "readonly_paths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                    "/proc/sysrq-trigger"]
            }
        }
    });
    std::fs::create_dir_all(pod.logs.join(name)).unwrap();
    let id = pod
        .create(name, config.clone())
        .await
        .unwrap_or_else(|e| panic!("kubelet's CreateContainer: {e:?}"));
    pod.start(&id).await.unwrap();

    let (_, adj, _) = pod.exec(&id, &["cat", "/proc/1/oom_score_adj"]).await;
    assert_eq!(adj.trim(), "1000", "BestEffort's oom_score_adj");
    // Read from the node: on cgroup v2 the container has a cgroup namespace.
    let cgroup =
        std::fs::read_to_string(format!("/proc/{}/cgroup", pod.init_pid(&id).await)).unwrap();
    assert!(
        cgroup.contains(&format!("{}/", pod_cgroup_parent())),
        "{cgroup}"
    );
    if common::systemd_node() {
        // A scope per container in the pod's slice, known to systemd.
        assert!(cgroup.contains(&format!("/crius-{id}.scope")), "{cgroup}");
        let out = std::process::Command::new("systemctl")
            .args(["is-active", &format!("crius-{id}.scope")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "active");
    }
    let (_, hosts, _) = pod.exec(&id, &["cat", "/etc/hosts"]).await;
    assert!(hosts.contains("10.244.0.7\tweb-0"), "{hosts}");
    let (code, _, err) = pod
        .exec(&id, &["sh", "-c", "echo bye > /dev/termination-log"])
        .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&termination_log).unwrap(), "bye\n");
    let (code, _, _) = pod
        .exec(
            &id,
            &[
                "sh",
                "-c",
                "echo x > /var/run/secrets/kubernetes.io/serviceaccount/token",
            ],
        )
        .await;
    assert_ne!(code, 0, "the service-account volume is read-only");

    // procMount: Default masks what kubelet lists; Unmasked (empty lists)
    // masks nothing.
    let (code, _, _) = pod.exec(&id, &["test", "-c", "/proc/keys"]).await;
    assert_eq!(code, 0, "/proc/keys is masked by /dev/null");
    let mut unmasked = config.clone();
    unmasked["metadata"]["name"] = json!("unmasked");
    unmasked["log_path"] = json!("unmasked.log");
    unmasked["linux"]["security_context"]["masked_paths"] = json!([]);
    unmasked["linux"]["security_context"]["readonly_paths"] = json!([]);
    let plain = pod.run("unmasked", unmasked).await;
    let (code, _, _) = pod.exec(&plain, &["test", "-f", "/proc/keys"]).await;
    assert_eq!(code, 0, "procMount: Unmasked leaves /proc/keys alone");
    let (code, _, _) = pod
        .exec(&plain, &["grep", "-q", " /proc/sys ", "/proc/self/mounts"])
        .await;
    assert_ne!(code, 0, "and /proc/sys is not remounted read-only");

    let status = pod.status(&id).await.unwrap();
    assert_eq!(
        status.image.as_ref().unwrap().image,
        busybox,
        "the image the user named"
    );
    assert_eq!(status.image_id, image_id);
    assert!(
        status.image_ref.contains("@sha256:"),
        "{}",
        status.image_ref
    );
    assert_eq!(
        status.log_path,
        pod.logs.join(name).join("0.log").to_str().unwrap()
    );

    // A real hugepage limit applies where the node has the controller, and
    // is refused by name where it has not.
    if node_has_hugetlb() {
        let mut real = config.clone();
        real["metadata"]["name"] = json!("huge");
        real["log_path"] = json!("huge.log");
        real["linux"]["resources"]["hugepage_limits"][0]["limit"] = json!(4 << 20);
        let page = real["linux"]["resources"]["hugepage_limits"][0]["page_size"]
            .as_str()
            .unwrap()
            .to_string();
        let huge = pod.run("huge", real).await;
        let file = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
            format!("/sys/fs/cgroup/hugetlb.{page}.max")
        } else {
            format!("/sys/fs/cgroup/hugetlb/hugetlb.{page}.limit_in_bytes")
        };
        let (code, limit, err) = pod.exec(&huge, &["cat", &file]).await;
        assert_eq!((code, limit.trim()), (0, "4194304"), "{file}: {err}");
    } else {
        let mut real = config.clone();
        real["metadata"]["name"] = json!("huge");
        real["linux"]["resources"]["hugepage_limits"][0]["limit"] = json!(2 << 20);
        let err = pod.create("huge", real).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message()
                .contains("config.linux.resources.hugepage_limits[0]"),
            "{err:?}"
        );
    }
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_an_operator_pins_are_reported_pinned() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[network.builtin]\nenabled = false\n[image]\npinned_images = [{:?}]\n",
            image("busybox")
        ),
    )
    .unwrap();
    let daemon = Daemon::start_in(dir.path(), &[]);
    daemon.pull(&image("busybox"), None).await.unwrap();
    daemon.pull(&image("config"), None).await.unwrap();
    let images = daemon
        .images()
        .await
        .list_images(crius::cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let pinned: Vec<bool> = ["busybox", "config"]
        .iter()
        .map(|name| {
            images
                .iter()
                .find(|i| i.repo_tags.contains(&image(name)))
                .unwrap()
                .pinned
        })
        .collect();
    assert_eq!(
        pinned,
        [true, false],
        "kubelet's GC leaves the pinned one alone"
    );
}
