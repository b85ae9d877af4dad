//! Pod networking: which network provider serves pods and whether it is
//! ready (`readiness`), CNI configs (`cni_config`), running plugins (`cni`),
//! the built-in network (`bridge`, with `ipam`, `iptables` and `netlink`),
//! and a pod's attachment to either (`pod`).
//!
//! A CNI network config in `network.cni_conf_dir` wins; without one, pods
//! use crius's built-in bridge network unless it is disabled.

pub mod bridge;
pub mod cni;
pub mod cni_config;
pub mod ipam;
pub mod iptables;
pub mod netlink;
pub mod pod;

use crate::config::NetworkSection;
use bridge::BridgeNetwork;
use serde::Serialize;

/// The answer behind the `NetworkReady` condition.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub ready: bool,
    /// CamelCase reason when not ready.
    pub reason: String,
    pub message: String,
    /// "cni" with the network name, or "none".
    pub provider: String,
}

/// Looks at the CNI config dir and plugin dirs now (kubelet polls `Status`
/// every few seconds, so a config dropped in later is noticed). Without a
/// CNI config, the built-in network is ready once its bridge is set up for
/// `pod_cidrs` (or the configured subnets).
pub fn readiness(
    config: &NetworkSection,
    builtin: &BridgeNetwork,
    pod_cidrs: &[String],
) -> Readiness {
    match cni_config::load_first(&config.cni_conf_dir) {
        Ok(Some(list)) => match list.missing_plugins(&config.cni_bin_dirs).as_slice() {
            [] => match cni::status(&list, &config.cni_bin_dirs) {
                Ok(()) => Readiness {
                    ready: true,
                    reason: String::new(),
                    message: String::new(),
                    provider: format!("cni:{}", list.name),
                },
                Err(e @ cni::CniError::Unsupported { .. }) => Readiness {
                    ready: false,
                    reason: "CNIVersionUnsupported".into(),
                    message: format!("CNI network {:?}: {e}", list.name),
                    provider: format!("cni:{}", list.name),
                },
                Err(e) => Readiness {
                    ready: false,
                    reason: "NetworkPluginNotReady".into(),
                    message: format!("CNI network {:?}: {e}", list.name),
                    provider: format!("cni:{}", list.name),
                },
            },
            missing => Readiness {
                ready: false,
                reason: "CNIPluginNotFound".into(),
                message: format!(
                    "CNI network {:?} ({}) needs plugins {missing:?}, not found in {}",
                    list.name,
                    list.file.display(),
                    join_dirs(&config.cni_bin_dirs)
                ),
                provider: format!("cni:{}", list.name),
            },
        },
        Ok(None) if builtin.enabled() => {
            let provider = format!("builtin:{}", builtin.bridge());
            match builtin.prepare(&builtin.subnets(pod_cidrs)) {
                Ok(_) => Readiness {
                    ready: true,
                    reason: String::new(),
                    message: String::new(),
                    provider,
                },
                Err(e) => Readiness {
                    ready: false,
                    reason: "BuiltinNetworkFailed".into(),
                    message: e.to_string(),
                    provider,
                },
            }
        }
        Ok(None) => Readiness {
            ready: false,
            reason: "NetworkPluginNotReady".into(),
            message: format!(
                "no CNI network config in {}, and the built-in network is disabled (network.builtin.enabled)",
                config.cni_conf_dir.display()
            ),
            provider: "none".into(),
        },
        Err(e) => Readiness {
            ready: false,
            reason: "CNIConfigUnreadable".into(),
            message: e.to_string(),
            provider: "none".into(),
        },
    }
}

fn join_dirs(dirs: &[std::path::PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}
