//! What crius records about a pulled image (in the store's `images` table).

use super::manifest::{ImageConfig, RunConfig};
use crate::cri;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: String,
    pub media_type: String,
    pub size: u64,
    pub diff_id: String,
    pub chain_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The config digest: Image.id and PullImageResponse.image_ref.
    pub id: String,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    /// The platform manifest, and the index it was chosen from, if any.
    pub manifest_digest: String,
    #[serde(default)]
    pub index_digest: Option<String>,
    pub layers: Vec<LayerRecord>,
    pub config: ImageConfig,
    /// Compressed bytes: config plus layers.
    pub size: u64,
    pub pulled_at: i64,
    #[serde(default)]
    pub pinned: bool,
    /// The manifest's annotations (a checkpoint image is known by one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageRecord {
    pub fn run_config(&self) -> &RunConfig {
        &self.config.config
    }

    /// Every blob this image needs kept.
    pub fn blobs(&self) -> impl Iterator<Item = &str> {
        [self.id.as_str(), self.manifest_digest.as_str()]
            .into_iter()
            .chain(self.index_digest.as_deref())
            .chain(self.layers.iter().map(|l| l.digest.as_str()))
    }

    /// Top layer first, as overlay's lowerdir wants them.
    pub fn chain_ids(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|l| l.chain_id.as_str())
    }

    pub fn to_cri(&self) -> cri::Image {
        // USER is "user[:group]": a number is a uid, anything else a name.
        let user = self.run_config().user.split(':').next().unwrap_or("");
        let (uid, username) = match user.parse::<i64>() {
            Ok(uid) => (Some(cri::Int64Value { value: uid }), String::new()),
            Err(_) => (None, user.to_string()),
        };
        cri::Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size: self.size.max(1),
            uid,
            username,
            spec: Some(cri::ImageSpec {
                image: self.id.clone(),
                annotations: self.annotations.clone().into_iter().collect(),
                ..Default::default()
            }),
            pinned: self.pinned,
        }
    }
}
