//! What crius keeps about a container (the store's `containers` table) and
//! how it reads to CRI clients.

use super::user::ResolvedUser;
use crate::cgroups::ContainerCgroup;
use crate::cri;
use crius_shim::protocol::ExitRecord;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    /// "name_<sandbox name>_attempt": unique among containers.
    pub name: String,
    pub config: cri::ContainerConfig,
    /// The image as the config named it, its id (config digest) and the
    /// reference it is known by (a repo digest, else the id).
    pub image_name: String,
    pub image_id: String,
    pub image_ref: String,
    pub handler: String,
    pub runtime: PathBuf,
    pub runtime_root: PathBuf,
    /// Global runtime flags (`--systemd-cgroup`).
    #[serde(default)]
    pub runtime_args: Vec<String>,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub init_pid: i32,
    pub shim_pid: i32,
    pub log_path: Option<PathBuf>,
    /// The bundle and shim dir, `<state>/containers/<id>`.
    pub dir: PathBuf,
    pub user: ResolvedUser,
    /// The resources in force (after UpdateContainerResources).
    pub resources: Option<cri::LinuxContainerResources>,
    /// The signal StopContainer sends first.
    pub stop_signal: i32,
    /// Its PID namespace is not its own, so its init's death does not end
    /// its other processes.
    pub shares_pid_namespace: bool,
    pub cgroup: ContainerCgroup,
    /// A container made from a checkpoint and not started yet: the
    /// unpacked checkpoint, which StartContainer restores from.
    #[serde(default)]
    pub restore_from: Option<PathBuf>,
    /// Its processes came from a checkpoint (criu's restore).
    #[serde(default)]
    pub restored: bool,
}

impl ContainerRecord {
    pub fn metadata(&self) -> cri::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    pub fn cri_state(&self) -> cri::ContainerState {
        match self.state {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
        }
    }

    /// Made from a checkpoint and waiting for StartContainer's restore: no
    /// shim and no process yet.
    pub fn restore_pending(&self) -> bool {
        self.state == ContainerState::Created && self.restore_from.is_some()
    }

    pub fn is_live(&self) -> bool {
        matches!(
            self.state,
            ContainerState::Created | ContainerState::Running
        )
    }

    /// The image as the user named it (kubelet's `user_specified_image`,
    /// shown in `containerStatuses[].image`), else as the config named it
    /// (kubelet puts the resolved id there); `image_id` and `image_ref` say
    /// which image it resolved to.
    fn image_spec(&self) -> cri::ImageSpec {
        let given = self.config.image.clone().unwrap_or_default();
        let image = if given.user_specified_image.is_empty() {
            self.image_name.clone()
        } else {
            given.user_specified_image.clone()
        };
        cri::ImageSpec {
            image,
            annotations: given.annotations,
            user_specified_image: given.user_specified_image,
            runtime_handler: given.runtime_handler,
            ..Default::default()
        }
    }

    pub fn to_cri(&self) -> cri::Container {
        cri::Container {
            id: self.id.clone(),
            pod_sandbox_id: self.sandbox_id.clone(),
            metadata: Some(self.metadata()),
            image: Some(self.image_spec()),
            image_ref: self.image_ref.clone(),
            state: self.cri_state() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            image_id: self.image_id.clone(),
        }
    }

    /// Records how the container ended.
    pub fn set_exited(&mut self, exit: &ExitRecord) {
        self.state = ContainerState::Exited;
        self.exit_code = exit.exit_code;
        self.finished_at = exit.finished_at.max(self.started_at).max(1);
        self.reason = if exit.oom_killed {
            "OOMKilled"
        } else if exit.exit_code == 0 {
            "Completed"
        } else {
            "Error"
        }
        .to_string();
        self.message = match exit.signal {
            Some(sig) => format!("killed by signal {sig}"),
            None => String::new(),
        };
    }

    /// ContainerStatus, with `info` (JSON) when verbose.
    pub fn status(&self, verbose: bool) -> (cri::ContainerStatus, HashMap<String, String>) {
        let status = cri::ContainerStatus {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.cri_state() as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: Some(self.image_spec()),
            image_ref: self.image_ref.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            log_path: self
                .log_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            resources: Some(cri::ContainerResources {
                linux: self.resources.clone(),
                windows: None,
            }),
            image_id: self.image_id.clone(),
            user: Some(cri::ContainerUser {
                linux: Some(cri::LinuxContainerUser {
                    uid: self.user.uid.into(),
                    gid: self.user.gid.into(),
                    supplemental_groups: std::iter::once(self.user.gid)
                        .chain(self.user.additional_gids.iter().copied())
                        .map(i64::from)
                        .collect(),
                }),
            }),
            stop_signal: signal_to_cri(self.stop_signal) as i32,
        };
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "sandboxID": self.sandbox_id,
                "pid": self.init_pid,
                "shimPid": self.shim_pid,
                "runtimeHandler": self.handler,
                "runtime": self.runtime,
                "bundle": self.dir,
                "cgroup": self.cgroup.spec_path,
                "name": self.name,
                "config": self.config,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        (status, info)
    }
}

/// Signal numbers by CRI name (x86/arm Linux numbering).
const SIGNALS: &[(&str, i32)] = &[
    ("SIGHUP", 1),
    ("SIGINT", 2),
    ("SIGQUIT", 3),
    ("SIGILL", 4),
    ("SIGTRAP", 5),
    ("SIGABRT", 6),
    ("SIGIOT", 6),
    ("SIGBUS", 7),
    ("SIGFPE", 8),
    ("SIGKILL", 9),
    ("SIGUSR1", 10),
    ("SIGSEGV", 11),
    ("SIGUSR2", 12),
    ("SIGPIPE", 13),
    ("SIGALRM", 14),
    ("SIGTERM", 15),
    ("SIGSTKFLT", 16),
    ("SIGCHLD", 17),
    ("SIGCONT", 18),
    ("SIGSTOP", 19),
    ("SIGTSTP", 20),
    ("SIGTTIN", 21),
    ("SIGTTOU", 22),
    ("SIGURG", 23),
    ("SIGXCPU", 24),
    ("SIGXFSZ", 25),
    ("SIGVTALRM", 26),
    ("SIGPROF", 27),
    ("SIGWINCH", 28),
    ("SIGIO", 29),
    ("SIGPOLL", 29),
    ("SIGPWR", 30),
    ("SIGSYS", 31),
];

/// "SIGTERM", "TERM", "15" or "SIGRTMIN+3" as a signal number.
pub fn parse_signal(text: &str) -> Option<i32> {
    let text = text.trim();
    if let Ok(n) = text.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = text.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    if let Some(rest) = name.strip_prefix("SIGRTMIN") {
        let offset = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('+')?.parse::<i32>().ok()?
        };
        return (0..=30).contains(&offset).then_some(34 + offset);
    }
    if let Some(rest) = name.strip_prefix("SIGRTMAX") {
        let offset = if rest.is_empty() {
            0
        } else {
            rest.strip_prefix('-')?.parse::<i32>().ok()?
        };
        return (0..=30).contains(&offset).then_some(64 - offset);
    }
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

/// The CRI's Signal enum names signals by their Go names.
pub fn signal_from_cri(signal: i32) -> Option<i32> {
    let value = cri::Signal::try_from(signal).ok()?;
    if value == cri::Signal::RuntimeDefault {
        return None;
    }
    parse_signal(
        &value
            .as_str_name()
            .replace("PLUS", "+")
            .replace("MINUS", "-"),
    )
}

pub fn signal_to_cri(number: i32) -> cri::Signal {
    let name = match number {
        34 => "SIGRTMIN".to_string(),
        35..=49 => format!("SIGRTMINPLUS{}", number - 34),
        50..=63 => format!("SIGRTMAXMINUS{}", 64 - number),
        64 => "SIGRTMAX".to_string(),
        _ => SIGNALS
            .iter()
            .find(|(_, v)| *v == number)
            .map(|(n, _)| n.to_string())
            .unwrap_or_default(),
    };
    cri::Signal::from_str_name(&name).unwrap_or(cri::Signal::RuntimeDefault)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_parse_like_dockerfile_stopsignal() {
        assert_eq!(parse_signal("SIGTERM"), Some(15));
        assert_eq!(parse_signal("quit"), Some(3));
        assert_eq!(parse_signal("9"), Some(9));
        assert_eq!(parse_signal("SIGRTMIN+3"), Some(37));
        assert_eq!(parse_signal("SIGNOPE"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(signal_from_cri(cri::Signal::Sigusr1 as i32), Some(10));
        assert_eq!(signal_from_cri(0), None);
        assert_eq!(signal_to_cri(15), cri::Signal::Sigterm);
        assert_eq!(signal_from_cri(cri::Signal::Sigrtminplus3 as i32), Some(37));
        assert_eq!(signal_to_cri(37), cri::Signal::Sigrtminplus3);
    }
}
