//! The HTTP/2 side of the gRPC server: connections from the socket, and each
//! call under its deadline.
//!
//! tonic's own server enforces a call's `grpc-timeout` but answers
//! `Cancelled: Timeout expired`, where kubelet and critest expect
//! `DeadlineExceeded`. So criusd serves tonic's routes over hyper itself and
//! keeps deadlines here: when one passes, the call's future is dropped (its
//! async work stops at its next await; blocking steps already handed to a
//! worker finish and roll back or complete as they would on their own) and
//! the answer is `DeadlineExceeded` naming the method.

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::net::UnixListener;
use tonic::Status;
use tonic::body::Body;
use tonic::service::Routes;
use tower::Service;

/// Serves `routes` on `listener` until `shutdown`, then waits for the calls
/// under way (the caller bounds that wait).
pub async fn serve(routes: Routes, listener: UnixListener, shutdown: impl Future<Output = ()>) {
    let routes = routes.prepare();
    let graceful = GracefulShutdown::new();
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    http2.timer(hyper_util::rt::TokioTimer::new());
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of fds, usually: let some calls finish first.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(Deadline {
            inner: routes.clone(),
        });
        let connection = graceful.watch(http2.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "client connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// What the transport knows of the call a task serves.
#[derive(Clone, Copy)]
struct Call {
    /// When its headers arrived: its duration counts from here, so a call
    /// cut off by its deadline lasted at least that deadline.
    received: Instant,
    /// When it must have answered, if its client said.
    deadline: Option<Instant>,
}

tokio::task_local! {
    static CALL: Call;
}

/// When the call this task serves arrived (`None` outside the transport,
/// as in tests that call handlers directly).
pub(super) fn call_received() -> Option<Instant> {
    CALL.try_with(|call| call.received).ok()
}

/// When the call this task serves must have answered, if its client said.
pub(super) fn deadline() -> Option<Instant> {
    CALL.try_with(|call| call.deadline).ok().flatten()
}

/// Whether the deadline of the call this task serves has passed (`false`
/// without one): a call dropped unanswered was cut short by it, not by
/// its client going away.
pub(super) fn deadline_passed() -> bool {
    CALL.try_with(|call| call.deadline.is_some_and(|by| Instant::now() >= by))
        .unwrap_or(false)
}

/// Runs each call under the deadline its client sent.
#[derive(Clone)]
struct Deadline<S> {
    inner: S,
}

type CallFuture = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Infallible>> + Send>>;

impl<S> Service<http::Request<Incoming>> for Deadline<S>
where
    S: Service<http::Request<Incoming>, Response = http::Response<Body>, Error = Infallible>
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = CallFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Incoming>) -> CallFuture {
        let received = Instant::now();
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_grpc_timeout);
        let method = request.uri().path().to_string();
        let call = self.inner.call(request);
        let by = deadline.map(|deadline| received + deadline);
        let call = CALL.scope(
            Call {
                received,
                deadline: by,
            },
            call,
        );
        Box::pin(async move {
            let (Some(deadline), Some(by)) = (deadline, by) else {
                return call.await;
            };
            match tokio::time::timeout_at(by.into(), call).await {
                Ok(answer) => answer,
                Err(_) => {
                    tracing::warn!(%method, ?deadline, code = "DeadlineExceeded", "rpc failed");
                    Ok(Status::deadline_exceeded(format!(
                        "{method}: the call's deadline ({deadline:?}) passed before it finished"
                    ))
                    .into_http())
                }
            }
        })
    }
}

/// gRPC's `grpc-timeout`: at most 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("5S"), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_grpc_timeout("1500m"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(
            parse_grpc_timeout("99999999n"),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "S", "5", "5s", "123456789S", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }
}
