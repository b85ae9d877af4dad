//! A pod's attachment to its network (a CNI network or the built-in
//! bridge): what RunPodSandbox sets up and StopPodSandbox tears down.
//!
//! Invariant: everything teardown needs is kept in the sandbox record (for
//! CNI: the network config list as it was at ADD, the plugin dirs, the
//! arguments and the ADD result), so it works after the config changed or
//! criusd restarted.

use super::bridge::{BridgeAttachment, BridgeError, BridgeNetwork};
use super::cni::{self, Attachment, CniError};
use super::cni_config::ConfigList;
use super::iptables::HostPort;
use crate::cri;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The network a new pod joins.
pub enum NetworkPlan {
    Cni {
        list: ConfigList,
        bin_dirs: Vec<PathBuf>,
        /// Pod CIDRs from UpdateRuntimeConfig (the `ipRanges` capability).
        pod_cidrs: Vec<String>,
    },
    Builtin {
        network: Arc<BridgeNetwork>,
        subnets: Vec<IpNet>,
    },
}

/// A pod's attachment, as stored in its sandbox record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodNetwork {
    /// Primary first.
    pub ips: Vec<String>,
    /// Teardown has succeeded.
    #[serde(default)]
    pub detached: bool,
    #[serde(flatten)]
    pub provider: Provider,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Provider {
    Builtin {
        builtin: BridgeAttachment,
    },
    Cni {
        list: Value,
        bin_dirs: Vec<PathBuf>,
        args: Vec<(String, String)>,
        capabilities: Map<String, Value>,
        result: Value,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    Cni(#[from] CniError),
    #[error(transparent)]
    Builtin(#[from] BridgeError),
    #[error("port_mappings[{index}]: {reason}")]
    BadPort { index: usize, reason: String },
}

impl NetworkError {
    /// The caller's mistake (a bad or taken host port), not the node's.
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, NetworkError::BadPort { .. })
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, NetworkError::Cni(CniError::Timeout { .. }))
    }

    pub fn is_conflict(&self) -> bool {
        matches!(self, NetworkError::Builtin(e) if e.is_port_conflict())
    }
}

/// Sets a pod up on its network; on failure whatever was made is undone.
pub fn attach(
    plan: &NetworkPlan,
    sandbox_id: &str,
    netns: &Path,
    config: &cri::PodSandboxConfig,
) -> Result<PodNetwork, NetworkError> {
    match plan {
        NetworkPlan::Cni {
            list,
            bin_dirs,
            pod_cidrs,
        } => attach_cni(list, bin_dirs, pod_cidrs, sandbox_id, netns, config),
        NetworkPlan::Builtin { network, subnets } => {
            let ports = host_ports(config)?;
            let builtin = network.attach(sandbox_id, netns, subnets, &ports)?;
            Ok(PodNetwork {
                ips: builtin
                    .addresses
                    .iter()
                    .map(|a| a.addr().to_string())
                    .collect(),
                detached: false,
                provider: Provider::Builtin { builtin },
            })
        }
    }
}

/// What DEL needs to undo an ADD of `plan` that may not have finished
/// (criusd killed while a plugin ran): kept before ADD runs, so the next
/// start can release what the plugins already took. `None` for the
/// built-in network, which finds its own leftovers.
pub fn before_attach(
    plan: &NetworkPlan,
    sandbox_id: &str,
    netns: &Path,
    config: &cri::PodSandboxConfig,
) -> Option<PodNetwork> {
    let NetworkPlan::Cni {
        list,
        bin_dirs,
        pod_cidrs,
    } = plan
    else {
        return None;
    };
    let attachment = cni_attachment(pod_cidrs, sandbox_id, netns, config);
    Some(PodNetwork {
        ips: Vec::new(),
        detached: false,
        provider: Provider::Cni {
            list: cni::list_to_value(list),
            bin_dirs: bin_dirs.to_vec(),
            args: attachment.args,
            capabilities: attachment.capabilities,
            result: Value::Null,
        },
    })
}

/// Undoes a CNI attachment recorded by [`before_attach`] (the built-in
/// network's are found at its own start-up).
pub fn detach_unfinished(
    net: &PodNetwork,
    sandbox_id: &str,
    netns: Option<&Path>,
) -> Result<(), NetworkError> {
    match &net.provider {
        Provider::Cni { .. } => del_recorded(&net.provider, sandbox_id, netns, None),
        Provider::Builtin { .. } => Ok(()),
    }
}

/// CNI DEL from what the sandbox record (or the pending file) kept.
fn del_recorded(
    provider: &Provider,
    sandbox_id: &str,
    netns: Option<&Path>,
    result: Option<&Value>,
) -> Result<(), NetworkError> {
    let Provider::Cni {
        list,
        bin_dirs,
        args,
        capabilities,
        ..
    } = provider
    else {
        return Ok(());
    };
    let Some(list) = cni::list_from_value(list) else {
        return Ok(());
    };
    let netns = netns.map(Path::to_path_buf).unwrap_or_default();
    let attachment = recorded_attachment(sandbox_id, netns, args, capabilities);
    Ok(cni::del(&list, bin_dirs, &attachment, result)?)
}

fn cni_attachment(
    pod_cidrs: &[String],
    sandbox_id: &str,
    netns: &Path,
    config: &cri::PodSandboxConfig,
) -> Attachment {
    let meta = config.metadata.clone().unwrap_or_default();
    Attachment {
        container_id: sandbox_id.to_string(),
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), meta.namespace),
            ("K8S_POD_NAME".into(), meta.name),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.to_string()),
            ("K8S_POD_UID".into(), meta.uid),
        ],
        capabilities: capabilities(config, pod_cidrs),
    }
}

fn attach_cni(
    list: &ConfigList,
    bin_dirs: &[PathBuf],
    pod_cidrs: &[String],
    sandbox_id: &str,
    netns: &Path,
    config: &cri::PodSandboxConfig,
) -> Result<PodNetwork, NetworkError> {
    let attachment = cni_attachment(pod_cidrs, sandbox_id, netns, config);
    match cni::add(list, bin_dirs, &attachment) {
        Ok(result) => Ok(PodNetwork {
            ips: cni::result_ips(&result)
                .iter()
                .map(|ip| ip.to_string())
                .collect(),
            detached: false,
            provider: Provider::Cni {
                list: cni::list_to_value(list),
                bin_dirs: bin_dirs.to_vec(),
                args: attachment.args,
                capabilities: attachment.capabilities,
                result,
            },
        }),
        Err(e) => {
            let _ = cni::del(list, bin_dirs, &attachment, None);
            Err(e.into())
        }
    }
}

/// Tears a pod's network down (idempotent). `netns` is `None` when the
/// namespace is gone (after a reboot): addresses are still released.
/// `builtin` is this criusd's bridge network, which holds host ports.
pub fn detach(
    net: &PodNetwork,
    sandbox_id: &str,
    netns: Option<&Path>,
    builtin: &BridgeNetwork,
) -> Result<(), NetworkError> {
    match &net.provider {
        Provider::Builtin { builtin: attached } => Ok(builtin.detach(attached, sandbox_id)?),
        Provider::Cni { result, .. } => {
            del_recorded(&net.provider, sandbox_id, netns, Some(result))
        }
    }
}

/// The attachment that ADD was given, rebuilt from the sandbox record for
/// DEL and CHECK (the spec requires the same arguments).
fn recorded_attachment(
    sandbox_id: &str,
    netns: PathBuf,
    args: &[(String, String)],
    capabilities: &Map<String, Value>,
) -> Attachment {
    Attachment {
        container_id: sandbox_id.to_string(),
        netns,
        ifname: "eth0".into(),
        args: args.to_vec(),
        capabilities: capabilities.clone(),
    }
}

/// Whether a pod's network is still as set up: CNI CHECK, or the built-in
/// network's own check. No CRI call asks for this; PodSandboxStatus with
/// `verbose` (`crictl inspectp`) reports it for operators.
pub fn check(net: &PodNetwork, sandbox_id: &str, netns: &Path) -> String {
    let outcome = match &net.provider {
        Provider::Builtin { builtin } => super::bridge::check(builtin, sandbox_id).map(|()| true),
        Provider::Cni {
            list,
            bin_dirs,
            args,
            capabilities,
            result,
        } => match cni::list_from_value(list) {
            None => Ok(false),
            Some(list) => {
                let attachment =
                    recorded_attachment(sandbox_id, netns.to_path_buf(), args, capabilities);
                cni::check(&list, bin_dirs, &attachment, result).map_err(|e| e.to_string())
            }
        },
    };
    match outcome {
        Ok(true) => "passed".into(),
        Ok(false) => {
            "skipped: the network's cniVersion has no CHECK, or disableCheck is set".into()
        }
        Err(problem) => format!("failed: {problem}"),
    }
}

/// The pod's host ports, checked (RunPodSandbox checks them before making
/// anything; the built-in network installs them).
pub fn host_ports(config: &cri::PodSandboxConfig) -> Result<Vec<HostPort>, NetworkError> {
    let mut ports = Vec::new();
    for (index, p) in config.port_mappings.iter().enumerate() {
        let bad = |reason: String| NetworkError::BadPort { index, reason };
        if p.host_port == 0 {
            continue;
        }
        let host_port = u16::try_from(p.host_port)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(format!("host_port {} is not a port", p.host_port)))?;
        let container_port = u16::try_from(p.container_port)
            .ok()
            .filter(|&n| n > 0)
            .ok_or_else(|| bad(format!("container_port {} is not a port", p.container_port)))?;
        let host_ip = match p.host_ip.as_str() {
            "" => None,
            ip => Some(
                ip.parse()
                    .map_err(|_| bad(format!("host_ip {ip:?} is not an IP address")))?,
            ),
        };
        ports.push(HostPort {
            protocol: protocol_name(p.protocol).into(),
            host_ip,
            host_port,
            container_port,
        });
    }
    Ok(ports)
}

fn protocol_name(protocol: i32) -> &'static str {
    match cri::Protocol::try_from(protocol) {
        Ok(cri::Protocol::Udp) => "udp",
        Ok(cri::Protocol::Sctp) => "sctp",
        _ => "tcp",
    }
}

/// `portMappings` (host ports), `bandwidth` (kubelet's annotations) and
/// `ipRanges` (the pod CIDRs).
fn capabilities(config: &cri::PodSandboxConfig, pod_cidrs: &[String]) -> Map<String, Value> {
    let mut caps = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let protocol = protocol_name(p.protocol);
            let mut m = json!({"hostPort": p.host_port, "containerPort": p.container_port, "protocol": protocol});
            if !p.host_ip.is_empty() {
                m["hostIP"] = json!(p.host_ip);
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    let rate = |key: &str| config.annotations.get(key).and_then(|v| parse_quantity(v));
    let (ingress, egress) = (
        rate("kubernetes.io/ingress-bandwidth"),
        rate("kubernetes.io/egress-bandwidth"),
    );
    if ingress.is_some() || egress.is_some() {
        // kubelet's convention: the burst is effectively unlimited.
        let mut bw = Map::new();
        if let Some(r) = ingress {
            bw.insert("ingressRate".into(), json!(r));
            bw.insert("ingressBurst".into(), json!(i32::MAX));
        }
        if let Some(r) = egress {
            bw.insert("egressRate".into(), json!(r));
            bw.insert("egressBurst".into(), json!(i32::MAX));
        }
        caps.insert("bandwidth".into(), Value::Object(bw));
    }
    if !pod_cidrs.is_empty() {
        let ranges: Vec<Value> = pod_cidrs.iter().map(|c| json!([{"subnet": c}])).collect();
        caps.insert("ipRanges".into(), Value::Array(ranges));
    }
    caps
}

/// A Kubernetes quantity ("10M", "1Mi", "500k", "100") in units.
fn parse_quantity(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    Some((value * scale) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capability_arguments_from_the_pod() {
        let config: cri::PodSandboxConfig = serde_json::from_value(json!({
            "port_mappings": [
                {"protocol": 0, "container_port": 80, "host_port": 8080},
                {"protocol": 1, "container_port": 53, "host_port": 5353, "host_ip": "127.0.0.1"},
                {"protocol": 0, "container_port": 9000}
            ],
            "annotations": {"kubernetes.io/ingress-bandwidth": "10M"}
        }))
        .unwrap();
        let caps = capabilities(&config, &["10.244.1.0/24".to_string()]);
        let ports = caps["portMappings"].as_array().unwrap();
        assert_eq!(ports.len(), 2);
        assert_eq!(ports[1]["protocol"], "udp");
        assert_eq!(ports[1]["hostIP"], "127.0.0.1");
        assert_eq!(caps["bandwidth"]["ingressRate"], 10_000_000);
        assert!(caps["bandwidth"].get("egressRate").is_none());
        assert_eq!(caps["ipRanges"][0][0]["subnet"], "10.244.1.0/24");
        assert_eq!(parse_quantity("1Mi"), Some(1 << 20));
        assert_eq!(parse_quantity("fast"), None);
    }
}
