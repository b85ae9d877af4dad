//! The harness's registry holds every test image: each is pulled back over
//! plain HTTP (no crius code involved) and every digest and size is checked.
//! Needs the registry and images that `make test` sets up (CRIUS_E2E_IMAGES).

use serde_json::Value;
use sha2::{Digest, Sha256};

const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn summary() -> Value {
    let path = std::env::var("CRIUS_E2E_IMAGES")
        .expect("CRIUS_E2E_IMAGES: run through `make test`, which pushes the images");
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex(&Sha256::digest(bytes)))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

struct Puller {
    base: String,
    http: reqwest::Client,
}

impl Puller {
    /// GETs a manifest; checks the served digest and the body's digest.
    async fn manifest(&self, repo: &str, reference: &str, expected_digest: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("accept", ACCEPT)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{repo}:{reference}");
        let served = resp.headers()["docker-content-digest"]
            .to_str()
            .unwrap()
            .to_string();
        let body = resp.bytes().await.unwrap();
        assert_eq!(served, expected_digest, "{repo}:{reference}");
        assert_eq!(sha256(&body), expected_digest, "{repo}:{reference} body");
        serde_json::from_slice(&body).unwrap()
    }

    /// GETs a blob by its descriptor; checks digest and size.
    async fn blob(&self, repo: &str, descriptor: &Value) -> Vec<u8> {
        let digest = descriptor["digest"].as_str().unwrap();
        let resp = self
            .http
            .get(format!("{}/v2/{repo}/blobs/{digest}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{repo}@{digest}");
        let body = resp.bytes().await.unwrap().to_vec();
        assert_eq!(sha256(&body), digest, "{repo} blob");
        assert_eq!(
            body.len() as u64,
            descriptor["size"].as_u64().unwrap(),
            "{repo} blob size"
        );
        body
    }

    /// Checks a single-platform manifest and all it references; returns the config.
    async fn image(&self, repo: &str, manifest: &Value) -> Value {
        let config = self.blob(repo, &manifest["config"]).await;
        for layer in manifest["layers"].as_array().unwrap() {
            self.blob(repo, layer).await;
        }
        serde_json::from_slice(&config).unwrap()
    }
}

#[tokio::test]
#[ignore = "needs the e2e registry and images: run `make test`"]
async fn every_test_image_pulls_back_intact() {
    let summary = summary();
    // reqwest is built with rustls but no default crypto provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let puller = Puller {
        base: format!("http://{}", summary["registry"].as_str().unwrap()),
        http: reqwest::Client::new(),
    };
    let images = summary["images"].as_array().unwrap();
    assert!(images.len() >= 11, "all harness images are listed");
    let mut configs = std::collections::HashMap::new();
    for image in images {
        let repo = image["repository"].as_str().unwrap();
        let tag = image["tag"].as_str().unwrap();
        let top = puller
            .manifest(repo, tag, image["digest"].as_str().unwrap())
            .await;
        assert_eq!(top["mediaType"], image["media_type"], "{repo}");
        if let Some(children) = top["manifests"].as_array() {
            let arches: Vec<&str> = children
                .iter()
                .map(|c| c["platform"]["architecture"].as_str().unwrap())
                .collect();
            assert_eq!(arches, ["amd64", "arm64"], "{repo}");
            for child in children {
                let digest = child["digest"].as_str().unwrap();
                let manifest = puller.manifest(repo, digest, digest).await;
                let config = puller.image(repo, &manifest).await;
                assert_eq!(
                    config["architecture"], child["platform"]["architecture"],
                    "{repo}"
                );
            }
        } else {
            configs.insert(repo.to_string(), puller.image(repo, &top).await);
        }
    }
    // Spot checks that the images carry what the tests of later issues rely on.
    assert_eq!(configs["crius-test/user-uid"]["config"]["User"], "1234");
    assert_eq!(
        configs["crius-test/user-name"]["config"]["User"],
        "someuser"
    );
    let config = &configs["crius-test/config"]["config"];
    assert_eq!(config["StopSignal"], "SIGUSR1");
    assert_eq!(config["WorkingDir"], "/srv/work");
    assert_eq!(config["Entrypoint"][0], "/bin/echo");
    assert_eq!(
        configs["crius-test/layered"]["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let zstd_layer = &summary["images"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["repository"] == "crius-test/zstd")
        .unwrap()["layers"][0];
    assert_eq!(
        zstd_layer["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    let schema2 = images
        .iter()
        .find(|i| i["repository"] == "crius-test/docker-schema2")
        .unwrap();
    assert_eq!(
        schema2["media_type"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
}
