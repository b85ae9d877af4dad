//! The test images, all made from Debian's static busybox.
//!
//! Every image has /bin/busybox with each applet hard-linked beside it, so
//! `exec` of e.g. /bin/sleep runs a real file (busybox's shell would otherwise
//! run applets internally), and /etc/passwd and /etc/group with `someuser`.

use crate::image::{Format, Image, Platform, RunConfig, build_image, build_index};
use crate::layer::{Blob, Compression, Layer};

pub const PATH_ENV: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// UID/GID of `someuser` in the images' /etc/passwd.
pub const SOMEUSER_ID: u64 = 1000;

/// What gets pushed under one tag.
pub enum Content {
    Image(Image),
    /// A multi-platform index and its per-platform images.
    Index(Blob, Vec<Image>),
}

pub struct TestImage {
    /// Repository, e.g. "crius-test/busybox".
    pub repo: &'static str,
    pub tag: &'static str,
    pub what: &'static str,
    pub content: Content,
}

impl TestImage {
    /// The top manifest or index pushed under the tag.
    pub fn top(&self) -> &Blob {
        match &self.content {
            Content::Image(image) => &image.manifest,
            Content::Index(index, _) => index,
        }
    }
}

/// The base layer: busybox, its applets, users, the usual directories.
pub fn busybox_layer(busybox: &[u8], applets: &[String]) -> Layer {
    let mut layer = Layer::new();
    for dir in [
        "bin", "dev", "etc", "home", "proc", "root", "sys", "usr", "usr/bin", "var", "var/www",
    ] {
        layer.dir(dir, 0o755);
    }
    layer.dir("tmp", 0o1777);
    layer.owned_dir("home/someuser", 0o755, (SOMEUSER_ID, SOMEUSER_ID));
    layer.file("bin/busybox", 0o755, busybox.to_vec());
    for applet in applets.iter().filter(|a| a.as_str() != "busybox") {
        layer.hardlink(&format!("bin/{applet}"), "bin/busybox");
    }
    layer.file(
        "etc/passwd",
        0o644,
        "root:x:0:0:root:/root:/bin/sh\nsomeuser:x:1000:1000:Some User:/home/someuser:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    layer.file("etc/group", 0o644, "root:x:0:\nusers:x:100:someuser\nsomeuser:x:1000:\nextra:x:2000:someuser\nnobody:x:65534:\n");
    layer
}

fn base_run() -> RunConfig {
    RunConfig {
        env: vec![PATH_ENV.into()],
        cmd: Some(vec!["sh"]),
        ..Default::default()
    }
}

/// Builds every test image.
pub fn all(busybox: &[u8], applets: &[String]) -> Vec<TestImage> {
    let base = busybox_layer(busybox, applets);
    let oci = |layers: &[&Layer], compression, run: &RunConfig| {
        Content::Image(build_image(
            layers,
            compression,
            run,
            Platform::AMD64,
            Format::Oci,
        ))
    };
    let mut images = Vec::new();
    let mut add = |repo, what, content| {
        images.push(TestImage {
            repo,
            tag: "latest",
            what,
            content,
        })
    };

    add(
        "crius-test/busybox",
        "busybox with hard-linked applets (OCI, gzip)",
        oci(&[&base], Compression::Gzip, &base_run()),
    );

    // containerd's sandbox image for the benchmarks (crius needs none).
    add(
        "crius-test/pause",
        "pause for containerd's sandboxes in benchmarks: busybox sleep",
        oci(
            &[&base],
            Compression::Gzip,
            &RunConfig {
                env: vec![PATH_ENV.into()],
                entrypoint: Some(vec!["/bin/sleep", "2147483647"]),
                ..Default::default()
            },
        ),
    );

    // Three layers: busybox plus files, then special entries, then deletions.
    let mut lower = busybox_layer(busybox, applets);
    lower
        .dir("data", 0o755)
        .file("data/keep.txt", 0o644, "v1\n")
        .file("data/remove-me.txt", 0o644, "doomed\n")
        .dir("data/olddir", 0o755)
        .file("data/olddir/inner.txt", 0o644, "doomed too\n")
        .dir("opaque", 0o755)
        .file("opaque/old-a.txt", 0o644, "hidden by opaque\n")
        .file("opaque/old-b.txt", 0o644, "hidden by opaque\n");
    let mut middle = Layer::new();
    middle
        .file("data/keep.txt", 0o644, "v2\n")
        .file("data/new.txt", 0o644, "added in layer 2\n")
        .hardlink("data/hardlink.txt", "data/new.txt")
        .symlink("data/symlink.txt", "keep.txt")
        .char_device("data/null-device", 0o666, 1, 3)
        .file_with(
            "data/owned.txt",
            0o640,
            b"owned by 1234\n",
            (1234, 1234),
            1_600_000_000,
            &[("user.crius", b"xattr-value")],
        );
    let mut upper = Layer::new();
    upper
        .whiteout("data/remove-me.txt")
        .whiteout("data/olddir")
        .opaque("opaque")
        .file("opaque/fresh.txt", 0o644, "only file left here\n");
    add(
        "crius-test/layered",
        "3 layers: whiteouts of a file and a dir, an opaque dir, hard/sym links, a device, an xattr",
        oci(&[&lower, &middle, &upper], Compression::Gzip, &base_run()),
    );

    add(
        "crius-test/user-uid",
        "USER 1234",
        oci(
            &[&base],
            Compression::Gzip,
            &RunConfig {
                user: Some("1234"),
                ..base_run()
            },
        ),
    );
    add(
        "crius-test/user-name",
        "USER someuser",
        oci(
            &[&base],
            Compression::Gzip,
            &RunConfig {
                user: Some("someuser"),
                ..base_run()
            },
        ),
    );

    let mut workdir = Layer::new();
    workdir.dir("srv", 0o755).dir("srv/work", 0o755).file(
        "srv/work/marker.txt",
        0o644,
        "in the workdir\n",
    );
    add(
        "crius-test/config",
        "ENTRYPOINT+CMD, WORKDIR, ENV, STOPSIGNAL",
        oci(
            &[&base, &workdir],
            Compression::Gzip,
            &RunConfig {
                env: vec![
                    PATH_ENV.into(),
                    "GREETING=hello world".into(),
                    "FROM_IMAGE=yes".into(),
                ],
                entrypoint: Some(vec!["/bin/echo", "entrypoint"]),
                cmd: Some(vec!["cmd-arg"]),
                working_dir: Some("/srv/work"),
                stop_signal: Some("SIGUSR1"),
                ..Default::default()
            },
        ),
    );

    let per_platform = |platform: Platform, format: Format| {
        let mut marker = Layer::new();
        marker.file("etc/arch", 0o644, format!("{}\n", platform.architecture));
        build_image(
            &[&base, &marker],
            Compression::Gzip,
            &base_run(),
            platform,
            format,
        )
    };
    let children = vec![
        per_platform(Platform::AMD64, Format::Oci),
        per_platform(Platform::ARM64, Format::Oci),
    ];
    add(
        "crius-test/multiarch",
        "OCI index: amd64 and arm64/v8 (each with /etc/arch naming it)",
        Content::Index(build_index(&children, Format::Oci), children),
    );

    add(
        "crius-test/zstd",
        "busybox with a zstd-compressed layer",
        oci(&[&base], Compression::Zstd, &base_run()),
    );
    add(
        "crius-test/uncompressed",
        "busybox with an uncompressed tar layer",
        oci(&[&base], Compression::None, &base_run()),
    );

    add(
        "crius-test/docker-schema2",
        "Docker v2 schema2 manifest",
        Content::Image(build_image(
            &[&base],
            Compression::Gzip,
            &base_run(),
            Platform::AMD64,
            Format::Docker,
        )),
    );
    let children = vec![
        per_platform(Platform::AMD64, Format::Docker),
        per_platform(Platform::ARM64, Format::Docker),
    ];
    add(
        "crius-test/docker-list",
        "Docker manifest list: amd64 and arm64/v8",
        Content::Index(build_index(&children, Format::Docker), children),
    );

    let mut www = Layer::new();
    www.file("var/www/index.html", 0o644, "crius test page\n");
    add(
        "crius-test/httpd",
        "busybox httpd serving /var/www on port 80",
        oci(
            &[&base, &www],
            Compression::Gzip,
            &RunConfig {
                entrypoint: Some(vec!["/bin/httpd", "-f", "-v", "-p", "80", "-h", "/var/www"]),
                cmd: None,
                exposed_ports: vec!["80/tcp"],
                ..base_run()
            },
        ),
    );
    images
}
