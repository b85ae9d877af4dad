//! What a RunPodSandbox config asks for, checked before anything is made:
//! the unique name, hostname, namespace modes, user namespace maps,
//! namespaced sysctls, the log directory, cgroup parent and DNS settings.

use super::{SandboxError, namespaces};
use crate::cri;

/// What a config asks for, checked before anything is created.
pub(super) struct Plan {
    pub(super) name: String,
    pub(super) hostname: String,
    pub(super) host_network: bool,
    pub(super) host_ipc: bool,
    /// A pod-wide PID namespace (with a pause process as PID 1).
    pub(super) shared_pid: bool,
    pub(super) sysctls: Vec<(String, String)>,
    /// User namespace maps (inside, outside, length) for uids and gids.
    pub(super) user: Option<UserMaps>,
}

type UserMaps = (namespaces::IdMap, namespaces::IdMap);

/// The CRI's id mappings, checked: some, non-empty, root mapped.
fn user_maps(u: &cri::UserNamespace, field: &str) -> Result<UserMaps, SandboxError> {
    let convert = |maps: &[cri::IdMapping], which: &str| {
        if maps.is_empty() {
            return Err(SandboxError::Invalid(format!(
                "{field}.userns_options.{which} is empty"
            )));
        }
        if maps.iter().any(|m| m.length == 0) {
            return Err(SandboxError::Invalid(format!(
                "{field}.userns_options.{which}: a mapping has length 0"
            )));
        }
        if !maps.iter().any(|m| m.container_id == 0) {
            return Err(SandboxError::Invalid(format!(
                "{field}.userns_options.{which}: id 0 (root) is not mapped"
            )));
        }
        // The kernel refuses maps whose ranges overlap on either side;
        // say so here rather than as an Internal from writing uid_map.
        for (side, start) in [
            (
                "container_id",
                (|m: &cri::IdMapping| m.container_id) as fn(&cri::IdMapping) -> u32,
            ),
            ("host_id", |m: &cri::IdMapping| m.host_id),
        ] {
            let mut ranges: Vec<(u64, u64)> = maps
                .iter()
                .map(|m| (start(m) as u64, start(m) as u64 + m.length as u64))
                .collect();
            ranges.sort();
            if ranges.windows(2).any(|w| w[1].0 < w[0].1) {
                return Err(SandboxError::Invalid(format!(
                    "{field}.userns_options.{which}: mappings overlap in their {side} ranges"
                )));
            }
        }
        Ok(maps
            .iter()
            .map(|m| (m.container_id, m.host_id, m.length))
            .collect::<Vec<_>>())
    };
    Ok((convert(&u.uids, "uids")?, convert(&u.gids, "gids")?))
}

/// The log directory is absolute (a relative one would be resolved against
/// criusd's working directory); the cgroup parent stays inside the
/// hierarchy.
fn check_paths(
    config: &cri::PodSandboxConfig,
    linux: &cri::LinuxPodSandboxConfig,
) -> Result<(), SandboxError> {
    let log = std::path::Path::new(&config.log_directory);
    if !config.log_directory.is_empty()
        && (!log.is_absolute() || config.log_directory.contains('\0'))
    {
        return Err(SandboxError::Invalid(format!(
            "config.log_directory {:?} must be an absolute path",
            config.log_directory
        )));
    }
    if linux.cgroup_parent.contains('\0') || linux.cgroup_parent.split('/').any(|part| part == "..")
    {
        return Err(SandboxError::Invalid(format!(
            "config.linux.cgroup_parent {:?} must not contain '..'",
            linux.cgroup_parent
        )));
    }
    Ok(())
}

/// DNS settings become lines of the pod's resolv.conf: a space or newline in
/// one would inject others.
fn check_dns(dns: Option<&cri::DnsConfig>) -> Result<(), SandboxError> {
    let Some(dns) = dns else {
        return Ok(());
    };
    for (i, server) in dns.servers.iter().enumerate() {
        if server.parse::<std::net::IpAddr>().is_err() {
            return Err(SandboxError::Invalid(format!(
                "config.dns_config.servers[{i}] {server:?} is not an IP address"
            )));
        }
    }
    for (field, values) in [("searches", &dns.searches), ("options", &dns.options)] {
        for (i, value) in values.iter().enumerate() {
            if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(SandboxError::Invalid(format!(
                    "config.dns_config.{field}[{i}] {value:?} is empty or contains spaces or control characters"
                )));
            }
        }
    }
    Ok(())
}

impl Plan {
    pub(super) fn of(config: &cri::PodSandboxConfig) -> Result<Plan, SandboxError> {
        let invalid = |m: &str| SandboxError::Invalid(m.to_string());
        let meta = config
            .metadata
            .as_ref()
            .ok_or_else(|| invalid("config.metadata is required"))?;
        for (field, value) in [
            ("name", &meta.name),
            ("namespace", &meta.namespace),
            ("uid", &meta.uid),
        ] {
            if value.is_empty() {
                return Err(SandboxError::Invalid(format!(
                    "config.metadata.{field} is empty"
                )));
            }
        }
        let name = format!(
            "{}_{}_{}_{}",
            meta.name, meta.namespace, meta.uid, meta.attempt
        );
        let linux = config.linux.clone().unwrap_or_default();
        let security = linux.security_context.clone().unwrap_or_default();
        let ns = security.namespace_options.clone().unwrap_or_default();
        let mode = |v: i32| cri::NamespaceMode::try_from(v).unwrap_or(cri::NamespaceMode::Pod);
        let field = "config.linux.security_context.namespace_options";
        for (what, value) in [("network", ns.network), ("ipc", ns.ipc)] {
            if !matches!(
                mode(value),
                cri::NamespaceMode::Pod | cri::NamespaceMode::Node
            ) {
                return Err(SandboxError::Invalid(format!(
                    "{field}.{what} must be POD or NODE"
                )));
            }
        }
        if mode(ns.pid) == cri::NamespaceMode::Target {
            return Err(SandboxError::Invalid(format!(
                "{field}.pid = TARGET is for containers, not sandboxes"
            )));
        }
        let user = match &ns.userns_options {
            Some(u) if mode(u.mode) == cri::NamespaceMode::Pod && !u.uids.is_empty() => {
                Some(user_maps(u, field)?)
            }
            Some(u)
                if !matches!(
                    mode(u.mode),
                    cri::NamespaceMode::Pod | cri::NamespaceMode::Node
                ) =>
            {
                return Err(SandboxError::Invalid(format!(
                    "{field}.userns_options.mode must be POD or NODE"
                )));
            }
            _ => None,
        };
        let shared_pid = mode(ns.pid) == cri::NamespaceMode::Pod;
        let host_network = mode(ns.network) == cri::NamespaceMode::Node;
        if user.is_some()
            && (host_network
                || mode(ns.ipc) == cri::NamespaceMode::Node
                || mode(ns.pid) == cri::NamespaceMode::Node)
        {
            return Err(SandboxError::Invalid(format!(
                "{field}.userns_options: a pod with its own user namespace cannot use the node's network, IPC or PID namespace"
            )));
        }
        if !host_network {
            crate::network::pod::host_ports(config)
                .map_err(|e| SandboxError::Invalid(format!("config.{e}")))?;
        }
        let host_ipc = mode(ns.ipc) == cri::NamespaceMode::Node;
        let hostname = if host_network {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else if config.hostname.is_empty() {
            meta.name.chars().take(63).collect()
        } else {
            config.hostname.clone()
        };
        if !host_network && (hostname.len() > 64 || hostname.contains(['/', '\0'])) {
            return Err(SandboxError::Invalid(format!(
                "config.hostname {hostname:?} is not a valid hostname"
            )));
        }
        check_paths(config, &linux)?;
        check_dns(config.dns_config.as_ref())?;
        let mut sysctls: Vec<(String, String)> = linux.sysctls.into_iter().collect();
        sysctls.sort();
        for (key, _) in &sysctls {
            let (needs, namespace_is_host) = if key.starts_with("net.") {
                ("network", host_network)
            } else if key.starts_with("kernel.shm")
                || key.starts_with("kernel.msg")
                || key == "kernel.sem"
                || key.starts_with("fs.mqueue.")
            {
                ("IPC", host_ipc)
            } else {
                return Err(SandboxError::Invalid(format!(
                    "config.linux.sysctls: {key:?} is not a namespaced sysctl"
                )));
            };
            if namespace_is_host {
                return Err(SandboxError::Invalid(format!(
                    "config.linux.sysctls: {key:?} needs the pod's own {needs} namespace, but the pod uses the host's"
                )));
            }
            if key.contains("..") || key.contains('/') {
                return Err(SandboxError::Invalid(format!(
                    "config.linux.sysctls: {key:?} is malformed"
                )));
            }
        }
        Ok(Plan {
            name,
            hostname,
            host_network,
            host_ipc,
            shared_pid,
            sysctls,
            user,
        })
    }
}
