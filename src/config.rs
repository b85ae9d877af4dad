//! Daemon configuration: one TOML file merged over the compiled-in default.
//!
//! The annotated default (`manifests/config.toml`) is the only place defaults
//! are written down: an operator's file is merged over it key by key, so every
//! key has a documented default and criusd runs with no file at all.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The default configuration, with its comments, as shipped.
pub const DEFAULT_TOML: &str = include_str!("../manifests/config.toml");

/// Where criusd looks for its configuration when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/crius/config.toml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub log_level: String,
    pub log_format: LogFormat,
    pub runtime: RuntimeSection,
    pub image: ImageSection,
    pub network: NetworkSection,
    pub streaming: StreamingSection,
    pub metrics: MetricsSection,
    pub nri: NriSection,
}

/// NRI (Node Resource Interface) plugins: `crate::nri`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NriSection {
    pub enable: bool,
    /// Where plugins started by others connect; "" or
    /// `disable_connections` accepts none.
    pub socket_path: PathBuf,
    pub disable_connections: bool,
    /// Pre-installed plugins (`<index>-<name>` executables) started at start.
    pub plugin_path: PathBuf,
    /// Their configuration: `<index>-<name>.conf` or `<name>.conf`.
    pub plugin_config_path: PathBuf,
    pub plugin_registration_timeout_ms: u64,
    pub plugin_request_timeout_ms: u64,
}

/// criusd's own Prometheus endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// `ip:port` serving `/metrics`; "" turns it off; port 0 picks one.
    pub address: String,
}

/// Where Exec, Attach and PortForward URLs point.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamingSection {
    pub address: String,
    /// 0: a free port chosen at start.
    pub port: u16,
    /// PEM certificate chain and key: both set, the server speaks TLS.
    pub tls_cert_file: PathBuf,
    pub tls_key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    pub platform: String,
    pub max_concurrent_downloads: u32,
    pub registry_config_path: PathBuf,
    pub credentials_file: PathBuf,
    pub pinned_images: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    pub default_handler: String,
    pub cgroup_driver: CgroupDriverSetting,
    pub handlers: BTreeMap<String, HandlerConfig>,
    pub absent_mount_sources_to_reject: Vec<PathBuf>,
    pub image_volumes_noexec: bool,
    /// CDI spec directories; a later one overrides an earlier one's device.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Exec and ExecSync through `<runtime> exec` even where criusd's
    /// helper (`crius-enter`) can enter the container.
    pub exec_in_runtime: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriverSetting {
    Auto,
    Cgroupfs,
    Systemd,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandlerConfig {
    pub binary: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkSection {
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub cni_plugin_timeout_seconds: u64,
    pub builtin: BuiltinNetworkSection,
}

/// crius's own bridge network, for nodes without a CNI config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinNetworkSection {
    pub enabled: bool,
    pub bridge: String,
    /// At most one IPv4 and one IPv6 subnet.
    pub subnets: Vec<ipnet::IpNet>,
    pub mtu: u32,
    pub masquerade: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{origin}: unknown key `{key}`")]
    UnknownKey { origin: String, key: String },
    #[error("{origin}: key `{key}`: {message}")]
    BadValue {
        origin: String,
        key: String,
        message: String,
    },
}

/// Where a configuration came from, for error messages.
const BUILTIN: &str = "<built-in default>";

/// Values given as criusd flags, which win over the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<PathBuf>,
    pub root: Option<PathBuf>,
    pub state: Option<PathBuf>,
    pub log_level: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Default for Config {
    fn default() -> Self {
        parse(DEFAULT_TOML, Path::new(BUILTIN))
            .expect("the built-in default configuration is valid")
    }
}

impl Config {
    /// Loads `path`, or the default path when it exists, merged over the
    /// built-in default. An explicitly named file must exist.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                Ok(Config::default())
            }
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Applies command-line flags and checks the result.
    pub fn apply(&mut self, flags: Overrides) -> Result<(), ConfigError> {
        let Overrides {
            listen,
            root,
            state,
            log_level,
            log_format,
        } = flags;
        self.listen = listen.unwrap_or(std::mem::take(&mut self.listen));
        self.root = root.unwrap_or(std::mem::take(&mut self.root));
        self.state = state.unwrap_or(std::mem::take(&mut self.state));
        self.log_level = log_level.unwrap_or(std::mem::take(&mut self.log_level));
        self.log_format = log_format.unwrap_or(self.log_format);
        self.validate("command line")
    }

    /// Checks what types alone cannot; `origin` says where the values came from.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| ConfigError::BadValue {
            origin: origin.to_string(),
            key: key.to_string(),
            message,
        };
        for (key, value) in [
            ("listen", &self.listen),
            ("root", &self.root),
            ("state", &self.state),
        ] {
            if !value.is_absolute() {
                return Err(bad(
                    key,
                    format!("{} is not an absolute path", value.display()),
                ));
            }
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log_level) {
            return Err(bad(
                "log_level",
                format!("{:?} is not a log filter: {e}", self.log_level),
            ));
        }
        if !self
            .runtime
            .handlers
            .contains_key(&self.runtime.default_handler)
        {
            let known: Vec<&str> = self.runtime.handlers.keys().map(String::as_str).collect();
            return Err(bad(
                "runtime.default_handler",
                format!(
                    "{:?} is not one of the configured handlers {known:?}",
                    self.runtime.default_handler
                ),
            ));
        }
        for (name, handler) in &self.runtime.handlers {
            if name.is_empty() || handler.binary.is_empty() {
                return Err(bad(
                    &format!("runtime.handlers.{name}.binary"),
                    "handler names and binaries must not be empty".into(),
                ));
            }
        }
        if let Some(dir) = self.runtime.cdi_spec_dirs.iter().find(|d| !d.is_absolute()) {
            return Err(bad(
                "runtime.cdi_spec_dirs",
                format!("{} is not an absolute path", dir.display()),
            ));
        }
        if !self.image.platform.is_empty()
            && crate::image::manifest::Platform::parse(&self.image.platform).is_none()
        {
            return Err(bad(
                "image.platform",
                format!("{:?} is not os/arch[/variant]", self.image.platform),
            ));
        }
        if !(1..=64).contains(&self.image.max_concurrent_downloads) {
            return Err(bad(
                "image.max_concurrent_downloads",
                "must be between 1 and 64".into(),
            ));
        }
        let (cert, key) = (&self.streaming.tls_cert_file, &self.streaming.tls_key_file);
        if cert.as_os_str().is_empty() != key.as_os_str().is_empty() {
            return Err(bad(
                if cert.as_os_str().is_empty() {
                    "streaming.tls_cert_file"
                } else {
                    "streaming.tls_key_file"
                },
                "TLS needs both streaming.tls_cert_file and streaming.tls_key_file".into(),
            ));
        }
        if self.network.cni_bin_dirs.is_empty() {
            return Err(bad(
                "network.cni_bin_dirs",
                "at least one directory is needed".into(),
            ));
        }
        if !(1..=3600).contains(&self.network.cni_plugin_timeout_seconds) {
            return Err(bad(
                "network.cni_plugin_timeout_seconds",
                "must be between 1 and 3600".into(),
            ));
        }
        if !self.metrics.address.is_empty()
            && self
                .metrics
                .address
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return Err(bad(
                "metrics.address",
                format!(
                    "{:?} is not ip:port (e.g. \"127.0.0.1:9327\" or \"[::1]:9327\"), nor \"\" for off",
                    self.metrics.address
                ),
            ));
        }
        for (key, value) in [
            ("nri.socket_path", &self.nri.socket_path),
            ("nri.plugin_path", &self.nri.plugin_path),
            ("nri.plugin_config_path", &self.nri.plugin_config_path),
        ] {
            if !value.as_os_str().is_empty() && !value.is_absolute() {
                return Err(bad(
                    key,
                    format!("{} is not an absolute path", value.display()),
                ));
            }
        }
        for (key, value) in [
            (
                "nri.plugin_registration_timeout_ms",
                self.nri.plugin_registration_timeout_ms,
            ),
            (
                "nri.plugin_request_timeout_ms",
                self.nri.plugin_request_timeout_ms,
            ),
        ] {
            if !(1..=600_000).contains(&value) {
                return Err(bad(key, "must be between 1 and 600000".into()));
            }
        }
        self.network
            .builtin
            .validate()
            .map_err(|(key, message)| bad(&format!("network.builtin.{key}"), message))
    }
}

impl BuiltinNetworkSection {
    /// (key, problem) for a value the built-in network cannot use.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        let name = &self.bridge;
        if name.is_empty()
            || name.len() > 15
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err((
                "bridge",
                format!("{name:?} is not an interface name (1-15 of a-z, 0-9, -, _, .)"),
            ));
        }
        if !(576..=65535).contains(&self.mtu) {
            return Err(("mtu", format!("{} is not between 576 and 65535", self.mtu)));
        }
        let (v4, v6): (Vec<&ipnet::IpNet>, Vec<_>) =
            self.subnets.iter().partition(|s| s.addr().is_ipv4());
        if v4.len() > 1 || v6.len() > 1 {
            return Err((
                "subnets",
                "at most one IPv4 and one IPv6 subnet".to_string(),
            ));
        }
        if self.enabled && self.subnets.is_empty() {
            return Err(("subnets", "at least one subnet is needed".to_string()));
        }
        for subnet in &self.subnets {
            let max = if subnet.addr().is_ipv4() { 29 } else { 125 };
            if subnet.prefix_len() > max {
                return Err((
                    "subnets",
                    format!("{subnet} is too small for pods (prefix at most /{max})"),
                ));
            }
        }
        Ok(())
    }
}

/// Parses an operator's file merged over the built-in default.
pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
    let syntax = |e: toml::de::Error| ConfigError::Syntax {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut merged: toml::Table = DEFAULT_TOML.parse().map_err(syntax)?;
    let user: toml::Table = text.parse().map_err(syntax)?;
    let origin = format!("config file {}", path.display());
    merge(&mut merged, user, "", &origin)?;
    // Unknown keys and wrong types were caught by `merge`; what is left is a
    // bad value, such as an unknown enum variant.
    let config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
            ConfigError::BadValue {
                origin: origin.clone(),
                key: e.path().to_string(),
                message: e.inner().to_string(),
            }
        })?;
    config.validate(&origin)?;
    Ok(config)
}

/// Deep-merges `user` into `base`. A key the default lacks is unknown, except
/// under open tables (`runtime.handlers`), whose entries take the shape of the
/// default's first entry; a value whose type differs from the default's is bad.
fn merge(
    base: &mut toml::Table,
    user: toml::Table,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    const OPEN_TABLES: &[&str] = &["runtime.handlers"];
    let open = OPEN_TABLES.contains(&prefix);
    let template = if open {
        base.values().next().cloned()
    } else {
        None
    };
    for (key, value) in user {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let existing = match base.get_mut(&key) {
            Some(existing) => existing,
            None => match &template {
                Some(template) => base.entry(key.clone()).or_insert(template.clone()),
                None => {
                    return Err(ConfigError::UnknownKey {
                        origin: origin.to_string(),
                        key: full,
                    });
                }
            },
        };
        match (existing, value) {
            (toml::Value::Table(base_table), toml::Value::Table(user_table)) => {
                merge(base_table, user_table, &full, origin)?
            }
            (existing, value) if existing.same_type(&value) => *existing = value,
            (existing, value) => {
                return Err(ConfigError::BadValue {
                    origin: origin.to_string(),
                    key: full,
                    message: format!(
                        "expected {}, found {}",
                        existing.type_str(),
                        value.type_str()
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Config, ConfigError> {
        parse(text, Path::new("test.toml"))
    }

    #[test]
    fn builtin_default_is_valid_and_complete() {
        let config = Config::default();
        assert_eq!(config.listen, Path::new("/run/crius/crius.sock"));
        assert_eq!(config.runtime.default_handler, "runc");
        assert!(config.runtime.handlers.contains_key("crun"));
        assert_eq!(config.log_format, LogFormat::Plain);
    }

    #[test]
    fn empty_file_gives_the_default() {
        assert_eq!(parse_str("").unwrap(), Config::default());
    }

    #[test]
    fn user_keys_override_and_tables_merge() {
        let config = parse_str(
            "root = \"/srv/crius\"\n[runtime]\ndefault_handler = \"crun\"\n[runtime.handlers.kata]\nbinary = \"/opt/kata/runtime\"\n",
        )
        .unwrap();
        assert_eq!(config.root, Path::new("/srv/crius"));
        assert_eq!(config.runtime.default_handler, "crun");
        assert_eq!(config.runtime.handlers.len(), 3);
        assert_eq!(config.runtime.handlers["kata"].binary, "/opt/kata/runtime");
        assert_eq!(config.listen, Config::default().listen);
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = parse_str("[runtime]\ncgroups = \"v2\"\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown key `runtime.cgroups`"),
            "{err}"
        );
        let err = parse_str("[runtime.handlers.x]\nbinary = \"x\"\npath = \"y\"\n").unwrap_err();
        assert!(
            err.to_string().contains("`runtime.handlers.x.path`"),
            "{err}"
        );
    }

    #[test]
    fn wrong_types_and_values_are_named() {
        let err = parse_str("listen = 5\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("key `listen`: expected string, found integer"),
            "{err}"
        );
        let err = parse_str("log_format = \"xml\"\n").unwrap_err();
        assert!(err.to_string().contains("key `log_format`"), "{err}");
        let err = parse_str("[runtime]\ncgroup_driver = \"v3\"\n").unwrap_err();
        assert!(
            err.to_string().contains("key `runtime.cgroup_driver`"),
            "{err}"
        );
        let err = parse_str("state = \"relative/dir\"\n").unwrap_err();
        assert!(err.to_string().contains("key `state`"), "{err}");
        let err = parse_str("[runtime]\ndefault_handler = \"kata\"\n").unwrap_err();
        assert!(
            err.to_string().contains("key `runtime.default_handler`"),
            "{err}"
        );
        let err = parse_str("[image]\nplatform = \"amd64\"\n").unwrap_err();
        assert!(err.to_string().contains("key `image.platform`"), "{err}");
        let err = parse_str("log_level = \"info,[[\"\n").unwrap_err();
        assert!(err.to_string().contains("key `log_level`"), "{err}");
    }

    #[test]
    fn metrics_address_is_ip_port_or_empty() {
        assert_eq!(Config::default().metrics.address, "127.0.0.1:9327");
        for ok in ["", "[::1]:0", "0.0.0.0:9100"] {
            let config = parse_str(&format!("[metrics]\naddress = {ok:?}\n")).unwrap();
            assert_eq!(config.metrics.address, ok);
        }
        for bad in ["localhost:9327", "127.0.0.1", ":9327"] {
            let err = parse_str(&format!("[metrics]\naddress = {bad:?}\n")).unwrap_err();
            assert!(err.to_string().contains("key `metrics.address`"), "{err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn flags_override_and_are_checked() {
        let mut config = Config::default();
        let flags = Overrides {
            root: Some("/srv/r".into()),
            ..Default::default()
        };
        config.apply(flags).unwrap();
        assert_eq!(config.root, Path::new("/srv/r"));
        assert_eq!(config.state, Config::default().state);
        let err = config
            .apply(Overrides {
                state: Some("rel".into()),
                ..Default::default()
            })
            .unwrap_err();
        assert!(
            err.to_string().contains("command line: key `state`"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_name_the_file() {
        let err = parse_str("listen = \n").unwrap_err();
        assert!(
            err.to_string().contains("test.toml is not valid TOML"),
            "{err}"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/crius.toml"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/crius.toml"), "{err}");
    }
}
