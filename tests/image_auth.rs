//! Pulls from Debian's docker-registry behind basic auth (htpasswd) and behind
//! bearer tokens issued by a small token server in this test (RS256 JWTs
//! signed with openssl, the signing certificate in the registry's root bundle).

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::Daemon;
use common::registry_process::{self, openssl};
use crius::cri;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

const IMAGE: &str = "crius-test/busybox:latest";

fn creds(user: Option<(&str, &str)>) -> Option<cri::AuthConfig> {
    user.map(|(u, p)| cri::AuthConfig {
        username: u.into(),
        password: p.into(),
        ..Default::default()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn registry_behind_htpasswd() {
    let dir = tempfile::tempdir().unwrap();
    let hash = std::process::Command::new("python3")
        .args([
            "-c",
            "import crypt; print(crypt.crypt('s3cret', crypt.mksalt(crypt.METHOD_BLOWFISH)))",
        ])
        .output()
        .unwrap();
    let hash = String::from_utf8(hash.stdout).unwrap();
    assert!(hash.starts_with("$2"), "bcrypt hash: {hash:?}");
    std::fs::write(
        dir.path().join("htpasswd"),
        format!("alice:{}", hash.trim()),
    )
    .unwrap();
    let auth = format!(
        "auth:\n  htpasswd:\n    realm: crius-test\n    path: {}\n",
        dir.path().join("htpasswd").display()
    );
    let registry = registry_process::start(dir.path(), "", &auth);
    let daemon = Daemon::start();
    let name = format!("{}/{IMAGE}", registry.host);

    let err = daemon.pull(&name, creds(None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let err = daemon
        .pull(&name, creds(Some(("alice", "wrong"))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let id = daemon
        .pull(&name, creds(Some(("alice", "s3cret"))))
        .await
        .unwrap();
    assert!(id.starts_with("sha256:"));
}

/// Issues RS256 JWTs to `alice:s3cret` for the scope asked.
struct TokenServer {
    url: String,
    issued: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn token_server(dir: PathBuf) -> TokenServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/token", listener.local_addr().unwrap());
    let issued = Arc::new(AtomicU32::new(0));
    let counter = issued.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = vec![0u8; 8192];
            let n = sock.read(&mut buf).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buf[..n]).to_string();
            let dir = dir.clone();
            let counter = counter.clone();
            let (status, body) =
                tokio::task::spawn_blocking(move || issue(&request, &dir, &counter))
                    .await
                    .unwrap();
            let head = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = sock.write_all(head.as_bytes()).await;
            let _ = sock.write_all(body.as_bytes()).await;
            let _ = sock.shutdown().await;
        }
    });
    TokenServer { url, issued, task }
}

fn issue(request: &str, dir: &Path, counter: &AtomicU32) -> (u16, String) {
    let expected = format!("Basic {}", STANDARD.encode("alice:s3cret"));
    let authorized = request.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("authorization:") && l[14..].trim() == expected
    });
    if !authorized {
        return (401, "{\"errors\":[\"bad credentials\"]}".into());
    }
    let query = request
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("");
    let param = |k: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
            .map(|v| {
                v.replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%2C", ",")
            })
            .unwrap_or_default()
    };
    let scope = param("scope");
    let mut parts = scope.split(':');
    let (kind, name, actions) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let der = openssl(dir, &["x509", "-in", "token.pem", "-outform", "DER"]);
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [STANDARD.encode(der)]});
    let claims = serde_json::json!({
        "iss": "crius-test-issuer", "sub": "alice", "aud": param("service"),
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("t{}", counter.fetch_add(1, Ordering::SeqCst)),
        "access": [{"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}],
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    std::fs::write(dir.join("jwt-input"), &input).unwrap();
    let signature = openssl(dir, &["dgst", "-sha256", "-sign", "token.key", "jwt-input"]);
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature));
    (
        200,
        serde_json::json!({"token": token, "expires_in": 300}).to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn registry_behind_bearer_tokens() {
    let dir = tempfile::tempdir().unwrap();
    openssl(
        dir.path(),
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "token.key",
            "-out",
            "token.pem",
            "-days",
            "2",
            "-subj",
            "/CN=crius token issuer",
        ],
    );
    let tokens = token_server(dir.path().to_path_buf()).await;
    let auth = format!(
        "auth:\n  token:\n    realm: {}\n    service: crius-test-registry\n    issuer: crius-test-issuer\n    rootcertbundle: {}\n",
        tokens.url,
        dir.path().join("token.pem").display()
    );
    let registry = registry_process::start(dir.path(), "", &auth);
    let daemon = Daemon::start();
    let name = format!("{}/{IMAGE}", registry.host);

    let err = daemon.pull(&name, creds(None)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    assert!(err.message().contains("token service"), "{}", err.message());
    let err = daemon
        .pull(&name, creds(Some(("alice", "wrong"))))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let id = daemon
        .pull(&name, creds(Some(("alice", "s3cret"))))
        .await
        .unwrap();
    assert!(id.starts_with("sha256:"));
    let issued = tokens.issued.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&issued),
        "one token per scope, cached: {issued}"
    );
}
