//! The streaming server's HTTP side: `/exec/<token>`, `/attach/<token>` and
//! `/portforward/<token>`, each upgraded to SPDY/3.1 (`Upgrade: SPDY/3.1`,
//! the sub-protocol from `X-Stream-Protocol-Version`) or to WebSocket (the
//! sub-protocol from `Sec-WebSocket-Protocol`). A token is taken on the
//! first request that names it, whatever happens next: an unknown, reused
//! or expired one gets 404 and nothing runs.

use super::remotecommand::Command;
use super::tokens::Request;
use super::websocket::{self, Framing};
use crate::runtime::Runtime;
use bytes::Bytes;
use http::{HeaderMap, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

type Response = http::Response<Full<Bytes>>;

/// SPDY remote command protocols, most preferred first.
pub const SPDY_REMOTE_COMMAND: &[&str] = &[
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
pub const SPDY_PORT_FORWARD: &[&str] = &["portforward.k8s.io"];
/// SPDY port-forward carried in WebSocket binary messages.
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

/// Serves streams on `listener` until the task is dropped, inside TLS when
/// there is an acceptor.
pub async fn serve(runtime: Arc<Runtime>, listener: TcpListener, tls: Option<TlsAcceptor>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "streaming server: accepting failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let runtime = runtime.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(runtime, stream).await;
            };
            // A client that never finishes its handshake holds only this task.
            match tokio::time::timeout(Duration::from_secs(30), tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(runtime, stream).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "streaming TLS handshake failed"),
                Err(_) => tracing::debug!("streaming TLS handshake timed out"),
            }
        });
    }
}

async fn serve_connection<S>(runtime: Arc<Runtime>, stream: S)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let runtime = runtime.clone();
        async move { Ok::<_, Infallible>(handle(runtime, request)) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(Duration::from_secs(30))
        .timer(hyper_util::rt::TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        tracing::debug!(error = %e, "streaming connection ended with an error");
    }
}

fn plain(status: StatusCode, text: &str) -> Response {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(Full::new(Bytes::from(format!("{text}\n"))))
        .expect("valid response")
}

/// Every value of a header, comma-separated lists split.
fn values(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect()
}

fn handle(runtime: Arc<Runtime>, mut request: http::Request<Incoming>) -> Response {
    let path = request.uri().path().trim_start_matches('/').to_string();
    let mut parts = path.split('/');
    let (Some(route), Some(token), None) = (parts.next(), parts.next(), parts.next()) else {
        return plain(StatusCode::NOT_FOUND, "not found");
    };
    let Some(taken) = runtime.streaming.take(route, token) else {
        return plain(
            StatusCode::NOT_FOUND,
            "unknown, used or expired streaming URL: ask for a new one",
        );
    };
    let upgrade = request
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let on_upgrade = hyper::upgrade::on(&mut request);
    let headers = request.headers().clone();
    if upgrade == "websocket" {
        websocket_upgrade(runtime, taken, &headers, request.uri().query(), on_upgrade)
    } else if upgrade.starts_with("spdy/3") {
        spdy_upgrade(runtime, taken, &headers, on_upgrade)
    } else {
        plain(
            StatusCode::BAD_REQUEST,
            "streams need an upgrade to SPDY/3.1 or websocket",
        )
    }
}

fn websocket_upgrade(
    runtime: Arc<Runtime>,
    taken: Request,
    headers: &HeaderMap,
    query: Option<&str>,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Response {
    let Some(key) = headers.get("sec-websocket-key") else {
        return plain(StatusCode::BAD_REQUEST, "websocket upgrade without a key");
    };
    let offered = values(headers, "sec-websocket-protocol");
    // client-go's WebSocket port-forward tunnels a SPDY session through
    // binary messages.
    if matches!(taken, Request::PortForward(_)) && offered.iter().any(|p| p == SPDY_TUNNEL) {
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        tokio::spawn(async move {
            let Ok(upgraded) = on_upgrade.await else {
                return;
            };
            let ws =
                WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
            if let Request::PortForward(r) = taken {
                let netns = pod_netns(&runtime, &r.pod_sandbox_id);
                let io = websocket::byte_stream(ws);
                super::spdy_streams::port_forward(io, r.pod_sandbox_id, netns).await;
            }
        });
        return http::Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "Upgrade")
            .header(header::UPGRADE, "websocket")
            .header("Sec-WebSocket-Accept", accept)
            .header("Sec-WebSocket-Protocol", SPDY_TUNNEL)
            .body(Full::new(Bytes::new()))
            .expect("valid response");
    }
    let supported = match taken {
        Request::PortForward(_) => Framing::PORT_FORWARD,
        _ => Framing::REMOTE_COMMAND,
    };
    let Some((protocol, framing)) = Framing::choose(&offered, supported) else {
        return plain(
            StatusCode::BAD_REQUEST,
            &format!("none of the websocket protocols {offered:?} is supported"),
        );
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    // Port-forward's ports: the URL's `?port=` parameters, else the request's.
    let query_ports: Vec<u16> = query
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.strip_prefix("port="))
        .filter_map(|p| p.parse().ok())
        .collect();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        match taken {
            Request::PortForward(r) => {
                let ports = if query_ports.is_empty() {
                    r.port.iter().map(|&p| p as u16).collect()
                } else {
                    query_ports
                };
                let netns = pod_netns(&runtime, &r.pod_sandbox_id);
                websocket::port_forward(ws, framing, r.pod_sandbox_id, netns, ports).await;
            }
            other => {
                if let Some(command) = Command::of(&other) {
                    websocket::remote_command(ws, framing, runtime, command).await;
                }
            }
        }
    });
    let mut response = http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "websocket")
        .header("Sec-WebSocket-Accept", accept);
    if !protocol.is_empty() {
        response = response.header("Sec-WebSocket-Protocol", protocol);
    }
    response
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

fn spdy_upgrade(
    runtime: Arc<Runtime>,
    taken: Request,
    headers: &HeaderMap,
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Response {
    let offered = values(headers, "x-stream-protocol-version");
    let supported = match taken {
        Request::PortForward(_) => SPDY_PORT_FORWARD,
        _ => SPDY_REMOTE_COMMAND,
    };
    // The first of the client's that we speak; none offered means the
    // oldest protocol, as in kubelet's server.
    let protocol = if offered.is_empty() {
        ""
    } else {
        match offered
            .iter()
            .find_map(|o| supported.iter().find(|s| **s == o.as_str()))
        {
            Some(p) => p,
            None => {
                return http::Response::builder()
                    .status(StatusCode::FORBIDDEN)
                    .header("X-Accepted-Stream-Protocol-Versions", supported.join(", "))
                    .body(Full::new(Bytes::from(format!(
                        "none of the protocols {offered:?} is supported\n"
                    ))))
                    .expect("valid response");
            }
        }
    };
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY upgrade failed");
                return;
            }
        };
        let io = TokioIo::new(upgraded);
        match taken {
            Request::PortForward(r) => {
                let netns = pod_netns(&runtime, &r.pod_sandbox_id);
                super::spdy_streams::port_forward(io, r.pod_sandbox_id, netns).await;
            }
            other => {
                if let Some(command) = Command::of(&other) {
                    super::spdy_streams::remote_command(io, protocol, runtime, command).await;
                }
            }
        }
    });
    let mut response = http::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    if !protocol.is_empty() {
        response = response.header("X-Stream-Protocol-Version", protocol);
    }
    response
        .body(Full::new(Bytes::new()))
        .expect("valid response")
}

/// The pod's network namespace; `None` for the node's.
fn pod_netns(runtime: &Runtime, sandbox_id: &str) -> Option<std::path::PathBuf> {
    runtime
        .sandboxes
        .get(sandbox_id)
        .ok()
        .and_then(|s| s.namespaces.network)
}
