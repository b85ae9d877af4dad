//! The streaming server inside TLS (`streaming.tls_cert_file`/`tls_key_file`):
//! https URLs, a WebSocket exec through a client that verifies the
//! certificate, criusctl's streamed exec (WebSocket and SPDY), and start-up
//! refusing half a configuration or a file that is not a certificate.

mod common;

use common::pods::{Pod, image};
use common::{Daemon, criusctl, run_criusd, ws};
use crius::cri;
use serde_json::json;
use std::path::Path;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A self-signed certificate for 127.0.0.1 made by openssl.
fn make_cert(dir: &Path) {
    let status = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
        .args(["ec_paramgen_curve:prime256v1", "-nodes", "-days", "1"])
        .args([
            "-subj",
            "/CN=crius-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        // A server's certificate, not a CA's, as TLS clients insist.
        .args(["-addext", "basicConstraints=critical,CA:FALSE"])
        .args(["-addext", "extendedKeyUsage=serverAuth"])
        .arg("-keyout")
        .arg(dir.join("key.pem"))
        .arg("-out")
        .arg(dir.join("cert.pem"))
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn streams_run_inside_tls() {
    let dir = tempfile::Builder::new()
        .prefix("crius-it-")
        .tempdir()
        .unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    make_cert(dir.path());
    std::fs::write(
        dir.path().join("config.toml"),
        format!(
            "[streaming]\ntls_cert_file = \"{0}/cert.pem\"\ntls_key_file = \"{0}/key.pem\"\n[network.builtin]\nenabled = false\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let pod = Pod::new_on(Daemon::start_in(dir.path(), &[]), json!({})).await;
    let id = pod
        .run(
            "sleeper",
            json!({"image": {"image": image("busybox")}, "command": ["sleep", "600"]}),
        )
        .await;
    let exec = |cmd: &[&str]| cri::ExecRequest {
        container_id: id.clone(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        stdout: true,
        stderr: true,
        ..Default::default()
    };
    let url = pod
        .daemon
        .runtime()
        .await
        .exec(exec(&["echo", "over tls"]))
        .await
        .unwrap()
        .into_inner()
        .url;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");

    // A client that checks the certificate against the one configured.
    let mut request = url
        .replacen("https://", "wss://", 1)
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "v5.channel.k8s.io".parse().unwrap(),
    );
    let host = request.uri().authority().unwrap().to_string();
    let tcp = TcpStream::connect(&host).await.unwrap();
    let connector = crius::stream::tls::connector(Some(&dir.path().join("cert.pem"))).unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut socket, _) = tokio_tungstenite::client_async(request, tls).await.unwrap();
    let channels = ws::collect(&mut socket).await;
    assert_eq!(
        channels.get(&1).map(Vec::as_slice),
        Some(&b"over tls\n"[..])
    );

    // Plain HTTP gets nowhere near a container.
    let url = pod
        .daemon
        .runtime()
        .await
        .exec(exec(&["touch", "/plain-http-ran"]))
        .await
        .unwrap()
        .into_inner()
        .url;
    let plain = ws::connect_raw(&url.replacen("https://", "http://", 1), "v4.channel.k8s.io").await;
    assert!(plain.is_err());
    let (code, _, _) = pod.exec(&id, &["test", "-e", "/plain-http-ran"]).await;
    assert_ne!(code, 0);

    // criusctl follows an https URL as crictl does, over either transport.
    for transport in ["websocket", "spdy"] {
        let (ok, out, err) = criusctl(
            &pod.daemon.endpoint(),
            &[
                "exec",
                "--transport",
                transport,
                &id,
                "echo",
                "from criusctl",
            ],
        );
        assert!(ok, "{transport}: {err}");
        assert_eq!(out, "from criusctl\n", "{transport}");
    }
    pod.remove_pod().await;
}

#[test]
fn half_a_tls_configuration_or_a_bad_file_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[streaming]\ntls_cert_file = \"/etc/crius/cert.pem\"\n",
    )
    .unwrap();
    let (code, stderr) = run_criusd(&["--config", config.to_str().unwrap()]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("streaming.tls_key_file"), "{stderr}");

    std::fs::write(dir.path().join("cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(dir.path().join("key.pem"), "not a key\n").unwrap();
    std::fs::write(
        &config,
        format!(
            "[streaming]\ntls_cert_file = \"{0}/cert.pem\"\ntls_key_file = \"{0}/key.pem\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let root = dir.path().display();
    let (code, stderr) = run_criusd(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        &format!("{root}/crius.sock"),
        "--root",
        &format!("{root}/root"),
        "--state",
        &format!("{root}/state"),
    ]);
    assert_ne!(code, Some(0));
    assert!(stderr.contains("streaming.tls_cert_file"), "{stderr}");
}
