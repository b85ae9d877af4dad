//! Image configs, manifests and indexes, in OCI or Docker schema2 media types.

use crate::layer::{Blob, Compression, Layer, MTIME};
use serde_json::{Value, json};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Oci,
    Docker,
}

impl Format {
    fn manifest_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
        }
    }
    fn config_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.config.v1+json",
            Format::Docker => "application/vnd.docker.container.image.v1+json",
        }
    }
    fn index_type(self) -> &'static str {
        match self {
            Format::Oci => "application/vnd.oci.image.index.v1+json",
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Platform {
    pub architecture: &'static str,
    pub variant: Option<&'static str>,
}

impl Platform {
    pub const AMD64: Platform = Platform {
        architecture: "amd64",
        variant: None,
    };
    pub const ARM64: Platform = Platform {
        architecture: "arm64",
        variant: Some("v8"),
    };

    fn json(&self) -> Value {
        let mut p = json!({"architecture": self.architecture, "os": "linux"});
        if let Some(v) = self.variant {
            p["variant"] = json!(v);
        }
        p
    }
}

/// The runtime part of an image config (Docker's capitalised keys).
#[derive(Clone, Debug, Default)]
pub struct RunConfig {
    pub user: Option<&'static str>,
    pub env: Vec<String>,
    pub entrypoint: Option<Vec<&'static str>>,
    pub cmd: Option<Vec<&'static str>>,
    pub working_dir: Option<&'static str>,
    pub stop_signal: Option<&'static str>,
    pub exposed_ports: Vec<&'static str>,
}

impl RunConfig {
    fn json(&self) -> Value {
        let mut c = serde_json::Map::new();
        if let Some(u) = self.user {
            c.insert("User".into(), json!(u));
        }
        c.insert("Env".into(), json!(self.env));
        if let Some(e) = &self.entrypoint {
            c.insert("Entrypoint".into(), json!(e));
        }
        if let Some(cmd) = &self.cmd {
            c.insert("Cmd".into(), json!(cmd));
        }
        if let Some(w) = self.working_dir {
            c.insert("WorkingDir".into(), json!(w));
        }
        if let Some(s) = self.stop_signal {
            c.insert("StopSignal".into(), json!(s));
        }
        if !self.exposed_ports.is_empty() {
            let ports: serde_json::Map<String, Value> = self
                .exposed_ports
                .iter()
                .map(|p| (p.to_string(), json!({})))
                .collect();
            c.insert("ExposedPorts".into(), Value::Object(ports));
        }
        Value::Object(c)
    }
}

/// One platform's image: config, layers, manifest.
#[derive(Clone)]
pub struct Image {
    pub platform: Platform,
    pub config: Blob,
    pub layers: Vec<Blob>,
    pub manifest: Blob,
}

pub fn build_image(
    layers: &[&Layer],
    compression: Compression,
    run: &RunConfig,
    platform: Platform,
    format: Format,
) -> Image {
    let built: Vec<(Blob, String)> = layers
        .iter()
        .map(|l| l.build(compression, format == Format::Docker))
        .collect();
    let created = "2023-11-14T22:13:20Z";
    debug_assert_eq!(MTIME, 1_700_000_000);
    let mut config = json!({
        "created": created,
        "architecture": platform.architecture,
        "os": "linux",
        "config": run.json(),
        "rootfs": {"type": "layers", "diff_ids": built.iter().map(|(_, id)| id).collect::<Vec<_>>()},
        "history": built.iter().enumerate().map(|(i, _)| json!({"created": created, "created_by": format!("crius-e2e layer {i}")})).collect::<Vec<_>>(),
    });
    if let Some(v) = platform.variant {
        config["variant"] = json!(v);
    }
    let config = Blob::new(
        format.config_type(),
        serde_json::to_vec(&config).expect("json"),
    );
    let layers: Vec<Blob> = built.into_iter().map(|(b, _)| b).collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": format.manifest_type(),
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(
        format.manifest_type(),
        serde_json::to_vec_pretty(&manifest).expect("json"),
    );
    Image {
        platform,
        config,
        layers,
        manifest,
    }
}

/// An index (manifest list) over per-platform images.
pub fn build_index(images: &[Image], format: Format) -> Blob {
    let manifests: Vec<Value> = images
        .iter()
        .map(|img| {
            let mut d = img.manifest.descriptor();
            d["platform"] = img.platform.json();
            d
        })
        .collect();
    let index =
        json!({"schemaVersion": 2, "mediaType": format.index_type(), "manifests": manifests});
    Blob::new(
        format.index_type(),
        serde_json::to_vec_pretty(&index).expect("json"),
    )
}
