//! AppArmor: which profile a container runs under, and crius's own default
//! profile, `crius-default`, loaded with `apparmor_parser` the first time a
//! container needs it on a node where AppArmor is enabled.
//!
//! The profile is a deny list in the spirit of the peers' defaults (written
//! here): a container keeps what its capabilities, seccomp filter and
//! namespaces already allow, and loses what none of those covers: mounting,
//! the kernel's settings and secrets reached through /proc and /sys, and
//! tracing or signalling processes outside its own profile. On a node
//! without AppArmor, `RuntimeDefault` means no profile (what the CRI asks of
//! runtimes there) and `Localhost` is refused.

use super::ContainerError;
use crate::cri;
use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

pub const DEFAULT_PROFILE: &str = "crius-default";

/// The text of `crius-default`.
pub fn default_profile_text() -> String {
    format!(
        r#"# crius's default AppArmor profile for containers (RuntimeDefault).
profile {DEFAULT_PROFILE} flags=(attach_disconnected,mediate_deleted) {{
  network,
  capability,
  file,
  umount,
  # Signals and tracing stay among processes under this profile.
  signal (receive) peer=unconfined,
  signal (send, receive) peer={DEFAULT_PROFILE},
  ptrace (trace, read, tracedby, readby) peer={DEFAULT_PROFILE},
  # No new mounts, whatever the capabilities.
  deny mount,
  # The kernel's memory, settings and triggers.
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,
  deny /proc/mem rwklx,
  deny /proc/kmem rwklx,
  deny /proc/sys/kernel/** wklx,
  deny /proc/sys/vm/** wklx,
  deny /proc/sys/fs/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
  deny /sys/kernel/debug/** rwklx,
}}
"#
    )
}

/// Whether the node enforces AppArmor.
pub fn enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
}

/// What a container asks for, as the CRI's fields (or the deprecated
/// annotation-style string) say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wanted {
    RuntimeDefault,
    Unconfined,
    Localhost(String),
}

#[allow(deprecated)] // apparmor_profile is still sent by older kubelets.
pub fn wanted(sc: &cri::LinuxContainerSecurityContext) -> Wanted {
    use cri::security_profile::ProfileType;
    match &sc.apparmor {
        Some(p) => match ProfileType::try_from(p.profile_type) {
            Ok(ProfileType::Unconfined) => Wanted::Unconfined,
            // kubelet sends the bare name; critest and older callers the
            // "localhost/" form of the annotation era. Both name one profile.
            Ok(ProfileType::Localhost) => Wanted::Localhost(
                p.localhost_ref
                    .strip_prefix("localhost/")
                    .unwrap_or(&p.localhost_ref)
                    .to_string(),
            ),
            _ => Wanted::RuntimeDefault,
        },
        None => match sc.apparmor_profile.as_str() {
            "" | "runtime/default" => Wanted::RuntimeDefault,
            "unconfined" => Wanted::Unconfined,
            p => Wanted::Localhost(p.strip_prefix("localhost/").unwrap_or(p).to_string()),
        },
    }
}

/// The profile to run under (`None`: none), given whether the node has
/// AppArmor. Privileged containers run unconfined, as in both peers.
pub fn choose(
    wanted: &Wanted,
    privileged: bool,
    node_has_apparmor: bool,
) -> Result<Option<String>, ContainerError> {
    match wanted {
        _ if privileged => Ok(None),
        Wanted::Unconfined => Ok(node_has_apparmor.then(|| "unconfined".to_string())),
        Wanted::RuntimeDefault => Ok(node_has_apparmor.then(|| DEFAULT_PROFILE.to_string())),
        Wanted::Localhost(name) if !node_has_apparmor => {
            Err(ContainerError::Precondition(format!(
                "config.linux.security_context.apparmor: profile {name:?} asked for, but AppArmor is not enabled on this node"
            )))
        }
        Wanted::Localhost(name) if name.is_empty() => Err(ContainerError::Invalid(
            "config.linux.security_context.apparmor.localhost_ref is empty".into(),
        )),
        Wanted::Localhost(name) => Ok(Some(name.clone())),
    }
}

/// The profile for a container on this node, loading `crius-default` first
/// when it is the one and the kernel does not have it (a reload of the
/// node's profiles may have dropped it since). A Localhost profile must be
/// loaded already: runc would fail on it with a message naming none of it.
pub fn profile_for(
    sc: &cri::LinuxContainerSecurityContext,
) -> Result<Option<String>, ContainerError> {
    let profile = choose(&wanted(sc), sc.privileged, enabled())?;
    match profile.as_deref() {
        Some(DEFAULT_PROFILE) if loaded(DEFAULT_PROFILE) != Some(true) => {
            static LOADING: Mutex<()> = Mutex::new(());
            let _one_at_a_time = LOADING.lock().unwrap_or_else(|e| e.into_inner());
            if loaded(DEFAULT_PROFILE) != Some(true) {
                load_default().map_err(|e| {
                    ContainerError::Precondition(format!(
                        "loading AppArmor profile {DEFAULT_PROFILE}: {e}"
                    ))
                })?;
            }
        }
        Some(name)
            if name != DEFAULT_PROFILE && name != "unconfined" && loaded(name) == Some(false) =>
        {
            return Err(ContainerError::Precondition(format!(
                "config.linux.security_context.apparmor: profile {name:?} is not loaded on this node (load it with apparmor_parser)"
            )));
        }
        _ => {}
    }
    Ok(profile)
}

/// Whether the kernel has profile `name` loaded; None when its list cannot
/// be read (securityfs not mounted).
fn loaded(name: &str) -> Option<bool> {
    let list = std::fs::read_to_string("/sys/kernel/security/apparmor/profiles").ok()?;
    Some(is_listed(&list, name))
}

/// Whether the kernel's profile list (lines of "name (mode)") has `name`.
fn is_listed(list: &str, name: &str) -> bool {
    list.lines()
        .filter_map(|line| line.rsplit_once(" ("))
        .any(|(listed, _)| listed == name)
}

/// `apparmor_parser -r` with the profile on its stdin (replacing an older
/// version of it).
fn load_default() -> Result<(), String> {
    let mut child = Command::new("apparmor_parser")
        .args(["-K", "-r"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run apparmor_parser: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(default_profile_text().as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
    }
    tracing::info!(
        profile = DEFAULT_PROFILE,
        "loaded crius's default AppArmor profile"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sc(json: &str) -> cri::LinuxContainerSecurityContext {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_profile_depends_on_the_node_and_the_request() {
        let default = wanted(&sc("{}"));
        assert_eq!(default, Wanted::RuntimeDefault);
        assert_eq!(
            choose(&default, false, true).unwrap().as_deref(),
            Some(DEFAULT_PROFILE)
        );
        assert_eq!(
            choose(&default, false, false).unwrap(),
            None,
            "no AppArmor: no profile"
        );
        assert_eq!(
            choose(&default, true, true).unwrap(),
            None,
            "privileged: unconfined"
        );
        let local = wanted(&sc(
            r#"{"apparmor": {"profile_type": 2, "localhost_ref": "my-prof"}}"#,
        ));
        assert_eq!(
            choose(&local, false, true).unwrap().as_deref(),
            Some("my-prof")
        );
        assert!(matches!(
            choose(&local, false, false),
            Err(ContainerError::Precondition(_))
        ));
        let prefixed = wanted(&sc(
            r#"{"apparmor": {"profile_type": 2, "localhost_ref": "localhost/my-prof"}}"#,
        ));
        assert_eq!(prefixed, local, "critest's form names the same profile");
        let legacy = wanted(&sc(r#"{"apparmor_profile": "localhost/old"}"#));
        assert_eq!(legacy, Wanted::Localhost("old".into()));
        let unconfined = wanted(&sc(r#"{"apparmor": {"profile_type": 1}}"#));
        assert_eq!(
            choose(&unconfined, false, true).unwrap().as_deref(),
            Some("unconfined")
        );
    }

    #[test]
    fn loaded_profiles_are_read_from_the_kernels_list() {
        let list = "crius-default (enforce)\nmy prof (complain)\n/usr/bin/man (enforce)\n";
        assert!(is_listed(list, "crius-default"));
        assert!(is_listed(list, "my prof"));
        assert!(is_listed(list, "/usr/bin/man"));
        assert!(!is_listed(list, "crius"));
        assert!(!is_listed("", "crius-default"));
    }

    /// The profile compiles with the real parser (no kernel needed: -Q).
    #[test]
    fn the_default_profile_parses() {
        let mut child = Command::new("apparmor_parser")
            .args(["-Q", "-K"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("apparmor_parser (Debian package apparmor) is installed by make test");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(default_profile_text().as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = default_profile_text();
        for rule in [
            "deny mount,",
            "deny /proc/sysrq-trigger",
            "deny /sys/firmware/**",
        ] {
            assert!(text.contains(rule), "{rule}");
        }
    }
}
