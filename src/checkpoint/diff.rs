//! A running container's changes to its image: what its writable layer
//! (the overlay upper dir) holds, as `rootfs-diff.tar`, and the image's
//! files it removed (overlay whiteouts), as `deleted.files`.
//!
//! The container keeps running and owns that directory: it can swap any
//! entry for a symlink, a FIFO or another directory while we read. So the
//! walk goes from directory descriptor to directory descriptor, one name at
//! a time, never following a symlink (O_NOFOLLOW), opening files
//! non-blocking and taking only what fstat of the opened file says is a
//! regular file. Nothing it does can make us read outside the layer or
//! wait on it.

use std::collections::HashSet;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// What the walk found besides the tar's entries.
#[derive(Debug, Default)]
pub struct Changes {
    /// Paths (from `/`) of image files the container removed.
    pub deleted: Vec<String>,
    /// Entries put in the tar.
    pub entries: usize,
}

/// Writes the changes in `upper` to `out` as a tar (paths relative to the
/// container's root). `skip` holds paths (from `/`) that are mount points
/// of the container, whose stubs in the layer are not its changes.
pub fn write<W: Write>(upper: &File, skip: &HashSet<String>, out: W) -> std::io::Result<Changes> {
    let mut builder = tar::Builder::new(out);
    builder.mode(tar::HeaderMode::Complete);
    let mut changes = Changes::default();
    let top = dup(upper)?;
    walk(&top, "", skip, &mut builder, &mut changes)?;
    builder.finish()?;
    changes.deleted.sort();
    Ok(changes)
}

fn walk<W: Write>(
    dir: &OwnedFd,
    rel: &str,
    skip: &HashSet<String>,
    tar: &mut tar::Builder<W>,
    changes: &mut Changes,
) -> std::io::Result<()> {
    let mut names: Vec<OsString> = std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
        .flatten()
        .map(|entry| entry.file_name())
        .collect();
    names.sort();
    for name in names {
        let Some(name_str) = name.to_str() else {
            // Tar paths here are UTF-8, as checkpointctl reads them.
            tracing::warn!(
                ?name,
                "checkpoint: a name that is not UTF-8 left out of the rootfs diff"
            );
            continue;
        };
        let path = if rel.is_empty() {
            name_str.to_string()
        } else {
            format!("{rel}/{name_str}")
        };
        if skip.contains(&format!("/{path}")) {
            continue;
        }
        let Some(stat) = stat_at(dir, &name)? else {
            continue; // gone meanwhile
        };
        let kind = stat.st_mode & libc::S_IFMT;
        let mut header = tar::Header::new_gnu();
        header.set_mode(stat.st_mode & 0o7777);
        header.set_uid(u64::from(stat.st_uid));
        header.set_gid(u64::from(stat.st_gid));
        header.set_mtime(stat.st_mtime.max(0) as u64);
        header.set_size(0);
        match kind {
            libc::S_IFCHR if stat.st_rdev == 0 => {
                changes.deleted.push(format!("/{path}"));
            }
            libc::S_IFDIR => {
                let Some(child) = open_at(dir, &name, libc::O_DIRECTORY)? else {
                    continue;
                };
                header.set_entry_type(tar::EntryType::Directory);
                tar.append_data(&mut header, format!("{path}/"), std::io::empty())?;
                changes.entries += 1;
                walk(&child, &path, skip, tar, changes)?;
            }
            libc::S_IFREG => {
                let Some(file) = open_at(dir, &name, libc::O_RDONLY | libc::O_NONBLOCK)? else {
                    continue;
                };
                let file = File::from(file);
                let stat = file.metadata()?;
                if !stat.is_file() {
                    continue; // swapped for something else
                }
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(stat.len());
                // A file that shrinks while read is padded to the size in
                // its header, so the tar stays whole.
                let data = file
                    .take(stat.len())
                    .chain(std::io::repeat(0))
                    .take(stat.len());
                tar.append_data(&mut header, &path, data)?;
                changes.entries += 1;
            }
            libc::S_IFLNK => {
                let Some(target) = read_link_at(dir, &name)? else {
                    continue;
                };
                header.set_entry_type(tar::EntryType::Symlink);
                tar.append_link(&mut header, &path, OsStr::from_bytes(&target))?;
                changes.entries += 1;
            }
            libc::S_IFIFO | libc::S_IFCHR | libc::S_IFBLK => {
                header.set_entry_type(match kind {
                    libc::S_IFIFO => tar::EntryType::Fifo,
                    libc::S_IFCHR => tar::EntryType::Char,
                    _ => tar::EntryType::Block,
                });
                header.set_device_major(libc::major(stat.st_rdev))?;
                header.set_device_minor(libc::minor(stat.st_rdev))?;
                tar.append_data(&mut header, &path, std::io::empty())?;
                changes.entries += 1;
            }
            // Sockets live only while their process does.
            _ => {}
        }
    }
    Ok(())
}

fn dup(file: &File) -> std::io::Result<OwnedFd> {
    file.try_clone().map(OwnedFd::from)
}

fn c_name(name: &OsStr) -> std::io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))
}

/// Errors that mean the entry changed under us: it is left out.
fn vanished(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::ENXIO)
    )
}

fn stat_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Option<libc::stat>> {
    let name = c_name(name)?;
    // SAFETY: a valid dirfd and NUL-terminated name; stat is written by
    // the kernel.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstatat(
            dir.as_raw_fd(),
            name.as_ptr(),
            &mut stat,
            libc::AT_SYMLINK_NOFOLLOW,
        ) < 0
        {
            let e = std::io::Error::last_os_error();
            return if vanished(&e) { Ok(None) } else { Err(e) };
        }
        Ok(Some(stat))
    }
}

fn open_at(dir: &OwnedFd, name: &OsStr, flags: libc::c_int) -> std::io::Result<Option<OwnedFd>> {
    let name = c_name(name)?;
    // SAFETY: a valid dirfd and NUL-terminated name; the fd returned is ours.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        return if vanished(&e) { Ok(None) } else { Err(e) };
    }
    // SAFETY: openat returned a new fd.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

fn read_link_at(dir: &OwnedFd, name: &OsStr) -> std::io::Result<Option<Vec<u8>>> {
    let name = c_name(name)?;
    let mut buffer = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: a valid dirfd, NUL-terminated name and a buffer of the size
    // passed.
    let n = unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buffer.as_mut_ptr().cast(),
            buffer.len(),
        )
    };
    if n < 0 {
        let e = std::io::Error::last_os_error();
        return if vanished(&e) || e.raw_os_error() == Some(libc::EINVAL) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buffer.truncate(n as usize);
    Ok(Some(buffer))
}

/// Undoes `write` onto a new container's empty writable layer: unpacks the
/// tar (through the image unpacker, which keeps every entry inside `upper`)
/// and turns each deleted path into an overlay whiteout.
pub fn apply(upper: &std::path::Path, tar: Option<File>, deleted: &[String]) -> Result<(), String> {
    if let Some(tar) = tar {
        crate::image::unpack::unpack(tar, upper).map_err(|e| format!("rootfs-diff.tar: {e}"))?;
    }
    let root = File::open(upper).map_err(|e| format!("{}: {e}", upper.display()))?;
    for path in deleted {
        let relative = path.trim_start_matches('/');
        if relative.is_empty()
            || relative
                .split('/')
                .any(|c| c == ".." || c == "." || c.is_empty())
        {
            return Err(format!("deleted.files: {path:?} is not a clean path"));
        }
        let (parent, name) = match relative.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", relative),
        };
        let dir = if parent.is_empty() {
            dup(&root).map_err(|e| e.to_string())?
        } else {
            // Parents the diff did not bring are made, as overlay would.
            make_dirs(&root, parent)?
        };
        let name = c_name(OsStr::new(name)).map_err(|e| e.to_string())?;
        // SAFETY: a valid dirfd and NUL-terminated name.
        let made = unsafe { libc::mknodat(dir.as_raw_fd(), name.as_ptr(), libc::S_IFCHR, 0) };
        if made < 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(format!("whiteout for {path}: {e}"));
            }
        }
    }
    Ok(())
}

/// `parent` below `root`, made where missing, never through a symlink.
fn make_dirs(root: &File, parent: &str) -> Result<OwnedFd, String> {
    let mut dir = dup(root).map_err(|e| e.to_string())?;
    for component in parent.split('/') {
        let name = OsString::from_vec(component.as_bytes().to_vec());
        let c = c_name(&name).map_err(|e| e.to_string())?;
        // SAFETY: a valid dirfd and NUL-terminated name.
        unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o755) };
        dir = open_at(&dir, &name, libc::O_DIRECTORY)
            .map_err(|e| format!("{parent}: {e}"))?
            .ok_or_else(|| format!("{parent}: not a directory"))?;
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    fn whiteout(path: &std::path::Path) {
        let c = CString::new(path.as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR, 0) }, 0);
    }

    #[test]
    fn changes_round_trip_and_links_are_not_followed() {
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        std::fs::create_dir_all(u.join("data/sub")).unwrap();
        std::fs::write(u.join("data/sub/counter"), b"41\n").unwrap();
        symlink("/etc/shadow", u.join("data/escape")).unwrap();
        symlink("/", u.join("hostroot")).unwrap();
        whiteout(&u.join("data/gone"));
        std::fs::write(u.join("etc-hosts-stub"), b"").unwrap();
        let skip = HashSet::from(["/etc-hosts-stub".to_string()]);

        let mut tar_bytes = Vec::new();
        let changes = write(&File::open(u).unwrap(), &skip, &mut tar_bytes).unwrap();
        assert_eq!(changes.deleted, vec!["/data/gone".to_string()]);

        let mut names: Vec<String> = tar::Archive::new(&tar_bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "data/",
                "data/escape",
                "data/sub/",
                "data/sub/counter",
                "hostroot"
            ]
        );

        // Onto a new layer: the same files, the links as links, and the
        // deletion as a whiteout.
        let restored = tempfile::tempdir().unwrap();
        let tar_file = tempfile::tempfile().unwrap();
        (&tar_file).write_all(&tar_bytes).unwrap();
        let mut tar_file = tar_file;
        std::io::Seek::rewind(&mut tar_file).unwrap();
        apply(restored.path(), Some(tar_file), &changes.deleted).unwrap();
        let r = restored.path();
        assert_eq!(std::fs::read(r.join("data/sub/counter")).unwrap(), b"41\n");
        assert_eq!(
            std::fs::read_link(r.join("data/escape"))
                .unwrap()
                .as_os_str(),
            "/etc/shadow"
        );
        let gone = std::fs::symlink_metadata(r.join("data/gone")).unwrap();
        assert_eq!(
            (gone.mode() & libc::S_IFMT, gone.rdev()),
            (libc::S_IFCHR, 0)
        );
        assert!(apply(r, None, &["/../outside".into()]).is_err());
    }

    #[test]
    fn fifos_are_recorded_not_opened() {
        let upper = tempfile::tempdir().unwrap();
        let fifo = CString::new(upper.path().join("pipe").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let mut tar_bytes = Vec::new();
        // Would block for good if the FIFO were opened for its data.
        write(
            &File::open(upper.path()).unwrap(),
            &HashSet::new(),
            &mut tar_bytes,
        )
        .unwrap();
        let entry_types: Vec<tar::EntryType> = tar::Archive::new(&tar_bytes[..])
            .entries()
            .unwrap()
            .map(|e| e.unwrap().header().entry_type())
            .collect();
        assert_eq!(entry_types, [tar::EntryType::Fifo]);
    }
}
