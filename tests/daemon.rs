//! criusd as kubelet and operators meet it: a real daemon on a temporary socket.

mod common;

use common::{Daemon, criusctl, run_criusd};
use crius::cri;
use nix::sys::signal::Signal;
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_names_crius_and_the_crate_version() {
    let daemon = Daemon::start();
    let v = daemon
        .runtime()
        .await
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(v.runtime_name, "crius");
    assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(v.runtime_api_version, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_runtime_ready_and_handlers() {
    let daemon = Daemon::start();
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    let conditions = status.status.unwrap().conditions;
    let runtime_ready = conditions
        .iter()
        .find(|c| c.r#type == "RuntimeReady")
        .unwrap();
    // The harness installs runc, the default handler.
    assert!(runtime_ready.status, "{runtime_ready:?}");
    let network_ready = conditions
        .iter()
        .find(|c| c.r#type == "NetworkReady")
        .unwrap();
    if !network_ready.status {
        assert!(
            !network_ready.reason.is_empty() && !network_ready.message.is_empty(),
            "{network_ready:?}"
        );
    }
    let names: Vec<&str> = status
        .runtime_handlers
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    // crun is listed where it can run containers; where it cannot (crun 1.8
    // on a hybrid cgroup layout with cgroup2 controllers) verbose info says why.
    let handlers: serde_json::Value =
        serde_json::from_str(&status.info["runtimeHandlers"]).unwrap();
    let crun = handlers
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == "crun")
        .unwrap();
    if crun["problem"].is_null() {
        assert_eq!(names, ["", "crun", "runc"]);
    } else {
        assert_eq!(names, ["", "runc"]);
        assert!(crun["problem"].as_str().unwrap().contains("crun"), "{crun}");
    }
    for key in ["config", "cgroups", "runtimeHandlers", "network", "daemon"] {
        let value: serde_json::Value = serde_json::from_str(&status.info[key]).unwrap();
        assert!(!value.is_null(), "{key}");
    }
    let daemon_info: serde_json::Value = serde_json::from_str(&status.info["daemon"]).unwrap();
    assert_eq!(daemon_info["pid"], daemon.pid());
    assert_eq!(daemon_info["revision"], crius::GIT_REVISION);

    let terse = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: false })
        .await
        .unwrap();
    assert!(terse.into_inner().info.is_empty(), "info only when verbose");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runtime_config_reports_the_cgroup_driver() {
    let daemon = Daemon::start();
    let config = daemon
        .runtime()
        .await
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let expected = if std::path::Path::new("/run/systemd/system").is_dir() {
        cri::CgroupDriver::Systemd
    } else {
        cri::CgroupDriver::Cgroupfs
    };
    assert_eq!(config.linux.unwrap().cgroup_driver(), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_runtime_config_validates_the_pod_cidr() {
    let daemon = Daemon::start();
    let request = |cidr: &str| cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: cidr.into(),
            }),
        }),
    };
    let err = daemon
        .runtime()
        .await
        .update_runtime_config(request("10.1.0.0/99"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("pod_cidr"), "{}", err.message());
    daemon
        .runtime()
        .await
        .update_runtime_config(request("10.1.0.0/24"))
        .await
        .unwrap();
}

/// With nothing running, stats lists are empty and single stats name the id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_nothing() {
    let daemon = Daemon::start();
    let mut rt = daemon.runtime().await;
    let containers = rt
        .list_container_stats(cri::ListContainerStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(containers.stats.is_empty());
    let pods = rt
        .list_pod_sandbox_stats(cri::ListPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(pods.stats.is_empty());
    let mut stream = rt
        .stream_pod_sandbox_stats(cri::StreamPodSandboxStatsRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(stream.message().await.unwrap().is_none());
    let missing = rt
        .pod_sandbox_stats(cri::PodSandboxStatsRequest {
            pod_sandbox_id: "feedbeef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(missing.message().contains("feedbeef"), "{missing:?}");
    let missing = rt
        .container_stats(cri::ContainerStatsRequest {
            container_id: "feedbeef".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
}

/// Every RPC is served: a bad request to the last one implemented answers
/// InvalidArgument naming its field, and the call is logged under its method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_without_location_names_the_field() {
    let daemon = Daemon::start();
    let mut rt = daemon.runtime().await;
    let status = rt
        .checkpoint_container(cri::CheckpointContainerRequest::default())
        .await
        .expect_err("a checkpoint without a location");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("location"),
        "{}",
        status.message()
    );
    assert!(
        daemon.log().contains("method=\"CheckpointContainer\""),
        "{}",
        daemon.log()
    );
}

#[test]
fn config_errors_stop_criusd_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let cases = [
        ("[runtime]\ncgroups = 1\n", "unknown key `runtime.cgroups`"),
        ("root = 7\n", "key `root`: expected string, found integer"),
        ("log_format = \"xml\"\n", "key `log_format`"),
        (
            "[network]\ncni_bin_dirs = []\n",
            "key `network.cni_bin_dirs`",
        ),
        (
            "[network]\ncni_plugin_timeout_seconds = 0\n",
            "key `network.cni_plugin_timeout_seconds`: must be between 1 and 3600",
        ),
        ("listen = \n", "is not valid TOML"),
    ];
    for (text, expected) in cases {
        let file = dir.path().join("config.toml");
        std::fs::write(&file, text).unwrap();
        let (code, stderr) = run_criusd(&["--config", file.to_str().unwrap()]);
        assert_eq!(code, Some(2), "{text:?}: {stderr}");
        assert!(stderr.contains(expected), "{text:?}: {stderr}");
        assert!(
            stderr.contains(file.to_str().unwrap()),
            "names the file: {stderr}"
        );
    }
    let (code, stderr) = run_criusd(&["--config", "/nonexistent/crius.toml"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("/nonexistent/crius.toml"), "{stderr}");
    let (code, stderr) = run_criusd(&["--root", "relative/root", "config", "show"]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("command line: key `root`"), "{stderr}");
}

#[test]
fn config_default_prints_the_shipped_file() {
    let out = std::process::Command::new(common::CRIUSD)
        .args(["config", "default"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/manifests/config.toml"
    ))
    .unwrap();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), shipped);
}

#[test]
fn config_file_values_take_effect() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let file = dir.path().join("config.toml");
    let root = dir.path().join("from-file-root");
    std::fs::write(
        &file,
        format!(
            "root = {:?}\nlog_format = \"json\"\n",
            root.to_str().unwrap()
        ),
    )
    .unwrap();
    // The flag `--root` would override; without it the file's root is used.
    let out = std::process::Command::new(common::CRIUSD)
        .args(["--config", file.to_str().unwrap(), "config", "show"])
        .output()
        .unwrap();
    let shown = String::from_utf8(out.stdout).unwrap();
    assert!(
        shown.contains(root.to_str().unwrap()) && shown.contains("log_format = \"json\""),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_socket_is_refused() {
    let first = Daemon::start();
    let other = tempfile::tempdir().unwrap();
    let (code, stderr) = run_criusd(&[
        "--listen",
        first.socket.to_str().unwrap(),
        "--root",
        other.path().join("root").to_str().unwrap(),
        "--state",
        other.path().join("state").to_str().unwrap(),
        "--config",
        "/dev/null",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("another criusd (pid {})", first.pid())),
        "{stderr}"
    );
    assert!(
        !other.path().join("root").exists(),
        "the refused daemon created nothing"
    );
    // The first one still serves.
    first
        .runtime()
        .await
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_has_mode_0660_and_is_removed_on_sigterm() {
    use std::os::unix::fs::PermissionsExt;
    let mut daemon = Daemon::start();
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    assert_eq!(daemon.stop_with(Signal::SIGTERM), Some(0));
    assert!(!daemon.socket.exists());
    assert!(daemon.log().contains("SIGTERM"), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_but_other_files_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    // A socket file left behind by a process that is gone.
    drop(std::os::unix::net::UnixListener::bind(dir.path().join("crius.sock")).unwrap());
    let daemon = Daemon::start_in(dir.path(), &[]);
    daemon
        .runtime()
        .await
        .version(cri::VersionRequest::default())
        .await
        .unwrap();
    drop(daemon);

    std::fs::write(dir.path().join("crius.sock"), "not a socket").unwrap();
    let (code, stderr) = run_criusd(&[
        "--listen",
        dir.path().join("crius.sock").to_str().unwrap(),
        "--root",
        dir.path().join("root").to_str().unwrap(),
        "--state",
        dir.path().join("state").to_str().unwrap(),
        "--config",
        "/dev/null",
    ]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("is not a socket"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("crius.sock")).unwrap(),
        "not a socket"
    );
}

/// State written through the CRI survives a graceful stop and a SIGKILL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_with_the_same_root_keeps_state() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let request = cri::UpdateRuntimeConfigRequest {
        runtime_config: Some(cri::RuntimeConfig {
            network_config: Some(cri::NetworkConfig {
                pod_cidr: "10.244.7.0/24".into(),
            }),
        }),
    };
    daemon
        .runtime()
        .await
        .update_runtime_config(request)
        .await
        .unwrap();
    daemon.stop_with(Signal::SIGTERM);

    let pod_cidrs = |status: cri::StatusResponse| -> Vec<String> {
        serde_json::from_str(&status.info["podCIDRs"]).unwrap()
    };
    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap();
    assert_eq!(pod_cidrs(status.into_inner()), ["10.244.7.0/24"]);

    // A crash leaves the socket and the lock file; the next daemon takes over.
    assert_eq!(daemon.stop_with(Signal::SIGKILL), None);
    assert!(daemon.socket.exists(), "SIGKILL leaves the socket behind");
    let daemon = Daemon::start_in(dir.path(), &[]);
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap();
    assert_eq!(pod_cidrs(status.into_inner()), ["10.244.7.0/24"]);
}

#[test]
fn criusctl_version_and_info_against_criusd() {
    let daemon = Daemon::start();
    let (ok, out, err) = criusctl(&daemon.endpoint(), &["version"]);
    assert!(ok, "{err}");
    assert!(out.contains("RuntimeName:  crius"), "{out}");
    assert!(out.contains("RuntimeApiVersion:  v1"), "{out}");

    let (ok, out, err) = criusctl(&daemon.endpoint(), &["info"]);
    assert!(ok, "{err}");
    let info: serde_json::Value = serde_json::from_str(&out).unwrap();
    let conditions = info["status"]["conditions"].as_array().unwrap();
    assert_eq!(conditions[0]["type"], "RuntimeReady");
    assert_eq!(info["config"]["listen"], daemon.socket.to_str().unwrap());
    assert_eq!(info["cgroups"]["driver"], "cgroupfs");

    let (ok, out, _) = criusctl(&daemon.endpoint(), &["version", "-o", "yaml"]);
    assert!(ok && out.contains("runtime_name: crius"), "{out}");

    let (ok, _, err) = criusctl("unix:///nonexistent/crius.sock", &["version"]);
    assert!(!ok);
    assert!(err.contains("/nonexistent/crius.sock"), "{err}");
}
