//! A pod's pinned namespaces: network, IPC and UTS namespaces created by the
//! `crius-pinns` helper and kept alive by bind mounts in the sandbox's dir, so
//! no process needs to hold them.

use nix::mount::{MntFlags, umount2};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A user namespace's id map: (inside, outside, length) ranges.
pub type IdMap = Vec<(u32, u32, u32)>;

/// Paths of a sandbox's own namespaces; `None` means the host's.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespaces {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// A pod-wide PID namespace, held by its PID 1 (`crius-pause`).
    #[serde(default)]
    pub pid: Option<PathBuf>,
    /// Host PID of that PID 1.
    #[serde(default)]
    pub pause_pid: Option<i32>,
    /// The pod's user namespace, owner of its other namespaces.
    #[serde(default)]
    pub user: Option<PathBuf>,
    /// Its maps (inside, outside, length), for the containers' specs.
    #[serde(default)]
    pub uid_map: Vec<(u32, u32, u32)>,
    #[serde(default)]
    pub gid_map: Vec<(u32, u32, u32)>,
}

impl Namespaces {
    /// The host uid and gid of the pod's root (0, 0 without a user
    /// namespace).
    pub fn root_ids(&self) -> (u32, u32) {
        let host_of_zero = |map: &[(u32, u32, u32)]| {
            map.iter()
                .find(|(inside, _, len)| *inside == 0 && *len > 0)
                .map(|(_, outside, _)| *outside)
                .unwrap_or(0)
        };
        (host_of_zero(&self.uid_map), host_of_zero(&self.gid_map))
    }
}

/// What to create.
pub struct PinRequest<'a> {
    pub network: bool,
    pub ipc: bool,
    pub uts: bool,
    pub hostname: Option<&'a str>,
    pub sysctls: &'a [(String, String)],
    /// Start a pod-wide PID namespace with `crius-pause` as its PID 1.
    pub shared_pid: bool,
    /// A user namespace with these (inside, outside, length) uid and gid
    /// maps, owning the others.
    pub user: Option<(IdMap, IdMap)>,
}

/// Whether a pause process still runs (a zombie does not).
pub fn is_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map(|s| {
            s.lines().any(|l| {
                l.starts_with("State:") && !l.contains("Z (zombie)") && !l.contains("X (dead)")
            })
        })
        .unwrap_or(false)
}

/// Kills a sandbox's pause process, ending its PID namespace.
pub fn kill_pause(namespaces: &Namespaces) {
    if let Some(pid) = namespaces.pause_pid.filter(|p| is_alive(*p)) {
        // Only if it still is our pause: its PID namespace is the pinned one.
        let same = namespaces
            .pid
            .as_ref()
            .is_some_and(|pin| same_namespace(pin, &format!("/proc/{pid}/ns/pid")));
        if same {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn same_namespace(a: &Path, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Creates and pins the requested namespaces under `dir`.
pub fn pin(dir: &Path, request: &PinRequest) -> Result<Namespaces, String> {
    let pinns = crate::handlers::helper_binary("crius-pinns");
    let mut command = Command::new(&pinns);
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
    if request.shared_pid {
        command
            .arg("--pid-pause")
            .arg(crate::handlers::helper_binary("crius-pause"));
    }
    if wanted.is_empty() && !request.shared_pid {
        return Ok(Namespaces::default());
    }
    let maps = |m: &[(u32, u32, u32)]| {
        m.iter()
            .map(|(i, o, l)| format!("{i}:{o}:{l}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    if let Some((uids, gids)) = &request.user {
        command.arg("--uid-map").arg(maps(uids));
        command.arg("--gid-map").arg(maps(gids));
    }
    if let Some(hostname) = request.hostname {
        command.args(["--hostname", hostname]);
    }
    for (key, value) in request.sysctls {
        command.arg("--sysctl").arg(format!("{key}={value}"));
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run {}: {e}", pinns.display()))?;
    if !output.status.success() {
        unpin(dir);
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let path = |name: &str| wanted.contains(&name).then(|| dir.join(name));
    let pause_pid = if request.shared_pid {
        let text = std::fs::read_to_string(dir.join("pause.pid"))
            .map_err(|e| format!("pause.pid: {e}"))?;
        Some(
            text.trim()
                .parse::<i32>()
                .map_err(|e| format!("pause.pid: {e}"))?,
        )
    } else {
        None
    };
    let (uid_map, gid_map) = request.user.clone().unwrap_or_default();
    Ok(Namespaces {
        network: path("net"),
        ipc: path("ipc"),
        uts: path("uts"),
        pid: request.shared_pid.then(|| dir.join("pid")),
        pause_pid,
        user: request.user.as_ref().map(|_| dir.join("user")),
        uid_map,
        gid_map,
    })
}

/// Unmounts and removes whatever pins exist under `dir` (idempotent). A
/// pause process (if any) must have been killed first.
pub fn unpin(dir: &Path) {
    for name in ["net", "ipc", "uts", "pid", "user"] {
        let path = dir.join(name);
        if path.exists() {
            let _ = umount2(&path, MntFlags::MNT_DETACH);
            let _ = std::fs::remove_file(&path);
        }
    }
}
