//! The contract between criusd and a container's shim.
//!
//! criusd writes `shim.json` into the container's dir and runs
//! `crius-shim <dir>`. The shim forks, detaches (own session, child
//! subreaper), runs `<runtime> create`, and prints one [`Ready`] line on its
//! stdout, then closes it; criusd reads that line to learn the outcome. From
//! then on the shim lives on its own, so it keeps working while criusd is down.
//!
//! Files in the dir (all written by the shim unless said otherwise):
//! - `shim.json`: [`ShimConfig`] (criusd).
//! - `shim.pid`: the shim's PID.
//! - `init.pid`: the container's init PID (written by the runtime).
//! - `exit.json`: [`ExitRecord`], written atomically once the container's
//!   init has exited and its output is drained. Its presence means "exited".
//! - the control socket (`ShimConfig::control_socket`, outside the dir: Unix
//!   socket paths are limited to 107 bytes): line commands, see [`Command`].
//! - `shim.log`: the shim's own diagnostics.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const CONFIG_FILE: &str = "shim.json";
pub const SHIM_PID_FILE: &str = "shim.pid";
pub const INIT_PID_FILE: &str = "init.pid";
pub const EXIT_FILE: &str = "exit.json";
pub const SHIM_LOG: &str = "shim.log";

/// What the shim runs and how.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShimConfig {
    /// The container id, as the OCI runtime knows it.
    pub id: String,
    pub bundle: PathBuf,
    /// The OCI runtime binary (runc, crun).
    pub runtime: PathBuf,
    /// The runtime's state root (`--root`).
    pub runtime_root: PathBuf,
    /// Extra global runtime flags (e.g. `--systemd-cgroup`).
    #[serde(default)]
    pub runtime_args: Vec<String>,
    /// The CRI log file; `None` discards output.
    pub log_path: Option<PathBuf>,
    pub tty: bool,
    pub stdin: bool,
    pub stdin_once: bool,
    /// The cgroup file whose `oom_kill N` line counts OOM kills
    /// (`memory.oom_control` on v1, `memory.events` on v2).
    pub oom_file: Option<PathBuf>,
    /// Where the shim listens for commands.
    pub control_socket: PathBuf,
    /// Where the runtime hands over a terminal (`tty` only).
    pub console_socket: PathBuf,
    /// Restore from a checkpoint (`<runtime> restore --detach`) instead of
    /// `<runtime> create`: the container is running when the shim is ready.
    #[serde(default)]
    pub restore: Option<RestoreFrom>,
}

/// A checkpoint's criu images and a directory for criu's work files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreFrom {
    pub image_path: PathBuf,
    pub work_path: PathBuf,
}

/// Longest Unix socket path (sun_path holds 108 bytes with the NUL).
pub const MAX_SOCKET_PATH: usize = 107;

/// The one line the shim prints when `create` is done.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "lowercase")]
pub enum Ready {
    Created { pid: i32, shim_pid: i32 },
    Failed { error: String },
}

/// How the container's init ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// The exit status, or 128 + signal when killed by a signal.
    pub exit_code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Nanoseconds since the epoch.
    pub finished_at: i64,
    /// The kernel OOM-killed a process of the container.
    pub oom_killed: bool,
}

/// Commands on `control.sock`: one line each, answered by `ok` or
/// `error: <reason>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Close and reopen the log file (after kubelet rotated it).
    Reopen,
    /// Attach to the container's output, and its input with `stdin`; the
    /// connection then carries frames (see `crate::attach`).
    Attach { stdin: bool },
}

impl Command {
    pub fn parse(line: &str) -> Option<Command> {
        match line.trim() {
            "reopen" => Some(Command::Reopen),
            "attach" => Some(Command::Attach { stdin: false }),
            "attach stdin" => Some(Command::Attach { stdin: true }),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Command::Reopen => "reopen",
            Command::Attach { stdin: false } => "attach",
            Command::Attach { stdin: true } => "attach stdin",
        }
    }
}

/// The `oom_kill N` count of a cgroup file, if it has one.
pub fn oom_kills(path: &Path) -> Option<u64> {
    oom_kills_in(&std::fs::read_to_string(path).ok()?)
}

/// The `oom_kill N` count in a cgroup file's text.
pub fn oom_kills_in(text: &str) -> Option<u64> {
    text.lines()
        .filter_map(|l| l.strip_prefix("oom_kill "))
        .find_map(|n| n.trim().parse().ok())
}

/// Writes `path` so that readers see the old content or all of the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)
}

/// Reads the exit record, if the container has exited.
pub fn read_exit(dir: &Path) -> Option<ExitRecord> {
    serde_json::from_slice(&std::fs::read(dir.join(EXIT_FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oom_counts_from_v1_and_v2_files() {
        let dir = tempfile::tempdir().unwrap();
        let v1 = dir.path().join("memory.oom_control");
        std::fs::write(&v1, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n").unwrap();
        assert_eq!(oom_kills(&v1), Some(2));
        let v2 = dir.path().join("memory.events");
        std::fs::write(&v2, "low 0\nhigh 0\nmax 3\noom 1\noom_kill 0\n").unwrap();
        assert_eq!(oom_kills(&v2), Some(0));
        assert_eq!(oom_kills(&dir.path().join("none")), None);
    }

    #[test]
    fn ready_lines_are_tagged() {
        let line = serde_json::to_string(&Ready::Created {
            pid: 7,
            shim_pid: 6,
        })
        .unwrap();
        assert_eq!(line, r#"{"result":"created","pid":7,"shim_pid":6}"#);
        let failed: Ready = serde_json::from_str(r#"{"result":"failed","error":"x"}"#).unwrap();
        assert_eq!(failed, Ready::Failed { error: "x".into() });
    }

    #[test]
    fn exit_records_are_atomic_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_exit(dir.path()).is_none());
        let record = ExitRecord {
            exit_code: 137,
            signal: Some(9),
            finished_at: 5,
            oom_killed: true,
        };
        write_atomic(
            &dir.path().join(EXIT_FILE),
            &serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert_eq!(read_exit(dir.path()), Some(record));
        assert_eq!(Command::parse("reopen\n"), Some(Command::Reopen));
    }
}
