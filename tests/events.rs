//! GetContainerEvents with real containers: each lifecycle transition of a
//! pod and its containers arrives once, in order, with the statuses kubelet's
//! evented PLEG caches, and a container's own exit is reported as it
//! happens, without any client asking about it.

mod common;

use common::pods::Pod;
use cri::ContainerEventType as Kind;
use crius::cri;
use serde_json::json;
use std::time::Duration;
use tonic::Streaming;

async fn subscribe(daemon: &common::Daemon) -> Streaming<cri::ContainerEventResponse> {
    daemon
        .runtime()
        .await
        .get_container_events(cri::GetEventsRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn next(events: &mut Streaming<cri::ContainerEventResponse>) -> cri::ContainerEventResponse {
    let wait = common::patience(Duration::from_secs(15));
    tokio::time::timeout(wait, events.message())
        .await
        .unwrap_or_else(|_| panic!("no event within {wait:?}"))
        .unwrap()
        .expect("the stream goes on")
}

/// The next event, which must be `kind` for `id`.
async fn expect(
    events: &mut Streaming<cri::ContainerEventResponse>,
    kind: Kind,
    id: &str,
) -> cri::ContainerEventResponse {
    let event = next(events).await;
    assert_eq!(
        (event.container_event_type, event.container_id.as_str()),
        (kind as i32, id),
        "{event:?}"
    );
    assert!(event.created_at > 0);
    event
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn lifecycle_events_arrive_once_in_order() {
    let daemon = common::Daemon::start();
    let mut events = subscribe(&daemon).await;
    let pod = Pod::new_on(daemon, json!({})).await;

    let created = expect(&mut events, Kind::ContainerCreatedEvent, &pod.id).await;
    let status = created.pod_sandbox_status.unwrap();
    assert_eq!(status.id, pod.id);
    assert_eq!(status.metadata.unwrap().uid, "pod-uid");
    expect(&mut events, Kind::ContainerStartedEvent, &pod.id).await;

    // A container that exits by itself: its Stopped event comes from the
    // exit watcher, as nobody asks for its status.
    let quitter = pod
        .run(
            "quitter",
            json!({"command": ["sh", "-c", "sleep 1; exit 3"]}),
        )
        .await;
    expect(&mut events, Kind::ContainerCreatedEvent, &quitter).await;
    let started = expect(&mut events, Kind::ContainerStartedEvent, &quitter).await;
    assert_eq!(started.containers_statuses.len(), 1);
    let stopped = expect(&mut events, Kind::ContainerStoppedEvent, &quitter).await;
    let status = &stopped.containers_statuses[0];
    assert_eq!(status.state, cri::ContainerState::ContainerExited as i32);
    assert_eq!(status.exit_code, 3);
    assert_eq!(stopped.pod_sandbox_status.unwrap().id, pod.id);

    // One that exits at once, maybe before StartContainer has returned:
    // still started, then stopped, with its times in order.
    let flash = pod.run("flash", json!({"command": ["true"]})).await;
    expect(&mut events, Kind::ContainerCreatedEvent, &flash).await;
    expect(&mut events, Kind::ContainerStartedEvent, &flash).await;
    let stopped = expect(&mut events, Kind::ContainerStoppedEvent, &flash).await;
    let status = stopped
        .containers_statuses
        .iter()
        .find(|s| s.id == flash)
        .unwrap();
    assert!(status.started_at > 0 && status.started_at <= status.finished_at);
    pod.remove(&flash).await.unwrap();
    expect(&mut events, Kind::ContainerDeletedEvent, &flash).await;

    // StopContainer: one Stopped event, though both the call and the exit
    // watcher see the exit.
    let sleeper = pod
        .run("sleeper", json!({"command": ["sleep", "3600"]}))
        .await;
    expect(&mut events, Kind::ContainerCreatedEvent, &sleeper).await;
    expect(&mut events, Kind::ContainerStartedEvent, &sleeper).await;
    pod.stop(&sleeper, 0).await.unwrap();
    let stopped = expect(&mut events, Kind::ContainerStoppedEvent, &sleeper).await;
    assert_eq!(stopped.containers_statuses.len(), 2);
    pod.remove(&quitter).await.unwrap();
    let deleted = expect(&mut events, Kind::ContainerDeletedEvent, &quitter).await;
    assert_eq!(deleted.containers_statuses.len(), 1, "the rest of the pod");

    // The pod: stopped, then its last container and itself deleted; the
    // sandbox's deletion still carries its status.
    pod.daemon
        .runtime()
        .await
        .stop_pod_sandbox(cri::StopPodSandboxRequest {
            pod_sandbox_id: pod.id.clone(),
        })
        .await
        .unwrap();
    let stopped = expect(&mut events, Kind::ContainerStoppedEvent, &pod.id).await;
    assert_eq!(
        stopped.pod_sandbox_status.unwrap().state,
        cri::PodSandboxState::SandboxNotready as i32
    );
    pod.remove_pod().await;
    expect(&mut events, Kind::ContainerDeletedEvent, &sleeper).await;
    let deleted = expect(&mut events, Kind::ContainerDeletedEvent, &pod.id).await;
    assert_eq!(
        deleted.pod_sandbox_status.unwrap().metadata.unwrap().uid,
        "pod-uid"
    );
    assert!(deleted.containers_statuses.is_empty());

    // Nothing else was sent.
    let extra = tokio::time::timeout(Duration::from_millis(500), events.message()).await;
    assert!(extra.is_err(), "unexpected event: {extra:?}");
}

/// After a restart, containers that were running are watched again: one
/// that exits later is reported as it exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn exits_after_a_restart_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let daemon = common::Daemon::start_in(dir.path(), &[]);
    let mut pod = Pod::new_on(daemon, json!({})).await;
    // It must outlive the restart and the subscription (slower under
    // emulation): an exit found while criusd recovers has no subscriber.
    let life = common::patience(Duration::from_secs(3)).as_secs();
    let later = pod
        .run(
            "later",
            json!({"command": ["sh", "-c", format!("sleep {life}; exit 7")]}),
        )
        .await;
    pod.daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    pod.daemon = common::Daemon::start_in(dir.path(), &[]);
    let mut events = subscribe(&pod.daemon).await;
    let stopped = expect(&mut events, Kind::ContainerStoppedEvent, &later).await;
    assert_eq!(stopped.containers_statuses[0].exit_code, 7);
    pod.remove_pod().await;
}
