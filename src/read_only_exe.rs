//! criusd runs from a read-only view of its own binary.
//!
//! Until a fork of criusd execs, its `/proc/<pid>/exe` is criusd's binary,
//! and a process that makes the kernel load `/proc/self/exe` as an
//! interpreter (CVE-2019-5736) could keep a handle on it and later write to
//! it. So at start criusd bind-mounts its binary read-only, opens it, detaches
//! the mount and re-execs from the open file: every process it forks then
//! has an exe that cannot be opened for writing (EROFS), and no mount is left
//! behind, even after a crash. The exec helper that enters containers
//! (`crius-enter`, see `container::enter::helper`) is run from the same kind
//! of view (`read_only_view`). Where that cannot be done, criusd does not
//! enter containers itself and every exec goes through the OCI runtime.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Set on the re-exec: the directory of criusd's installed binary, where
/// its helpers (`crius-shim`, `crius-pause`) are.
pub const BINARY_DIR_ENV: &str = "CRIUS_BINARY_DIR";

/// Whether this process's exe is on a read-only mount.
pub fn is_read_only() -> bool {
    static READ_ONLY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READ_ONLY.get_or_init(|| {
        nix::sys::statvfs::statvfs("/proc/self/exe")
            .is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
    })
}

/// Re-execs criusd from a read-only bind mount of its binary, made in
/// `scratch` and detached before the exec. Returns only if that cannot be
/// done (the error says why) or nothing needs doing. Call it while criusd
/// has one thread.
pub fn reexec(scratch: &Path) -> Result<(), String> {
    if is_read_only() {
        return Ok(());
    }
    let exe = std::env::current_exe().map_err(|e| format!("criusd's binary: {e}"))?;
    let exe_fd = read_only_view(Path::new("/proc/self/exe"), scratch, "criusd.exe")?;
    let binary_dir = std::env::var_os(BINARY_DIR_ENV)
        .map(PathBuf::from)
        .or_else(|| exe.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(std::os::unix::ffi::OsStrExt::as_bytes(a.as_os_str())))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let mut env: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != BINARY_DIR_ENV)
        .map(|(k, v)| {
            let mut entry = k.into_encoded_bytes();
            entry.push(b'=');
            entry.extend(v.into_encoded_bytes());
            CString::new(entry)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    env.push(
        CString::new(format!("{BINARY_DIR_ENV}={}", binary_dir.display()))
            .map_err(|e| e.to_string())?,
    );
    let argv: Vec<*mut libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let envp: Vec<*mut libc::c_char> = env
        .iter()
        .map(|e| e.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    // SAFETY: NUL-terminated argv and envp arrays of NUL-terminated strings
    // that outlive the call; it returns only on failure.
    unsafe {
        libc::execveat(
            exe_fd.as_raw_fd(),
            c"".as_ptr(),
            argv.as_ptr(),
            envp.as_ptr(),
            libc::AT_EMPTY_PATH,
        )
    };
    Err(format!(
        "re-executing criusd from its read-only binary: {}",
        std::io::Error::last_os_error()
    ))
}

/// An `O_PATH` handle on `binary` through a read-only bind mount made as
/// `scratch/name` and detached at once: a process executed from it has an
/// exe that cannot be opened for writing (EROFS), and no mount is left
/// behind, even after a crash.
pub fn read_only_view(binary: &Path, scratch: &Path, name: &str) -> Result<OwnedFd, String> {
    std::fs::create_dir_all(scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let target = scratch.join(name);
    let c_binary = crate::idmap::cpath(binary).map_err(|e| e.to_string())?;
    let c_target = crate::idmap::cpath(&target).map_err(|e| e.to_string())?;
    // Mounts a crashed start left there.
    // SAFETY: umount2 on a NUL-terminated path.
    while unsafe { libc::umount2(c_target.as_ptr(), libc::MNT_DETACH) } == 0 {}
    std::fs::write(&target, b"").map_err(|e| format!("{}: {e}", target.display()))?;
    let bind = |flags: libc::c_ulong| {
        // SAFETY: mount with NUL-terminated paths.
        let done = unsafe {
            libc::mount(
                c_binary.as_ptr(),
                c_target.as_ptr(),
                std::ptr::null(),
                flags,
                std::ptr::null(),
            )
        };
        if done < 0 {
            return Err(format!(
                "binding {} read-only on {}: {}",
                binary.display(),
                target.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(())
    };
    bind(libc::MS_BIND)?;
    let opened = bind(libc::MS_BIND | libc::MS_REMOUNT | libc::MS_RDONLY).and_then(|()| {
        // SAFETY: open of a NUL-terminated path; the fd is owned below.
        let fd = unsafe { libc::open(c_target.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(format!(
                "{}: {}",
                target.display(),
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a new fd.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    });
    // SAFETY: as above. The open file keeps the detached mount alive.
    unsafe { libc::umount2(c_target.as_ptr(), libc::MNT_DETACH) };
    let _ = std::fs::remove_file(&target);
    opened
}
