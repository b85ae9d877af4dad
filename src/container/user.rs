//! Who a container's first process runs as: uid, gid and supplementary
//! groups, from the CRI security context and the image's `USER`, resolved in
//! the container's own /etc/passwd and /etc/group.
//!
//! Invariant: the files are read inside the rootfs only. Symlinks are
//! followed within it (an absolute target means the rootfs's root), never out
//! of it, so an image cannot make crius read the host's files.

use crate::cri;
use std::path::{Component, Path, PathBuf};

/// The resolved identity (ContainerStatus.user and the OCI process user).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Sorted, without duplicates, without the primary gid.
    pub additional_gids: Vec<u32>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("{field}: user {name:?} is not in the image's /etc/passwd")]
    NoSuchUser { field: &'static str, name: String },
    #[error("{field}: group {name:?} is not in the image's /etc/group")]
    NoSuchGroup { field: &'static str, name: String },
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves the user of a container whose root filesystem is `rootfs`.
/// `image_user` is the image config's USER ("", "name", "uid", "name:group",
/// "uid:gid").
pub fn resolve(
    rootfs: &Path,
    security: Option<&cri::LinuxContainerSecurityContext>,
    image_user: &str,
) -> Result<ResolvedUser, UserError> {
    let default = cri::LinuxContainerSecurityContext::default();
    let sc = security.unwrap_or(&default);
    let passwd = read_passwd(rootfs);
    let groups = read_groups(rootfs);

    if sc.run_as_user.is_some() && !sc.run_as_username.is_empty() {
        return Err(UserError::Invalid {
            field: "config.linux.security_context.run_as_user",
            reason: "only one of run_as_user and run_as_username may be set".into(),
        });
    }
    let (user_part, group_part) = match image_user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (image_user, None),
    };
    // The CRI's user wins over the image's; a CRI group needs a CRI user.
    let (uid, mut gid, name) =
        if let Some(v) = &sc.run_as_user {
            let uid = u32::try_from(v.value).map_err(|_| UserError::Invalid {
                field: "config.linux.security_context.run_as_user",
                reason: format!("{} is not a valid uid", v.value),
            })?;
            let entry = passwd.iter().find(|p| p.uid == uid);
            (
                uid,
                entry.map(|e| e.gid).unwrap_or(0),
                entry.map(|e| e.name.clone()),
            )
        } else if !sc.run_as_username.is_empty() {
            let entry = passwd
                .iter()
                .find(|p| p.name == sc.run_as_username)
                .ok_or_else(|| UserError::NoSuchUser {
                    field: "config.linux.security_context.run_as_username",
                    name: sc.run_as_username.clone(),
                })?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        } else if user_part.is_empty() {
            (
                0,
                0,
                passwd.iter().find(|p| p.uid == 0).map(|e| e.name.clone()),
            )
        } else if let Ok(uid) = user_part.parse::<u32>() {
            let entry = passwd.iter().find(|p| p.uid == uid);
            (
                uid,
                entry.map(|e| e.gid).unwrap_or(0),
                entry.map(|e| e.name.clone()),
            )
        } else {
            let entry = passwd.iter().find(|p| p.name == user_part).ok_or_else(|| {
                UserError::NoSuchUser {
                    field: "image config User",
                    name: user_part.to_string(),
                }
            })?;
            (entry.uid, entry.gid, Some(entry.name.clone()))
        };

    if let Some(v) = &sc.run_as_group {
        if sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
            return Err(UserError::Invalid {
                field: "config.linux.security_context.run_as_group",
                reason: "needs run_as_user or run_as_username".into(),
            });
        }
        gid = u32::try_from(v.value).map_err(|_| UserError::Invalid {
            field: "config.linux.security_context.run_as_group",
            reason: format!("{} is not a valid gid", v.value),
        })?;
    } else if sc.run_as_user.is_none()
        && sc.run_as_username.is_empty()
        && let Some(group) = group_part.filter(|g| !g.is_empty())
    {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|g| g.name == group)
                .map(|g| g.gid)
                .ok_or_else(|| UserError::NoSuchGroup {
                    field: "image config User",
                    name: group.to_string(),
                })?,
        };
    }

    let strict = sc.supplemental_groups_policy == cri::SupplementalGroupsPolicy::Strict as i32;
    let mut additional: Vec<u32> = Vec::new();
    if !strict && let Some(name) = &name {
        // Merge: the user's groups from the image's /etc/group.
        additional.extend(
            groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| g.gid),
        );
    }
    for g in &sc.supplemental_groups {
        additional.push(u32::try_from(*g).map_err(|_| UserError::Invalid {
            field: "config.linux.security_context.supplemental_groups",
            reason: format!("{g} is not a valid gid"),
        })?);
    }
    additional.retain(|g| *g != gid);
    additional.sort_unstable();
    additional.dedup();
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids: additional,
    })
}

fn read_passwd(rootfs: &Path) -> Vec<PasswdEntry> {
    read_in_rootfs(rootfs, "etc/passwd")
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 4 && !line.starts_with('#')).then_some(())?;
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].parse().ok()?,
                gid: f[3].parse().ok()?,
            })
        })
        .collect()
}

fn read_groups(rootfs: &Path) -> Vec<GroupEntry> {
    read_in_rootfs(rootfs, "etc/group")
        .lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            (f.len() >= 3 && !line.starts_with('#')).then_some(())?;
            let members = f.get(3).map(|m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].parse().ok()?,
                members: members.unwrap_or_default(),
            })
        })
        .collect()
}

/// A file's text read within `rootfs` (missing or unreadable: empty).
fn read_in_rootfs(rootfs: &Path, rel: &str) -> String {
    resolve_in_rootfs(rootfs, Path::new(rel))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// Resolves `rel` inside `rootfs`, following symlinks as if `rootfs` were `/`
/// (at most 40 of them, as the kernel allows).
pub fn resolve_in_rootfs(rootfs: &Path, rel: &Path) -> Option<PathBuf> {
    let mut pending: Vec<std::ffi::OsString> =
        rel.components().rev().filter_map(component).collect();
    let mut current = PathBuf::new();
    let mut links = 0;
    while let Some(part) = pending.pop() {
        if part == ".." {
            current.pop();
            continue;
        }
        let candidate = current.join(&part);
        let full = rootfs.join(&candidate);
        match std::fs::symlink_metadata(&full) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > 40 {
                    return None;
                }
                let target = std::fs::read_link(&full).ok()?;
                if target.is_absolute() {
                    current = PathBuf::new();
                }
                pending.extend(target.components().rev().filter_map(component));
            }
            _ => current = candidate,
        }
    }
    Some(rootfs.join(current))
}

fn component(c: Component) -> Option<std::ffi::OsString> {
    match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some("..".into()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nsomeuser:x:1000:1000::/home/someuser:/bin/sh\n# comment\nbroken line\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nusers:x:100:someuser\nsomeuser:x:1000:\nextra:x:2000:someuser,other\n",
        )
        .unwrap();
        dir
    }

    fn sc(
        f: impl FnOnce(&mut cri::LinuxContainerSecurityContext),
    ) -> cri::LinuxContainerSecurityContext {
        let mut sc = cri::LinuxContainerSecurityContext::default();
        f(&mut sc);
        sc
    }

    fn user(uid: u32, gid: u32, extra: &[u32]) -> ResolvedUser {
        ResolvedUser {
            uid,
            gid,
            additional_gids: extra.to_vec(),
        }
    }

    #[test]
    fn image_user_forms() {
        let r = rootfs();
        assert_eq!(resolve(r.path(), None, "").unwrap(), user(0, 0, &[]));
        assert_eq!(
            resolve(r.path(), None, "someuser").unwrap(),
            user(1000, 1000, &[100, 2000])
        );
        assert_eq!(
            resolve(r.path(), None, "1000").unwrap(),
            user(1000, 1000, &[100, 2000])
        );
        assert_eq!(
            resolve(r.path(), None, "1234").unwrap(),
            user(1234, 0, &[]),
            "unknown uids are fine"
        );
        assert_eq!(
            resolve(r.path(), None, "someuser:extra").unwrap(),
            user(1000, 2000, &[100])
        );
        assert_eq!(
            resolve(r.path(), None, "1234:55").unwrap(),
            user(1234, 55, &[])
        );
        let err = resolve(r.path(), None, "ghost").unwrap_err();
        assert!(
            err.to_string()
                .contains("\"ghost\" is not in the image's /etc/passwd"),
            "{err}"
        );
        assert!(
            resolve(r.path(), None, "someuser:nogroup")
                .unwrap_err()
                .to_string()
                .contains("nogroup")
        );
    }

    #[test]
    fn security_context_wins_and_policies_apply() {
        let r = rootfs();
        let by_name = sc(|s| s.run_as_username = "someuser".into());
        assert_eq!(
            resolve(r.path(), Some(&by_name), "root").unwrap(),
            user(1000, 1000, &[100, 2000])
        );
        let by_uid = sc(|s| {
            s.run_as_user = Some(cri::Int64Value { value: 1000 });
            s.run_as_group = Some(cri::Int64Value { value: 3000 });
            s.supplemental_groups = vec![4000, 100];
        });
        // Merge adds the groups that list the user in /etc/group, not the
        // passwd primary gid that run_as_group replaced.
        assert_eq!(
            resolve(r.path(), Some(&by_uid), "").unwrap(),
            user(1000, 3000, &[100, 2000, 4000])
        );
        let strict = sc(|s| {
            s.run_as_user = Some(cri::Int64Value { value: 1000 });
            s.supplemental_groups = vec![4000];
            s.supplemental_groups_policy = cri::SupplementalGroupsPolicy::Strict as i32;
        });
        assert_eq!(
            resolve(r.path(), Some(&strict), "").unwrap(),
            user(1000, 1000, &[4000])
        );
    }

    #[test]
    fn invalid_combinations_name_the_field() {
        let r = rootfs();
        let both = sc(|s| {
            s.run_as_user = Some(cri::Int64Value { value: 1 });
            s.run_as_username = "someuser".into();
        });
        assert!(
            resolve(r.path(), Some(&both), "")
                .unwrap_err()
                .to_string()
                .contains("run_as_user")
        );
        let group_only = sc(|s| s.run_as_group = Some(cri::Int64Value { value: 5 }));
        assert!(
            resolve(r.path(), Some(&group_only), "")
                .unwrap_err()
                .to_string()
                .contains("run_as_group")
        );
        let negative = sc(|s| s.run_as_user = Some(cri::Int64Value { value: -1 }));
        assert!(
            resolve(r.path(), Some(&negative), "")
                .unwrap_err()
                .to_string()
                .contains("not a valid uid")
        );
        let ghost = sc(|s| s.run_as_username = "ghost".into());
        assert!(
            resolve(r.path(), Some(&ghost), "")
                .unwrap_err()
                .to_string()
                .contains("run_as_username")
        );
    }

    #[test]
    fn symlinks_cannot_leave_the_rootfs() {
        let r = tempfile::tempdir().unwrap();
        std::fs::create_dir(r.path().join("etc")).unwrap();
        // An image whose passwd points at the host's must read its own.
        std::os::unix::fs::symlink("/etc/shadow-of-host", r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/hostname", r.path().join("etc/group"))
            .unwrap();
        assert_eq!(
            resolve_in_rootfs(r.path(), Path::new("etc/passwd")).unwrap(),
            r.path().join("etc/shadow-of-host")
        );
        // `..` stops at the rootfs's root.
        assert_eq!(
            resolve_in_rootfs(r.path(), Path::new("etc/group")).unwrap(),
            r.path().join("etc/hostname")
        );
        // Neither file exists inside: defaults, never the host's.
        assert_eq!(resolve(r.path(), None, "").unwrap(), user(0, 0, &[]));
        std::os::unix::fs::symlink("loop", r.path().join("loop")).unwrap();
        assert_eq!(resolve_in_rootfs(r.path(), Path::new("loop")), None);
    }
}
