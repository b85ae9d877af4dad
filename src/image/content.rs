//! The content store: blobs (manifests, configs, layers) by digest under
//! `<root>/content/blobs/sha256/<hex>`.
//!
//! Invariants:
//! - A blob file exists only with the bytes its name promises: content is
//!   written to `ingest/`, its digest and size checked while it streams,
//!   fsynced, then renamed into place. A crash or a bad blob leaves at most an
//!   ingest file, which the next start removes.
//! - One download per digest at a time: `lock` hands out a per-digest mutex, so
//!   a second puller waits and then finds the blob present.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {digest}: expected {expected} bytes, got {got}{more}", more = if *.more { " or more" } else { "" })]
    SizeMismatch {
        digest: String,
        expected: u64,
        got: u64,
        more: bool,
    },
    #[error("blob {expected}: content has digest {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("content store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ContentError + '_ {
    move |source| ContentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub struct ContentStore {
    root: PathBuf,
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl ContentStore {
    /// Opens `<root>/content`, clearing ingest files a crash left behind.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let root = root.join("content");
        let ingest = root.join("ingest");
        if ingest.exists() {
            std::fs::remove_dir_all(&ingest).map_err(io(&ingest))?;
        }
        for dir in [root.join("blobs/sha256"), ingest] {
            std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(ContentStore {
            root,
            locks: Mutex::new(HashMap::new()),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives; `digest` must be a validated sha256 digest.
    pub fn path(&self, digest: &str) -> PathBuf {
        self.root
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    }

    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_file()
    }

    pub fn read(&self, digest: &str) -> Result<Vec<u8>, ContentError> {
        let path = self.path(digest);
        std::fs::read(&path).map_err(io(&path))
    }

    /// Serialises work on one digest (download, unpack) across pulls.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let mutex = {
            let mut locks = self.locks.lock().expect("content locks");
            locks.retain(|_, weak| weak.strong_count() > 0);
            match locks.get(key).and_then(Weak::upgrade) {
                Some(mutex) => mutex,
                None => {
                    let mutex = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(key.to_string(), Arc::downgrade(&mutex));
                    mutex
                }
            }
        };
        mutex.lock_owned().await
    }

    /// Starts writing a blob that must have `digest` and `size` (< 0: unknown).
    pub fn writer(&self, digest: &str, size: i64) -> Result<Ingest, ContentError> {
        let temp = self.root.join("ingest").join(format!(
            "{}-{}-{}",
            digest.trim_start_matches("sha256:"),
            std::process::id(),
            INGEST_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let file = File::create(&temp).map_err(io(&temp))?;
        Ok(Ingest {
            file: Some(file),
            temp,
            target: self.path(digest),
            digest: digest.to_string(),
            expected: u64::try_from(size).ok(),
            written: 0,
            hasher: Sha256::new(),
        })
    }

    /// Stores bytes already in memory (manifests, configs), verified.
    pub fn put(&self, digest: &str, bytes: &[u8]) -> Result<(), ContentError> {
        if self.has(digest) {
            return Ok(());
        }
        let mut w = self.writer(digest, bytes.len() as i64)?;
        w.write(bytes)?;
        w.commit()
    }

    pub fn delete(&self, digest: &str) -> Result<(), ContentError> {
        let path = self.path(digest);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&path)(e)),
            _ => Ok(()),
        }
    }

    /// Digests of all stored blobs.
    pub fn list(&self) -> Result<Vec<String>, ContentError> {
        let dir = self.root.join("blobs/sha256");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))? {
            let entry = entry.map_err(io(&dir))?;
            out.push(format!("sha256:{}", entry.file_name().to_string_lossy()));
        }
        Ok(out)
    }
}

static INGEST_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A blob being written; dropped without `commit`, it leaves nothing behind.
pub struct Ingest {
    file: Option<File>,
    temp: PathBuf,
    target: PathBuf,
    digest: String,
    expected: Option<u64>,
    written: u64,
    hasher: Sha256,
}

impl Ingest {
    /// Appends bytes; fails as soon as the blob is longer than promised.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), ContentError> {
        self.written += bytes.len() as u64;
        if let Some(expected) = self.expected
            && self.written > expected
        {
            return Err(ContentError::SizeMismatch {
                digest: self.digest.clone(),
                expected,
                got: self.written,
                more: true,
            });
        }
        self.hasher.update(bytes);
        let file = self.file.as_mut().expect("ingest open");
        file.write_all(bytes).map_err(io(&self.temp))
    }

    /// Checks size and digest, fsyncs and moves the blob into place.
    pub fn commit(mut self) -> Result<(), ContentError> {
        if let Some(expected) = self.expected
            && self.written != expected
        {
            return Err(ContentError::SizeMismatch {
                digest: self.digest.clone(),
                expected,
                got: self.written,
                more: false,
            });
        }
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if actual != self.digest {
            return Err(ContentError::DigestMismatch {
                expected: self.digest.clone(),
                actual,
            });
        }
        let file = self.file.take().expect("ingest open");
        file.sync_all().map_err(io(&self.temp))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target).map_err(io(&self.target))?;
        if let Some(dir) = self.target.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(())
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(bytes: &[u8]) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
    }

    #[test]
    fn verified_blobs_land_and_bad_ones_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let good = b"hello";
        store.put(&digest(good), good).unwrap();
        assert_eq!(store.read(&digest(good)).unwrap(), good);

        let d = digest(b"other");
        let err = store.put(&d, b"tampered").unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        let mut w = store.writer(&d, 5).unwrap();
        assert!(matches!(
            w.write(b"other!").unwrap_err(),
            ContentError::SizeMismatch { more: true, .. }
        ));
        drop(w); // as the failing pull does when it returns
        let mut w = store.writer(&d, 5).unwrap();
        w.write(b"othe").unwrap();
        assert!(matches!(
            w.commit().unwrap_err(),
            ContentError::SizeMismatch { more: false, .. }
        ));
        let mut w = store.writer(&d, 5).unwrap();
        w.write(b"0ther").unwrap();
        assert!(matches!(
            w.commit().unwrap_err(),
            ContentError::DigestMismatch { .. }
        ));
        assert!(!store.has(&d));
        assert_eq!(
            std::fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
        assert_eq!(store.list().unwrap(), [digest(good)]);
    }

    #[test]
    fn leftover_ingest_files_are_cleared_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        let w = store.writer(&digest(b"x"), 1).unwrap();
        std::mem::forget(w); // as a crash would
        drop(store);
        ContentStore::open(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_dir(dir.path().join("content/ingest"))
                .unwrap()
                .count(),
            0
        );
    }

    #[tokio::test]
    async fn locks_serialise_per_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ContentStore::open(dir.path()).unwrap());
        let guard = store.lock("k").await;
        let s2 = store.clone();
        let waiter = tokio::spawn(async move {
            s2.lock("k").await;
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        let _other = store.lock("other").await; // unrelated keys do not wait
        drop(guard);
        waiter.await.unwrap();
    }
}
