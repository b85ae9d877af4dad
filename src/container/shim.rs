//! criusd's side of the shim protocol (`crius_shim::protocol`): starting a
//! shim, asking it to reopen the log, telling whether it still runs.

use crius_shim::protocol::{CONFIG_FILE, Command, Ready, ShimConfig};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// How long `<runtime> create` may take (kubelet's own call timeout is 2 min).
const CREATE_TIMEOUT: Duration = Duration::from_secs(100);

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
    // child writes the outcome and closes the pipe. A runtime that hangs in
    // `create` must not hang the RPC: after CREATE_TIMEOUT the shim is killed
    // and the caller's rollback deletes the runtime's container.
    let mut stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let read = stdout.read_to_string(&mut out).map(|_| out);
        let _ = tx.send(read);
    });
    let _ = child.wait();
    let out = match rx.recv_timeout(CREATE_TIMEOUT) {
        Ok(read) => read.map_err(|e| format!("reading from crius-shim: {e}"))?,
        Err(_) => {
            let shim_pid = std::fs::read_to_string(dir.join(crius_shim::protocol::SHIM_PID_FILE))
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok());
            if let Some(pid) = shim_pid.filter(|p| is_alive(*p)) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            return Err(format!(
                "the OCI runtime's create did not finish within {}s",
                CREATE_TIMEOUT.as_secs()
            ));
        }
    };
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

/// The shim's sockets: in `socket_dir` (short, as socket paths must be),
/// named by the first half of the container id.
pub fn sockets(socket_dir: &Path, id: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let short = &id[..id.len().min(32)];
    (
        socket_dir.join(format!("{short}.control")),
        socket_dir.join(format!("{short}.console")),
    )
}

/// Asks the shim to reopen the container's log file.
pub fn reopen_log(dir: &Path) -> Result<(), String> {
    let config: ShimConfig = std::fs::read(dir.join(CONFIG_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| format!("{} is unreadable", dir.join(CONFIG_FILE).display()))?;
    let path = config.control_socket;
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
