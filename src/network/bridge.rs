//! crius's built-in network, used while no CNI config exists: a bridge on
//! the node with the subnets' gateway addresses, a veth pair per pod (its
//! `eth0` created directly inside the pod's namespace), addresses from the
//! `ipam` store, a default route, masquerade and host ports.
//!
//! Everything is netlink except the packet filter rules (`iptables`). The
//! node-wide part (bridge, gateways, forwarding, base rules) is set up on
//! first use and again after a restart; it is idempotent.
//!
//! Invariant: a pod's `BridgeAttachment` names everything made for it, so
//! `detach` works from the sandbox record alone, after a restart or a
//! config change.

use super::ipam::{self, Ipam, IpamError};
use super::iptables::{self, Family, HostPort};
use super::netlink::Netlink;
use crate::config::BuiltinNetworkSection;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a pod got, as kept in its sandbox record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeAttachment {
    pub bridge: String,
    /// The node's end of the pod's veth pair.
    pub host_veth: String,
    /// The address store the leases came from.
    pub ipam_dir: PathBuf,
    /// The pod's addresses with their subnets' prefix lengths.
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub host_ports: Vec<HostPort>,
}

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("built-in network bridge {bridge}: {reason}")]
    Setup { bridge: String, reason: String },
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("port_mappings: host port {port}/{protocol} is already used by pod sandbox {holder}")]
    PortInUse {
        port: u16,
        protocol: String,
        holder: String,
    },
    #[error("{step}: {source}")]
    Netlink { step: String, source: io::Error },
    #[error("host ports: {0}")]
    Rules(String),
}

impl BridgeError {
    pub fn is_port_conflict(&self) -> bool {
        matches!(self, BridgeError::PortInUse { .. })
    }
}

type PortKey = (String, Option<IpAddr>, u16);

pub struct BridgeNetwork {
    settings: BuiltinNetworkSection,
    ipam: Ipam,
    /// Subnets whose gateway and rules are in place, and the bridge's index.
    prepared: Mutex<(Vec<IpNet>, u32)>,
    /// Host ports held by pods.
    ports: Mutex<HashMap<PortKey, String>>,
}

impl BridgeNetwork {
    pub fn new(settings: &BuiltinNetworkSection, ipam_dir: &Path) -> BridgeNetwork {
        BridgeNetwork {
            settings: settings.clone(),
            ipam: Ipam::new(ipam_dir),
            prepared: Mutex::new((Vec::new(), 0)),
            ports: Mutex::new(HashMap::new()),
        }
    }

    pub fn enabled(&self) -> bool {
        self.settings.enabled
    }

    pub fn bridge(&self) -> &str {
        &self.settings.bridge
    }

    /// The subnets pods get addresses from: kubelet's pod CIDR for a family
    /// when it sent one, else the configured subnet.
    pub fn subnets(&self, pod_cidrs: &[String]) -> Vec<IpNet> {
        let from_kubelet: Vec<IpNet> = pod_cidrs
            .iter()
            .filter_map(|c| c.parse::<IpNet>().ok())
            .map(|n| n.trunc())
            .collect();
        let mut subnets = Vec::new();
        for family in [Family::V4, Family::V6] {
            let pick = |list: &[IpNet]| {
                list.iter()
                    .find(|n| Family::of(n.addr()) == family)
                    .copied()
            };
            if let Some(subnet) = pick(&from_kubelet).or_else(|| pick(&self.settings.subnets)) {
                subnets.push(subnet.trunc());
            }
        }
        subnets
    }

    /// The node-wide part: the bridge, its gateway address in each subnet,
    /// forwarding, and the base rules. Done once per new subnet.
    pub fn prepare(&self, subnets: &[IpNet]) -> Result<u32, BridgeError> {
        let mut prepared = self.prepared.lock().expect("bridge setup");
        let bridge = &self.settings.bridge;
        let setup = |reason: String| BridgeError::Setup {
            bridge: bridge.clone(),
            reason,
        };
        let mut nl = Netlink::open().map_err(|e| setup(format!("netlink: {e}")))?;
        // Done already, and the bridge was not deleted since (by an operator,
        // or a network restart): nothing to do.
        if prepared.1 != 0
            && subnets.iter().all(|s| prepared.0.contains(s))
            && nl.link_index(bridge).ok().flatten() == Some(prepared.1)
        {
            return Ok(prepared.1);
        }
        let index = nl
            .add_bridge(bridge, self.settings.mtu, bridge_mac(bridge))
            .map_err(|e| setup(format!("creating the bridge: {e}")))?;
        let mut all = prepared.0.clone();
        for subnet in subnets {
            if !all.contains(subnet) {
                all.push(*subnet);
            }
        }
        for subnet in &all {
            let gateway = IpNet::new(ipam::gateway(*subnet), subnet.prefix_len())
                .expect("prefix of a parsed subnet");
            nl.add_address(index, gateway)
                .map_err(|e| setup(format!("gateway address {gateway}: {e}")))?;
        }
        nl.set_up(index, None)
            .map_err(|e| setup(format!("setting it up: {e}")))?;
        for family in [Family::V4, Family::V6] {
            if !all.iter().any(|s| Family::of(s.addr()) == family) {
                continue;
            }
            let sysctls: &[String] = match family {
                // route_localnet lets DNATed loopback connections out to pods.
                Family::V4 => &[
                    "net/ipv4/ip_forward".into(),
                    format!("net/ipv4/conf/{bridge}/route_localnet"),
                ],
                Family::V6 => &["net/ipv6/conf/all/forwarding".into()],
            };
            for key in sysctls {
                set_sysctl(key).map_err(|e| setup(format!("sysctl {key}: {e}")))?;
            }
            iptables::ensure_base(family, bridge, &all, self.settings.masquerade).map_err(setup)?;
        }
        *prepared = (all, index);
        Ok(index)
    }

    /// Connects a pod: addresses, veth, routes, then host ports. On failure
    /// everything made so far is undone.
    pub fn attach(
        &self,
        sandbox_id: &str,
        netns: &Path,
        subnets: &[IpNet],
        host_ports: &[HostPort],
    ) -> Result<BridgeAttachment, BridgeError> {
        let bridge_index = self.prepare(subnets)?;
        let mut attachment = BridgeAttachment {
            bridge: self.settings.bridge.clone(),
            host_veth: host_veth_name(sandbox_id),
            ipam_dir: self.ipam.dir().to_path_buf(),
            addresses: Vec::new(),
            host_ports: Vec::new(),
        };
        let result = self.connect(
            sandbox_id,
            netns,
            subnets,
            host_ports,
            bridge_index,
            &mut attachment,
        );
        match result {
            Ok(()) => Ok(attachment),
            Err(e) => {
                if let Err(undo) = self.detach(&attachment, sandbox_id) {
                    tracing::warn!(id = sandbox_id, error = %undo, "undoing a failed attach");
                }
                Err(e)
            }
        }
    }

    fn connect(
        &self,
        sandbox_id: &str,
        netns: &Path,
        subnets: &[IpNet],
        host_ports: &[HostPort],
        bridge_index: u32,
        attachment: &mut BridgeAttachment,
    ) -> Result<(), BridgeError> {
        for subnet in subnets {
            let ip = self.ipam.allocate(*subnet, sandbox_id)?;
            attachment
                .addresses
                .push(IpNet::new(ip, subnet.prefix_len()).expect("prefix of a parsed subnet"));
        }
        let step = |step: &str| {
            let step = step.to_string();
            move |source| BridgeError::Netlink { step, source }
        };
        let mut node = Netlink::open().map_err(step("netlink"))?;
        let namespace = std::fs::File::open(netns).map_err(step("opening the pod's netns"))?;
        let veth = &attachment.host_veth;
        // A link of this name is another pod's (ids share the prefix; start-up
        // removed leftovers): creation fails with EEXIST rather than take it.
        let veth_index = node
            .add_veth(veth, "eth0", namespace.as_fd(), self.settings.mtu)
            .map_err(step("creating the veth pair"))?;
        node.set_up(veth_index, Some(bridge_index))
            .map_err(step("adding the veth to the bridge"))?;

        let mut pod = Netlink::open_in(netns).map_err(step("netlink in the pod"))?;
        let eth0 = pod
            .link_index("eth0")
            .map_err(step("finding eth0"))?
            .ok_or_else(|| BridgeError::Netlink {
                step: "finding eth0".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })?;
        pod.set_up(eth0, None).map_err(step("setting eth0 up"))?;
        for address in &attachment.addresses {
            pod.add_address(eth0, *address)
                .map_err(step(&format!("adding {address} to eth0")))?;
            pod.add_default_route(eth0, ipam::gateway(address.trunc()))
                .map_err(step("adding the default route"))?;
        }

        if !host_ports.is_empty() {
            self.reserve_ports(sandbox_id, host_ports)?;
            attachment.host_ports = host_ports.to_vec();
            for address in &attachment.addresses {
                let family = Family::of(address.addr());
                let ports: Vec<HostPort> = host_ports
                    .iter()
                    .filter(|p| p.host_ip.is_none_or(|ip| Family::of(ip) == family))
                    .cloned()
                    .collect();
                if !ports.is_empty() {
                    iptables::add_host_ports(
                        family,
                        &attachment.bridge,
                        sandbox_id,
                        address.addr(),
                        &ports,
                    )
                    .map_err(BridgeError::Rules)?;
                }
            }
        }
        Ok(())
    }

    /// Holds the pod's host ports, or says which pod has one of them.
    fn reserve_ports(&self, sandbox_id: &str, ports: &[HostPort]) -> Result<(), BridgeError> {
        let mut held = self.ports.lock().expect("host ports");
        for port in ports {
            // A port bound to all addresses conflicts with any address.
            let holder = held.iter().find(|((protocol, ip, number), _)| {
                *protocol == port.protocol
                    && *number == port.host_port
                    && (ip.is_none() || port.host_ip.is_none() || *ip == port.host_ip)
            });
            if let Some((_, holder)) = holder.filter(|(_, h)| h.as_str() != sandbox_id) {
                return Err(BridgeError::PortInUse {
                    port: port.host_port,
                    protocol: port.protocol.clone(),
                    holder: holder.clone(),
                });
            }
        }
        for port in ports {
            held.insert(
                (port.protocol.clone(), port.host_ip, port.host_port),
                sandbox_id.to_string(),
            );
        }
        Ok(())
    }

    /// Disconnects a pod. Idempotent.
    pub fn detach(
        &self,
        attachment: &BridgeAttachment,
        sandbox_id: &str,
    ) -> Result<(), BridgeError> {
        detach(attachment, sandbox_id)?;
        self.ports
            .lock()
            .expect("host ports")
            .retain(|_, holder| holder != sandbox_id);
        Ok(())
    }

    /// At start: takes back the host ports of live pods, and removes what a
    /// crash in the middle of an attach left: leases, veths and host-port
    /// chains of pods that do not exist.
    pub fn restore<'a>(&self, live: impl IntoIterator<Item = (&'a str, &'a BridgeAttachment)>) {
        let mut owners = std::collections::HashSet::new();
        let mut veths = std::collections::HashSet::new();
        let mut chains = std::collections::HashSet::new();
        let mut held = self.ports.lock().expect("host ports");
        for (id, attachment) in live {
            owners.insert(id.to_string());
            veths.insert(attachment.host_veth.clone());
            chains.insert(iptables::pod_chain(id));
            for port in &attachment.host_ports {
                held.insert(
                    (port.protocol.clone(), port.host_ip, port.host_port),
                    id.to_string(),
                );
            }
        }
        if self.settings.enabled {
            self.remove_leftovers(&veths, &chains);
        }
        for (ip, owner) in self.ipam.leases() {
            if !owners.contains(&owner) {
                tracing::info!(%ip, owner, "releasing the address of a pod that does not exist");
                if let Err(e) = ipam::release(self.ipam.dir(), ip, &owner) {
                    tracing::warn!(%ip, error = %e, "releasing a stale lease");
                }
            }
        }
    }
}

impl BridgeNetwork {
    /// crius's veths on the bridge and pods' chains that no live pod owns.
    fn remove_leftovers(
        &self,
        veths: &std::collections::HashSet<String>,
        chains: &std::collections::HashSet<String>,
    ) {
        let bridge = &self.settings.bridge;
        if let Ok(mut nl) = Netlink::open()
            && let Ok(Some(index)) = nl.link_index(bridge)
        {
            let links = nl.links().unwrap_or_default();
            for (_, name, master) in links {
                if master == Some(index) && name.starts_with("crv") && !veths.contains(&name) {
                    tracing::info!(
                        veth = name,
                        "removing the veth of a pod that does not exist"
                    );
                    let _ = nl.delete_link(&name);
                }
            }
        }
        for family in [Family::V4, Family::V6] {
            for chain in iptables::pod_chains(family, bridge) {
                if !chains.contains(&chain) {
                    tracing::info!(
                        chain,
                        "removing the host ports of a pod that does not exist"
                    );
                    iptables::remove_pod_chain(family, bridge, &chain);
                }
            }
        }
    }
}

/// Whether a pod's attachment is still whole: its veth on its bridge and
/// its leases its own. Returns what is wrong.
pub fn check(attachment: &BridgeAttachment, sandbox_id: &str) -> Result<(), String> {
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let bridge = nl
        .link_index(&attachment.bridge)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("bridge {} is missing", attachment.bridge))?;
    match nl.master_of(&attachment.host_veth) {
        Ok(Some(master)) if master == bridge => {}
        Ok(Some(_)) => {
            return Err(format!(
                "veth {} is not on bridge {}",
                attachment.host_veth, attachment.bridge
            ));
        }
        Ok(None) => return Err(format!("veth {} is missing", attachment.host_veth)),
        Err(e) => return Err(e.to_string()),
    }
    for address in &attachment.addresses {
        if !ipam::holds(&attachment.ipam_dir, address.addr(), sandbox_id) {
            return Err(format!("the lease of {} is not the pod's", address.addr()));
        }
    }
    Ok(())
}

/// Undoes an attachment from its record: rules, veth (its pod end goes with
/// it), leases. Idempotent.
fn detach(attachment: &BridgeAttachment, sandbox_id: &str) -> Result<(), BridgeError> {
    if !attachment.host_ports.is_empty() {
        for family in [Family::V4, Family::V6] {
            if attachment
                .addresses
                .iter()
                .any(|a| Family::of(a.addr()) == family)
            {
                iptables::remove_host_ports(family, &attachment.bridge, sandbox_id)
                    .map_err(BridgeError::Rules)?;
            }
        }
    }
    let step = |step: &str| {
        let step = step.to_string();
        move |source| BridgeError::Netlink { step, source }
    };
    Netlink::open()
        .map_err(step("netlink"))?
        .delete_link(&attachment.host_veth)
        .map_err(step(&format!("deleting {}", attachment.host_veth)))?;
    for address in &attachment.addresses {
        ipam::release(&attachment.ipam_dir, address.addr(), sandbox_id).map_err(|source| {
            BridgeError::Ipam(IpamError::Io {
                path: attachment.ipam_dir.clone(),
                source,
            })
        })?;
    }
    Ok(())
}

/// `crv` and 12 hex digits of the sandbox id: 15 characters, the kernel's
/// limit, and recognisably crius's.
fn host_veth_name(sandbox_id: &str) -> String {
    format!("crv{}", &sandbox_id[..sandbox_id.len().min(12)])
}

/// A fixed, locally administered MAC for the bridge, so it does not take
/// (and change with) the address of whichever port joined first; pods'
/// ARP entries for the gateway stay right.
fn bridge_mac(bridge: &str) -> [u8; 6] {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(bridge.as_bytes());
    [0x02, digest[0], digest[1], digest[2], digest[3], digest[4]]
}

fn set_sysctl(key: &str) -> io::Result<()> {
    let path = Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(path, "1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn network(subnets: &[&str]) -> BridgeNetwork {
        let settings = BuiltinNetworkSection {
            enabled: true,
            bridge: "crius-unit0".into(),
            subnets: subnets.iter().map(|s| s.parse().unwrap()).collect(),
            mtu: 1500,
            masquerade: true,
        };
        BridgeNetwork::new(&settings, Path::new("/nonexistent"))
    }

    #[test]
    fn kubelet_pod_cidrs_replace_the_configured_subnet_of_their_family() {
        let net = network(&["10.87.0.0/16", "fd87::/64"]);
        let s = |v: &[IpNet]| v.iter().map(|n| n.to_string()).collect::<Vec<_>>();
        assert_eq!(s(&net.subnets(&[])), ["10.87.0.0/16", "fd87::/64"]);
        assert_eq!(
            s(&net.subnets(&["10.244.3.0/24".into()])),
            ["10.244.3.0/24", "fd87::/64"]
        );
        assert_eq!(host_veth_name(&"a".repeat(64)).len(), 15);
        assert_eq!(bridge_mac("crius0")[0], 0x02);
    }

    #[test]
    fn host_ports_are_held_by_one_pod() {
        let net = network(&["10.87.0.0/16"]);
        let port = |ip: Option<&str>, n| HostPort {
            protocol: "tcp".into(),
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: n,
            container_port: 80,
        };
        net.reserve_ports("a", &[port(None, 8080)]).unwrap();
        let err = net
            .reserve_ports("b", &[port(Some("127.0.0.1"), 8080)])
            .unwrap_err();
        assert!(err.to_string().contains("8080/tcp") && err.to_string().contains(" a"));
        net.reserve_ports("b", &[port(None, 8081)]).unwrap();
        net.ports.lock().unwrap().retain(|_, h| h != "a");
        net.reserve_ports("c", &[port(None, 8080)]).unwrap();
    }
}
