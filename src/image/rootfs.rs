//! Containers' root filesystems: an overlay of an image's snapshots (top
//! layer first) with a writable upper and work dir of the container's own,
//! under `<root>/rootfs/<container-id>/`.
//!
//! Invariants:
//! - Each rootfs holds a durable lease (`lease.json`: its image and chain
//!   IDs, written before the mount, while CreateContainer's in-flight lease
//!   still holds the image). Garbage collection keeps every leased snapshot,
//!   so removing an image never pulls the ground from under a container; the
//!   snapshots go when the last container using them is removed.
//! - A failed mount leaves nothing behind; removal is idempotent.

use super::lease::Lease;
use super::overlay::{self, Overlay};
use super::record::ImageRecord;
use super::{ImageError, Images};
use nix::mount::{MntFlags, umount2};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

impl Images {
    /// Where containers' root filesystems and writable layers live.
    pub fn rootfs_root(&self) -> PathBuf {
        self.snapshots()
            .root()
            .parent()
            .expect("snapshots live under the root")
            .join("rootfs")
    }

    fn rootfs_dir(&self, container_id: &str) -> Result<PathBuf, ImageError> {
        if !is_dir_name(container_id) {
            return Err(ImageError::BadSpec(format!(
                "container id {container_id:?} cannot name a rootfs"
            )));
        }
        Ok(self.rootfs_root().join(container_id))
    }

    /// The writable layer (overlay upper dir) of `container_id`; with a user
    /// namespace the overlay sees it through an idmapped view, but the
    /// files are here.
    pub fn writable_layer(&self, container_id: &str) -> Option<PathBuf> {
        Some(self.rootfs_dir(container_id).ok()?.join("rw/upper"))
    }

    /// Mounts the rootfs of `container_id` from `image` (which the caller
    /// holds: see `Images::hold_image`) and returns the merged directory. Mounting an existing rootfs again
    /// returns it as it is (after a restart it is mounted again). With
    /// `userns` (a pinned user namespace), the overlay is made of idmapped
    /// copies of the layers and of the writable dirs (`lower/<n>`, `rw-map`),
    /// so the pod's root owns what root owns on disk.
    pub fn mount_rootfs(
        &self,
        container_id: &str,
        image: &ImageRecord,
        userns: Option<(&Path, (u32, u32))>,
    ) -> Result<PathBuf, ImageError> {
        let dir = self.rootfs_dir(container_id)?;
        let merged = dir.join("merged");
        let io = |source| ImageError::Io {
            path: dir.display().to_string(),
            source,
        };
        let lease = match Lease::read(&dir) {
            Some(lease) => lease,
            None => {
                let lease = Lease::of(image);
                for sub in ["rw/upper", "rw/work", "merged"] {
                    std::fs::create_dir_all(dir.join(sub)).map_err(io)?;
                }
                lease.write(&dir).map_err(io)?;
                lease
            }
        };
        if is_mountpoint(&merged) {
            return Ok(merged);
        }
        let mut lower: Vec<PathBuf> = lease
            .chain_ids
            .iter()
            .rev()
            .map(|c| self.snapshots().fs(c))
            .collect();
        if lower.len() > overlay::MAX_LOWER_LAYERS {
            unmount_all_under(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(ImageError::TooManyLayers {
                image: lease.image_id.clone(),
                layers: lower.len(),
            });
        }
        let mut rw = dir.join("rw");
        if let Some((userns, _)) = userns {
            match idmapped_layers(&dir, &lower, userns) {
                Ok(mapped) => {
                    lower = mapped;
                    rw = dir.join("rw-map");
                }
                Err(e) => {
                    unmount_all_under(&dir);
                    let _ = std::fs::remove_dir_all(&dir);
                    return Err(io(e));
                }
            }
        }
        let result =
            if let Some(missing) = lease.chain_ids.iter().find(|c| !self.snapshots().exists(c)) {
                Err(ImageError::NotFound(format!(
                    "snapshot {missing} of image {}",
                    lease.image_id
                )))
            } else {
                Overlay {
                    lower: &lower,
                    writable: Some((&rw.join("upper"), &rw.join("work"))),
                    links: &dir.join("l"),
                }
                .mount(&merged, userns.map(|(_, ids)| ids))
                .map_err(io)
            };
        if let Err(e) = result {
            unmount_all_under(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        Ok(merged)
    }

    /// Unmounts and deletes a container's rootfs, then collects snapshots no
    /// longer needed. Unknown ids succeed.
    pub fn remove_rootfs(&self, container_id: &str) -> Result<(), ImageError> {
        let dir = self.rootfs_dir(container_id)?;
        if !dir.exists() {
            return Ok(());
        }
        let merged = dir.join("merged");
        if is_mountpoint(&merged) {
            umount2(&merged, MntFlags::MNT_DETACH).map_err(|e| ImageError::Io {
                path: merged.display().to_string(),
                source: e.into(),
            })?;
        }
        // Idmapped layers of a user-namespaced rootfs.
        unmount_all_under(&dir);
        std::fs::remove_dir_all(&dir).map_err(|source| ImageError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        self.collect_garbage()
    }

    /// Chain IDs held by containers' rootfs leases and by image volumes.
    pub(super) fn leased_chain_ids(&self) -> HashSet<String> {
        let rootfs = std::fs::read_dir(self.rootfs_root())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| Lease::read(&e.path()));
        rootfs
            .chain(
                self.image_volume_leases()
                    .into_iter()
                    .map(|(_, lease)| lease),
            )
            .flat_map(|lease| lease.chain_ids)
            .collect()
    }
}

/// Whether `id` (a container or sandbox id) can name a directory of ours.
pub(super) fn is_dir_name(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.')
}

/// Idmapped copies of the lower layers (`dir/lower/<n>`) and of `dir/rw`
/// (`dir/rw-map`); returns the lower paths in the order given.
fn idmapped_layers(dir: &Path, lower: &[PathBuf], userns: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mapped = idmapped_lowers(dir, lower, userns)?;
    let rw_map = dir.join("rw-map");
    std::fs::create_dir_all(&rw_map)?;
    crate::idmap::mount(&dir.join("rw"), &rw_map, userns)?;
    Ok(mapped)
}

/// Idmapped copies of the lower layers (`dir/lower/<n>`), in the order given.
pub(super) fn idmapped_lowers(
    dir: &Path,
    lower: &[PathBuf],
    userns: &Path,
) -> std::io::Result<Vec<PathBuf>> {
    let mut mapped = Vec::new();
    for (n, layer) in lower.iter().enumerate() {
        let target = dir.join("lower").join(n.to_string());
        std::fs::create_dir_all(&target)?;
        crate::idmap::mount(layer, &target, userns)?;
        mapped.push(target);
    }
    Ok(mapped)
}

/// Detaches every mount below `dir` (deepest first).
pub(super) fn unmount_all_under(dir: &Path) {
    crate::idmap::unmount_all_under(dir);
}

/// Whether `path` is a mount point (its device differs from its parent's).
pub(super) fn is_mountpoint(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) {
        (Ok(me), Some(Ok(parent))) => me.dev() != parent.dev(),
        _ => false,
    }
}
