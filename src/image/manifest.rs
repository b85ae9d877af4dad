//! OCI and Docker schema2 manifests, indexes and image configs: the subset of
//! the formats crius reads, and the choice of a platform from an index.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// The Accept header for manifest requests, most preferred first.
pub const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Larger manifests are refused before they are read in full.
pub const MAX_MANIFEST_BYTES: u64 = 4 * 1024 * 1024;
/// Larger image configs are refused.
pub const MAX_CONFIG_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// This node's platform, as Go names it.
    pub fn host() -> Platform {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        Platform {
            architecture: architecture.into(),
            os: "linux".into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parses "os/arch[/variant]".
    pub fn parse(text: &str) -> Option<Platform> {
        let mut parts = text.split('/');
        let os = parts.next().filter(|s| !s.is_empty())?.to_string();
        let architecture = parts.next().filter(|s| !s.is_empty())?.to_string();
        let variant = parts.next().map(str::to_string);
        parts.next().is_none().then_some(Platform {
            architecture,
            os,
            variant,
        })
    }

    /// Whether an index entry's platform runs here. A missing variant on
    /// either side matches (arm64 images rarely name "v8").
    pub fn matches(&self, candidate: &Platform) -> bool {
        self.os == candidate.os
            && self.architecture == candidate.architecture
            && match (&self.variant, &candidate.variant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// An image manifest (OCI or Docker schema2).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default)]
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// An index or manifest list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default)]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

/// The fields of an image config crius uses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: RunConfig,
    pub rootfs: RootFs,
}

/// The runtime defaults of an image (Docker's capitalised keys).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunConfig {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub entrypoint: Vec<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub cmd: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub working_dir: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stop_signal: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub labels: HashMap<String, String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub volumes: HashMap<String, serde_json::Value>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type", default)]
    pub kind: String,
    pub diff_ids: Vec<String>,
}

/// Docker writes `null` for empty lists and maps.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// What a manifest endpoint returned.
pub enum Fetched {
    Index(Index),
    Manifest(Manifest),
}

/// Classifies a manifest body by its Content-Type, falling back to its
/// `mediaType` field; schema1 and unknown types are errors.
pub fn classify(content_type: &str, body: &[u8]) -> Result<Fetched, String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("manifest is not JSON: {e}"))?;
    let declared = value
        .get("mediaType")
        .and_then(|m| m.as_str())
        .unwrap_or("");
    let content_type = content_type.split(';').next().unwrap_or("").trim();
    let media_type = match content_type {
        OCI_MANIFEST
        | OCI_INDEX
        | DOCKER_MANIFEST
        | DOCKER_LIST
        | DOCKER_SCHEMA1
        | DOCKER_SCHEMA1_SIGNED => content_type,
        _ if !declared.is_empty() => declared,
        // Bare OCI documents may omit mediaType: tell them apart by shape.
        _ if value.get("manifests").is_some() => OCI_INDEX,
        _ => OCI_MANIFEST,
    };
    if value.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1)
        || matches!(media_type, DOCKER_SCHEMA1 | DOCKER_SCHEMA1_SIGNED)
    {
        return Err(
            "Docker schema1 manifests are not supported; push the image with a current client"
                .into(),
        );
    }
    match media_type {
        OCI_INDEX | DOCKER_LIST => serde_json::from_value(value).map(Fetched::Index),
        OCI_MANIFEST | DOCKER_MANIFEST => serde_json::from_value(value).map(Fetched::Manifest),
        other => return Err(format!("unsupported manifest media type {other:?}")),
    }
    .map_err(|e| format!("malformed manifest: {e}"))
}

/// The entry of `index` for `platform`, preferring an exact variant match.
pub fn select_platform<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    let candidates: Vec<&Descriptor> = index
        .manifests
        .iter()
        .filter(|d| d.platform.as_ref().is_some_and(|p| platform.matches(p)))
        .collect();
    candidates
        .iter()
        .find(|d| d.platform.as_ref().and_then(|p| p.variant.as_ref()) == platform.variant.as_ref())
        .or(candidates.first())
        .copied()
}

/// Layer compression, from a layer's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

pub fn layer_compression(media_type: &str) -> Result<Compression, String> {
    match media_type {
        "application/vnd.oci.image.layer.v1.tar"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
        "application/vnd.oci.image.layer.v1.tar+gzip"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
        | "application/vnd.docker.image.rootfs.diff.tar.gzip"
        | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
        "application/vnd.oci.image.layer.v1.tar+zstd"
        | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => Ok(Compression::Zstd),
        other => Err(format!("unsupported layer media type {other:?}")),
    }
}

/// Chain IDs: chain[0] = diff[0]; chain[n] = sha256(chain[n-1] + " " + diff[n]).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    use sha2::{Digest, Sha256};
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(prev) => format!(
                "sha256:{}",
                hex::encode(Sha256::digest(format!("{prev} {diff}")))
            ),
        };
        out.push(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_selection_prefers_exact_variant() {
        let entry = |arch: &str, variant: Option<&str>, digest: &str| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            urls: vec![],
        };
        let index = Index {
            schema_version: 2,
            media_type: None,
            manifests: vec![
                entry("arm", Some("v6"), "a6"),
                entry("arm", Some("v7"), "a7"),
                entry("amd64", None, "x"),
            ],
        };
        let pick = |p: &str| {
            select_platform(&index, &Platform::parse(p).unwrap()).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64").as_deref(), Some("x"));
        assert_eq!(pick("linux/arm/v7").as_deref(), Some("a7"));
        assert_eq!(pick("linux/arm").as_deref(), Some("a6"));
        assert_eq!(pick("linux/s390x"), None);
        assert_eq!(Platform::host().os, "linux");
    }

    #[test]
    fn classify_by_content_type_and_shape() {
        let m =
            br#"{"schemaVersion":2,"config":{"mediaType":"x","digest":"d","size":1},"layers":[]}"#;
        assert!(matches!(
            classify(OCI_MANIFEST, m),
            Ok(Fetched::Manifest(_))
        ));
        assert!(matches!(
            classify("application/json", m),
            Ok(Fetched::Manifest(_))
        ));
        let i = br#"{"schemaVersion":2,"manifests":[]}"#;
        assert!(matches!(classify("", i), Ok(Fetched::Index(_))));
        let s1 = br#"{"schemaVersion":1,"name":"x"}"#;
        assert!(
            classify(DOCKER_SCHEMA1_SIGNED, s1)
                .err()
                .unwrap()
                .contains("schema1")
        );
        assert!(
            classify(OCI_MANIFEST, b"<html>")
                .err()
                .unwrap()
                .contains("not JSON")
        );
        assert!(
            classify(OCI_MANIFEST, b"{\"schemaVersion\":2}")
                .err()
                .unwrap()
                .contains("malformed")
        );
    }

    #[test]
    fn docker_nulls_are_empty() {
        let c: ImageConfig =
            serde_json::from_str(r#"{"config":{"Env":null,"Cmd":null,"User":"1:2"},"rootfs":{"type":"layers","diff_ids":[]}}"#).unwrap();
        assert!(c.config.env.is_empty() && c.config.cmd.is_empty());
        assert_eq!(c.config.user, "1:2");
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let ids = chain_ids(&["sha256:a".into(), "sha256:b".into()]);
        assert_eq!(ids[0], "sha256:a");
        use sha2::{Digest, Sha256};
        assert_eq!(
            ids[1],
            format!(
                "sha256:{}",
                hex::encode(Sha256::digest("sha256:a sha256:b"))
            )
        );
    }
}
