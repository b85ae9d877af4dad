//! Capabilities on a node whose runtime lacks some (a runtime in a container,
//! or root without CAP_SYS_RESOURCE as on this machine): privileged and ALL
//! mean all that criusd holds; naming one it lacks is InvalidArgument.

mod common;

use common::Daemon;
use common::pods::Pod;
use serde_json::{Value, json};
use std::time::Duration;
use tonic::Code;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_SYS_TIME: u32 = 25;

/// The container's bounding set, from its own /proc/self/status.
async fn bounding_set(pod: &Pod, name: &str, overlay: Value) -> u64 {
    let mut config = json!({"command": ["grep", "CapBnd", "/proc/self/status"]});
    common::pods::merge(&mut config, overlay);
    let id = pod
        .create(name, config)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    pod.start(&id)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    let status = pod.wait_exit(&id, Duration::from_secs(20)).await;
    assert_eq!(status.exit_code, 0, "{name}: {status:?}");
    let log = pod.log(name);
    let line = &log.first().unwrap_or_else(|| panic!("{name}: no output")).2;
    u64::from_str_radix(line.trim_start_matches("CapBnd:").trim(), 16).unwrap()
}

/// criusd's own bounding set.
fn daemon_bounding_set(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let line = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap();
    u64::from_str_radix(line.trim_start_matches("CapBnd:").trim(), 16).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn privileged_and_all_mean_what_criusd_holds() {
    let daemon = Daemon::start_without_caps(&[CAP_SYS_TIME]);
    let held = daemon_bounding_set(&daemon);
    assert_eq!(
        held & (1 << CAP_SYS_TIME),
        0,
        "the test daemon lacks SYS_TIME"
    );
    let pod = Pod::new_on(
        daemon,
        json!({"linux": {"security_context": {"privileged": true}}}),
    )
    .await;

    let privileged = bounding_set(
        &pod,
        "privileged",
        json!({"linux": {"security_context": {"privileged": true}}}),
    )
    .await;
    assert_eq!(privileged, held, "privileged: all that criusd holds");
    assert_ne!(privileged & (1 << CAP_SYS_ADMIN), 0);

    let all = bounding_set(
        &pod,
        "add-all",
        json!({"linux": {"security_context": {"capabilities": {"add_capabilities": ["ALL"]}}}}),
    )
    .await;
    assert_eq!(all, held, "ALL: all that criusd holds");

    let some = bounding_set(
        &pod,
        "all-but-admin",
        json!({"linux": {"security_context": {"capabilities": {
            "add_capabilities": ["ALL"], "drop_capabilities": ["SYS_ADMIN"]}}}}),
    )
    .await;
    assert_eq!(some, held & !(1 << CAP_SYS_ADMIN));

    for field in ["add_capabilities", "add_ambient_capabilities"] {
        let err = pod
            .create(
                &format!("lacking-{field}"),
                json!({"linux": {"security_context": {"capabilities": {field: ["CAP_SYS_TIME"]}}}}),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
        assert!(
            err.message().contains(field)
                && err.message().contains("CAP_SYS_TIME")
                && err.message().contains("not held by criusd"),
            "{err:?}"
        );
    }
    pod.remove_pod().await;
}
