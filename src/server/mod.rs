//! The gRPC layer: thin adapters from CRI calls to the domain modules.
//!
//! Every RPC goes through [`rpc`], which gives it a tracing span (method, object
//! id), its duration and result code in the log and in the metrics (a
//! streaming call counts when it opens); domain errors become gRPC statuses
//! in [`to_status`] and nowhere else.

mod containers;
mod events;
mod image_service;
mod pod_metrics;
mod runtime_service;
mod stats;
mod transport;

use crate::client::MAX_MESSAGE_BYTES;
use crate::cri::image_service_server::ImageServiceServer;
use crate::cri::runtime_service_server::RuntimeServiceServer;
use crate::error::{Classify, ErrorKind};
use crate::runtime::Runtime;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::UnixListener;
use tonic::service::Routes;
use tonic::{Code, Response, Status};
use tracing::Instrument;

/// Items per message of the Stream* RPCs.
pub(crate) const STREAM_CHUNK: usize = 200;

/// The response type of server-streaming RPCs.
pub type BoxStream<T> =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send + 'static>>;

/// A Stream* RPC's answer: `items` in messages of `STREAM_CHUNK`, each made
/// by `message`.
pub(crate) fn chunked<T: Clone, R: Send + 'static>(
    items: &[T],
    message: impl Fn(Vec<T>) -> R,
) -> BoxStream<R> {
    let messages: Vec<Result<R, Status>> = items
        .chunks(STREAM_CHUNK)
        .map(|chunk| Ok(message(chunk.to_vec())))
        .collect();
    Box::pin(tokio_stream::iter(messages))
}

/// Serves RuntimeService and ImageService on `listener` until `shutdown`,
/// then waits for the calls under way.
pub async fn serve(
    runtime: Arc<Runtime>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    let service = CriService { runtime };
    let routes = Routes::new(
        RuntimeServiceServer::new(service.clone())
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
    .add_service(
        ImageServiceServer::new(service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    );
    transport::serve(routes, listener, shutdown).await
}

/// Implements both CRI services over the shared runtime.
#[derive(Clone)]
pub struct CriService {
    runtime: Arc<Runtime>,
}

impl CriService {
    /// Runs blocking domain work (disk, fsync, child processes) off the async
    /// workers.
    async fn blocking<T, E>(
        &self,
        work: impl FnOnce(&Runtime) -> Result<T, E> + Send + 'static,
    ) -> Result<T, Status>
    where
        T: Send + 'static,
        E: Classify + Send + 'static,
    {
        let runtime = self.runtime.clone();
        tokio::task::spawn_blocking(move || work(&runtime))
            .await
            .map_err(|e| Status::internal(format!("worker failed: {e}")))?
            .map_err(to_status)
    }
}

/// Runs one RPC in its span and logs how it ended.
pub(crate) async fn rpc<T>(
    method: &'static str,
    object: &str,
    call: impl Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    let span = tracing::info_span!("rpc", method, id = object);
    let started = transport::call_received().unwrap_or_else(Instant::now);
    let mut unanswered = Unanswered {
        method,
        started: Some(started),
    };
    let result = call.instrument(span.clone()).await;
    unanswered.started = None;
    let elapsed = started.elapsed();
    let code = match &result {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    };
    crate::metrics::daemon::rpc(method, code_name(code), elapsed);
    let elapsed_ms = elapsed.as_secs_f64() * 1e3;
    span.in_scope(|| match &result {
        Ok(_) => tracing::debug!(code = "Ok", elapsed_ms, "rpc done"),
        Err(s) if s.code() == Code::Unimplemented => {
            tracing::info!(code = ?s.code(), elapsed_ms, "rpc not implemented")
        }
        Err(s) => tracing::warn!(code = ?s.code(), message = s.message(), elapsed_ms, "rpc failed"),
    });
    result.map(Response::new)
}

/// Counts a call whose future is dropped before it answers: its deadline
/// passed (the transport answers `DeadlineExceeded`) or its client left.
struct Unanswered {
    method: &'static str,
    /// `None` once the call answered.
    started: Option<Instant>,
}

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            let code = if transport::deadline_passed() {
                Code::DeadlineExceeded
            } else {
                Code::Cancelled
            };
            crate::metrics::daemon::rpc(self.method, code_name(code), started.elapsed());
        }
    }
}

/// A gRPC code's canonical name, as Prometheus exporters of gRPC servers
/// label it ("OK", "NotFound", ...).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The one place where domain errors become gRPC statuses.
pub fn to_status<E: Classify>(error: E) -> Status {
    let code = match error.kind() {
        ErrorKind::InvalidArgument => Code::InvalidArgument,
        ErrorKind::NotFound => Code::NotFound,
        ErrorKind::AlreadyExists => Code::AlreadyExists,
        ErrorKind::FailedPrecondition => Code::FailedPrecondition,
        ErrorKind::DeadlineExceeded => Code::DeadlineExceeded,
        ErrorKind::Unauthenticated => Code::Unauthenticated,
        ErrorKind::PermissionDenied => Code::PermissionDenied,
        ErrorKind::Unavailable => Code::Unavailable,
        ErrorKind::Unimplemented => Code::Unimplemented,
        ErrorKind::Internal => Code::Internal,
    };
    Status::new(code, error.to_string())
}
