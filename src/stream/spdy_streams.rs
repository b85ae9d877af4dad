//! Exec, attach and port-forward over SPDY/3.1: not served yet (the server
//! answers SPDY upgrades 400 while `READY` is false).

use super::remotecommand::Command;
use crate::runtime::Runtime;
use std::sync::Arc;

pub const READY: bool = false;
use tokio::io::{AsyncRead, AsyncWrite};

pub async fn remote_command<IO>(_io: IO, _protocol: &str, _runtime: Arc<Runtime>, _command: Command)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
}

pub async fn port_forward<IO>(_io: IO, _sandbox_id: String, _netns: Option<std::path::PathBuf>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
}
