//! Layer tarballs built entry by entry, compressed like registries serve them.
//!
//! Entries are written in the order given with fixed timestamps, so the same
//! inputs always give the same digests.

use sha2::{Digest, Sha256};
use std::io::Write;

/// Timestamp of every entry unless one is given (2023-11-14T22:13:20Z).
pub const MTIME: u64 = 1_700_000_000;

/// A blob ready to push: bytes, digest, media type.
#[derive(Clone)]
pub struct Blob {
    pub media_type: String,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(media_type: &str, bytes: Vec<u8>) -> Blob {
        Blob {
            media_type: media_type.to_string(),
            digest: sha256_digest(&bytes),
            bytes,
        }
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// The OCI descriptor of this blob.
    pub fn descriptor(&self) -> serde_json::Value {
        serde_json::json!({"mediaType": self.media_type, "digest": self.digest, "size": self.size()})
    }
}

pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

/// A layer being assembled.
#[derive(Default)]
pub struct Layer {
    entries: Vec<Entry>,
}

struct Entry {
    path: String,
    kind: Kind,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Hardlink(String),
    CharDevice(u32, u32),
}

impl Layer {
    pub fn new() -> Layer {
        Layer::default()
    }

    fn push(&mut self, path: &str, kind: Kind, mode: u32) -> &mut Entry {
        self.entries.push(Entry {
            path: path.trim_start_matches('/').to_string(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: MTIME,
            xattrs: Vec::new(),
        });
        self.entries.last_mut().unwrap()
    }

    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.push(path, Kind::Dir, mode);
        self
    }

    pub fn file(&mut self, path: &str, mode: u32, data: impl Into<Vec<u8>>) -> &mut Self {
        self.push(path, Kind::File(data.into()), mode);
        self
    }

    /// A file with owner, mtime and extended attributes set.
    pub fn file_with(
        &mut self,
        path: &str,
        mode: u32,
        data: &[u8],
        owner: (u64, u64),
        mtime: u64,
        xattrs: &[(&str, &[u8])],
    ) -> &mut Self {
        let entry = self.push(path, Kind::File(data.to_vec()), mode);
        (entry.uid, entry.gid, entry.mtime) = (owner.0, owner.1, mtime);
        entry.xattrs = xattrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_vec()))
            .collect();
        self
    }

    pub fn owned_dir(&mut self, path: &str, mode: u32, owner: (u64, u64)) -> &mut Self {
        let entry = self.push(path, Kind::Dir, mode);
        (entry.uid, entry.gid) = owner;
        self
    }

    pub fn symlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.push(path, Kind::Symlink(target.to_string()), 0o777);
        self
    }

    /// A hard link to `target`, a path within the image (without leading /).
    pub fn hardlink(&mut self, path: &str, target: &str) -> &mut Self {
        self.push(
            path,
            Kind::Hardlink(target.trim_start_matches('/').to_string()),
            0o755,
        );
        self
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) -> &mut Self {
        self.push(path, Kind::CharDevice(major, minor), mode);
        self
    }

    /// Deletes `path` from lower layers (OCI whiteout `.wh.<name>`).
    pub fn whiteout(&mut self, path: &str) -> &mut Self {
        let (dir, name) = path
            .trim_start_matches('/')
            .rsplit_once('/')
            .unwrap_or(("", path));
        let marker = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&marker, 0o644, Vec::new())
    }

    /// Hides everything lower layers put in directory `path` (opaque whiteout).
    pub fn opaque(&mut self, path: &str) -> &mut Self {
        let marker = format!(
            "{}/.wh..wh..opq",
            path.trim_start_matches('/').trim_end_matches('/')
        );
        self.file(&marker, 0o644, Vec::new())
    }

    /// The uncompressed tar.
    pub fn tar(&self) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            if !entry.xattrs.is_empty() {
                let pax: Vec<(String, &[u8])> = entry
                    .xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                    .collect();
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                    .expect("pax header");
            }
            let mut header = tar::Header::new_ustar();
            header.set_mode(entry.mode);
            header.set_uid(entry.uid);
            header.set_gid(entry.gid);
            header.set_mtime(entry.mtime);
            header.set_size(0);
            let mut path = entry.path.clone();
            let data: &[u8] = match &entry.kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    path.push('/');
                    &[]
                }
                Kind::File(data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    data
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_link_name(target).expect("link name");
                    &[]
                }
                Kind::Hardlink(target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_link_name(target).expect("link name");
                    &[]
                }
                Kind::CharDevice(major, minor) => {
                    header.set_entry_type(tar::EntryType::Char);
                    header.set_device_major(*major).expect("major");
                    header.set_device_minor(*minor).expect("minor");
                    &[]
                }
            };
            builder
                .append_data(&mut header, &path, data)
                .expect("tar entry");
        }
        builder.into_inner().expect("tar")
    }

    /// The compressed blob and the diff ID (digest of the uncompressed tar).
    pub fn build(&self, compression: Compression, docker: bool) -> (Blob, String) {
        let tar = self.tar();
        let diff_id = sha256_digest(&tar);
        let (bytes, media_type) = match (compression, docker) {
            (Compression::Gzip, false) => {
                (gzip(&tar), "application/vnd.oci.image.layer.v1.tar+gzip")
            }
            (Compression::Gzip, true) => (
                gzip(&tar),
                "application/vnd.docker.image.rootfs.diff.tar.gzip",
            ),
            (Compression::Zstd, _) => (
                zstd::encode_all(tar.as_slice(), 3).expect("zstd"),
                "application/vnd.oci.image.layer.v1.tar+zstd",
            ),
            (Compression::None, _) => (tar, "application/vnd.oci.image.layer.v1.tar"),
        };
        (Blob::new(media_type, bytes), diff_id)
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip");
    encoder.finish().expect("gzip")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_out_as_written() {
        let mut layer = Layer::new();
        layer
            .dir("/etc", 0o755)
            .file("/etc/a", 0o644, "A")
            .hardlink("/etc/b", "/etc/a")
            .symlink("/etc/c", "a")
            .whiteout("/etc/gone")
            .opaque("/opt")
            .char_device("/dev/null", 0o666, 1, 3)
            .file_with("/x", 0o600, b"x", (7, 8), 42, &[("user.k", b"v")]);
        let tar = layer.tar();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut seen = Vec::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            if path == "x" {
                let xattrs: Vec<_> = entry
                    .pax_extensions()
                    .unwrap()
                    .unwrap()
                    .map(|e| e.unwrap().key().unwrap().to_string())
                    .collect();
                assert_eq!(xattrs, ["SCHILY.xattr.user.k"]);
                assert_eq!(
                    (
                        entry.header().uid().unwrap(),
                        entry.header().mtime().unwrap()
                    ),
                    (7, 42)
                );
            }
            seen.push((path, entry.header().entry_type()));
        }
        let names: Vec<&str> = seen.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/a",
                "etc/b",
                "etc/c",
                "etc/.wh.gone",
                "opt/.wh..wh..opq",
                "dev/null",
                "x"
            ]
        );
        assert_eq!(seen[2].1, tar::EntryType::Link);
    }

    #[test]
    fn builds_are_reproducible_and_diff_ids_ignore_compression() {
        let mut layer = Layer::new();
        layer.file("/f", 0o644, "data");
        let (gz1, id1) = layer.build(Compression::Gzip, false);
        let (gz2, id2) = layer.build(Compression::Gzip, false);
        let (zst, id3) = layer.build(Compression::Zstd, false);
        assert_eq!(gz1.digest, gz2.digest);
        assert_eq!((id1.clone(), id1.clone()), (id2, id3));
        assert_ne!(gz1.digest, zst.digest);
        assert!(zst.media_type.ends_with("+zstd"));
    }
}
