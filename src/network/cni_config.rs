//! CNI network configuration files (CNI spec 1.x; 0.4.0 and older accepted).
//!
//! `.conflist` files hold a network with a `plugins` list; `.conf` and `.json`
//! files hold a single plugin config, which is treated as a one-plugin list.
//! Files are tried in lexical order and the first valid one is the network.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// A loaded network configuration list.
#[derive(Debug, Clone)]
pub struct ConfigList {
    pub file: PathBuf,
    pub name: String,
    pub cni_version: String,
    pub disable_check: bool,
    /// Plugin configs in order; each has a string `type`.
    pub plugins: Vec<Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CniConfigError {
    #[error("cannot read CNI config dir {dir}: {source}")]
    ReadDir {
        dir: PathBuf,
        source: std::io::Error,
    },
}

#[derive(Debug, thiserror::Error)]
enum Invalid {
    #[error("cannot read: {0}")]
    Io(#[from] std::io::Error),
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Shape(String),
}

impl ConfigList {
    /// Plugin types whose binaries are in none of `bin_dirs`.
    pub fn missing_plugins(&self, bin_dirs: &[PathBuf]) -> Vec<String> {
        self.plugin_types()
            .filter(|t| !bin_dirs.iter().any(|d| d.join(t).is_file()))
            .map(str::to_string)
            .collect()
    }

    pub fn plugin_types(&self) -> impl Iterator<Item = &str> {
        self.plugins
            .iter()
            .filter_map(|p| p.get("type").and_then(Value::as_str))
    }
}

/// The lexically first valid config in `dir`; `Ok(None)` when there is none
/// (including when the directory does not exist). Invalid files are skipped
/// with a warning, as kubelet-era runtimes do.
pub fn load_first(dir: &Path) -> Result<Option<ConfigList>, CniConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CniConfigError::ReadDir {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("conflist" | "conf" | "json")
            )
        })
        .collect();
    files.sort();
    for file in files {
        match load_file(&file) {
            Ok(list) => return Ok(Some(list)),
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "skipping invalid CNI config")
            }
        }
    }
    Ok(None)
}

fn load_file(file: &Path) -> Result<ConfigList, Invalid> {
    let doc: Value = serde_json::from_slice(&std::fs::read(file)?)?;
    let text = |key: &str| doc.get(key).and_then(Value::as_str).map(str::to_string);
    let is_list = file.extension().is_some_and(|e| e == "conflist");
    let plugins = if is_list {
        doc.get("plugins")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| Invalid::Shape("a .conflist needs a \"plugins\" array".into()))?
    } else {
        vec![doc.clone()]
    };
    if plugins.is_empty() {
        return Err(Invalid::Shape("\"plugins\" is empty".into()));
    }
    if let Some(i) = plugins.iter().position(|p| {
        p.get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    }) {
        return Err(Invalid::Shape(format!("plugin {i} has no \"type\"")));
    }
    let name = text("name")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| Invalid::Shape("no \"name\"".into()))?;
    Ok(ConfigList {
        file: file.to_path_buf(),
        name,
        cni_version: text("cniVersion").unwrap_or_else(|| "0.4.0".into()),
        disable_check: doc
            .get("disableCheck")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        plugins,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    #[test]
    fn first_valid_file_wins_and_invalid_ones_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "00-broken.conflist", "{not json");
        write(
            dir.path(),
            "05-noplugins.conflist",
            r#"{"name":"x","plugins":[]}"#,
        );
        write(
            dir.path(),
            "10-net.conflist",
            r#"{"cniVersion":"1.0.0","name":"podnet","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        );
        write(
            dir.path(),
            "20-other.conf",
            r#"{"cniVersion":"0.4.0","name":"other","type":"bridge"}"#,
        );
        write(dir.path(), "README", "ignored");
        let list = load_first(dir.path()).unwrap().unwrap();
        assert_eq!(list.name, "podnet");
        assert_eq!(
            list.plugin_types().collect::<Vec<_>>(),
            ["bridge", "portmap"]
        );
    }

    #[test]
    fn single_plugin_conf_is_a_one_plugin_list() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "10-one.conf",
            r#"{"cniVersion":"0.4.0","name":"one","type":"bridge"}"#,
        );
        let list = load_first(dir.path()).unwrap().unwrap();
        assert_eq!(list.plugins.len(), 1);
        assert_eq!(list.cni_version, "0.4.0");
    }

    #[test]
    fn missing_dir_means_no_config() {
        assert!(load_first(Path::new("/nonexistent/cni")).unwrap().is_none());
    }

    #[test]
    fn missing_plugins_are_listed() {
        let dir = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        std::fs::write(bin.path().join("bridge"), "").unwrap();
        write(
            dir.path(),
            "10.conflist",
            r#"{"name":"n","plugins":[{"type":"bridge"},{"type":"nope"}]}"#,
        );
        let list = load_first(dir.path()).unwrap().unwrap();
        assert_eq!(list.missing_plugins(&[bin.path().to_path_buf()]), ["nope"]);
    }
}
