//! Images as other builders make them, end to end: umoci's layers (a `/`
//! entry first, no tar padding or end-of-archive blocks), images of many
//! layers, and one with more layers than overlayfs stacks.

mod common;

use common::fake_registry::{FakeRegistry, image_from_tars, raw_entry_mode};
use common::pods::Pod;
use serde_json::json;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use tonic::Code;

const BUSYBOX: &str = "/bin/busybox";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A layer of busybox alone, as a tar stream.
fn busybox_tar() -> Vec<u8> {
    let busybox = std::fs::read(BUSYBOX).unwrap();
    let mut tar = [
        raw_entry_mode("bin/", b'5', "", b"", 0o755),
        raw_entry_mode("bin/busybox", b'0', "", &busybox, 0o755),
    ]
    .concat();
    tar.extend_from_slice(&[0; 1024]);
    tar
}

/// Runs `cmd` in a container of `image` and returns its output.
async fn output_of(pod: &Pod, name: &str, image: &str, cmd: &[&str]) -> String {
    let id = pod
        .create(name, json!({"image": {"image": image}, "command": cmd}))
        .await
        .unwrap_or_else(|e| panic!("{name}: {e:?}"));
    pod.start(&id).await.unwrap();
    let status = pod.wait_exit(&id, Duration::from_secs(20)).await;
    let out: String = pod
        .log(name)
        .into_iter()
        .map(|(_, _, text)| text + "\n")
        .collect();
    assert_eq!(status.exit_code, 0, "{name}: {out}");
    out
}

/// The decompressed tar stream of the gzip blob `digest` in an OCI layout.
fn layout_layer(layout: &Path, digest: &str) -> Vec<u8> {
    let file = std::fs::File::open(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut tar)
        .unwrap();
    tar
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_made_by_umoci_insert_are_pulled_and_run() {
    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("oci");
    let bundle = work.path().join("bundle");
    let umoci = |args: &[&str]| {
        run(Command::new("umoci").args(args));
    };
    let image = |tag: &str| format!("{}:{tag}", layout.display());
    umoci(&["init", "--layout", layout.to_str().unwrap()]);
    umoci(&["new", "--image", &image("base")]);
    umoci(&[
        "unpack",
        "--image",
        &image("base"),
        bundle.to_str().unwrap(),
    ]);
    std::fs::create_dir_all(bundle.join("rootfs/bin")).unwrap();
    std::fs::copy(BUSYBOX, bundle.join("rootfs/bin/busybox")).unwrap();
    umoci(&[
        "repack",
        "--image",
        &image("base"),
        bundle.to_str().unwrap(),
    ]);
    let extra = work.path().join("extra");
    std::fs::create_dir_all(extra.join("sub")).unwrap();
    std::fs::write(extra.join("inserted.txt"), "inserted by umoci\n").unwrap();
    std::fs::write(extra.join("sub/deeper.txt"), "deeper\n").unwrap();
    umoci(&[
        "insert",
        "--image",
        &image("base"),
        "--tag",
        "derived",
        extra.to_str().unwrap(),
        "/",
    ]);

    let registry = FakeRegistry::start().await;
    let layers = registry.serve_oci_layout("umoci/derived", "v1", &layout, "derived");
    // What makes these layers special, checked so the test keeps testing it.
    let inserted = layout_layer(&layout, layers.last().unwrap());
    let first = tar::Archive::new(inserted.as_slice())
        .entries()
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path()
        .unwrap()
        .into_owned();
    assert_eq!(first, Path::new("/"), "umoci's first entry is the root");
    assert!(
        inserted.len() < 1024 || inserted[inserted.len() - 1024..].iter().any(|&b| b != 0),
        "umoci's layer has no end-of-archive blocks"
    );

    let pod = Pod::new(json!({})).await;
    let name = format!("{}/umoci/derived:v1", registry.host);
    pod.daemon.pull(&name, None).await.unwrap();
    let out = output_of(
        &pod,
        "umoci",
        &name,
        &["/bin/busybox", "cat", "/inserted.txt", "/sub/deeper.txt"],
    )
    .await;
    assert_eq!(out, "inserted by umoci\ndeeper\n");
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_of_125_layers_runs() {
    let registry = FakeRegistry::start().await;
    let mut tars = vec![busybox_tar()];
    for n in 1..125 {
        // Each layer ends the way umoci's do: no padding, no end blocks.
        let data = format!("layer {n}\n");
        let mut entry = raw_entry_mode(&format!("/layers/{n}"), b'0', "", data.as_bytes(), 0o644);
        entry.truncate(512 + data.len());
        tars.push(entry);
    }
    let image = image_from_tars(&tars, false, &["/bin/busybox", "sh"]);
    registry.serve_image("many", "v1", &image);
    let pod = Pod::new(json!({})).await;
    let name = format!("{}/many:v1", registry.host);
    pod.daemon.pull(&name, None).await.unwrap();
    let out = output_of(
        &pod,
        "many",
        &name,
        &["/bin/busybox", "cat", "/layers/1", "/layers/124"],
    )
    .await;
    assert_eq!(out, "layer 1\nlayer 124\n");
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_overlayfs_cannot_stack_is_refused_by_name() {
    let registry = FakeRegistry::start().await;
    let mut tars = vec![busybox_tar()];
    for n in 1..501 {
        let mut tar = raw_entry_mode(&format!("l{n}"), b'0', "", b"", 0o644);
        tar.extend_from_slice(&[0; 1024]);
        tars.push(tar);
    }
    let image = image_from_tars(&tars, false, &["/bin/busybox", "sh"]);
    registry.serve_image("toomany", "v1", &image);
    let pod = Pod::new(json!({})).await;
    let name = format!("{}/toomany:v1", registry.host);
    pod.daemon.pull(&name, None).await.unwrap();
    let err = pod
        .create("toomany", json!({"image": {"image": name}}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("501 layers") && err.message().contains("at most 500"),
        "{err:?}"
    );
    let rootfs = pod.daemon.dir.join("root/rootfs");
    let left = std::fs::read_dir(&rootfs).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no rootfs left behind");
    pod.remove_pod().await;
}
