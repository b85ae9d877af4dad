//! A CDI device node as an OCI device: what the spec leaves out (type,
//! numbers, mode) read from the host node, and the device-cgroup rule that
//! lets the container use it.

use super::schema::DeviceNode;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

fn device_type(kind: &str) -> LinuxDeviceType {
    match kind {
        "b" => LinuxDeviceType::B,
        "u" => LinuxDeviceType::U,
        "p" => LinuxDeviceType::P,
        _ => LinuxDeviceType::C,
    }
}

/// The OCI device of a CDI node, its missing type, numbers and mode read
/// from the host node; owned by the container's user unless the spec says
/// otherwise. A node given with its type and major (or a fifo) need not
/// exist on the host.
pub fn device_node(
    n: &DeviceNode,
    uid: u32,
    gid: u32,
) -> Result<(LinuxDevice, Option<LinuxDeviceCgroup>), String> {
    let host = if n.host_path.is_empty() {
        &n.path
    } else {
        &n.host_path
    };
    let complete = !n.kind.is_empty() && (n.major != 0 || n.kind == "p");
    let (mut kind, mut major, mut minor, mut mode) =
        (n.kind.clone(), n.major, n.minor, n.file_mode);
    match host_node(Path::new(host)) {
        Ok((host_kind, host_major, host_minor, host_mode)) => {
            mode = mode.or(Some(host_mode));
            if !complete {
                if kind.is_empty() {
                    kind = host_kind.to_string();
                }
                let same = kind == host_kind || (kind == "u" && host_kind == "c");
                if !same {
                    return Err(format!(
                        "device node {:?}: type {kind:?} but host node {host:?} is {host_kind:?}",
                        n.path
                    ));
                }
                if kind != "p" && major == 0 {
                    (major, minor) = (host_major, host_minor);
                }
            }
        }
        Err(e) if !complete => {
            return Err(format!("device node {:?}: host node {host:?}: {e}", n.path));
        }
        Err(_) => {}
    }
    let mut device = LinuxDevice::default();
    device.set_path(PathBuf::from(&n.path));
    device.set_typ(device_type(&kind));
    device.set_major(major);
    device.set_minor(minor);
    device.set_file_mode(mode);
    device.set_uid(n.uid.or((uid > 0).then_some(uid)));
    device.set_gid(n.gid.or((gid > 0).then_some(gid)));
    let rule = matches!(kind.as_str(), "b" | "c").then(|| {
        let access = match n.permissions.as_str() {
            "" => "rwm",
            "none" => "",
            p => p,
        };
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(device_type(&kind)));
        rule.set_major(Some(major));
        rule.set_minor(Some(minor));
        rule.set_access(Some(access.to_string()));
        rule
    });
    Ok((device, rule))
}

/// (type, major, minor, permission bits) of a host device node.
fn host_node(path: &Path) -> Result<(&'static str, i64, i64, u32), String> {
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let ft = meta.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else if ft.is_fifo() {
        "p"
    } else {
        return Err("not a device node".into());
    };
    let rdev = meta.rdev();
    Ok((
        kind,
        nix::sys::stat::major(rdev) as i64,
        nix::sys::stat::minor(rdev) as i64,
        meta.mode() & 0o7777,
    ))
}
