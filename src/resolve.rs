//! Opening a path inside a directory as if that directory were `/`:
//! openat2 with `RESOLVE_IN_ROOT`, so neither `..` nor a symlink (absolute
//! or relative) can lead out of it, and magic links are refused.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

/// Opens `path` below `root` with `flags` (`O_CLOEXEC` added).
pub fn open_in_root(
    root: &std::fs::File,
    path: &Path,
    flags: libc::c_int,
) -> std::io::Result<std::fs::File> {
    let path = crate::idmap::cpath(path)?;
    // SAFETY: open_how is plain integers; all zero is its default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: a valid dirfd, a NUL-terminated path and an open_how of the
    // size passed; the fd returned is ours.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            path.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: openat2 returned a new fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) }.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("crius-resolve-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/real"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc/real", dir.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../../../etc/real", dir.join("etc/up")).unwrap();
        let root = std::fs::File::open(&dir).unwrap();
        for link in ["etc/abs", "etc/up", "/etc/real", "../etc/real"] {
            let mut text = String::new();
            std::io::Read::read_to_string(
                &mut open_in_root(&root, Path::new(link), libc::O_RDONLY).unwrap(),
                &mut text,
            )
            .unwrap();
            assert_eq!(text, "inside", "{link}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
