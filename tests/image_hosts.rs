//! Registry host configuration (hosts.toml: mirrors, capabilities, TLS) and
//! the credentials-file fallback, with real pulls.

mod common;

use common::Daemon;
use common::fake_registry::{Auth, FakeRegistry, image, raw_entry};
use common::registry_process;
use std::path::Path;
use tonic::Code;

/// Starts criusd with `[image]` settings pointing into `dir`.
fn daemon_with(dir: &Path, image_settings: &str) -> Daemon {
    let config = dir.join("crius.toml");
    std::fs::write(&config, format!("[image]\n{image_settings}")).unwrap();
    Daemon::start_in(dir, &["--config", config.to_str().unwrap()])
}

fn hosts_toml(dir: &Path, registry: &str, text: &str) {
    let host_dir = dir.join("certs.d").join(registry);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hosts.toml"), text).unwrap();
}

fn certs_d(dir: &Path) -> String {
    format!(
        "registry_config_path = {:?}\n",
        dir.join("certs.d").to_str().unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_that_is_down_falls_back_to_the_next() {
    let upstream = FakeRegistry::start().await;
    let img = image(&[vec![raw_entry("a", b'0', "", b"a")]], false);
    upstream.serve_image("app", "v1", &img);
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    // Nothing listens on port 9 of loopback: connection refused.
    hosts_toml(
        dir.path(),
        &upstream.host,
        &format!(
            "server = \"http://{}\"\n\n[host.\"http://127.0.0.1:9\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.host
        ),
    );
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    assert_eq!(
        daemon
            .pull(&format!("{}/app:v1", upstream.host), None)
            .await
            .unwrap(),
        img.config_digest
    );
    assert!(
        daemon.log().contains("trying the next endpoint"),
        "{}",
        daemon.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_only_mirrors_serve_blobs_while_tags_resolve_upstream() {
    let upstream = FakeRegistry::start().await;
    let mirror = FakeRegistry::start().await;
    let img = image(
        &[
            vec![raw_entry("a", b'0', "", b"a")],
            vec![raw_entry("b", b'0', "", b"b")],
        ],
        false,
    );
    // Upstream has only the tag; the mirror has the content by digest.
    upstream.route(
        "/v2/app/manifests/v1",
        200,
        "application/vnd.oci.image.manifest.v1+json",
        img.manifest.clone(),
    );
    mirror.serve_image("app", "unused-tag", &img);
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    hosts_toml(
        dir.path(),
        &upstream.host,
        &format!(
            "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\"]\n  [host.\"http://{}\".header]\n    x-crius-test = \"yes\"\n",
            upstream.host, mirror.host, mirror.host
        ),
    );
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    assert_eq!(
        daemon
            .pull(&format!("{}/app:v1", upstream.host), None)
            .await
            .unwrap(),
        img.config_digest
    );
    assert_eq!(
        mirror.hits("/v2/app/manifests/v1"),
        0,
        "a pull-only mirror is not asked to resolve tags"
    );
    assert_eq!(upstream.hits("/v2/app/manifests/v1"), 1);
    for (digest, _) in &img.layers {
        assert_eq!(
            mirror.hits(&format!("/v2/app/blobs/{digest}")),
            1,
            "blobs come from the mirror"
        );
        assert_eq!(upstream.hits(&format!("/v2/app/blobs/{digest}")), 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_hosts_toml_is_a_clear_error() {
    let upstream = FakeRegistry::start().await;
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    hosts_toml(
        dir.path(),
        &upstream.host,
        "[host.\"http://m\"]\nskip_verify = \"yes\"\n",
    );
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    let err = daemon
        .pull(&format!("{}/app:v1", upstream.host), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert!(
        err.message().contains("hosts.toml") && err.message().contains("skip_verify"),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_is_used_when_a_pull_has_none() {
    let registry = FakeRegistry::start().await;
    let img = image(&[vec![raw_entry("a", b'0', "", b"a")]], false);
    registry.serve_image("private", "v1", &img);
    registry.set_auth(Auth::Basic {
        user: "carol".into(),
        password: "pw".into(),
    });
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let creds = dir.path().join("config.json");
    std::fs::write(
        &creds,
        format!(
            "{{\"auths\": {{\"http://{}\": {{\"auth\": \"Y2Fyb2w6cHc=\"}}}}}}",
            registry.host
        ),
    )
    .unwrap();
    let daemon = daemon_with(
        dir.path(),
        &format!("credentials_file = {:?}\n", creds.to_str().unwrap()),
    );
    assert_eq!(
        daemon
            .pull(&format!("{}/private:v1", registry.host), None)
            .await
            .unwrap(),
        img.config_digest
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn tls_registry_with_a_test_ca() {
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    registry_process::make_certs(dir.path());
    let tls = format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        dir.path().join("server.pem").display(),
        dir.path().join("server.key").display()
    );
    let registry = registry_process::start(dir.path(), &tls, "");
    let ca = dir.path().join("ca.pem");
    let name = format!("{}/crius-test/busybox:latest", registry.host);
    let server = format!("server = \"https://{}\"\n", registry.host);

    // Loopback does not mean plain HTTP once hosts.toml says https; an
    // unknown CA is refused with the reason.
    hosts_toml(dir.path(), &registry.host, &server);
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    let err = daemon.pull(&name, None).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(
        err.message().to_lowercase().contains("certificate"),
        "{}",
        err.message()
    );
    drop(daemon);

    hosts_toml(
        dir.path(),
        &registry.host,
        &format!("{server}ca = {:?}\n", ca.to_str().unwrap()),
    );
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    daemon.pull(&name, None).await.unwrap();
    drop(daemon);

    hosts_toml(
        dir.path(),
        &registry.host,
        &format!("{server}skip_verify = true\n"),
    );
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    daemon.pull(&name, None).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pulls_credentials_never_reach_a_mirror_on_another_host() {
    let upstream = FakeRegistry::start().await;
    let mirror = FakeRegistry::start().await;
    let ours = image(&[vec![raw_entry("a", b'0', "", b"upstream")]], false);
    let theirs = image(&[vec![raw_entry("a", b'0', "", b"mirror")]], false);
    upstream.serve_image("app", "v1", &ours);
    mirror.serve_image("app", "v1", &theirs);
    // Both ask for alice's password: only the upstream may see it.
    for registry in [&upstream, &mirror] {
        registry.set_auth(Auth::Basic {
            user: "alice".into(),
            password: "s3cret".into(),
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    hosts_toml(
        dir.path(),
        &upstream.host,
        &format!(
            "server = \"http://{}\"\n\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.host, mirror.host
        ),
    );
    let daemon = daemon_with(dir.path(), &certs_d(dir.path()));
    let auth = crius::cri::AuthConfig {
        username: "alice".into(),
        password: "s3cret".into(),
        ..Default::default()
    };
    let pulled = daemon
        .pull(&format!("{}/app:v1", upstream.host), Some(auth.clone()))
        .await
        .unwrap();
    assert_eq!(
        pulled, ours.config_digest,
        "the mirror, without the password, was passed over"
    );
    assert!(
        mirror.hits("/v2/app/manifests/v1") > 0,
        "the mirror was asked first"
    );

    // Credentials issued for the mirror's host (server_address) go there alone.
    let for_mirror = crius::cri::AuthConfig {
        server_address: format!("http://{}", mirror.host),
        ..auth
    };
    daemon
        .images()
        .await
        .remove_image(crius::cri::RemoveImageRequest {
            image: Some(crius::cri::ImageSpec {
                image: pulled,
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let pulled = daemon
        .pull(&format!("{}/app:v1", upstream.host), Some(for_mirror))
        .await
        .unwrap();
    assert_eq!(pulled, theirs.config_digest);
}
