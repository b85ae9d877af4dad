//! criusd's side of the shim protocol (`crius_shim::protocol`): starting a
//! shim, asking it to reopen the log, telling whether it still runs.

use crius_shim::protocol::{CONFIG_FILE, CONTROL_SOCKET, Command, Ready, ShimConfig};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// The container's init PID and the shim's PID.
#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub init_pid: i32,
    pub shim_pid: i32,
}

/// Writes `shim.json`, runs the shim and waits for `create` to finish.
pub fn spawn(dir: &Path, config: &ShimConfig) -> Result<Started, String> {
    let bytes = serde_json::to_vec_pretty(config).expect("shim config encodes");
    std::fs::write(dir.join(CONFIG_FILE), bytes).map_err(|e| format!("{CONFIG_FILE}: {e}"))?;
    let binary = crate::handlers::helper_binary("crius-shim");
    let mut child = std::process::Command::new(&binary)
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    // The shim's first process exits at once after forking; the detached
    // child writes the outcome and closes the pipe.
    let mut out = String::new();
    let read = child.stdout.take().expect("piped").read_to_string(&mut out);
    let _ = child.wait();
    read.map_err(|e| format!("reading from crius-shim: {e}"))?;
    let line = out.lines().next_back().unwrap_or_default();
    match serde_json::from_str::<Ready>(line) {
        Ok(Ready::Created { pid, shim_pid }) => Ok(Started {
            init_pid: pid,
            shim_pid,
        }),
        Ok(Ready::Failed { error }) => Err(error),
        Err(_) => Err(format!(
            "crius-shim gave no result (output {out:?}); see {}",
            dir.join(crius_shim::protocol::SHIM_LOG).display()
        )),
    }
}

/// Asks the shim to reopen the container's log file.
pub fn reopen_log(dir: &Path) -> Result<(), String> {
    let path = dir.join(CONTROL_SOCKET);
    let mut stream =
        UnixStream::connect(&path).map_err(|e| format!("shim socket {}: {e}", path.display()))?;
    let timeout = Some(Duration::from_secs(10));
    let _ = stream.set_read_timeout(timeout);
    let _ = stream.set_write_timeout(timeout);
    stream
        .write_all(format!("{}\n", Command::Reopen.as_str()).as_bytes())
        .map_err(|e| format!("shim socket: {e}"))?;
    let mut answer = String::new();
    stream
        .read_to_string(&mut answer)
        .map_err(|e| format!("shim socket: {e}"))?;
    match answer.trim() {
        "ok" => Ok(()),
        other => Err(other.trim_start_matches("error: ").to_string()),
    }
}

/// Whether `pid` is a live (not zombie) crius-shim.
pub fn is_alive(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    let is_shim = std::fs::read(format!("/proc/{pid}/cmdline"))
        .ok()
        .and_then(|c| c.split(|&b| b == 0).next().map(|a| a.to_vec()))
        .is_some_and(|argv0| argv0.ends_with(b"crius-shim"));
    is_shim && crate::sandbox::namespaces::is_alive(pid)
}
