//! Block devices as cAdvisor names them in a `device` label (`/dev/sda`),
//! and the filesystem that holds a path.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

/// Device names by number, resolved through /sys/dev/block once each.
#[derive(Default)]
pub struct DeviceNames {
    known: Mutex<HashMap<(u32, u32), String>>,
}

impl DeviceNames {
    /// "/dev/<name>" of a block device, or "major:minor" when it has none
    /// (an overlay or tmpfs has no block device behind it).
    pub fn name(&self, major: u32, minor: u32) -> String {
        let mut known = self.known.lock().expect("device names");
        known
            .entry((major, minor))
            .or_insert_with(|| {
                std::fs::read_link(format!("/sys/dev/block/{major}:{minor}"))
                    .ok()
                    .and_then(|target| Some(format!("/dev/{}", target.file_name()?.to_str()?)))
                    .unwrap_or_else(|| format!("{major}:{minor}"))
            })
            .clone()
    }
}

/// The size and inodes of the filesystem holding `path`, and its device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesystemOf {
    pub major: u32,
    pub minor: u32,
    pub bytes_total: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

pub fn filesystem_of(path: &Path) -> Option<FilesystemOf> {
    let stat = nix::sys::stat::stat(path).ok()?;
    let fs = nix::sys::statvfs::statvfs(path).ok()?;
    Some(FilesystemOf {
        major: nix::sys::stat::major(stat.st_dev) as u32,
        minor: nix::sys::stat::minor(stat.st_dev) as u32,
        bytes_total: fs.blocks() as u64 * fs.fragment_size() as u64,
        inodes_total: fs.files() as u64,
        inodes_free: fs.files_free() as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_sys_or_fall_back_to_numbers() {
        let names = DeviceNames::default();
        // No block device has major 0 (anonymous devices: tmpfs, overlay).
        assert_eq!(names.name(0, 4095), "0:4095");
        let root = filesystem_of(Path::new("/")).unwrap();
        assert!(root.bytes_total > 0 && root.inodes_total >= root.inodes_free);
        let name = names.name(root.major, root.minor);
        let sys = Path::new("/sys/dev/block").join(format!("{}:{}", root.major, root.minor));
        assert_eq!(name.starts_with("/dev/"), sys.exists(), "{name}");
    }
}
