//! The `/metrics` endpoint: HTTP/1.1 on `[metrics] address` (loopback by
//! default, off when empty), and a small client that fetches it.
//!
//! An address that cannot be bound (a port already taken) does not stop
//! criusd: metrics are for watching the node, and refusing to serve the CRI
//! over a monitoring port would stop kubelet from running any pod. criusd
//! logs the error, serves the CRI without metrics, and reports the error in
//! Status's verbose info (`metrics.error`), where `criusctl metrics` shows it.

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// The one path served.
pub const PATH: &str = "/metrics";

/// Whether and where metrics are served, for Status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Serving {
    /// `[metrics] address` is empty.
    Off,
    /// Serving at this address (the real port when the config said 0).
    At(SocketAddr),
    /// The address could not be bound: why.
    Failed(String),
}

/// What Status reports about the endpoint, set once at start.
#[derive(Debug, Default)]
pub struct Endpoint {
    serving: OnceLock<Serving>,
}

impl Endpoint {
    pub fn set(&self, serving: Serving) {
        let _ = self.serving.set(serving);
    }

    pub fn serving(&self) -> Option<&Serving> {
        self.serving.get()
    }

    /// Status's verbose `metrics` entry.
    pub fn to_json(&self) -> serde_json::Value {
        match self.serving() {
            None => serde_json::json!({"enabled": false, "reason": "not started"}),
            Some(Serving::Off) => {
                serde_json::json!({"enabled": false, "reason": "[metrics] address is empty"})
            }
            Some(Serving::At(addr)) => serde_json::json!({
                "enabled": true,
                "address": addr.to_string(),
                "url": format!("http://{addr}{PATH}"),
            }),
            Some(Serving::Failed(error)) => serde_json::json!({"enabled": false, "error": error}),
        }
    }
}

/// Binds `address` ("" is off); a failure is reported, not returned, so
/// that criusd goes on serving the CRI (see the module doc).
pub async fn bind(address: &str) -> (Serving, Option<TcpListener>) {
    if address.is_empty() {
        return (Serving::Off, None);
    }
    let bound = match TcpListener::bind(address).await {
        Ok(listener) => listener.local_addr().map(|addr| (addr, listener)),
        Err(e) => Err(e),
    };
    match bound {
        Ok((addr, listener)) => (Serving::At(addr), Some(listener)),
        Err(e) => {
            let error = format!("cannot listen on [metrics] address {address}: {e}");
            tracing::error!(
                error = %error,
                "serving the CRI without the metrics endpoint"
            );
            (Serving::Failed(error), None)
        }
    }
}

/// Serves `/metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "metrics endpoint: accepting failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| async move {
                Ok::<_, Infallible>(answer(request.method(), request.uri().path()).await)
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .header_read_timeout(Duration::from_secs(30))
                .timer(hyper_util::rt::TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

async fn answer(method: &Method, path: &str) -> http::Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &str, body: String| {
        http::Response::builder()
            .status(status)
            .header(header::CONTENT_TYPE, content_type)
            .body(Full::new(Bytes::from(body)))
            .expect("valid response")
    };
    let text = "text/plain; charset=utf-8";
    if path != PATH {
        return reply(
            StatusCode::NOT_FOUND,
            text,
            format!("not found: metrics are at {PATH}\n"),
        );
    }
    if method != Method::GET && method != Method::HEAD {
        return reply(
            StatusCode::METHOD_NOT_ALLOWED,
            text,
            format!("{method} is not allowed on {PATH}: use GET\n"),
        );
    }
    // Counting live objects reads records and shims' files.
    match tokio::task::spawn_blocking(super::daemon::encode).await {
        Ok(body) => reply(StatusCode::OK, super::daemon::CONTENT_TYPE, body),
        Err(e) => reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            text,
            format!("encoding metrics failed: {e}\n"),
        ),
    }
}

/// Why [`fetch`] got no metrics.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("cannot connect to the metrics endpoint at {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("metrics endpoint at {address}: {detail}")]
    Http { address: String, detail: String },
    #[error("metrics endpoint at {address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
}

/// GETs `http://<address>/metrics` and returns the text.
pub async fn fetch(address: &str, timeout: Duration) -> Result<String, FetchError> {
    tokio::time::timeout(timeout, fetch_now(address))
        .await
        .unwrap_or_else(|_| {
            Err(FetchError::Timeout {
                address: address.to_string(),
                timeout,
            })
        })
}

async fn fetch_now(address: &str) -> Result<String, FetchError> {
    let http = |detail: String| FetchError::Http {
        address: address.to_string(),
        detail,
    };
    let stream = TcpStream::connect(address)
        .await
        .map_err(|source| FetchError::Connect {
            address: address.to_string(),
            source,
        })?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| http(e.to_string()))?;
    let driver = tokio::spawn(connection);
    let request = http::Request::get(PATH)
        .header(header::HOST, address)
        .body(http_body_util::Empty::<Bytes>::new())
        .map_err(|e| http(e.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| http(e.to_string()))?;
    let status = response.status();
    let body = read_body(response.into_body())
        .await
        .map_err(|e| http(e.to_string()))?;
    driver.abort();
    if !status.is_success() {
        return Err(http(format!("{status}: {}", body.trim())));
    }
    Ok(body)
}

async fn read_body(body: Incoming) -> Result<String, hyper::Error> {
    let bytes = body.collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn serves_metrics_and_refuses_other_paths_and_methods() {
        let (serving, listener) = bind("127.0.0.1:0").await;
        let Serving::At(addr) = serving else {
            panic!("not bound: {serving:?}");
        };
        let server = tokio::spawn(serve(listener.unwrap()));
        let text = fetch(&addr.to_string(), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(text.contains("# TYPE crius_build_info gauge"), "{text}");

        let other = answer(&Method::GET, "/").await;
        assert_eq!(other.status(), StatusCode::NOT_FOUND);
        let post = answer(&Method::POST, PATH).await;
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        server.abort();
    }

    #[tokio::test]
    async fn a_taken_port_is_reported_not_fatal() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap().to_string();
        let (serving, listener) = bind(&address).await;
        assert!(listener.is_none());
        let Serving::Failed(error) = &serving else {
            panic!("bound a taken port: {serving:?}");
        };
        assert!(error.contains(&address) && error.contains("[metrics] address"));
        let endpoint = Endpoint::default();
        endpoint.set(serving.clone());
        assert_eq!(endpoint.to_json()["error"], error.as_str());

        assert_eq!(bind("").await.0, Serving::Off);
        let err = fetch(&address, Duration::from_millis(300))
            .await
            .unwrap_err();
        // Something listens there, but it never answers HTTP.
        assert!(
            matches!(err, FetchError::Timeout { .. } | FetchError::Http { .. }),
            "{err}"
        );
    }
}
