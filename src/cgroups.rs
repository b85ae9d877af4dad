//! Which cgroup hierarchy this node has and which driver crius uses.
//!
//! crius supports cgroup v1 (including the "hybrid" layout, where v1 holds the
//! controllers and `/sys/fs/cgroup/unified` is an empty v2 tree) and the v2
//! unified layout. The driver is cgroupfs unless systemd runs as init.

use crate::config::CgroupDriverSetting;
use serde::Serialize;
use std::path::Path;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hierarchy {
    /// Controllers on v1 hierarchies (possibly with an empty v2 "unified" tree).
    V1,
    /// One v2 unified hierarchy.
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Driver {
    Cgroupfs,
    Systemd,
}

/// The node's cgroup facts, fixed for the daemon's lifetime.
#[derive(Debug, Clone, Serialize)]
pub struct CgroupInfo {
    pub hierarchy: Hierarchy,
    /// v1 with a v2 tree at /sys/fs/cgroup/unified.
    pub hybrid: bool,
    pub driver: Driver,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "runtime.cgroup_driver = \"systemd\" but systemd is not running on this node (no /run/systemd/system)"
)]
pub struct NoSystemd;

impl CgroupInfo {
    pub fn detect(setting: CgroupDriverSetting) -> Result<CgroupInfo, NoSystemd> {
        let hierarchy = if is_cgroup2(Path::new(CGROUP_ROOT)) {
            Hierarchy::V2
        } else {
            Hierarchy::V1
        };
        let hybrid =
            hierarchy == Hierarchy::V1 && is_cgroup2(&Path::new(CGROUP_ROOT).join("unified"));
        let systemd_runs = Path::new("/run/systemd/system").is_dir();
        let driver = match setting {
            CgroupDriverSetting::Cgroupfs => Driver::Cgroupfs,
            CgroupDriverSetting::Systemd if systemd_runs => Driver::Systemd,
            CgroupDriverSetting::Systemd => return Err(NoSystemd),
            CgroupDriverSetting::Auto if systemd_runs => Driver::Systemd,
            CgroupDriverSetting::Auto => Driver::Cgroupfs,
        };
        Ok(CgroupInfo {
            hierarchy,
            hybrid,
            driver,
        })
    }
}

fn is_cgroup2(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_this_node() {
        let info = CgroupInfo::detect(CgroupDriverSetting::Cgroupfs).unwrap();
        assert_eq!(info.driver, Driver::Cgroupfs);
        // The two layouts are exclusive: a v2 root is never "hybrid".
        assert!(!(info.hierarchy == Hierarchy::V2 && info.hybrid));
        let v2_root = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
        assert_eq!(info.hierarchy == Hierarchy::V2, v2_root);
    }

    #[test]
    fn systemd_driver_needs_systemd() {
        let result = CgroupInfo::detect(CgroupDriverSetting::Systemd);
        assert_eq!(result.is_ok(), Path::new("/run/systemd/system").is_dir());
    }
}
