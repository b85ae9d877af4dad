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
use std::sync::OnceLock;

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
            Ok(ProfileType::Localhost) => Wanted::Localhost(p.localhost_ref.clone()),
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
/// when it is the one.
pub fn profile_for(
    sc: &cri::LinuxContainerSecurityContext,
) -> Result<Option<String>, ContainerError> {
    let profile = choose(&wanted(sc), sc.privileged, enabled())?;
    if profile.as_deref() == Some(DEFAULT_PROFILE) {
        static LOADED: OnceLock<Result<(), String>> = OnceLock::new();
        LOADED.get_or_init(load_default).clone().map_err(|e| {
            ContainerError::Precondition(format!("loading AppArmor profile {DEFAULT_PROFILE}: {e}"))
        })?;
    }
    Ok(profile)
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
        let legacy = wanted(&sc(r#"{"apparmor_profile": "localhost/old"}"#));
        assert_eq!(legacy, Wanted::Localhost("old".into()));
        let unconfined = wanted(&sc(r#"{"apparmor": {"profile_type": 1}}"#));
        assert_eq!(
            choose(&unconfined, false, true).unwrap().as_deref(),
            Some("unconfined")
        );
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
