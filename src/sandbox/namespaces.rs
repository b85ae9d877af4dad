//! A pod's pinned namespaces: network, IPC and UTS namespaces created by the
//! `crius-pinns` helper and kept alive by bind mounts in the sandbox's dir, so
//! no process needs to hold them.

use nix::mount::{MntFlags, umount2};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Paths of a sandbox's own namespaces; `None` means the host's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
}

/// What to create.
pub struct PinRequest<'a> {
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: Option<&'a str>,
    pub sysctls: &'a [(String, String)],
}

/// The helper binary: beside the running criusd, else in PATH.
pub fn pinns_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("crius-pinns")))
        .filter(|p| p.is_file())
        .or_else(|| crate::handlers::find_executable("crius-pinns"))
        .unwrap_or_else(|| PathBuf::from("crius-pinns"))
}

/// Creates and pins the requested namespaces under `dir`.
pub fn pin(dir: &Path, request: &PinRequest) -> Result<Namespaces, String> {
    let mut command = Command::new(pinns_binary());
    command.arg("--dir").arg(dir);
    let mut wanted = Vec::new();
    for (yes, flag, name) in [
        (request.network, "--net", "net"),
        (request.ipc, "--ipc", "ipc"),
        (request.uts, "--uts", "uts"),
    ] {
        if yes {
            command.arg(flag);
            wanted.push(name);
        }
    }
    if wanted.is_empty() {
        return Ok(Namespaces::default());
    }
    if let Some(hostname) = request.hostname {
        command.args(["--hostname", hostname]);
    }
    for (key, value) in request.sysctls {
        command.arg("--sysctl").arg(format!("{key}={value}"));
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", pinns_binary().display()))?;
    if !output.status.success() {
        unpin(dir);
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let path = |name: &str| wanted.contains(&name).then(|| dir.join(name));
    Ok(Namespaces {
        network: path("net"),
        ipc: path("ipc"),
        uts: path("uts"),
    })
}

/// Unmounts and removes whatever pins exist under `dir` (idempotent).
pub fn unpin(dir: &Path) {
    for name in ["net", "ipc", "uts"] {
        let path = dir.join(name);
        if path.exists() {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
        }
    }
}
