//! ImageService against the harness's registry: real HTTP, real unpacking,
//! real overlay mounts. Needs `make test` (CRIUS_E2E_IMAGES).

mod common;

use common::Daemon;
use crius::cri;
use serde_json::Value;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use tonic::Code;

fn summary() -> Value {
    let path =
        std::env::var("CRIUS_E2E_IMAGES").expect("CRIUS_E2E_IMAGES: run through `make test`");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn image<'a>(summary: &'a Value, repo: &str) -> &'a Value {
    summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["repository"] == repo)
        .unwrap()
}

fn spec(name: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec {
        image: name.into(),
        ..Default::default()
    })
}

async fn status(daemon: &Daemon, name: &str) -> (Option<cri::Image>, Value) {
    let resp = daemon
        .images()
        .await
        .image_status(cri::ImageStatusRequest {
            image: spec(name),
            verbose: true,
        })
        .await
        .unwrap()
        .into_inner();
    let info = resp
        .info
        .get("info")
        .map(|i| serde_json::from_str(i).unwrap())
        .unwrap_or(Value::Null);
    (resp.image, info)
}

/// An overlay of an image's snapshots, unmounted on drop.
struct Overlay {
    dir: tempfile::TempDir,
}

impl Overlay {
    fn mount(snapshots: &Value) -> Overlay {
        let lower: Vec<&str> = snapshots
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .map(|s| s.as_str().unwrap())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
        let status = std::process::Command::new("mount")
            .args([
                "-t",
                "overlay",
                "overlay",
                "-o",
                &format!("lowerdir={}", lower.join(":")),
            ])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(status.success(), "overlay mount");
        Overlay { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(self.dir.path())
            .status();
    }
}

fn xattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    let c_key = CString::new(key).unwrap();
    let mut buf = vec![0u8; 256];
    let n = unsafe {
        libc::lgetxattr(
            c_path.as_ptr(),
            c_key.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    (n >= 0).then(|| buf[..n as usize].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn every_harness_image_pulls_with_its_config() {
    let summary = summary();
    let daemon = Daemon::start();
    for entry in summary["images"].as_array().unwrap() {
        let reference = entry["reference"].as_str().unwrap();
        let id = daemon
            .pull(reference, None)
            .await
            .unwrap_or_else(|e| panic!("{reference}: {e:?}"));
        // The id is the config digest (of the amd64 entry for indexes).
        let expected = match entry["config_digest"].as_str() {
            Some(config) => config.to_string(),
            None => entry["platforms"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["architecture"] == "amd64")
                .unwrap()["config_digest"]
                .as_str()
                .unwrap()
                .to_string(),
        };
        assert_eq!(id, expected, "{reference}");
        let (found, _) = status(&daemon, reference).await;
        let found = found.unwrap_or_else(|| panic!("{reference} listed"));
        assert!(
            found.repo_tags.contains(&reference.to_string()),
            "{reference}: {:?}",
            found.repo_tags
        );
        let repo_digest = format!(
            "{}@{}",
            reference.rsplit_once(':').unwrap().0,
            entry["digest"].as_str().unwrap()
        );
        assert!(
            found.repo_digests.contains(&repo_digest),
            "{reference}: {:?}",
            found.repo_digests
        );
        assert!(found.size > 1_000_000, "{reference}: size {}", found.size);
    }
    let reg = summary["registry"].as_str().unwrap();
    let (user_uid, _) = status(&daemon, &format!("{reg}/crius-test/user-uid")).await;
    assert_eq!(user_uid.unwrap().uid.unwrap().value, 1234);
    let (user_name, _) = status(&daemon, &format!("{reg}/crius-test/user-name")).await;
    let user_name = user_name.unwrap();
    assert_eq!(
        (user_name.uid, user_name.username.as_str()),
        (None, "someuser")
    );
    let (_, info) = status(&daemon, &format!("{reg}/crius-test/config")).await;
    let config = &info["imageSpec"]["config"];
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/bin/echo", "entrypoint"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["cmd-arg"]));
    assert_eq!(config["WorkingDir"], "/srv/work");
    assert_eq!(config["StopSignal"], "SIGUSR1");
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .contains(&Value::from("GREETING=hello world"))
    );

    let listed = daemon
        .images()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images;
    let tags: usize = listed.iter().map(|i| i.repo_tags.len()).sum();
    assert_eq!(
        tags,
        summary["images"].as_array().unwrap().len(),
        "one tag per pushed image"
    );
    let fs = daemon
        .images()
        .await
        .image_fs_info(cri::ImageFsInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(usage.used_bytes.unwrap().value > 2_000_000 && usage.inodes_used.unwrap().value > 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn layered_image_gives_the_right_merged_view() {
    let summary = summary();
    let reg = summary["registry"].as_str().unwrap();
    let daemon = Daemon::start();
    let name = format!("{reg}/crius-test/layered");
    daemon.pull(&name, None).await.unwrap();
    let (_, info) = status(&daemon, &name).await;
    assert_eq!(info["snapshots"].as_array().unwrap().len(), 3);
    let root = Overlay::mount(&info["snapshots"]);
    // Upper layers' whiteouts hide a file and a directory; the opaque dir
    // shows only what the top layer put there.
    assert!(!root.path("data/remove-me.txt").exists());
    assert!(!root.path("data/olddir").exists());
    let opaque: Vec<String> = std::fs::read_dir(root.path("opaque"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(opaque, ["fresh.txt"]);
    assert_eq!(
        std::fs::read_to_string(root.path("data/keep.txt")).unwrap(),
        "v2\n"
    );
    assert_eq!(
        std::fs::read_link(root.path("data/symlink.txt")).unwrap(),
        Path::new("keep.txt")
    );
    let hard = std::fs::metadata(root.path("data/hardlink.txt")).unwrap();
    assert_eq!(
        hard.ino(),
        std::fs::metadata(root.path("data/new.txt")).unwrap().ino()
    );
    let dev = std::fs::symlink_metadata(root.path("data/null-device")).unwrap();
    assert!(dev.file_type().is_char_device() && dev.rdev() == libc::makedev(1, 3));
    let owned = std::fs::metadata(root.path("data/owned.txt")).unwrap();
    assert_eq!(
        (
            owned.uid(),
            owned.gid(),
            owned.mode() & 0o7777,
            owned.mtime()
        ),
        (1234, 1234, 0o640, 1_600_000_000)
    );
    assert_eq!(
        xattr(&root.path("data/owned.txt"), "user.crius").as_deref(),
        Some(&b"xattr-value"[..])
    );
    // busybox's applets are hard links, so exec finds real files.
    assert_eq!(
        std::fs::metadata(root.path("bin/sleep")).unwrap().ino(),
        std::fs::metadata(root.path("bin/busybox")).unwrap().ino()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn index_picks_this_nodes_platform() {
    let summary = summary();
    let reg = summary["registry"].as_str().unwrap();
    let daemon = Daemon::start();
    for repo in ["crius-test/multiarch", "crius-test/docker-list"] {
        let name = format!("{reg}/{repo}");
        daemon.pull(&name, None).await.unwrap();
        let (_, info) = status(&daemon, &name).await;
        assert_eq!(info["imageSpec"]["architecture"], "amd64");
        assert_eq!(info["indexDigest"], image(&summary, repo)["digest"]);
        let top = info["snapshots"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(Path::new(top).join("etc/arch")).unwrap(),
            "amd64\n"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn pull_by_digest_and_find_by_id_prefix_tag_and_digest() {
    let summary = summary();
    let reg = summary["registry"].as_str().unwrap();
    let entry = image(&summary, "crius-test/busybox");
    let digest = entry["digest"].as_str().unwrap();
    let daemon = Daemon::start();
    let by_digest = format!("{reg}/crius-test/busybox@{digest}");
    let id = daemon.pull(&by_digest, None).await.unwrap();
    let (found, _) = status(&daemon, &by_digest).await;
    let found = found.unwrap();
    assert!(found.repo_tags.is_empty(), "a digest pull adds no tag");
    assert_eq!(found.repo_digests, std::slice::from_ref(&by_digest));
    for name in [
        id.clone(),
        id.trim_start_matches("sha256:").to_string(),
        id["sha256:".len()..][..12].to_string(),
    ] {
        assert_eq!(status(&daemon, &name).await.0.unwrap().id, id, "{name}");
    }
    assert!(
        status(&daemon, &format!("{reg}/crius-test/busybox:latest"))
            .await
            .0
            .is_none(),
        "not pulled by tag"
    );
    // A wrong pinned digest is caught.
    let wrong = format!(
        "{reg}/crius-test/busybox@{}",
        image(&summary, "crius-test/zstd")["digest"]
            .as_str()
            .unwrap()
    );
    let err = daemon.pull(&wrong, None).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}"); // the zstd manifest is not in this repository
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn remove_image_removes_all_tags_and_collects_garbage() {
    let summary = summary();
    let reg = summary["registry"].as_str().unwrap();
    let daemon = Daemon::start();
    let busybox = format!("{reg}/crius-test/busybox:latest");
    let httpd = format!("{reg}/crius-test/httpd:latest");
    let schema2 = format!("{reg}/crius-test/docker-schema2:latest");
    daemon.pull(&busybox, None).await.unwrap();
    daemon.pull(&schema2, None).await.unwrap(); // the same image under a second name
    let httpd_id = daemon.pull(&httpd, None).await.unwrap();
    assert_eq!(
        status(&daemon, &busybox).await.0.unwrap().repo_tags,
        [busybox.clone(), schema2.clone()]
    );
    let blobs = |d: &Daemon| {
        std::fs::read_dir(d.dir.join("root/content/blobs/sha256"))
            .unwrap()
            .count()
    };
    let before = blobs(&daemon);

    let mut client = daemon.images().await;
    client
        .remove_image(cri::RemoveImageRequest {
            image: spec(&busybox),
        })
        .await
        .unwrap();
    // As the CRI says: removing by one tag removes the image with all its tags.
    assert!(status(&daemon, &busybox).await.0.is_none());
    assert!(status(&daemon, &schema2).await.0.is_none());
    // httpd shares busybox's base layer, which stays; busybox's own blobs go.
    let (remaining, info) = status(&daemon, &httpd).await;
    assert_eq!(remaining.unwrap().id, httpd_id);
    for snapshot in info["snapshots"].as_array().unwrap() {
        assert!(Path::new(snapshot.as_str().unwrap()).is_dir());
    }
    assert!(blobs(&daemon) < before, "unreferenced blobs were collected");
    // Unknown images are not an error.
    client
        .remove_image(cri::RemoveImageRequest {
            image: spec(&busybox),
        })
        .await
        .unwrap();
    client
        .remove_image(cri::RemoveImageRequest {
            image: spec("sha256:0000000000000000000000000000000000000000000000000000000000000000"),
        })
        .await
        .unwrap();
    client
        .remove_image(cri::RemoveImageRequest {
            image: spec(&httpd_id),
        })
        .await
        .unwrap();
    assert_eq!(blobs(&daemon), 0);
    assert_eq!(
        std::fs::read_dir(daemon.dir.join("root/snapshots"))
            .unwrap()
            .count(),
        1,
        "only tmp/ is left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn bad_requests_get_clear_statuses_and_leave_nothing() {
    let summary = summary();
    let reg = summary["registry"].as_str().unwrap();
    let daemon = Daemon::start();
    let err = daemon.pull("Not A Reference", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("\"Not A Reference\""),
        "{}",
        err.message()
    );
    let err = daemon.pull("", None).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = daemon
        .pull(&format!("{reg}/crius-test/no-such-image:latest"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("no-such-image"), "{}", err.message());
    let err = daemon
        .pull(&format!("{reg}/crius-test/busybox:no-such-tag"), None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec {
            image: format!("{reg}/crius-test/busybox"),
            runtime_handler: "kata".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = daemon.images().await.pull_image(request).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("kata"));
    // Nothing was stored by the failures.
    assert_eq!(
        std::fs::read_dir(daemon.dir.join("root/content/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(daemon.dir.join("root/content/ingest"))
            .unwrap()
            .count(),
        0
    );
    let (found, _) = status(&daemon, "busybox").await;
    assert!(found.is_none(), "absent image: empty answer, not an error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn concurrent_pulls_download_each_layer_once_and_survive_restart() {
    let summary = summary();
    let reg = summary["registry"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = common::CleanupGuard(dir.path().to_path_buf());
    let daemon = Daemon::start_in(dir.path(), &[]);
    let name = format!("{reg}/crius-test/layered:latest");
    let (a, b) = tokio::join!(daemon.pull(&name, None), daemon.pull(&name, None));
    assert_eq!(a.unwrap(), b.unwrap());
    let downloads = daemon.log().matches("downloading layer").count();
    assert_eq!(
        downloads,
        3,
        "three layers, each downloaded once:\n{}",
        daemon.log()
    );
    assert_eq!(
        daemon.log().matches("downloading config").count(),
        1,
        "the config once"
    );
    drop(daemon);

    let daemon = Daemon::start_in(dir.path(), &[]);
    let (found, info) = status(&daemon, &name).await;
    assert!(found.is_some(), "images survive a restart");
    let root = Overlay::mount(&info["snapshots"]);
    assert!(root.path("bin/busybox").is_file());
    // Pulling again finds everything in place.
    daemon.pull(&name, None).await.unwrap();
    assert_eq!(daemon.log().matches("downloading layer").count(), 3);
}
