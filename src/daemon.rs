//! criusd's life: take the socket lock, open the store, probe the node, serve,
//! and shut down gracefully on SIGTERM/SIGINT.
//!
//! Invariants:
//! - At most one criusd serves a socket: the lock file `<listen>.lock` is held
//!   (flock) for the daemon's lifetime and released by the kernel if it dies,
//!   so a stale socket left by a crash is replaced, a live one never is.
//! - Stopping criusd never stops containers: they belong to their shims.

use crate::config::Config;
use crate::runtime::Runtime;
use crate::store::Store;
use anyhow::{Context, bail};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::signal::unix::{SignalKind, signal};

/// How long in-flight RPCs (and open streams) get after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Holds `<socket>.lock` while the daemon runs.
pub struct SocketLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl SocketLock {
    pub fn acquire(socket: &Path) -> anyhow::Result<SocketLock> {
        let path = lock_path(socket);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, _)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                bail!(
                    "another criusd (pid {}) is serving {}; lock file {}",
                    pid.trim(),
                    socket.display(),
                    path.display()
                );
            }
        };
        lock.set_len(0)?;
        lock.rewind()?;
        write!(lock, "{}", std::process::id())?;
        Ok(SocketLock { _lock: lock, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

pub fn lock_path(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_os_string();
    name.push(".lock");
    PathBuf::from(name)
}

/// Runs the daemon until SIGTERM or SIGINT.
pub async fn run(config: Config) -> anyhow::Result<()> {
    // Before anything exists that a signal's default action would leave
    // behind (the socket, the lock), so SIGTERM always shuts down cleanly.
    let mut termination = Termination::install()?;
    let socket = config.listen.clone();
    if let Some(parent) = socket.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    // The lock comes first: a daemon that must not run touches nothing else.
    let lock = SocketLock::acquire(&socket)?;
    for dir in [&config.root, &config.state] {
        create_private_dir(dir)?;
    }
    let store = Store::open(&config.root)?;
    let runtime = Arc::new(Runtime::new(config, store)?);
    Runtime::follow_exits(&runtime);
    let listener = bind(&socket)?;
    // The streaming server is up before any RPC can hand out its URLs.
    let streams = tokio::net::TcpListener::bind((
        runtime.config.streaming.address.as_str(),
        runtime.config.streaming.port,
    ))
    .await
    .with_context(|| {
        format!(
            "cannot listen for streams on {}:{}",
            runtime.config.streaming.address, runtime.config.streaming.port
        )
    })?;
    let stream_addr = streams.local_addr()?;
    let tls = match &runtime.config.streaming {
        s if s.tls_cert_file.as_os_str().is_empty() => None,
        s => Some(crate::stream::tls::acceptor(
            &s.tls_cert_file,
            &s.tls_key_file,
        )?),
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    runtime
        .streaming
        .set_base(format!("{scheme}://{stream_addr}"));
    let stream_server = tokio::spawn(crate::stream::serve(runtime.clone(), streams, tls));
    let metrics_server = serve_metrics(&runtime).await;
    // Last before serving, so that a daemon that cannot serve never takes
    // the NRI socket; pre-installed plugins are up (or given up on) before
    // the first CRI call.
    let domain: std::sync::Weak<dyn crate::nri::Domain> = Arc::downgrade(&runtime) as _;
    runtime.nri.start(domain).await;
    let nri = runtime.nri.clone();
    tracing::info!(
        socket = %socket.display(),
        root = %runtime.config.root.display(),
        state = %runtime.config.state.display(),
        cgroups = ?runtime.cgroups,
        streaming = %stream_addr,
        metrics = %runtime.metrics.to_json()["url"].as_str().unwrap_or("off"),
        version = env!("CARGO_PKG_VERSION"),
        "criusd serving"
    );

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let events = runtime.events.clone();
    let server = crate::server::serve(runtime, listener, async {
        let _ = stop_rx.await;
    });
    tokio::pin!(server);
    let signal_name = tokio::select! {
        () = &mut server => "none",
        name = termination.wait() => name,
    };
    tracing::info!(
        signal = signal_name,
        "shutting down: no new RPCs, containers keep running"
    );
    let _ = stop_tx.send(());
    // Event streams never end by themselves: end them, or they hold the
    // server for the whole grace period.
    events.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, &mut server)
        .await
        .is_err()
    {
        tracing::warn!("RPCs still open after {SHUTDOWN_GRACE:?}; leaving them");
    }
    nri.stop().await;
    stream_server.abort();
    if let Some(server) = metrics_server {
        server.abort();
    }
    // Remove the socket before releasing the lock, so a successor never sees ours.
    let _ = std::fs::remove_file(&socket);
    drop(lock);
    tracing::info!("criusd stopped");
    Ok(())
}

/// Binds `[metrics] address` and serves it; scrapes count live objects from
/// the runtime while it lives. A bind failure is logged and reported in
/// Status, and the CRI is served anyway (see `metrics::endpoint`).
async fn serve_metrics(runtime: &Arc<Runtime>) -> Option<tokio::task::JoinHandle<()>> {
    let weak = Arc::downgrade(runtime);
    crate::metrics::daemon::set_live_source(move || weak.upgrade().map(|rt| rt.live_counts()));
    let (serving, listener) = crate::metrics::endpoint::bind(&runtime.config.metrics.address).await;
    runtime.metrics.set(serving);
    listener.map(|listener| tokio::spawn(crate::metrics::endpoint::serve(listener)))
}

/// SIGTERM and SIGINT, caught from the moment this exists.
struct Termination {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Termination {
    fn install() -> anyhow::Result<Termination> {
        Ok(Termination {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    async fn wait(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Binds the socket with mode 0660, replacing a stale socket (the caller holds
/// the lock, so no live daemon owns it). Anything that is not a socket is left
/// alone and reported.
fn bind(socket: &Path) -> anyhow::Result<tokio::net::UnixListener> {
    match std::fs::symlink_metadata(socket) {
        Ok(meta) if meta.file_type().is_socket() => {
            tracing::info!(socket = %socket.display(), "replacing stale socket");
            std::fs::remove_file(socket)?;
        }
        Ok(_) => bail!(
            "{} exists and is not a socket; not replacing it",
            socket.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", socket.display())),
    }
    let listener = tokio::net::UnixListener::bind(socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o660))?;
    Ok(listener)
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // Others may traverse (kubelet reads logs and sockets below) but not list.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("cannot set mode of {}", dir.display()))
}
