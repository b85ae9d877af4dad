//! The OCI runtime's command line (runc, crun), for what criusd does
//! itself: start, kill, delete, update and exec. `create` is the shim's.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One container's runtime: the binary and its state root.
#[derive(Debug, Clone)]
pub struct OciRuntime {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub args: Vec<String>,
}

impl OciRuntime {
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.binary);
        command.arg("--root").arg(&self.root).args(&self.args);
        command
    }

    fn run(&self, what: &str, args: &[&str], id: &str) -> Result<Output, String> {
        let output = self
            .command()
            .args(args)
            .arg(id)
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if output.status.success() {
            Ok(output)
        } else {
            Err(format!(
                "{} {what} failed: {}",
                self.binary
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                message(&output)
            ))
        }
    }

    pub fn start(&self, id: &str) -> Result<(), String> {
        self.run("start", &["start"], id).map(|_| ())
    }

    /// Sends `signal` to the init process, or to every process of the
    /// container with `all` (needed when it shares a PID namespace, where
    /// init's death does not end the rest).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), String> {
        let signal = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        let mut command = self.command();
        command.args(&args).arg(id).arg(&signal);
        let output = command
            .output()
            .map_err(|e| format!("cannot run {}: {e}", self.binary.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!("kill failed: {}", message(&output)))
        }
    }

    /// Deletes the runtime's state and cgroup, killing what still runs.
    /// A container the runtime does not know is already deleted.
    pub fn delete(&self, id: &str) -> Result<(), String> {
        match self.run("delete", &["delete", "--force"], id) {
            Ok(_) => Ok(()),
            Err(e) if e.contains("does not exist") || e.contains("not exist") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Applies new cgroup settings (`resources` is an OCI LinuxResources
    /// JSON file).
    pub fn update(&self, id: &str, resources: &Path) -> Result<(), String> {
        let path = resources.display().to_string();
        self.run("update", &["update", "--resources", &path], id)
            .map(|_| ())
    }

    /// Whether the runtime still knows the container.
    pub fn exists(&self, id: &str) -> bool {
        self.command()
            .arg("state")
            .arg(id)
            .output()
            .is_ok_and(|o| o.status.success())
    }
}

/// The runtime's complaint: stderr, or the `msg` of its JSON log lines.
fn message(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_string))
                .unwrap_or_else(|| l.to_string())
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    if lines.is_empty() {
        format!("exited with {}", output.status)
    } else {
        lines.join("; ")
    }
}
