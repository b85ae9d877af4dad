//! A call whose deadline passes answers DeadlineExceeded naming the method
//! (kubelet and critest check the code), and a pull cut off by its deadline
//! leaves nothing half-made: it finishes into the store, whole, or not at all.

mod common;

use common::Daemon;
use common::fake_registry::{FakeRegistry, Reply, image, raw_entry};
use crius::cri;
use std::time::{Duration, Instant};
use tonic::Code;

const DEADLINE_EXCEEDED: i32 = Code::DeadlineExceeded as i32;

/// PullImage with a deadline, over a bare connection: the server alone
/// decides when it passed. Returns the code and message.
async fn pull_with_deadline(daemon: &Daemon, name: &str, timeout: &str) -> (i32, String) {
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: name.into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let (code, message, _) = common::raw_grpc::call(
        &daemon.socket,
        "/runtime.v1.ImageService/PullImage",
        &request,
        timeout,
    )
    .await;
    (code, message)
}

async fn image_client(
    daemon: &Daemon,
) -> cri::image_service_client::ImageServiceClient<tonic::transport::Channel> {
    let channel = crius::client::connect(&daemon.endpoint(), Duration::from_secs(10), None)
        .await
        .unwrap();
    crius::client::image_client(channel)
}

async fn listed(daemon: &Daemon, name: &str) -> bool {
    image_client(daemon)
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
        .iter()
        .any(|i| i.repo_tags.iter().any(|t| t == name))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_pull_past_its_deadline_is_deadline_exceeded() {
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
    let name = format!("{}/stalls:v1", registry.host);
    let started = Instant::now();
    let (code, message) = pull_with_deadline(&daemon, &name, "800m").await;
    assert_eq!(code, DEADLINE_EXCEEDED, "{message}");
    assert!(message.contains("PullImage"), "{message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at the deadline"
    );
    assert!(
        !listed(&daemon, &name).await,
        "no half-pulled image is listed"
    );

    // The daemon is not held up by the pull still waiting on the registry,
    // and a call within its deadline is answered as usual.
    let (code, message, reply) = common::raw_grpc::call(
        &daemon.socket,
        "/runtime.v1.RuntimeService/Version",
        &cri::VersionRequest::default(),
        "5S",
    )
    .await;
    assert_eq!(code, 0, "{message}");
    let version: cri::VersionResponse = prost::Message::decode(reply.as_slice()).unwrap();
    assert_eq!(version.runtime_name, "crius");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_cut_off_by_its_deadline_finishes_whole_or_not_at_all() {
    let daemon = Daemon::start();
    let name = common::pods::image("busybox");
    let (code, message) = pull_with_deadline(&daemon, &name, "1m").await;
    assert_eq!(code, DEADLINE_EXCEEDED, "{message}");
    // The pull goes on without its caller and lands whole.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !listed(&daemon, &name).await {
        assert!(
            Instant::now() < deadline,
            "the detached pull never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = image_client(&daemon)
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name.clone(),
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(status.image.is_some_and(|i| i.size > 0));
    // Nothing is left in the ingest area.
    let ingest = daemon.dir.join("root/content/ingest");
    assert_eq!(std::fs::read_dir(&ingest).unwrap().count(), 0);
}
