//! Containers' root filesystems from the image store (library level): an
//! overlay of the snapshots with a writable layer, leases that keep removed
//! images' content while a container uses it, and clean removal.

use crius::image::auth::Credentials;
use crius::image::manifest::Platform;
use crius::image::{ImageOptions, Images};
use crius::store::Store;
use std::path::Path;
use std::sync::Arc;

fn registry() -> String {
    let path =
        std::env::var("CRIUS_E2E_IMAGES").expect("CRIUS_E2E_IMAGES: run through `make test`");
    let summary: serde_json::Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    summary["registry"].as_str().unwrap().to_string()
}

fn open(root: &Path) -> Arc<Images> {
    let store = Arc::new(Store::open(root).unwrap());
    let options = ImageOptions {
        platform: Platform::host(),
        max_downloads: 4,
        registry_config_path: root.join("certs.d"),
        credentials_file: Default::default(),
        pinned: Vec::new(),
    };
    Arc::new(Images::open(root, store, options).unwrap())
}

fn snapshot_count(root: &Path) -> usize {
    std::fs::read_dir(root.join("snapshots")).unwrap().count() - 1 // tmp/
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn rootfs_overlays_the_image_and_leases_its_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let images = open(root);
    let name = format!("{}/crius-test/layered:latest", registry());
    images.pull(&name, &Credentials::Anonymous).await.unwrap();

    let held = images.hold_image(&name).unwrap().unwrap();
    let merged = images.mount_rootfs("c1", &held.record, None).unwrap();
    // The rootfs's own lease holds the snapshots from here on.
    drop(held);
    assert_eq!(
        std::fs::read_to_string(merged.join("data/keep.txt")).unwrap(),
        "v2\n"
    );
    assert!(!merged.join("data/remove-me.txt").exists());
    // Writes land in the container's own layer, never in a snapshot.
    std::fs::write(merged.join("data/keep.txt"), "changed\n").unwrap();
    std::fs::write(merged.join("tmp/new.txt"), "new\n").unwrap();
    assert_eq!(
        std::fs::read_to_string(root.join("rootfs/c1/rw/upper/tmp/new.txt")).unwrap(),
        "new\n"
    );
    let record = images.resolve(&name).unwrap().unwrap();
    let middle = images.snapshots().fs(&record.layers[1].chain_id);
    assert_eq!(
        std::fs::read_to_string(middle.join("data/keep.txt")).unwrap(),
        "v2\n"
    );
    // Mounting again is a no-op that returns the same rootfs.
    assert_eq!(images.mount_rootfs("c1", &record, None).unwrap(), merged);

    // Removing the image keeps what the container runs on.
    images.remove(&name).unwrap();
    assert!(images.resolve(&name).unwrap().is_none());
    assert_eq!(snapshot_count(root), 3);
    assert!(merged.join("bin/busybox").is_file());

    // Removing the rootfs unmounts it and lets the snapshots go.
    images.remove_rootfs("c1").unwrap();
    assert!(!root.join("rootfs/c1").exists());
    assert_eq!(snapshot_count(root), 0);
    images.remove_rootfs("c1").unwrap();
    assert!(
        !std::fs::read_to_string("/proc/mounts")
            .unwrap()
            .contains(root.to_str().unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn rootfs_errors_are_clear_and_leave_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let images = open(dir.path());
    let name = format!("{}/crius-test/busybox:latest", registry());
    assert!(images.hold_image(&name).unwrap().is_none());
    images.pull(&name, &Credentials::Anonymous).await.unwrap();
    let held = images.hold_image(&name).unwrap().unwrap();
    for bad in ["", "../x", "a/b", ".hidden"] {
        let err = images.mount_rootfs(bad, &held.record, None).unwrap_err();
        assert!(err.to_string().contains("container id"), "{bad}: {err}");
    }
    // Two containers share the image's snapshots.
    let a = images.mount_rootfs("a", &held.record, None).unwrap();
    let b = images.mount_rootfs("b", &held.record, None).unwrap();
    drop(held);
    std::fs::write(a.join("tmp/only-in-a"), "a").unwrap();
    assert!(!b.join("tmp/only-in-a").exists());
    images.remove_rootfs("a").unwrap();
    images.remove_rootfs("b").unwrap();
    assert_eq!(
        snapshot_count(dir.path()),
        1,
        "the image itself still holds its snapshot"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn the_image_user_resolves_inside_its_rootfs() {
    use crius::container::user::{ResolvedUser, resolve};
    let dir = tempfile::tempdir().unwrap();
    let images = open(dir.path());
    let name = format!("{}/crius-test/user-name:latest", registry());
    images.pull(&name, &Credentials::Anonymous).await.unwrap();
    let record = images.resolve(&name).unwrap().unwrap();
    let rootfs = images.mount_rootfs("u1", &record, None).unwrap();
    let user = resolve(&rootfs, None, &record.run_config().user).unwrap();
    // someuser (1000) is a member of `users` (100) and `extra` (2000).
    assert_eq!(
        user,
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![100, 2000]
        }
    );
    images.remove_rootfs("u1").unwrap();
}
