//! Which cgroup hierarchy this node has and which driver crius uses.
//!
//! crius supports cgroup v1 (including the "hybrid" layout, where v1 holds the
//! controllers and `/sys/fs/cgroup/unified` is an empty v2 tree) and the v2
//! unified layout. The driver is cgroupfs unless systemd runs as init.

use crate::config::CgroupDriverSetting;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

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

/// Where a container's cgroup goes: the runtime's `linux.cgroupsPath` and
/// the directory relative to a hierarchy's root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerCgroup {
    pub spec_path: String,
    pub relative: PathBuf,
}

impl CgroupInfo {
    /// The cgroup of container `id` under the pod's `parent` (kubelet's
    /// `cgroup_parent`; "" puts it under `/crius` or `crius.slice`).
    pub fn container(&self, parent: &str, id: &str) -> ContainerCgroup {
        match self.driver {
            Driver::Cgroupfs => {
                let parent = if parent.is_empty() { "/crius" } else { parent };
                let path = format!("{}/crius-{id}", parent.trim_end_matches('/'));
                let relative = PathBuf::from(path.trim_start_matches('/'));
                ContainerCgroup {
                    spec_path: if path.starts_with('/') {
                        path
                    } else {
                        format!("/{path}")
                    },
                    relative,
                }
            }
            Driver::Systemd => {
                let slice = if parent.is_empty() {
                    DEFAULT_SLICE
                } else {
                    slice_name(parent)
                };
                let mut relative = expand_slice(slice);
                relative.push(format!("crius-{id}.scope"));
                ContainerCgroup {
                    spec_path: format!("{slice}:crius:{id}"),
                    relative,
                }
            }
        }
    }

    /// The cgroup a `linux.cgroupsPath` set by someone else (an NRI
    /// plugin) names, as runc and crun make it; `None` where crius cannot
    /// place it (a cgroupfs path relative to the runtime's own cgroup, a
    /// systemd slice as the container's unit).
    pub fn from_spec_path(&self, spec_path: &str) -> Option<ContainerCgroup> {
        let relative = match self.driver {
            Driver::Cgroupfs => {
                if !spec_path.starts_with('/') {
                    return None;
                }
                PathBuf::from(spec_path.trim_start_matches('/'))
            }
            Driver::Systemd => {
                let mut parts = spec_path.splitn(3, ':');
                let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
                if name.is_empty() || name.ends_with(".slice") {
                    return None;
                }
                // runc's parent when none is given.
                let slice = if slice.is_empty() {
                    "system.slice"
                } else {
                    slice
                };
                if !slice.ends_with(".slice") {
                    return None;
                }
                let mut relative = expand_slice(slice);
                relative.push(format!("{prefix}-{name}.scope"));
                relative
            }
        };
        Some(ContainerCgroup {
            spec_path: spec_path.to_string(),
            relative,
        })
    }

    /// The pod's own cgroup (kubelet's `cgroup_parent`) below each
    /// hierarchy's root; `None` when kubelet gave none.
    pub fn pod(&self, parent: &str) -> Option<PathBuf> {
        if parent.is_empty() {
            return None;
        }
        Some(match self.driver {
            Driver::Cgroupfs => PathBuf::from(parent.trim_matches('/')),
            Driver::Systemd => expand_slice(slice_name(parent)),
        })
    }

    /// Checks kubelet's `cgroup_parent` against the driver: with systemd it
    /// must name a slice, as kubelet's systemd driver always does.
    pub fn check_parent(&self, parent: &str) -> Result<(), String> {
        if self.driver == Driver::Cgroupfs || parent.is_empty() {
            return Ok(());
        }
        let name = slice_name(parent);
        let valid = name.len() > ".slice".len()
            && name.ends_with(".slice")
            && !name.starts_with('-')
            && !name.contains("--")
            && !name.trim_end_matches(".slice").ends_with('-');
        if valid {
            Ok(())
        } else {
            Err(format!(
                "{parent:?} is not a systemd slice (such as kubepods-besteffort-pod<uid>.slice); the node's cgroup driver is systemd"
            ))
        }
    }

    /// The file whose `oom_kill` line counts a cgroup's OOM kills.
    pub fn oom_file(&self, cgroup: &ContainerCgroup) -> PathBuf {
        match self.hierarchy {
            Hierarchy::V1 => Path::new(CGROUP_ROOT)
                .join("memory")
                .join(&cgroup.relative)
                .join("memory.oom_control"),
            Hierarchy::V2 => Path::new(CGROUP_ROOT)
                .join(&cgroup.relative)
                .join("memory.events"),
        }
    }

    /// Whether memory+swap limits can be set (v1 needs swap accounting).
    pub fn swap_accounting(&self) -> bool {
        match self.hierarchy {
            Hierarchy::V1 => Path::new(CGROUP_ROOT)
                .join("memory/memory.memsw.limit_in_bytes")
                .exists(),
            Hierarchy::V2 => true,
        }
    }

    /// Whether hugepage limits can be set: v1 needs a hugetlb hierarchy
    /// (many VMs have none), v2 the controller in the root's list.
    pub fn hugetlb(&self) -> bool {
        let root = Path::new(CGROUP_ROOT);
        match self.hierarchy {
            Hierarchy::V1 => root.join("hugetlb/tasks").exists(),
            Hierarchy::V2 => std::fs::read_to_string(root.join("cgroup.controllers"))
                .is_ok_and(|c| c.split_whitespace().any(|n| n == "hugetlb")),
        }
    }

    /// What resource limits this node's cgroups can enforce.
    pub fn enforceable(&self) -> Enforceable {
        Enforceable {
            hierarchy: self.hierarchy,
            swap_accounting: self.swap_accounting(),
            hugetlb: self.hugetlb(),
        }
    }
}

/// What a container's resource limits may use on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enforceable {
    pub hierarchy: Hierarchy,
    pub swap_accounting: bool,
    pub hugetlb: bool,
}

/// Where containers of pods without a `cgroup_parent` go under systemd: a
/// slice of crius's own, so they are told apart from the node's services.
const DEFAULT_SLICE: &str = "crius.slice";

/// The slice a `cgroup_parent` names: kubelet sends either the slice's name
/// (`kubepods-besteffort-pod<uid>.slice`) or its path
/// (`/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod<uid>.slice`);
/// runc and crun take only the name, as containerd and CRI-O give them.
fn slice_name(parent: &str) -> &str {
    parent
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(parent)
}

/// systemd's slice nesting: "a-b-c.slice" lives at
/// "a.slice/a-b.slice/a-b-c.slice".
fn expand_slice(slice: &str) -> PathBuf {
    let name = slice.trim_end_matches(".slice");
    let mut path = PathBuf::new();
    let mut prefix = String::new();
    for part in name.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    path
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
    fn container_cgroup_paths() {
        let mut info = CgroupInfo::detect(CgroupDriverSetting::Cgroupfs).unwrap();
        let c = info.container("/kubepods/burstable/pod1", "abc");
        assert_eq!(c.spec_path, "/kubepods/burstable/pod1/crius-abc");
        assert_eq!(c.relative, Path::new("kubepods/burstable/pod1/crius-abc"));
        assert_eq!(info.container("", "x").spec_path, "/crius/crius-x");
        assert_eq!(
            info.pod("/kubepods/burstable/pod1/"),
            Some(PathBuf::from("kubepods/burstable/pod1"))
        );
        assert_eq!(info.pod(""), None);
        info.driver = Driver::Systemd;
        let c = info.container("kubepods-burstable-pod1.slice", "abc");
        assert_eq!(c.spec_path, "kubepods-burstable-pod1.slice:crius:abc");
        assert_eq!(
            c.relative,
            Path::new(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/crius-abc.scope"
            )
        );
        // The path form kubelet and critest send names the same slice.
        let path_form = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice";
        assert_eq!(info.container(path_form, "abc"), c);
        assert_eq!(
            info.pod(path_form),
            Some(PathBuf::from(
                "kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
            ))
        );
        let t = info.container("/test.slice", "x");
        assert_eq!(t.spec_path, "test.slice:crius:x");
        assert_eq!(t.relative, Path::new("test.slice/crius-x.scope"));
        let d = info.container("", "x");
        assert_eq!(d.spec_path, "crius.slice:crius:x");
        assert_eq!(d.relative, Path::new("crius.slice/crius-x.scope"));
    }

    #[test]
    fn cgroups_paths_set_by_others() {
        let fs = CgroupInfo {
            hierarchy: Hierarchy::V2,
            hybrid: false,
            driver: Driver::Cgroupfs,
        };
        assert_eq!(
            fs.from_spec_path("/nri/moved").unwrap().relative,
            PathBuf::from("nri/moved")
        );
        assert_eq!(fs.from_spec_path("relative/to/runc"), None);
        let sd = CgroupInfo {
            driver: Driver::Systemd,
            ..fs
        };
        assert_eq!(
            sd.from_spec_path("kubepods-burstable.slice:cri-nri:abc")
                .unwrap()
                .relative,
            PathBuf::from("kubepods.slice/kubepods-burstable.slice/cri-nri-abc.scope")
        );
        assert_eq!(
            sd.from_spec_path(":crius:abc").unwrap().relative,
            PathBuf::from("system.slice/crius-abc.scope")
        );
        assert_eq!(sd.from_spec_path("a.slice:p:b.slice"), None);
        assert_eq!(sd.from_spec_path("/not/systemd"), None);
    }

    #[test]
    fn systemd_parents_must_be_slices() {
        let mut info = CgroupInfo::detect(CgroupDriverSetting::Cgroupfs).unwrap();
        assert!(info.check_parent("/kubepods/burstable/pod1").is_ok());
        info.driver = Driver::Systemd;
        for good in ["", "test.slice", "/test.slice", "/a.slice/a-b.slice/"] {
            assert!(info.check_parent(good).is_ok(), "{good}");
        }
        for bad in [
            "/kubepods/burstable/pod1",
            ".slice",
            "-a.slice",
            "a--b.slice",
            "a-.slice",
        ] {
            let err = info.check_parent(bad).unwrap_err();
            assert!(err.contains("systemd slice"), "{bad}: {err}");
        }
    }

    #[test]
    fn systemd_driver_needs_systemd() {
        let result = CgroupInfo::detect(CgroupDriverSetting::Systemd);
        assert_eq!(result.is_ok(), Path::new("/run/systemd/system").is_dir());
    }
}
