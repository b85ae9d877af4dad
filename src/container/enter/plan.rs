//! What a process started in a running container must be, read from the
//! container's OCI bundle (`config.json`): its user, capabilities, limits,
//! security labels and seccomp filter, all in the raw form the child needs
//! after `fork` (no parsing, no allocation there).

use super::seccomp_bpf::{self, Bpf};
use std::ffi::CString;
use std::sync::Arc;

/// The parts of `config.json` an exec needs. Fields this path cannot apply
/// are kept as raw JSON so their presence sends the exec to the runtime.
#[derive(Debug, serde::Deserialize)]
pub struct Bundle {
    pub process: Process,
    #[serde(default)]
    pub linux: Linux,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Process {
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub cwd: String,
    #[serde(default)]
    pub user: User,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
    #[serde(default)]
    pub no_new_privileges: bool,
    #[serde(default)]
    pub apparmor_profile: String,
    #[serde(default)]
    pub selinux_label: String,
    pub oom_score_adj: Option<i32>,
    pub io_priority: Option<serde_json::Value>,
    pub scheduler: Option<serde_json::Value>,
    pub exec_cpu_affinity: Option<serde_json::Value>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub uid: u32,
    #[serde(default)]
    pub gid: u32,
    pub umask: Option<u32>,
    #[serde(default)]
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Capabilities {
    #[serde(default)]
    pub bounding: Vec<String>,
    #[serde(default)]
    pub effective: Vec<String>,
    #[serde(default)]
    pub inheritable: Vec<String>,
    #[serde(default)]
    pub permitted: Vec<String>,
    #[serde(default)]
    pub ambient: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
pub struct Rlimit {
    #[serde(rename = "type")]
    pub kind: String,
    pub soft: u64,
    pub hard: u64,
}

#[derive(Debug, Default, serde::Deserialize)]
pub struct Linux {
    pub seccomp: Option<seccomp_bpf::Profile>,
    pub personality: Option<serde_json::Value>,
}

/// The capability sets as bit masks (bit n = capability n).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: u64,
    pub effective: u64,
    pub inheritable: u64,
    pub permitted: u64,
    pub ambient: u64,
}

/// A process's settings, ready for the child.
#[derive(Debug)]
pub struct Plan {
    pub env: Vec<String>,
    pub cwd: CString,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<libc::gid_t>,
    pub umask: Option<libc::mode_t>,
    pub caps: CapSets,
    /// The highest capability this kernel knows.
    pub last_cap: u32,
    pub rlimits: Vec<(libc::c_int, libc::rlimit)>,
    pub no_new_privs: bool,
    /// "exec <profile>", for the AppArmor attribute file.
    pub apparmor: Option<CString>,
    pub selinux: Option<CString>,
    /// The text to write to oom_score_adj.
    pub oom_score_adj: Option<CString>,
    pub seccomp: Option<Arc<Bpf>>,
}

/// Why an exec goes through the OCI runtime instead.
#[derive(Debug, PartialEq, Eq)]
pub struct NotHere(pub String);

/// Reads the plan from a bundle's `config.json` text. `home` gives the
/// home directory of a uid, for a `HOME` the environment lacks (as runc
/// sets it from the container's /etc/passwd).
pub fn plan(
    config: &[u8],
    home: impl FnOnce(u32) -> Option<String>,
) -> Result<Result<Plan, NotHere>, String> {
    let bundle: Bundle = serde_json::from_slice(config).map_err(|e| format!("config.json: {e}"))?;
    let process = bundle.process;
    for (present, what) in [
        (process.io_priority.is_some(), "process.ioPriority"),
        (process.scheduler.is_some(), "process.scheduler"),
        (
            process.exec_cpu_affinity.is_some(),
            "process.execCPUAffinity",
        ),
        (bundle.linux.personality.is_some(), "linux.personality"),
    ] {
        if present {
            return Ok(Err(NotHere(format!("{what} is set"))));
        }
    }
    let seccomp = match &bundle.linux.seccomp {
        None => None,
        Some(profile) => match seccomp_bpf::compiled(profile)? {
            Ok(bpf) => Some(bpf),
            Err(why) => return Ok(Err(why)),
        },
    };
    let mut env = process.env;
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            home(process.user.uid).unwrap_or_else(|| "/".into())
        ));
    }
    let cwd = if process.cwd.is_empty() {
        "/".to_string()
    } else {
        process.cwd
    };
    let text = |s: String| CString::new(s).map_err(|e| format!("config.json: {e}"));
    let caps = &process.capabilities;
    let mask = |names: &[String]| -> Result<u64, String> {
        names.iter().try_fold(0u64, |mask, name| {
            capability_bit(name)
                .map(|bit| mask | 1 << bit)
                .ok_or_else(|| format!("config.json: unknown capability {name:?}"))
        })
    };
    let mut rlimits = Vec::new();
    for limit in &process.rlimits {
        let resource = rlimit_resource(&limit.kind)
            .ok_or_else(|| format!("config.json: unknown rlimit {:?}", limit.kind))?;
        rlimits.push((
            resource,
            libc::rlimit {
                rlim_cur: limit.soft,
                rlim_max: limit.hard,
            },
        ));
    }
    Ok(Ok(Plan {
        env,
        cwd: text(cwd)?,
        uid: process.user.uid,
        gid: process.user.gid,
        groups: process.user.additional_gids,
        umask: process.user.umask,
        caps: CapSets {
            bounding: mask(&caps.bounding)?,
            effective: mask(&caps.effective)?,
            inheritable: mask(&caps.inheritable)?,
            permitted: mask(&caps.permitted)?,
            ambient: mask(&caps.ambient)?,
        },
        last_cap: last_cap(),
        rlimits,
        no_new_privs: process.no_new_privileges,
        apparmor: (!process.apparmor_profile.is_empty())
            .then(|| text(format!("exec {}", process.apparmor_profile)))
            .transpose()?,
        selinux: (!process.selinux_label.is_empty())
            .then(|| text(process.selinux_label))
            .transpose()?,
        oom_score_adj: process
            .oom_score_adj
            .map(|v| text(v.to_string()))
            .transpose()?,
        seccomp,
    }))
}

/// "CAP_NET_ADMIN" → its bit.
fn capability_bit(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    crate::container::security::capability_names()
        .iter()
        .position(|n| n.eq_ignore_ascii_case(bare))
        .map(|bit| bit as u32)
}

fn rlimit_resource(kind: &str) -> Option<libc::c_int> {
    use libc::*;
    let resource = match kind {
        "RLIMIT_AS" => RLIMIT_AS,
        "RLIMIT_CORE" => RLIMIT_CORE,
        "RLIMIT_CPU" => RLIMIT_CPU,
        "RLIMIT_DATA" => RLIMIT_DATA,
        "RLIMIT_FSIZE" => RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => RLIMIT_NICE,
        "RLIMIT_NOFILE" => RLIMIT_NOFILE,
        "RLIMIT_NPROC" => RLIMIT_NPROC,
        "RLIMIT_RSS" => RLIMIT_RSS,
        "RLIMIT_RTPRIO" => RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => RLIMIT_STACK,
        _ => return None,
    };
    Some(resource as libc::c_int)
}

/// The kernel's highest capability (`/proc/sys/kernel/cap_last_cap`).
fn last_cap() -> u32 {
    static LAST: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(process: serde_json::Value, linux: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"process": process, "linux": linux})).unwrap()
    }

    #[test]
    fn the_bundle_becomes_raw_settings() {
        let bytes = config(
            serde_json::json!({
                "env": ["PATH=/bin"], "cwd": "/work",
                "user": {"uid": 1000, "gid": 100, "umask": 18, "additionalGids": [5, 6]},
                "capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_RAW"],
                                 "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"],
                                 "ambient": ["CAP_NET_RAW"]},
                "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
                "noNewPrivileges": true, "apparmorProfile": "crius-default",
                "oomScoreAdj": 1000
            }),
            serde_json::json!({}),
        );
        let plan = plan(&bytes, |uid| Some(format!("/home/{uid}")))
            .unwrap()
            .unwrap();
        assert_eq!(plan.env, ["PATH=/bin", "HOME=/home/1000"]);
        assert_eq!(plan.cwd.to_str().unwrap(), "/work");
        assert_eq!(
            (plan.uid, plan.gid, plan.groups.clone()),
            (1000, 100, vec![5, 6])
        );
        assert_eq!(plan.umask, Some(0o22));
        assert_eq!(
            plan.caps,
            CapSets {
                bounding: 1 << 0 | 1 << 13,
                effective: 1,
                permitted: 1,
                inheritable: 0,
                ambient: 1 << 13,
            }
        );
        assert_eq!(plan.rlimits[0].0, libc::RLIMIT_NOFILE as libc::c_int);
        assert_eq!(plan.rlimits[0].1.rlim_max, 4096);
        assert!(plan.no_new_privs);
        assert_eq!(
            plan.apparmor.unwrap().to_str().unwrap(),
            "exec crius-default"
        );
        assert_eq!(plan.oom_score_adj.unwrap().to_str().unwrap(), "1000");
        assert!(plan.selinux.is_none() && plan.seccomp.is_none());
    }

    #[test]
    fn a_home_in_the_environment_is_kept() {
        let bytes = config(
            serde_json::json!({"env": ["HOME=/root"], "cwd": "/"}),
            serde_json::json!({}),
        );
        let plan = plan(&bytes, |_| panic!("not asked")).unwrap().unwrap();
        assert_eq!(plan.env, ["HOME=/root"]);
        let bytes = config(serde_json::json!({"cwd": "/"}), serde_json::json!({}));
        assert_eq!(plan_env(&bytes), ["HOME=/"]);
    }

    fn plan_env(bytes: &[u8]) -> Vec<String> {
        plan(bytes, |_| None).unwrap().unwrap().env
    }

    #[test]
    fn settings_this_path_cannot_apply_go_to_the_runtime() {
        for (process, linux, named) in [
            (
                serde_json::json!({"scheduler": {"policy": "SCHED_IDLE"}}),
                serde_json::json!({}),
                "process.scheduler",
            ),
            (
                serde_json::json!({"ioPriority": {"class": "IOPRIO_CLASS_IDLE"}}),
                serde_json::json!({}),
                "process.ioPriority",
            ),
            (
                serde_json::json!({}),
                serde_json::json!({"personality": {"domain": "LINUX32"}}),
                "linux.personality",
            ),
            (
                serde_json::json!({}),
                serde_json::json!({"seccomp": {"defaultAction": "SCMP_ACT_ALLOW",
                                               "listenerPath": "/run/agent.sock"}}),
                "listenerPath",
            ),
        ] {
            let why = plan(&config(process, linux), |_| None)
                .unwrap()
                .unwrap_err();
            assert!(why.0.contains(named), "{why:?}");
        }
    }

    #[test]
    fn a_broken_bundle_is_an_error() {
        let bytes = config(
            serde_json::json!({"capabilities": {"bounding": ["CAP_FLY"]}}),
            serde_json::json!({}),
        );
        assert!(plan(&bytes, |_| None).unwrap_err().contains("CAP_FLY"));
        assert!(plan(b"{", |_| None).is_err());
    }
}
