//! Pushes a one-layer OCI image to the harness registry: what buildah makes
//! of a checkpoint archive (`buildah add` into a scratch image, annotated).

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

async fn put_blob(client: &reqwest::Client, base: &str, repo: &str, bytes: Vec<u8>) -> String {
    let digest = digest(&bytes);
    let started = client
        .post(format!("{base}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 202, "starting an upload");
    let location = started.headers()["location"].to_str().unwrap().to_string();
    let location = if location.starts_with('/') {
        format!("{base}{location}")
    } else {
        location
    };
    let joiner = if location.contains('?') { '&' } else { '?' };
    let done = client
        .put(format!("{location}{joiner}digest={digest}"))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    assert_eq!(done.status().as_u16(), 201, "uploading {digest}");
    digest
}

/// Pushes `layer` (an uncompressed tar) as `<registry>/<repo>:<tag>` with
/// the manifest `annotations`; answers the reference.
pub async fn one_layer_image(repo: &str, tag: &str, layer: Vec<u8>, annotations: Value) -> String {
    let registry = super::pods::registry();
    let base = format!("http://{registry}");
    // The workspace builds reqwest with rustls and no default provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let layer_size = layer.len();
    let layer_digest = put_blob(&client, &base, repo, layer).await;
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]}
    })
    .to_string()
    .into_bytes();
    let config_size = config.len();
    let config_digest = put_blob(&client, &base, repo, config).await;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest, "size": layer_size}],
        "annotations": annotations
    });
    let pushed = client
        .put(format!("{base}/v2/{repo}/manifests/{tag}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(manifest.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(pushed.status().as_u16(), 201, "pushing the manifest");
    format!("{registry}/{repo}:{tag}")
}
