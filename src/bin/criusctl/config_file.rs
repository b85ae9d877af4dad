//! crictl-format config files (pod and container configs), JSON or YAML.

use anyhow::Context;
use serde::de::DeserializeOwned;

/// Reads a JSON (`.json`) or YAML (anything else) config file.
pub fn load<T: DeserializeOwned>(path: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {path}"))?;
    if path.ends_with(".json") || text.trim_start().starts_with('{') {
        serde_json::from_str(&text).with_context(|| format!("{path} is not a valid config"))
    } else {
        serde_yaml_ng::from_str(&text).with_context(|| format!("{path} is not a valid config"))
    }
}
