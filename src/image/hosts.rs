//! Per-registry host configuration, in containerd's `hosts.toml` format so
//! operators' existing files work: `<config_path>/<host>/hosts.toml` (or
//! `_default/hosts.toml`) lists mirrors (`[host."URL"]`, tried in file order)
//! and the upstream `server`, each with `capabilities`, `skip_verify`, `ca`,
//! `client`, `header` and `override_path`.

use std::path::{Path, PathBuf};
use toml::Value;

/// One place a registry's content can be fetched from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// URL prefix up to and including the API root, e.g.
    /// "https://mirror.example.com/v2"; requests append "/<repo>/...".
    pub prefix: String,
    /// host[:port] of the endpoint (token cache key, messages).
    pub host: String,
    /// May serve blobs and manifests by digest.
    pub pull: bool,
    /// May resolve tags to manifests.
    pub resolve: bool,
    pub headers: Vec<(String, String)>,
    pub tls: TlsOptions,
}

/// TLS settings that need a client of their own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    pub skip_verify: bool,
    /// Extra CA certificates (PEM files).
    pub ca: Vec<PathBuf>,
    /// Client certificates: (certificate PEM, key PEM); the key may be in
    /// the certificate file.
    pub client: Vec<(PathBuf, Option<PathBuf>)>,
}

#[derive(Debug, thiserror::Error)]
#[error("registry host config {file}: {reason}")]
pub struct HostsError {
    pub file: PathBuf,
    pub reason: String,
}

/// The endpoints for `registry` (as in references: "docker.io",
/// "127.0.0.1:5000"), in the order they are tried.
pub fn endpoints(config_path: &Path, registry: &str) -> Result<Vec<Endpoint>, HostsError> {
    let candidates = [
        config_path.join(dir_name(registry)).join("hosts.toml"),
        config_path.join("_default/hosts.toml"),
    ];
    let Some(file) = candidates.into_iter().find(|f| f.is_file()) else {
        return Ok(vec![default_endpoint(registry)]);
    };
    let err = |reason: String| HostsError {
        file: file.clone(),
        reason,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
    let doc: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| err(e.to_string()))?;
    let base_dir = file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let mut out = Vec::new();
    if let Some(hosts) = doc.get("host") {
        let hosts = hosts
            .as_table()
            .ok_or_else(|| err("`host` must be a table of [host.\"URL\"] entries".into()))?;
        for (url, settings) in hosts {
            let settings = settings
                .as_table()
                .ok_or_else(|| err(format!("host {url:?} must be a table")))?;
            out.push(
                endpoint(url, settings, &base_dir)
                    .map_err(|r| err(format!("host {url:?}: {r}")))?,
            );
        }
    }
    // The upstream comes last, with the top-level settings.
    let server = match doc.get("server") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(err("`server` must be a string".into())),
        None => default_endpoint(registry)
            .prefix
            .trim_end_matches("/v2")
            .to_string(),
    };
    out.push(endpoint(&server, &doc, &base_dir).map_err(|r| err(format!("server: {r}")))?);
    Ok(out)
}

/// The endpoint used without configuration: HTTPS, plain HTTP on loopback.
pub fn default_endpoint(registry: &str) -> Endpoint {
    let base = match registry {
        "docker.io" => "https://registry-1.docker.io".to_string(),
        h if super::registry::is_loopback(h) => format!("http://{h}"),
        h => format!("https://{h}"),
    };
    Endpoint {
        host: registry.to_string(),
        prefix: format!("{base}/v2"),
        pull: true,
        resolve: true,
        headers: Vec::new(),
        tls: TlsOptions::default(),
    }
}

/// containerd names the directory after host[:port]; IPv6 brackets stay.
fn dir_name(registry: &str) -> &str {
    registry
}

fn endpoint(url: &str, settings: &toml::Table, base_dir: &Path) -> Result<Endpoint, String> {
    let url = if url.contains("://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let (scheme, rest) = url.split_once("://").expect("has a scheme");
    if scheme != "http" && scheme != "https" {
        return Err(format!("scheme {scheme:?} is not http or https"));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        return Err("no host in the URL".into());
    }
    let override_path = bool_of(settings, "override_path")?;
    let prefix = if override_path {
        format!("{scheme}://{host}{path}")
    } else {
        format!("{scheme}://{host}{path}/v2")
    };
    let capabilities = match settings.get("capabilities") {
        None => vec!["pull".to_string(), "resolve".to_string()],
        Some(v) => strings(v).ok_or("`capabilities` must be a list of strings")?,
    };
    let mut headers = Vec::new();
    if let Some(table) = settings.get("header") {
        let table = table.as_table().ok_or("`header` must be a table")?;
        for (name, value) in table {
            for v in strings(value).ok_or(format!(
                "header {name:?} must be a string or list of strings"
            ))? {
                headers.push((name.clone(), v));
            }
        }
    }
    let resolve_path = |p: String| {
        if Path::new(&p).is_absolute() {
            PathBuf::from(p)
        } else {
            base_dir.join(p)
        }
    };
    let ca = match settings.get("ca") {
        None => Vec::new(),
        Some(v) => strings(v)
            .ok_or("`ca` must be a path or list of paths")?
            .into_iter()
            .map(resolve_path)
            .collect(),
    };
    let client = match settings.get("client") {
        None => Vec::new(),
        Some(Value::String(pem)) => vec![(resolve_path(pem.clone()), None)],
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(pem) => Ok((resolve_path(pem.clone()), None)),
                Value::Array(pair) if pair.len() == 2 => match (&pair[0], &pair[1]) {
                    (Value::String(cert), Value::String(key)) => {
                        Ok((resolve_path(cert.clone()), Some(resolve_path(key.clone()))))
                    }
                    _ => Err("`client` pairs are [cert, key] paths".to_string()),
                },
                _ => Err("`client` entries are a PEM path or a [cert, key] pair".to_string()),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err("`client` must be a path or a list".into()),
    };
    Ok(Endpoint {
        prefix,
        host: host.to_string(),
        pull: capabilities.iter().any(|c| c == "pull"),
        resolve: capabilities.iter().any(|c| c == "resolve"),
        headers,
        tls: TlsOptions {
            skip_verify: bool_of(settings, "skip_verify")?,
            ca,
            client,
        },
    })
}

fn bool_of(settings: &toml::Table, key: &str) -> Result<bool, String> {
    match settings.get(key) {
        None => Ok(false),
        Some(Value::Boolean(b)) => Ok(*b),
        Some(_) => Err(format!("`{key}` must be true or false")),
    }
}

fn strings(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Array(items) => items
            .iter()
            .map(|i| i.as_str().map(str::to_string))
            .collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, host: &str, text: &str) {
        std::fs::create_dir_all(dir.join(host)).unwrap();
        std::fs::write(dir.join(host).join("hosts.toml"), text).unwrap();
    }

    #[test]
    fn no_file_means_the_default_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let e = endpoints(dir.path(), "docker.io").unwrap();
        assert_eq!(e[0].prefix, "https://registry-1.docker.io/v2");
        assert_eq!(
            endpoints(dir.path(), "127.0.0.1:5000").unwrap()[0].prefix,
            "http://127.0.0.1:5000/v2"
        );
        assert_eq!(
            endpoints(Path::new("/nonexistent"), "quay.io").unwrap()[0].prefix,
            "https://quay.io/v2"
        );
    }

    #[test]
    fn mirrors_in_file_order_then_the_server() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "docker.io",
            r#"
server = "https://registry-1.docker.io"

[host."https://zz-first.example.com"]
  capabilities = ["pull", "resolve"]
  ca = "ca.crt"
  [host."https://zz-first.example.com".header]
    x-mirror = ["a", "b"]

[host."http://aa-second.example.com:5000/proxy"]
  capabilities = ["pull"]
  skip_verify = true
  client = [["/c.crt", "/c.key"]]

[host."https://raw.example.com/custom/api"]
  override_path = true
"#,
        );
        let e = endpoints(dir.path(), "docker.io").unwrap();
        let prefixes: Vec<&str> = e.iter().map(|e| e.prefix.as_str()).collect();
        assert_eq!(
            prefixes,
            [
                "https://zz-first.example.com/v2",
                "http://aa-second.example.com:5000/proxy/v2",
                "https://raw.example.com/custom/api",
                "https://registry-1.docker.io/v2"
            ]
        );
        assert_eq!(e[0].tls.ca, [dir.path().join("docker.io/ca.crt")]);
        assert_eq!(
            e[0].headers,
            [
                ("x-mirror".to_string(), "a".to_string()),
                ("x-mirror".to_string(), "b".to_string())
            ]
        );
        assert!(e[1].pull && !e[1].resolve && e[1].tls.skip_verify);
        assert_eq!(
            e[1].tls.client,
            [(PathBuf::from("/c.crt"), Some(PathBuf::from("/c.key")))]
        );
        assert_eq!(e[1].host, "aa-second.example.com:5000");
    }

    #[test]
    fn default_dir_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "_default", "[host.\"https://mirror.local\"]\n");
        assert_eq!(
            endpoints(dir.path(), "quay.io").unwrap()[0].prefix,
            "https://mirror.local/v2"
        );
        write(
            dir.path(),
            "bad.io",
            "[host.\"https://m\"]\ncapabilities = \"pull\"\nskip_verify = \"yes\"\n",
        );
        let err = endpoints(dir.path(), "bad.io").unwrap_err().to_string();
        assert!(
            err.contains("bad.io/hosts.toml") && err.contains("skip_verify"),
            "{err}"
        );
        write(dir.path(), "syntax.io", "server = \n");
        assert!(endpoints(dir.path(), "syntax.io").is_err());
    }
}
