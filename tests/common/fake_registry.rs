//! A registry that misbehaves on purpose, for hostile-input and auth tests:
//! plain HTTP/1.1 on 127.0.0.1, responses set per path, optional basic or
//! bearer auth (with its own token endpoint), and request counters.

#![allow(dead_code)]

use base64::Engine;
use flate2::write::GzEncoder;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
    /// Fail with 500 this many times first.
    pub fail_first: u32,
    /// Send only this many body bytes, then hold the connection open.
    pub stall_after: Option<usize>,
}

#[derive(Clone, PartialEq)]
pub enum Auth {
    None,
    Basic {
        user: String,
        password: String,
    },
    /// Bearer tokens from /token, which wants these basic credentials (or
    /// none, for anonymous tokens).
    Bearer {
        user: Option<(String, String)>,
    },
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    hits: HashMap<String, u32>,
}

pub struct FakeRegistry {
    pub host: String,
    state: Arc<Mutex<State>>,
    auth: Arc<Mutex<Auth>>,
    task: tokio::task::JoinHandle<()>,
}

const TOKEN: &str = "fake-token-0123";

impl FakeRegistry {
    pub async fn start() -> FakeRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(Mutex::new(State::default()));
        let auth = Arc::new(Mutex::new(Auth::None));
        let (s, a, h) = (state.clone(), auth.clone(), host.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let (s, a, h) = (s.clone(), a.clone(), h.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&buf).to_string();
                    let (status, headers, body, stall) = respond(&text, &s, &a, &h);
                    let mut out = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in headers {
                        out.push_str(&format!("{k}: {v}\r\n"));
                    }
                    out.push_str("\r\n");
                    let _ = sock.write_all(out.as_bytes()).await;
                    if let Some(n) = stall {
                        let _ = sock.write_all(&body[..n.min(body.len())]).await;
                        tokio::time::sleep(std::time::Duration::from_secs(300)).await;
                        return;
                    }
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        FakeRegistry {
            host,
            state,
            auth,
            task,
        }
    }

    pub fn set_auth(&self, auth: Auth) {
        *self.auth.lock().unwrap() = auth;
    }

    pub fn route(&self, path: &str, status: u16, content_type: &str, body: Vec<u8>) {
        self.route_reply(
            path,
            Reply {
                status,
                content_type: content_type.into(),
                body,
                fail_first: 0,
                stall_after: None,
            },
        );
    }

    pub fn route_reply(&self, path: &str, reply: Reply) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), reply);
    }

    pub fn hits(&self, path: &str) -> u32 {
        self.state
            .lock()
            .unwrap()
            .hits
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    /// Serves an image: manifest under `tag` and by digest, config, layers.
    pub fn serve_image(&self, repo: &str, tag: &str, image: &TestImage) {
        let manifest_type = "application/vnd.oci.image.manifest.v1+json";
        self.route(
            &format!("/v2/{repo}/manifests/{tag}"),
            200,
            manifest_type,
            image.manifest.clone(),
        );
        self.route(
            &format!("/v2/{repo}/manifests/{}", image.manifest_digest),
            200,
            manifest_type,
            image.manifest.clone(),
        );
        self.route(
            &format!("/v2/{repo}/blobs/{}", image.config_digest),
            200,
            "application/octet-stream",
            image.config.clone(),
        );
        for (digest, bytes) in &image.layers {
            self.route(
                &format!("/v2/{repo}/blobs/{digest}"),
                200,
                "application/octet-stream",
                bytes.clone(),
            );
        }
    }
}

impl FakeRegistry {
    /// Serves the image tagged `name` in the OCI layout at `layout` (as
    /// umoci writes them) under `repo:tag`, blobs byte for byte; returns the
    /// layers' digests, bottom first.
    pub fn serve_oci_layout(
        &self,
        repo: &str,
        tag: &str,
        layout: &std::path::Path,
        name: &str,
    ) -> Vec<String> {
        let read_json = |path: std::path::PathBuf| -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
        };
        let blob = |digest: &str| {
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:"))
        };
        let index = read_json(layout.join("index.json"));
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {}", layout.display()));
        let digest = entry["digest"].as_str().unwrap();
        let manifest_bytes = std::fs::read(blob(digest)).unwrap();
        let manifest: serde_json::Value = serde_json::from_slice(&manifest_bytes).unwrap();
        let manifest_type = "application/vnd.oci.image.manifest.v1+json";
        for reference in [tag, digest] {
            self.route(
                &format!("/v2/{repo}/manifests/{reference}"),
                200,
                manifest_type,
                manifest_bytes.clone(),
            );
        }
        let mut digests = vec![manifest["config"]["digest"].as_str().unwrap().to_string()];
        digests.extend(
            manifest["layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["digest"].as_str().unwrap().to_string()),
        );
        for d in &digests {
            self.route(
                &format!("/v2/{repo}/blobs/{d}"),
                200,
                "application/octet-stream",
                std::fs::read(blob(d)).unwrap(),
            );
        }
        digests.split_off(1)
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Response = (u16, Vec<(String, String)>, Vec<u8>, Option<usize>);

fn respond(request: &str, state: &Mutex<State>, auth: &Mutex<Auth>, host: &str) -> Response {
    let path = request.split_whitespace().nth(1).unwrap_or("/").to_string();
    let authorization = request.lines().find_map(|l| {
        l.split_once(':')
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().to_string())
    });
    let route = path.split('?').next().unwrap_or("").to_string();
    *state.lock().unwrap().hits.entry(route.clone()).or_default() += 1;
    let basic = |user: &str, password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    };
    let auth = auth.lock().unwrap().clone();
    if route == "/token" {
        return match auth {
            Auth::Bearer { user: Some((u, p)) }
                if authorization.as_deref() != Some(basic(&u, &p).as_str()) =>
            {
                (401, vec![], b"bad credentials".to_vec(), None)
            }
            _ => (
                200,
                vec![("Content-Type".into(), "application/json".into())],
                format!("{{\"token\":\"{TOKEN}\",\"expires_in\":300}}").into_bytes(),
                None,
            ),
        };
    }
    let challenge = match &auth {
        Auth::None => None,
        Auth::Basic { user, password }
            if authorization.as_deref() != Some(basic(user, password).as_str()) =>
        {
            Some("Basic realm=\"fake\"".to_string())
        }
        Auth::Bearer { .. } if authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) => {
            let repo = route
                .trim_start_matches("/v2/")
                .split("/manifests/")
                .next()
                .unwrap_or("")
                .split("/blobs/")
                .next()
                .unwrap_or("");
            Some(format!(
                "Bearer realm=\"http://{host}/token\",service=\"fake\",scope=\"repository:{repo}:pull\""
            ))
        }
        _ => None,
    };
    if let Some(challenge) = challenge {
        return (
            401,
            vec![("WWW-Authenticate".into(), challenge)],
            b"{\"errors\":[{\"code\":\"UNAUTHORIZED\"}]}".to_vec(),
            None,
        );
    }
    let mut state = state.lock().unwrap();
    match state.routes.get_mut(&route) {
        Some(reply) if reply.fail_first > 0 => {
            reply.fail_first -= 1;
            (500, vec![], b"transient".to_vec(), None)
        }
        Some(reply) => {
            let mut headers = vec![("Content-Type".into(), reply.content_type.clone())];
            if reply.status == 200 {
                headers.push(("Docker-Content-Digest".into(), sha256(&reply.body)));
            }
            (reply.status, headers, reply.body.clone(), reply.stall_after)
        }
        None => (
            404,
            vec![],
            b"{\"errors\":[{\"code\":\"MANIFEST_UNKNOWN\"}]}".to_vec(),
            None,
        ),
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One tar entry written byte by byte (so hostile names survive).
pub fn raw_entry(name: &str, kind: u8, link: &str, data: &[u8]) -> Vec<u8> {
    raw_entry_mode(name, kind, link, data, 0o644)
}

/// `raw_entry` with a mode of its own.
pub fn raw_entry_mode(name: &str, kind: u8, link: &str, data: &[u8], mode: u32) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |v: u64, width: usize| format!("{v:0w$o}\0", w = width - 1).into_bytes();
    h[100..108].copy_from_slice(&octal(mode as u64, 8));
    h[108..116].copy_from_slice(&octal(0, 8));
    h[116..124].copy_from_slice(&octal(0, 8));
    h[124..136].copy_from_slice(&octal(data.len() as u64, 12));
    h[136..148].copy_from_slice(&octal(1_600_000_000, 12));
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| b as u32).sum();
    h[148..156].copy_from_slice(&format!("{sum:06o}\0 ").into_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// An image assembled in memory.
pub struct TestImage {
    pub manifest: Vec<u8>,
    pub manifest_digest: String,
    pub config: Vec<u8>,
    pub config_digest: String,
    /// (digest, gzip bytes)
    pub layers: Vec<(String, Vec<u8>)>,
}

/// Builds an image whose layers are the given raw tar entry lists; `lie` lets
/// a test make the config's diff_ids wrong.
pub fn image(layers: &[Vec<Vec<u8>>], lie_about_diff_ids: bool) -> TestImage {
    let tars: Vec<Vec<u8>> = layers
        .iter()
        .map(|entries| {
            let mut tar: Vec<u8> = entries.concat();
            tar.extend_from_slice(&[0u8; 1024]);
            tar
        })
        .collect();
    image_from_tars(&tars, lie_about_diff_ids, &["sh"])
}

/// Builds an image whose layers are the given tar streams, byte for byte
/// (for streams other builders make), with `cmd` as its command.
pub fn image_from_tars(tars: &[Vec<u8>], lie_about_diff_ids: bool, cmd: &[&str]) -> TestImage {
    let mut blobs = Vec::new();
    let mut diff_ids = Vec::new();
    for tar in tars {
        diff_ids.push(if lie_about_diff_ids {
            sha256(b"lie")
        } else {
            sha256(tar)
        });
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(tar).unwrap();
        let bytes = gz.finish().unwrap();
        blobs.push((sha256(&bytes), bytes));
    }
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": blobs.iter().map(|(d, b)| serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": b.len()
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    TestImage {
        manifest_digest: sha256(&manifest),
        manifest,
        config,
        config_digest,
        layers: blobs,
    }
}
