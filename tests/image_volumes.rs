//! Image volumes (KEP-4639) as kubelet asks for them: a mount with `image`
//! set to the ref its pull returned, `readonly`, an optional
//! `image_sub_path`, on the real daemon with runc. The image is mounted once
//! per pod, read-only, holds its image against RemoveImage until the pod
//! goes, and is gone with the pod.

mod common;

use common::Daemon;
use common::pods::{Pod, image};
use serde_json::{Value, json};
use std::path::Path;
use tonic::Code;

fn image_mount(container_path: &str, image_ref: &str, sub_path: &str) -> Value {
    json!({
        "container_path": container_path,
        "image": {"image": image_ref},
        "readonly": true,
        "image_sub_path": sub_path,
    })
}

/// The mount points of this host under `dir`.
fn host_mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&dir))
        .collect()
}

async fn remove_image(daemon: &Daemon, name: &str) -> Result<(), tonic::Status> {
    daemon
        .images()
        .await
        .remove_image(crius::cri::RemoveImageRequest {
            image: Some(crius::cri::ImageSpec {
                image: name.into(),
                ..Default::default()
            }),
        })
        .await
        .map(|_| ())
}

#[tokio::test]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn image_volumes_mount_read_only_shared_by_the_pod_and_go_with_it() {
    let pod = Pod::new(json!({})).await;
    // kubelet pulls first and passes the ref the pull returned.
    let layered = pod.daemon.pull(&image("layered"), None).await.unwrap();
    let busybox = pod.daemon.pull(&image("busybox"), None).await.unwrap();
    let mounts = json!([
        image_mount("/vol", &layered, ""),
        image_mount("/sub", &layered, "data"),
        image_mount("/bb", &busybox, ""),
    ]);
    let first = pod
        .run(
            "first",
            json!({"command": ["sleep", "600"], "mounts": mounts}),
        )
        .await;

    let (code, out, err) = pod.exec(&first, &["cat", "/vol/data/keep.txt"]).await;
    assert_eq!((code, out.as_str()), (0, "v2\n"), "{err}");
    // The image's whiteouts hold in the volume as in a rootfs.
    let (code, _, _) = pod
        .exec(&first, &["test", "-e", "/vol/data/remove-me.txt"])
        .await;
    assert_ne!(code, 0);
    let (code, out, err) = pod
        .exec(&first, &["cat", "/sub/keep.txt", "/sub/symlink.txt"])
        .await;
    assert_eq!((code, out.as_str()), (0, "v2\nv2\n"), "{err}");
    // Read-only, whatever else the container may do.
    let (code, _, err) = pod.exec(&first, &["touch", "/vol/new", "/sub/new"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("Read-only file system"), "{err}");
    // A one-layer image works too, and by default its programs may run.
    let (code, out, err) = pod.exec(&first, &["/bb/bin/busybox", "echo", "ran"]).await;
    assert_eq!((code, out.as_str()), (0, "ran\n"), "{err}");
    let (_, mountinfo, _) = pod.exec(&first, &["cat", "/proc/self/mountinfo"]).await;
    let vol = mountinfo
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/vol"))
        .unwrap_or_else(|| panic!("no /vol in {mountinfo}"));
    let options = vol.split(' ').nth(5).unwrap();
    for option in ["ro", "nosuid", "nodev"] {
        assert!(options.split(',').any(|o| o == option), "{vol}");
    }

    // ContainerStatus shows the volumes as kubelet asked for them.
    let status = pod.status(&first).await.unwrap();
    let sub = status
        .mounts
        .iter()
        .find(|m| m.container_path == "/sub")
        .expect("the image volume in status");
    assert_eq!(sub.image.as_ref().unwrap().image, layered);
    assert_eq!(sub.image_sub_path, "data");
    assert!(sub.readonly);

    // A second container of the pod shares the pod's mounts of the images.
    let second = pod
        .run(
            "second",
            json!({"command": ["sleep", "600"], "mounts": [image_mount("/again", &layered, "data")]}),
        )
        .await;
    let (code, out, _) = pod.exec(&second, &["cat", "/again/new.txt"]).await;
    assert_eq!((code, out.as_str()), (0, "added in layer 2\n"));
    let volumes = pod.daemon.dir.join("root/image-volumes").join(&pod.id);
    assert_eq!(
        std::fs::read_dir(&volumes).unwrap().count(),
        2,
        "one per image"
    );

    // The volume holds its image until the pod is gone.
    let err = remove_image(&pod.daemon, &image("layered"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&pod.id), "{err:?}");
    let usage = pod
        .daemon
        .images()
        .await
        .image_fs_info(crius::cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        usage.image_filesystems[0]
            .used_bytes
            .as_ref()
            .unwrap()
            .value
            > 0
    );

    pod.remove_pod().await;
    assert!(!volumes.exists(), "the pod's image volumes stay after it");
    assert!(host_mounts_under(&pod.daemon.dir.join("root/image-volumes")).is_empty());
    remove_image(&pod.daemon, &image("layered")).await.unwrap();
}

#[tokio::test]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn bad_image_volumes_are_named() {
    let pod = Pod::new(json!({})).await;
    let layered = pod.daemon.pull(&image("layered"), None).await.unwrap();
    let host = tempfile::tempdir().unwrap();
    let cases = [
        (
            image_mount("/v", &layered, "no/such/dir"),
            Code::InvalidArgument,
            "config.mounts[0].image_sub_path \"no/such/dir\"",
        ),
        (
            image_mount("/v", &layered, "data/keep.txt"),
            Code::InvalidArgument,
            "is not a directory",
        ),
        (
            image_mount("/v", &layered, "data/../../.."),
            Code::InvalidArgument,
            "relative path without '..'",
        ),
        (
            image_mount(
                "/v",
                "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                "",
            ),
            Code::NotFound,
            "config.mounts[0].image",
        ),
        (
            json!({"container_path": "/v", "host_path": host.path(), "image": {"image": layered}, "readonly": true}),
            Code::InvalidArgument,
            "config.mounts[0]: host_path",
        ),
        (
            json!({"container_path": "/v", "host_path": host.path(), "image_sub_path": "data"}),
            Code::InvalidArgument,
            "config.mounts[0].image_sub_path is set but image is not",
        ),
    ];
    for (n, (mount, code, needle)) in cases.into_iter().enumerate() {
        let err = pod
            .create(&format!("bad{n}"), json!({"mounts": [mount]}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{mount}: {err:?}");
        assert!(err.message().contains(needle), "{mount}: {err:?}");
    }
    pod.remove_pod().await;
}

#[tokio::test]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn noexec_image_volumes_when_the_operator_asks() {
    let dir = tempfile::Builder::new()
        .prefix("crius-it-")
        .tempdir()
        .unwrap();
    // Even when an assertion fails: containers, pins and mounts go.
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    std::fs::write(
        dir.path().join("config.toml"),
        "[runtime]\nimage_volumes_noexec = true\n[network.builtin]\nenabled = false\n",
    )
    .unwrap();
    let pod = Pod::new_on(Daemon::start_in(dir.path(), &[]), json!({})).await;
    let busybox = pod.daemon.pull(&image("busybox"), None).await.unwrap();
    let id = pod
        .run(
            "noexec",
            json!({"command": ["sleep", "600"], "mounts": [image_mount("/bb", &busybox, "")]}),
        )
        .await;
    // The shell's exec(2) of it fails: 126, "Permission denied".
    let (code, _, err) = pod.exec(&id, &["sh", "-c", "/bb/bin/busybox true"]).await;
    assert_eq!(code, 126, "{err}");
    let (code, out, _) = pod.exec(&id, &["cat", "/proc/self/mountinfo"]).await;
    assert_eq!(code, 0);
    let bb = out
        .lines()
        .find(|l| l.split(' ').nth(4) == Some("/bb"))
        .unwrap();
    assert!(bb.split(' ').nth(5).unwrap().contains("noexec"), "{bb}");
    pod.remove_pod().await;
}

#[tokio::test]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn a_crash_after_the_pod_record_went_leaves_no_image_volume() {
    let pod = Pod::new(json!({})).await;
    let layered = pod.daemon.pull(&image("layered"), None).await.unwrap();
    pod.run(
        "c",
        json!({"command": ["sleep", "600"], "mounts": [image_mount("/vol", &layered, "")]}),
    )
    .await;
    let volumes = pod.daemon.dir.join("root/image-volumes");
    let pod_volumes = volumes.join(&pod.id);
    assert!(pod_volumes.exists());
    // A stand-in for a pod whose removal a crash cut short: volumes with no
    // pod record. Start-up must release them.
    let orphan = volumes.join("0123456789abcdef-gone");
    std::fs::rename(&pod_volumes, &orphan).unwrap();
    let dir = pod.daemon.dir.clone();
    let Pod { mut daemon, .. } = pod;
    daemon.stop_with(nix::sys::signal::Signal::SIGKILL);
    let daemon = Daemon::start_in(&dir, &[]);
    assert!(!orphan.exists(), "{}", daemon.log());
    assert!(host_mounts_under(&orphan).is_empty());
    drop(daemon);
}

#[tokio::test]
#[ignore = "needs root, runc and the harness registry (make test)"]
async fn image_volumes_in_a_user_namespaced_pod_are_owned_by_its_root() {
    if !common::user_namespaces_supported() {
        eprintln!("skipped: user namespaces need Linux 5.19");
        return;
    }
    let maps = json!([{"host_id": 310000, "container_id": 0, "length": 65536}]);
    let pod = Pod::new(json!({"linux": {"security_context": {"namespace_options": {
        "userns_options": {"mode": 0, "uids": maps, "gids": maps}
    }}}}))
    .await;
    let layered = pod.daemon.pull(&image("layered"), None).await.unwrap();
    // kubelet passes the pod's mappings on every mount of such a pod.
    let mut mount = image_mount("/vol", &layered, "data");
    merge_maps(&mut mount, &maps);
    let id = pod
        .run("u", json!({"command": ["sleep", "600"], "mounts": [mount]}))
        .await;
    let (code, out, err) = pod
        .exec(&id, &["ls", "-ln", "/vol/keep.txt", "/vol/owned.txt"])
        .await;
    assert_eq!(code, 0, "{err}");
    let owners: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    // root's file is the pod root's; 1234's stays 1234 inside.
    assert_eq!(owners, ["0", "1234"], "{out}");
    let (_, out, _) = pod.exec(&id, &["cat", "/vol/keep.txt"]).await;
    assert_eq!(out, "v2\n");
    pod.remove_pod().await;
    assert!(host_mounts_under(&pod.daemon.dir).is_empty());
}

fn merge_maps(mount: &mut Value, maps: &Value) {
    mount["uidMappings"] = maps.clone();
    mount["gidMappings"] = maps.clone();
}
