//! Idmapped mounts for pods with a user namespace: a copy of a mount whose
//! files, owned by root on disk, belong to the pod's root inside (and files
//! the pod's root creates are root's on disk). crius makes them itself
//! (open_tree, mount_setattr, move_mount; Linux 5.12+), so any OCI runtime
//! can use them as plain bind sources. An overlay mount cannot be idmapped
//! itself; its layers can (Linux 5.19+), which is how rootfs overlays of such
//! pods are built (`image::rootfs`).

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

pub(crate) fn cpath(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(std::io::Error::other)
}

pub(crate) fn check(ret: libc::c_long) -> std::io::Result<libc::c_long> {
    if ret < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Mounts at `target` (an existing dir or file) a copy of the mount tree at
/// `source`, idmapped through the user namespace pinned at `userns`.
pub fn mount(source: &Path, target: &Path, userns: &Path) -> std::io::Result<()> {
    let source_c = cpath(source)?;
    let target_c = cpath(target)?;
    let userns_file = std::fs::File::open(userns)?;
    // SAFETY: raw syscalls with valid NUL-terminated paths, a struct of the
    // kernel's layout and its size, and fds we own.
    unsafe {
        let tree = check(libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            source_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
        ))?;
        let tree = OwnedFd::from_raw_fd(tree as i32);
        let attr = MountAttr {
            attr_set: MOUNT_ATTR_IDMAP,
            attr_clr: 0,
            propagation: 0,
            userns_fd: userns_file.as_raw_fd() as u64,
        };
        let empty = c"";
        check(libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        ))?;
        check(libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        ))?;
    }
    Ok(())
}

/// Unmounts `target` if something is mounted there (idempotent).
pub fn unmount(target: &Path) {
    let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
}

/// Detaches every mount below `dir` (deepest first), so that removing `dir`
/// never reaches into a mounted volume or rootfs.
pub fn unmount_all_under(dir: &Path) {
    let prefix = format!("{}/", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(&prefix))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for target in targets {
        unmount(Path::new(target));
    }
}

/// This thread's fs uid and gid, switched for a scope (setfsuid/setfsgid
/// affect the calling thread only).
pub(crate) struct FsIds;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

impl FsIds {
    pub(crate) fn switch((uid, gid): (u32, u32)) -> FsIds {
        // SAFETY: plain ids and capability structs of the kernel's layout
        // (version 3: two data words), this thread only.
        unsafe {
            libc::setfsgid(gid);
            libc::setfsuid(uid);
            // A non-root fsuid drops the file capabilities (CAP_MKNOD,
            // CAP_DAC_OVERRIDE, ...) from the effective set; overlayfs needs
            // them (it makes whiteouts), so raise them again.
            let mut header = CapHeader {
                version: 0x2008_0522,
                pid: 0,
            };
            let mut data = [CapData::default(); 2];
            if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) == 0 {
                for d in &mut data {
                    d.effective = d.permitted;
                }
                libc::syscall(libc::SYS_capset, &header, data.as_ptr());
            }
        }
        FsIds
    }
}

impl Drop for FsIds {
    fn drop(&mut self) {
        // SAFETY: as above; back to root's fs ids.
        unsafe {
            libc::setfsuid(0);
            libc::setfsgid(0);
        }
    }
}
