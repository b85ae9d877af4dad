//! A container's processes with their stdio streamed to a client: Exec (a
//! new process) and Attach (the container's own stdio, which its shim
//! holds). The transport (SPDY, WebSocket; `crate::stream`) hands over
//! channels; what flows through them is the same whatever it is.
//!
//! Exec starts its process as ExecSync does (`exec::ExecProcess`: criusd
//! itself, or `<runtime> exec`), with pipes or a terminal whose master end
//! criusd holds: resizes set its size, which the process sees as SIGWINCH.
//! The exit code comes back through the relay or the runtime, and a client
//! that goes away has the process killed.

use super::enter::Streams;
use super::exec::ExecProcess;
use super::{ContainerError, ContainerRecord, ContainerState};
use bytes::Bytes;
use crius_shim::attach;
use std::os::fd::AsRawFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The client's ends, as the transport made them.
pub struct ProcessIo {
    /// Input; the channel closes when the client's input ends.
    pub stdin: Option<mpsc::Receiver<Bytes>>,
    pub stdout: Option<mpsc::Sender<Bytes>>,
    /// Unused with a terminal (its output is all stdout).
    pub stderr: Option<mpsc::Sender<Bytes>>,
    /// Terminal sizes (width, height).
    pub resize: Option<mpsc::Receiver<(u16, u16)>>,
    /// Resolves when the client has gone.
    pub gone: oneshot::Receiver<()>,
}

/// How a streamed process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    /// The client went away first; the process was killed.
    ClientGone,
}

fn running(record: &ContainerRecord) -> Result<(), ContainerError> {
    if record.state != ContainerState::Running {
        return Err(ContainerError::Precondition(format!(
            "container {} is not running",
            record.id
        )));
    }
    Ok(())
}

/// Runs `cmd` in the container with its stdio streamed over `io`.
/// `enters_itself`: see `Containers::enters_itself`.
pub async fn exec(
    record: &ContainerRecord,
    cmd: &[String],
    tty: bool,
    io: ProcessIo,
    enters_itself: bool,
) -> Result<Ended, ContainerError> {
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        gone,
    } = io;
    let streams = Streams {
        stdin: stdin.is_some(),
        stdout: stdout.is_some(),
        stderr: stderr.is_some(),
        tty,
    };
    // A start held up by the container (its files, a stalled mount) ends
    // with the client.
    let mut gone = gone;
    let mut process = tokio::select! {
        started = ExecProcess::start(record, cmd, streams, enters_itself) => started?,
        _ = &mut gone => return Ok(Ended::ClientGone),
    };
    let runtime_error = |reason: String| ContainerError::Runtime {
        id: record.id.clone(),
        reason,
    };
    let mut pumps = tokio::task::JoinSet::new();
    if let Some(master) = process.terminal.take() {
        let clone = |f: &std::fs::File| f.try_clone().map_err(|e| runtime_error(e.to_string()));
        if let Some(resize) = resize {
            pumps.spawn(apply_resizes(resize, clone(&master)?));
        }
        if let Some(stdout) = stdout {
            pumps.spawn(copy_out(tokio::fs::File::from_std(clone(&master)?), stdout));
        }
        if let Some(stdin) = stdin {
            pumps.spawn(copy_in(stdin, tokio::fs::File::from_std(master)));
        }
    } else {
        if let (Some(rx), Some(pipe)) = (stdin, process.stdin.take()) {
            pumps.spawn(copy_in(rx, pipe));
        }
        if let (Some(tx), Some(pipe)) = (stdout, process.stdout.take()) {
            pumps.spawn(copy_out(pipe, tx));
        }
        if let (Some(tx), Some(pipe)) = (stderr, process.stderr.take()) {
            pumps.spawn(copy_out(pipe, tx));
        }
    }
    let status = tokio::select! {
        status = process.child.wait() => status,
        _ = gone => {
            process.kill();
            let _ = process.child.kill().await;
            pumps.abort_all();
            return Ok(Ended::ClientGone);
        }
    };
    let status = status.map_err(|e| runtime_error(format!("waiting for exec: {e}")))?;
    // Output still in the pipes goes to the client before the exit code.
    let drain = async {
        while let Some(done) = pumps.join_next().await {
            let _ = done;
        }
    };
    if tty {
        // The terminal's reader ends only when every holder closes it.
        let _ = tokio::time::timeout(std::time::Duration::from_millis(200), drain).await;
        pumps.abort_all();
    } else {
        drain.await;
    }
    Ok(Ended::Exited(process.exit_code(status, cmd)?))
}

/// Attaches `io` to the container's stdio, held by its shim; returns once
/// the container has exited (with its exit code when known) or the client
/// has gone.
pub async fn attach(
    record: &ContainerRecord,
    io: ProcessIo,
) -> Result<Option<Ended>, ContainerError> {
    running(record)?;
    let runtime_error = |reason: String| ContainerError::Runtime {
        id: record.id.clone(),
        reason,
    };
    let socket = record.dir.join("shim.json");
    let config: crius_shim::protocol::ShimConfig =
        serde_json::from_slice(&std::fs::read(&socket).map_err(|e| runtime_error(e.to_string()))?)
            .map_err(|e| runtime_error(e.to_string()))?;
    let mut conn = tokio::net::UnixStream::connect(&config.control_socket)
        .await
        .map_err(|e| runtime_error(format!("the container's shim does not answer: {e}")))?;
    let command = crius_shim::protocol::Command::Attach {
        stdin: io.stdin.is_some(),
    };
    conn.write_all(format!("{}\n", command.as_str()).as_bytes())
        .await
        .map_err(|e| runtime_error(e.to_string()))?;
    // The answer line, then frames.
    let mut buf = Vec::new();
    loop {
        let mut byte = [0u8; 1];
        let n = conn
            .read(&mut byte)
            .await
            .map_err(|e| runtime_error(e.to_string()))?;
        if n == 0 || byte[0] == b'\n' || buf.len() > 200 {
            break;
        }
        buf.push(byte[0]);
    }
    let answer = String::from_utf8_lossy(&buf).into_owned();
    if answer != "ok" {
        return Err(ContainerError::Precondition(format!(
            "attaching to container {}: {}",
            record.id,
            answer.trim_start_matches("error: ")
        )));
    }
    let (mut from_shim, to_shim) = conn.into_split();
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        gone,
    } = io;
    let to_shim = std::sync::Arc::new(tokio::sync::Mutex::new(to_shim));
    let mut inputs = tokio::task::JoinSet::new();
    if let Some(mut stdin) = stdin {
        let out = to_shim.clone();
        inputs.spawn(async move {
            while let Some(data) = stdin.recv().await {
                let mut frame = Vec::with_capacity(data.len() + 5);
                attach::encode(attach::STDIN, &data, &mut frame);
                if out.lock().await.write_all(&frame).await.is_err() {
                    return;
                }
            }
            let mut frame = Vec::new();
            attach::encode(attach::STDIN_CLOSE, &[], &mut frame);
            let _ = out.lock().await.write_all(&frame).await;
        });
    }
    if let Some(mut resize) = resize {
        let out = to_shim.clone();
        inputs.spawn(async move {
            while let Some((w, h)) = resize.recv().await {
                let mut frame = Vec::new();
                attach::encode(attach::RESIZE, &attach::resize_data(w, h), &mut frame);
                if out.lock().await.write_all(&frame).await.is_err() {
                    return;
                }
            }
        });
    }
    let output = async {
        let mut pending: Vec<u8> = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match from_shim.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            pending.extend_from_slice(&buf[..n]);
            let mut used = 0;
            while let Ok(Some((kind, range, len))) = attach::decode(&pending[used..]) {
                let data = Bytes::copy_from_slice(&pending[used..][range]);
                let target = match kind {
                    attach::STDOUT => stdout.as_ref(),
                    attach::STDERR => stderr.as_ref().or(stdout.as_ref()),
                    _ => None,
                };
                if let Some(tx) = target
                    && tx.send(data).await.is_err()
                {
                    return;
                }
                used += len;
            }
            pending.drain(..used);
        }
    };
    let ended = tokio::select! {
        () = output => None,
        _ = gone => Some(Ended::ClientGone),
    };
    inputs.abort_all();
    if ended.is_some() {
        return Ok(ended);
    }
    // The shim closes attached clients once the container has exited and
    // written its exit record.
    let exit = crius_shim::protocol::read_exit(&record.dir).map(|e| Ended::Exited(e.exit_code));
    Ok(exit)
}

async fn copy_in(mut rx: mpsc::Receiver<Bytes>, mut to: impl AsyncWrite + Unpin) {
    while let Some(data) = rx.recv().await {
        if to.write_all(&data).await.is_err() {
            return;
        }
    }
    let _ = to.shutdown().await;
}

async fn copy_out(mut from: impl AsyncRead + Unpin, tx: mpsc::Sender<Bytes>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if tx.send(Bytes::copy_from_slice(&buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn apply_resizes(mut rx: mpsc::Receiver<(u16, u16)>, terminal: std::fs::File) {
    while let Some((width, height)) = rx.recv().await {
        let size = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize struct we own, on our pty.
        unsafe { libc::ioctl(terminal.as_raw_fd(), libc::TIOCSWINSZ, &size) };
    }
}
