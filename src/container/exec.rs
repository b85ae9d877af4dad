//! ExecSync: a command run in a running container, its output collected
//! (bounded), killed when its timeout expires; and the start of an exec's
//! process, by criusd's helper (`enter`) or through `<runtime> exec`.

use super::enter::{self, Streams};
use super::{ContainerError, ContainerRecord, ContainerState, runtime_of};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::time::Instant;

/// Output kept per stream; the rest is read and dropped so the command
/// never blocks on a full pipe.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Runs `cmd` in the container; `timeout` of `None` waits forever. The
/// timeout counts from `since` (the request's arrival) and covers the
/// start too: a start that has not exec'd the command by then is killed
/// (dropping it kills the helper by its pid), a command that has not ended
/// is killed, and the error is `DeadlineExceeded`, which kubelet reads as a
/// probe timeout. `enters_itself`: see `Containers::enters_itself`.
pub async fn exec_sync(
    record: &ContainerRecord,
    cmd: Vec<String>,
    timeout: Option<Duration>,
    since: Instant,
    enters_itself: bool,
) -> Result<ExecOutput, ContainerError> {
    let streams = Streams {
        stdin: false,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let deadline = timeout.map(|t| since + t);
    let timed_out = || timed_out(&record.id, &cmd, timeout.unwrap_or_default());
    let start = ExecProcess::start(record, &cmd, streams, enters_itself);
    let mut process = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, start)
            .await
            .map_err(|_| timed_out())??,
        None => start.await?,
    };
    let stdout = process.stdout.take().expect("piped");
    let stderr = process.stderr.take().expect("piped");
    let run = async {
        let (out, err, status) = tokio::join!(
            read_bounded(stdout),
            read_bounded(stderr),
            process.child.wait()
        );
        (out, err, status)
    };
    let result = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, run).await,
        None => Ok(run.await),
    };
    let (stdout, stderr, status) = match result {
        Ok(done) => done,
        Err(_) => {
            process.kill();
            // The relay or runc exits once its process is gone; one that
            // does not is killed itself (the helper's process then gets
            // its parent-death signal).
            if tokio::time::timeout(Duration::from_secs(1), process.child.wait())
                .await
                .is_err()
            {
                let _ = process.child.start_kill();
            }
            return Err(timed_out());
        }
    };
    let status = status.map_err(|e| ContainerError::Runtime {
        id: record.id.clone(),
        reason: format!("waiting for exec: {e}"),
    })?;
    Ok(ExecOutput {
        stdout,
        stderr,
        exit_code: process.exit_code(status, &cmd)?,
    })
}

/// ExecSync's answer when its timeout has passed.
pub fn timed_out(id: &str, cmd: &[String], timeout: Duration) -> ContainerError {
    ContainerError::Timeout(format!(
        "command {cmd:?} in container {id} timed out after {}s",
        timeout.as_secs()
    ))
}

type Input = Box<dyn AsyncWrite + Unpin + Send>;
type Output = Box<dyn AsyncRead + Unpin + Send>;

/// An exec's process, started by criusd's helper (`enter`) or through
/// `<runtime> exec`.
pub(super) struct ExecProcess {
    /// The relay or the runtime: its exit status is the process's.
    pub child: tokio::process::Child,
    /// Our ends of the process's pipes, those asked for without `tty`.
    pub stdin: Option<Input>,
    pub stdout: Option<Output>,
    pub stderr: Option<Output>,
    /// The terminal's master end, with `tty`.
    pub terminal: Option<std::fs::File>,
    id: String,
    how: How,
}

enum How {
    Entered,
    Runtime(ExecFiles),
}

impl ExecProcess {
    /// Starts `cmd`; returns once it runs. Cancelling it kills whatever
    /// was started.
    pub(super) async fn start(
        record: &ContainerRecord,
        cmd: &[String],
        streams: Streams,
        enters_itself: bool,
    ) -> Result<ExecProcess, ContainerError> {
        if cmd.is_empty() {
            return Err(ContainerError::Invalid("cmd is empty".into()));
        }
        if let Some(i) = cmd.iter().position(|arg| arg.contains('\0')) {
            return Err(ContainerError::Invalid(format!("cmd[{i}] contains NUL")));
        }
        if record.state != ContainerState::Running {
            return Err(ContainerError::Precondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        let runtime_error = |reason: String| ContainerError::Runtime {
            id: record.id.clone(),
            reason,
        };
        if enters_itself {
            let prepared = {
                let record = record.clone();
                tokio::task::spawn_blocking(move || enter::prepare(&record))
                    .await
                    .map_err(|e| runtime_error(format!("exec: {e}")))?
            };
            let entry = prepared.map_err(|e| match e {
                enter::Error::Invalid(reason) => ContainerError::Invalid(reason),
                enter::Error::Failed(reason) => {
                    if crate::sandbox::namespaces::is_alive(record.init_pid) {
                        runtime_error(reason)
                    } else {
                        ContainerError::Precondition(format!(
                            "container {} is not running: {reason}",
                            record.id
                        ))
                    }
                }
            })?;
            match entry {
                Ok(entry) => {
                    let entered = enter::spawn(entry, cmd, streams)
                        .await
                        .map_err(|e| runtime_error(format!("exec {cmd:?} failed: {e}")))?;
                    return Ok(ExecProcess {
                        child: entered.child,
                        stdin: entered.stdin.map(|p| Box::new(p) as Input),
                        stdout: entered.stdout.map(|p| Box::new(p) as Output),
                        stderr: entered.stderr.map(|p| Box::new(p) as Output),
                        terminal: entered.terminal,
                        id: record.id.clone(),
                        how: How::Entered,
                    });
                }
                Err(why) => tracing::debug!(
                    container = %record.id,
                    why = %why.0,
                    "exec through the runtime"
                ),
            }
        }
        Self::start_in_runtime(record, cmd, streams).map_err(runtime_error)
    }

    /// `<runtime> exec`; with a terminal, criusd opens a pty and makes it
    /// the controlling terminal of `<runtime> exec -t`, which gives the
    /// process a terminal of its own and relays between the two (in raw
    /// mode, so Ctrl-C reaches the process); a resize of criusd's pty
    /// reaches the runtime as SIGWINCH.
    fn start_in_runtime(
        record: &ContainerRecord,
        cmd: &[String],
        streams: Streams,
    ) -> Result<ExecProcess, String> {
        let tag = &crate::ids::new_id()[..12];
        let files = ExecFiles::new(&record.dir, tag);
        exec_process_file(&record.dir, cmd, streams.tty, &files.process)?;
        let runtime = runtime_of(record);
        let mut command = exec_command(record, &files, streams.tty);
        command.kill_on_drop(true);
        let mut terminal = None;
        if streams.tty {
            let pty =
                nix::pty::openpty(None, None).map_err(|e| format!("opening a terminal: {e}"))?;
            let slave = pty.slave;
            let slave_fd = slave.as_raw_fd();
            let dup = |fd: &OwnedFd| fd.try_clone().map(Stdio::from).map_err(|e| e.to_string());
            command
                .stdin(dup(&slave)?)
                .stdout(dup(&slave)?)
                .stderr(dup(&slave)?);
            // SAFETY: setsid and ioctl only, between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    if libc::setsid() < 0 || libc::ioctl(slave_fd, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            terminal = Some(std::fs::File::from(pty.master));
        } else {
            command
                .stdin(streams.pipe(streams.stdin))
                .stdout(streams.pipe(streams.stdout))
                .stderr(streams.pipe(streams.stderr));
        }
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", runtime.binary.display()))?;
        Ok(ExecProcess {
            stdin: child.stdin.take().map(|p| Box::new(p) as Input),
            stdout: child.stdout.take().map(|p| Box::new(p) as Output),
            stderr: child.stderr.take().map(|p| Box::new(p) as Output),
            child,
            terminal,
            id: record.id.clone(),
            how: How::Runtime(files),
        })
    }

    /// Kills the process (not only the relay or runtime).
    pub(super) fn kill(&self) {
        match &self.how {
            How::Entered => {
                if let Some(pid) = self.child.id() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
            How::Runtime(files) => kill_exec(&files.pid),
        }
    }

    /// The process's exit code from its relay's or runtime's status, or
    /// the runtime's own failure to run it.
    pub(super) fn exit_code(
        &self,
        status: std::process::ExitStatus,
        cmd: &[String],
    ) -> Result<i32, ContainerError> {
        if let How::Runtime(files) = &self.how
            && let Some(message) = runtime_failure(&files.log)
        {
            return Err(ContainerError::Runtime {
                id: self.id.clone(),
                reason: format!("exec {cmd:?} failed: {message}"),
            });
        }
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(255))
    }
}

/// The files of one exec under the container's dir, removed when dropped.
struct ExecFiles {
    pub process: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl ExecFiles {
    fn new(dir: &Path, tag: &str) -> ExecFiles {
        ExecFiles {
            process: dir.join(format!("exec-{tag}.json")),
            pid: dir.join(format!("exec-{tag}.pid")),
            log: dir.join(format!("exec-{tag}.log")),
        }
    }
}

impl Drop for ExecFiles {
    fn drop(&mut self) {
        for path in [&self.process, &self.pid, &self.log] {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// `<runtime> exec` of the process in `files` in the container (with a
/// terminal of its own for `tty`), its pid and errors into `files`.
fn exec_command(record: &ContainerRecord, files: &ExecFiles, tty: bool) -> tokio::process::Command {
    let runtime = runtime_of(record);
    let mut command = tokio::process::Command::new(&runtime.binary);
    command
        .arg("--root")
        .arg(&runtime.root)
        .args(&runtime.args)
        .arg("--log")
        .arg(&files.log)
        .args(["--log-format", "json", "exec"]);
    if tty {
        command.arg("--tty");
    }
    command
        .arg("--process")
        .arg(&files.process)
        .arg("--pid-file")
        .arg(&files.pid)
        .arg(&record.id);
    command
}

/// Writes to `path` the container's process spec with `cmd` as its args
/// (its user, env, cwd, capabilities and the rest stay the container's).
fn exec_process_file(bundle: &Path, cmd: &[String], tty: bool, path: &Path) -> Result<(), String> {
    let config = bundle.join("config.json");
    let bytes = std::fs::read(&config).map_err(|e| format!("{}: {e}", config.display()))?;
    let spec: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", config.display()))?;
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(tty);
    std::fs::write(path, serde_json::to_vec(&process).expect("encodes"))
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn kill_exec(pid_file: &Path) {
    let pid = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|p| *p > 0) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// The runtime's own error, if it failed to run the command at all.
fn runtime_failure(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .next_back()
}

async fn read_bounded(mut reader: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}
