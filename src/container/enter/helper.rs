//! criusd's side of the exec helper (`crius-enter`, the `enter/` crate):
//! its binary, opened once through a read-only view, and one run of it.
//!
//! The helper is criusd's sibling binary, bind-mounted read-only, opened
//! and the mount detached at start (`read_only_exe::read_only_view`), then
//! executed through `/proc/self/fd/N` of that handle. So its processes'
//! `/proc/<pid>/exe` cannot be opened for writing (CVE-2019-5736: a
//! command that makes the kernel load `/proc/self/exe` as its interpreter
//! gets a read-only file), the helper cannot be swapped on disk between
//! execs, and nothing is left mounted. A sealed memfd copy would do as well
//! but costs a copy of the binary in memory; a read-only view is what
//! criusd already uses for itself.
//!
//! Each run: a socketpair, its far end the helper's stdin; `/dev/null` as
//! its stdout and stderr; an empty environment; nothing else inherited
//! (every other descriptor of criusd is close-on-exec, and the helper closes
//! anything above fd 3 itself). Spawned without a pre-exec hook, so std uses
//! posix_spawn: no copy of criusd's memory runs at all. criusd then sends
//! the instructions with their descriptors and reads reports until the
//! socket closes, which it does at the command's exec (close-on-exec) or
//! when the helper fails or dies. All of it is async: a stuck helper holds
//! up no thread, and whoever awaits this decides how long to wait.

use crius_enter::protocol::{Instructions, Report, Step};
use crius_enter::scm;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use std::sync::OnceLock;
use tokio::io::{AsyncWriteExt, Interest};

static BINARY: OnceLock<OwnedFd> = OnceLock::new();

/// Opens `crius-enter` (beside criusd, else in PATH) through a read-only
/// view made in `scratch`; until this succeeds criusd does not enter
/// containers itself.
pub fn open(scratch: &Path) -> Result<(), String> {
    if BINARY.get().is_some() {
        return Ok(());
    }
    let binary = crate::handlers::helper_binary("crius-enter");
    let fd = crate::read_only_exe::read_only_view(&binary, scratch, "crius-enter.exe")?;
    let _ = BINARY.set(fd);
    Ok(())
}

/// Whether the helper was opened.
pub fn available() -> bool {
    BINARY.get().is_some()
}

/// A helper that has exec'd the command.
pub struct Started {
    /// The helper's relay: its exit status is the command's, a SIGTERM to
    /// it kills the command, and dropping it kills both.
    pub child: tokio::process::Child,
    /// The terminal's master end, when one was asked for.
    pub terminal: Option<OwnedFd>,
}

/// Runs the helper with `instructions` and `fds` (in the order
/// `Instructions::fd_count` names) until the command is exec'd. The error
/// is for the client.
pub async fn run(instructions: &Instructions, fds: &[BorrowedFd<'_>]) -> Result<Started, String> {
    let binary = BINARY.get().ok_or("the exec helper is not available")?;
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| format!("a socket for the exec helper: {e}"))?;
    let mut command = tokio::process::Command::new(format!("/proc/self/fd/{}", binary.as_raw_fd()));
    command
        .arg0("crius-enter")
        .env_clear()
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .map_err(|e| format!("starting the exec helper: {e}"))?;
    // Our copy of the helper's end goes with the command.
    drop(command);
    ours.set_nonblocking(true)
        .map_err(|e| format!("exec helper socket: {e}"))?;
    let socket =
        tokio::net::UnixStream::from_std(ours).map_err(|e| format!("exec helper socket: {e}"))?;
    let helper_gone = |e: std::io::Error| format!("sending the exec helper its instructions: {e}");
    let message = instructions.encode();
    let sent = loop {
        socket.writable().await.map_err(helper_gone)?;
        match socket.try_io(Interest::WRITABLE, || {
            scm::send(socket.as_fd(), &message, fds)
        }) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            other => break other.map_err(helper_gone)?,
        }
    };
    let mut socket = socket;
    socket
        .write_all(&message[sent..])
        .await
        .map_err(helper_gone)?;
    let (bytes, mut received) = read_reports(&socket).await?;
    let reports =
        Report::decode_all(&bytes).map_err(|e| format!("the exec helper's report: {e}"))?;
    let mut terminal = None;
    for report in reports {
        match report {
            Report::Failed {
                step,
                errno,
                detail,
            } => {
                // "exec: "x": executable file not found in $PATH" says it all.
                if step == Step::FindCommand {
                    return Err(detail);
                }
                return Err(Report::message(step, errno, &detail));
            }
            Report::Terminal if !received.is_empty() => terminal = Some(received.remove(0)),
            Report::Terminal => return Err("no terminal from the exec helper".into()),
        }
    }
    if instructions.tty && terminal.is_none() {
        // The helper died before it could say anything.
        return Err("the exec helper exited before the command started".into());
    }
    Ok(Started { child, terminal })
}

/// Everything the helper writes until the socket closes, and the
/// descriptors that came with it.
async fn read_reports(socket: &tokio::net::UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), String> {
    let mut bytes = Vec::new();
    let mut fds = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        socket
            .readable()
            .await
            .map_err(|e| format!("the exec helper's report: {e}"))?;
        let read = socket.try_io(Interest::READABLE, || {
            scm::receive(socket.as_fd(), &mut buffer, &mut fds)
        });
        match read {
            Ok(0) => return Ok((bytes, fds)),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            // The helper was killed mid-write.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Ok((bytes, fds));
            }
            Err(e) => return Err(format!("the exec helper's report: {e}")),
        }
    }
}
