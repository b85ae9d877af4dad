//! crius-shim: supervises one container.
//!
//!   crius-shim DIR
//!   crius-shim --version
//!
//! Reads `DIR/shim.json`, forks, and the child detaches from criusd (own
//! session, child subreaper) and runs `<runtime> create` (or, for a
//! container restored from a checkpoint, `<runtime> restore --detach`). It prints one
//! `Ready` JSON line on stdout for criusd and closes it, then stays with the
//! container: it holds the container's stdio (pipes, or a terminal's master
//! end), writes the CRI log, answers `control.sock`, and when the container's
//! init exits it drains the output, writes `exit.json` and exits. criusd
//! starts, signals and deletes the container with the runtime directly; the
//! shim never needs criusd, so containers run on while criusd restarts.
//! See `crius_shim::protocol` for the files.

mod supervise;
mod sys;

use crius_shim::protocol::{
    CONFIG_FILE, INIT_PID_FILE, Ready, SHIM_LOG, SHIM_PID_FILE, ShimConfig,
};
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The container's stdio as the shim holds it.
pub enum ContainerIo {
    Pipes {
        stdout: OwnedFd,
        stderr: OwnedFd,
        /// The write end of the container's stdin, kept for attach.
        stdin: Option<OwnedFd>,
    },
    Terminal {
        master: OwnedFd,
    },
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: crius-shim DIR");
        return ExitCode::from(2);
    };
    if dir.as_os_str() == "--version" {
        // Built as a binary of the `crius` package, whose build.rs sets this.
        println!(
            "crius-shim {} (git {})",
            env!("CARGO_PKG_VERSION"),
            env!("CRIUS_GIT_REVISION")
        );
        return ExitCode::SUCCESS;
    }
    let config = match load(&dir) {
        Ok(config) => config,
        Err(error) => return report(&Ready::Failed { error }),
    };
    // SIGCHLD must be blocked before the runtime runs, so its exit (and the
    // container's) is never missed.
    let signals = match sys::signalfd(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGHUP]) {
        Ok(fd) => fd,
        Err(e) => {
            return report(&Ready::Failed {
                error: format!("signalfd: {e}"),
            });
        }
    };
    match sys::fork() {
        Err(e) => {
            return report(&Ready::Failed {
                error: format!("fork: {e}"),
            });
        }
        // The child reports; criusd reaps this parent at once.
        Ok(sys::Forked::Parent) => return ExitCode::SUCCESS,
        Ok(sys::Forked::Child) => {}
    }
    if let Err(e) = sys::detach_and_subreap() {
        return report(&Ready::Failed {
            error: format!("detaching: {e}"),
        });
    }
    log_to(&dir.join(SHIM_LOG));
    let shim_pid = std::process::id() as i32;
    let _ = std::fs::write(dir.join(SHIM_PID_FILE), shim_pid.to_string());
    let (init_pid, io) = match create(&dir, &config) {
        Ok(created) => created,
        Err(error) => return report(&Ready::Failed { error }),
    };
    // Everything that can fail happens before criusd hears "created".
    let runtime = config.runtime.clone();
    let (root, id) = (config.runtime_root.clone(), config.id.clone());
    let supervisor = match supervise::Supervisor::new(&dir, config, init_pid, io, signals) {
        Ok(supervisor) => supervisor,
        Err(e) => {
            let _ = Command::new(runtime)
                .arg("--root")
                .arg(root)
                .args(["delete", "--force", &id])
                .output();
            return report(&Ready::Failed {
                error: format!("shim set-up: {e}"),
            });
        }
    };
    report(&Ready::Created {
        pid: init_pid,
        shim_pid,
    });
    // criusd reads until EOF: close our end of its pipe.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = sys::dup_onto(null.as_raw_fd(), 1);
    }
    supervisor.run();
    ExitCode::SUCCESS
}

fn load(dir: &Path) -> Result<ShimConfig, String> {
    let path = dir.join(CONFIG_FILE);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

fn report(ready: &Ready) -> ExitCode {
    let line = serde_json::to_string(ready).expect("Ready encodes");
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    match ready {
        Ready::Created { .. } => ExitCode::SUCCESS,
        Ready::Failed { error } => {
            eprintln!("crius-shim: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Sends the shim's own stderr to its log file; stdin becomes /dev/null.
fn log_to(path: &Path) {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path);
    if let Ok(log) = log {
        let _ = sys::dup_onto(log.as_raw_fd(), 2);
    }
    if let Ok(null) = std::fs::File::open("/dev/null") {
        let _ = sys::dup_onto(null.as_raw_fd(), 0);
    }
}

/// Runs `<runtime> create` (or `restore`) with the container's stdio and returns the
/// container's init PID and the shim's ends of its stdio.
fn create(dir: &Path, config: &ShimConfig) -> Result<(i32, ContainerIo), String> {
    let pid_file = dir.join(INIT_PID_FILE);
    let _ = std::fs::remove_file(&pid_file);
    let mut command = Command::new(&config.runtime);
    command
        .arg("--root")
        .arg(&config.runtime_root)
        .args(&config.runtime_args)
        .arg("--log")
        .arg(dir.join("runtime.log"))
        .args(["--log-format", "json"]);
    match &config.restore {
        None => command.arg("create"),
        // Detached: the restored init is reparented to this shim (a child
        // subreaper), as a created one is.
        Some(from) => command
            .args(["restore", "--detach", "--image-path"])
            .arg(&from.image_path)
            .arg("--work-path")
            .arg(&from.work_path),
    };
    command
        .arg("--bundle")
        .arg(&config.bundle)
        .arg("--pid-file")
        .arg(&pid_file);
    let console = if config.tty {
        let path = config.console_socket.clone();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        command.arg("--console-socket").arg(&path);
        Some(listener)
    } else {
        None
    };
    command.arg(&config.id);

    let io_err = |what: &str, e: std::io::Error| format!("{what}: {e}");
    let (out_r, out_w) = sys::pipe().map_err(|e| io_err("pipe", e))?;
    let (err_r, err_w) = sys::pipe().map_err(|e| io_err("pipe", e))?;
    // Without a terminal the container inherits the runtime's stdio; with
    // one these pipes only catch the runtime's own messages.
    command
        .stdout(Stdio::from(out_w))
        .stderr(Stdio::from(err_w));
    let stdin = if config.stdin && !config.tty {
        let (r, w) = sys::pipe().map_err(|e| io_err("pipe", e))?;
        command.stdin(Stdio::from(r));
        Some(w)
    } else {
        command.stdin(Stdio::null());
        None
    };
    let status = command.status().map_err(|e| {
        format!(
            "cannot run the OCI runtime {}: {e}",
            config.runtime.display()
        )
    });
    // Our copies of the write ends must go, or EOF never comes.
    drop(command);
    let status = status?;
    for fd in [&out_r, &err_r] {
        let _ = sys::set_nonblocking(fd.as_raw_fd());
    }
    if !status.success() {
        return Err(runtime_error(dir, &err_r, &out_r, status));
    }
    let pid = std::fs::read_to_string(&pid_file)
        .ok()
        .and_then(|p| p.trim().parse::<i32>().ok())
        .ok_or_else(|| format!("the runtime wrote no pid to {}", pid_file.display()))?;
    let io = match console {
        None => ContainerIo::Pipes {
            stdout: out_r,
            stderr: err_r,
            stdin,
        },
        Some(listener) => {
            // The runtime has exited, so its connection is already queued.
            listener
                .set_nonblocking(true)
                .map_err(|e| io_err("console socket", e))?;
            let (conn, _) = listener
                .accept()
                .map_err(|e| io_err("the runtime sent no terminal", e))?;
            let _ = std::fs::remove_file(&config.console_socket);
            let master = sys::recv_fd(conn.as_raw_fd()).map_err(|e| io_err("terminal", e))?;
            ContainerIo::Terminal { master }
        }
    };
    Ok((pid, io))
}

/// The runtime's reason for failing: its stderr, else the last error in its
/// JSON log.
fn runtime_error(
    dir: &Path,
    stderr: &OwnedFd,
    stdout: &OwnedFd,
    status: std::process::ExitStatus,
) -> String {
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    for fd in [stderr, stdout] {
        while let Ok(Some(n)) = sys::read(fd.as_raw_fd(), &mut buf) {
            if n == 0 || text.len() > 64 * 1024 {
                break;
            }
            text.extend_from_slice(&buf[..n]);
        }
    }
    let mut message = String::from_utf8_lossy(&text).trim().to_string();
    if message.is_empty() {
        let log = std::fs::read_to_string(dir.join("runtime.log")).unwrap_or_default();
        message = log
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "error")
            .filter_map(|v| v["msg"].as_str().map(str::to_string))
            .next_back()
            .unwrap_or_default();
    }
    if message.is_empty() {
        message = format!("exited with {status}");
    }
    format!("OCI runtime create failed: {message}")
}
