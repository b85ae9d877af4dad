//! Pulls from a registry that lies, truncates, bloats, escapes, or asks for
//! credentials. Every case gets a clear status, no panic, nothing stored and
//! nothing written outside the image store.

mod common;

use common::Daemon;
use common::fake_registry::{Auth, FakeRegistry, Reply, image, raw_entry, sha256};
use crius::cri;
use std::path::Path;
use tonic::Code;

fn file(name: &str, data: &str) -> Vec<u8> {
    raw_entry(name, b'0', "", data.as_bytes())
}

/// Nothing from a failed pull stays in the image store.
fn assert_store_empty(daemon: &Daemon) {
    let root = daemon.dir.join("root");
    for dir in ["content/blobs/sha256", "content/ingest", "snapshots/tmp"] {
        let left: Vec<_> = std::fs::read_dir(root.join(dir)).unwrap().collect();
        assert!(left.is_empty(), "{dir} has {left:?}");
    }
    let snapshots = std::fs::read_dir(root.join("snapshots")).unwrap().count();
    assert_eq!(snapshots, 1, "only snapshots/tmp");
}

async fn expect_failure(daemon: &Daemon, name: &str, code: Code, needle: &str) {
    let err = daemon.pull(name, None).await.expect_err(name);
    assert_eq!(err.code(), code, "{name}: {err:?}");
    assert!(
        err.message().contains(needle),
        "{name}: {:?} lacks {needle:?}",
        err.message()
    );
    assert_store_empty(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lying_and_broken_content_is_refused() {
    let registry = FakeRegistry::start().await;
    let daemon = Daemon::start();
    let good = image(&[vec![file("hello.txt", "hello\n")]], false);

    // A blob whose bytes do not match its digest.
    let tampered = image(&[vec![file("hello.txt", "hello\n")]], false);
    registry.serve_image("tampered", "v1", &tampered);
    let mut bytes = tampered.layers[0].1.clone();
    let last = bytes.len() - 10;
    bytes[last] ^= 0xff;
    registry.route(
        &format!("/v2/tampered/blobs/{}", tampered.layers[0].0),
        200,
        "application/octet-stream",
        bytes,
    );
    expect_failure(
        &daemon,
        &format!("{}/tampered:v1", registry.host),
        Code::FailedPrecondition,
        "tampered",
    )
    .await;

    // A truncated blob.
    registry.serve_image("truncated", "v1", &good);
    let half = good.layers[0].1[..good.layers[0].1.len() / 2].to_vec();
    registry.route(
        &format!("/v2/truncated/blobs/{}", good.layers[0].0),
        200,
        "application/octet-stream",
        half,
    );
    expect_failure(
        &daemon,
        &format!("{}/truncated:v1", registry.host),
        Code::FailedPrecondition,
        "truncated",
    )
    .await;

    // A manifest that is not JSON, and one far too large.
    registry.route(
        "/v2/html/manifests/v1",
        200,
        "application/vnd.oci.image.manifest.v1+json",
        b"<html>oops</html>".to_vec(),
    );
    expect_failure(
        &daemon,
        &format!("{}/html:v1", registry.host),
        Code::FailedPrecondition,
        "not JSON",
    )
    .await;
    registry.route(
        "/v2/huge/manifests/v1",
        200,
        "application/vnd.oci.image.manifest.v1+json",
        vec![b' '; 5 << 20],
    );
    expect_failure(
        &daemon,
        &format!("{}/huge:v1", registry.host),
        Code::FailedPrecondition,
        "larger than",
    )
    .await;

    // Schema1 is refused with a reason.
    let schema1 = br#"{"schemaVersion":1,"name":"x","tag":"v1","fsLayers":[]}"#.to_vec();
    registry.route(
        "/v2/old/manifests/v1",
        200,
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        schema1,
    );
    expect_failure(
        &daemon,
        &format!("{}/old:v1", registry.host),
        Code::FailedPrecondition,
        "schema1",
    )
    .await;

    // A config whose diff_ids do not match the layers.
    let liar = image(&[vec![file("hello.txt", "hello\n")]], true);
    registry.serve_image("liar", "v1", &liar);
    expect_failure(
        &daemon,
        &format!("{}/liar:v1", registry.host),
        Code::FailedPrecondition,
        "diff",
    )
    .await;

    // A manifest served for a pinned digest must have that digest.
    registry.serve_image("pinned", "v1", &good);
    let other = sha256(b"something else");
    registry.route(
        &format!("/v2/pinned/manifests/{other}"),
        200,
        "application/vnd.oci.image.manifest.v1+json",
        good.manifest.clone(),
    );
    expect_failure(
        &daemon,
        &format!("{}/pinned@{other}", registry.host),
        Code::FailedPrecondition,
        "digest",
    )
    .await;

    // And the good image pulls.
    registry.serve_image("good", "v1", &good);
    assert_eq!(
        daemon
            .pull(&format!("{}/good:v1", registry.host), None)
            .await
            .unwrap(),
        good.config_digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_escapes_are_refused_and_nothing_outside_is_written() {
    let registry = FakeRegistry::start().await;
    let daemon = Daemon::start();
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("pwned");
    let depth = "../".repeat(30);
    let cases: Vec<(&str, Vec<Vec<u8>>, &str)> = vec![
        (
            "dotdot",
            vec![file(
                &format!(
                    "{depth}{}",
                    target.display().to_string().trim_start_matches('/')
                ),
                "x",
            )],
            "'..'",
        ),
        (
            "symlink",
            vec![
                raw_entry("escape", b'2', outside.path().to_str().unwrap(), b""),
                file("escape/pwned", "x"),
            ],
            "symlink",
        ),
        (
            "hardlink",
            vec![
                raw_entry("escape", b'2', outside.path().to_str().unwrap(), b""),
                raw_entry("h", b'1', "escape/pwned", b""),
            ],
            "symlink",
        ),
    ];
    for (repo, entries, needle) in cases {
        let hostile = image(&[entries], false);
        registry.serve_image(repo, "v1", &hostile);
        expect_failure(
            &daemon,
            &format!("{}/{repo}:v1", registry.host),
            Code::FailedPrecondition,
            needle,
        )
        .await;
        assert!(!target.exists(), "{repo}: nothing written outside");
        assert_eq!(
            std::fs::read_dir(outside.path()).unwrap().count(),
            0,
            "{repo}"
        );
    }
    // An absolute name is taken relative to the layer root, as tar and the
    // peers take it: the pull succeeds and writes nothing outside.
    let absolute = image(&[vec![file(target.to_str().unwrap(), "x")]], false);
    registry.serve_image("absolute", "v1", &absolute);
    daemon
        .pull(&format!("{}/absolute:v1", registry.host), None)
        .await
        .unwrap();
    assert!(!target.exists(), "absolute: nothing written outside");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn basic_auth_right_and_wrong_credentials() {
    let registry = FakeRegistry::start().await;
    let daemon = Daemon::start();
    let img = image(&[vec![file("a", "a")]], false);
    registry.serve_image("private", "v1", &img);
    registry.set_auth(Auth::Basic {
        user: "alice".into(),
        password: "s3cret".into(),
    });
    let name = format!("{}/private:v1", registry.host);
    let creds = |user: &str, password: &str| {
        Some(cri::AuthConfig {
            username: user.into(),
            password: password.into(),
            ..Default::default()
        })
    };
    let err = daemon.pull(&name, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(
        err.message().contains("username and password"),
        "{}",
        err.message()
    );
    let err = daemon
        .pull(&name, creds("alice", "wrong"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert_store_empty(&daemon);
    assert_eq!(
        daemon.pull(&name, creds("alice", "s3cret")).await.unwrap(),
        img.config_digest
    );
    // `auth` (base64 user:password) works too.
    let auth = Some(cri::AuthConfig {
        auth: "YWxpY2U6czNjcmV0".into(),
        ..Default::default()
    });
    assert_eq!(daemon.pull(&name, auth).await.unwrap(), img.config_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_are_fetched_once_per_scope() {
    let registry = FakeRegistry::start().await;
    let daemon = Daemon::start();
    let img = image(&[vec![file("a", "a")], vec![file("b", "b")]], false);
    registry.serve_image("team/app", "v1", &img);
    registry.set_auth(Auth::Bearer {
        user: Some(("bob".into(), "pw".into())),
    });
    let name = format!("{}/team/app:v1", registry.host);
    let err = daemon.pull(&name, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("token service"), "{}", err.message());
    let creds = Some(cri::AuthConfig {
        username: "bob".into(),
        password: "pw".into(),
        ..Default::default()
    });
    assert_eq!(
        daemon.pull(&name, creds.clone()).await.unwrap(),
        img.config_digest
    );
    let tokens = registry.hits("/token");
    // The manifest, config and two layers share one token; a second pull of
    // the same repository asks for none.
    assert!(tokens <= 3, "tokens fetched: {tokens}");
    let before = registry.hits("/token");
    daemon.pull(&name, creds).await.unwrap();
    assert_eq!(registry.hits("/token"), before, "cached token reused");
    // A CRI registry_token goes to the registry as is.
    registry.set_auth(Auth::Bearer { user: None });
    let token = Some(cri::AuthConfig {
        registry_token: "fake-token-0123".into(),
        ..Default::default()
    });
    assert_eq!(daemon.pull(&name, token).await.unwrap(), img.config_digest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_server_errors_are_retried() {
    let registry = FakeRegistry::start().await;
    let daemon = Daemon::start();
    let img = image(&[vec![file("a", "a")]], false);
    registry.serve_image("flaky", "v1", &img);
    let manifest_path = "/v2/flaky/manifests/v1";
    registry.route_reply(
        manifest_path,
        Reply {
            status: 200,
            content_type: "application/vnd.oci.image.manifest.v1+json".into(),
            body: img.manifest.clone(),
            fail_first: 2,
            stall_after: None,
        },
    );
    assert_eq!(
        daemon
            .pull(&format!("{}/flaky:v1", registry.host), None)
            .await
            .unwrap(),
        img.config_digest
    );
    assert_eq!(registry.hits(manifest_path), 3);
    // A registry that keeps failing gives Unavailable, naming the URL.
    registry.route_reply(
        manifest_path,
        Reply {
            status: 200,
            content_type: String::new(),
            body: vec![],
            fail_first: 99,
            stall_after: None,
        },
    );
    let err = daemon
        .pull(&format!("{}/flaky:v1", registry.host), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("500"), "{}", err.message());
    assert!(Path::new(&daemon.dir).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_killed_midway_is_completed_by_the_next() {
    let registry = FakeRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    // Data that gzip cannot shrink much, so the blob is large on the wire.
    let mut state = 0x1234_5678_u32;
    let data: String = (0..400_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (b'a' + (state % 26) as u8) as char
        })
        .collect();
    let img = image(
        &[
            vec![file("big.txt", &data)],
            vec![file("small.txt", "small")],
        ],
        false,
    );
    registry.serve_image("app", "v1", &img);
    let (digest, blob) = img.layers[0].clone();
    let blob_path = format!("/v2/app/blobs/{digest}");
    registry.route_reply(
        &blob_path,
        Reply {
            status: 200,
            content_type: "application/octet-stream".into(),
            body: blob.clone(),
            fail_first: 0,
            stall_after: Some(blob.len() / 2),
        },
    );

    let mut daemon = Daemon::start_in(dir.path(), &[]);
    let name = format!("{}/app:v1", registry.host);
    let mut client = daemon.images().await;
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: name.clone(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let pulling = tokio::spawn(async move { client.pull_image(request).await });
    let ingest = dir.path().join("root/content/ingest");
    let started = std::time::Instant::now();
    let partial = loop {
        let sizes: Vec<u64> = std::fs::read_dir(&ingest)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .collect();
        if let Some(&n) = sizes.iter().find(|&&n| n > 0) {
            break n;
        }
        assert!(
            started.elapsed().as_secs() < 10,
            "the download never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert!(partial < blob.len() as u64);
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    assert!(
        pulling.await.unwrap().is_err(),
        "the pull died with the daemon"
    );

    // The registry recovers; a new daemon clears the crash's leftovers and the
    // next pull completes with the right content.
    registry.route(&blob_path, 200, "application/octet-stream", blob);
    let daemon = Daemon::start_in(dir.path(), &[]);
    assert_eq!(
        std::fs::read_dir(&ingest).unwrap().count(),
        0,
        "ingest cleared at start"
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("root/snapshots/tmp"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(daemon.pull(&name, None).await.unwrap(), img.config_digest);
    let status = daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: name,
                ..Default::default()
            }),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&status.info["info"]).unwrap();
    let lowest = info["snapshots"][0].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(Path::new(lowest).join("big.txt")).unwrap(),
        data
    );
    assert!(
        std::fs::metadata(
            daemon
                .dir
                .join("root/content/blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        )
        .is_ok()
    );
}
