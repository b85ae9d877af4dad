//! Restore: CreateContainer whose `image` is a checkpoint archive (an
//! absolute path to one, as CRI-O accepts it), or a pulled image made from
//! one (its layers hold the archive's files and its manifest carries
//! CRI-O's [`IMAGE_ANNOTATION`], as buildah makes them), makes a new
//! container in the given sandbox from it. The checkpoint is unpacked into
//! the container's dir;
//! the container gets the image it was checkpointed from, with the rootfs
//! diff and deletions laid onto its new writable layer, and its bundle is
//! built from the request as any other's. StartContainer then runs
//! `<runtime> restore` (through the shim) instead of `start`: the processes
//! continue with their memory, not from the beginning.

use super::{CHECKPOINT_DIR, CONFIG_DUMP, CheckpointError, DELETED_FILES, ROOTFS_DIFF, SPEC_DUMP};
use crate::cri;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a container's checkpoint is unpacked, inside its dir.
pub const UNPACKED: &str = "restore";

/// The manifest annotation that marks an image made from a checkpoint
/// archive (its value is the checkpointed container's name).
pub const IMAGE_ANNOTATION: &str = "io.kubernetes.cri-o.annotations.checkpoint.name";

/// Whether an image is a checkpoint rather than a rootfs.
pub fn is_checkpoint_image(image: &crate::image::record::ImageRecord) -> bool {
    image.annotations.contains_key(IMAGE_ANNOTATION)
}

/// An unpacked checkpoint.
#[derive(Debug)]
pub struct Checkpoint {
    /// Where it was unpacked.
    pub dir: PathBuf,
    /// The images the container ran, best reference first (digest
    /// reference, then name).
    pub images: Vec<String>,
    /// Its process as it was created: arguments and working dir.
    pub args: Vec<String>,
    pub cwd: String,
}

impl Checkpoint {
    /// criu's images.
    pub fn images_dir(&self) -> PathBuf {
        self.dir.join(CHECKPOINT_DIR)
    }
}

/// The archive `image` names, if it is one: an absolute path to a regular
/// file (image references are never absolute paths).
pub fn archive(image: &str) -> Option<PathBuf> {
    let path = Path::new(image);
    (path.is_absolute() && std::fs::metadata(path).is_ok_and(|m| m.is_file()))
        .then(|| path.to_path_buf())
}

/// Unpacks `archive` into the new directory `dir` and reads what a restore
/// needs. The archive is the caller's: it goes through the image unpacker,
/// which keeps every entry inside `dir`.
pub fn unpack(archive: &Path, dir: &Path) -> Result<Checkpoint, CheckpointError> {
    let source = archive.display().to_string();
    std::fs::create_dir_all(dir).map_err(|e| super::failed(dir, e))?;
    let file = File::open(archive).map_err(|e| not_a_checkpoint(&source, e.to_string()))?;
    crate::image::unpack::unpack(file, dir)
        .map_err(|e| not_a_checkpoint(&source, e.to_string()))?;
    read(dir, &source)
}

/// A checkpoint that does not read as one, from `source`.
pub fn not_a_checkpoint(source: &str, what: String) -> CheckpointError {
    CheckpointError::Invalid(format!(
        "config.image.image {source}: not a checkpoint: {what}"
    ))
}

/// Reads what a restore needs from a checkpoint unpacked into `dir` (from
/// `source`, an archive or an image).
pub fn read(dir: &Path, source: &str) -> Result<Checkpoint, CheckpointError> {
    let bad = |what: String| not_a_checkpoint(source, what);
    let read_json = |name: &str| -> Result<serde_json::Value, CheckpointError> {
        let bytes = std::fs::read(dir.join(name)).map_err(|e| bad(format!("{name}: {e}")))?;
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("{name}: {e}")))
    };
    let config = read_json(CONFIG_DUMP)?;
    let spec = read_json(SPEC_DUMP)?;
    if !dir.join(CHECKPOINT_DIR).is_dir() {
        return Err(bad(format!("no {CHECKPOINT_DIR}/ directory")));
    }
    let images: Vec<String> = ["rootfsImageRef", "rootfsImageName", "rootfsImage"]
        .iter()
        .filter_map(|key| config[key].as_str())
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if images.is_empty() {
        return Err(bad(format!("{CONFIG_DUMP} names no image")));
    }
    let args = spec["process"]["args"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let cwd = spec["process"]["cwd"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    Ok(Checkpoint {
        dir: dir.to_path_buf(),
        images,
        args,
        cwd,
    })
}

/// The request's config as the restored container needs it: the image it
/// was checkpointed from, and its command and working dir where the
/// request gives none (the processes keep their own, from memory; the
/// spec must still agree).
pub fn config_for(
    config: &cri::ContainerConfig,
    image: &str,
    checkpoint: &Checkpoint,
) -> cri::ContainerConfig {
    let mut config = config.clone();
    let spec = config.image.get_or_insert_with(Default::default);
    spec.image = image.to_string();
    if config.command.is_empty() && config.args.is_empty() {
        config.command = checkpoint.args.clone();
    }
    if config.working_dir.is_empty() {
        config.working_dir = checkpoint.cwd.clone();
    }
    config
}

/// Lays the checkpoint's rootfs diff and deletions onto the new
/// container's empty writable layer.
pub fn apply_rootfs(checkpoint: &Checkpoint, upper: &Path) -> Result<(), CheckpointError> {
    let diff = match File::open(checkpoint.dir.join(ROOTFS_DIFF)) {
        Ok(file) => Some(file),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(super::failed(&checkpoint.dir.join(ROOTFS_DIFF), e)),
    };
    let deleted: Vec<String> = match std::fs::read(checkpoint.dir.join(DELETED_FILES)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| CheckpointError::Invalid(format!("{DELETED_FILES}: {e}")))?,
        Err(_) => Vec::new(),
    };
    super::diff::apply(upper, diff, &deleted).map_err(CheckpointError::Invalid)?;
    // The archive's copy is no longer needed; the memory images are.
    let _ = std::fs::remove_file(checkpoint.dir.join(ROOTFS_DIFF));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive_with(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut tar = tar::Builder::new(file.reopen().unwrap());
        let mut dir = tar::Header::new_gnu();
        dir.set_entry_type(tar::EntryType::Directory);
        dir.set_mode(0o700);
        dir.set_size(0);
        tar.append_data(&mut dir, "checkpoint/", std::io::empty())
            .unwrap();
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o600);
            header.set_size(bytes.len() as u64);
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        tar.finish().unwrap();
        file
    }

    #[test]
    fn only_absolute_paths_to_files_are_archives() {
        let file = tempfile::NamedTempFile::new().unwrap();
        assert!(archive(file.path().to_str().unwrap()).is_some());
        assert!(archive("busybox:latest").is_none());
        assert!(archive("/nonexistent/c.tar").is_none());
        assert!(archive("/").is_none());
    }

    #[test]
    fn an_archive_gives_its_image_and_process() {
        let archive = archive_with(&[
            (
                "config.dump",
                br#"{"id":"a","rootfsImageRef":"reg/x@sha256:00","rootfsImageName":"reg/x:1"}"#,
            ),
            (
                "spec.dump",
                br#"{"process":{"args":["sh","-c","count"],"cwd":"/work"}}"#,
            ),
            ("checkpoint/pages-1.img", b"pages"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = unpack(archive.path(), &dir.path().join("restore")).unwrap();
        assert_eq!(checkpoint.images, ["reg/x@sha256:00", "reg/x:1"]);
        assert!(checkpoint.images_dir().join("pages-1.img").is_file());
        let config = config_for(
            &cri::ContainerConfig::default(),
            "reg/x@sha256:00",
            &checkpoint,
        );
        assert_eq!(config.image.unwrap().image, "reg/x@sha256:00");
        assert_eq!(config.command, ["sh", "-c", "count"]);
        assert_eq!(config.working_dir, "/work");
    }

    #[test]
    fn what_is_not_a_checkpoint_is_refused_naming_the_image_field() {
        let archive = archive_with(&[("spec.dump", b"{}")]);
        let dir = tempfile::tempdir().unwrap();
        let e = unpack(archive.path(), &dir.path().join("restore")).unwrap_err();
        assert!(
            matches!(&e, CheckpointError::Invalid(m) if m.contains("config.image.image") && m.contains("config.dump")),
            "{e:?}"
        );
    }
}
