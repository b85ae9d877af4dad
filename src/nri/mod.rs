//! NRI, the Node Resource Interface: plugins that see pod and container
//! lifecycle events and adjust containers before they are created, as
//! containerd 2.x and CRI-O host them (protocol of containerd/nri v0.12;
//! v0.11 plugins work too).
//!
//! - `mux`: the one socket per plugin carrying two ttrpc connections;
//! - `plugin`: one plugin's connection, registration, Configure, events;
//! - `result`: merging plugins' answers, conflicts between plugins;
//! - `apply`: an adjustment applied to the OCI spec (`config.json`);
//! - `convert`: crius's records as NRI's pods and containers, resources
//!   between CRI and NRI;
//! - `domain`: what NRI asks of the runtime (the state for Synchronize,
//!   updates and evictions plugins request).
//!
//! `Nri` is the façade the runtime calls at each lifecycle point. Calls
//! come from blocking threads; with no plugin connected they return at
//! once. Events are delivered to plugins in index order, one event at a
//! time (the plugin list is locked for the event), each request bounded by
//! the request timeout: a plugin past it is disconnected and the call goes
//! on. A plugin answering an error fails the CRI call, which rolls back.
//!
//! Invariant: a plugin joins the list only after Synchronize, under the
//! list's lock, so it sees every pod and container either in Synchronize
//! or as events (except an object whose create event was delivered before
//! it joined and whose record was stored after its snapshot).

pub mod api {
    //! Generated from `proto/nri.proto` by build.rs (rust-protobuf messages,
    //! async ttrpc stubs).
    #![allow(clippy::all, clippy::pedantic, missing_docs, unused_qualifications)]
    include!(concat!(env!("OUT_DIR"), "/nri/mod.rs"));
    pub use self::nri::*;
}
pub mod apply;
pub mod convert;
pub mod domain;
pub mod mux;
pub mod plugin;
pub mod result;

use crate::config::NriSection;
use crate::error::{Classify, ErrorKind};
use plugin::{Origin, Plugin, PluginError, Settings};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};

pub use domain::Domain;

#[derive(Debug, thiserror::Error)]
pub enum NriError {
    /// A plugin answered an event with an error.
    #[error("NRI {0}")]
    Plugin(#[from] PluginError),
    /// Two plugins adjusted the same thing, or a plugin asked for what
    /// NRI does not allow.
    #[error("NRI: {0}")]
    Merge(#[from] result::MergeError),
    /// Validator plugins refused the plugins' adjustments.
    #[error("NRI: the container's adjustment was not validated: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Rejected(Vec<PluginError>),
}

impl Classify for NriError {
    fn kind(&self) -> ErrorKind {
        match self {
            NriError::Plugin(_) => ErrorKind::Internal,
            NriError::Merge(_) | NriError::Rejected(_) => ErrorKind::FailedPrecondition,
        }
    }
}

/// Where the socket for external plugins stands, for Status.
#[derive(Debug, Clone)]
enum SocketState {
    Off,
    Listening(PathBuf),
    Failed(String),
}

pub struct Nri {
    config: NriSection,
    settings: Settings,
    /// Connected, synchronized plugins in index order. Held for a whole
    /// event, so plugins see events one at a time and in order.
    plugins: Arc<tokio::sync::Mutex<Vec<Arc<Plugin>>>>,
    /// How many plugins are in `plugins`: the fast path when none is.
    count: AtomicUsize,
    handle: OnceLock<tokio::runtime::Handle>,
    domain: OnceLock<Weak<dyn Domain>>,
    socket: Mutex<SocketState>,
    /// Holds the socket for this criusd's life (`<socket>.lock`).
    socket_lock: Mutex<Option<crate::daemon::SocketLock>>,
    /// Containers plugins were told stopped (by StopContainer or by their
    /// own exit, whichever came first), until they are removed: once each.
    stopped: Mutex<std::collections::HashSet<String>>,
}

impl Nri {
    pub fn new(config: &NriSection) -> Arc<Nri> {
        Arc::new(Nri {
            config: config.clone(),
            settings: Settings {
                registration_timeout: std::time::Duration::from_millis(
                    config.plugin_registration_timeout_ms,
                ),
                request_timeout: std::time::Duration::from_millis(config.plugin_request_timeout_ms),
                runtime_version: crate::VERSION.to_string(),
            },
            plugins: Arc::new(tokio::sync::Mutex::new(Vec::new())),
            count: AtomicUsize::new(0),
            handle: OnceLock::new(),
            domain: OnceLock::new(),
            socket: Mutex::new(SocketState::Off),
            socket_lock: Mutex::new(None),
            stopped: Mutex::new(Default::default()),
        })
    }

    /// Starts the pre-installed plugins (waiting for them to register, at
    /// most the registration timeout) and listens for others. Problems are
    /// logged and shown in Status: the CRI is served anyway.
    pub async fn start(self: &Arc<Self>, domain: Weak<dyn Domain>) {
        if !self.config.enable {
            return;
        }
        let _ = self.handle.set(tokio::runtime::Handle::current());
        let _ = self.domain.set(domain);
        self.launch_preinstalled().await;
        if !self.config.disable_connections && !self.config.socket_path.as_os_str().is_empty() {
            self.listen();
        }
    }

    /// Tells plugins criusd is going down and disconnects them.
    pub async fn stop(&self) {
        let plugins = std::mem::take(&mut *self.plugins.lock().await);
        self.count.store(0, Ordering::Relaxed);
        for p in plugins {
            p.shutdown().await;
        }
        if let SocketState::Listening(path) = &*self.socket.lock().expect("nri socket") {
            let _ = std::fs::remove_file(path);
        }
        self.socket_lock.lock().expect("nri socket lock").take();
    }

    /// Whether any plugin is connected.
    pub fn active(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// For verbose Status.
    pub fn describe(&self) -> serde_json::Value {
        let socket = match &*self.socket.lock().expect("nri socket") {
            SocketState::Off => serde_json::json!({"listening": false}),
            SocketState::Listening(p) => {
                serde_json::json!({"listening": true, "path": p.display().to_string()})
            }
            SocketState::Failed(e) => serde_json::json!({"listening": false, "error": e}),
        };
        let plugins: Vec<String> = match self.plugins.try_lock() {
            Ok(plugins) => plugins.iter().map(|p| p.name()).collect(),
            Err(_) => vec!["(busy with an event)".to_string()],
        };
        serde_json::json!({
            "enabled": self.config.enable,
            "socket": socket,
            "plugin_path": self.config.plugin_path.display().to_string(),
            "plugin_config_path": self.config.plugin_config_path.display().to_string(),
            "registration_timeout_ms": self.config.plugin_registration_timeout_ms,
            "request_timeout_ms": self.config.plugin_request_timeout_ms,
            "plugins": plugins,
        })
    }

    /// Runs `f` to completion from a blocking thread.
    fn block_on<F: std::future::Future>(&self, f: F) -> Option<F::Output> {
        let handle = self.handle.get()?;
        Some(tokio::task::block_in_place(|| handle.block_on(f)))
    }

    fn domain(&self) -> Option<Arc<dyn Domain>> {
        self.domain.get().and_then(Weak::upgrade)
    }

    /// The plugin list, locked: an event holds it while it goes out, so
    /// plugins see events one at a time and a joining plugin waits.
    async fn plugins(&self) -> tokio::sync::MutexGuard<'_, Vec<Arc<Plugin>>> {
        self.plugins.lock().await
    }

    /// Adds a connected plugin after synchronizing it; watches for its end.
    async fn register(self: &Arc<Self>, plugin: Plugin) {
        let plugin = Arc::new(plugin);
        let name = plugin.name();
        let Some(domain) = self.domain() else {
            plugin.close();
            return;
        };
        let mut plugins = self.plugins().await;
        // Counted from now: an event that comes while it synchronizes waits
        // for the list's lock and then reaches it too.
        self.count.store(plugins.len() + 1, Ordering::Relaxed);
        let snapshot = {
            let domain = domain.clone();
            tokio::task::spawn_blocking(move || domain.snapshot()).await
        };
        let synchronized = match snapshot {
            Ok((pods, containers)) => plugin.synchronize(pods, containers).await,
            Err(e) => Err(PluginError::Failed {
                plugin: name.clone(),
                message: format!("no snapshot of the runtime's state: {e}"),
            }),
        };
        let updates = match synchronized {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(plugin = %name, error = %e, "NRI: plugin failed to synchronize; disconnected");
                plugin.close();
                self.count.store(plugins.len(), Ordering::Relaxed);
                return;
            }
        };
        plugins.retain(|p| !p.is_closed());
        plugins.push(plugin.clone());
        plugins.sort_by(|a, b| a.idx.cmp(&b.idx));
        self.count.store(plugins.len(), Ordering::Relaxed);
        let order: Vec<String> = plugins.iter().map(|p| p.name()).collect();
        drop(plugins);
        tracing::info!(plugin = %name, order = ?order, "NRI: plugin connected and synchronized");
        if !updates.is_empty() {
            let _ = tokio::task::spawn_blocking(move || domain.apply_updates(updates)).await;
        }
        let nri = Arc::downgrade(self);
        tokio::spawn(async move {
            plugin.closed().await;
            if let Some(nri) = nri.upgrade() {
                let mut plugins = nri.plugins().await;
                plugins.retain(|p| !Arc::ptr_eq(p, &plugin));
                nri.count.store(plugins.len(), Ordering::Relaxed);
                tracing::info!(plugin = %plugin.name(), "NRI: plugin disconnected");
            }
            plugin.close();
        });
    }

    /// What a plugin's unsolicited UpdateContainers does: the updates go
    /// through the runtime as UpdateContainerResources would, evictions stop
    /// the container.
    fn updater(
        self: &Arc<Self>,
    ) -> Arc<dyn Fn(api::UpdateContainersRequest) -> plugin::UpdateFuture + Send + Sync> {
        let nri = Arc::downgrade(self);
        Arc::new(
            move |req: api::UpdateContainersRequest| -> plugin::UpdateFuture {
                let nri = nri.clone();
                Box::pin(async move {
                    let Some(domain) = nri.upgrade().and_then(|n| n.domain()) else {
                        return req.update;
                    };
                    tokio::task::spawn_blocking(move || {
                        for e in &req.evict {
                            domain.evict(&e.container_id, &e.reason);
                        }
                        domain.apply_updates(req.update)
                    })
                    .await
                    .unwrap_or_default()
                })
            },
        )
    }

    fn listen(self: &Arc<Self>) {
        let path = self.config.socket_path.clone();
        let state = match self.bind(&path) {
            Ok(listener) => {
                let nri = self.clone();
                tokio::spawn(async move { nri.accept(listener).await });
                tracing::info!(socket = %path.display(), "NRI: accepting plugin connections");
                SocketState::Listening(path)
            }
            Err(e) => {
                tracing::warn!(socket = %path.display(), error = %e, "NRI: not accepting plugin connections");
                SocketState::Failed(e)
            }
        };
        *self.socket.lock().expect("nri socket") = state;
    }

    fn bind(&self, path: &Path) -> Result<tokio::net::UnixListener, String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        // One criusd serves the socket; another one leaves it alone.
        let lock = crate::daemon::SocketLock::acquire(path).map_err(|e| format!("{e:#}"))?;
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let listener =
            tokio::net::UnixListener::bind(path).map_err(|e| format!("{}: {e}", path.display()))?;
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        *self.socket_lock.lock().expect("nri socket lock") = Some(lock);
        Ok(listener)
    }

    async fn accept(self: Arc<Self>, listener: tokio::net::UnixListener) {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "NRI: accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let nri = self.clone();
            tokio::spawn(async move {
                match Plugin::connect(stream, Origin::External, &nri.settings, nri.updater()).await
                {
                    Ok(plugin) => nri.register(plugin).await,
                    Err(e) => tracing::warn!(error = %e, "NRI: plugin connection refused"),
                }
            });
        }
    }

    /// Starts `<plugin_path>/<idx>-<name>` executables, each with one end of
    /// a socket pair as fd 3 (`NRI_PLUGIN_SOCKET=3`), its name and index in
    /// the environment, and waits for them to register.
    async fn launch_preinstalled(self: &Arc<Self>) {
        let dir = &self.config.plugin_path;
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "NRI: cannot read the plugin dir");
                return;
            }
        };
        let mut found: Vec<(String, String, PathBuf)> = Vec::new();
        for entry in entries.flatten() {
            use std::os::unix::fs::PermissionsExt;
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() || meta.permissions().mode() & 0o111 == 0 {
                continue;
            }
            let file = entry.file_name().to_string_lossy().to_string();
            match plugin::parse_name(&file) {
                Some((idx, base)) => found.push((idx, base, entry.path())),
                None => tracing::warn!(
                    file,
                    "NRI: plugin file is not named <2-digit index>-<name>; skipped"
                ),
            }
        }
        found.sort();
        let launches = found.into_iter().map(|(idx, base, path)| {
            let nri = self.clone();
            async move {
                let name = format!("{idx}-{base}");
                match nri.launch(idx, base, &path).await {
                    Ok(plugin) => nri.register(plugin).await,
                    Err(e) => tracing::warn!(plugin = %name, error = %e, "NRI: pre-installed plugin not started"),
                }
            }
        });
        futures_util::future::join_all(launches).await;
    }

    async fn launch(
        self: &Arc<Self>,
        idx: String,
        base: String,
        path: &Path,
    ) -> Result<Plugin, String> {
        let config = plugin_config(&self.config.plugin_config_path, &idx, &base)?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| e.to_string())?;
        ours.set_nonblocking(true).map_err(|e| e.to_string())?;
        let theirs: OwnedFd = theirs.into();
        let fd = theirs.as_raw_fd();
        let mut cmd = tokio::process::Command::new(path);
        cmd.env_clear()
            .env("NRI_PLUGIN_NAME", &base)
            .env("NRI_PLUGIN_IDX", &idx)
            .env("NRI_PLUGIN_SOCKET", "3")
            .stdin(std::process::Stdio::null());
        // SAFETY: dup2 and fcntl only, between fork and exec. The copy
        // dup2 makes is inherited; fd 3 itself needs its close-on-exec
        // flag cleared.
        unsafe {
            cmd.pre_exec(move || {
                let r = if fd == 3 {
                    libc::fcntl(3, libc::F_SETFD, 0)
                } else {
                    libc::dup2(fd, 3)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        drop(theirs);
        let stream = tokio::net::UnixStream::from_std(ours).map_err(|e| e.to_string())?;
        let origin = Origin::Launched {
            idx,
            base,
            config,
            child: Box::new(child),
        };
        Plugin::connect(stream, origin, &self.settings, self.updater())
            .await
            .map_err(|e| e.to_string())
    }
}

/// `<dir>/<idx>-<name>.conf`, else `<dir>/<name>.conf`, else "".
fn plugin_config(dir: &Path, idx: &str, base: &str) -> Result<String, String> {
    for file in [format!("{idx}-{base}.conf"), format!("{base}.conf")] {
        match std::fs::read_to_string(dir.join(&file)) {
            Ok(text) => return Ok(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", dir.join(file).display())),
        }
    }
    Ok(String::new())
}

mod events;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_config_prefers_the_indexed_file() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(plugin_config(dir.path(), "10", "logger").unwrap(), "");
        std::fs::write(dir.path().join("logger.conf"), "any").unwrap();
        assert_eq!(plugin_config(dir.path(), "10", "logger").unwrap(), "any");
        std::fs::write(dir.path().join("10-logger.conf"), "mine").unwrap();
        assert_eq!(plugin_config(dir.path(), "10", "logger").unwrap(), "mine");
    }
}
