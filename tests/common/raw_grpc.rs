//! One unary gRPC call over a bare HTTP/2 connection, for tests that must
//! see what the server answers: tonic's client keeps `grpc-timeout` itself
//! and would answer first, with its own error.

use bytes::{Buf, Bytes};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::path::Path;

/// Calls `method` (`/runtime.v1.ImageService/PullImage`) with `grpc-timeout`
/// set to `timeout` (e.g. "800m"); returns the server's status code and
/// message, and the reply's bytes when the code is 0.
pub async fn call<M: prost::Message>(
    socket: &Path,
    method: &str,
    message: &M,
    timeout: &str,
) -> (i32, String, Vec<u8>) {
    let stream = tokio::net::UnixStream::connect(socket).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let encoded = message.encode_to_vec();
    let mut body = vec![0u8];
    body.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
    body.extend_from_slice(&encoded);
    let request = http::Request::post(format!("http://localhost{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .header("grpc-timeout", timeout)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let mut data = collected.to_bytes();
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .or_else(|| trailers.get(name))
            .map(|v| v.to_str().unwrap().to_string())
    };
    let code: i32 = header("grpc-status").expect("grpc-status").parse().unwrap();
    let message = header("grpc-message").unwrap_or_default();
    let reply = if data.len() >= 5 {
        data.advance(5);
        data.to_vec()
    } else {
        Vec::new()
    };
    (code, percent_decode(&message), reply)
}

/// grpc-message is percent-encoded.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
