//! The host's procfs, opened before the helper joins any namespace and
//! checked to be a real procfs root, as runc does (CVE-2025-52881): the
//! LSM attribute files and the process's own settings are written through
//! it, never through a /proc the container could have mounted over.

use crate::sys;
use std::ffi::CStr;
use std::os::fd::{AsRawFd, OwnedFd};

/// procfs's root directory inode (PROC_ROOT_INO).
const ROOT_INODE: u64 = 1;

pub struct Procfs(OwnedFd);

impl Procfs {
    pub fn open() -> Result<Procfs, (i32, String)> {
        let fd = sys::open_at(
            libc::AT_FDCWD,
            c"/proc",
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW,
        )
        .map_err(|e| (e, "/proc".to_string()))?;
        // SAFETY: plain structs filled by the kernel.
        let (mut fs, mut st): (libc::statfs, libc::stat) = unsafe { std::mem::zeroed() };
        // SAFETY: as above, on a descriptor we hold.
        sys::check_int(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut fs) })
            .map_err(|e| (e, "fstatfs /proc".into()))?;
        // SAFETY: as above.
        sys::check_int(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })
            .map_err(|e| (e, "fstat /proc".into()))?;
        if fs.f_type != libc::PROC_SUPER_MAGIC || st.st_ino != ROOT_INODE {
            return Err((
                libc::EXDEV,
                format!(
                    "/proc is not a procfs root (type {:#x}, inode {})",
                    fs.f_type, st.st_ino
                ),
            ));
        }
        Ok(Procfs(fd))
    }

    /// Opens `path` below this procfs, never leaving it: no magic links,
    /// no other mount (openat2), or at least no final symlink (openat)
    /// on a kernel without openat2.
    pub fn open_file(&self, path: &CStr, flags: libc::c_int) -> Result<OwnedFd, i32> {
        sys::open_resolved(
            self.0.as_raw_fd(),
            path,
            flags,
            libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV | libc::RESOLVE_BENEATH,
        )
    }

    pub fn write(&self, path: &CStr, text: &[u8]) -> Result<(), i32> {
        sys::write_all(&self.open_file(path, libc::O_WRONLY)?, text)
    }

    pub fn read(&self, path: &CStr) -> Result<Vec<u8>, i32> {
        let fd = self.open_file(path, libc::O_RDONLY)?;
        let mut out = vec![0u8; 256];
        // SAFETY: a buffer of the length given.
        let n = sys::check(unsafe {
            libc::read(fd.as_raw_fd(), out.as_mut_ptr().cast(), out.len()) as libc::c_long
        })?;
        out.truncate(n as usize);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_procfs_opens_and_reads_beneath_itself() {
        let proc = Procfs::open().unwrap();
        let status = proc.read(c"self/status").unwrap();
        assert!(status.starts_with(b"Name:"));
        // Magic links and escapes are refused.
        assert!(proc.open_file(c"self/cwd", libc::O_RDONLY).is_err());
        assert!(proc.open_file(c"../etc/passwd", libc::O_RDONLY).is_err());
    }
}
