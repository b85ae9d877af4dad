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

pub mod devices;
pub mod exec;
pub mod mounts;
pub mod oci_runtime;
pub mod record;
pub mod seccomp;
pub mod security;
pub mod shim;
pub mod spec;
pub mod user;

use crate::cgroups::CgroupInfo;
use crate::cri;
use crate::error::{Classify, ErrorKind};
use crate::handlers::HandlerInfo;
use crate::idmap;
use crate::image::{ImageError, Images};
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
    records: RwLock<BTreeMap<String, ContainerRecord>>,
    names: Mutex<HashMap<String, String>>,
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl Containers {
    /// Loads the records, catches up on exits that happened while criusd was
    /// down, and removes what a crash left half-made.
    pub fn open(
        state: &Path,
        store: Arc<Store>,
        images: Arc<Images>,
        cgroups: CgroupInfo,
    ) -> Result<Containers, ContainerError> {
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
            records: RwLock::new(records),
            names: Mutex::new(names),
            locks: Mutex::new(HashMap::new()),
        };
        containers.recover();
        Ok(containers)
    }

    fn lock_of(&self, id: &str) -> Arc<Mutex<()>> {
        self.locks
            .lock()
            .expect("container locks")
            .entry(id.to_string())
            .or_default()
            .clone()
    }

    /// CreateContainer: the rootfs, the bundle, and `<runtime> create` run
    /// by a new shim. Any failure undoes all of it.
    pub fn create(&self, request: CreateRequest) -> Result<ContainerRecord, ContainerError> {
        let config = request.config;
        let sandbox = request.sandbox;
        let meta = config
            .metadata
            .clone()
            .ok_or_else(|| ContainerError::Invalid("config.metadata is required".into()))?;
        if meta.name.is_empty() {
            return Err(ContainerError::Invalid(
                "config.metadata.name is empty".into(),
            ));
        }
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        if image_name.is_empty() {
            return Err(ContainerError::Invalid(
                "config.image.image is empty".into(),
            ));
        }
        let image = self
            .images
            .resolve(&image_name)?
            .ok_or_else(|| ContainerError::NotFound(format!("image {image_name}")))
            .map_err(|_| {
                ContainerError::NotFound(format!(
                    "image {image_name:?} (config.image.image) is not present; pull it first"
                ))
            })?;
        let name = format!("{}_{}_{}", meta.name, sandbox.name, meta.attempt);
        let id = crate::sandbox::new_id();
        {
            let mut names = self.names.lock().expect("container names");
            if let Some(existing) = names.get(&name) {
                return Err(ContainerError::Exists {
                    name,
                    id: existing.clone(),
                });
            }
            names.insert(name.clone(), id.clone());
        }
        let dir = self.root.join(&id);
        let runtime = OciRuntime {
            binary: request.handler.path.clone().unwrap_or_default(),
            root: self.runtime_state.join(&request.handler.name),
            // With the systemd driver, cgroupsPath is "slice:prefix:name".
            args: if self.cgroups.driver == crate::cgroups::Driver::Systemd {
                vec!["--systemd-cgroup".to_string()]
            } else {
                Vec::new()
            },
        };
        let result = self.build(
            &id,
            &name,
            &dir,
            &config,
            sandbox,
            &image,
            &runtime,
            request.handler,
        );
        if result.is_err() {
            let _ = runtime.delete(&id);
            idmap::unmount_all_under(&dir);
            let _ = self.images.remove_rootfs(&id);
            let _ = std::fs::remove_dir_all(&dir);
            self.names.lock().expect("container names").remove(&name);
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn build(
        &self,
        id: &str,
        name: &str,
        dir: &Path,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
        image: &crate::image::record::ImageRecord,
        runtime: &OciRuntime,
        handler: &HandlerInfo,
    ) -> Result<ContainerRecord, ContainerError> {
        let io = |what: &str, e: std::io::Error| ContainerError::Runtime {
            id: id.to_string(),
            reason: format!("{what}: {e}"),
        };
        std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
        let image_name = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        // In a pod with its own user namespace, the container sees its
        // rootfs and volumes through idmapped mounts owned by the pod's root.
        let userns = sandbox.namespaces.user.as_deref();
        let rootfs = self.images.mount_rootfs(
            id,
            &image.id,
            userns.map(|u| (u, sandbox.namespaces.root_ids())),
        )?;
        let volume_sources = match userns {
            Some(userns) => self.idmapped_volumes(id, dir, config, sandbox, userns)?,
            None => Default::default(),
        };
        let sc = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.clone())
            .unwrap_or_default();
        let user = user::resolve(&rootfs, Some(&sc), &image.run_config().user)
            .map_err(|e| ContainerError::Invalid(e.to_string()))?;
        let (pid_namespace, shares_pid_namespace) = self.pid_namespace(&sc, sandbox)?;
        let cgroup = self.cgroups.container(
            &sandbox
                .config
                .linux
                .clone()
                .unwrap_or_default()
                .cgroup_parent,
            id,
        );
        let spec = spec::build(&spec::SpecInput {
            id,
            config,
            sandbox,
            image: image.run_config(),
            image_name: &image_name,
            rootfs: &rootfs,
            user: &user,
            cgroups_path: &cgroup.spec_path,
            hierarchy: self.cgroups.hierarchy,
            swap_accounting: self.cgroups.swap_accounting(),
            oom_score_adj_floor: self.oom_score_adj_floor,
            pid_namespace,
            rro_supported: handler.features.recursive_read_only_mounts,
            volume_sources: &volume_sources,
        })?;
        let spec_json = serde_json::to_vec_pretty(&spec).expect("spec encodes");
        std::fs::write(dir.join("config.json"), spec_json).map_err(|e| io("config.json", e))?;

        let log_path = log_path(sandbox, config);
        if let Some(parent) = log_path.as_ref().and_then(|p| p.parent()) {
            std::fs::create_dir_all(parent).map_err(|e| io(&parent.display().to_string(), e))?;
        }
        std::fs::create_dir_all(&runtime.root).map_err(|e| io("runtime root", e))?;
        std::fs::create_dir_all(&self.socket_dir).map_err(|e| io("socket dir", e))?;
        let (control_socket, console_socket) = shim::sockets(&self.socket_dir, id);
        if control_socket.as_os_str().len() > crius_shim::protocol::MAX_SOCKET_PATH {
            return Err(ContainerError::Precondition(format!(
                "state dir {} is too long for Unix socket paths under it",
                self.socket_dir.display()
            )));
        }
        let started = shim::spawn(
            dir,
            &ShimConfig {
                id: id.to_string(),
                bundle: dir.to_path_buf(),
                runtime: runtime.binary.clone(),
                runtime_root: runtime.root.clone(),
                runtime_args: runtime.args.clone(),
                log_path: log_path.clone(),
                tty: config.tty,
                stdin: config.stdin,
                stdin_once: config.stdin_once,
                oom_file: Some(self.cgroups.oom_file(&cgroup)),
                control_socket,
                console_socket,
            },
        )
        .map_err(|reason| ContainerError::Runtime {
            id: id.to_string(),
            reason,
        })?;
        let stop_signal = record::signal_from_cri(config.stop_signal)
            .or_else(|| record::parse_signal(&image.run_config().stop_signal))
            .unwrap_or(libc::SIGTERM);
        let record = ContainerRecord {
            id: id.to_string(),
            sandbox_id: sandbox.id.clone(),
            name: name.to_string(),
            config: config.clone(),
            image_ref: image
                .repo_digests
                .first()
                .cloned()
                .unwrap_or(image.id.clone()),
            image_name,
            image_id: image.id.clone(),
            handler: handler.name.clone(),
            runtime: runtime.binary.clone(),
            runtime_root: runtime.root.clone(),
            runtime_args: runtime.args.clone(),
            state: ContainerState::Created,
            created_at: crate::time::now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            init_pid: started.init_pid,
            shim_pid: started.shim_pid,
            log_path,
            dir: dir.to_path_buf(),
            user,
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()),
            stop_signal,
            shares_pid_namespace,
            cgroup,
        };
        self.store.put(Table::Containers, id, &record)?;
        self.records
            .write()
            .expect("containers")
            .insert(id.to_string(), record.clone());
        Ok(record)
    }

    /// Idmapped copies of the volumes that ask for the pod's id mappings,
    /// by mount index.
    fn idmapped_volumes(
        &self,
        id: &str,
        dir: &Path,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
        userns: &Path,
    ) -> Result<std::collections::BTreeMap<usize, PathBuf>, ContainerError> {
        let mut sources = std::collections::BTreeMap::new();
        let as_tuples = |m: &[cri::IdMapping]| {
            m.iter()
                .map(|m| (m.container_id, m.host_id, m.length))
                .collect::<Vec<_>>()
        };
        for (i, m) in config.mounts.iter().enumerate() {
            if m.uid_mappings.is_empty() && m.gid_mappings.is_empty() {
                continue;
            }
            if as_tuples(&m.uid_mappings) != sandbox.namespaces.uid_map
                || as_tuples(&m.gid_mappings) != sandbox.namespaces.gid_map
            {
                return Err(ContainerError::Unsupported(format!(
                    "config.mounts[{i}]: idmapped mounts with mappings other than the pod's are not supported"
                )));
            }
            let host = Path::new(&m.host_path);
            let target = dir.join("volumes").join(i.to_string());
            let made = if host.is_dir() {
                std::fs::create_dir_all(&target)
            } else {
                std::fs::create_dir_all(dir.join("volumes"))
                    .and_then(|()| std::fs::File::create(&target).map(|_| ()))
            };
            made.and_then(|()| idmap::mount(host, &target, userns))
                .map_err(|e| {
                    ContainerError::Invalid(format!(
                        "config.mounts[{i}]: idmapped mount of {:?}: {e}",
                        m.host_path
                    ))
                })?;
            let _ = id;
            sources.insert(i, target);
        }
        Ok(sources)
    }

    /// The container's PID namespace from its namespace options.
    fn pid_namespace(
        &self,
        sc: &cri::LinuxContainerSecurityContext,
        sandbox: &SandboxRecord,
    ) -> Result<(spec::PidNamespace, bool), ContainerError> {
        let ns = sc.namespace_options.clone().unwrap_or_default();
        let field = "config.linux.security_context.namespace_options";
        match cri::NamespaceMode::try_from(ns.pid).unwrap_or(cri::NamespaceMode::Container) {
            cri::NamespaceMode::Container => Ok((spec::PidNamespace::Own, false)),
            cri::NamespaceMode::Node => Ok((spec::PidNamespace::Host, true)),
            // POD (also the value of an unset field) in a pod without a
            // pod-wide PID namespace has nothing to share: the container
            // gets its own, as it would beside containerd's pause.
            cri::NamespaceMode::Pod => match &sandbox.namespaces.pid {
                Some(pin) => Ok((spec::PidNamespace::Join(pin.clone()), true)),
                None => Ok((spec::PidNamespace::Own, false)),
            },
            cri::NamespaceMode::Target => {
                let target = self.get(&ns.target_id).map_err(|_| {
                    ContainerError::Invalid(format!(
                        "{field}.target_id {:?} is not a container",
                        ns.target_id
                    ))
                })?;
                if target.state != ContainerState::Running {
                    return Err(ContainerError::Precondition(format!(
                        "{field}.target_id: container {} is not running",
                        target.id
                    )));
                }
                let path = PathBuf::from(format!("/proc/{}/ns/pid", target.init_pid));
                Ok((spec::PidNamespace::Join(path), true))
            }
        }
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
        let runtime = runtime_of(&record);
        runtime
            .start(&record.id)
            .map_err(|reason| ContainerError::Runtime {
                id: record.id.clone(),
                reason,
            })?;
        self.update(&record.id, |r| {
            r.started_at = crate::time::now_nanos();
            if r.state == ContainerState::Created {
                r.state = ContainerState::Running;
            }
        })?;
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
        if record.is_live() {
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
        let records = self.records.read().expect("containers");
        if let Some(record) = records.get(id) {
            return Ok(record.clone());
        }
        let mut matches = records
            .range(id.to_string()..)
            .take_while(|(k, _)| k.starts_with(id));
        match (matches.next(), matches.next()) {
            (Some((_, record)), None) => Ok(record.clone()),
            (Some(_), Some(_)) => Err(ContainerError::Ambiguous(id.to_string())),
            (None, _) => Err(ContainerError::NotFound(id.to_string())),
        }
    }

    /// The container, its state brought up to date with its shim's files.
    pub fn observe(&self, id: &str) -> Result<ContainerRecord, ContainerError> {
        let record = self.get(id)?;
        if !record.is_live() {
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
        change(record);
        if serde_json::to_vec(record).expect("record encodes") != before {
            self.store.put(Table::Containers, id, record)?;
        }
        Ok(record.clone())
    }

    /// ListContainers: every filter field that is set must match.
    pub fn list(&self, filter: Option<&cri::ContainerFilter>) -> Vec<ContainerRecord> {
        let ids: Vec<String> = self
            .records
            .read()
            .expect("containers")
            .keys()
            .cloned()
            .collect();
        ids.iter()
            .filter_map(|id| self.observe(id).ok())
            .filter(|r| match filter {
                None => true,
                Some(f) => {
                    r.id.starts_with(&f.id)
                        && r.sandbox_id.starts_with(&f.pod_sandbox_id)
                        && f.state
                            .as_ref()
                            .is_none_or(|s| s.state == r.cri_state() as i32)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| r.config.labels.get(k) == Some(v))
                }
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
        let oci = spec::resources(
            &resources,
            self.cgroups.hierarchy,
            self.cgroups.swap_accounting(),
            "linux",
        )?;
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
        for id in known {
            match self.observe(&id) {
                Ok(r) => tracing::debug!(id, state = ?r.state, "recovered container"),
                Err(e) => tracing::warn!(id, error = %e, "cannot recover container"),
            }
        }
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
