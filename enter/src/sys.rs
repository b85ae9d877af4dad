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
/// as listed in `fd_dir` (the process's `fd/` in a procfs) where the kernel
/// lacks it. The caller fails if this does.
pub fn close_from(first: u32, fd_dir: impl FnOnce() -> Result<OwnedFd, i32>) -> Result<(), i32> {
    // SAFETY: closes descriptors this process owns; nothing refers to them
    // afterwards (the caller forgets every handle it held above `first`).
    if unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) } == 0 {
        return Ok(());
    }
    if !matches!(errno(), libc::ENOSYS | libc::EINVAL | libc::EPERM) {
        return Err(errno());
    }
    let dir = fd_dir()?;
    let mut open = Vec::new();
    let mut buffer = [0u64; 512];
    loop {
        // SAFETY: getdents64 into a buffer of the size given.
        let n = check(unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.as_raw_fd(),
                buffer.as_mut_ptr(),
                std::mem::size_of_val(&buffer),
            )
        })? as usize;
        if n == 0 {
            break;
        }
        // SAFETY: the kernel wrote n bytes of records to the buffer.
        let bytes = unsafe { std::slice::from_raw_parts(buffer.as_ptr().cast::<u8>(), n) };
        let mut at = 0;
        while at + 19 < n {
            // struct linux_dirent64: ino u64, off i64, reclen u16, type u8, name.
            let reclen = u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]) as usize;
            let name = &bytes[at + 19..at + reclen];
            let name = &name[..name.iter().position(|b| *b == 0).unwrap_or(name.len())];
            if let Some(fd) = std::str::from_utf8(name)
                .ok()
                .and_then(|s| s.parse::<u32>().ok())
                && fd >= first
                && fd as RawFd != dir.as_raw_fd()
            {
                open.push(fd);
            }
            at += reclen.max(1);
        }
    }
    for fd in open {
        // SAFETY: as above; EBADF (already closed) is what we want.
        if unsafe { libc::close(fd as RawFd) } < 0 && errno() != libc::EBADF {
            return Err(errno());
        }
    }
    Ok(())
}
