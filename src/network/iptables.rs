//! The built-in network's packet filter rules, the one part netlink cannot
//! do: masquerade for traffic leaving the node, forwarding on the bridge,
//! and host ports (DNAT). Rules go in through `iptables-restore --noflush`,
//! one transaction per change; chains are named after the bridge, so
//! several crius instances (tests) can share a node.
//!
//! nat:    PREROUTING, OUTPUT (to local addresses) → CRIUS-PORTS-<bridge>
//!           → CRIUS-POD-<sandbox> per pod with host ports (mark + DNAT)
//!         POSTROUTING → CRIUS-POST-<bridge> (masquerade: marked, leaving)
//! filter: FORWARD → CRIUS-FWD-<bridge> (accept to and from the bridge)

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};

/// Marks connections to a host port that come from loopback or from the
/// pod itself (hairpin); they need masquerading so replies come back
/// through the DNAT.
const MASQ_MARK: &str = "0x4000/0x4000";

/// One host port of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HostPort {
    /// "tcp", "udp" or "sctp".
    pub protocol: String,
    /// Only connections to this node address; `None` means all.
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(ip: IpAddr) -> Family {
        if ip.is_ipv4() { Family::V4 } else { Family::V6 }
    }

    fn tool(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }
}

pub fn ports_chain(bridge: &str) -> String {
    format!("CRIUS-PORTS-{bridge}")
}

/// The per-pod chain (28 characters at most, iptables's limit).
pub fn pod_chain(sandbox_id: &str) -> String {
    format!("CRIUS-POD-{}", &sandbox_id[..sandbox_id.len().min(16)])
}

/// Sets up the bridge's chains and the jumps to them; rewrites the
/// masquerade and forward chains from `subnets`. Idempotent.
pub fn ensure_base(
    family: Family,
    bridge: &str,
    subnets: &[IpNet],
    masquerade: bool,
) -> Result<(), String> {
    let ports = ports_chain(bridge);
    let post = format!("CRIUS-POST-{bridge}");
    let forward = format!("CRIUS-FWD-{bridge}");
    // The ports chain holds jumps to pods' chains: created, never flushed.
    let _ = run(family, &["-t", "nat", "-N", &ports]);
    let mut rules =
        format!("*nat\n:{post} - [0:0]\n-A {post} -m mark --mark {MASQ_MARK} -j MASQUERADE\n");
    if masquerade {
        for subnet in subnets.iter().filter(|s| Family::of(s.addr()) == family) {
            let subnet = subnet.trunc();
            rules += &format!("-A {post} -s {subnet} ! -d {subnet} -j MASQUERADE\n");
        }
    }
    rules += &format!(
        "COMMIT\n*filter\n:{forward} - [0:0]\n-A {forward} -i {bridge} -j ACCEPT\n-A {forward} -o {bridge} -j ACCEPT\nCOMMIT\n"
    );
    restore(family, &rules)?;
    let local = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", &ports];
    ensure_jump(family, "nat", "PREROUTING", &local)?;
    ensure_jump(family, "nat", "OUTPUT", &local)?;
    ensure_jump(family, "nat", "POSTROUTING", &["-j", &post])?;
    ensure_jump(family, "filter", "FORWARD", &["-j", &forward])
}

/// The pods' chains the bridge's ports chain jumps to.
pub fn pod_chains(family: Family, bridge: &str) -> Vec<String> {
    Command::new(family.tool())
        .args(["-w", "5", "-t", "nat", "-S", &ports_chain(bridge)])
        .stderr(Stdio::null())
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter_map(|line| line.split(" -j ").nth(1))
                .map(|chain| chain.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// Removes one pod chain by name (a leftover whose pod is gone).
pub fn remove_pod_chain(family: Family, bridge: &str, chain: &str) {
    let _ = run(
        family,
        &["-t", "nat", "-D", &ports_chain(bridge), "-j", chain],
    );
    let _ = run(family, &["-t", "nat", "-F", chain]);
    let _ = run(family, &["-t", "nat", "-X", chain]);
}

/// Removes the bridge's chains, the pods' chains they lead to, and the jumps
/// to them. For tests and operators retiring a bridge; idempotent.
pub fn remove_base(family: Family, bridge: &str) {
    let ports = ports_chain(bridge);
    let pods = pod_chains(family, bridge);
    let post = format!("CRIUS-POST-{bridge}");
    let forward = format!("CRIUS-FWD-{bridge}");
    let local = [
        "-m",
        "addrtype",
        "--dst-type",
        "LOCAL",
        "-j",
        ports.as_str(),
    ];
    for (table, chain, rule) in [
        ("nat", "PREROUTING", &local[..]),
        ("nat", "OUTPUT", &local[..]),
        ("nat", "POSTROUTING", &["-j", post.as_str()][..]),
        ("filter", "FORWARD", &["-j", forward.as_str()][..]),
    ] {
        let mut delete = vec!["-t", table, "-D", chain];
        delete.extend_from_slice(rule);
        let _ = run(family, &delete);
    }
    let _ = run(family, &["-t", "nat", "-F", &ports]);
    for chain in &pods {
        let _ = run(family, &["-t", "nat", "-F", chain]);
        let _ = run(family, &["-t", "nat", "-X", chain]);
    }
    for (table, chain) in [("nat", &ports), ("nat", &post), ("filter", &forward)] {
        let _ = run(family, &["-t", table, "-F", chain]);
        let _ = run(family, &["-t", table, "-X", chain]);
    }
}

/// Adds a jump at the top of a built-in chain unless it is there.
fn ensure_jump(family: Family, table: &str, chain: &str, rule: &[&str]) -> Result<(), String> {
    let mut check = vec!["-t", table, "-C", chain];
    check.extend_from_slice(rule);
    if run(family, &check).is_ok() {
        return Ok(());
    }
    let mut insert = vec!["-t", table, "-I", chain, "1"];
    insert.extend_from_slice(rule);
    run(family, &insert)
}

/// Installs a pod's host ports: a chain with a mark and DNAT rule per port,
/// jumped to from the bridge's ports chain.
pub fn add_host_ports(
    family: Family,
    bridge: &str,
    sandbox_id: &str,
    pod_ip: IpAddr,
    ports: &[HostPort],
) -> Result<(), String> {
    let chain = pod_chain(sandbox_id);
    let mut rules = format!("*nat\n:{chain} - [0:0]\n");
    for port in ports {
        let protocol = &port.protocol;
        let mut matches = format!("-p {protocol} -m {protocol} --dport {}", port.host_port);
        if let Some(ip) = port.host_ip {
            matches += &format!(" -d {ip}");
        }
        if family == Family::V4 {
            rules +=
                &format!("-A {chain} {matches} -s 127.0.0.0/8 -j MARK --set-xmark {MASQ_MARK}\n");
        }
        rules += &format!("-A {chain} {matches} -s {pod_ip} -j MARK --set-xmark {MASQ_MARK}\n");
        let target = match pod_ip {
            IpAddr::V4(ip) => format!("{ip}:{}", port.container_port),
            IpAddr::V6(ip) => format!("[{ip}]:{}", port.container_port),
        };
        rules += &format!("-A {chain} {matches} -j DNAT --to-destination {target}\n");
    }
    rules += &format!("-A {} -j {chain}\nCOMMIT\n", ports_chain(bridge));
    restore(family, &rules)
}

/// Removes a pod's host-port chain: one transaction, as teardowns of many
/// pods at once queue for the rules. Idempotent.
pub fn remove_host_ports(family: Family, bridge: &str, sandbox_id: &str) -> Result<(), String> {
    let chain = pod_chain(sandbox_id);
    let rules = format!(
        "*nat\n-D {} -j {chain}\n-F {chain}\n-X {chain}\nCOMMIT\n",
        ports_chain(bridge)
    );
    if restore(family, &rules).is_ok() {
        return Ok(());
    }
    // Gone already, or half-removed by an interrupted teardown.
    if run(family, &["-t", "nat", "-S", &chain]).is_err() {
        return Ok(());
    }
    // A jump may be missing when an earlier removal stopped half-way.
    let _ = run(
        family,
        &["-t", "nat", "-D", &ports_chain(bridge), "-j", &chain],
    );
    run(family, &["-t", "nat", "-F", &chain])?;
    run(family, &["-t", "nat", "-X", &chain])
}

fn run(family: Family, args: &[&str]) -> Result<(), String> {
    let out = Command::new(family.tool())
        .args(["-w", "5"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", family.tool()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{} {}: {}",
            family.tool(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn restore(family: Family, rules: &str) -> Result<(), String> {
    let tool = format!("{}-restore", family.tool());
    let mut child = Command::new(&tool)
        .args(["-w", "5", "--noflush"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{tool}: {e}"))?;
    let written = child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(rules.as_bytes());
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{tool}: {e}"))?;
    match (written, out.status.success()) {
        (Ok(()), true) => Ok(()),
        _ => Err(format!(
            "{tool}: {}; rules were:\n{rules}",
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_fit_iptables() {
        assert!(ports_chain("abcdefghijklmno").len() <= 28);
        assert!(format!("CRIUS-POST-{}", "abcdefghijklmno").len() <= 28);
        assert_eq!(pod_chain(&"f".repeat(64)).len(), 26);
    }
}
