//! The streaming server: Exec, Attach and PortForward answer a URL on it,
//! and the client (kubelet's proxy, kubectl through the API server, crictl)
//! connects there with SPDY/3.1 or WebSocket.
//!
//! - `tokens`: the single-use, expiring, bounded request cache behind URLs.
//! - `server`: the HTTP listener: routes, token checks, protocol choice and
//!   the upgrade; nothing runs for an unknown, reused or expired token.
//! - `spdy`: the SPDY/3.1 codec and session (knows nothing of Kubernetes);
//!   `spdy_streams`: exec/attach/port-forward over it.
//! - `websocket`: the same over the channel protocols.
//! - `remotecommand`, `portforward`, `status`: what the transports share.
//!
//! The container's side is `crate::container::streams`.

pub mod portforward;
pub mod remotecommand;
mod server;
pub mod spdy;
mod spdy_streams;
pub mod status;
pub mod tls;
pub mod tokens;
pub mod websocket;

pub use server::serve;

use crate::cri;
use crate::error::{Classify, ErrorKind};
use crate::runtime::Runtime;
use std::sync::OnceLock;
use tokens::{Request, Tokens};

#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error(transparent)]
    Full(#[from] tokens::Full),
    #[error("the streaming server is not serving")]
    NotServing,
}

impl Classify for StreamError {
    fn kind(&self) -> ErrorKind {
        match self {
            StreamError::Invalid(_) => ErrorKind::InvalidArgument,
            StreamError::NotFound(_) => ErrorKind::NotFound,
            StreamError::Precondition(_) => ErrorKind::FailedPrecondition,
            StreamError::Full(_) | StreamError::NotServing => ErrorKind::Unavailable,
        }
    }
}

/// Where streams are served and what their tokens stand for.
#[derive(Default)]
pub struct Streaming {
    tokens: Tokens,
    /// `http://address:port`, once the listener is bound.
    base: OnceLock<String>,
}

impl Streaming {
    pub fn set_base(&self, base: String) {
        let _ = self.base.set(base);
    }

    pub fn base(&self) -> Option<&str> {
        self.base.get().map(String::as_str)
    }

    pub(crate) fn take(&self, route: &str, token: &str) -> Option<Request> {
        self.tokens.take(route, token)
    }

    fn url(&self, request: Request) -> Result<String, StreamError> {
        let base = self.base().ok_or(StreamError::NotServing)?;
        let route = request.route();
        let token = self.tokens.insert(request)?;
        Ok(format!("{base}/{route}/{token}"))
    }

    /// Exec: the request checked, then its URL.
    pub fn exec_url(&self, rt: &Runtime, r: cri::ExecRequest) -> Result<String, StreamError> {
        if r.cmd.is_empty() || r.cmd.iter().all(|w| w.is_empty()) {
            return Err(StreamError::Invalid("cmd is empty".into()));
        }
        check_streams(r.stdin, r.stdout, r.stderr, r.tty)?;
        running(rt, &r.container_id)?;
        self.url(Request::Exec(r))
    }

    /// Attach: the request checked, then its URL.
    pub fn attach_url(&self, rt: &Runtime, r: cri::AttachRequest) -> Result<String, StreamError> {
        check_streams(r.stdin, r.stdout, r.stderr, r.tty)?;
        let record = running(rt, &r.container_id)?;
        if r.stdin && !record.config.stdin {
            return Err(StreamError::Precondition(format!(
                "stdin: container {} was not created with stdin",
                record.id
            )));
        }
        if r.tty != record.config.tty {
            return Err(StreamError::Invalid(format!(
                "tty: container {} was created with tty = {}",
                record.id, record.config.tty
            )));
        }
        self.url(Request::Attach(r))
    }

    /// PortForward: the pod checked, then the URL.
    pub fn port_forward_url(
        &self,
        rt: &Runtime,
        r: cri::PortForwardRequest,
    ) -> Result<String, StreamError> {
        let sandbox = rt
            .sandboxes
            .get(&r.pod_sandbox_id)
            .map_err(|e| StreamError::NotFound(e.to_string()))?;
        if sandbox.state != crate::sandbox::SandboxState::Ready {
            return Err(StreamError::Precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            )));
        }
        for (i, port) in r.port.iter().enumerate() {
            if !(1..=65535).contains(port) {
                return Err(StreamError::Invalid(format!(
                    "port[{i}]: {port} is not a TCP port"
                )));
            }
        }
        self.url(Request::PortForward(cri::PortForwardRequest {
            pod_sandbox_id: sandbox.id,
            port: r.port,
        }))
    }
}

/// The CRI's rules for which streams a request may ask for.
fn check_streams(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> Result<(), StreamError> {
    if !(stdin || stdout || stderr) {
        return Err(StreamError::Invalid(
            "one of stdin, stdout and stderr must be true".into(),
        ));
    }
    if tty && stderr {
        return Err(StreamError::Invalid(
            "stderr must be false with tty: a terminal has one output".into(),
        ));
    }
    Ok(())
}

fn running(
    rt: &Runtime,
    id: &str,
) -> Result<crate::container::record::ContainerRecord, StreamError> {
    let record = rt.containers.observe(id).map_err(|e| match e.kind() {
        ErrorKind::NotFound => StreamError::NotFound(e.to_string()),
        _ => StreamError::Invalid(e.to_string()),
    })?;
    if record.state != crate::container::record::ContainerState::Running {
        return Err(StreamError::Precondition(format!(
            "container {} is not running",
            record.id
        )));
    }
    Ok(record)
}
