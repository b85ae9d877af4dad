//! Host devices given to a container: the device nodes to create and the
//! device-cgroup rules that let the container use them. The runtime adds
//! the standard ones (null, zero, full, random, urandom, tty, ptmx, pts).

use super::ContainerError;
use crate::cri;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

#[derive(Debug, Default)]
pub struct DevicePlan {
    pub devices: Vec<LinuxDevice>,
    pub rules: Vec<LinuxDeviceCgroup>,
}

fn rule(
    allow: bool,
    kind: Option<LinuxDeviceType>,
    major_minor: Option<(i64, i64)>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(kind);
    r.set_major(major_minor.map(|m| m.0));
    r.set_minor(major_minor.map(|m| m.1));
    r.set_access(Some(access.to_string()));
    r
}

/// The device node at `host`, to appear at `container`; `None` if `host` is
/// not a device.
fn device(host: &Path, container: &Path) -> std::io::Result<Option<LinuxDevice>> {
    let meta = std::fs::metadata(host)?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else if ft.is_fifo() {
        LinuxDeviceType::P
    } else {
        return Ok(None);
    };
    let rdev = meta.rdev();
    let mut d = LinuxDevice::default();
    d.set_path(container.to_path_buf());
    d.set_typ(kind);
    d.set_major(nix::sys::stat::major(rdev) as i64);
    d.set_minor(nix::sys::stat::minor(rdev) as i64);
    d.set_file_mode(Some(meta.mode() & 0o7777));
    d.set_uid(Some(meta.uid()));
    d.set_gid(Some(meta.gid()));
    Ok(Some(d))
}

fn allow(plan: &mut DevicePlan, d: LinuxDevice, access: &str) {
    if d.typ() != LinuxDeviceType::P {
        plan.rules.push(rule(
            true,
            Some(d.typ()),
            Some((d.major(), d.minor())),
            access,
        ));
    }
    plan.devices.push(d);
}

/// The CRI's devices. A directory host path gives every device under it.
pub fn from_cri(devices: &[cri::Device]) -> Result<DevicePlan, ContainerError> {
    let mut plan = DevicePlan::default();
    for (i, d) in devices.iter().enumerate() {
        let field = format!("config.devices[{i}]");
        let access = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        if !access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(ContainerError::Invalid(format!(
                "{field}.permissions {access:?} may only hold r, w and m"
            )));
        }
        if !d.container_path.starts_with('/') {
            return Err(ContainerError::Invalid(format!(
                "{field}.container_path {:?} must be absolute",
                d.container_path
            )));
        }
        let host = Path::new(&d.host_path);
        let meta = std::fs::metadata(host).map_err(|e| {
            ContainerError::Invalid(format!("{field}.host_path {:?}: {e}", d.host_path))
        })?;
        if meta.is_dir() {
            for (path, rel) in walk(host) {
                if let Ok(Some(dev)) = device(&path, &Path::new(&d.container_path).join(rel)) {
                    allow(&mut plan, dev, access);
                }
            }
            continue;
        }
        match device(host, Path::new(&d.container_path)) {
            Ok(Some(dev)) => allow(&mut plan, dev, access),
            Ok(None) => {
                return Err(ContainerError::Invalid(format!(
                    "{field}.host_path {:?} is not a device",
                    d.host_path
                )));
            }
            Err(e) => {
                return Err(ContainerError::Invalid(format!(
                    "{field}.host_path {:?}: {e}",
                    d.host_path
                )));
            }
        }
    }
    Ok(plan)
}

/// A privileged container gets every host device and may use any device.
pub fn all_host_devices() -> DevicePlan {
    let mut plan = DevicePlan::default();
    for (path, rel) in walk(Path::new("/dev")) {
        // The container's own /dev/pts and console come from the runtime.
        let first = rel.components().next().map(|c| c.as_os_str().to_owned());
        if first.is_some_and(|f| f == "pts" || f == "shm" || f == "mqueue")
            || rel == Path::new("console")
            || rel == Path::new("ptmx")
        {
            continue;
        }
        if let Ok(Some(dev)) = device(&path, &Path::new("/dev").join(&rel)) {
            plan.devices.push(dev);
        }
    }
    plan.rules.push(rule(true, None, None, "rwm"));
    plan
}

/// Every non-directory under `root` (not following symlinked dirs), with
/// its path relative to `root`.
fn walk(root: &Path) -> Vec<(PathBuf, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if !t.is_symlink() => {
                    let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
                    out.push((path, rel));
                }
                _ => {}
            }
        }
    }
    out
}

/// The device cgroup's first rule: deny everything not allowed later.
pub fn deny_all() -> LinuxDeviceCgroup {
    rule(false, None, None, "rwm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_device_maps_with_its_numbers() {
        let plan = from_cri(&[cri::Device {
            container_path: "/dev/mynull".into(),
            host_path: "/dev/null".into(),
            permissions: "rw".into(),
        }])
        .unwrap();
        assert_eq!(plan.devices.len(), 1);
        let d = &plan.devices[0];
        assert_eq!((d.typ(), d.major(), d.minor()), (LinuxDeviceType::C, 1, 3));
        assert_eq!(plan.rules[0].access().as_deref(), Some("rw"));
    }

    #[test]
    fn bad_devices_are_named() {
        let err = |host: &str, perms: &str| {
            from_cri(&[cri::Device {
                container_path: "/dev/x".into(),
                host_path: host.into(),
                permissions: perms.into(),
            }])
            .unwrap_err()
            .to_string()
        };
        assert!(err("/dev/null", "rwx").contains("config.devices[0].permissions"));
        assert!(err("/no/such/dev", "").contains("config.devices[0].host_path"));
        assert!(err("/etc/hostname", "").contains("is not a device"));
    }
}
