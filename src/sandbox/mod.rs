//! Pod sandboxes: the namespaces and files a pod's containers share.
//!
//! crius runs no process for a sandbox: its network, IPC and UTS namespaces
//! (and user namespace, if it has one) are pinned by bind mounts (see
//! `namespaces`), so a pod costs no memory of its own. Only a pod-wide PID
//! namespace needs a process to hold it: `crius-pause`.
//!
//! Invariants:
//! - A sandbox record is written only after everything it names exists; a
//!   failure at any step undoes the steps before it.
//! - (name, namespace, uid, attempt) names at most one sandbox: the name is
//!   reserved before anything is created.
//! - Everything a sandbox owns lives in `<state>/sandboxes/<id>/` (pins, files,
//!   shm), so removal is one place to clean, and idempotent.

pub mod files;
pub mod namespaces;
mod plan;

use crate::cri;
use crate::error::{Classify, ErrorKind};
use crate::events::{Event, EventKind, Events};
use crate::ids::Lookup;
use crate::metrics::daemon::{self as metrics, Phase};
use crate::network::bridge::BridgeNetwork;
use crate::network::pod::{NetworkError, NetworkPlan, PodNetwork, Provider};
use crate::store::{Store, StoreError, Table};
use namespaces::{Namespaces, PinRequest};
use plan::Plan;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unsupported(String),
    /// Something the sandbox needs cannot be used on this node.
    #[error("{0}")]
    Unavailable(String),
    #[error("pod sandbox {name:?} already exists as {id}")]
    Exists { name: String, id: String },
    #[error("pod sandbox {0:?} not found")]
    NotFound(String),
    #[error("pod sandbox id prefix {0:?} matches more than one sandbox")]
    Ambiguous(String),
    #[error("creating pod sandbox {name:?}: {reason}")]
    Create { name: String, reason: String },
    #[error("pod sandbox {id}: {reason}")]
    Io { id: String, reason: String },
    #[error("pod sandbox {id}: network teardown: {reason}")]
    Network { id: String, reason: String },
    #[error("creating pod sandbox {name:?}: network: {source}")]
    NetworkSetup { name: String, source: NetworkError },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for SandboxError {
    fn kind(&self) -> ErrorKind {
        match self {
            SandboxError::Invalid(_) | SandboxError::Ambiguous(_) => ErrorKind::InvalidArgument,
            SandboxError::Unsupported(_) => ErrorKind::Unimplemented,
            SandboxError::Unavailable(_) => ErrorKind::FailedPrecondition,
            SandboxError::Exists { .. } => ErrorKind::AlreadyExists,
            SandboxError::NotFound(_) => ErrorKind::NotFound,
            SandboxError::Create { .. }
            | SandboxError::Io { .. }
            | SandboxError::Network { .. } => ErrorKind::Internal,
            SandboxError::NetworkSetup { source, .. } if source.is_invalid_request() => {
                ErrorKind::InvalidArgument
            }
            SandboxError::NetworkSetup { source, .. } if source.is_conflict() => {
                ErrorKind::AlreadyExists
            }
            SandboxError::NetworkSetup { source, .. } if source.is_timeout() => {
                ErrorKind::DeadlineExceeded
            }
            SandboxError::NetworkSetup { .. } => ErrorKind::Internal,
            SandboxError::Store(e) => e.kind(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// What crius keeps about a sandbox (in the store's `sandboxes` table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// "name_namespace_uid_attempt": unique among sandboxes.
    pub name: String,
    pub config: cri::PodSandboxConfig,
    /// The handler's name as configured ("" never: the default is resolved).
    pub runtime_handler: String,
    pub state: SandboxState,
    pub created_at: i64,
    pub hostname: String,
    pub namespaces: Namespaces,
    pub dir: PathBuf,
    /// The pod's CNI attachment; `None` for host-network pods and pods
    /// made while no network was configured.
    #[serde(default)]
    pub network: Option<PodNetwork>,
}

impl SandboxRecord {
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    pub fn namespace_options(&self) -> cri::NamespaceOption {
        self.config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default()
    }

    pub fn cri_state(&self) -> cri::PodSandboxState {
        match self.state {
            SandboxState::Ready => cri::PodSandboxState::SandboxReady,
            SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }

    pub fn to_cri(&self) -> cri::PodSandbox {
        cri::PodSandbox {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.cri_state() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }
}

impl SandboxRecord {
    /// The pod's IPs: the primary, then the others.
    fn network_status(&self) -> cri::PodSandboxNetworkStatus {
        let ips = self
            .network
            .as_ref()
            .filter(|n| !n.detached)
            .map(|n| n.ips.clone())
            .unwrap_or_default();
        cri::PodSandboxNetworkStatus {
            ip: ips.first().cloned().unwrap_or_default(),
            additional_ips: ips
                .iter()
                .skip(1)
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        }
    }

    /// PodSandboxStatus, with `info` (JSON) when verbose.
    pub fn status(&self, verbose: bool) -> (cri::PodSandboxStatus, HashMap<String, String>) {
        let status = cri::PodSandboxStatus {
            id: self.id.clone(),
            metadata: Some(self.metadata()),
            state: self.cri_state() as i32,
            created_at: self.created_at,
            network: Some(self.network_status()),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace {
                    options: Some(self.namespace_options()),
                }),
            }),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        };
        let mut info = HashMap::new();
        if verbose {
            let detail = serde_json::json!({
                "dir": self.dir,
                "hostname": self.hostname,
                "namespaces": self.namespaces,
                "network": self.network,
                "name": self.name,
                "config": self.config,
            });
            info.insert("info".to_string(), detail.to_string());
        }
        (status, info)
    }
}

pub struct Sandboxes {
    store: Arc<Store>,
    root: PathBuf,
    records: RwLock<BTreeMap<String, SandboxRecord>>,
    /// Names being created or existing, to their ids.
    names: Mutex<HashMap<String, String>>,
    /// The built-in network, which tears down pods attached to it.
    builtin: Arc<BridgeNetwork>,
    events: Events,
}

impl Sandboxes {
    /// Loads the records and repairs what a crash or reboot left; `state` is
    /// the daemon's state dir.
    pub fn open(
        state: &Path,
        store: Arc<Store>,
        builtin: Arc<BridgeNetwork>,
        events: Events,
    ) -> Result<Sandboxes, SandboxError> {
        let root = state.join("sandboxes");
        std::fs::create_dir_all(&root).map_err(|e| SandboxError::Io {
            id: "-".into(),
            reason: e.to_string(),
        })?;
        let mut records: BTreeMap<String, SandboxRecord> =
            store.list(Table::Sandboxes)?.into_iter().collect();
        recover(&root, &store, &mut records)?;
        let names = records
            .values()
            .map(|r| (r.name.clone(), r.id.clone()))
            .collect();
        builtin.restore(records.values().filter_map(|r| match &r.network {
            Some(PodNetwork {
                detached: false,
                provider: Provider::Builtin { builtin },
                ..
            }) => Some((r.id.as_str(), builtin)),
            _ => None,
        }));
        Ok(Sandboxes {
            store,
            root,
            records: RwLock::new(records),
            names: Mutex::new(names),
            builtin,
            events,
        })
    }

    /// RunPodSandbox: validates, reserves the name, creates namespaces and
    /// files, records the sandbox. `handler` is the resolved handler name.
    pub fn run(
        &self,
        config: cri::PodSandboxConfig,
        handler: &str,
        network: Option<NetworkPlan>,
    ) -> Result<SandboxRecord, SandboxError> {
        let plan = Plan::of(&config)?;
        let id = crate::ids::new_id();
        {
            let mut names = self.names.lock().expect("sandbox names");
            if let Some(existing) = names.get(&plan.name) {
                return Err(SandboxError::Exists {
                    name: plan.name,
                    id: existing.clone(),
                });
            }
            names.insert(plan.name.clone(), id.clone());
        }
        let dir = self.root.join(&id);
        let result = self.create(&id, &dir, &config, &plan, handler, network.as_ref());
        if result.is_err() {
            // Undo whatever was made, and free the name.
            kill_pause_in(&dir);
            files::unmount_shm(&dir);
            namespaces::unpin(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            self.names.lock().expect("sandbox names").remove(&plan.name);
        }
        result
    }

    fn create(
        &self,
        id: &str,
        dir: &Path,
        config: &cri::PodSandboxConfig,
        plan: &Plan,
        handler: &str,
        network: Option<&NetworkPlan>,
    ) -> Result<SandboxRecord, SandboxError> {
        let fail = |reason: String| SandboxError::Create {
            name: plan.name.clone(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(format!("{}: {e}", dir.display())))?;
        if !config.log_directory.is_empty() {
            std::fs::create_dir_all(&config.log_directory)
                .map_err(|e| fail(format!("log_directory {}: {e}", config.log_directory)))?;
        }
        let started = Instant::now();
        let namespaces = namespaces::pin(
            dir,
            &PinRequest {
                network: !plan.host_network,
                ipc: !plan.host_ipc,
                uts: !plan.host_network,
                hostname: (!plan.host_network).then_some(plan.hostname.as_str()),
                sysctls: &plan.sysctls,
                shared_pid: plan.shared_pid,
                user: plan.user.clone(),
            },
        )
        .map_err(|e| fail(format!("namespaces: {e}")))?;
        metrics::pod_phase(Phase::Namespaces, started.elapsed());
        files::write_hostname(dir, &plan.hostname)
            .map_err(|e| fail(format!("hostname file: {e}")))?;
        files::write_hosts(dir, &plan.hostname, plan.host_network)
            .map_err(|e| fail(format!("hosts file: {e}")))?;
        files::write_resolv_conf(dir, config.dns_config.as_ref())
            .map_err(|e| fail(format!("resolv.conf: {e}")))?;
        if !plan.host_ipc {
            files::mount_shm(dir, namespaces.root_ids())
                .map_err(|e| fail(format!("/dev/shm: {e}")))?;
        }
        // The network comes last: its undo (DEL) is the only one outside
        // the sandbox's dir. What DEL needs is written first, so that a
        // crash while plugins run leaves what start-up needs to undo them.
        let pending = dir.join(PENDING_NETWORK);
        if let (Some(network), Some(netns)) = (network, &namespaces.network)
            && let Some(before) = crate::network::pod::before_attach(network, id, netns, config)
        {
            let bytes = serde_json::to_vec(&before).expect("network record encodes");
            crius_shim::protocol::write_atomic(&pending, &bytes)
                .map_err(|e| fail(format!("{}: {e}", pending.display())))?;
        }
        let pod_network =
            match (network, &namespaces.network) {
                (Some(network), Some(netns)) => {
                    let started = Instant::now();
                    let attached = crate::network::pod::attach(network, id, netns, config)
                        .map_err(|source| SandboxError::NetworkSetup {
                            name: plan.name.clone(),
                            source,
                        })?;
                    metrics::pod_phase(Phase::Network, started.elapsed());
                    Some(attached)
                }
                _ => None,
            };
        let record = SandboxRecord {
            id: id.to_string(),
            name: plan.name.clone(),
            config: config.clone(),
            runtime_handler: handler.to_string(),
            state: SandboxState::Ready,
            created_at: crate::time::now_nanos(),
            hostname: plan.hostname.clone(),
            namespaces,
            dir: dir.to_path_buf(),
            network: pod_network,
        };
        if let Err(e) = self.store.put(Table::Sandboxes, id, &record) {
            if let Some(net) = &record.network {
                let _ = crate::network::pod::detach(
                    net,
                    id,
                    record.namespaces.network.as_deref(),
                    &self.builtin,
                );
            }
            return Err(e.into());
        }
        // The record now says how to tear the network down.
        let _ = std::fs::remove_file(&pending);
        self.records
            .write()
            .expect("sandboxes")
            .insert(id.to_string(), record.clone());
        // A sandbox is created and started in one call.
        self.events.send(Event::new(EventKind::Created, id, id));
        self.events.send(Event::new(EventKind::Started, id, id));
        Ok(record)
    }

    /// The sandbox with this id or unique id prefix.
    pub fn get(&self, id: &str) -> Result<SandboxRecord, SandboxError> {
        if id.is_empty() {
            return Err(SandboxError::Invalid("pod_sandbox_id is empty".into()));
        }
        match crate::ids::by_prefix(&self.records.read().expect("sandboxes"), id) {
            Lookup::Found(record) => Ok(record.clone()),
            Lookup::Ambiguous => Err(SandboxError::Ambiguous(id.to_string())),
            Lookup::Missing => Err(SandboxError::NotFound(id.to_string())),
        }
    }

    /// StopPodSandbox: the sandbox is no longer ready. Idempotent; unknown ids
    /// succeed. (Its containers and network go here as those issues land.)
    pub fn stop(&self, id: &str) -> Result<(), SandboxError> {
        let mut record = match self.get(id) {
            Ok(record) => record,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        // The pod's processes stop: with a shared PID namespace, killing its
        // PID 1 ends them all.
        namespaces::kill_pause(&record.namespaces);
        let detach_now = record.network.as_ref().is_some_and(|n| !n.detached);
        if record.state == SandboxState::NotReady && !detach_now {
            return Ok(());
        }
        if let Some(net) = record.network.as_mut().filter(|n| !n.detached) {
            let netns = record.namespaces.network.as_deref().filter(|p| p.exists());
            crate::network::pod::detach(net, &record.id, netns, &self.builtin).map_err(|e| {
                SandboxError::Network {
                    id: record.id.clone(),
                    reason: e.to_string(),
                }
            })?;
            net.detached = true;
        }
        let was_ready = record.state == SandboxState::Ready;
        record.state = SandboxState::NotReady;
        self.store.put(Table::Sandboxes, &record.id, &record)?;
        let id = record.id.clone();
        self.records
            .write()
            .expect("sandboxes")
            .insert(id.clone(), record);
        if was_ready {
            self.events.send(Event::new(EventKind::Stopped, &id, &id));
        }
        Ok(())
    }

    /// UpdatePodSandboxResources: kubelet has already resized the pod's
    /// cgroup; the sandbox's config records the new pod-level resources and
    /// overhead (as PodSandboxStatus and later container creations see them).
    pub fn update_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<(), SandboxError> {
        let mut record = self.get(id)?;
        let linux = record.config.linux.get_or_insert_default();
        linux.overhead = overhead;
        linux.resources = resources;
        self.store.put(Table::Sandboxes, &record.id, &record)?;
        self.records
            .write()
            .expect("sandboxes")
            .insert(record.id.clone(), record);
        Ok(())
    }

    /// RemovePodSandbox: unpins namespaces, unmounts shm, deletes the dir and
    /// the record. Idempotent; unknown ids succeed.
    pub fn remove(&self, id: &str) -> Result<(), SandboxError> {
        let record = match self.get(id) {
            Ok(record) => record,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        namespaces::kill_pause(&record.namespaces);
        if let Some(net) = record.network.as_ref().filter(|n| !n.detached) {
            let netns = record.namespaces.network.as_deref().filter(|p| p.exists());
            if let Err(e) = crate::network::pod::detach(net, &record.id, netns, &self.builtin) {
                tracing::warn!(id = %record.id, error = %e, "network teardown failed; removing the pod anyway");
            }
        }
        files::unmount_shm(&record.dir);
        namespaces::unpin(&record.dir);
        if record.dir.exists() {
            std::fs::remove_dir_all(&record.dir).map_err(|e| SandboxError::Io {
                id: record.id.clone(),
                reason: format!("{}: {e}", record.dir.display()),
            })?;
        }
        self.store.delete(Table::Sandboxes, &record.id)?;
        self.records.write().expect("sandboxes").remove(&record.id);
        self.names
            .lock()
            .expect("sandbox names")
            .remove(&record.name);
        let mut deleted = Event::new(EventKind::Deleted, &record.id, &record.id);
        deleted.sandbox_status = Some(Box::new(record.status(false).0));
        self.events.send(deleted);
        Ok(())
    }

    /// ListPodSandbox: every filter field that is set must match.
    pub fn list(&self, filter: Option<&cri::PodSandboxFilter>) -> Vec<SandboxRecord> {
        let records = self.records.read().expect("sandboxes");
        records
            .values()
            .filter(|r| match filter {
                None => true,
                Some(f) => {
                    r.id.starts_with(&f.id)
                        && f.state
                            .as_ref()
                            .is_none_or(|s| s.state == r.cri_state() as i32)
                        && f.label_selector
                            .iter()
                            .all(|(k, v)| r.config.labels.get(k) == Some(v))
                }
            })
            .cloned()
            .collect()
    }
}

/// Start-up repair. A directory without a record is a RunPodSandbox that a
/// crash interrupted: its pins and shm are released and it is deleted. A ready
/// record whose pinned namespaces are gone (a reboot emptied the state dir) is
/// no longer ready: kubelet will create the pod again.
fn recover(
    root: &Path,
    store: &Store,
    records: &mut BTreeMap<String, SandboxRecord>,
) -> Result<(), SandboxError> {
    let io = |e: std::io::Error| SandboxError::Io {
        id: "-".into(),
        reason: format!("{}: {e}", root.display()),
    };
    for entry in std::fs::read_dir(root).map_err(io)? {
        let dir = entry.map_err(io)?.path();
        let id = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !records.contains_key(&id) {
            tracing::warn!(dir = %dir.display(), "removing a half-made pod sandbox left by a crash");
            undo_unfinished_network(&dir, &id);
            kill_pause_in(&dir);
            files::unmount_shm(&dir);
            namespaces::unpin(&dir);
            std::fs::remove_dir_all(&dir).map_err(io)?;
        }
    }
    for record in records.values_mut() {
        let pins = [
            &record.namespaces.network,
            &record.namespaces.ipc,
            &record.namespaces.uts,
            &record.namespaces.pid,
            &record.namespaces.user,
        ];
        let pause_died = record
            .namespaces
            .pause_pid
            .is_some_and(|pid| !namespaces::is_alive(pid));
        let lost = pins.iter().any(|p| p.as_ref().is_some_and(|p| !p.exists()))
            || !record.dir.exists()
            || pause_died;
        if lost && record.state == SandboxState::Ready {
            tracing::warn!(id = %record.id, "pod sandbox lost its namespaces or pause process: not ready");
            record.state = SandboxState::NotReady;
            store.put(Table::Sandboxes, &record.id, record)?;
        }
    }
    Ok(())
}

/// Where a sandbox keeps what DEL needs while its CNI ADD runs.
const PENDING_NETWORK: &str = "network-pending.json";

/// Runs CNI DEL for an ADD a crash interrupted (the namespace is still
/// pinned in the dir), releasing addresses and interfaces plugins took.
fn undo_unfinished_network(dir: &Path, id: &str) {
    let Ok(bytes) = std::fs::read(dir.join(PENDING_NETWORK)) else {
        return;
    };
    let Ok(net) = serde_json::from_slice::<PodNetwork>(&bytes) else {
        return;
    };
    let netns = dir.join("net");
    let netns = netns.exists().then_some(netns.as_path());
    match crate::network::pod::detach_unfinished(&net, id, netns) {
        Ok(()) => tracing::info!(
            id,
            "released the network of a pod sandbox a crash cut short"
        ),
        Err(e) => {
            tracing::warn!(id, error = %e, "network teardown of a half-made pod sandbox failed")
        }
    }
}

/// Kills the pause process a sandbox dir records, if it still runs.
fn kill_pause_in(dir: &Path) {
    let pid = std::fs::read_to_string(dir.join("pause.pid"))
        .ok()
        .and_then(|p| p.trim().parse().ok());
    if let Some(pid) = pid {
        namespaces::kill_pause(&Namespaces {
            pid: Some(dir.join("pid")),
            pause_pid: Some(pid),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> cri::PodSandboxConfig {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn plans_check_metadata_namespaces_and_sysctls() {
        let base = r#""metadata": {"name": "p", "namespace": "ns", "uid": "u", "attempt": 2}"#;
        let plan = Plan::of(&config(&format!("{{{base}, \"hostname\": \"h\", \"linux\": {{\"security_context\": {{\"namespace_options\": {{\"pid\": 1}}}}}}}}"))).unwrap();
        assert_eq!(
            (
                plan.name.as_str(),
                plan.hostname.as_str(),
                plan.host_network
            ),
            ("p_ns_u_2", "h", false)
        );

        let err = |json: String| Plan::of(&config(&json)).err().unwrap().to_string();
        assert!(
            err(r#"{"metadata": {"name": "p", "namespace": "ns"}}"#.into())
                .contains("config.metadata.uid is empty")
        );
        assert!(err("{}".into()).contains("config.metadata is required"));
        assert!(err(format!("{{{base}, \"linux\": {{\"security_context\": {{\"namespace_options\": {{\"pid\": 3}}}}}}}}")).contains("pid = TARGET"));
        assert!(err(format!("{{{base}, \"linux\": {{\"security_context\": {{\"namespace_options\": {{\"pid\": 1, \"network\": 3}}}}}}}}")).contains("network must be POD or NODE"));
        let host_net =
            "\"security_context\": {\"namespace_options\": {\"pid\": 1, \"network\": 2}}";
        assert!(err(format!("{{{base}, \"linux\": {{{host_net}, \"sysctls\": {{\"net.ipv4.ip_forward\": \"1\"}}}}}}")).contains("host's"));
        assert!(err(format!("{{{base}, \"linux\": {{\"security_context\": {{\"namespace_options\": {{\"pid\": 1}}}}, \"sysctls\": {{\"vm.swappiness\": \"1\"}}}}}}")).contains("not a namespaced sysctl"));
        assert!(
            err(format!(
                "{{{base}, \"port_mappings\": [{{\"container_port\": 80, \"host_port\": 70000}}]}}"
            ))
            .contains("config.port_mappings[0]: host_port 70000 is not a port")
        );
        assert!(
            err(format!("{{{base}, \"port_mappings\": [{{\"container_port\": 80, \"host_port\": 8080, \"host_ip\": \"nowhere\"}}]}}"))
                .contains("host_ip \"nowhere\" is not an IP address")
        );
    }
}
