//! Images: references, registry pulls, the content store, layer snapshots and
//! the image records behind the CRI ImageService.
//!
//! Invariants:
//! - An image record is written only after all its blobs and snapshots are
//!   complete and verified, so a listed image is always usable.
//! - A tag names at most one image: pulling a tag that moved takes it from
//!   the image that had it.
//! - Blobs and snapshots that no image references are removed after each
//!   RemoveImage (garbage collection in `remove`).

pub mod auth;
pub mod content;
pub mod hosts;
pub mod manifest;
pub mod overlay;
mod pull;
pub mod record;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod snapshot;
pub mod unpack;
pub mod volume;

use crate::error::{Classify, ErrorKind};
use crate::store::{Store, StoreError, Table};
use content::{ContentError, ContentStore};
use manifest::Platform;
use record::ImageRecord;
use reference::{Reference, ReferenceError};
use registry::{RegistryClient, RegistryError};
use snapshot::Snapshots;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Arc, RwLock};
use unpack::UnpackError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("image.image: {0}")]
    BadSpec(String),
    #[error("image {0:?} not found")]
    NotFound(String),
    #[error("pulling {image}: {source}")]
    Registry {
        image: String,
        source: RegistryError,
    },
    #[error("pulling {image}: {reason}")]
    BadContent { image: String, reason: String },
    #[error("pulling {image}: {source}")]
    Content { image: String, source: ContentError },
    #[error("pulling {image}: layer {layer}: {source}")]
    Unpack {
        image: String,
        layer: String,
        source: UnpackError,
    },
    #[error("pulling {image}: {reason}")]
    Config { image: String, reason: String },
    #[error("image store {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "image {image} has {layers} layers; overlayfs stacks at most {}",
        overlay::MAX_LOWER_LAYERS
    )]
    TooManyLayers { image: String, layers: usize },
    #[error("image {image} is mounted as an image volume by pod sandbox {}; it can be removed once that pod is", pods.join(", "))]
    InUse { image: String, pods: Vec<String> },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for ImageError {
    fn kind(&self) -> ErrorKind {
        match self {
            ImageError::Reference(_) | ImageError::BadSpec(_) => ErrorKind::InvalidArgument,
            ImageError::NotFound(_) => ErrorKind::NotFound,
            ImageError::Registry { source, .. } => match source {
                RegistryError::NotFound { .. } => ErrorKind::NotFound,
                RegistryError::Unauthorized { .. } => ErrorKind::Unauthenticated,
                RegistryError::Denied { .. } => ErrorKind::PermissionDenied,
                RegistryError::Transport { .. }
                | RegistryError::Status { .. }
                | RegistryError::Token { .. } => ErrorKind::Unavailable,
                RegistryError::TooLarge { .. } | RegistryError::Tls { .. } => {
                    ErrorKind::FailedPrecondition
                }
            },
            // The registry served content that does not verify or parse.
            ImageError::BadContent { .. } | ImageError::Unpack { .. } => {
                ErrorKind::FailedPrecondition
            }
            ImageError::Content { source, .. } => match source {
                ContentError::Io { .. } => ErrorKind::Internal,
                _ => ErrorKind::FailedPrecondition,
            },
            ImageError::Io { .. } => ErrorKind::Internal,
            ImageError::Config { .. }
            | ImageError::TooManyLayers { .. }
            | ImageError::InUse { .. } => ErrorKind::FailedPrecondition,
            ImageError::Store(e) => e.kind(),
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Bytes and inodes the image store occupies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FsUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// How images are pulled (from the `[image]` configuration).
#[derive(Debug, Clone)]
pub struct ImageOptions {
    pub platform: Platform,
    /// Layers downloaded and unpacked at once, node-wide.
    pub max_downloads: usize,
    /// hosts.toml directory.
    pub registry_config_path: std::path::PathBuf,
    /// Docker config.json-format credentials; empty path: none.
    pub credentials_file: std::path::PathBuf,
    /// Images kubelet's garbage collection must leave alone (names as
    /// written, ids or digest references).
    pub pinned: Vec<String>,
}

pub struct Images {
    store: Arc<Store>,
    options: ImageOptions,
    content: ContentStore,
    snapshots: Snapshots,
    registry: RegistryClient,
    downloads: Arc<tokio::sync::Semaphore>,
    /// Records by image id, mirroring the store.
    records: RwLock<BTreeMap<String, ImageRecord>>,
    /// Serialises mounting and releasing image volumes.
    volume_lock: std::sync::Mutex<()>,
}

impl Images {
    pub fn open(
        root: &Path,
        store: Arc<Store>,
        options: ImageOptions,
    ) -> Result<Images, ImageError> {
        let content = ContentStore::open(root).map_err(|source| ImageError::Content {
            image: String::new(),
            source,
        })?;
        let snapshots = Snapshots::open(root).map_err(io_err(root))?;
        let registry = RegistryClient::new().map_err(|e| ImageError::Io {
            path: "registry client".into(),
            source: std::io::Error::other(e),
        })?;
        let records = store
            .list::<ImageRecord>(Table::Images)?
            .into_iter()
            .collect();
        Ok(Images {
            store,
            content,
            snapshots,
            registry,
            downloads: Arc::new(tokio::sync::Semaphore::new(options.max_downloads.max(1))),
            options,
            records: RwLock::new(records),
            volume_lock: Default::default(),
        })
    }

    pub fn snapshots(&self) -> &Snapshots {
        &self.snapshots
    }

    pub fn platform(&self) -> &Platform {
        &self.options.platform
    }

    /// Finds an image by id (with or without `sha256:`, or a unique prefix of
    /// at least 4 hex digits), by tag or by digest reference.
    pub fn resolve(&self, name: &str) -> Result<Option<ImageRecord>, ImageError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(ImageError::BadSpec("is empty".into()));
        }
        let records = self.records.read().expect("image records");
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut matches = records
                .values()
                .filter(|r| r.id["sha256:".len()..].starts_with(hex));
            if let Some(first) = matches.next() {
                if matches.next().is_some() {
                    return Err(ImageError::BadSpec(format!(
                        "{name:?} matches more than one image id"
                    )));
                }
                return Ok(Some(self.with_pin(first.clone())));
            }
            if hex.len() == 64 {
                return Ok(None);
            }
        }
        let reference = Reference::parse(name)?;
        let found = records.values().find(|r| match &reference.digest {
            Some(d) => r.repo_digests.contains(&reference.repo_digest(d)),
            None => reference
                .repo_tag()
                .is_some_and(|t| r.repo_tags.contains(&t)),
        });
        Ok(found.cloned().map(|r| self.with_pin(r)))
    }

    /// `record` with `pinned` set when the operator's list names it (by a
    /// tag, a digest reference or its id).
    fn with_pin(&self, mut record: ImageRecord) -> ImageRecord {
        record.pinned = self.options.pinned.iter().any(|p| {
            let name = Reference::parse(p)
                .map(|r| r.to_string())
                .unwrap_or_default();
            p == &record.id
                || record.repo_tags.contains(&name)
                || record.repo_digests.contains(&name)
                || record.repo_tags.iter().any(|t| t == p)
        });
        record
    }

    /// All images, or those matching `filter` (an image name or id).
    pub fn list(&self, filter: Option<&str>) -> Result<Vec<ImageRecord>, ImageError> {
        match filter.filter(|f| !f.is_empty()) {
            Some(f) => Ok(self.resolve(f)?.into_iter().collect()),
            None => Ok(self
                .records
                .read()
                .expect("image records")
                .values()
                .cloned()
                .map(|r| self.with_pin(r))
                .collect()),
        }
    }

    /// Removes the image `name` names, with all its tags (as the CRI says:
    /// removing by one tag removes the image), then its unreferenced blobs and
    /// snapshots; snapshots that containers' rootfs leases hold stay. An
    /// unknown image is not an error; an image a pod mounts as an image
    /// volume is refused until the pod is removed.
    pub fn remove(&self, name: &str) -> Result<(), ImageError> {
        let Some(record) = self.resolve(name)? else {
            return Ok(());
        };
        // No pod may mount it between the check and the removal.
        let _guard = self.volume_lock.lock().expect("image volume lock");
        let pods = self.image_volume_users(&record.id);
        if !pods.is_empty() {
            return Err(ImageError::InUse {
                image: record.id,
                pods,
            });
        }
        self.store.delete(Table::Images, &record.id)?;
        self.records
            .write()
            .expect("image records")
            .remove(&record.id);
        self.collect_garbage()
    }

    /// Deletes blobs and snapshots that no image and no container's rootfs
    /// refers to.
    pub fn collect_garbage(&self) -> Result<(), ImageError> {
        let in_use = self.leased_chain_ids();
        let records = self.records.read().expect("image records");
        let blobs: HashSet<&str> = records.values().flat_map(ImageRecord::blobs).collect();
        let chains: HashSet<&str> = records.values().flat_map(ImageRecord::chain_ids).collect();
        for digest in self.content.list().map_err(|source| ImageError::Content {
            image: String::new(),
            source,
        })? {
            if !blobs.contains(digest.as_str()) {
                self.content
                    .delete(&digest)
                    .map_err(|source| ImageError::Content {
                        image: String::new(),
                        source,
                    })?;
            }
        }
        for chain in self
            .snapshots
            .list()
            .map_err(io_err(self.snapshots.root()))?
        {
            if !chains.contains(chain.as_str()) && !in_use.contains(&chain) {
                self.snapshots
                    .remove(&chain)
                    .map_err(io_err(self.snapshots.root()))?;
            }
        }
        Ok(())
    }

    /// What the images occupy: stored blobs plus unpacked snapshots,
    /// including those only containers and image volumes still hold.
    pub fn fs_usage(&self) -> FsUsage {
        let leased = self.leased_chain_ids();
        let records = self.records.read().expect("image records");
        let mut usage = FsUsage::default();
        let mut seen_blobs = HashSet::new();
        let mut seen_chains = HashSet::new();
        for record in records.values() {
            for blob in record.blobs() {
                if seen_blobs.insert(blob.to_string())
                    && let Ok(meta) = std::fs::metadata(self.content.path(blob))
                {
                    usage.bytes += meta.len();
                    usage.inodes += 1;
                }
            }
            for chain in record.chain_ids() {
                if seen_chains.insert(chain.to_string()) {
                    let u = self.snapshots.usage(chain);
                    usage.bytes += u.bytes;
                    usage.inodes += u.inodes;
                }
            }
        }
        for chain in leased {
            if seen_chains.insert(chain.clone()) {
                let u = self.snapshots.usage(&chain);
                usage.bytes += u.bytes;
                usage.inodes += u.inodes;
            }
        }
        usage
    }

    /// Deletes a blob a failed pull stored, unless a recorded image uses it.
    fn drop_unreferenced_blob(&self, digest: &str) {
        let used = self
            .records
            .read()
            .expect("image records")
            .values()
            .any(|r| r.blobs().any(|b| b == digest));
        if !used && let Err(e) = self.content.delete(digest) {
            tracing::warn!(blob = digest, error = %e, "cannot remove the blob of a failed pull");
        }
    }

    /// Records a pulled image; takes its tags from any image that had them.
    fn save(&self, mut record: ImageRecord) -> Result<ImageRecord, ImageError> {
        let mut records = self.records.write().expect("image records");
        if let Some(existing) = records.get(&record.id) {
            for tag in &existing.repo_tags {
                if !record.repo_tags.contains(tag) {
                    record.repo_tags.push(tag.clone());
                }
            }
            for digest in &existing.repo_digests {
                if !record.repo_digests.contains(digest) {
                    record.repo_digests.push(digest.clone());
                }
            }
        }
        record.repo_tags.sort();
        record.repo_digests.sort();
        let moved: Vec<ImageRecord> = records
            .values()
            .filter(|r| {
                r.id != record.id && r.repo_tags.iter().any(|t| record.repo_tags.contains(t))
            })
            .map(|r| {
                let mut r = r.clone();
                r.repo_tags.retain(|t| !record.repo_tags.contains(t));
                r
            })
            .collect();
        for r in moved {
            self.store.put(Table::Images, &r.id, &r)?;
            records.insert(r.id.clone(), r);
        }
        self.store.put(Table::Images, &record.id, &record)?;
        records.insert(record.id.clone(), record.clone());
        Ok(record)
    }
}
