//! Address management for the built-in network: one file per leased
//! address, so leases survive restarts and crashes, and creating a lease is
//! an exclusive file creation, so no address is ever held twice.
//!
//! Layout: `<dir>/<subnet>/<address>` holds the owner (the sandbox id);
//! `<dir>/<subnet>/last` the address handed out last. Allocation goes round
//! the subnet from there, so a released address is reused as late as
//! possible (stale ARP and conntrack entries for it have long expired).

use ipnet::IpNet;
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Addresses in a subnet are tried at most this many times per allocation
/// (IPv6 subnets are too large to walk).
const MAX_PROBES: u128 = 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    #[error("subnet {0} has no free address")]
    Exhausted(IpNet),
    #[error("address store {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

pub struct Ipam {
    dir: PathBuf,
}

impl Ipam {
    pub fn new(dir: &Path) -> Ipam {
        Ipam {
            dir: dir.to_path_buf(),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Leases an address of `subnet` (not its network, gateway or broadcast
    /// address) to `owner`.
    pub fn allocate(&self, subnet: IpNet, owner: &str) -> Result<IpAddr, IpamError> {
        let dir = subnet_dir(&self.dir, subnet);
        let io = |path: &Path, source| IpamError::Io {
            path: path.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        // The lock keeps the cursor consistent; the exclusive create alone
        // already keeps leases unique.
        let lock_path = dir.join("lock");
        let lock = std::fs::File::create(&lock_path).map_err(|e| io(&lock_path, e))?;
        let _guard = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| io(&lock_path, e.into()))?;
        let (first, last) = host_range(subnet);
        let size = last - first + 1;
        let cursor_path = dir.join("last");
        let previous = std::fs::read_to_string(&cursor_path)
            .ok()
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(to_u128)
            .filter(|n| (first..=last).contains(n));
        let start = previous.map_or(first, |p| if p >= last { first } else { p + 1 });
        for probe in 0..size.min(MAX_PROBES) {
            let n = first + (start - first + probe) % size;
            let ip = from_u128(n, subnet.addr());
            let path = dir.join(ip.to_string());
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    file.write_all(owner.as_bytes()).map_err(|e| io(&path, e))?;
                    crius_shim::protocol::write_atomic(&cursor_path, ip.to_string().as_bytes())
                        .map_err(|e| io(&cursor_path, e))?;
                    return Ok(ip);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&path, e)),
            }
        }
        Err(IpamError::Exhausted(subnet))
    }

    /// Every lease: (address, owner).
    pub fn leases(&self) -> Vec<(IpAddr, String)> {
        let mut leases = Vec::new();
        for subnet in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            for entry in std::fs::read_dir(subnet.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let Some(ip) = entry
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<IpAddr>().ok())
                else {
                    continue;
                };
                if let Ok(owner) = std::fs::read_to_string(entry.path()) {
                    leases.push((ip, owner));
                }
            }
        }
        leases
    }
}

/// Gives `ip` back, if `owner` still holds it. Idempotent; needs only the
/// store's dir, which the sandbox record keeps.
pub fn release(dir: &Path, ip: IpAddr, owner: &str) -> io::Result<()> {
    for subnet in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = subnet.path().join(ip.to_string());
        match std::fs::read_to_string(&path) {
            Ok(holder) if holder == owner => match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            },
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Whether `owner` holds `ip` in the store at `dir`.
pub fn holds(dir: &Path, ip: IpAddr, owner: &str) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|subnet| {
            std::fs::read_to_string(subnet.path().join(ip.to_string())).is_ok_and(|h| h == owner)
        })
}

/// The gateway of a subnet: its first host address.
pub fn gateway(subnet: IpNet) -> IpAddr {
    from_u128(to_u128(subnet.network()) + 1, subnet.addr())
}

/// The addresses pods may get: after the gateway, before the broadcast
/// address (IPv4) or the end of the subnet (IPv6).
fn host_range(subnet: IpNet) -> (u128, u128) {
    let network = to_u128(subnet.network());
    let broadcast = to_u128(subnet.broadcast());
    let last = match subnet {
        IpNet::V4(_) => broadcast - 1,
        IpNet::V6(_) => broadcast,
    };
    (network + 2, last)
}

fn subnet_dir(dir: &Path, subnet: IpNet) -> PathBuf {
    dir.join(subnet.trunc().to_string().replace('/', "_"))
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u32::from(v4) as u128,
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, like: IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4((n as u32).into()),
        IpAddr::V6(_) => IpAddr::V6(n.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_go_round_the_subnet_and_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path());
        let subnet: IpNet = "10.9.0.0/24".parse().unwrap();
        assert_eq!(gateway(subnet).to_string(), "10.9.0.1");
        // 300 pods come and go in a /24 (253 addresses): none runs out, and a
        // released address is not handed out again until the others were.
        let mut seen = Vec::new();
        for i in 0..300 {
            let owner = format!("pod{i}");
            let ip = ipam.allocate(subnet, &owner).unwrap();
            seen.push(ip);
            release(dir.path(), ip, &owner).unwrap();
        }
        assert_eq!(seen[0].to_string(), "10.9.0.2");
        assert_eq!(seen[252].to_string(), "10.9.0.254");
        assert_eq!(seen[253].to_string(), "10.9.0.2");
        assert!(ipam.leases().is_empty());

        // Held addresses are skipped; a full subnet says so.
        let small: IpNet = "10.9.1.0/29".parse().unwrap();
        let held: Vec<IpAddr> = (0..5)
            .map(|i| ipam.allocate(small, &format!("p{i}")).unwrap())
            .collect();
        let mut unique = held.clone();
        unique.dedup();
        assert_eq!(unique.len(), 5);
        assert!(matches!(
            ipam.allocate(small, "late"),
            Err(IpamError::Exhausted(_))
        ));
        // Only the holder releases an address.
        release(dir.path(), held[0], "someone-else").unwrap();
        assert!(ipam.allocate(small, "late").is_err());
        release(dir.path(), held[0], "p0").unwrap();
        assert_eq!(ipam.allocate(small, "late").unwrap(), held[0]);
        assert_eq!(ipam.leases().len(), 5);
    }

    #[test]
    fn ipv6_subnets_lease_too() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path());
        let subnet: IpNet = "fd00:c1::/64".parse().unwrap();
        assert_eq!(gateway(subnet).to_string(), "fd00:c1::1");
        assert_eq!(
            ipam.allocate(subnet, "a").unwrap().to_string(),
            "fd00:c1::2"
        );
        assert_eq!(
            ipam.allocate(subnet, "b").unwrap().to_string(),
            "fd00:c1::3"
        );
    }
}
