//! Mounting an overlay of any number of lower layers, up to overlayfs's own
//! limit of 500.
//!
//! mount(2) takes all options in one page, which holds about 40 full layer
//! paths, yet images of 50 to 127 layers are common. Where the kernel has it
//! (Linux 6.8+), each layer goes to the new mount API on its own
//! (`fsconfig(lowerdir+)`), which has no such limit. Whether it has it is
//! probed once: before Linux 6.5 overlayfs took the new API's options
//! through a legacy shim that accepts any key and fails only at
//! `FSCONFIG_CMD_CREATE`, so a key that no overlayfs knows tells the two
//! apart. Elsewhere the options
//! name short symlinks (`<rootfs>/l/<n>`, as Docker's overlay2 does) relative
//! to a working directory that a forked child moves into before mount(2):
//! the working directory is per process, and criusd's threads must keep
//! theirs. Idmapped layers need the new API even there (the overlay is
//! created under the pod root's fs ids), whose string values hold 255
//! bytes: the layers go as short names in one `lowerdir`, created by a
//! thread that unshares its working directory (up to 106 layers).

use crate::idmap::{FsIds, check, cpath};
use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// overlayfs's `OVL_MAX_STACK`.
pub const MAX_LOWER_LAYERS: usize = 500;

/// What mount(2) takes as options (one page, less a margin).
const MAX_MOUNT_DATA: usize = 4000;

/// The longest string value fsconfig() takes (256 bytes with its NUL).
const MAX_FSCONFIG_VALUE: usize = 255;

/// How many layers' short names fit in one fsconfig() value: 62 of one
/// character, the rest of two, each with its colon.
const MAX_SHORT_LAYERS: usize = 62 + (MAX_FSCONFIG_VALUE + 1 - 62 * 2) / 3;

const SHORT_NAME_DIGITS: &[u8; 62] =
    b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Layer `n`'s short name: one character for the first 62, then two.
fn short_name(n: usize) -> String {
    let digit = |d: usize| SHORT_NAME_DIGITS[d % 62] as char;
    if n < 62 {
        digit(n).to_string()
    } else {
        let m = n - 62;
        [digit(m / 62), digit(m)].iter().collect()
    }
}

const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// An overlay to mount at `merged`: `lower` top layer first.
pub struct Overlay<'a> {
    pub lower: &'a [PathBuf],
    /// The upper and work dirs; without them the overlay is read-only
    /// (overlayfs then wants at least two lower layers).
    pub writable: Option<(&'a Path, &'a Path)>,
    /// Where the fallback's short symlinks go (created if needed).
    pub links: &'a Path,
}

impl Overlay<'_> {
    /// Mounts the overlay at `merged`. With `creator` (the pod's root on the
    /// host, for idmapped layers), overlayfs is created under those fs ids,
    /// which only the new mount API allows.
    pub fn mount(&self, merged: &Path, creator: Option<(u32, u32)>) -> std::io::Result<()> {
        if self.lower.len() > MAX_LOWER_LAYERS {
            return Err(std::io::Error::other(format!(
                "{} lower layers; overlayfs stacks at most {MAX_LOWER_LAYERS}",
                self.lower.len()
            )));
        }
        match (lowerdir_plus(), creator) {
            (true, _) => self.mount_fsconfig(merged, creator, true),
            // Idmapped layers need the new API (the fs ids switch before
            // create), with all layers in one option as mount(2) takes them.
            (false, Some(_)) => self.mount_fsconfig(merged, creator, false),
            (false, None) => self.mount_legacy(merged),
        }
    }

    fn mount_fsconfig(
        &self,
        merged: &Path,
        creator: Option<(u32, u32)>,
        one_by_one: bool,
    ) -> std::io::Result<()> {
        let fs = fsopen()?;
        let writable = || -> std::io::Result<()> {
            if let Some((upper, work)) = self.writable {
                fs.set("upperdir", upper).map_err(|e| step(upper, e))?;
                fs.set("workdir", work).map_err(|e| step(work, e))?;
            }
            Ok(())
        };
        if one_by_one {
            for layer in self.lower {
                fs.set("lowerdir+", layer).map_err(|e| step(layer, e))?;
            }
            writable()?;
            fs.create(creator)?;
            return fs.move_to(merged);
        }
        // One value of at most 255 bytes: the layers by short names, which
        // overlayfs resolves when it is given them (6.5 and later) or when
        // it is created (before): both in a thread whose working directory
        // is the links dir.
        let short = self.short_names()?.join(":");
        if short.len() > MAX_FSCONFIG_VALUE {
            return Err(std::io::Error::other(format!(
                "{} lower layers do not fit in one overlay option on this kernel \
                 (it has no lowerdir+, which Linux 6.8 added): at most {MAX_SHORT_LAYERS}",
                self.lower.len()
            )));
        }
        in_dir(self.links, || {
            fs.set("lowerdir", Path::new(&short))
                .map_err(|e| std::io::Error::new(e.kind(), format!("lowerdir: {e}")))?;
            writable()?;
            fs.create(creator)
        })?;
        fs.move_to(merged)
    }

    /// Short symlinks to the layers in the links dir, by their names.
    fn short_names(&self) -> std::io::Result<Vec<String>> {
        std::fs::create_dir_all(self.links)?;
        let mut short = Vec::with_capacity(self.lower.len());
        for (n, layer) in self.lower.iter().enumerate() {
            let name = short_name(n);
            let link = self.links.join(&name);
            match std::fs::read_link(&link) {
                Ok(target) if target == *layer => {}
                Ok(_) => {
                    std::fs::remove_file(&link)?;
                    std::os::unix::fs::symlink(layer, &link)?;
                }
                Err(_) => std::os::unix::fs::symlink(layer, &link)?,
            }
            short.push(name);
        }
        Ok(short)
    }

    /// mount(2), through short relative names when full paths do not fit.
    fn mount_legacy(&self, merged: &Path) -> std::io::Result<()> {
        let tail = match self.writable {
            Some((upper, work)) => {
                format!(",upperdir={},workdir={}", upper.display(), work.display())
            }
            None => String::new(),
        };
        let full: Vec<String> = self.lower.iter().map(|l| l.display().to_string()).collect();
        let data = format!("lowerdir={}{tail}", full.join(":"));
        if data.len() <= MAX_MOUNT_DATA {
            return mount2(merged, &data, None);
        }
        let data = format!("lowerdir={}{tail}", self.short_names()?.join(":"));
        if data.len() > MAX_MOUNT_DATA {
            return Err(std::io::Error::other(format!(
                "overlay options for {} layers do not fit in one page",
                self.lower.len()
            )));
        }
        mount2(merged, &data, Some(self.links))
    }
}

/// Whether this kernel's overlayfs takes `lowerdir+` (probed once).
pub fn lowerdir_plus() -> bool {
    static PROBED: OnceLock<bool> = OnceLock::new();
    *PROBED.get_or_init(|| {
        let Ok(fs) = fsopen() else {
            return false;
        };
        // The legacy shim (before 6.5) takes any key; overlayfs's own
        // parser refuses unknown ones, and knows `lowerdir+` from 6.8.
        let strict = fs
            .set("crius-probe-unknown-key", Path::new("x"))
            .is_err_and(|e| e.raw_os_error() == Some(libc::EINVAL));
        let has = strict && fs.set("lowerdir+", Path::new("/")).is_ok();
        tracing::debug!(lowerdir_plus = has, "overlayfs probed");
        has
    })
}

fn step(what: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", what.display()))
}

/// An overlay filesystem context of the new mount API.
struct FsContext(OwnedFd);

fn fsopen() -> std::io::Result<FsContext> {
    // SAFETY: a NUL-terminated name; the fd returned is ours.
    unsafe {
        let fd = check(libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), 1))?;
        Ok(FsContext(OwnedFd::from_raw_fd(fd as i32)))
    }
}

impl FsContext {
    fn set(&self, key: &str, value: &Path) -> std::io::Result<()> {
        let key = CString::new(key).map_err(std::io::Error::other)?;
        let value = cpath(value)?;
        // SAFETY: NUL-terminated strings and an fd we own.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_SET_STRING,
                key.as_ptr(),
                value.as_ptr(),
                0,
            )
        })
        .map(drop)
    }

    /// FSCONFIG_CMD_CREATE under the creator's fs ids (the calling
    /// thread's).
    fn create(&self, creator: Option<(u32, u32)>) -> std::io::Result<()> {
        let _ids = creator.map(FsIds::switch);
        // SAFETY: an fd we own; no strings.
        check(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.0.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_char>(),
                0,
            )
        })
        .map(drop)
        .map_err(|e| std::io::Error::new(e.kind(), format!("creating the overlay: {e}")))
    }

    fn move_to(self, target: &Path) -> std::io::Result<()> {
        let target = cpath(target)?;
        // SAFETY: raw syscalls with fds we own and NUL-terminated paths.
        unsafe {
            let mnt = check(libc::syscall(libc::SYS_fsmount, self.0.as_raw_fd(), 1, 0))?;
            let mnt = OwnedFd::from_raw_fd(mnt as i32);
            check(libc::syscall(
                libc::SYS_move_mount,
                mnt.as_raw_fd(),
                c"".as_ptr(),
                libc::AT_FDCWD,
                target.as_ptr(),
                MOVE_MOUNT_F_EMPTY_PATH,
            ))?;
        }
        Ok(())
    }
}

/// Runs `f` in a thread of its own whose working directory is `dir`:
/// criusd's other threads keep theirs.
fn in_dir<T: Send>(
    dir: &Path,
    f: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: unshares this thread's fs struct (root, cwd, umask) only.
            check(unsafe { libc::unshare(libc::CLONE_FS) } as libc::c_long)?;
            std::env::set_current_dir(dir)?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(std::io::Error::other("the mounting thread panicked")))
    })
}

/// mount(2) of an overlay with `data`; with `cwd`, in a forked child that
/// moves there first, so relative names in `data` resolve against it.
fn mount2(target: &Path, data: &str, cwd: Option<&Path>) -> std::io::Result<()> {
    let target = cpath(target)?;
    let data = CString::new(data).map_err(std::io::Error::other)?;
    let mount_now = || {
        // SAFETY: NUL-terminated strings that outlive the call.
        unsafe {
            libc::mount(
                c"overlay".as_ptr(),
                target.as_ptr(),
                c"overlay".as_ptr(),
                0,
                data.as_ptr().cast(),
            )
        }
    };
    let Some(cwd) = cwd else {
        return check(mount_now() as libc::c_long).map(drop);
    };
    let cwd = cpath(cwd)?;
    // SAFETY: between fork and _exit the child only makes raw syscalls on
    // memory prepared before the fork (no allocation, no locks).
    unsafe {
        match libc::fork() {
            -1 => Err(std::io::Error::last_os_error()),
            0 => {
                let code = if libc::chdir(cwd.as_ptr()) != 0 || mount_now() != 0 {
                    *libc::__errno_location()
                } else {
                    0
                };
                libc::_exit(code)
            }
            child => {
                let mut status = 0;
                while libc::waitpid(child, &mut status, 0) < 0 {
                    let e = std::io::Error::last_os_error();
                    if e.kind() != std::io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                match libc::WEXITSTATUS(status) {
                    0 if libc::WIFEXITED(status) => Ok(()),
                    errno if libc::WIFEXITED(status) => {
                        Err(std::io::Error::from_raw_os_error(errno))
                    }
                    _ => Err(std::io::Error::other("the mounting child was killed")),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `count` layers, each with a file of its own and a shared file that
    /// the top layer's copy must win.
    fn layers(root: &Path, count: usize) -> Vec<PathBuf> {
        (0..count)
            .map(|n| {
                // Long names, as snapshot paths are.
                let dir = root.join(format!("{n:064}")).join("fs");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join(format!("file{n}")), n.to_string()).unwrap();
                std::fs::write(dir.join("shared"), n.to_string()).unwrap();
                dir
            })
            .collect()
    }

    fn check_merged(merged: &Path, count: usize) {
        for n in 0..count {
            assert_eq!(
                std::fs::read_to_string(merged.join(format!("file{n}"))).unwrap(),
                n.to_string()
            );
        }
        assert_eq!(std::fs::read_to_string(merged.join("shared")).unwrap(), "0");
    }

    fn mount_both_ways(count: usize) {
        let dir = tempfile::tempdir().unwrap();
        let lower = layers(&dir.path().join("snapshots"), count);
        for way in ["mount", "mount(2)", "fsconfig lowerdir"] {
            let rootfs = dir.path().join(way);
            for sub in ["upper", "work", "merged"] {
                std::fs::create_dir_all(rootfs.join(sub)).unwrap();
            }
            let (upper, work) = (rootfs.join("upper"), rootfs.join("work"));
            let overlay = Overlay {
                lower: &lower,
                writable: Some((&upper, &work)),
                links: &rootfs.join("l"),
            };
            let merged = rootfs.join("merged");
            match way {
                "mount" => overlay.mount(&merged, None).unwrap(),
                "mount(2)" => overlay.mount_legacy(&merged).unwrap(),
                // What idmapped layers use where the kernel lacks lowerdir+.
                _ if count > MAX_SHORT_LAYERS => {
                    let e = overlay.mount_fsconfig(&merged, None, false).unwrap_err();
                    assert!(
                        e.to_string()
                            .contains(&format!("at most {MAX_SHORT_LAYERS}")),
                        "{e}"
                    );
                    continue;
                }
                _ => overlay.mount_fsconfig(&merged, None, false).unwrap(),
            }
            check_merged(&merged, count);
            nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
    }

    #[test]
    fn lowerdir_plus_is_probed_right() {
        let release = nix::sys::utsname::uname().unwrap();
        let release = release.release().to_string_lossy().to_string();
        let mut parts = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap(), parts.next().unwrap());
        assert_eq!(lowerdir_plus(), version >= (6, 8), "kernel {release}");
    }

    #[test]
    fn many_layers_mount_both_ways() {
        mount_both_ways(125);
    }

    #[test]
    fn a_hundred_layers_mount_every_way() {
        mount_both_ways(100);
    }

    /// Four long layer paths overflow one fsconfig() value (255 bytes).
    #[test]
    fn few_layers_mount_both_ways() {
        mount_both_ways(4);
    }

    #[test]
    fn short_names_are_unique_and_short() {
        let names: Vec<String> = (0..MAX_SHORT_LAYERS).map(short_name).collect();
        let unique: std::collections::HashSet<&String> = names.iter().collect();
        assert_eq!(unique.len(), names.len());
        assert_eq!((names[0].as_str(), names[61].as_str()), ("0", "Z"));
        assert_eq!((names[62].as_str(), names[104].as_str()), ("00", "0G"));
        assert!(names.join(":").len() <= MAX_FSCONFIG_VALUE);
        assert!(names.iter().all(|n| !n.contains([':', ','])));
    }

    #[test]
    fn without_upper_the_overlay_is_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let lower = layers(&dir.path().join("snapshots"), 3);
        let merged = dir.path().join("merged");
        std::fs::create_dir_all(&merged).unwrap();
        for legacy in [false, true] {
            let overlay = Overlay {
                lower: &lower,
                writable: None,
                links: &dir.path().join("l"),
            };
            if legacy {
                overlay.mount_legacy(&merged).unwrap();
            } else {
                overlay.mount(&merged, None).unwrap();
            }
            check_merged(&merged, 3);
            let err = std::fs::write(merged.join("new"), "x").unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
            nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
        }
    }

    #[test]
    fn more_than_overlayfs_stacks_is_refused() {
        let lower = vec![PathBuf::from("/nonexistent"); MAX_LOWER_LAYERS + 1];
        let overlay = Overlay {
            lower: &lower,
            writable: None,
            links: Path::new("/nonexistent"),
        };
        let err = overlay.mount(Path::new("/nonexistent"), None).unwrap_err();
        assert!(err.to_string().contains("at most 500"), "{err}");
    }
}
