//! OCI runtime handlers (runc, crun, ...): where their binaries are, which
//! versions and features they have.
//!
//! Probing runs the binaries (`--version`, `features`), so it happens at start
//! and again only for handlers that were unusable, so that installing a missing
//! runtime is noticed without a restart and `Status` stays cheap otherwise.

use crate::config::HandlerConfig;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::RwLock;

/// What crius knows about one configured handler.
#[derive(Debug, Clone, Serialize)]
pub struct HandlerInfo {
    pub name: String,
    /// The configured binary (name or path).
    pub binary: String,
    /// The resolved executable; `None` when it cannot be found.
    pub path: Option<PathBuf>,
    /// First line of `--version`.
    pub version: Option<String>,
    pub features: HandlerFeatures,
    /// Why the handler is unusable, when it is.
    pub problem: Option<String>,
}

/// Features reported to kubelet per handler.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct HandlerFeatures {
    /// Kernel >= 5.12 (mount_setattr) and the runtime knows the "rro" option.
    pub recursive_read_only_mounts: bool,
    /// User namespaces with idmapped mounts. crius makes the user namespace
    /// and the idmapped mounts itself (any runtime can join them); it needs
    /// Linux 5.19 (overlayfs over idmapped layers). A volume on tmpfs can be
    /// idmapped from 6.3 only: before, its CreateContainer fails naming it.
    pub user_namespaces: bool,
    /// The runtime moves host network interfaces in (linux.netDevices),
    /// for CDI netDevices.
    pub net_devices: bool,
    /// The runtime writes intelRdt.schemata and enables RDT monitoring,
    /// for CDI intelRdt edits of version 1.1.0.
    pub intel_rdt_schemata: bool,
    pub intel_rdt_monitoring: bool,
}

impl HandlerInfo {
    pub fn usable(&self) -> bool {
        self.problem.is_none()
    }
}

/// All configured handlers, by name.
#[derive(Debug)]
pub struct Handlers {
    default: String,
    configs: BTreeMap<String, HandlerConfig>,
    probed: RwLock<BTreeMap<String, HandlerInfo>>,
}

impl Handlers {
    /// Probes every configured handler.
    pub fn probe(default: &str, configs: &BTreeMap<String, HandlerConfig>) -> Handlers {
        let probed = configs
            .iter()
            .map(|(name, config)| (name.clone(), probe_one(name, config)))
            .collect();
        Handlers {
            default: default.to_string(),
            configs: configs.clone(),
            probed: RwLock::new(probed),
        }
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// The handler for a pod's `runtime_handler` ("" is the default), or
    /// `None` when no such handler is configured.
    pub fn get(&self, name: &str) -> Option<HandlerInfo> {
        let name = if name.is_empty() { &self.default } else { name };
        self.probed
            .read()
            .expect("handlers lock")
            .get(name)
            .cloned()
    }

    /// Every handler, re-probing the ones that were unusable.
    pub fn refresh(&self) -> Vec<HandlerInfo> {
        let stale: Vec<String> = self
            .probed
            .read()
            .expect("handlers lock")
            .values()
            .filter(|h| !h.usable())
            .map(|h| h.name.clone())
            .collect();
        if !stale.is_empty() {
            let fresh: Vec<HandlerInfo> = stale
                .iter()
                .map(|name| probe_one(name, &self.configs[name]))
                .collect();
            let mut probed = self.probed.write().expect("handlers lock");
            for info in fresh {
                probed.insert(info.name.clone(), info);
            }
        }
        self.probed
            .read()
            .expect("handlers lock")
            .values()
            .cloned()
            .collect()
    }
}

fn probe_one(name: &str, config: &HandlerConfig) -> HandlerInfo {
    let mut info = HandlerInfo {
        name: name.to_string(),
        binary: config.binary.clone(),
        path: find_executable(&config.binary),
        version: None,
        features: HandlerFeatures::default(),
        problem: None,
    };
    let Some(path) = info.path.clone() else {
        info.problem = Some(format!(
            "runtime binary {:?} not found in PATH",
            config.binary
        ));
        return info;
    };
    match Command::new(&path).arg("--version").output() {
        Ok(out) if out.status.success() => {
            info.version = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .map(str::to_string);
        }
        Ok(out) => {
            info.problem = Some(format!(
                "{} --version exited with {}",
                path.display(),
                out.status
            ))
        }
        Err(e) => info.problem = Some(format!("cannot run {}: {e}", path.display())),
    }
    let doc = features_document(&path);
    let flag = |pointer: &str| {
        doc.as_ref()
            .and_then(|d| d.pointer(pointer))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    };
    info.features.recursive_read_only_mounts = kernel_at_least(5, 12) && supports_rro(doc.as_ref());
    info.features.net_devices = flag("/linux/netDevices/enabled");
    info.features.intel_rdt_schemata = flag("/linux/intelRdt/schemata");
    info.features.intel_rdt_monitoring = flag("/linux/intelRdt/monitoring");
    info.features.user_namespaces = kernel_at_least(5, 19);
    if info.problem.is_none() {
        info.problem = cgroup_conflict(&path);
    }
    info
}

/// crun (1.8 at least) refuses to create containers on a hybrid cgroup
/// layout whose cgroup2 tree has controllers bound to it ("cgroups in hybrid
/// mode not supported"), so on such a node it cannot run containers.
fn cgroup_conflict(runtime: &Path) -> Option<String> {
    let is_crun = runtime
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("crun"));
    let controllers =
        std::fs::read_to_string("/sys/fs/cgroup/unified/cgroup.controllers").unwrap_or_default();
    (is_crun && !controllers.trim().is_empty()).then(|| {
        format!(
            "crun cannot manage cgroups on this hybrid cgroup layout: the cgroup2 tree at /sys/fs/cgroup/unified has controllers ({}) bound to it",
            controllers.trim()
        )
    })
}

/// `<runtime> features`: the OCI runtime features document, if the
/// runtime has one.
fn features_document(runtime: &Path) -> Option<serde_json::Value> {
    let out = Command::new(runtime).arg("features").output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

/// The features document lists "rro" in mountOptions when the runtime can
/// make recursive read-only mounts.
fn supports_rro(doc: Option<&serde_json::Value>) -> bool {
    doc.and_then(|d| d.get("mountOptions"))
        .and_then(|opts| opts.as_array())
        .is_some_and(|opts| opts.iter().any(|o| o == "rro"))
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else {
        return false;
    };
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// A crius helper binary: beside the running criusd, else in PATH.
pub fn helper_binary(name: &str) -> PathBuf {
    // criusd runs from a detached read-only mount of its binary, whose
    // path says nothing of where it was installed.
    std::env::var_os(crate::read_only_exe::BINARY_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| {
            std::env::current_exe()
                .ok()?
                .parent()
                .map(Path::to_path_buf)
        })
        .map(|dir| dir.join(name))
        .filter(|p| p.is_file())
        .or_else(|| find_executable(name))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// An absolute path as is, or a name looked up in PATH.
pub fn find_executable(binary: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if binary.contains('/') {
        let path = PathBuf::from(binary);
        return is_exec(&path).then_some(path);
    }
    let search = std::env::var_os("PATH")
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&search)
        .map(|dir| dir.join(binary))
        .find(|p| is_exec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, HandlerConfig> {
        pairs
            .iter()
            .map(|(n, b)| {
                (
                    n.to_string(),
                    HandlerConfig {
                        binary: b.to_string(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn missing_binary_is_a_named_problem() {
        let handlers = Handlers::probe("ghost", &configs(&[("ghost", "no-such-runtime-xyz")]));
        let info = handlers.get("").unwrap();
        assert!(!info.usable());
        assert!(info.problem.unwrap().contains("no-such-runtime-xyz"));
        assert!(handlers.get("other").is_none());
    }

    #[test]
    fn a_real_binary_is_usable() {
        // `true --version` prints coreutils' version and exits 0.
        let handlers = Handlers::probe("t", &configs(&[("t", "true")]));
        let info = handlers.get("t").unwrap();
        assert!(info.usable(), "{info:?}");
        assert!(info.path.unwrap().is_absolute());
        assert_eq!(info.features.user_namespaces, kernel_at_least(5, 19));
    }

    #[test]
    fn kernel_version_compare() {
        assert!(kernel_at_least(2, 6));
        assert!(!kernel_at_least(999, 0));
    }
}
