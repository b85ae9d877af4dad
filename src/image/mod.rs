//! Images: references, registry pulls, the content store, layer snapshots and
//! the image records behind the CRI ImageService.
//!
//! Invariants:
//! - An image record is written only after all its blobs and snapshots are
//!   complete and verified, so a listed image is always usable.
//! - A tag names at most one image: pulling a tag that moved takes it from
//!   the image that had it.
//! - Nothing is deleted that a record or a lease holds (`lease`). A pull
//!   holds its blobs and snapshots from before its first byte until its
//!   record is saved; a CreateContainer or an image volume holds its image
//!   from the lookup until its durable lease (`lease.json`) is written, and
//!   that lease holds the snapshots until the rootfs or volume is removed.
//!   Holders look for an object only once they hold it, so GC (which
//!   decides under the lease table's lock) never deletes what a pull found
//!   or committed and is about to record.
//! - Garbage collection (after RemoveImage, a failed pull, a removed rootfs
//!   or volume, and at start-up) deletes every blob and snapshot that no
//!   record and no lease holds.
//! - Work on one blob or snapshot runs once however many pulls want it
//!   (`flight`): the others wait and share its result or its error.

pub mod auth;
pub mod content;
mod flight;
pub mod hosts;
pub mod lease;
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
use flight::Flights;
use lease::{InFlight, Leases};
use manifest::Platform;
use record::ImageRecord;
use reference::{Reference, ReferenceError};
use registry::{RegistryClient, RegistryError};
use snapshot::Snapshots;
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

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
    Layer {
        image: String,
        layer: String,
        source: Arc<pull::LayerError>,
    },
    /// The error of work another pull ran for this one too.
    #[error(transparent)]
    Shared(Arc<ImageError>),
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
            ImageError::Registry { source, .. } => registry_kind(source),
            ImageError::Layer { source, .. } => source.kind(),
            ImageError::Shared(e) => e.kind(),
            // The registry served content that does not verify or parse.
            ImageError::BadContent { .. } => ErrorKind::FailedPrecondition,
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

fn registry_kind(e: &RegistryError) -> ErrorKind {
    match e {
        RegistryError::NotFound { .. } => ErrorKind::NotFound,
        RegistryError::Unauthorized { .. } => ErrorKind::Unauthenticated,
        RegistryError::Denied { .. } => ErrorKind::PermissionDenied,
        RegistryError::Transport { .. }
        | RegistryError::Status { .. }
        | RegistryError::Token { .. } => ErrorKind::Unavailable,
        RegistryError::TooLarge { .. } | RegistryError::Tls { .. } => ErrorKind::FailedPrecondition,
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
    /// In-flight leases; their lock is the GC lock.
    leases: Leases,
    /// Configs being fetched, by digest.
    blob_flights: Flights<Result<(), Arc<ImageError>>>,
    /// Layers being fetched and unpacked, by chain ID.
    layer_flights: Flights<Result<(), Arc<pull::LayerError>>>,
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
            leases: Leases::default(),
            blob_flights: Flights::default(),
            layer_flights: Flights::default(),
            volume_lock: Default::default(),
        })
    }

    /// Finds `name` (as `resolve` does) and holds the image's blobs and
    /// snapshots until the answer is dropped, with no GC between the lookup
    /// and the hold: for work that will make a durable lease of it.
    pub fn hold_image(&self, name: &str) -> Result<Option<HeldImage>, ImageError> {
        let lease = self.leases.begin();
        Ok(lease
            .hold_image(|| self.resolve(name))?
            .map(|record| HeldImage {
                record,
                _lease: lease,
            }))
    }

    /// Unpacks the image's layers, bottom first, into the directory `dest`
    /// as one tree: for an image that carries files to read (a checkpoint),
    /// not a rootfs. Blocking; the caller holds the image.
    pub fn unpack_layers(&self, record: &ImageRecord, dest: &Path) -> Result<(), String> {
        std::fs::create_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        for layer in &record.layers {
            let at = |e: String| format!("layer {}: {e}", layer.digest);
            let compression = manifest::layer_compression(&layer.media_type).map_err(at)?;
            let file = std::fs::File::open(self.content.path(&layer.digest))
                .map_err(|e| at(e.to_string()))?;
            let reader = unpack::decompress(file, compression).map_err(|e| at(e.to_string()))?;
            unpack::unpack(reader, dest).map_err(|e| at(e.to_string()))?;
        }
        Ok(())
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
    /// removing by one tag removes the image), then its blobs and snapshots
    /// that nothing else holds: those of containers, of pulls and of creates
    /// under way stay. An unknown image is not an error; an image a pod
    /// mounts as an image volume is refused until the pod is removed.
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

    /// Deletes blobs and snapshots that no image record and no lease
    /// (durable or in flight) holds.
    pub fn collect_garbage(&self) -> Result<(), ImageError> {
        let trash = self.sweep()?;
        // Out of sight already; the slow part runs without the lock.
        for dir in trash {
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot delete a collected snapshot");
            }
        }
        Ok(())
    }

    /// GC's decisions, under the lease table's lock: no hold is taken or
    /// released meanwhile. Unheld blobs are unlinked; unheld snapshots are
    /// moved into `snapshots/tmp/` (cleared at start) and returned.
    fn sweep(&self) -> Result<Vec<PathBuf>, ImageError> {
        let leases = self.leases.lock();
        let (mut blobs, mut chains) = leases.held();
        chains.extend(self.leased_chain_ids());
        for record in self.records.read().expect("image records").values() {
            blobs.extend(record.blobs().map(str::to_string));
            chains.extend(record.chain_ids().map(str::to_string));
        }
        let content_err = |source| ImageError::Content {
            image: String::new(),
            source,
        };
        for digest in self.content.list().map_err(content_err)? {
            if !blobs.contains(&digest) {
                self.content.delete(&digest).map_err(content_err)?;
            }
        }
        let mut trash = Vec::new();
        for chain in self
            .snapshots
            .list()
            .map_err(io_err(self.snapshots.root()))?
        {
            if !chains.contains(&chain) {
                trash.extend(
                    self.snapshots
                        .discard(&chain)
                        .map_err(io_err(self.snapshots.root()))?,
                );
            }
        }
        drop(leases);
        Ok(trash)
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

/// An image looked up and held (see `Images::hold_image`).
pub struct HeldImage {
    pub record: ImageRecord,
    _lease: InFlight,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(root: &Path) -> Images {
        let store = Arc::new(Store::open(root).unwrap());
        let options = ImageOptions {
            platform: Platform::host(),
            max_downloads: 1,
            registry_config_path: root.join("certs.d"),
            credentials_file: Default::default(),
            pinned: Vec::new(),
        };
        Images::open(root, store, options).unwrap()
    }

    #[test]
    fn gc_keeps_what_work_in_flight_holds_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let images = open(dir.path());
        let (blob, chain) = (
            format!("sha256:{}", "b".repeat(64)),
            format!("sha256:{}", "c".repeat(64)),
        );
        std::fs::write(images.content.path(&blob), b"x").unwrap();
        std::fs::create_dir_all(images.snapshots.fs(&chain)).unwrap();

        // A pull that found them (or just committed them) and has not yet
        // saved its record.
        let pull = images.leases.begin();
        pull.hold([blob.as_str()], [chain.as_str()]);
        images.collect_garbage().unwrap();
        assert!(images.content.has(&blob) && images.snapshots.exists(&chain));

        drop(pull);
        images.collect_garbage().unwrap();
        assert!(!images.content.has(&blob) && !images.snapshots.exists(&chain));
        let tmp = std::fs::read_dir(images.snapshots.root().join("tmp")).unwrap();
        assert_eq!(
            tmp.count(),
            0,
            "collected snapshots are deleted, not parked"
        );
        assert!(images.hold_image("sha256:abcd").unwrap().is_none());
    }
}
