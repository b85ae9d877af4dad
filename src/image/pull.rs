//! PullImage: manifest (or index, then the node's platform), config, then every
//! layer downloaded and unpacked at once, each layer while it streams.
//!
//! A layer's bytes flow from the HTTP body through one blocking worker that
//! tees them into the content store (compressed digest and size checked) and
//! through the decompressor into the unpacker (diff ID checked). Layers unpack
//! into their own snapshot directories, so they need not wait for each other.
//! Any mismatch drops the pending blob and snapshot: nothing half-made stays.
//!
//! The pull's lease holds the config from before it is fetched, and the
//! manifests, layers and snapshots from before any of them is looked for,
//! until the record is saved; a failed pull then collects what it alone
//! made. Configs (by digest) and layers (by chain ID) are each fetched by
//! one flight however many pulls want them; a layer's blob is fetched once
//! even for two chains that share it.

use super::content::{ContentError, Ingest};
use super::lease::InFlight;
use super::manifest::{self, Compression, Descriptor, Fetched, ImageConfig, MAX_CONFIG_BYTES};
use super::record::{ImageRecord, LayerRecord};
use super::reference::{Reference, validate_digest};
use super::registry::{RegistryError, Repository};
use super::unpack::{self, HashingReader, UnpackError, Usage};
use super::{ImageError, Images, auth, auth::Credentials, hosts};
use crate::error::{Classify, ErrorKind};
use bytes::Bytes;
use sha2::{Digest, Sha256};
use std::cell::RefCell;
use std::io::Read;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::{Receiver, channel};

/// Chunks buffered between the download and the unpacking worker.
const CHANNEL_CHUNKS: usize = 64;

/// Why one layer failed (shared by every pull that waited for it).
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Unpack(#[from] UnpackError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error("uncompressed content has digest {actual}, but the config's diff_id is {expected}")]
    DiffId { expected: String, actual: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Registry(RegistryError),
    #[error("download: {0}")]
    Download(String),
}

impl Classify for LayerError {
    fn kind(&self) -> ErrorKind {
        match self {
            LayerError::Content(ContentError::Io { .. }) => ErrorKind::Internal,
            LayerError::Registry(e) => super::registry_kind(e),
            // The registry served content that does not verify or unpack.
            _ => ErrorKind::FailedPrecondition,
        }
    }
}

impl Images {
    /// Pulls `name` and returns its record (id = config digest). A failed
    /// pull collects what it made that nothing else holds.
    pub async fn pull(
        self: &Arc<Self>,
        name: &str,
        creds: &Credentials,
    ) -> Result<ImageRecord, ImageError> {
        self.pull_with(name, creds, None).await
    }

    /// `pull` with credentials issued for `issued_for` (the CRI's
    /// `server_address`; `None`: the image's registry): only endpoints on
    /// that host get them.
    pub async fn pull_with(
        self: &Arc<Self>,
        name: &str,
        creds: &Credentials,
        issued_for: Option<&str>,
    ) -> Result<ImageRecord, ImageError> {
        let started = Instant::now();
        let downloaded = Arc::new(AtomicU64::new(0));
        let lease = self.leases.begin();
        let result = self
            .pull_image(name, creds, issued_for, &lease, &downloaded)
            .await;
        drop(lease);
        if result.is_err() {
            // What this pull alone made goes with it (complete or absent).
            let this = self.clone();
            let collected = tokio::task::spawn_blocking(move || this.collect_garbage()).await;
            if let Ok(Err(e)) = collected {
                tracing::warn!(error = %e, "collecting what a failed pull left");
            }
        }
        crate::metrics::daemon::image_pull(
            result.as_ref().err().map(Classify::kind),
            downloaded.load(Ordering::Relaxed),
            started.elapsed(),
        );
        result
    }

    async fn pull_image(
        self: &Arc<Self>,
        name: &str,
        creds: &Credentials,
        issued_for: Option<&str>,
        lease: &InFlight,
        downloaded: &Arc<AtomicU64>,
    ) -> Result<ImageRecord, ImageError> {
        let reference = Reference::parse(name)?;
        let image = reference.to_string();
        let config_err = |reason: String| ImageError::Config {
            image: image.clone(),
            reason,
        };
        let endpoints = hosts::endpoints(&self.options.registry_config_path, &reference.domain)
            .map_err(|e| config_err(e.to_string()))?;
        let mut repo = Repository::with_endpoints(&reference.domain, &reference.path, endpoints);
        if let Some(host) = issued_for.filter(|h| !h.is_empty()) {
            repo.credentials_host = host.to_string();
        }
        repo.other_credentials = self.options.credentials_file.clone();
        let fallback;
        let creds = match creds {
            Credentials::Anonymous if !self.options.credentials_file.as_os_str().is_empty() => {
                fallback =
                    auth::from_docker_config(&self.options.credentials_file, &reference.domain)
                        .map_err(config_err)?
                        .unwrap_or_default();
                &fallback
            }
            given => given,
        };
        let reg = |source: RegistryError| ImageError::Registry {
            image: image.clone(),
            source,
        };
        let bad = |reason: String| ImageError::BadContent {
            image: image.clone(),
            reason,
        };

        let (top, content_type) = self
            .registry
            .manifest(&repo, reference.manifest_reference(), creds)
            .await
            .map_err(reg)?;
        let top_digest = sha256(&top);
        if let Some(pinned) = &reference.digest
            && *pinned != top_digest
        {
            return Err(bad(format!(
                "the registry served a manifest with digest {top_digest}, not {pinned}"
            )));
        }
        let (manifest, manifest_digest, manifest_body, index_digest) =
            match manifest::classify(&content_type, &top).map_err(&bad)? {
                Fetched::Manifest(m) => (m, top_digest.clone(), top.clone(), None),
                Fetched::Index(index) => {
                    let Some(entry) = manifest::select_platform(&index, &self.options.platform)
                    else {
                        let offered: Vec<String> = index
                            .manifests
                            .iter()
                            .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                            .collect();
                        return Err(bad(format!(
                            "no image for platform {} (the index has {offered:?})",
                            self.options.platform
                        )));
                    };
                    validate_digest(&entry.digest).map_err(&bad)?;
                    let (body, ct) = self
                        .registry
                        .manifest(&repo, &entry.digest, creds)
                        .await
                        .map_err(reg)?;
                    if sha256(&body) != entry.digest {
                        return Err(bad(format!(
                            "manifest {} does not match its digest",
                            entry.digest
                        )));
                    }
                    match manifest::classify(&ct, &body).map_err(&bad)? {
                        Fetched::Manifest(m) => {
                            (m, entry.digest.clone(), body, Some(top_digest.clone()))
                        }
                        Fetched::Index(_) => {
                            return Err(bad("an index inside an index is not supported".into()));
                        }
                    }
                }
            };

        validate_digest(&manifest.config.digest).map_err(&bad)?;
        lease.hold([manifest.config.digest.as_str()], []);
        let config_bytes = self
            .config_blob(&repo, &manifest.config, creds, &image)
            .await?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad(format!("image config is malformed: {e}")))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(bad(format!(
                "{} layers but {} diff_ids in the config",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        for d in diff_ids
            .iter()
            .chain(manifest.layers.iter().map(|l| &l.digest))
        {
            validate_digest(d).map_err(&bad)?;
        }
        let chain_ids = manifest::chain_ids(diff_ids);
        lease.hold(
            manifest
                .layers
                .iter()
                .map(|l| l.digest.as_str())
                .chain([manifest_digest.as_str(), top_digest.as_str()]),
            chain_ids.iter().map(String::as_str),
        );

        let mut tasks = tokio::task::JoinSet::new();
        for (i, layer) in manifest.layers.iter().enumerate() {
            let compression = manifest::layer_compression(&layer.media_type).map_err(&bad)?;
            let job = LayerJob {
                layer: layer.clone(),
                compression,
                diff_id: diff_ids[i].clone(),
                chain_id: chain_ids[i].clone(),
                downloaded: downloaded.clone(),
            };
            let (this, repo, creds) = (self.clone(), repo.clone(), creds.clone());
            tasks.spawn(async move {
                let layer = job.layer.digest.clone();
                this.ensure_layer(&repo, job, &creds)
                    .await
                    .map_err(|e| (layer, e))
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let result = joined.map_err(|e| bad(format!("layer task failed: {e}")))?;
            result.map_err(|(layer, source)| ImageError::Layer {
                image: image.clone(),
                layer,
                source,
            })?;
        }

        let layers: Vec<LayerRecord> = manifest
            .layers
            .iter()
            .zip(diff_ids.iter().zip(&chain_ids))
            .map(|(l, (diff_id, chain_id))| LayerRecord {
                digest: l.digest.clone(),
                media_type: l.media_type.clone(),
                size: l.size.max(0) as u64,
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
            })
            .collect();
        let size = config_bytes.len() as u64 + layers.iter().map(|l| l.size).sum::<u64>();
        let record = ImageRecord {
            id: manifest.config.digest.clone(),
            repo_tags: reference.repo_tag().into_iter().collect(),
            repo_digests: vec![reference.repo_digest(&top_digest)],
            manifest_digest,
            index_digest,
            layers,
            config,
            size,
            pulled_at: crate::time::now_nanos(),
            pinned: false,
            annotations: manifest.annotations.clone(),
        };
        // Manifests and config join the store, then the record: fsyncs, so
        // off the async workers.
        let this = self.clone();
        let manifest_blob = record.manifest_digest.clone();
        let record = tokio::task::spawn_blocking(move || {
            let put = |digest: &str, body: &[u8]| {
                this.content
                    .put(digest, body)
                    .map_err(|source| ImageError::Content {
                        image: image.clone(),
                        source,
                    })
            };
            put(&record.id, &config_bytes)?;
            put(&manifest_blob, &manifest_body)?;
            if let Some(index) = &record.index_digest {
                put(index, &top)?;
            }
            let record = this.save(record)?;
            tracing::info!(image = %image, id = %record.id, "pulled");
            Ok::<_, ImageError>(record)
        })
        .await
        .map_err(|e| ImageError::Io {
            path: "pull".into(),
            source: std::io::Error::other(e.to_string()),
        })??;
        Ok(record)
    }

    /// The config blob, from the store or else from the registry by one
    /// flight for all concurrent pulls. The caller holds it.
    async fn config_blob(
        self: &Arc<Self>,
        repo: &Repository,
        desc: &Descriptor,
        creds: &Credentials,
        image: &str,
    ) -> Result<Vec<u8>, ImageError> {
        if desc.size < 0 || desc.size as u64 > MAX_CONFIG_BYTES {
            return Err(ImageError::BadContent {
                image: image.into(),
                reason: format!("config size {} is out of bounds", desc.size),
            });
        }
        if !self.content.has(&desc.digest) {
            let (this, repo, desc, creds, image) = (
                self.clone(),
                repo.clone(),
                desc.clone(),
                creds.clone(),
                image.to_string(),
            );
            let key = desc.digest.clone();
            let work = async move {
                this.fetch_config(&repo, &desc, &creds, &image)
                    .await
                    .map_err(Arc::new)
            };
            self.blob_flights
                .run(&key, work)
                .await
                .unwrap_or_else(|lost| {
                    Err(Arc::new(ImageError::Io {
                        path: format!("fetching config {key}"),
                        source: std::io::Error::other(lost),
                    }))
                })
                .map_err(ImageError::Shared)?;
        }
        self.content
            .read(&desc.digest)
            .map_err(|source| ImageError::Content {
                image: image.into(),
                source,
            })
    }

    /// Downloads a config (bounded, verified) into the content store.
    async fn fetch_config(
        &self,
        repo: &Repository,
        desc: &Descriptor,
        creds: &Credentials,
        image: &str,
    ) -> Result<(), ImageError> {
        // Held while fetched, whoever waits for it.
        let work = self.leases.begin();
        work.hold([desc.digest.as_str()], []);
        if self.content.has(&desc.digest) {
            return Ok(());
        }
        let bad = |reason: String| ImageError::BadContent {
            image: image.into(),
            reason,
        };
        tracing::debug!(blob = %desc.digest, "downloading config");
        let mut resp = self
            .registry
            .blob(repo, &desc.digest, creds)
            .await
            .map_err(|source| ImageError::Registry {
                image: image.into(),
                source,
            })?;
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| bad(format!("config download: {e}")))?
        {
            body.extend_from_slice(&chunk);
            if body.len() as u64 > desc.size as u64 {
                return Err(bad(format!(
                    "config {} is longer than its {} bytes",
                    desc.digest, desc.size
                )));
            }
        }
        if body.len() as u64 != desc.size as u64 || sha256(&body) != desc.digest {
            return Err(bad(format!(
                "config {} does not match its digest and size",
                desc.digest
            )));
        }
        self.content
            .put(&desc.digest, &body)
            .map_err(|source| ImageError::Content {
                image: image.into(),
                source,
            })
    }

    /// Makes sure a layer's snapshot exists: the pull holds its chain ID
    /// already, so a snapshot seen here stays; else one flight per chain ID
    /// makes it for every pull that wants it.
    async fn ensure_layer(
        self: &Arc<Self>,
        repo: &Repository,
        job: LayerJob,
        creds: &Credentials,
    ) -> Result<(), Arc<LayerError>> {
        if self.snapshots.exists(&job.chain_id) {
            return Ok(());
        }
        let key = job.chain_id.clone();
        let (this, repo, creds) = (self.clone(), repo.clone(), creds.clone());
        let work = async move { this.make_layer(&repo, job, &creds).await.map_err(Arc::new) };
        self.layer_flights
            .run(&key, work)
            .await
            .unwrap_or_else(|lost| Err(Arc::new(LayerError::Download(lost.to_string()))))
    }

    /// Downloads (unless stored) and unpacks one layer into its snapshot.
    async fn make_layer(
        &self,
        repo: &Repository,
        job: LayerJob,
        creds: &Credentials,
    ) -> Result<(), LayerError> {
        // Held while made, whoever waits for it.
        let work = self.leases.begin();
        work.hold([job.layer.digest.as_str()], [job.chain_id.as_str()]);
        if self.snapshots.exists(&job.chain_id) {
            return Ok(());
        }
        // The same blob under another parent is another chain: its flight
        // waits here and then unpacks the stored blob.
        let _blob = self.content.lock(&job.layer.digest).await;
        let _slot = self
            .downloads
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| LayerError::Download(e.to_string()))?;
        let pending = self.snapshots.prepare(&job.chain_id)?;
        let fs = pending.fs();
        let (compression, diff_id) = (job.compression, job.diff_id.clone());
        let usage = if self.content.has(&job.layer.digest) {
            let blob = self.content.path(&job.layer.digest);
            tokio::task::spawn_blocking(move || {
                let file = std::fs::File::open(&blob)?;
                unpack_verified(file, None, compression, &fs, &diff_id)
            })
            .await
            .map_err(|e| LayerError::Download(e.to_string()))??
        } else {
            tracing::debug!(blob = %job.layer.digest, size = job.layer.size, "downloading layer");
            let mut resp = self
                .registry
                .blob(repo, &job.layer.digest, creds)
                .await
                .map_err(LayerError::Registry)?;
            let ingest = self.content.writer(&job.layer.digest, job.layer.size)?;
            let (tx, rx) = channel::<Bytes>(CHANNEL_CHUNKS);
            let worker = tokio::task::spawn_blocking(move || {
                unpack_verified(
                    ChannelReader {
                        rx,
                        chunk: Bytes::new(),
                    },
                    Some(ingest),
                    compression,
                    &fs,
                    &diff_id,
                )
            });
            let mut download_error = None;
            loop {
                match resp.chunk().await {
                    Ok(Some(chunk)) => {
                        job.downloaded
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        // A send fails only when the worker gave up; it says why.
                        if tx.send(chunk).await.is_err() {
                            break;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        download_error = Some(e.to_string());
                        break;
                    }
                }
            }
            drop(tx);
            let result = worker
                .await
                .map_err(|e| LayerError::Download(e.to_string()))?;
            if let Some(e) = download_error {
                return Err(LayerError::Download(e));
            }
            result?
        };
        self.snapshots.commit(pending, &job.chain_id, usage)?;
        Ok(())
    }
}

struct LayerJob {
    layer: Descriptor,
    compression: Compression,
    diff_id: String,
    chain_id: String,
    /// Compressed bytes the whole pull downloaded, for the metrics.
    downloaded: Arc<AtomicU64>,
}

/// Unpacks `source` (compressed) into `dest`, checking the diff ID, and when
/// `ingest` is given stores the compressed bytes, checking digest and size.
fn unpack_verified(
    source: impl Read,
    ingest: Option<Ingest>,
    compression: Compression,
    dest: &Path,
    diff_id: &str,
) -> Result<Usage, LayerError> {
    let failed = Rc::new(RefCell::new(None));
    let mut tee = TeeReader {
        inner: source,
        ingest,
        failed: failed.clone(),
    };
    // A storage failure reaches the tar reader as a bare I/O error; the
    // shared cell keeps the real cause, which wins over what unpacking saw.
    let cause = |e: LayerError| match failed.borrow_mut().take() {
        Some(content) => LayerError::Content(content),
        None => e,
    };
    let usage = {
        let decompressed =
            unpack::decompress(&mut tee, compression).map_err(|e| cause(e.into()))?;
        let mut hashing = HashingReader::new(decompressed);
        let usage = unpack::unpack(&mut hashing, dest).map_err(|e| cause(e.into()))?;
        let actual = hashing.finish().map_err(|e| cause(e.into()))?;
        if actual != diff_id {
            return Err(cause(LayerError::DiffId {
                expected: diff_id.to_string(),
                actual,
            }));
        }
        usage
    };
    // The compressed stream may go on past what the decompressor needed.
    std::io::copy(&mut tee, &mut std::io::sink()).map_err(|e| cause(e.into()))?;
    if let Some(ingest) = tee.ingest.take() {
        ingest.commit()?;
    }
    Ok(usage)
}

/// Copies what it reads into the content store's ingest.
struct TeeReader<R> {
    inner: R,
    ingest: Option<Ingest>,
    failed: Rc<RefCell<Option<ContentError>>>,
}

impl<R: Read> Read for TeeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(ingest) = &mut self.ingest
            && let Err(e) = ingest.write(&buf[..n])
        {
            let message = e.to_string();
            *self.failed.borrow_mut() = Some(e);
            return Err(std::io::Error::other(message));
        }
        Ok(n)
    }
}

/// Reads the chunks the download sends.
struct ChannelReader {
    rx: Receiver<Bytes>,
    chunk: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk,
                None => return Ok(0), // download finished (or stopped)
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
