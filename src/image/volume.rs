//! Image volumes (KEP-4639, `Mount.image`): an image's layers mounted
//! read-only for a pod, so its containers can bind the image's files (or a
//! directory inside it) into their own trees.
//!
//! Invariants:
//! - One mount per pod and image, shared by the pod's containers:
//!   `<root>/image-volumes/<sandbox-id>/<image-hex>/` holds `lease.json`
//!   (image and chain IDs, written before the mount) and `merged/`, an
//!   overlay without an upper dir, so nothing can write to it.
//! - The image is held from its lookup until `lease.json` is written (an
//!   in-flight lease), then by that lease: while it exists, garbage
//!   collection keeps the image's snapshots and RemoveImage refuses the
//!   image (FailedPrecondition naming the pod).
//! - The volumes of a pod go when the pod is removed. A crash leaves at most
//!   the volumes of pods that no longer exist; start-up releases those.

use super::lease::Lease;
use super::overlay::{self, Overlay};
use super::rootfs;
use super::{ImageError, Images};
use std::path::{Path, PathBuf};

/// A pod's mount of an image.
#[derive(Debug, Clone)]
pub struct ImageVolume {
    pub image_id: String,
    /// The image's root directory, read-only.
    pub root: PathBuf,
}

/// Why an `image_sub_path` cannot be mounted.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("must be a relative path without '..', as the API server requires")]
    NotRelative,
    #[error("does not exist in the image")]
    Missing,
    #[error("is not a directory in the image")]
    NotDirectory,
    #[error("cannot be resolved inside the image: {0}")]
    Unresolvable(std::io::Error),
}

impl ImageVolume {
    /// `sub_path` resolved inside the image, as the host path of a
    /// directory. Symlinks and `..` resolve as they would with the image as
    /// `/` (openat2 `RESOLVE_IN_ROOT`), so none can lead out of the image;
    /// the overlay is read-only, so what was checked stays true.
    pub fn sub_path(&self, sub_path: &str) -> Result<PathBuf, SubPathError> {
        if sub_path.is_empty() {
            return Ok(self.root.clone());
        }
        let relative = Path::new(sub_path);
        if relative.is_absolute()
            || relative
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
        {
            return Err(SubPathError::NotRelative);
        }
        let root = std::fs::File::open(&self.root).map_err(SubPathError::Unresolvable)?;
        let fd =
            crate::resolve::open_in_root(&root, relative, libc::O_PATH).map_err(|e| {
                match e.raw_os_error() {
                    Some(libc::ENOENT) => SubPathError::Missing,
                    Some(libc::ENOTDIR) => SubPathError::NotDirectory,
                    _ => SubPathError::Unresolvable(e),
                }
            })?;
        let link = PathBuf::from(format!(
            "/proc/self/fd/{}",
            std::os::fd::AsRawFd::as_raw_fd(&fd)
        ));
        if !std::fs::metadata(&link)
            .map_err(SubPathError::Unresolvable)?
            .is_dir()
        {
            return Err(SubPathError::NotDirectory);
        }
        let resolved = std::fs::read_link(&link).map_err(SubPathError::Unresolvable)?;
        // The kernel's own answer; checked once more in case of a name it
        // could not print whole.
        if !resolved.starts_with(&self.root) {
            return Err(SubPathError::Unresolvable(std::io::Error::other(format!(
                "it resolves to {} outside the image",
                resolved.display()
            ))));
        }
        Ok(resolved)
    }
}

impl Images {
    fn image_volumes_root(&self) -> PathBuf {
        self.rootfs_root().with_file_name("image-volumes")
    }

    fn pod_volumes_dir(&self, sandbox_id: &str) -> Result<PathBuf, ImageError> {
        if !rootfs::is_dir_name(sandbox_id) {
            return Err(ImageError::BadSpec(format!(
                "sandbox id {sandbox_id:?} cannot name an image volume"
            )));
        }
        Ok(self.image_volumes_root().join(sandbox_id))
    }

    /// Mounts `image` (id, name or digest reference, as kubelet passes the
    /// `image_ref` its pull returned) for the pod `sandbox_id`, or returns
    /// the pod's mount of it if there is one. With `userns` the layers are
    /// idmapped to the pod's user namespace first, as a rootfs's are.
    pub fn mount_image_volume(
        &self,
        sandbox_id: &str,
        image: &str,
        userns: Option<(&Path, (u32, u32))>,
    ) -> Result<ImageVolume, ImageError> {
        let held = self
            .hold_image(image)?
            .ok_or_else(|| ImageError::NotFound(image.to_string()))?;
        let record = &held.record;
        let hex = record.id.trim_start_matches("sha256:").to_string();
        let dir = self.pod_volumes_dir(sandbox_id)?.join(&hex);
        let merged = dir.join("merged");
        // Two containers of a pod may ask for the same volume at once.
        let _guard = self.volume_lock.lock().expect("image volume lock");
        if rootfs::is_mountpoint(&merged) {
            return Ok(ImageVolume {
                image_id: record.id.clone(),
                root: merged,
            });
        }
        let io = |source| ImageError::Io {
            path: dir.display().to_string(),
            source,
        };
        let lease = Lease::of(record);
        let mut lower: Vec<PathBuf> = lease
            .chain_ids
            .iter()
            .rev()
            .map(|c| self.snapshots().fs(c))
            .collect();
        if lower.len() > overlay::MAX_LOWER_LAYERS {
            return Err(ImageError::TooManyLayers {
                image: record.id.clone(),
                layers: lower.len(),
            });
        }
        if let Some(missing) = lease.chain_ids.iter().find(|c| !self.snapshots().exists(c)) {
            return Err(ImageError::NotFound(format!(
                "snapshot {missing} of image {}",
                record.id
            )));
        }
        let result = (|| {
            std::fs::create_dir_all(&merged)?;
            std::fs::create_dir_all(dir.join("empty"))?;
            lease.write(&dir)?;
            // overlayfs without an upper dir wants two lower layers: an
            // empty one at the bottom changes nothing. It is idmapped like
            // the others, so every layer is seen through the pod's mapping
            // (Linux 6.1 answered EINVAL to the mix).
            lower.push(dir.join("empty"));
            if let Some((userns, _)) = userns {
                lower = rootfs::idmapped_lowers(&dir, &lower, userns)?;
            }
            Overlay {
                lower: &lower,
                writable: None,
                links: &dir.join("l"),
            }
            .mount(&merged, userns.map(|(_, ids)| ids))
        })();
        if let Err(e) = result {
            rootfs::unmount_all_under(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(io(e));
        }
        tracing::info!(sandbox = sandbox_id, image = %record.id, "mounted an image volume");
        Ok(ImageVolume {
            image_id: record.id.clone(),
            root: merged,
        })
    }

    /// Unmounts and deletes the image volumes of `sandbox_id`, then collects
    /// what only they held. Idempotent.
    pub fn release_image_volumes(&self, sandbox_id: &str) -> Result<(), ImageError> {
        let dir = self.pod_volumes_dir(sandbox_id)?;
        if !dir.exists() {
            return Ok(());
        }
        {
            let _guard = self.volume_lock.lock().expect("image volume lock");
            rootfs::unmount_all_under(&dir);
            std::fs::remove_dir_all(&dir).map_err(|source| ImageError::Io {
                path: dir.display().to_string(),
                source,
            })?;
        }
        self.collect_garbage()
    }

    /// Releases the image volumes of pods for which `exists` is false (after
    /// a crash between a pod's removal and its volumes').
    pub fn release_orphan_image_volumes(&self, exists: &dyn Fn(&str) -> bool) {
        let pods: Vec<String> = std::fs::read_dir(self.image_volumes_root())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|id| !exists(id))
            .collect();
        for pod in pods {
            match self.release_image_volumes(&pod) {
                Ok(()) => {
                    tracing::info!(sandbox = %pod, "released the image volumes of a removed pod")
                }
                Err(e) => tracing::warn!(sandbox = %pod, error = %e, "releasing image volumes"),
            }
        }
    }

    /// The leases of all image volumes, with their pods.
    pub(super) fn image_volume_leases(&self) -> Vec<(String, Lease)> {
        let mut leases = Vec::new();
        for pod in std::fs::read_dir(self.image_volumes_root())
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
        {
            let sandbox = pod.file_name().to_string_lossy().into_owned();
            for volume in std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok())
            {
                if let Some(lease) = Lease::read(&volume.path()) {
                    leases.push((sandbox.clone(), lease));
                }
            }
        }
        leases
    }

    /// The pods whose image volumes hold `image_id`.
    pub(super) fn image_volume_users(&self, image_id: &str) -> Vec<String> {
        let mut pods: Vec<String> = self
            .image_volume_leases()
            .into_iter()
            .filter(|(_, lease)| lease.image_id == image_id)
            .map(|(pod, _)| pod)
            .collect();
        pods.sort();
        pods.dedup();
        pods
    }
}
