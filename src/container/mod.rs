//! Containers: OCI bundles run by a per-container shim through the OCI
//! runtime (runc, crun).
//!
//! Invariants:
//! - Everything a container owns is in `<state>/containers/<id>/` (bundle,
//!   shim files) and `<root>/rootfs/<id>/` (its overlay), plus the runtime's
//!   state under `<state>/oci/<handler>/` and its cgroup, both removed by
//!   `<runtime> delete`. The record is written last at create and deleted
//!   last at remove; start-up removes dirs without a record.
//! - The shim, not criusd, observes the exit: `exit.json` in the dir is the
//!   truth about how a container ended, so an exit while criusd is down is
//!   found at the next look. criusd turns it into the record's state lazily
//!   (`observe`), under the records lock.
//! - (name, sandbox, attempt) names at most one container: reserved first.
//! - Start, stop, remove and update of one container are serialised by its
//!   own lock; different containers never wait on each other.

pub mod apparmor;
pub mod cdi;
mod create;
pub mod devices;
pub mod enter;
pub mod exec;
pub mod exits;
pub mod mounts;
pub mod oci_runtime;
pub mod record;
pub mod seccomp;
pub mod security;
pub mod shim;
pub mod spec;
pub mod streams;
pub mod user;

use crate::cgroups::CgroupInfo;
use crate::cri;
use crate::error::{Classify, ErrorKind};
use crate::events::{Event, EventKind, Events};
use crate::handlers::HandlerInfo;
use crate::idmap;
use crate::ids::Lookup;
use crate::image::{ImageError, Images};
use crate::metrics::daemon::{self as metrics, Phase};
use crate::sandbox::SandboxRecord;
use crate::store::{Store, StoreError, Table};
use crius_shim::protocol::{ExitRecord, ShimConfig, read_exit};
use oci_runtime::OciRuntime;
pub use record::{ContainerRecord, ContainerState};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Precondition(String),
    #[error("container {name:?} already exists as {id}")]
    Exists { name: String, id: String },
    #[error("container {0:?} not found")]
    NotFound(String),
    #[error("container id prefix {0:?} matches more than one container")]
    Ambiguous(String),
    #[error("{0}")]
    Timeout(String),
    #[error("container {id}: {reason}")]
    Runtime { id: String, reason: String },
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Nri(#[from] crate::nri::NriError),
}

impl Classify for ContainerError {
    fn kind(&self) -> ErrorKind {
        match self {
            ContainerError::Invalid(_) | ContainerError::Ambiguous(_) => ErrorKind::InvalidArgument,
            ContainerError::Unsupported(_) => ErrorKind::Unimplemented,
            ContainerError::Precondition(_) => ErrorKind::FailedPrecondition,
            ContainerError::Exists { .. } => ErrorKind::AlreadyExists,
            ContainerError::NotFound(_) => ErrorKind::NotFound,
            ContainerError::Timeout(_) => ErrorKind::DeadlineExceeded,
            ContainerError::Runtime { .. } => ErrorKind::Internal,
            ContainerError::Image(e) => e.kind(),
            ContainerError::Store(e) => e.kind(),
            ContainerError::Nri(e) => e.kind(),
        }
    }
}

/// How long StopContainer waits after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// What CreateContainer needs from the other domains.
pub struct CreateRequest<'a> {
    pub sandbox: &'a SandboxRecord,
    pub config: cri::ContainerConfig,
    pub handler: &'a HandlerInfo,
}

/// What the configuration says about every container.
pub struct ContainerPolicy {
    /// Where volumes' missing host paths may not be created.
    pub absent_sources: mounts::AbsentSources,
    /// `runtime.image_volumes_noexec`.
    pub image_volumes_noexec: bool,
    /// `runtime.cdi_spec_dirs`.
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// `runtime.exec_in_runtime`.
    pub exec_in_runtime: bool,
    /// NRI plugins, which adjust containers before they are created.
    pub nri: Arc<crate::nri::Nri>,
}

pub struct Containers {
    store: Arc<Store>,
    images: Arc<Images>,
    cgroups: CgroupInfo,
    root: PathBuf,
    runtime_state: PathBuf,
    /// The shims' sockets (`<state>/sockets`: short paths).
    socket_dir: PathBuf,
    /// The lowest oom_score_adj this daemon may give a process.
    oom_score_adj_floor: i64,
    /// Where volumes' missing host paths may not be created.
    absent_sources: mounts::AbsentSources,
    /// `runtime.image_volumes_noexec`.
    image_volumes_noexec: bool,
    /// `runtime.exec_in_runtime`.
    exec_in_runtime: bool,
    /// CDI spec files, re-read when their dirs change.
    cdi: cdi::Registry,
    nri: Arc<crate::nri::Nri>,
    records: RwLock<BTreeMap<String, ContainerRecord>>,
    names: Mutex<HashMap<String, String>>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    events: Events,
    /// Wakes on exits; `None` where inotify is unavailable (exits are
    /// then noticed when a client asks).
    exits: Option<Arc<exits::ExitWatcher>>,
}

impl Containers {
    /// Loads the records, catches up on exits that happened while criusd was
    /// down, and removes what a crash left half-made.
    pub fn open(
        state: &Path,
        store: Arc<Store>,
        images: Arc<Images>,
        cgroups: CgroupInfo,
        events: Events,
        policy: ContainerPolicy,
    ) -> Result<Containers, ContainerError> {
        let ContainerPolicy {
            absent_sources,
            image_volumes_noexec,
            cdi_spec_dirs,
            exec_in_runtime,
            nri,
        } = policy;
        let root = state.join("containers");
        std::fs::create_dir_all(&root).map_err(|e| ContainerError::Runtime {
            id: "-".into(),
            reason: format!("{}: {e}", root.display()),
        })?;
        let records: BTreeMap<String, ContainerRecord> =
            store.list(Table::Containers)?.into_iter().collect();
        let names = records
            .values()
            .map(|r| (r.name.clone(), r.id.clone()))
            .collect();
        let containers = Containers {
            store,
            images,
            cgroups,
            root,
            runtime_state: state.join("oci"),
            socket_dir: state.join("sockets"),
            oom_score_adj_floor: oom_score_adj_floor(),
            absent_sources,
            image_volumes_noexec,
            exec_in_runtime,
            cdi: cdi::Registry::new(cdi_spec_dirs),
            nri,
            records: RwLock::new(records),
            names: Mutex::new(names),
            locks: Mutex::new(HashMap::new()),
            events,
            exits: exits::ExitWatcher::new()
                .inspect_err(|e| tracing::warn!(error = %e, "no exit watcher"))
                .ok()
                .map(Arc::new),
        };
        containers.recover();
        Ok(containers)
    }

    /// Whether criusd starts exec'd processes in `record` with its own
    /// helper (`enter`) rather than through `<runtime> exec`: not when the
    /// configuration says so, nor when the helper could not be opened
    /// read-only at start.
    pub fn enters_itself(&self, record: &ContainerRecord) -> bool {
        // criu puts a restored container's processes back in the cgroups
        // it dumped them from, not always the bundle's: the runtime, which
        // knows no such check, starts its execs.
        !self.exec_in_runtime
            && !record.restored
            && enter::runtime_allows(&record.runtime)
            && enter::helper::available()
    }

    /// The CDI spec registry (for Status).
    pub fn cdi(&self) -> &cdi::Registry {
        &self.cdi
    }

    fn lock_of(&self, id: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .expect("container locks")
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// StartContainer.
    pub fn start(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.get(id)?;
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().expect("container lock");
        let record = self.observe(&record.id)?;
        match record.state {
            ContainerState::Created => {}
            ContainerState::Running => {
                return Err(ContainerError::Precondition(format!(
                    "container {} is already running",
                    record.id
                )));
            }
            ContainerState::Exited => {
                return Err(ContainerError::Precondition(format!(
                    "container {} has exited (exit code {}); create a new one",
                    record.id, record.exit_code
                )));
            }
        }
        if let Some(from) = &record.restore_from {
            return self.start_restore(&record, from);
        }
        let runtime = runtime_of(&record);
        let started = Instant::now();
        runtime
            .start(&record.id)
            .map_err(|reason| ContainerError::Runtime {
                id: record.id.clone(),
                reason,
            })?;
        metrics::pod_phase(Phase::Start, started.elapsed());
        self.update(&record.id, |r| {
            let now = crate::time::now_nanos();
            match r.state {
                ContainerState::Created => {
                    r.state = ContainerState::Running;
                    r.started_at = now;
                }
                // A status call saw it exit before this: it started no later
                // than it ended.
                ContainerState::Exited if r.started_at == 0 => {
                    r.started_at = now.min(r.finished_at);
                }
                _ => {}
            }
        })?;
        self.observe(&record.id).map(|_| ())
    }

    /// StartContainer of a container made from a checkpoint: its shim
    /// runs `<runtime> restore`, after which it runs. A failed restore
    /// leaves it created, to be removed (or started again).
    fn start_restore(&self, record: &ContainerRecord, from: &Path) -> Result<(), ContainerError> {
        let restore = crius_shim::protocol::RestoreFrom {
            image_path: from.join(crate::checkpoint::CHECKPOINT_DIR),
            work_path: from.to_path_buf(),
        };
        let started = shim::spawn(&record.dir, &self.shim_config(record, Some(restore))).map_err(
            |reason| ContainerError::Runtime {
                id: record.id.clone(),
                reason: match crate::checkpoint::criu_error(&from.join("restore.log")) {
                    Some(criu) => format!("restoring from its checkpoint: {reason} (criu: {criu})"),
                    None => format!("restoring from its checkpoint: {reason}"),
                },
            },
        )?;
        self.update(&record.id, |r| {
            r.init_pid = started.init_pid;
            r.shim_pid = started.shim_pid;
            r.restore_from = None;
            r.restored = true;
            r.state = ContainerState::Running;
            r.started_at = crate::time::now_nanos();
        })?;
        // The memory images are restored; criu's logs stay for a look.
        let _ = std::fs::remove_dir_all(from.join(crate::checkpoint::CHECKPOINT_DIR));
        self.observe(&record.id).map(|_| ())
    }

    /// StopContainer: the stop signal, then SIGKILL after `timeout` seconds
    /// (at once for 0). Stopping a stopped or unknown container succeeds.
    pub fn stop(&self, id: &str, timeout: i64) -> Result<(), ContainerError> {
        let record = match self.get(id) {
            Ok(r) => r,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().expect("container lock");
        let record = self.observe(&record.id)?;
        if !record.is_live() {
            return Ok(());
        }
        if record.restore_pending() {
            // Nothing runs: it ends without having started.
            self.update(&record.id, |r| {
                r.set_exited(&ExitRecord {
                    exit_code: 0,
                    signal: None,
                    finished_at: crate::time::now_nanos(),
                    oom_killed: false,
                });
                r.message = "stopped before its restore from a checkpoint ran".into();
                r.restore_from = None;
            })?;
            return Ok(());
        }
        let runtime = runtime_of(&record);
        if timeout > 0 && record.state == ContainerState::Running {
            let _ = runtime.kill(&record.id, record.stop_signal, false);
            if self.wait_exit(&record.id, Duration::from_secs(timeout as u64))? {
                return Ok(());
            }
            tracing::info!(id = %record.id, timeout, "container ignored its stop signal: killing it");
        }
        let _ = runtime.kill(&record.id, libc::SIGKILL, record.shares_pid_namespace);
        if self.wait_exit(&record.id, KILL_WAIT)? {
            return Ok(());
        }
        Err(ContainerError::Runtime {
            id: record.id,
            reason: format!("still running {}s after SIGKILL", KILL_WAIT.as_secs()),
        })
    }

    /// Waits until the container has exited; `Ok(false)` on timeout.
    fn wait_exit(&self, id: &str, timeout: Duration) -> Result<bool, ContainerError> {
        let deadline = Instant::now() + timeout;
        loop {
            if !self.observe(id)?.is_live() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// RemoveContainer: kills it if it runs, then deletes the runtime's
    /// state, the rootfs, the dir and the record. Unknown ids succeed.
    pub fn remove(&self, id: &str) -> Result<(), ContainerError> {
        let record = match self.get(id) {
            Ok(r) => r,
            Err(ContainerError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().expect("container lock");
        let record = self.observe(&record.id)?;
        let runtime = runtime_of(&record);
        if record.is_live() && !record.restore_pending() {
            let _ = runtime.kill(&record.id, libc::SIGKILL, true);
            self.wait_exit(&record.id, KILL_WAIT)?;
        }
        self.dispose(&record.id, &record.dir, &runtime)?;
        self.store.delete(Table::Containers, &record.id)?;
        self.records.write().expect("containers").remove(&record.id);
        self.names
            .lock()
            .expect("container names")
            .remove(&record.name);
        self.locks
            .lock()
            .expect("container locks")
            .remove(&record.id);
        self.events.send(Event::new(
            EventKind::Deleted,
            &record.id,
            &record.sandbox_id,
        ));
        Ok(())
    }

    /// Deletes everything of a container but its record.
    fn dispose(&self, id: &str, dir: &Path, runtime: &OciRuntime) -> Result<(), ContainerError> {
        runtime
            .delete(id)
            .map_err(|reason| ContainerError::Runtime {
                id: id.to_string(),
                reason,
            })?;
        // Idmapped rootfs and volumes are mounts inside the dir: detach
        // them before anything is deleted.
        idmap::unmount_all_under(dir);
        self.images.remove_rootfs(id)?;
        // A shim that was killed leaves its sockets.
        let (control, console) = shim::sockets(&self.socket_dir, id);
        let _ = std::fs::remove_file(control);
        let _ = std::fs::remove_file(console);
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(|e| ContainerError::Runtime {
                id: id.to_string(),
                reason: format!("{}: {e}", dir.display()),
            })?;
        }
        Ok(())
    }

    /// The container with this id or unique id prefix, as last recorded.
    pub fn get(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        if id.is_empty() {
            return Err(ContainerError::Invalid("container_id is empty".into()));
        }
        match crate::ids::by_prefix(&self.records.read().expect("containers"), id) {
            Lookup::Found(record) => Ok(record.clone()),
            Lookup::Ambiguous => Err(ContainerError::Ambiguous(id.to_string())),
            Lookup::Missing => Err(ContainerError::NotFound(id.to_string())),
        }
    }

    /// The container, its state brought up to date with its shim's files.
    pub fn observe(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let record = self.get(id)?;
        if !record.is_live() || record.restore_pending() {
            return Ok(record);
        }
        let exit = read_exit(&record.dir).or_else(|| lost_exit(&record));
        match exit {
            Some(exit) => self.update(&record.id, |r| {
                if r.is_live() {
                    r.set_exited(&exit);
                    if exit.finished_at == 0 {
                        r.message = "the container's shim is gone and left no exit record; the exit code is unknown".into();
                    }
                }
            }),
            None => Ok(record),
        }
    }

    /// Changes a record under the lock and stores it.
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord, ContainerError> {
        let mut records = self.records.write().expect("containers");
        let record = records
            .get_mut(id)
            .ok_or_else(|| ContainerError::NotFound(id.to_string()))?;
        let before = serde_json::to_vec(record).expect("record encodes");
        let was = record.state;
        change(record);
        if serde_json::to_vec(record).expect("record encodes") != before {
            self.store.put(Table::Containers, id, record)?;
        }
        let transition = match (was, record.state) {
            (ContainerState::Created, ContainerState::Running) => Some(EventKind::Started),
            (ContainerState::Created | ContainerState::Running, ContainerState::Exited) => {
                Some(EventKind::Stopped)
            }
            _ => None,
        };
        if let Some(kind) = transition {
            self.events
                .send(Event::new(kind, &record.id, &record.sandbox_id));
        }
        Ok(record.clone())
    }

    /// ListContainers: every filter field that is set must match.
    pub fn list(&self, filter: Option<&cri::ContainerFilter>) -> Vec<ContainerRecord> {
        // What does not change is matched first: only the matches' shim
        // files are read (a pod's containers, not the node's).
        let ids: Vec<String> = self
            .records
            .read()
            .expect("containers")
            .values()
            .filter(|r| {
                filter.is_none_or(|f| {
                    r.id.starts_with(&f.id)
                        && r.sandbox_id.starts_with(&f.pod_sandbox_id)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| r.config.labels.get(k) == Some(v))
                })
            })
            .map(|r| r.id.clone())
            .collect();
        ids.iter()
            .filter_map(|id| self.observe(id).ok())
            .filter(|r| {
                filter
                    .and_then(|f| f.state.as_ref())
                    .is_none_or(|s| s.state == r.cri_state() as i32)
            })
            .collect()
    }

    /// The ids of a sandbox's containers.
    pub fn in_sandbox(&self, sandbox_id: &str) -> Vec<String> {
        self.records
            .read()
            .expect("containers")
            .values()
            .filter(|r| r.sandbox_id == sandbox_id)
            .map(|r| r.id.clone())
            .collect()
    }

    /// UpdateContainerResources: new cgroup limits for a live container.
    pub fn update_resources(
        &self,
        id: &str,
        resources: cri::LinuxContainerResources,
    ) -> Result<(), ContainerError> {
        let record = self.get(id)?;
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().expect("container lock");
        let record = self.observe(&record.id)?;
        if !record.is_live() {
            return Err(ContainerError::Precondition(format!(
                "container {} has exited; its resources cannot change",
                record.id
            )));
        }
        let oci = spec::resources(&resources, self.cgroups.enforceable(), "linux")?;
        let file = record.dir.join("resources.json");
        let io = |e: std::io::Error| ContainerError::Runtime {
            id: record.id.clone(),
            reason: format!("{}: {e}", file.display()),
        };
        std::fs::write(&file, serde_json::to_vec(&oci).expect("encodes")).map_err(io)?;
        runtime_of(&record)
            .update(&record.id, &file)
            .map_err(|reason| ContainerError::Runtime {
                id: record.id.clone(),
                reason,
            })?;
        let adj = spec::clamp_oom_score_adj(
            &record.id,
            resources.oom_score_adj,
            self.oom_score_adj_floor,
        );
        let _ = std::fs::write(
            format!("/proc/{}/oom_score_adj", record.init_pid),
            adj.to_string(),
        );
        self.update(&record.id, |r| r.resources = Some(resources))?;
        Ok(())
    }

    /// CheckpointContainer: a criu dump of the running container, left
    /// running, as an archive at `location` (see `crate::checkpoint`).
    /// Held under the container's lock, so it is not stopped or removed
    /// midway; `deadline` bounds the dump.
    pub fn checkpoint(
        &self,
        id: &str,
        location: &str,
        deadline: Instant,
    ) -> Result<(), ContainerError> {
        use crate::checkpoint::{self, CheckpointError};
        let location = checkpoint::check_location(location).map_err(|e| match e {
            CheckpointError::Invalid(m) => ContainerError::Invalid(m),
            other => ContainerError::Invalid(other.to_string()),
        })?;
        let record = self.get(id)?;
        let lock = self.lock_of(&record.id);
        let _held = lock.lock().expect("container lock");
        let record = self.observe(&record.id)?;
        if record.state != ContainerState::Running {
            return Err(ContainerError::Precondition(format!(
                "container {} is not running; only running containers can be checkpointed",
                record.id
            )));
        }
        checkpoint::checkpoint(checkpoint::Dump {
            record: &record,
            runtime: runtime_of(&record),
            writable_layer: self.images.writable_layer(&record.id),
            location: &location,
            deadline,
        })
        .map_err(|e| match e {
            CheckpointError::Invalid(m) => ContainerError::Invalid(m),
            CheckpointError::Precondition(m) => ContainerError::Precondition(m),
            CheckpointError::Timeout(m) => ContainerError::Timeout(m),
            CheckpointError::Failed(reason) => ContainerError::Runtime {
                id: record.id.clone(),
                reason,
            },
        })
    }

    /// ReopenContainerLog: the shim reopens the log file.
    pub fn reopen_log(&self, id: &str) -> Result<(), ContainerError> {
        let record = self.observe(id)?;
        if record.state != ContainerState::Running {
            return Err(ContainerError::Precondition(format!(
                "container {} is not running",
                record.id
            )));
        }
        shim::reopen_log(&record.dir).map_err(|reason| ContainerError::Runtime {
            id: record.id,
            reason,
        })
    }

    /// Start-up: dirs without a record are creates that a crash cut short.
    fn recover(&self) {
        let known: Vec<String> = self
            .records
            .read()
            .expect("containers")
            .keys()
            .cloned()
            .collect();
        if let Ok(entries) = std::fs::read_dir(&self.root) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if known.contains(&id) {
                    continue;
                }
                tracing::warn!(id, "removing a half-made container left by a crash");
                let dir = entry.path();
                let config: Option<ShimConfig> = std::fs::read(dir.join("shim.json"))
                    .ok()
                    .and_then(|b| serde_json::from_slice(&b).ok());
                if let Some(config) = config {
                    let runtime = OciRuntime {
                        binary: config.runtime,
                        root: config.runtime_root,
                        args: config.runtime_args,
                    };
                    let _ = runtime.delete(&id);
                }
                idmap::unmount_all_under(&dir);
                let _ = self.images.remove_rootfs(&id);
                let _ = std::fs::remove_dir_all(&dir);
            }
        }
        // A rootfs whose container has neither record nor dir: a removal
        // cut short after the dir went. Its lease would hold snapshots forever.
        if let Ok(entries) = std::fs::read_dir(self.images.rootfs_root()) {
            for entry in entries.flatten() {
                let id = entry.file_name().to_string_lossy().into_owned();
                if !known.contains(&id) && !self.root.join(&id).exists() {
                    tracing::warn!(
                        id,
                        "removing the rootfs of a container that no longer exists"
                    );
                    let _ = self.images.remove_rootfs(&id);
                }
            }
        }
        for id in known {
            // Watched first, so an exit between the two is not missed.
            if let Ok(record) = self.get(&id)
                && record.is_live()
            {
                self.watch_exit(&record.id, &record.dir);
            }
            match self.observe(&id) {
                Ok(r) => tracing::debug!(id, state = ?r.state, "recovered container"),
                Err(e) => tracing::warn!(id, error = %e, "cannot recover container"),
            }
        }
    }

    fn watch_exit(&self, id: &str, dir: &Path) {
        if let Some(exits) = &self.exits {
            exits.watch(id, dir);
        }
    }

    /// Records an exit the exit watcher saw. While a start or stop holds
    /// the container this answers `Ok(false)` (try again shortly) rather
    /// than wait: a start must record Running before the exit, so events
    /// come in order, and one slow stop must not hold up other containers'
    /// exits.
    pub fn note_exit(&self, id: &str) -> Result<bool, ContainerError> {
        let record = self.get(id)?;
        let lock = self.lock_of(&record.id);
        let Ok(_held) = lock.try_lock() else {
            return Ok(false);
        };
        let observed = self.observe(&record.id)?;
        // How long after the shim wrote the exit the watcher has it recorded
        // (a client's call may have recorded it sooner).
        let written = std::fs::metadata(record.dir.join(crius_shim::protocol::EXIT_FILE))
            .and_then(|m| m.modified());
        if observed.state == ContainerState::Exited
            && let Ok(lag) = written.map(|w| w.elapsed().unwrap_or_default())
        {
            metrics::exit_noticed(lag);
        }
        Ok(true)
    }

    /// What wakes on exits, for a thread to wait on without holding the
    /// containers; `None` where inotify is unavailable.
    pub fn exit_watcher(&self) -> Option<Arc<exits::ExitWatcher>> {
        self.exits.clone()
    }
}

/// `<log_directory>/<log_path>` of the sandbox and container, if both are
/// set.
fn log_path(sandbox: &SandboxRecord, config: &cri::ContainerConfig) -> Option<PathBuf> {
    if sandbox.config.log_directory.is_empty() || config.log_path.is_empty() {
        return None;
    }
    Some(Path::new(&sandbox.config.log_directory).join(&config.log_path))
}

fn runtime_of(record: &ContainerRecord) -> OciRuntime {
    OciRuntime {
        binary: record.runtime.clone(),
        root: record.runtime_root.clone(),
        args: record.runtime_args.clone(),
    }
}

/// An exit nobody recorded: the shim is gone and so is init. The exit code
/// is unknown.
fn lost_exit(record: &ContainerRecord) -> Option<ExitRecord> {
    if shim::is_alive(record.shim_pid) || crate::sandbox::namespaces::is_alive(record.init_pid) {
        return None;
    }
    // The shim may have written the file between the two looks.
    if let Some(exit) = read_exit(&record.dir) {
        return Some(exit);
    }
    Some(ExitRecord {
        exit_code: 255,
        signal: None,
        finished_at: 0,
        oom_killed: false,
    })
}

/// criusd's own oom_score_adj, unless it may lower it (CAP_SYS_RESOURCE).
fn oom_score_adj_floor() -> i64 {
    const CAP_SYS_RESOURCE: u32 = 24;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let has_cap = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0);
    if has_cap {
        return -1000;
    }
    std::fs::read_to_string("/proc/self/oom_score_adj")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}
