//! Pushing to an OCI distribution registry over plain HTTP (the harness's
//! registry listens on loopback only).

use crate::image::Image;
use crate::layer::Blob;
use anyhow::{Context, bail};
use reqwest::StatusCode;

pub struct Registry {
    /// "http://127.0.0.1:5000"
    base: String,
    http: reqwest::Client,
}

impl Registry {
    pub fn new(host: &str) -> anyhow::Result<Registry> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(60))
            .build()?;
        Ok(Registry {
            base: format!("http://{host}"),
            http,
        })
    }

    /// Monolithic upload (POST then PUT with the digest), skipped when present.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) -> anyhow::Result<()> {
        let url = format!("{}/v2/{repo}/blobs/{}", self.base, blob.digest);
        if self.http.head(&url).send().await?.status() == StatusCode::OK {
            return Ok(());
        }
        let start = self
            .http
            .post(format!("{}/v2/{repo}/blobs/uploads/", self.base))
            .send()
            .await?;
        if start.status() != StatusCode::ACCEPTED {
            bail!("starting upload to {repo}: {}", start.status());
        }
        let location = start
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .context("upload has no Location")?
            .to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let put = self
            .http
            .put(format!(
                "{location}{sep}digest={}",
                blob.digest.replace(':', "%3A")
            ))
            .header("content-type", "application/octet-stream")
            .body(blob.bytes.clone())
            .send()
            .await?;
        if put.status() != StatusCode::CREATED {
            bail!(
                "uploading {} to {repo}: {} {}",
                blob.digest,
                put.status(),
                put.text().await.unwrap_or_default()
            );
        }
        Ok(())
    }

    /// PUT a manifest or index under `reference` (a tag or its digest).
    pub async fn push_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Blob,
    ) -> anyhow::Result<()> {
        let resp = self
            .http
            .put(format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .header("content-type", &manifest.media_type)
            .body(manifest.bytes.clone())
            .send()
            .await?;
        if resp.status() != StatusCode::CREATED {
            bail!(
                "pushing manifest {repo}:{reference}: {} {}",
                resp.status(),
                resp.text().await.unwrap_or_default()
            );
        }
        let echoed = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|d| d.to_str().ok())
            .unwrap_or("");
        if echoed != manifest.digest {
            bail!(
                "registry stored {repo}:{reference} as {echoed:?}, expected {}",
                manifest.digest
            );
        }
        Ok(())
    }

    /// Blobs, then the manifest under its digest (for indexes) or `tag`.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: Option<&str>,
        image: &Image,
    ) -> anyhow::Result<()> {
        for blob in image.layers.iter().chain([&image.config]) {
            self.push_blob(repo, blob).await?;
        }
        self.push_manifest(repo, tag.unwrap_or(&image.manifest.digest), &image.manifest)
            .await
    }
}
