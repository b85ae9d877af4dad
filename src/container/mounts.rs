//! A container's mounts: the standard kernel filesystems, the pod's files
//! (hosts, resolv.conf, hostname, /dev/shm) and the CRI's volume mounts, in
//! that order so that later mounts win.
//!
//! A volume's host path that does not exist is made a directory, as kubelet
//! expects for hostPath volumes of type "" (and both peers do), unless the
//! operator lists it in `runtime.absent_mount_sources_to_reject` or it would
//! land inside criusd's own data (a path through a symlink into a rootfs,
//! say). `rslave` and `rshared` propagation need the host mount to be shared
//! (or a slave), or the propagation silently would not happen, so that is
//! checked.

use super::ContainerError;
use crate::cri;
use crate::sandbox::SandboxRecord;
use oci_spec::runtime::Mount;
use std::path::{Path, PathBuf};

fn mount(destination: &str, kind: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(destination));
    m.set_typ(Some(kind.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

fn bind(destination: &str, source: &Path, options: &[&str]) -> Mount {
    let mut m = mount(destination, "bind", "", options);
    m.set_source(Some(source.to_path_buf()));
    m
}

/// /proc, /dev, /dev/pts, /dev/mqueue, /sys and the cgroup filesystem.
pub fn standard(privileged: bool) -> Vec<Mount> {
    let (sys_mode, cgroup_mode) = if privileged {
        ("rw", "rw")
    } else {
        ("ro", "ro")
    };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", sys_mode],
        ),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", cgroup_mode],
        ),
    ]
}

/// The pod's hostname, hosts and resolv.conf files and its /dev/shm.
pub fn pod_files(sandbox: &SandboxRecord, readonly_rootfs: bool) -> Vec<Mount> {
    let mode = if readonly_rootfs { "ro" } else { "rw" };
    let mut mounts: Vec<Mount> = ["hostname", "hosts", "resolv.conf"]
        .iter()
        .map(|name| {
            bind(
                &format!("/etc/{name}"),
                &sandbox.dir.join(name),
                &["rbind", "rprivate", mode],
            )
        })
        .collect();
    let shm = if sandbox.namespaces.ipc.is_some() {
        sandbox.dir.join("shm")
    } else {
        PathBuf::from("/dev/shm")
    };
    mounts.push(bind(
        "/dev/shm",
        &shm,
        &["rbind", "rprivate", "nosuid", "nodev", "noexec", "rw"],
    ));
    mounts
}

/// What the CRI's mounts ask of the rootfs's propagation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RootPropagation {
    Private,
    Slave,
    Shared,
}

/// Where volumes' missing host paths may not be created.
#[derive(Debug, Clone, Default)]
pub struct AbsentSources {
    /// The operator's list: these paths and those under them are refused.
    pub reject: Vec<PathBuf>,
    /// criusd's root and state: nothing is created inside them.
    pub protected: Vec<PathBuf>,
}

impl AbsentSources {
    /// Creates the missing host paths of `mounts` as directories (0755).
    pub fn create_missing(&self, mounts: &[cri::Mount]) -> Result<(), ContainerError> {
        for (i, m) in mounts.iter().enumerate() {
            let host = Path::new(&m.host_path);
            if m.host_path.is_empty()
                || is_image_volume(m)
                || std::fs::symlink_metadata(host).is_ok()
            {
                continue;
            }
            let refuse = |why: String| {
                ContainerError::Invalid(format!(
                    "config.mounts[{i}]: host_path {:?} does not exist and {why}",
                    m.host_path
                ))
            };
            if !host.is_absolute()
                || host
                    .components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(refuse("is not a clean absolute path to create".into()));
            }
            if let Some(listed) = self.reject.iter().find(|r| host.starts_with(r)) {
                return Err(refuse(format!(
                    "runtime.absent_mount_sources_to_reject lists {}",
                    listed.display()
                )));
            }
            let real = resolve_missing(host)
                .map_err(|e| refuse(format!("its parent cannot be resolved: {e}")))?;
            if let Some(own) = self
                .protected
                .iter()
                .filter_map(|p| p.canonicalize().ok())
                .find(|p| real.starts_with(p))
            {
                return Err(refuse(format!(
                    "it would be created at {} inside criusd's own data ({})",
                    real.display(),
                    own.display()
                )));
            }
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&real)
                .map_err(|e| refuse(format!("creating it failed: {e}")))?;
            tracing::info!(path = %real.display(), "created a volume's missing host path");
        }
        Ok(())
    }
}

/// Where a missing path would be: its deepest existing ancestor resolved
/// (symlinks followed), with the missing rest appended.
fn resolve_missing(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    while std::fs::symlink_metadata(existing).is_err() {
        rest.push(existing.file_name().unwrap_or_default());
        existing = existing.parent().unwrap_or(Path::new("/"));
    }
    let mut real = existing.canonicalize()?;
    real.extend(rest.iter().rev());
    Ok(real)
}

/// Where a volume's files come from when it is not `host_path` as given.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumeSource {
    /// An idmapped view of `host_path` for a user-namespaced pod.
    Idmapped(PathBuf),
    /// A directory of a pod's read-only image volume.
    Image(PathBuf),
}

/// Whether `m` is an image volume (KEP-4639).
pub fn is_image_volume(m: &cri::Mount) -> bool {
    m.image.as_ref().is_some_and(|s| !s.image.is_empty())
}

/// How volumes are mounted beyond what each request says.
#[derive(Debug, Clone, Copy, Default)]
pub struct VolumeOptions {
    /// The runtime handler can make recursive read-only mounts.
    pub rro_supported: bool,
    /// Image volumes are noexec (`runtime.image_volumes_noexec`).
    pub image_volumes_noexec: bool,
}

/// The CRI's mounts as OCI mounts, checked against the host.
pub fn volumes(
    mounts: &[cri::Mount],
    volume_options: VolumeOptions,
    sources: &std::collections::BTreeMap<usize, VolumeSource>,
) -> Result<(Vec<Mount>, RootPropagation), ContainerError> {
    let mut out = Vec::new();
    let mut root = RootPropagation::Private;
    for (i, m) in mounts.iter().enumerate() {
        let field = format!("config.mounts[{i}]");
        let invalid = |what: String| ContainerError::Invalid(format!("{field}: {what}"));
        if !m.container_path.starts_with('/') {
            return Err(invalid(format!(
                "container_path {:?} must be absolute",
                m.container_path
            )));
        }
        if is_image_volume(m) {
            let Some(VolumeSource::Image(source)) = sources.get(&i) else {
                return Err(invalid("the image volume was not mounted".into()));
            };
            out.push(image_volume(m, source, volume_options.image_volumes_noexec));
            continue;
        }
        let idmapped_source = match sources.get(&i) {
            Some(VolumeSource::Idmapped(path)) => Some(path),
            _ => None,
        };
        if (!m.uid_mappings.is_empty() || !m.gid_mappings.is_empty()) && idmapped_source.is_none() {
            return Err(ContainerError::Invalid(format!(
                "{field}: idmapped mounts need the pod to have its own user namespace"
            )));
        }
        if m.host_path.is_empty() {
            return Err(invalid("host_path is empty".into()));
        }
        let host = Path::new(&m.host_path);
        let real = host.canonicalize().map_err(|e| {
            invalid(format!(
                "host_path {:?} cannot be mounted: {e}",
                m.host_path
            ))
        })?;
        let propagation = cri::MountPropagation::try_from(m.propagation)
            .map_err(|_| invalid(format!("propagation {} is unknown", m.propagation)))?;
        let mut options = vec!["rbind".to_string()];
        match propagation {
            cri::MountPropagation::PropagationPrivate => options.push("rprivate".into()),
            cri::MountPropagation::PropagationHostToContainer => {
                require_propagation(&real, false, &field)?;
                options.push("rslave".into());
                root = root.max(RootPropagation::Slave);
            }
            cri::MountPropagation::PropagationBidirectional => {
                require_propagation(&real, true, &field)?;
                options.push("rshared".into());
                root = RootPropagation::Shared;
            }
        }
        if m.recursive_read_only {
            if !m.readonly || propagation != cri::MountPropagation::PropagationPrivate {
                return Err(invalid(
                    "recursive_read_only needs readonly and PROPAGATION_PRIVATE".into(),
                ));
            }
            if !volume_options.rro_supported {
                return Err(invalid(
                    "recursive_read_only: this runtime handler cannot make recursive read-only mounts (see Status' handler features)".into(),
                ));
            }
            options.push("rro".into());
        } else {
            options.push(if m.readonly { "ro" } else { "rw" }.into());
        }
        let mut oci = Mount::default();
        oci.set_destination(PathBuf::from(&m.container_path));
        oci.set_typ(Some("bind".into()));
        oci.set_source(Some(
            idmapped_source
                .cloned()
                .unwrap_or_else(|| host.to_path_buf()),
        ));
        oci.set_options(Some(options));
        out.push(oci);
    }
    Ok((out, root))
}

/// An image volume's bind mount: read-only whatever the request says (the
/// CRI: image volumes are read-only by definition), never propagating,
/// without devices or set-id programs.
fn image_volume(m: &cri::Mount, source: &Path, noexec: bool) -> Mount {
    let mut options = vec!["rbind", "rprivate", "ro", "nosuid", "nodev"];
    if noexec {
        options.push("noexec");
    }
    bind(&m.container_path, source, &options)
}

/// Standard mounts, then pod files, then volumes; an earlier mount whose
/// destination a later one takes is dropped (a volume at /etc/hosts replaces
/// the pod's file, one at /dev/shm the pod's shm).
pub fn assemble(standard: Vec<Mount>, pod: Vec<Mount>, volumes: Vec<Mount>) -> Vec<Mount> {
    let taken: Vec<PathBuf> = volumes.iter().map(|m| m.destination().clone()).collect();
    let pod: Vec<Mount> = pod
        .into_iter()
        .filter(|m| !taken.contains(m.destination()))
        .collect();
    let taken: Vec<PathBuf> = taken
        .into_iter()
        .chain(pod.iter().map(|m| m.destination().clone()))
        .collect();
    standard
        .into_iter()
        .filter(|m| !taken.contains(m.destination()))
        .chain(pod)
        .chain(volumes)
        .collect()
}

/// Checks that the host mount holding `path` propagates: shared for
/// `rshared`, shared or slave for `rslave`.
fn require_propagation(path: &Path, need_shared: bool, field: &str) -> Result<(), ContainerError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let Some((mount_point, shared, slave)) = containing_mount(&info, path) else {
        return Ok(());
    };
    let ok = if need_shared { shared } else { shared || slave };
    if ok {
        return Ok(());
    }
    Err(ContainerError::Precondition(format!(
        "{field}: host_path {} is on mount {} which is not a {} mount, so {} propagation cannot work (make it shared: mount --make-rshared {})",
        path.display(),
        mount_point.display(),
        if need_shared {
            "shared"
        } else {
            "shared or slave"
        },
        if need_shared {
            "bidirectional"
        } else {
            "host-to-container"
        },
        mount_point.display()
    )))
}

/// The mount point holding `path` and whether it is shared / a slave.
fn containing_mount(mountinfo: &str, path: &Path) -> Option<(PathBuf, bool, bool)> {
    let mut best: Option<(PathBuf, bool, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.len() < 7 {
            continue;
        }
        let mount_point = PathBuf::from(unescape(fields[4]));
        if !path.starts_with(&mount_point) {
            continue;
        }
        let optional = fields[6..].iter().take_while(|f| **f != "-");
        let (mut shared, mut slave) = (false, false);
        for f in optional {
            shared |= f.starts_with("shared:");
            slave |= f.starts_with("master:");
        }
        // Later lines are mounted over earlier ones at the same point.
        let longer = best
            .as_ref()
            .is_none_or(|(b, _, _)| mount_point.as_os_str().len() >= b.as_os_str().len());
        if longer {
            best = Some((mount_point, shared, slave));
        }
    }
    best
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 4 <= bytes.len()
            && let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 4])
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_propagation() {
        let info = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:5 / /data rw - tmpfs tmpfs rw
31 22 0:6 / /mnt\\040x rw master:3 - tmpfs tmpfs rw";
        assert_eq!(
            containing_mount(info, Path::new("/var/lib")),
            Some((PathBuf::from("/"), true, false))
        );
        assert_eq!(
            containing_mount(info, Path::new("/data/a")),
            Some((PathBuf::from("/data"), false, false))
        );
        assert_eq!(
            containing_mount(info, Path::new("/mnt x/y")),
            Some((PathBuf::from("/mnt x"), false, true))
        );
    }

    fn cri_mount(json: &str) -> cri::Mount {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn missing_host_paths_are_made_unless_refused() {
        let dir = tempfile::tempdir().unwrap();
        let own = dir.path().join("crius-root");
        std::fs::create_dir_all(own.join("rootfs/c1/merged")).unwrap();
        std::os::unix::fs::symlink(own.join("rootfs/c1/merged"), dir.path().join("into-rootfs"))
            .unwrap();
        let sources = AbsentSources {
            reject: vec![dir.path().join("refused")],
            protected: vec![own.clone()],
        };
        let mount = |host: &Path| cri::Mount {
            container_path: "/v".into(),
            host_path: host.display().to_string(),
            ..Default::default()
        };
        let made = dir.path().join("a/b/c");
        sources.create_missing(&[mount(&made)]).unwrap();
        let meta = std::fs::metadata(&made).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert!(meta.is_dir() && meta.permissions().mode() & 0o777 == 0o755);
        for (host, needle) in [
            (
                dir.path().join("refused/x"),
                "absent_mount_sources_to_reject",
            ),
            (
                dir.path().join("into-rootfs/etc/x"),
                "inside criusd's own data",
            ),
            (own.join("new"), "inside criusd's own data"),
            (dir.path().join("a/../x"), "clean absolute path"),
        ] {
            let err = sources.create_missing(&[mount(&host)]).unwrap_err();
            assert!(
                err.to_string().contains("config.mounts[0]") && err.to_string().contains(needle),
                "{err}"
            );
            assert!(!host.exists());
        }
    }

    #[test]
    fn volumes_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().display();
        let (mounts, root) = volumes(
            &[cri_mount(&format!(
                r#"{{"container_path": "/v", "host_path": "{host}", "readonly": true}}"#
            ))],
            VolumeOptions::default(),
            &Default::default(),
        )
        .unwrap();
        assert_eq!(root, RootPropagation::Private);
        assert_eq!(
            mounts[0].options().as_ref().unwrap(),
            &["rbind", "rprivate", "ro"]
        );
        let err = |json: String| {
            volumes(
                &[cri_mount(&json)],
                VolumeOptions::default(),
                &Default::default(),
            )
            .unwrap_err()
            .to_string()
        };
        assert!(
            err(r#"{"container_path": "/v", "host_path": "/no/such/dir"}"#.into())
                .contains("config.mounts[0]: host_path \"/no/such/dir\"")
        );
        assert!(
            err(format!(
                r#"{{"container_path": "v", "host_path": "{host}"}}"#
            ))
            .contains("must be absolute")
        );
        assert!(
            err(format!(
                r#"{{"container_path": "/v", "host_path": "{host}", "readonly": true, "recursive_read_only": true}}"#
            ))
            .contains("cannot make recursive read-only")
        );
    }

    #[test]
    fn image_volumes_are_read_only_whatever_was_asked() {
        let json = r#"{"container_path": "/data", "image": {"image": "sha256:ab"}, "readonly": false, "propagation": 2}"#;
        let sources = [(0, VolumeSource::Image(PathBuf::from("/vol/merged/sub")))]
            .into_iter()
            .collect();
        for (noexec, expected) in [
            (false, &["rbind", "rprivate", "ro", "nosuid", "nodev"][..]),
            (
                true,
                &["rbind", "rprivate", "ro", "nosuid", "nodev", "noexec"][..],
            ),
        ] {
            let options = VolumeOptions {
                image_volumes_noexec: noexec,
                ..Default::default()
            };
            let (mounts, root) = volumes(&[cri_mount(json)], options, &sources).unwrap();
            assert_eq!(root, RootPropagation::Private);
            assert_eq!(
                mounts[0].source().as_deref(),
                Some(Path::new("/vol/merged/sub"))
            );
            assert_eq!(mounts[0].options().as_ref().unwrap(), expected);
        }
        let err = volumes(
            &[cri_mount(json)],
            VolumeOptions::default(),
            &Default::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("config.mounts[0]"), "{err}");
    }

    #[test]
    fn later_mounts_replace_earlier_ones() {
        let standard = standard(false);
        let pod = vec![
            bind("/etc/hosts", Path::new("/a"), &[]),
            bind("/dev/shm", Path::new("/b"), &[]),
        ];
        let vols = vec![bind("/etc/hosts", Path::new("/c"), &[])];
        let all = assemble(standard, pod, vols);
        let hosts: Vec<_> = all
            .iter()
            .filter(|m| m.destination() == Path::new("/etc/hosts"))
            .collect();
        assert_eq!(hosts.len(), 1);
        assert_eq!(hosts[0].source().as_deref(), Some(Path::new("/c")));
        assert_eq!(all.last().unwrap().destination(), Path::new("/etc/hosts"));
    }
}
