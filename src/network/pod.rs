//! A pod's attachment to its CNI network: what RunPodSandbox sets up and
//! StopPodSandbox tears down.
//!
//! Invariant: everything DEL needs (the network config list as it was at ADD,
//! the plugin dirs, the arguments and the ADD result) is kept in the sandbox
//! record, so teardown works after the config dir changed or criusd
//! restarted.

use super::cni::{self, Attachment, CniError};
use super::cni_config::ConfigList;
use crate::cri;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The network a new pod joins.
pub struct NetworkPlan {
    pub list: ConfigList,
    pub bin_dirs: Vec<PathBuf>,
    /// Pod CIDRs from UpdateRuntimeConfig (the `ipRanges` capability).
    pub pod_cidrs: Vec<String>,
}

/// A pod's attachment, as stored in its sandbox record.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PodNetwork {
    pub list: Value,
    pub bin_dirs: Vec<PathBuf>,
    pub args: Vec<(String, String)>,
    pub capabilities: Map<String, Value>,
    pub result: Value,
    /// Primary first.
    pub ips: Vec<String>,
    /// DEL has succeeded.
    #[serde(default)]
    pub detached: bool,
}

/// CNI ADD for a pod; on failure whatever the plugins made is deleted.
pub fn attach(
    plan: &NetworkPlan,
    sandbox_id: &str,
    netns: &Path,
    config: &cri::PodSandboxConfig,
) -> Result<PodNetwork, CniError> {
    let meta = config.metadata.clone().unwrap_or_default();
    let attachment = Attachment {
        container_id: sandbox_id.to_string(),
        netns: netns.to_path_buf(),
        ifname: "eth0".into(),
        args: vec![
            ("K8S_POD_NAMESPACE".into(), meta.namespace),
            ("K8S_POD_NAME".into(), meta.name),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.to_string()),
            ("K8S_POD_UID".into(), meta.uid),
        ],
        capabilities: capabilities(config, &plan.pod_cidrs),
    };
    match cni::add(&plan.list, &plan.bin_dirs, &attachment) {
        Ok(result) => Ok(PodNetwork {
            list: cni::list_to_value(&plan.list),
            bin_dirs: plan.bin_dirs.clone(),
            ips: cni::result_ips(&result)
                .iter()
                .map(|ip| ip.to_string())
                .collect(),
            args: attachment.args,
            capabilities: attachment.capabilities,
            result,
            detached: false,
        }),
        Err(e) => {
            let _ = cni::del(&plan.list, &plan.bin_dirs, &attachment, None);
            Err(e)
        }
    }
}

/// CNI DEL (idempotent: plugins treat a missing attachment as success).
/// `netns` is `None` when the namespace is gone (after a reboot): the
/// plugins still release addresses.
pub fn detach(net: &PodNetwork, sandbox_id: &str, netns: Option<&Path>) -> Result<(), CniError> {
    let Some(list) = cni::list_from_value(&net.list) else {
        return Ok(());
    };
    let attachment = Attachment {
        container_id: sandbox_id.to_string(),
        netns: netns.map(Path::to_path_buf).unwrap_or_default(),
        ifname: "eth0".into(),
        args: net.args.clone(),
        capabilities: net.capabilities.clone(),
    };
    cni::del(&list, &net.bin_dirs, &attachment, Some(&net.result))
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
            let protocol = match cri::Protocol::try_from(p.protocol) {
                Ok(cri::Protocol::Udp) => "udp",
                Ok(cri::Protocol::Sctp) => "sctp",
                _ => "tcp",
            };
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
