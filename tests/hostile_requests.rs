//! Requests the API server's validation would have refused, sent straight to
//! the CRI (as a compromised or buggy client could): each is InvalidArgument
//! naming the field, and leaves nothing behind.

mod common;

use common::pods::{Pod, merge};
use crius::cri;
use serde_json::{Value, json};
use tonic::Code;

fn sandbox_config(overlay: Value) -> cri::PodSandboxConfig {
    let mut config = json!({
        "metadata": {"name": "hostile", "namespace": "default", "uid": "hostile-uid", "attempt": 0},
        "linux": {"security_context": {"namespace_options": {"network": 2, "pid": 1, "ipc": 0}}}
    });
    merge(&mut config, overlay);
    serde_json::from_value(config).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_sandbox_and_container_configs_are_refused_by_field() {
    let pod = Pod::new(json!({})).await;
    let daemon = &pod.daemon;
    let cases = [
        (
            json!({"log_directory": "relative/logs"}),
            "config.log_directory",
        ),
        (
            json!({"dns_config": {"servers": ["10.0.0.1\nsearch evil"]}}),
            "config.dns_config.servers[0]",
        ),
        (
            json!({"dns_config": {"servers": ["ns.example.com"]}}),
            "config.dns_config.servers[0]",
        ),
        (
            json!({"dns_config": {"searches": ["ok.local", "a b"]}}),
            "config.dns_config.searches[1]",
        ),
        (
            json!({"dns_config": {"options": ["ndots:5\nnameserver 6.6.6.6"]}}),
            "config.dns_config.options[0]",
        ),
        (
            json!({"linux": {"cgroup_parent": "/kubepods/../../escape"}}),
            "config.linux.cgroup_parent",
        ),
    ];
    for (overlay, field) in cases {
        let err = daemon
            .runtime()
            .await
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(sandbox_config(overlay.clone())),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{overlay}: {err:?}");
        assert!(err.message().contains(field), "{overlay}: {err:?}");
    }
    let pods = daemon
        .runtime()
        .await
        .list_pod_sandbox(cri::ListPodSandboxRequest::default())
        .await
        .unwrap()
        .into_inner()
        .items;
    assert_eq!(pods.len(), 1, "only the fixture's pod: {pods:?}");

    let outside = pod.logs.parent().unwrap().join("escaped.log");
    let cases = [
        (json!({"log_path": "../escaped.log"}), "config.log_path"),
        (json!({"log_path": "/tmp/absolute.log"}), "config.log_path"),
        (
            json!({"envs": [{"key": "A=B", "value": "x"}]}),
            "config.envs[0].key",
        ),
        (
            json!({"envs": [{"key": "OK", "value": "1"}, {"key": "NUL\u{0}", "value": "x"}]}),
            "config.envs[1].key",
        ),
        (
            json!({"envs": [{"key": "", "value": "x"}]}),
            "config.envs[0].key",
        ),
    ];
    for (overlay, field) in cases {
        let err = pod.create("hostile", overlay.clone()).await.unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{overlay}: {err:?}");
        assert!(err.message().contains(field), "{overlay}: {err:?}");
    }
    assert!(
        !outside.exists(),
        "nothing was written outside the log directory"
    );
    let left = std::fs::read_dir(daemon.dir.join("state/containers"))
        .unwrap()
        .count();
    assert_eq!(left, 0, "no half-made container");
    pod.remove_pod().await;
}
