//! criusd's own metrics endpoint on a real daemon: the text parses with a
//! real Prometheus parser, counts follow the calls made, pulls and pod start
//! phases are measured, and the endpoint answers while 50 pods start.

mod common;

use common::pods::Pod;
use common::{Daemon, criusctl};
use crius::cri;
use prometheus_parse::{Scrape, Value};
use serde_json::json;
use std::time::{Duration, Instant};

/// The endpoint's address, as the daemon reports it in verbose Status.
async fn metrics_info(daemon: &Daemon) -> serde_json::Value {
    let status = daemon
        .runtime()
        .await
        .status(cri::StatusRequest { verbose: true })
        .await
        .unwrap()
        .into_inner();
    serde_json::from_str(&status.info["metrics"]).unwrap()
}

async fn address(daemon: &Daemon) -> String {
    let info = metrics_info(daemon).await;
    info["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no metrics address: {info}"))
        .to_string()
}

/// Fetches and parses; returns the text too.
async fn scrape(address: &str) -> (Scrape, String) {
    let text = crius::metrics::endpoint::fetch(address, Duration::from_secs(5))
        .await
        .unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    (scrape, text)
}

/// The sample `name` whose labels include `labels` (a histogram: its count);
/// 0 when there is none yet.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            Value::Histogram(b) => b.last().map(|b| b.count).unwrap_or_default(),
            Value::Summary(_) => f64::NAN,
        })
        .unwrap_or_default()
}

fn pod_config(name: &str) -> cri::PodSandboxConfig {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "metrics-test", "uid": format!("{name}-uid")},
        "hostname": name,
        "linux": {}
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_parses_and_rpc_counts_grow_after_calls() {
    let daemon = Daemon::start();
    let address = address(&daemon).await;
    assert!(address.starts_with("127.0.0.1:") && !address.ends_with(":0"));
    assert!(daemon.log().contains(&format!("http://{address}/metrics")));

    let (before, text) = scrape(&address).await;
    assert_eq!(
        value(
            &before,
            "crius_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        1.0,
        "{text}"
    );
    // Counted from the records when scraped: nothing runs yet.
    assert_eq!(value(&before, "crius_pods", &[("state", "ready")]), 0.0);
    assert!(text.contains("crius_shims 0"), "{text}");

    let mut client = daemon.runtime().await;
    for _ in 0..5 {
        client
            .version(cri::VersionRequest::default())
            .await
            .unwrap();
    }
    let missing = client
        .pod_sandbox_status(cri::PodSandboxStatusRequest {
            pod_sandbox_id: "no-such-pod".into(),
            verbose: false,
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    let (after, _) = scrape(&address).await;
    let version = [("method", "Version"), ("code", "OK")];
    let not_found = [("method", "PodSandboxStatus"), ("code", "NotFound")];
    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    assert_eq!(grew("crius_rpc_requests_total", &version), 5.0);
    assert_eq!(grew("crius_rpc_duration_seconds", &version), 5.0);
    assert_eq!(grew("crius_rpc_requests_total", &not_found), 1.0);
    // The Status call that found the address was counted too.
    assert!(
        value(
            &after,
            "crius_rpc_requests_total",
            &[("method", "Status"), ("code", "OK")]
        ) >= 1.0
    );

    // criusctl finds the endpoint through Status, and filters by name.
    let (ok, out, err) = criusctl(&daemon.endpoint(), &["metrics"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("crius_rpc_requests_total{method=\"Version\",code=\"OK\"}"),
        "{out}"
    );
    let (ok, out, err) = criusctl(&daemon.endpoint(), &["metrics", "crius_build"]);
    assert!(ok, "{err}");
    assert!(
        out.lines().count() == 3 && out.contains("crius_build_info{"),
        "{out}"
    );
}

/// A call cut off by its deadline is counted with the code its client got.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_past_its_deadline_counts_as_deadline_exceeded() {
    use common::fake_registry::{FakeRegistry, Reply, image, raw_entry};
    let registry = FakeRegistry::start().await;
    let stalled = image(&[vec![raw_entry("hello.txt", b'0', "", b"hello\n")]], false);
    registry.serve_image("stalls", "v1", &stalled);
    registry.route_reply(
        &format!("/v2/stalls/blobs/{}", stalled.layers[0].0),
        Reply {
            status: 200,
            content_type: "application/octet-stream".into(),
            body: stalled.layers[0].1.clone(),
            fail_first: 0,
            stall_after: Some(10),
        },
    );
    let daemon = Daemon::start();
    let address = address(&daemon).await;
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: format!("{}/stalls:v1", registry.host),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (code, message, _) = common::raw_grpc::call(
        &daemon.socket,
        "/runtime.v1.ImageService/PullImage",
        &request,
        "500m",
    )
    .await;
    assert_eq!(code, tonic::Code::DeadlineExceeded as i32, "{message}");
    let (after, text) = scrape(&address).await;
    let labels = [("method", "PullImage"), ("code", "DeadlineExceeded")];
    assert_eq!(
        value(&after, "crius_rpc_requests_total", &labels),
        1.0,
        "{text}"
    );
    assert!(value(&after, "crius_rpc_duration_seconds_sum", &labels) >= 0.5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_port_or_an_empty_address_leaves_the_cri_served() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_at = taken.local_addr().unwrap().to_string();
    for (address, says) in [
        (taken_at.as_str(), "cannot listen on [metrics] address"),
        ("", "[metrics] address is empty"),
    ] {
        let dir = tempfile::Builder::new()
            .prefix("crius-it-")
            .tempdir()
            .unwrap();
        std::fs::write(
            dir.path().join("config.toml"),
            format!("[network.builtin]\nenabled = false\n[metrics]\naddress = {address:?}\n"),
        )
        .unwrap();
        let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
        let daemon = Daemon::start_in(dir.path(), &[]);
        daemon
            .runtime()
            .await
            .version(cri::VersionRequest::default())
            .await
            .unwrap();
        let info = metrics_info(&daemon).await;
        assert_eq!(info["enabled"], false, "{info}");
        assert!(info.to_string().contains(says), "{info}");
        let (ok, _, err) = criusctl(&daemon.endpoint(), &["metrics"]);
        assert!(!ok && err.contains(says), "{err}");
        if !address.is_empty() {
            assert!(daemon.log().contains(says), "{}", daemon.log());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_answers_while_50_pods_start() {
    let daemon = Daemon::start();
    let address = address(&daemon).await;
    let client = daemon.runtime().await;
    let starts: Vec<_> = (0..50)
        .map(|i| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .run_pod_sandbox(cri::RunPodSandboxRequest {
                        config: Some(pod_config(&format!("many-{i}"))),
                        runtime_handler: String::new(),
                    })
                    .await
                    .map(|r| r.into_inner().pod_sandbox_id)
            })
        })
        .collect();
    let mut scrapes = Vec::new();
    while !starts.iter().all(|s| s.is_finished()) {
        let started = Instant::now();
        let (scrape, _) = scrape(&address).await;
        scrapes.push((
            started.elapsed(),
            value(&scrape, "crius_pods", &[("state", "ready")]),
        ));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut ids = Vec::new();
    for start in starts {
        ids.push(start.await.unwrap().unwrap());
    }
    let slowest = scrapes.iter().map(|(t, _)| *t).max().unwrap_or_default();
    assert!(
        scrapes.len() >= 3,
        "only {} scrapes while pods started",
        scrapes.len()
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a scrape took {slowest:?}"
    );

    let (after, _) = scrape(&address).await;
    assert_eq!(value(&after, "crius_pods", &[("state", "ready")]), 50.0);
    assert_eq!(
        value(
            &after,
            "crius_rpc_requests_total",
            &[("method", "RunPodSandbox"), ("code", "OK")]
        ),
        50.0
    );
    assert!(
        value(
            &after,
            "crius_pod_start_phase_duration_seconds",
            &[("phase", "namespaces")]
        ) >= 50.0
    );
    eprintln!(
        "{} scrapes while 50 pods started, slowest {slowest:?}, pods seen ready: {:?}",
        scrapes.len(),
        scrapes.iter().map(|(_, n)| *n).collect::<Vec<_>>()
    );

    let removals: Vec<_> = ids
        .into_iter()
        .map(|id| {
            let mut client = client.clone();
            tokio::spawn(async move {
                client
                    .stop_pod_sandbox(cri::StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await?;
                client
                    .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id })
                    .await
            })
        })
        .collect();
    for removal in removals {
        removal.await.unwrap().unwrap();
    }
    let (cleaned, _) = scrape(&address).await;
    assert_eq!(value(&cleaned, "crius_pods", &[("state", "ready")]), 0.0);
    assert_eq!(value(&cleaned, "crius_pods", &[("state", "notready")]), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn pulls_pod_start_phases_exits_and_live_objects_are_measured() {
    let daemon = Daemon::start();
    let address = address(&daemon).await;
    let (before, _) = scrape(&address).await;
    let pod = Pod::new_on(daemon, json!({})).await;
    let missing = pod
        .daemon
        .pull(
            &format!(
                "{}/crius-test/no-such-image:latest",
                common::pods::registry()
            ),
            None,
        )
        .await
        .unwrap_err();
    let running = pod
        .run("sleeper", json!({"command": ["sleep", "600"]}))
        .await;
    let quick = pod
        .run("quick", json!({"command": ["sh", "-c", "exit 3"]}))
        .await;
    assert_eq!(
        pod.wait_exit(&quick, Duration::from_secs(10))
            .await
            .exit_code,
        3
    );

    let (after, text) = scrape(&address).await;
    let grew = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let ok = [("result", "ok")];
    // Pod::new pulls three images; a fresh daemon downloads their layers.
    assert_eq!(grew("crius_image_pulls_total", &ok), 3.0, "{text}");
    assert_eq!(grew("crius_image_pull_duration_seconds", &ok), 3.0);
    assert!(grew("crius_image_pull_bytes_total", &ok) > 1000.0, "{text}");
    assert_eq!(
        grew("crius_image_pulls_total", &[("result", "not_found")]),
        1.0,
        "{missing:?}\n{text}"
    );
    for (phase, at_least) in [
        ("namespaces", 1.0),
        ("rootfs", 2.0),
        ("runc_create", 2.0),
        ("start", 2.0),
    ] {
        assert!(
            grew(
                "crius_pod_start_phase_duration_seconds",
                &[("phase", phase)]
            ) >= at_least,
            "{phase}\n{text}"
        );
    }
    assert_eq!(
        grew(
            "crius_rpc_requests_total",
            &[("method", "StartContainer"), ("code", "OK")]
        ),
        2.0
    );
    // The exit watcher recorded the quick one's exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut lag = grew("crius_exit_watcher_lag_seconds", &[]);
    while lag < 1.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        lag = value(
            &scrape(&address).await.0,
            "crius_exit_watcher_lag_seconds",
            &[],
        ) - value(&before, "crius_exit_watcher_lag_seconds", &[]);
    }
    assert!(lag >= 1.0, "no exit lag recorded");
    // Live objects, counted from the records.
    assert_eq!(value(&after, "crius_pods", &[("state", "ready")]), 1.0);
    assert_eq!(
        value(&after, "crius_containers", &[("state", "running")]),
        1.0
    );
    assert_eq!(
        value(&after, "crius_containers", &[("state", "exited")]),
        1.0
    );
    // The sleeper's shim at least (the quick one's may still be ending).
    assert!(value(&after, "crius_shims", &[]) >= 1.0, "{text}");

    for id in [&running, &quick] {
        pod.stop(id, 0).await.unwrap();
        pod.remove(id).await.unwrap();
    }
    pod.remove_pod().await;
    let (cleaned, _) = scrape(&address).await;
    assert_eq!(
        value(&cleaned, "crius_containers", &[("state", "running")]),
        0.0
    );
    assert_eq!(value(&cleaned, "crius_pods", &[("state", "ready")]), 0.0);
    // Removed containers' records are gone, so are their shims.
    assert_eq!(value(&cleaned, "crius_shims", &[]), 0.0);
}

/// The cost of an RPC as a client sees it, next to what recording it costs
/// (`cargo test --lib recording_cost -- --ignored --nocapture`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: cargo test --test daemon_metrics version_calls -- --ignored --nocapture"]
async fn version_calls_cost() {
    let daemon = Daemon::start();
    let address = address(&daemon).await;
    let mut client = daemon.runtime().await;
    for _ in 0..100 {
        client
            .version(cri::VersionRequest::default())
            .await
            .unwrap();
    }
    let started = Instant::now();
    for _ in 0..1000 {
        client
            .version(cri::VersionRequest::default())
            .await
            .unwrap();
    }
    let per_call = started.elapsed() / 1000;
    let (scrape, _) = scrape(&address).await;
    let labels = [("method", "Version"), ("code", "OK")];
    let served = value(&scrape, "crius_rpc_duration_seconds_sum", &labels)
        / value(&scrape, "crius_rpc_duration_seconds_count", &labels);
    eprintln!(
        "1000 Version calls: {per_call:?} each at the client, {:.1} µs inside criusd",
        served * 1e6
    );
    assert_eq!(value(&scrape, "crius_rpc_requests_total", &labels), 1100.0);
}
