//! ExecSync: a command run in a running container through `<runtime>
//! exec`, its output collected (bounded), killed when its timeout expires.

use super::{ContainerError, ContainerRecord, ContainerState, runtime_of};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Output kept per stream; the rest is read and dropped so the command
/// never blocks on a full pipe.
pub const MAX_OUTPUT: usize = 16 * 1024 * 1024;

#[derive(Debug)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Runs `cmd` in the container; `timeout` of `None` waits forever. On
/// timeout the process is killed and the error is `DeadlineExceeded`, which
/// kubelet reads as a probe timeout.
pub async fn exec_sync(
    record: &ContainerRecord,
    cmd: Vec<String>,
    timeout: Option<Duration>,
) -> Result<ExecOutput, ContainerError> {
    if cmd.is_empty() {
        return Err(ContainerError::Invalid("cmd is empty".into()));
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
    let tag = &crate::ids::new_id()[..12];
    let files = ExecFiles::new(&record.dir, tag);
    let (pid_file, log_file) = (&files.pid, &files.log);
    exec_process_file(&record.dir, &cmd, false, &files.process).map_err(runtime_error)?;
    let runtime = runtime_of(record);
    let mut command = exec_command(record, &files, false);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| runtime_error(format!("cannot run {}: {e}", runtime.binary.display())))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let run = async {
        let (out, err, status) =
            tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
        (out, err, status)
    };
    let result = match timeout {
        Some(limit) => tokio::time::timeout(limit, run).await,
        None => Ok(run.await),
    };
    let (stdout, stderr, status) = match result {
        Ok(done) => done,
        Err(_) => {
            kill_exec(pid_file);
            // runc exits once its process is gone.
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            return Err(ContainerError::Timeout(format!(
                "command {cmd:?} in container {} timed out after {}s",
                record.id,
                timeout.unwrap_or_default().as_secs()
            )));
        }
    };
    let status = status.map_err(|e| runtime_error(format!("waiting for exec: {e}")))?;
    if let Some(message) = runtime_failure(log_file) {
        return Err(runtime_error(format!("exec {cmd:?} failed: {message}")));
    }
    use std::os::unix::process::ExitStatusExt;
    let exit_code = status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255);
    Ok(ExecOutput {
        stdout,
        stderr,
        exit_code,
    })
}

/// The files of one exec under the container's dir, removed when dropped.
pub(super) struct ExecFiles {
    pub process: PathBuf,
    pub pid: PathBuf,
    pub log: PathBuf,
}

impl ExecFiles {
    pub(super) fn new(dir: &Path, tag: &str) -> ExecFiles {
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
pub(super) fn exec_command(
    record: &ContainerRecord,
    files: &ExecFiles,
    tty: bool,
) -> tokio::process::Command {
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
pub(super) fn exec_process_file(
    bundle: &Path,
    cmd: &[String],
    tty: bool,
    path: &Path,
) -> Result<(), String> {
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

pub(super) fn kill_exec(pid_file: &Path) {
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
pub(super) fn runtime_failure(log: &Path) -> Option<String> {
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
