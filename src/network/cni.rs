//! Running CNI plugins (CNI spec 1.x; 0.4.0 and older configs accepted).
//!
//! ADD runs the list's plugins in order, each getting the previous one's
//! result as `prevResult`; DEL runs them in reverse with the cached result of
//! the ADD. Each plugin gets the network's `name` and `cniVersion`, the
//! runtime's capability arguments it declares in `capabilities` (as
//! `runtimeConfig`), and the environment the spec defines. A plugin that
//! fails or outlives its timeout is named in the error.

use super::cni_config::ConfigList;
use crate::metrics::daemon::PluginOutcome;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long one plugin run may take, in milliseconds: the daemon-wide
/// `network.cni_plugin_timeout_seconds`, set once at start. A global rather
/// than a parameter because DEL also runs from records written under
/// another config.
static PLUGIN_TIMEOUT_MS: AtomicU64 = AtomicU64::new(60_000);

/// Sets how long one plugin run may take.
pub fn set_plugin_timeout(timeout: Duration) {
    PLUGIN_TIMEOUT_MS.store(timeout.as_millis() as u64, Ordering::Relaxed);
}

fn plugin_timeout() -> Duration {
    Duration::from_millis(PLUGIN_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// One pod's attachment to a network.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub container_id: String,
    pub netns: PathBuf,
    pub ifname: String,
    /// `CNI_ARGS` pairs (K8S_POD_NAMESPACE, K8S_POD_NAME, ...).
    pub args: Vec<(String, String)>,
    /// Capability arguments by name (`portMappings`, `bandwidth`, `ipRanges`).
    pub capabilities: Map<String, Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("CNI plugin {plugin:?} not found in {dirs}")]
    NotFound { plugin: String, dirs: String },
    #[error("CNI plugin {plugin:?} ({command}) failed: {message}")]
    Failed {
        plugin: String,
        command: &'static str,
        message: String,
    },
    #[error(
        "CNI plugin {plugin:?} does not support the network's cniVersion {version} (it supports {supported:?})"
    )]
    Unsupported {
        plugin: String,
        version: String,
        supported: Vec<String>,
    },
    #[error("CNI plugin {plugin:?} ({command}) did not finish within {}s", timeout.as_secs())]
    Timeout {
        plugin: String,
        command: &'static str,
        timeout: Duration,
    },
}

/// The ADD result of the whole list (the last plugin's).
pub fn add(list: &ConfigList, bin_dirs: &[PathBuf], att: &Attachment) -> Result<Value, CniError> {
    check_versions(list, bin_dirs)?;
    let mut prev: Option<Value> = None;
    for plugin in &list.plugins {
        let result = run(list, plugin, bin_dirs, att, "ADD", prev.as_ref())?;
        prev = Some(result);
    }
    Ok(prev.unwrap_or_else(|| json!({})))
}

/// DEL, best effort over all plugins; the first failure is returned after
/// every plugin had its turn (so a half-set-up network is still torn down).
pub fn del(
    list: &ConfigList,
    bin_dirs: &[PathBuf],
    att: &Attachment,
    prev: Option<&Value>,
) -> Result<(), CniError> {
    let mut first_error = None;
    for plugin in list.plugins.iter().rev() {
        if let Err(e) = run(list, plugin, bin_dirs, att, "DEL", prev)
            && first_error.is_none()
        {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// CHECK (CNI 0.4.0 and later, unless the list sets `disableCheck`): each
/// plugin verifies the attachment against the cached ADD result. Returns
/// false when the list's version has no CHECK.
pub fn check(
    list: &ConfigList,
    bin_dirs: &[PathBuf],
    att: &Attachment,
    prev: &Value,
) -> Result<bool, CniError> {
    if list.disable_check || !version_at_least(&list.cni_version, (0, 4)) {
        return Ok(false);
    }
    for plugin in &list.plugins {
        run(list, plugin, bin_dirs, att, "CHECK", Some(prev))?;
    }
    Ok(true)
}

/// Version negotiation, then CNI 1.1's STATUS: whether every plugin of the
/// list speaks its cniVersion and can serve ADDs now. Lists of versions
/// before 1.1 have no STATUS and are taken as ready.
pub fn status(list: &ConfigList, bin_dirs: &[PathBuf]) -> Result<(), CniError> {
    check_versions(list, bin_dirs)?;
    if !version_at_least(&list.cni_version, (1, 1)) {
        return Ok(());
    }
    for plugin in &list.plugins {
        run(list, plugin, bin_dirs, &no_attachment(), "STATUS", None)?;
    }
    Ok(())
}

fn no_attachment() -> Attachment {
    Attachment {
        container_id: String::new(),
        netns: PathBuf::new(),
        ifname: String::new(),
        args: Vec::new(),
        capabilities: Map::new(),
    }
}

/// Plugin binary (path, mtime) → the spec versions it supports. kubelet
/// polls Status every few seconds; a plugin is asked again only when its
/// binary changes.
type VersionCache = HashMap<(PathBuf, SystemTime), Vec<String>>;
static VERSIONS: LazyLock<Mutex<VersionCache>> = LazyLock::new(Default::default);

/// CNI VERSION: every plugin of the list must support its cniVersion.
/// Plugins that cannot answer (pre-0.3 plugins) are not held against it.
pub fn check_versions(list: &ConfigList, bin_dirs: &[PathBuf]) -> Result<(), CniError> {
    for plugin in &list.plugins {
        let kind = plugin["type"].as_str().unwrap_or_default();
        let Some(binary) = find_plugin(kind, bin_dirs) else {
            continue; // ADD names the missing plugin.
        };
        let Ok(modified) = std::fs::metadata(&binary).and_then(|m| m.modified()) else {
            continue;
        };
        let key = (binary, modified);
        let cached = VERSIONS.lock().expect("CNI versions").get(&key).cloned();
        let supported = match cached {
            Some(versions) => versions,
            None => {
                let answer = run(list, plugin, bin_dirs, &no_attachment(), "VERSION", None)?;
                let versions: Vec<String> = answer["supportedVersions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect();
                VERSIONS
                    .lock()
                    .expect("CNI versions")
                    .insert(key, versions.clone());
                versions
            }
        };
        if !supported.is_empty() && !supported.contains(&list.cni_version) {
            return Err(CniError::Unsupported {
                plugin: kind.to_string(),
                version: list.cni_version.clone(),
                supported,
            });
        }
    }
    Ok(())
}

fn version_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The addresses of a result (CNI 0.3+: `ips[].address` as CIDRs).
pub fn result_ips(result: &Value) -> Vec<IpAddr> {
    result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|cidr| cidr.split('/').next()?.parse().ok())
        .collect()
}

fn find_plugin(kind: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    bin_dirs.iter().map(|d| d.join(kind)).find(|p| p.is_file())
}

/// The stdin config of one plugin: its own config with the network's name
/// and version, the capability arguments it asked for, and the previous
/// result.
fn plugin_config(
    list: &ConfigList,
    plugin: &Value,
    att: &Attachment,
    prev: Option<&Value>,
) -> Value {
    let mut config = plugin.as_object().cloned().unwrap_or_default();
    config.insert("name".into(), json!(list.name));
    config.insert("cniVersion".into(), json!(list.cni_version));
    let wanted: Map<String, Value> = plugin["capabilities"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, on)| on.as_bool() == Some(true))
        .filter_map(|(name, _)| Some((name.clone(), att.capabilities.get(name)?.clone())))
        .collect();
    if !wanted.is_empty() {
        config.insert("runtimeConfig".into(), Value::Object(wanted));
    }
    if let Some(prev) = prev {
        config.insert("prevResult".into(), prev.clone());
    }
    Value::Object(config)
}

/// Runs one plugin, timed for the metrics by its type and outcome.
fn run(
    list: &ConfigList,
    plugin: &Value,
    bin_dirs: &[PathBuf],
    att: &Attachment,
    command: &'static str,
    prev: Option<&Value>,
) -> Result<Value, CniError> {
    let started = Instant::now();
    let result = run_plugin(list, plugin, bin_dirs, att, command, prev);
    let outcome = match &result {
        Ok(_) => PluginOutcome::Ok,
        Err(CniError::Timeout { .. }) => PluginOutcome::Timeout,
        Err(_) => PluginOutcome::Error,
    };
    let kind = plugin["type"].as_str().unwrap_or_default();
    crate::metrics::daemon::cni_plugin(kind, command, outcome, started.elapsed());
    result
}

fn run_plugin(
    list: &ConfigList,
    plugin: &Value,
    bin_dirs: &[PathBuf],
    att: &Attachment,
    command: &'static str,
    prev: Option<&Value>,
) -> Result<Value, CniError> {
    let kind = plugin["type"].as_str().unwrap_or_default().to_string();
    let dirs = std::env::join_paths(bin_dirs)
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default();
    let binary = find_plugin(&kind, bin_dirs).ok_or_else(|| CniError::NotFound {
        plugin: kind.clone(),
        dirs: dirs.clone(),
    })?;
    let stdin = serde_json::to_vec(&plugin_config(list, plugin, att, prev)).expect("encodes");
    let cni_args = std::iter::once("IgnoreUnknown=1".to_string())
        .chain(att.args.iter().map(|(k, v)| format!("{k}={v}")))
        .collect::<Vec<_>>()
        .join(";");
    let failed = |message: String| CniError::Failed {
        plugin: kind.clone(),
        command,
        message,
    };
    let mut child = Command::new(&binary)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", &att.container_id)
        .env("CNI_NETNS", &att.netns)
        .env("CNI_IFNAME", &att.ifname)
        .env("CNI_ARGS", cni_args)
        .env("CNI_PATH", &dirs)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a timeout also kills what it started.
        .process_group(0)
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", binary.display())))?;
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(&stdin);
    }
    let (mut out, mut err) = (
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let readers = std::thread::spawn(move || {
        let (mut o, mut e) = (Vec::new(), Vec::new());
        let _ = out.read_to_end(&mut o);
        let _ = err.read_to_end(&mut e);
        (o, e)
    });
    let timeout = plugin_timeout();
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            _ => {
                // SAFETY: signals the group this plugin leads (pgid = its pid).
                unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
                let _ = child.wait();
                return Err(CniError::Timeout {
                    plugin: kind,
                    command,
                    timeout,
                });
            }
        }
    };
    let (stdout, stderr) = readers.join().unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_slice(&stdout).ok();
    if !status.success() {
        // Errors are {"code", "msg", "details"} on stdout.
        let message = parsed
            .as_ref()
            .and_then(|v| {
                let msg = v["msg"].as_str()?;
                Some(match v["details"].as_str() {
                    Some(d) if !d.is_empty() => format!("{msg}: {d}"),
                    _ => msg.to_string(),
                })
            })
            .unwrap_or_else(|| {
                let text =
                    String::from_utf8_lossy(if stdout.is_empty() { &stderr } else { &stdout });
                format!("{} ({status})", text.trim())
            });
        return Err(failed(message));
    }
    Ok(parsed.unwrap_or_else(|| json!({})))
}

/// Serialisable form of what DEL needs later, even after the config dir
/// changed or criusd restarted.
pub fn list_to_value(list: &ConfigList) -> Value {
    json!({
        "name": list.name,
        "cniVersion": list.cni_version,
        "disableCheck": list.disable_check,
        "plugins": list.plugins,
        "file": list.file,
    })
}

pub fn list_from_value(value: &Value) -> Option<ConfigList> {
    Some(ConfigList {
        file: PathBuf::from(value["file"].as_str().unwrap_or_default()),
        name: value["name"].as_str()?.to_string(),
        cni_version: value["cniVersion"].as_str().unwrap_or("1.0.0").to_string(),
        disable_check: value["disableCheck"].as_bool().unwrap_or(false),
        plugins: value["plugins"].as_array()?.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> ConfigList {
        ConfigList {
            file: "/x.conflist".into(),
            name: "net".into(),
            cni_version: "1.0.0".into(),
            disable_check: false,
            plugins: vec![
                json!({"type": "bridge", "bridge": "cni0"}),
                json!({"type": "portmap", "capabilities": {"portMappings": true, "bandwidth": false}}),
            ],
        }
    }

    fn attachment() -> Attachment {
        let mut capabilities = Map::new();
        capabilities.insert("portMappings".into(), json!([{"hostPort": 8080}]));
        capabilities.insert("bandwidth".into(), json!({"ingressRate": 1}));
        Attachment {
            container_id: "c".into(),
            netns: "/n".into(),
            ifname: "eth0".into(),
            args: Vec::new(),
            capabilities,
        }
    }

    #[test]
    fn versions_are_negotiated() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let plugin = dir.path().join("old");
        std::fs::write(
            &plugin,
            "#!/bin/sh\ncat >/dev/null\necho '{\"cniVersion\": \"0.4.0\", \"supportedVersions\": [\"0.3.1\", \"0.4.0\"]}'\n",
        )
        .unwrap();
        std::fs::set_permissions(&plugin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut l = list();
        l.plugins = vec![json!({"type": "old"})];
        let dirs = [dir.path().to_path_buf()];
        let err = check_versions(&l, &dirs).unwrap_err();
        assert!(
            err.to_string()
                .contains("\"old\" does not support the network's cniVersion 1.0.0"),
            "{err}"
        );
        l.cni_version = "0.4.0".into();
        check_versions(&l, &dirs).unwrap();
    }

    #[test]
    fn plugins_get_name_version_asked_capabilities_and_prev_result() {
        let l = list();
        let first = plugin_config(&l, &l.plugins[0], &attachment(), None);
        assert_eq!(first["name"], "net");
        assert_eq!(first["cniVersion"], "1.0.0");
        assert!(first.get("runtimeConfig").is_none());
        let prev = json!({"ips": [{"address": "10.1.0.5/24"}]});
        let second = plugin_config(&l, &l.plugins[1], &attachment(), Some(&prev));
        assert_eq!(second["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(second["runtimeConfig"].get("bandwidth").is_none());
        assert_eq!(second["prevResult"], prev);
        assert_eq!(result_ips(&prev), ["10.1.0.5".parse::<IpAddr>().unwrap()]);
        let round = list_from_value(&list_to_value(&l)).unwrap();
        assert_eq!(round.plugins, l.plugins);
    }

    #[test]
    fn missing_plugins_are_named() {
        let err = add(&list(), &[PathBuf::from("/nonexistent")], &attachment()).unwrap_err();
        assert!(err.to_string().contains("\"bridge\""), "{err}");
        // STATUS exists from CNI 1.1 on; older lists are ready as they are.
        assert!(status(&list(), &[PathBuf::from("/nonexistent")]).is_ok());
        let mut newer = list();
        newer.cni_version = "1.1.0".into();
        assert!(status(&newer, &[PathBuf::from("/nonexistent")]).is_err());
        assert!(version_at_least("1.1.0", (1, 1)) && !version_at_least("0.4.0", (1, 1)));
    }
}
