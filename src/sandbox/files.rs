//! The files a pod's containers share: /etc/hostname, /etc/hosts,
//! /etc/resolv.conf and a private /dev/shm (a tmpfs).

use crate::cri;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use std::path::Path;

/// Size of a pod's /dev/shm, as Docker and containerd give it.
const SHM_BYTES: u64 = 64 * 1024 * 1024;

pub fn write_hostname(dir: &Path, hostname: &str) -> std::io::Result<()> {
    std::fs::write(dir.join("hostname"), format!("{hostname}\n"))
}

/// Pod network: localhost entries and the hostname; host network: the host's.
pub fn write_hosts(dir: &Path, hostname: &str, host_network: bool) -> std::io::Result<()> {
    let text = if host_network {
        std::fs::read_to_string("/etc/hosts").unwrap_or_default()
    } else {
        format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n127.0.1.1\t{hostname}\n"
        )
    };
    std::fs::write(dir.join("hosts"), text)
}

/// From the pod's DNSConfig; without one, the host's resolv.conf.
pub fn write_resolv_conf(dir: &Path, dns: Option<&cri::DnsConfig>) -> std::io::Result<()> {
    let text = match dns
        .filter(|d| !d.servers.is_empty() || !d.searches.is_empty() || !d.options.is_empty())
    {
        Some(dns) => resolv_conf(dns),
        None => std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
    };
    std::fs::write(dir.join("resolv.conf"), text)
}

pub fn resolv_conf(dns: &cri::DnsConfig) -> String {
    let mut text = String::new();
    if !dns.searches.is_empty() {
        text.push_str(&format!("search {}\n", dns.searches.join(" ")));
    }
    for server in &dns.servers {
        text.push_str(&format!("nameserver {server}\n"));
    }
    if !dns.options.is_empty() {
        text.push_str(&format!("options {}\n", dns.options.join(" ")));
    }
    text
}

/// Mounts the pod's own /dev/shm at `dir/shm`.
/// The pod's /dev/shm, owned by the pod's root (`owner`: host uid and gid;
/// not 0 in a user namespace).
pub fn mount_shm(dir: &Path, owner: (u32, u32)) -> std::io::Result<()> {
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm)?;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let data = format!("mode=1777,size={SHM_BYTES},uid={},gid={}", owner.0, owner.1);
    mount(Some("shm"), &shm, Some("tmpfs"), flags, Some(data.as_str())).map_err(Into::into)
}

pub fn unmount_shm(dir: &Path) {
    let _ = umount2(&dir.join("shm"), MntFlags::MNT_DETACH);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolv_conf_from_dns_config() {
        let dns = cri::DnsConfig {
            servers: vec!["10.96.0.10".into(), "10.96.0.11".into()],
            searches: vec![
                "default.svc.cluster.local".into(),
                "svc.cluster.local".into(),
            ],
            options: vec!["ndots:5".into()],
        };
        assert_eq!(
            resolv_conf(&dns),
            "search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\nnameserver 10.96.0.11\noptions ndots:5\n"
        );
    }
}
