//! Thin wrappers over the system calls the helper makes: errno as the
//! error, descriptors owned.

use std::ffi::CStr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// A system call's result: negative is the errno.
pub fn check(result: libc::c_long) -> Result<libc::c_long, i32> {
    if result < 0 { Err(errno()) } else { Ok(result) }
}

pub fn check_int(result: libc::c_int) -> Result<libc::c_int, i32> {
    check(result.into()).map(|r| r as libc::c_int)
}

/// Takes ownership of a descriptor a call returned.
pub fn owned(fd: libc::c_int) -> Result<OwnedFd, i32> {
    let fd = check_int(fd)?;
    // SAFETY: a descriptor just returned to us and owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn open_at(dir: RawFd, path: &CStr, flags: libc::c_int) -> Result<OwnedFd, i32> {
    // SAFETY: a NUL-terminated path; the descriptor is owned by the caller.
    owned(unsafe { libc::openat(dir, path.as_ptr(), flags | libc::O_CLOEXEC) })
}

/// openat2(2) with `resolve` flags, or openat(2) with O_NOFOLLOW on a
/// kernel without it.
pub fn open_resolved(
    dir: RawFd,
    path: &CStr,
    flags: libc::c_int,
    resolve: u64,
) -> Result<OwnedFd, i32> {
    // struct open_how (libc's is non-exhaustive).
    #[repr(C)]
    struct OpenHow {
        flags: u64,
        mode: u64,
        resolve: u64,
    }
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC | libc::O_NOCTTY) as u64,
        mode: 0,
        resolve,
    };
    // SAFETY: openat2 with a NUL-terminated path and an open_how of the
    // size given; the descriptor is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir,
            path.as_ptr(),
            &how as *const OpenHow,
            std::mem::size_of::<OpenHow>(),
        )
    };
    if fd < 0 && errno() == libc::ENOSYS {
        return open_at(dir, path, flags | libc::O_NOFOLLOW);
    }
    owned(fd as libc::c_int)
}

pub fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), i32> {
    while !bytes.is_empty() {
        // SAFETY: a live buffer of the length given.
        let n = unsafe { libc::write(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len()) };
        match n {
            n if n > 0 => bytes = &bytes[n as usize..],
            0 => return Err(libc::EIO),
            _ if errno() == libc::EINTR => {}
            _ => return Err(errno()),
        }
    }
    Ok(())
}

pub fn prctl(option: libc::c_int, arg: libc::c_ulong) -> Result<(), i32> {
    // SAFETY: prctl with integer arguments only.
    check_int(unsafe { libc::prctl(option, arg, 0, 0, 0) }).map(drop)
}

/// Closes every descriptor from `first` on: close_range(2), or one by one
/// up to `limit` (the process's descriptor limit) on a kernel without it.
/// The caller fails if this does.
pub fn close_from(first: u32, limit: u32) -> Result<(), i32> {
    // SAFETY: closes descriptors this process owns; the caller holds no
    // handle on any of them.
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) } == 0 {
        return Ok(());
    }
    if !matches!(errno(), libc::ENOSYS | libc::EINVAL) {
        return Err(errno());
    }
    for fd in first..limit {
        // SAFETY: as above; EBADF (not open) is what we want.
        if unsafe { libc::close(fd as RawFd) } < 0 && !matches!(errno(), libc::EBADF | libc::EINTR)
        {
            return Err(errno());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_above_the_first_are_closed() {
        // In a child, so the test harness's own descriptors are left alone.
        // SAFETY: fork; the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: as above.
            unsafe {
                let kept = libc::dup2(1, 40);
                let closed = close_from(41, 1024).is_ok()
                    && libc::fcntl(40, libc::F_GETFD) >= 0
                    && (41..1024).all(|fd| libc::fcntl(fd, libc::F_GETFD) < 0);
                libc::_exit(if kept == 40 && closed { 0 } else { 1 });
            }
        }
        let mut status = 0;
        // SAFETY: waitpid on our child.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0);
    }
}
