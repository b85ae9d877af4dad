//! Layer snapshots: each layer unpacked once into `<root>/snapshots/<chain>/fs`,
//! keyed by its chain ID, so images sharing a base share its directories.
//! A container's root filesystem is an overlay of these (lowest last).
//!
//! Invariants:
//! - A snapshot directory exists only complete: layers unpack into `tmp/`
//!   and are renamed into place after their digests are verified; garbage
//!   collection renames a snapshot back into `tmp/` before deleting it.
//!   What a crash leaves in `tmp/` is removed at the next start.

use super::unpack::Usage;
use std::path::{Path, PathBuf};

pub struct Snapshots {
    root: PathBuf,
}

/// A snapshot being unpacked; removed when dropped uncommitted.
pub struct Pending {
    dir: Option<PathBuf>,
}

impl Pending {
    pub fn fs(&self) -> PathBuf {
        self.dir.as_ref().expect("pending snapshot").join("fs")
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Snapshots {
    pub fn open(root: &Path) -> std::io::Result<Snapshots> {
        let root = root.join("snapshots");
        let tmp = root.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(Snapshots { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, chain_id: &str) -> PathBuf {
        self.root.join(chain_id.trim_start_matches("sha256:"))
    }

    /// The unpacked layer, for overlay lowerdirs.
    pub fn fs(&self, chain_id: &str) -> PathBuf {
        self.dir(chain_id).join("fs")
    }

    pub fn exists(&self, chain_id: &str) -> bool {
        self.dir(chain_id).is_dir()
    }

    pub fn prepare(&self, chain_id: &str) -> std::io::Result<Pending> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = self
            .root
            .join("tmp")
            .join(format!("{}-{n}", chain_id.trim_start_matches("sha256:")));
        std::fs::create_dir_all(dir.join("fs"))?;
        Ok(Pending { dir: Some(dir) })
    }

    /// Moves a verified snapshot into place with its usage.
    pub fn commit(
        &self,
        mut pending: Pending,
        chain_id: &str,
        usage: Usage,
    ) -> std::io::Result<()> {
        let dir = pending.dir.take().expect("pending snapshot");
        std::fs::write(dir.join("usage.json"), serde_json::to_vec(&usage)?)?;
        let target = self.dir(chain_id);
        if target.exists() {
            // Another pull finished the same layer first.
            return std::fs::remove_dir_all(dir);
        }
        std::fs::rename(dir, target)
    }

    pub fn usage(&self, chain_id: &str) -> Usage {
        std::fs::read(self.dir(chain_id).join("usage.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Takes a snapshot out of use at once: renames it into `tmp/` (which
    /// start-up clears) and returns the new path for the slow deletion.
    /// None if there was no such snapshot.
    pub fn discard(&self, chain_id: &str) -> std::io::Result<Option<PathBuf>> {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let trash = self
            .root
            .join("tmp")
            .join(format!("gc-{}-{n}", chain_id.trim_start_matches("sha256:")));
        match std::fs::rename(self.dir(chain_id), &trash) {
            Ok(()) => Ok(Some(trash)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Chain IDs of all committed snapshots.
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.root)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if name != "tmp" {
                out.push(format!("sha256:{name}"));
            }
        }
        Ok(out)
    }
}
