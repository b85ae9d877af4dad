//! Disk used by a directory tree (a container's writable layer), counted as
//! `du` does: allocated blocks, each hard-linked inode once, one filesystem.

use crate::image::FsUsage;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Bytes and inodes under `dir` (itself included); a missing dir is empty.
/// Entries that vanish while walking are skipped: the container keeps
/// writing.
pub fn usage(dir: &Path) -> FsUsage {
    let mut total = FsUsage::default();
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return total;
    };
    let mut seen = HashSet::new();
    let mut pending = vec![dir.to_path_buf()];
    count(&top, &mut seen, &mut total);
    while let Some(current) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&current) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != top.dev() {
                continue;
            }
            count(&meta, &mut seen, &mut total);
            if meta.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    total
}

fn count(meta: &std::fs::Metadata, seen: &mut HashSet<u64>, total: &mut FsUsage) {
    if meta.nlink() > 1 && !meta.is_dir() && !seen.insert(meta.ino()) {
        return;
    }
    total.inodes += 1;
    total.bytes += meta.blocks() * 512;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_blocks_and_inodes_and_hard_links_once() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::write(sub.join("big"), vec![7u8; 64 * 1024]).unwrap();
        std::fs::hard_link(sub.join("big"), dir.path().join("link")).unwrap();
        std::fs::write(dir.path().join("small"), b"x").unwrap();
        let used = usage(dir.path());
        // The dir, sub, big (linked twice, counted once) and small.
        assert_eq!(used.inodes, 4);
        assert!(used.bytes >= 64 * 1024, "{used:?}");
        assert!(used.bytes < 2 * 64 * 1024 + 64 * 1024, "{used:?}");
        assert_eq!(usage(&dir.path().join("missing")), FsUsage::default());
    }
}
