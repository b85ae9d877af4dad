//! A container's processes with their stdio streamed to a client: Exec (a
//! new process) and Attach (the container's own stdio, which its shim
//! holds). The transport (SPDY, WebSocket; `crate::stream`) hands over
//! channels; what flows through them is the same whatever it is.
//!
//! Exec without a terminal runs `<runtime> exec` with pipes, as ExecSync
//! does. With a terminal, criusd opens a pty and makes it the controlling
//! terminal of `<runtime> exec -t`, which gives the process a terminal of
//! its own and relays between the two (in raw mode, so Ctrl-C reaches the
//! process); a resize of criusd's pty reaches the runtime as SIGWINCH, and
//! the runtime resizes the process's terminal. Either way the runtime
//! returns the process's exit code, and a client that goes away has the
//! process killed.

use super::exec::{exec_process_file, kill_exec, runtime_failure};
use super::{ContainerError, ContainerRecord, ContainerState, runtime_of};
use bytes::Bytes;
use crius_shim::attach;
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
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
pub async fn exec(
    record: &ContainerRecord,
    cmd: &[String],
    tty: bool,
    io: ProcessIo,
) -> Result<Ended, ContainerError> {
    running(record)?;
    if cmd.is_empty() {
        return Err(ContainerError::Invalid("cmd is empty".into()));
    }
    let runtime_error = |reason: String| ContainerError::Runtime {
        id: record.id.clone(),
        reason,
    };
    let tag = &crate::ids::new_id()[..12];
    let files = super::exec::ExecFiles::new(&record.dir, tag);
    exec_process_file(&record.dir, cmd, tty, &files.process).map_err(runtime_error)?;
    let runtime = runtime_of(record);
    let mut command = super::exec::exec_command(record, &files, tty);
    command.kill_on_drop(true);
    let ProcessIo {
        stdin,
        stdout,
        stderr,
        resize,
        gone,
    } = io;
    let mut pumps = tokio::task::JoinSet::new();
    let mut child = if tty {
        let pty = nix::pty::openpty(None, None)
            .map_err(|e| runtime_error(format!("opening a terminal: {e}")))?;
        let slave = pty.slave;
        let slave_fd = slave.as_raw_fd();
        let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from);
        command
            .stdin(dup(&slave).map_err(|e| runtime_error(e.to_string()))?)
            .stdout(dup(&slave).map_err(|e| runtime_error(e.to_string()))?)
            .stderr(dup(&slave).map_err(|e| runtime_error(e.to_string()))?);
        // SAFETY: setsid and ioctl only, between fork and exec.
        unsafe {
            command.pre_exec(move || {
                if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command
            .spawn()
            .map_err(|e| runtime_error(format!("cannot run {}: {e}", runtime.binary.display())))?;
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let reader = tokio::fs::File::from_std(
            master
                .try_clone()
                .map_err(|e| runtime_error(e.to_string()))?,
        );
        if let Some(resize) = resize {
            let fd = master
                .try_clone()
                .map_err(|e| runtime_error(e.to_string()))?;
            pumps.spawn(apply_resizes(resize, fd));
        }
        if let Some(stdin) = stdin {
            pumps.spawn(copy_in(stdin, tokio::fs::File::from_std(master)));
        }
        if let Some(stdout) = stdout {
            pumps.spawn(copy_out(reader, stdout));
        }
        child
    } else {
        command
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(if stdout.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(if stderr.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = command
            .spawn()
            .map_err(|e| runtime_error(format!("cannot run {}: {e}", runtime.binary.display())))?;
        if let (Some(rx), Some(pipe)) = (stdin, child.stdin.take()) {
            pumps.spawn(copy_in(rx, pipe));
        }
        if let (Some(tx), Some(pipe)) = (stdout, child.stdout.take()) {
            pumps.spawn(copy_out(pipe, tx));
        }
        if let (Some(tx), Some(pipe)) = (stderr, child.stderr.take()) {
            pumps.spawn(copy_out(pipe, tx));
        }
        child
    };
    let status = tokio::select! {
        status = child.wait() => status,
        _ = gone => {
            kill_exec(&files.pid);
            let _ = child.kill().await;
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
    if let Some(message) = runtime_failure(&files.log) {
        return Err(runtime_error(format!("exec {cmd:?} failed: {message}")));
    }
    use std::os::unix::process::ExitStatusExt;
    Ok(Ended::Exited(
        status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255),
    ))
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
