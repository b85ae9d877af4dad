//! A container's security settings from its CRI security context:
//! capabilities, seccomp, AppArmor, SELinux, masked and read-only paths.
//!
//! AppArmor and SELinux are applied only where the node has them. On a node
//! without AppArmor, `RuntimeDefault` and `Unconfined` mean the same (no
//! profile) and a `Localhost` profile is refused, since it cannot be honoured;
//! without SELinux, SELinux options are ignored, as the CRI allows.

use super::ContainerError;
use super::seccomp;
use crate::cri;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities, LinuxSeccomp};
use std::path::Path;

/// Docker's and containerd's default capability set.
pub const DEFAULT_CAPABILITIES: &[Capability] = &[
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability Linux defines (up to CAP_CHECKPOINT_RESTORE, 40).
const ALL_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities' names without `CAP_`, each at its number.
pub fn capability_names() -> &'static [&'static str] {
    ALL_NAMES
}

/// "NET_ADMIN", "CAP_NET_ADMIN", "net_admin" → the capability.
pub fn parse_capability(name: &str, field: &str) -> Result<Capability, ContainerError> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).map_err(|_| {
        ContainerError::Invalid(format!("{field}: {name:?} is not a Linux capability"))
    })
}

pub fn all_capabilities() -> Capabilities {
    ALL_NAMES
        .iter()
        .map(|n| parse_capability(n, "").expect("known capability"))
        .collect()
}

/// The capabilities criusd holds (its bounding and permitted sets, from
/// /proc/self/status). runc, which criusd starts, can give a container no
/// others: on nodes whose runtime runs in a container, or lacks one as root
/// does here (CAP_SYS_RESOURCE), asking for more fails inside runc.
pub fn held_capabilities() -> &'static Capabilities {
    static HELD: std::sync::OnceLock<Capabilities> = std::sync::OnceLock::new();
    HELD.get_or_init(|| {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let held = held_from_status(&status);
        let missing: Vec<&str> = ALL_NAMES
            .iter()
            .filter(|n| !held.contains(&parse_capability(n, "").expect("known capability")))
            .copied()
            .collect();
        if !missing.is_empty() {
            tracing::info!(
                ?missing,
                "criusd lacks these capabilities: privileged and ALL mean all the others"
            );
        }
        held
    })
}

/// The capabilities in both `CapBnd` and `CapPrm` of a /proc status text.
fn held_from_status(status: &str) -> Capabilities {
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(u64::MAX)
    };
    let held = mask("CapBnd:") & mask("CapPrm:");
    ALL_NAMES
        .iter()
        .enumerate()
        .filter(|(bit, _)| held & (1 << bit) != 0)
        .map(|(_, n)| parse_capability(n, "").expect("known capability"))
        .collect()
}

fn is_all(name: &str) -> bool {
    name.eq_ignore_ascii_case("ALL")
}

/// One capability a request names, which criusd must hold.
fn named_capability(
    name: &str,
    field: &str,
    held: &Capabilities,
) -> Result<Capability, ContainerError> {
    let cap = parse_capability(name, field)?;
    if !held.contains(&cap) {
        return Err(ContainerError::Invalid(format!(
            "{field}: {name:?} is not held by criusd (not in its capability bounding set), \
             so no container on this node can have it"
        )));
    }
    Ok(cap)
}

/// The capability sets of a container's process. Root gets the set as
/// bounding, permitted and effective; another user gets it as bounding only
/// (the kernel clears the rest on exec), plus its ambient capabilities.
/// Privileged and `ALL` mean all that criusd holds (`held`), as in containerd
/// and CRI-O; defaults criusd lacks are left out; a capability a request
/// names that criusd lacks is refused, naming it.
pub fn capabilities(
    sc: &cri::LinuxContainerSecurityContext,
    uid: u32,
    held: &Capabilities,
) -> Result<(LinuxCapabilities, Capabilities), ContainerError> {
    let field = "config.linux.security_context.capabilities";
    let add_field = format!("{field}.add_capabilities");
    let caps = sc.capabilities.clone().unwrap_or_default();
    let mut set: Capabilities = if sc.privileged {
        held.clone()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .filter(|c| held.contains(c))
            .copied()
            .collect()
    };
    if !sc.privileged {
        if caps.add_capabilities.iter().any(|c| is_all(c)) {
            set = held.clone();
        } else {
            for name in &caps.add_capabilities {
                set.insert(named_capability(name, &add_field, held)?);
            }
        }
        if caps.drop_capabilities.iter().any(|c| is_all(c)) {
            set.clear();
            // Adds still apply after dropping ALL, as in containerd.
            for name in caps.add_capabilities.iter().filter(|c| !is_all(c)) {
                set.insert(named_capability(name, &add_field, held)?);
            }
        } else {
            for name in &caps.drop_capabilities {
                set.remove(&parse_capability(
                    name,
                    &format!("{field}.drop_capabilities"),
                )?);
            }
        }
    }
    let mut ambient = Capabilities::new();
    for name in &caps.add_ambient_capabilities {
        let cap = named_capability(name, &format!("{field}.add_ambient_capabilities"), held)?;
        set.insert(cap);
        ambient.insert(cap);
    }
    let mut oci = LinuxCapabilities::default();
    oci.set_bounding(Some(set.clone()));
    if uid == 0 {
        oci.set_permitted(Some(set.clone()));
        oci.set_effective(Some(set.clone()));
    } else {
        oci.set_permitted(Some(ambient.clone()));
        oci.set_effective(Some(ambient.clone()));
    }
    oci.set_inheritable(Some(ambient.clone()));
    oci.set_ambient(Some(ambient));
    Ok((oci, set))
}

/// The seccomp filter, or `None` for unconfined.
#[allow(deprecated)] // seccomp_profile_path is still sent by older kubelets.
pub fn seccomp(
    sc: &cri::LinuxContainerSecurityContext,
    caps: &Capabilities,
) -> Result<Option<LinuxSeccomp>, ContainerError> {
    use cri::security_profile::ProfileType;
    if sc.privileged {
        return Ok(None);
    }
    let field = "config.linux.security_context.seccomp";
    let (kind, localhost) = match &sc.seccomp {
        Some(p) => (
            ProfileType::try_from(p.profile_type).map_err(|_| {
                ContainerError::Invalid(format!(
                    "{field}.profile_type {} is unknown",
                    p.profile_type
                ))
            })?,
            p.localhost_ref.clone(),
        ),
        // The deprecated string form; empty means unconfined.
        None => match sc.seccomp_profile_path.as_str() {
            "" | "unconfined" => (ProfileType::Unconfined, String::new()),
            "runtime/default" | "docker/default" => (ProfileType::RuntimeDefault, String::new()),
            path => match path.strip_prefix("localhost/") {
                Some(p) => (ProfileType::Localhost, p.to_string()),
                None => {
                    return Err(ContainerError::Invalid(format!(
                        "config.linux.security_context.seccomp_profile_path {path:?} is not runtime/default, unconfined or localhost/<path>"
                    )));
                }
            },
        },
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => Ok(Some(seccomp::default_profile(caps))),
        ProfileType::Localhost => {
            let path = Path::new(&localhost);
            if !path.is_absolute() {
                return Err(ContainerError::Invalid(format!(
                    "{field}.localhost_ref {localhost:?} must be an absolute path"
                )));
            }
            let bytes = std::fs::read(path).map_err(|e| {
                ContainerError::Invalid(format!("{field}.localhost_ref {localhost:?}: {e}"))
            })?;
            serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                ContainerError::Invalid(format!(
                    "{field}.localhost_ref {localhost:?} is not an OCI seccomp profile: {e}"
                ))
            })
        }
    }
}

fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// The SELinux process label, where the node has SELinux.
pub fn selinux_label(sc: &cri::LinuxContainerSecurityContext) -> Option<String> {
    let o = sc.selinux_options.as_ref()?;
    if !selinux_enabled() || (o.user.is_empty() && o.role.is_empty() && o.r#type.is_empty()) {
        return None;
    }
    let mut label = format!("{}:{}:{}", o.user, o.role, o.r#type);
    if !o.level.is_empty() {
        label.push(':');
        label.push_str(&o.level);
    }
    Some(label)
}

/// Masked and read-only paths: exactly the CRI's lists, none for privileged
/// containers. kubelet decides them: it sends the usual lists for
/// `procMount: Default` and empty ones for `Unmasked`, so an empty list means
/// none, as in containerd and CRI-O (a bare crictl config masks nothing).
pub fn masked_and_readonly(sc: &cri::LinuxContainerSecurityContext) -> (Vec<String>, Vec<String>) {
    if sc.privileged {
        return (Vec::new(), Vec::new());
    }
    (sc.masked_paths.clone(), sc.readonly_paths.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(json: &str) -> cri::LinuxContainerSecurityContext {
        serde_json::from_str(json).unwrap()
    }

    fn capabilities(
        sc: &cri::LinuxContainerSecurityContext,
        uid: u32,
    ) -> Result<(LinuxCapabilities, Capabilities), ContainerError> {
        super::capabilities(sc, uid, &all_capabilities())
    }

    #[test]
    fn all_means_all_that_criusd_holds() {
        // CapBnd without CAP_SYS_RESOURCE (24), as root has on this node.
        let status = "Name:\tcriusd\nCapPrm:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        let held = held_from_status(status);
        assert_eq!(held.len(), ALL_NAMES.len() - 1);
        assert!(!held.contains(&Capability::SysResource));
        // A permitted set narrower than the bounding set narrows it too.
        let held_prm = held_from_status("CapPrm:\t0000000000000001\nCapBnd:\t000001ffffffffff\n");
        assert_eq!(held_prm, [Capability::Chown].into_iter().collect());
        for json in [
            r#"{"privileged": true}"#,
            r#"{"capabilities": {"add_capabilities": ["ALL"]}}"#,
        ] {
            let (oci, set) = super::capabilities(&sc(json), 0, &held).unwrap();
            assert_eq!(set, held, "{json}");
            assert!(
                !oci.bounding()
                    .as_ref()
                    .unwrap()
                    .contains(&Capability::SysResource)
            );
        }
        let err = super::capabilities(
            &sc(r#"{"capabilities": {"add_capabilities": ["CAP_SYS_RESOURCE"]}}"#),
            0,
            &held,
        )
        .unwrap_err();
        assert!(matches!(err, ContainerError::Invalid(_)));
        assert!(
            err.to_string()
                .contains("add_capabilities: \"CAP_SYS_RESOURCE\" is not held by criusd"),
            "{err}"
        );
        let err = super::capabilities(
            &sc(r#"{"capabilities": {"add_ambient_capabilities": ["SYS_RESOURCE"]}}"#),
            1000,
            &held,
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("add_ambient_capabilities"),
            "{err}"
        );
        // Defaults that criusd lacks are left out, not refused.
        let (_, set) = super::capabilities(&sc("{}"), 0, &held_prm).unwrap();
        assert_eq!(set, [Capability::Chown].into_iter().collect());
    }

    #[test]
    fn capability_sets() {
        let (oci, set) = capabilities(&sc("{}"), 0).unwrap();
        assert_eq!(set.len(), DEFAULT_CAPABILITIES.len());
        assert_eq!(oci.effective().as_ref().unwrap().len(), set.len());
        let (_, set) = capabilities(
            &sc(r#"{"capabilities": {"add_capabilities": ["NET_ADMIN"], "drop_capabilities": ["CAP_CHOWN"]}}"#),
            0,
        )
        .unwrap();
        assert!(set.contains(&Capability::NetAdmin) && !set.contains(&Capability::Chown));
        let (_, set) = capabilities(
            &sc(r#"{"capabilities": {"add_capabilities": ["SYS_TIME"], "drop_capabilities": ["ALL"]}}"#),
            0,
        )
        .unwrap();
        assert_eq!(set, [Capability::SysTime].into_iter().collect());
        let (_, set) = capabilities(&sc(r#"{"privileged": true}"#), 0).unwrap();
        assert_eq!(set.len(), ALL_NAMES.len());
        let (oci, _) = capabilities(&sc("{}"), 1000).unwrap();
        assert!(oci.effective().as_ref().unwrap().is_empty());
        let err =
            capabilities(&sc(r#"{"capabilities": {"add_capabilities": ["FLY"]}}"#), 0).unwrap_err();
        assert!(err.to_string().contains("add_capabilities: \"FLY\""));
    }

    #[test]
    fn seccomp_choices() {
        let caps = Capabilities::new();
        assert!(seccomp(&sc("{}"), &caps).unwrap().is_none());
        assert!(
            seccomp(&sc(r#"{"seccomp": {"profile_type": 0}}"#), &caps)
                .unwrap()
                .is_some()
        );
        assert!(
            seccomp(&sc(r#"{"seccomp_profile_path": "runtime/default"}"#), &caps)
                .unwrap()
                .is_some()
        );
        let err = seccomp(
            &sc(r#"{"seccomp": {"profile_type": 2, "localhost_ref": "/no/such.json"}}"#),
            &caps,
        )
        .unwrap_err();
        assert!(err.to_string().contains("/no/such.json"));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("p.json");
        std::fs::write(&file, r#"{"defaultAction": "SCMP_ACT_LOG"}"#).unwrap();
        let json = format!(
            r#"{{"seccomp": {{"profile_type": 2, "localhost_ref": "{}"}}}}"#,
            file.display()
        );
        assert!(seccomp(&sc(&json), &caps).unwrap().is_some());
    }

    #[test]
    fn masked_paths_are_the_requests_own() {
        let (masked, ro) = masked_and_readonly(&sc("{}"));
        assert!(masked.is_empty() && ro.is_empty(), "procMount: Unmasked");
        let (masked, ro) =
            masked_and_readonly(&sc(r#"{"masked_paths": ["/x"], "readonly_paths": ["/y"]}"#));
        assert_eq!(
            (masked, ro),
            (vec!["/x".to_string()], vec!["/y".to_string()])
        );
        let (masked, ro) = masked_and_readonly(&sc(r#"{"privileged": true}"#));
        assert!(masked.is_empty() && ro.is_empty());
    }
}
