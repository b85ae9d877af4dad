//! What a process started in a running container must be, read from the
//! container's OCI bundle (`config.json`): its environment, user,
//! capabilities, limits, security labels and seccomp filter (compiled here:
//! the helper gets the program), all as raw values for the helper's
//! instructions.

use super::Error;
use super::seccomp_bpf::{self, Bpf};
use crius_enter::protocol::{self, CapSets};
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

/// A process's settings, ready for the helper's instructions.
#[derive(Debug)]
pub struct Plan {
    /// `KEY=VALUE`, each key once (its last value), as runc dedups.
    pub env: Vec<String>,
    /// No HOME, or an empty one: the helper adds it from the container's
    /// /etc/passwd (runc's rule).
    pub home_wanted: bool,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    pub umask: Option<u32>,
    pub caps: CapSets,
    /// The highest capability this kernel knows.
    pub last_cap: u32,
    pub rlimits: Vec<protocol::Rlimit>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub selinux: Option<String>,
    pub oom_score_adj: Option<i32>,
    pub seccomp: Option<Arc<Bpf>>,
}

/// Why an exec goes through the OCI runtime instead.
#[derive(Debug, PartialEq, Eq)]
pub struct NotHere(pub String);

/// Reads the plan from a bundle's `config.json` text.
pub fn plan(config: &[u8]) -> Result<Result<Plan, NotHere>, Error> {
    let bundle: Bundle =
        serde_json::from_slice(config).map_err(|e| Error::Failed(format!("config.json: {e}")))?;
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
        Some(profile) => match seccomp_bpf::compiled(profile).map_err(Error::Failed)? {
            Ok(bpf) => Some(bpf),
            Err(why) => return Ok(Err(why)),
        },
    };
    let (env, home_wanted) = environment(process.env)?;
    let cwd = if process.cwd.is_empty() {
        "/".to_string()
    } else {
        process.cwd
    };
    let caps = &process.capabilities;
    let mut rlimits = Vec::new();
    for limit in &process.rlimits {
        let resource = rlimit_resource(&limit.kind).ok_or_else(|| {
            Error::Invalid(format!("config.json: unknown rlimit {:?}", limit.kind))
        })?;
        rlimits.push(protocol::Rlimit {
            resource,
            soft: limit.soft,
            hard: limit.hard,
        });
    }
    let label = |s: String| (!s.is_empty()).then_some(s);
    Ok(Ok(Plan {
        env,
        home_wanted,
        cwd,
        uid: process.user.uid,
        gid: process.user.gid,
        groups: process.user.additional_gids,
        umask: process.user.umask,
        caps: CapSets {
            bounding: mask(&caps.bounding),
            effective: mask(&caps.effective),
            inheritable: mask(&caps.inheritable),
            permitted: mask(&caps.permitted),
            ambient: mask(&caps.ambient),
        },
        last_cap: last_cap(),
        rlimits,
        no_new_privs: process.no_new_privileges,
        apparmor: label(process.apparmor_profile),
        selinux: label(process.selinux_label),
        oom_score_adj: process.oom_score_adj,
        seccomp,
    }))
}

/// The environment as runc prepares it: an entry without `=`, with an
/// empty name or a NUL is refused; a key given twice keeps its last value
/// (in the place of its last occurrence); an empty HOME is dropped, and
/// then HOME is wanted from the container's /etc/passwd.
fn environment(entries: Vec<String>) -> Result<(Vec<String>, bool), Error> {
    let invalid = |i: usize, entry: &str, why: &str| {
        Error::Invalid(format!("config.json: process.env[{i}] {entry:?} {why}"))
    };
    let mut seen = std::collections::HashSet::new();
    let mut kept = Vec::new();
    let mut home_set = false;
    for (i, entry) in entries.iter().enumerate().rev() {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(invalid(i, entry, "has no '='"));
        };
        if key.is_empty() {
            return Err(invalid(i, entry, "has an empty name"));
        }
        if entry.contains('\0') {
            return Err(invalid(i, entry, "contains NUL"));
        }
        if !seen.insert(key) {
            continue;
        }
        if key == "HOME" {
            if value.is_empty() {
                continue;
            }
            home_set = true;
        }
        kept.push(entry.clone());
    }
    kept.reverse();
    Ok((kept, !home_set))
}

/// The names' capability bits; a name this crius does not know is skipped
/// with a warning, as runc does (a newer capability than this kernel's).
fn mask(names: &[String]) -> u64 {
    names
        .iter()
        .fold(0u64, |mask, name| match capability_bit(name) {
            Some(bit) => mask | 1 << bit,
            None => {
                tracing::warn!(capability = %name, "unknown capability skipped");
                mask
            }
        })
}

/// "CAP_NET_ADMIN" → its bit.
fn capability_bit(name: &str) -> Option<u32> {
    let bare = name.strip_prefix("CAP_").unwrap_or(name);
    crate::container::security::capability_names()
        .iter()
        .position(|n| n.eq_ignore_ascii_case(bare))
        .map(|bit| bit as u32)
}

fn rlimit_resource(kind: &str) -> Option<u32> {
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
    Some(resource)
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

    fn planned(process: serde_json::Value) -> Plan {
        plan(&config(process, serde_json::json!({})))
            .unwrap()
            .unwrap()
    }

    fn invalid(process: serde_json::Value) -> String {
        match plan(&config(process, serde_json::json!({}))) {
            Err(Error::Invalid(message)) => message,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn the_bundle_becomes_raw_settings() {
        let plan = planned(serde_json::json!({
            "env": ["PATH=/bin"], "cwd": "/work",
            "user": {"uid": 1000, "gid": 100, "umask": 18, "additionalGids": [5, 6]},
            "capabilities": {"bounding": ["CAP_CHOWN", "CAP_NET_RAW"],
                             "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"],
                             "ambient": ["CAP_NET_RAW"]},
            "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096}],
            "noNewPrivileges": true, "apparmorProfile": "crius-default",
            "oomScoreAdj": 1000
        }));
        assert_eq!(plan.env, ["PATH=/bin"]);
        assert!(plan.home_wanted);
        assert_eq!(plan.cwd, "/work");
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
        assert_eq!(plan.rlimits[0].resource, libc::RLIMIT_NOFILE);
        assert_eq!(plan.rlimits[0].hard, 4096);
        assert!(plan.no_new_privs);
        assert_eq!(plan.apparmor.as_deref(), Some("crius-default"));
        assert_eq!(plan.oom_score_adj, Some(1000));
        assert!(plan.selinux.is_none() && plan.seccomp.is_none());
    }

    #[test]
    fn the_environment_is_prepared_as_runc_does() {
        let plan = planned(serde_json::json!({"env": ["HOME=/root"], "cwd": "/"}));
        assert_eq!(plan.env, ["HOME=/root"]);
        assert!(!plan.home_wanted);
        // An empty HOME is replaced from /etc/passwd.
        let plan = planned(serde_json::json!({"env": ["HOME=", "A=1"]}));
        assert_eq!(plan.env, ["A=1"]);
        assert!(plan.home_wanted);
        // The last value of a key wins, in its place.
        let plan = planned(serde_json::json!({"env": ["A=1", "B=2", "A=3", "C=x=y"]}));
        assert_eq!(plan.env, ["B=2", "A=3", "C=x=y"]);
        assert_eq!(plan.cwd, "/");
    }

    #[test]
    fn a_malformed_environment_is_invalid() {
        let message = invalid(serde_json::json!({"env": ["A=1", "JUSTKEY"]}));
        assert!(message.contains("process.env[1]"), "{message}");
        assert!(message.contains("no '='"), "{message}");
        let message = invalid(serde_json::json!({"env": ["=value"]}));
        assert!(message.contains("empty name"), "{message}");
        let message = invalid(serde_json::json!({"env": ["A=x\u{0}y"]}));
        assert!(message.contains("NUL"), "{message}");
    }

    #[test]
    fn unknown_capabilities_are_skipped() {
        let plan = planned(serde_json::json!({
            "capabilities": {"bounding": ["CAP_FLY", "CAP_CHOWN"]}
        }));
        assert_eq!(plan.caps.bounding, 1);
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
            let why = plan(&config(process, linux)).unwrap().unwrap_err();
            assert!(why.0.contains(named), "{why:?}");
        }
    }

    #[test]
    fn a_broken_bundle_is_an_error() {
        assert!(matches!(plan(b"{"), Err(Error::Failed(_))));
        let message = invalid(serde_json::json!({
            "rlimits": [{"type": "RLIMIT_FLY", "soft": 1, "hard": 1}]
        }));
        assert!(message.contains("RLIMIT_FLY"), "{message}");
    }
}
