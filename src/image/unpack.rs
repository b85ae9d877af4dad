//! Unpacking a layer tarball into its own snapshot directory, in overlayfs
//! format.
//!
//! Invariants:
//! - Nothing outside `dest` is touched. Entry names are taken relative to
//!   the layer root, as tar and the peers take them (`/etc/passwd` is
//!   `etc/passwd`; `/` and `./` are the root itself, whose mode, owner and
//!   time apply to `dest`). A `..` that would climb above the root is refused,
//!   and so is any entry whose parent path passes through a symlink (each
//!   ancestor is checked with lstat; `dest` is ours alone while unpacking, so
//!   the check cannot race). Names are resolved lexically, never through the
//!   filesystem.
//! - A stream may end right after an entry's data, without the padding of its
//!   last block or the end-of-archive blocks (umoci writes such layers, and
//!   Go's archive/tar, which containerd and CRI-O use, reads them). A stream
//!   that ends inside a header or inside an entry's data is refused: the
//!   layer's digests say the blob is what was published, not that it is a
//!   whole archive. Whatever follows an end-of-archive block is ignored (it
//!   still counts in the diff ID).
//! - OCI whiteouts become overlay whiteouts: `.wh.<name>` is a 0/0 character
//!   device `<name>`; `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its
//!   directory. Images cannot set `trusted.overlay.*` themselves.
//! - Owners, modes (incl. setuid), mtimes, xattrs, hard and symbolic links,
//!   devices and fifos are kept.

use crate::image::manifest::Compression;
use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::sys::stat::{Mode, SFlag, UtimensatFlags, mknod, utimensat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchownat};
use sha2::{Digest, Sha256};
use std::cell::Cell;
use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::rc::Rc;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} is refused: {reason}")]
    Refused { entry: String, reason: String },
    #[error("layer entry {entry:?}: {source}")]
    Io {
        entry: String,
        source: std::io::Error,
    },
    #[error("layer is not a valid tar stream: {0}")]
    Tar(std::io::Error),
}

/// What a layer occupies once unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Decompresses a layer stream.
pub fn decompress<'a, R: Read + 'a>(
    reader: R,
    compression: Compression,
) -> std::io::Result<Box<dyn Read + 'a>> {
    Ok(match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(reader)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(reader)?),
    })
}

/// A reader that hashes what passes through it (the layer's diff ID).
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
        }
    }

    /// Reads to the end (tar padding after the last entry counts) and returns
    /// the digest.
    pub fn finish(mut self) -> std::io::Result<String> {
        std::io::copy(&mut self, &mut std::io::sink())?;
        Ok(format!("sha256:{}", hex::encode(self.hasher.finalize())))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Supplies the padding of the last entry's final block when the stream
/// ends without it, and nothing else: zeros come only once the current
/// entry's data has been read in full (`data_end`, set by [`unpack`] for
/// each entry), up to the next 512-byte boundary. tar-rs wants that padding
/// even where nothing follows; at a block boundary it already takes the end
/// of the stream as the end of the archive.
struct PaddedEnd<R> {
    inner: R,
    pos: u64,
    data_end: Rc<Cell<u64>>,
}

impl<R: Read> Read for PaddedEnd<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 || buf.is_empty() {
            self.pos += n as u64;
            return Ok(n);
        }
        let end = self.data_end.get();
        let block_end = end.div_ceil(512) * 512;
        if self.pos < end || self.pos >= block_end {
            return Ok(0);
        }
        let k = ((block_end - self.pos) as usize).min(buf.len());
        buf[..k].fill(0);
        self.pos += k as u64;
        Ok(k)
    }
}

/// Unpacks the tar stream `reader` into the empty directory `dest`.
pub fn unpack<R: Read>(reader: R, dest: &Path) -> Result<Usage, UnpackError> {
    let data_end = Rc::new(Cell::new(0));
    let mut archive = tar::Archive::new(PaddedEnd {
        inner: reader,
        pos: 0,
        data_end: data_end.clone(),
    });
    let mut usage = Usage::default();
    // Directory mtimes are set last: creating children changes them.
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(cut_short)?;
        // A PAX size overrides the header's; for sparse files this is the
        // real size, larger than what is stored, so the end is only stricter.
        data_end.set(entry.raw_file_position() + entry.size());
        let raw = entry.path().map_err(UnpackError::Tar)?.into_owned();
        let name = raw.display().to_string();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader
        ) {
            continue;
        }
        let Some(rel) = clean_path(&raw).map_err(|reason| refused(&name, reason))? else {
            set_root_metadata(&mut entry, dest).map_err(|e| match e {
                Err(reason) => refused(&name, reason),
                Ok(source) => UnpackError::Io {
                    entry: name.clone(),
                    source,
                },
            })?;
            // Children change the root's mtime: set it again at the end.
            dir_times.push((dest.to_path_buf(), entry.header().mtime().unwrap_or(0)));
            continue;
        };
        let (parent, file_name) = match (rel.parent(), rel.file_name()) {
            (Some(p), Some(f)) => (p.to_path_buf(), f.to_string_lossy().into_owned()),
            _ => return Err(refused(&name, "no file name".into())),
        };
        ensure_parent(dest, &parent, &name)?;
        let parent_abs = dest.join(&parent);
        let ioerr = |source| UnpackError::Io {
            entry: name.clone(),
            source,
        };

        if file_name == OPAQUE_MARKER {
            set_xattr(&parent_abs, OPAQUE_XATTR, b"y").map_err(ioerr)?;
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(WHITEOUT_PREFIX) {
            if hidden.is_empty() || hidden == "." || hidden == ".." {
                return Err(refused(&name, "whiteout names nothing".into()));
            }
            let target = parent_abs.join(hidden);
            remove_existing(&target).map_err(ioerr)?;
            mknod(&target, SFlag::S_IFCHR, Mode::empty(), 0).map_err(|e| ioerr(e.into()))?;
            usage.inodes += 1;
            continue;
        }

        let path = dest.join(&rel);
        let header = entry.header().clone();
        let mode = header.mode().map_err(UnpackError::Tar)? & 0o7777;
        // Empty numeric fields mean 0, as Go's archive/tar (which built most
        // layers) reads them.
        let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
        let mtime = header.mtime().unwrap_or(0);
        let xattrs = pax_xattrs(&mut entry);
        let existing = std::fs::symlink_metadata(&path).ok();
        if !(kind == tar::EntryType::Directory && existing.as_ref().is_some_and(|m| m.is_dir()))
            && existing.is_some()
        {
            remove_existing(&path).map_err(ioerr)?;
        }
        match kind {
            tar::EntryType::Directory => {
                if existing.as_ref().is_none_or(|m| !m.is_dir()) {
                    std::fs::create_dir(&path).map_err(ioerr)?;
                    usage.inodes += 1;
                }
                dir_times.push((path.clone(), mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(&path)
                    .map_err(ioerr)?;
                let written = std::io::copy(&mut entry, &mut file).map_err(ioerr)?;
                if written < entry.size() {
                    return Err(UnpackError::Tar(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!(
                            "the stream ends inside {name:?} ({written} of {} bytes)",
                            entry.size()
                        ),
                    )));
                }
                usage.bytes += written;
                usage.inodes += 1;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| refused(&name, "symlink without target".into()))?;
                std::os::unix::fs::symlink(&target, &path).map_err(ioerr)?;
                usage.inodes += 1;
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(UnpackError::Tar)?
                    .ok_or_else(|| refused(&name, "hard link without target".into()))?;
                let target_rel = clean_path(&target)
                    .map_err(|reason| refused(&name, format!("hard link target: {reason}")))?
                    .ok_or_else(|| refused(&name, "hard link to the layer root".into()))?;
                check_no_symlink_ancestors(
                    dest,
                    target_rel.parent().unwrap_or(Path::new("")),
                    &name,
                )?;
                let target_abs = dest.join(&target_rel);
                match std::fs::symlink_metadata(&target_abs) {
                    Ok(m) if !m.is_dir() => {}
                    _ => {
                        return Err(refused(
                            &name,
                            format!(
                                "hard link target {} is not a file in this layer",
                                target_rel.display()
                            ),
                        ));
                    }
                }
                std::fs::hard_link(&target_abs, &path).map_err(ioerr)?;
                // A hard link shares its target's inode and metadata.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let (flag, dev) = match kind {
                    tar::EntryType::Fifo => (SFlag::S_IFIFO, 0),
                    _ => {
                        let major = header.device_major().ok().flatten().unwrap_or(0);
                        let minor = header.device_minor().ok().flatten().unwrap_or(0);
                        let flag = if kind == tar::EntryType::Char {
                            SFlag::S_IFCHR
                        } else {
                            SFlag::S_IFBLK
                        };
                        (flag, libc::makedev(major, minor))
                    }
                };
                mknod(&path, flag, Mode::from_bits_truncate(mode), dev)
                    .map_err(|e| ioerr(e.into()))?;
                usage.inodes += 1;
            }
            _ => {
                tracing::debug!(entry = %name, ?kind, "skipping unsupported tar entry type");
                continue;
            }
        }
        let is_symlink = kind == tar::EntryType::Symlink;
        fchownat(
            AT_FDCWD,
            &path,
            Some(Uid::from_raw(uid as u32)),
            Some(Gid::from_raw(gid as u32)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| ioerr(e.into()))?;
        if !is_symlink {
            // After chown, which clears setuid/setgid bits.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(ioerr)?;
        }
        for (key, value) in &xattrs {
            if key.starts_with("trusted.overlay.") {
                continue; // only crius decides what is opaque or a whiteout
            }
            if let Err(e) = set_xattr(&path, key, value) {
                // Filesystems without user/security xattrs: keep going, say so.
                tracing::debug!(entry = %name, xattr = %key, error = %e, "xattr not kept");
            }
        }
        if kind != tar::EntryType::Directory {
            set_mtime(&path, mtime).map_err(ioerr)?;
        }
    }
    for (dir, mtime) in dir_times.iter().rev() {
        set_mtime(dir, *mtime).map_err(|source| UnpackError::Io {
            entry: dir.display().to_string(),
            source,
        })?;
    }
    Ok(usage)
}

fn refused(entry: &str, reason: String) -> UnpackError {
    UnpackError::Refused {
        entry: entry.to_string(),
        reason,
    }
}

/// A tar error, worded for a stream that stops inside a header or an
/// entry's data (the only way tar-rs sees an early end).
fn cut_short(e: std::io::Error) -> UnpackError {
    let text = e.to_string();
    if e.kind() == std::io::ErrorKind::UnexpectedEof
        || text.contains("entire block")
        || text.contains("EOF")
    {
        UnpackError::Tar(std::io::Error::new(
            e.kind(),
            format!("the stream ends inside an entry ({e})"),
        ))
    } else {
        UnpackError::Tar(e)
    }
}

/// The entry path relative to the layer root, resolved lexically (a leading
/// `/` is the root, as for tar); `None` for the root itself.
fn clean_path(raw: &Path) -> Result<Option<PathBuf>, String> {
    let mut out = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::CurDir | Component::RootDir | Component::Prefix(_) => {}
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                if !out.pop() {
                    return Err("its path climbs above the layer root with '..'".into());
                }
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

/// Applies the root entry's (`/`, `./`) owner and mode to `dest`. The error
/// is `Err(reason)` for a refusal, `Ok(io)` for a failure.
fn set_root_metadata<R: Read>(
    entry: &mut tar::Entry<R>,
    dest: &Path,
) -> Result<(), Result<std::io::Error, String>> {
    let header = entry.header();
    if header.entry_type() != tar::EntryType::Directory {
        return Err(Err("the layer root can only be a directory".into()));
    }
    let mode = header.mode().map_err(Ok)? & 0o7777;
    let (uid, gid) = (header.uid().unwrap_or(0), header.gid().unwrap_or(0));
    fchownat(
        AT_FDCWD,
        dest,
        Some(Uid::from_raw(uid as u32)),
        Some(Gid::from_raw(gid as u32)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
    .map_err(|e| Ok(e.into()))?;
    std::fs::set_permissions(dest, std::fs::Permissions::from_mode(mode)).map_err(Ok)
}

/// Creates missing parent directories (0755, root-owned, as Docker does) and
/// refuses parents that are symlinks or not directories.
fn ensure_parent(dest: &Path, parent: &Path, entry: &str) -> Result<(), UnpackError> {
    let mut current = dest.to_path_buf();
    for component in parent.components() {
        current.push(component);
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refused(
                    entry,
                    format!(
                        "it would be written through the symlink {}",
                        display_rel(dest, &current)
                    ),
                ));
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(refused(
                    entry,
                    format!("{} is not a directory", display_rel(dest, &current)),
                ));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&current).map_err(|source| UnpackError::Io {
                    entry: entry.to_string(),
                    source,
                })?;
            }
            Err(source) => {
                return Err(UnpackError::Io {
                    entry: entry.to_string(),
                    source,
                });
            }
        }
    }
    Ok(())
}

fn check_no_symlink_ancestors(dest: &Path, rel: &Path, entry: &str) -> Result<(), UnpackError> {
    let mut current = dest.to_path_buf();
    for component in rel.components() {
        current.push(component);
        if std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(refused(
                entry,
                format!(
                    "its target passes through the symlink {}",
                    display_rel(dest, &current)
                ),
            ));
        }
    }
    Ok(())
}

fn display_rel(dest: &Path, path: &Path) -> String {
    path.strip_prefix(dest)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Removes what a later entry replaces within the same layer.
fn remove_existing(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

fn pax_xattrs<R: Read>(entry: &mut tar::Entry<R>) -> Vec<(String, Vec<u8>)> {
    let Ok(Some(extensions)) = entry.pax_extensions() else {
        return Vec::new();
    };
    extensions
        .filter_map(Result::ok)
        .filter_map(|ext| {
            let key = ext.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string();
            Some((key, ext.value_bytes().to_vec()))
        })
        .collect()
}

fn set_xattr(path: &Path, key: &str, value: &[u8]) -> std::io::Result<()> {
    let c_path = CString::new(path.as_os_str().as_bytes())?;
    let c_key = CString::new(key)?;
    // SAFETY: valid NUL-terminated strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            c_path.as_ptr(),
            c_key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

fn set_mtime(path: &Path, mtime: u64) -> std::io::Result<()> {
    let t = TimeSpec::new(mtime as i64, 0);
    utimensat(AT_FDCWD, path, &t, &t, UtimensatFlags::NoFollowSymlink).map_err(Into::into)
}

/// Opens a stored layer blob for unpacking.
pub fn open_blob(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};

    /// One tar entry written byte by byte, so hostile names survive.
    fn raw(name: &str, kind: u8, link: &str, data: &[u8], mode: u32) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |v: u64, width: usize| format!("{v:0w$o}\0", w = width - 1).into_bytes();
        h[100..108].copy_from_slice(&octal(mode as u64, 8));
        h[108..116].copy_from_slice(&octal(0, 8));
        h[116..124].copy_from_slice(&octal(0, 8));
        h[124..136].copy_from_slice(&octal(data.len() as u64, 12));
        h[136..148].copy_from_slice(&octal(1_600_000_000, 12));
        h[156] = kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|&b| b as u32).sum();
        h[148..156].copy_from_slice(&format!("{sum:06o}\0 ").into_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn tar(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn unpack_into(entries: &[Vec<u8>]) -> (tempfile::TempDir, Result<Usage, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("fs")).unwrap();
        let result = unpack(tar(entries).as_slice(), &dir.path().join("fs"));
        (dir, result)
    }

    #[test]
    fn files_links_devices_and_metadata() {
        let (dir, result) = unpack_into(&[
            raw("./", b'5', "", b"", 0o755),
            raw("etc/", b'5', "", b"", 0o755),
            raw("etc/passwd", b'0', "", b"root:x:0:0\n", 0o644),
            raw("bin/su", b'0', "", b"#!", 0o4755),
            raw("etc/hard", b'1', "etc/passwd", b"", 0o644),
            raw("etc/soft", b'2', "/etc/passwd", b"", 0o777),
            raw("dev/null", b'3', "", b"", 0o666),
            raw("run/fifo", b'6', "", b"", 0o600),
        ]);
        let usage = result.unwrap();
        let fs = dir.path().join("fs");
        assert_eq!(
            std::fs::read(fs.join("etc/passwd")).unwrap(),
            b"root:x:0:0\n"
        );
        assert_eq!(
            std::fs::metadata(fs.join("bin/su")).unwrap().mode() & 0o7777,
            0o4755
        );
        assert_eq!(
            std::fs::metadata(fs.join("etc/hard")).unwrap().ino(),
            std::fs::metadata(fs.join("etc/passwd")).unwrap().ino()
        );
        assert_eq!(
            std::fs::read_link(fs.join("etc/soft")).unwrap(),
            Path::new("/etc/passwd")
        );
        assert!(
            std::fs::symlink_metadata(fs.join("dev/null"))
                .unwrap()
                .file_type()
                .is_char_device()
        );
        assert!(
            std::fs::symlink_metadata(fs.join("run/fifo"))
                .unwrap()
                .file_type()
                .is_fifo()
        );
        assert_eq!(
            std::fs::metadata(fs.join("etc")).unwrap().mtime(),
            1_600_000_000,
            "dir mtime kept after children"
        );
        assert_eq!(usage.bytes, 13);
    }

    #[test]
    fn whiteouts_become_overlay_whiteouts() {
        let (dir, result) = unpack_into(&[
            raw("data/.wh.gone.txt", b'0', "", b"", 0o644),
            raw("opaque/.wh..wh..opq", b'0', "", b"", 0o644),
            raw("opaque/new.txt", b'0', "", b"n", 0o644),
        ]);
        result.unwrap();
        let fs = dir.path().join("fs");
        let meta = std::fs::symlink_metadata(fs.join("data/gone.txt")).unwrap();
        assert!(meta.file_type().is_char_device() && meta.rdev() == 0);
        assert!(!fs.join("data/.wh.gone.txt").exists());
        let mut buf = [0u8; 4];
        let c_path = CString::new(fs.join("opaque").as_os_str().as_bytes()).unwrap();
        let c_key = CString::new(OPAQUE_XATTR).unwrap();
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_key.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(&buf[..n as usize], b"y");
    }

    #[test]
    fn escapes_are_refused_and_touch_nothing_outside() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        let cases: Vec<(Vec<Vec<u8>>, &str)> = vec![
            (vec![raw("../evil", b'0', "", b"x", 0o644)], "'..'"),
            (vec![raw("a/../../evil", b'0', "", b"x", 0o644)], "'..'"),
            (vec![raw("/../evil", b'0', "", b"x", 0o644)], "'..'"),
            (
                vec![
                    raw("link", b'2', outside.path().to_str().unwrap(), b"", 0o777),
                    raw("link/victim", b'0', "", b"pwned", 0o644),
                ],
                "symlink link",
            ),
            (
                vec![
                    raw("link", b'2', outside.path().to_str().unwrap(), b"", 0o777),
                    raw("h", b'1', "link/victim", b"", 0o644),
                ],
                "symlink link",
            ),
            (vec![raw("h", b'1', "../../etc/passwd", b"", 0o644)], "'..'"),
            (
                vec![raw("h", b'1', "missing", b"", 0o644)],
                "not a file in this layer",
            ),
        ];
        for (entries, expected) in cases {
            let (_dir, result) = unpack_into(&entries);
            let err = result.unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
            assert!(!victim.exists(), "nothing written outside");
        }
    }

    #[test]
    fn images_cannot_set_overlay_xattrs_and_diff_id_is_hashed() {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append_pax_extensions([
                ("SCHILY.xattr.trusted.overlay.opaque", b"y".as_slice()),
                ("SCHILY.xattr.user.k", b"v"),
            ])
            .unwrap();
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        builder
            .append_data(&mut header, "d/", std::io::empty())
            .unwrap();
        let bytes = builder.into_inner().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut reader = HashingReader::new(bytes.as_slice());
        unpack(&mut reader, dir.path()).unwrap();
        assert_eq!(
            reader.finish().unwrap(),
            format!("sha256:{}", hex::encode(Sha256::digest(&bytes)))
        );
        let c_path = CString::new(dir.path().join("d").as_os_str().as_bytes()).unwrap();
        let key = CString::new(OPAQUE_XATTR).unwrap();
        let n = unsafe { libc::lgetxattr(c_path.as_ptr(), key.as_ptr(), std::ptr::null_mut(), 0) };
        assert!(n < 0, "trusted.overlay.opaque from the image is dropped");
    }

    /// One entry's header and data without the padding of its last block.
    fn unpadded(name: &str, data: &[u8]) -> Vec<u8> {
        let mut entry = raw(name, b'0', "", data, 0o644);
        entry.truncate(512 + data.len());
        entry
    }

    fn unpack_bytes(bytes: &[u8]) -> (tempfile::TempDir, Result<Usage, UnpackError>) {
        let dir = tempfile::tempdir().unwrap();
        let result = unpack(bytes, dir.path());
        (dir, result)
    }

    #[test]
    fn absolute_names_are_relative_to_the_root_and_root_metadata_applies() {
        let mut root = raw("/", b'5', "", b"", 0o711);
        // mtime 1_500_000_000 for the root, distinct from its children's.
        root[136..148].copy_from_slice(format!("{:011o}\0", 1_500_000_000u64).as_bytes());
        root[148..156].copy_from_slice(b"        ");
        let sum: u32 = root[..512].iter().map(|&b| b as u32).sum();
        root[148..156].copy_from_slice(&format!("{sum:06o}\0 ").into_bytes());
        let (dir, result) = unpack_into(&[
            root,
            raw("/etc/", b'5', "", b"", 0o755),
            raw("/etc/passwd", b'0', "", b"root:x:0:0\n", 0o644),
            raw("/etc/hard", b'1', "/etc/passwd", b"", 0o644),
            raw("/etc/../tmp/x", b'0', "", b"x", 0o644),
        ]);
        result.unwrap();
        let fs = dir.path().join("fs");
        assert_eq!(
            std::fs::read(fs.join("etc/passwd")).unwrap(),
            b"root:x:0:0\n"
        );
        assert_eq!(std::fs::read(fs.join("tmp/x")).unwrap(), b"x");
        assert_eq!(
            std::fs::metadata(fs.join("etc/hard")).unwrap().ino(),
            std::fs::metadata(fs.join("etc/passwd")).unwrap().ino()
        );
        let meta = std::fs::metadata(&fs).unwrap();
        assert_eq!(meta.mode() & 0o7777, 0o711, "the root entry's mode");
        assert_eq!(meta.mtime(), 1_500_000_000, "the root entry's mtime");
        let (_dir, result) = unpack_into(&[raw("/", b'0', "", b"x", 0o644)]);
        assert!(
            result
                .unwrap_err()
                .to_string()
                .contains("only be a directory"),
            "a root that is a file is refused"
        );
    }

    #[test]
    fn stream_ending_at_an_entry_boundary_is_a_whole_layer() {
        let first = raw("a", b'0', "", b"first", 0o644);
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "no padding, no end blocks",
                [first.clone(), unpadded("b", b"last")].concat(),
            ),
            (
                "padding, no end blocks",
                [first.clone(), raw("b", b'0', "", b"last", 0o644)].concat(),
            ),
            (
                "one of two end blocks",
                [
                    first.clone(),
                    raw("b", b'0', "", b"last", 0o644),
                    vec![0; 512],
                ]
                .concat(),
            ),
            (
                "garbage after the end blocks",
                [
                    first.clone(),
                    raw("b", b'0', "", b"last", 0o644),
                    vec![0; 1024],
                    vec![0xab; 700],
                ]
                .concat(),
            ),
            (
                "last entry's data fills its block exactly",
                [first.clone(), unpadded("b", &[b'z'; 512])].concat(),
            ),
            (
                "empty last entry",
                [first.clone(), raw("b", b'5', "", b"", 0o755)].concat(),
            ),
        ];
        for (case, bytes) in cases {
            let (dir, result) = unpack_bytes(&bytes);
            let usage = result.unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(
                std::fs::read(dir.path().join("a")).unwrap(),
                b"first",
                "{case}"
            );
            assert!(dir.path().join("b").exists(), "{case}");
            assert!(usage.inodes >= 2, "{case}");
        }
    }

    #[test]
    fn stream_ending_inside_an_entry_is_refused() {
        let first = raw("a", b'0', "", b"first", 0o644);
        let mut cut_in_data = unpadded("b", &[b'z'; 1000]);
        cut_in_data.truncate(512 + 700);
        let mut cut_in_last_block = unpadded("b", &[b'z'; 100]);
        cut_in_last_block.truncate(512 + 60);
        let mut cut_in_header = raw("b", b'0', "", b"x", 0o644);
        cut_in_header.truncate(300);
        for (case, tail) in [
            ("inside the data", cut_in_data),
            ("inside the last block's data", cut_in_last_block),
            ("inside a header", cut_in_header),
        ] {
            let (_dir, result) = unpack_bytes(&[first.clone(), tail].concat());
            let err = result.expect_err(case);
            assert!(matches!(err, UnpackError::Tar(_)), "{case}: {err}");
            assert!(err.to_string().contains("ends inside"), "{case}: {err}");
        }
    }

    #[test]
    fn garbage_is_a_tar_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = unpack(&[7u8; 600][..], dir.path()).unwrap_err();
        assert!(matches!(err, UnpackError::Tar(_)), "{err}");
    }
}
