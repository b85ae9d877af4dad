//! The crius runtime as a whole: what every RPC needs (configuration, store,
//! OCI runtime handlers, cgroup facts), and the node-level calls kubelet makes
//! (Version, Status, RuntimeConfig, UpdateRuntimeConfig). Not to be confused
//! with OCI runtimes, which are `handlers`.

mod events;
mod lifecycle;
mod pod_metrics;
mod stats;

pub use lifecycle::PodError;

use crate::cgroups::{CgroupInfo, Driver, NoSystemd};
use crate::config::Config;
use crate::container::mounts::AbsentSources;
use crate::container::{ContainerError, ContainerPolicy, Containers};
use crate::cri;
use crate::error::{Classify, ErrorKind};
use crate::handlers::Handlers;
use crate::image::manifest::Platform;
use crate::image::{ImageError, ImageOptions, Images};
use crate::network;
use crate::network::bridge::BridgeNetwork;
use crate::sandbox::{SandboxError, Sandboxes};
use crate::store::{Store, StoreError, Table};
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

/// `Settings` key holding the pod CIDRs kubelet sent (survives restarts).
const POD_CIDR_KEY: &str = "pod_cidrs";

pub struct Runtime {
    pub config: Config,
    pub store: Arc<Store>,
    pub handlers: Handlers,
    pub cgroups: CgroupInfo,
    pub images: Arc<Images>,
    pub sandboxes: Sandboxes,
    pub containers: Containers,
    /// The built-in pod network (used while no CNI config exists).
    pub network: Arc<BridgeNetwork>,
    /// Lifecycle events for GetContainerEvents.
    pub events: crate::events::Events,
    /// The previous CPU sample of each container and pod, for rates.
    pub cpu_rates: crate::stats::CpuRates,
    /// Streaming URLs and the requests behind them.
    pub streaming: crate::stream::Streaming,
    /// Where criusd's own metrics are served, for Status.
    pub metrics: crate::metrics::endpoint::Endpoint,
    /// NRI plugins (started by the daemon once the runtime is shared).
    pub nri: Arc<crate::nri::Nri>,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Cgroups(#[from] NoSystemd),
    #[error(transparent)]
    Images(#[from] ImageError),
    #[error(transparent)]
    Sandboxes(#[from] SandboxError),
    #[error(transparent)]
    Containers(#[from] ContainerError),
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "runtime_config.network_config.pod_cidr: {0:?} is not a CIDR list (want e.g. \"10.244.1.0/24\" or \"10.244.1.0/24,fd00:1::/64\")"
    )]
    BadPodCidr(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Classify for RuntimeError {
    fn kind(&self) -> ErrorKind {
        match self {
            RuntimeError::BadPodCidr(_) => ErrorKind::InvalidArgument,
            RuntimeError::Store(e) => e.kind(),
        }
    }
}

impl Runtime {
    /// Probes the node (cgroups, runtime binaries) and opens the image
    /// store; runs once at start.
    pub fn new(config: Config, store: Store) -> Result<Runtime, StartError> {
        let cgroups = CgroupInfo::detect(config.runtime.cgroup_driver)?;
        let handlers = Handlers::probe(&config.runtime.default_handler, &config.runtime.handlers);
        let store = Arc::new(store);
        let platform = Platform::parse(&config.image.platform).unwrap_or_else(Platform::host);
        let options = ImageOptions {
            platform,
            max_downloads: config.image.max_concurrent_downloads as usize,
            registry_config_path: config.image.registry_config_path.clone(),
            credentials_file: config.image.credentials_file.clone(),
            pinned: config.image.pinned_images.clone(),
        };
        let images = Arc::new(Images::open(&config.root, store.clone(), options)?);
        crate::network::cni::set_plugin_timeout(Duration::from_secs(
            config.network.cni_plugin_timeout_seconds,
        ));
        let network = Arc::new(BridgeNetwork::new(
            &config.network.builtin,
            &config.root.join("network/ipam"),
        ));
        let events = crate::events::Events::default();
        let nri = crate::nri::Nri::new(&config.nri);
        let sandboxes = Sandboxes::open(
            &config.state,
            store.clone(),
            network.clone(),
            events.clone(),
        )?;
        let containers = Containers::open(
            &config.state,
            store.clone(),
            images.clone(),
            cgroups.clone(),
            events.clone(),
            ContainerPolicy {
                absent_sources: AbsentSources {
                    reject: config.runtime.absent_mount_sources_to_reject.clone(),
                    protected: vec![config.root.clone(), config.state.clone()],
                },
                image_volumes_noexec: config.runtime.image_volumes_noexec,
                cdi_spec_dirs: config.runtime.cdi_spec_dirs.clone(),
                exec_in_runtime: config.runtime.exec_in_runtime,
                nri: nri.clone(),
            },
        )?;
        // A crash between a pod's removal and its image volumes' leaves
        // volumes no pod uses.
        images.release_orphan_image_volumes(&|id| sandboxes.get(id).is_ok());
        // What pulls cut short by a crash made, and what only removed
        // containers and volumes held.
        if let Err(e) = images.collect_garbage() {
            tracing::warn!(error = %e, "start-up image garbage collection");
        }
        Ok(Runtime {
            config,
            store,
            handlers,
            cgroups,
            images,
            sandboxes,
            containers,
            network,
            events,
            cpu_rates: Default::default(),
            streaming: Default::default(),
            metrics: Default::default(),
            nri,
        })
    }

    /// Starts the thread that notices containers' exits as they happen
    /// (for their Stopped events). It ends with the runtime.
    pub fn follow_exits(runtime: &Arc<Runtime>) {
        let Some(watcher) = runtime.containers.exit_watcher() else {
            return;
        };
        // Holds the runtime only while it brings records up to date.
        let runtime = Arc::downgrade(runtime);
        let spawned = std::thread::Builder::new()
            .name("exit-watcher".into())
            .spawn(move || {
                // Exits of containers busy starting or stopping, retried soon.
                let mut busy: Vec<String> = Vec::new();
                loop {
                    let pause = (!busy.is_empty()).then_some(Duration::from_millis(20));
                    let mut exited = watcher.wait(pause);
                    exited.append(&mut busy);
                    exited.sort();
                    exited.dedup();
                    let Some(runtime) = runtime.upgrade() else {
                        return;
                    };
                    let mut noted = Vec::new();
                    for id in exited {
                        // Observing the exit records it: the Stopped event.
                        match runtime.containers.note_exit(&id) {
                            Ok(true) => noted.push(id),
                            Ok(false) => busy.push(id),
                            Err(e) => tracing::debug!(id, error = %e, "exited container is gone"),
                        }
                    }
                    // After the records: plugins may take their timeout.
                    runtime.tell_plugins_of_exits(&noted);
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no exit watcher thread");
        }
    }

    /// Pods, containers and live shims, counted from the records for a
    /// metrics scrape.
    pub fn live_counts(&self) -> crate::metrics::daemon::LiveCounts {
        use crate::container::record::ContainerState;
        let pods = self.sandboxes.list(None);
        let ready = pods
            .iter()
            .filter(|p| p.state == crate::sandbox::SandboxState::Ready)
            .count() as u64;
        let containers = self.containers.list(None);
        let in_state =
            |state: ContainerState| containers.iter().filter(|c| c.state == state).count() as u64;
        let shims = containers
            .iter()
            .filter(|c| crate::container::shim::is_alive(c.shim_pid))
            .count() as u64;
        crate::metrics::daemon::LiveCounts {
            pods: vec![("ready", ready), ("notready", pods.len() as u64 - ready)],
            containers: vec![
                ("created", in_state(ContainerState::Created)),
                ("running", in_state(ContainerState::Running)),
                ("exited", in_state(ContainerState::Exited)),
            ],
            shims,
        }
    }

    pub fn version(&self) -> cri::VersionResponse {
        cri::VersionResponse {
            // The kubelet-facing API revision; every CRI runtime answers 0.1.0.
            version: "0.1.0".into(),
            runtime_name: crate::RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: crate::CRI_API_VERSION.into(),
        }
    }

    /// The RuntimeReady and NetworkReady conditions, handler features and,
    /// when `verbose`, JSON details keyed by topic.
    pub fn status(&self, verbose: bool) -> Result<cri::StatusResponse, RuntimeError> {
        let handlers = self.handlers.refresh();
        let default = handlers
            .iter()
            .find(|h| h.name == self.handlers.default_name());
        let runtime_ready = match default {
            Some(h) if h.usable() => condition("RuntimeReady", true, "", ""),
            Some(h) => condition(
                "RuntimeReady",
                false,
                "RuntimeHandlerUnavailable",
                &format!(
                    "default runtime handler {:?}: {}",
                    h.name,
                    h.problem.as_deref().unwrap_or("")
                ),
            ),
            None => condition(
                "RuntimeReady",
                false,
                "RuntimeHandlerUnavailable",
                "no default handler",
            ),
        };
        let net = network::readiness(
            &self.config.network,
            &self.network,
            &self.pod_cidrs().unwrap_or_default(),
        );
        let network_ready = condition("NetworkReady", net.ready, &net.reason, &net.message);

        let features = |h: &crate::handlers::HandlerInfo| cri::RuntimeHandlerFeatures {
            recursive_read_only_mounts: h.features.recursive_read_only_mounts,
            user_namespaces: h.features.user_namespaces,
        };
        // "" names the default handler; then each handler under its own name.
        let mut runtime_handlers: Vec<cri::RuntimeHandler> = default
            .map(|h| cri::RuntimeHandler {
                name: String::new(),
                features: Some(features(h)),
            })
            .into_iter()
            .collect();
        runtime_handlers.extend(handlers.iter().filter(|h| h.usable()).map(|h| {
            cri::RuntimeHandler {
                name: h.name.clone(),
                features: Some(features(h)),
            }
        }));

        let mut info = HashMap::new();
        if verbose {
            let json = |v: serde_json::Value| v.to_string();
            info.insert(
                "config".into(),
                json(serde_json::to_value(&self.config).unwrap_or_default()),
            );
            info.insert(
                "cgroups".into(),
                json(serde_json::to_value(&self.cgroups).unwrap_or_default()),
            );
            info.insert(
                "runtimeHandlers".into(),
                json(serde_json::to_value(&handlers).unwrap_or_default()),
            );
            info.insert(
                "network".into(),
                json(serde_json::to_value(&net).unwrap_or_default()),
            );
            // Whether RuntimeDefault means crius's AppArmor profile here.
            let apparmor = crate::container::apparmor::enabled();
            info.insert(
                "apparmor".into(),
                json(serde_json::json!({
                    "enabled": apparmor,
                    "runtimeDefault": if apparmor { crate::container::apparmor::DEFAULT_PROFILE } else { "none (AppArmor is not enabled on this node)" },
                })),
            );
            info.insert("cdi".into(), json(self.containers.cdi().describe()));
            info.insert("metrics".into(), json(self.metrics.to_json()));
            info.insert("nri".into(), json(self.nri.describe()));
            info.insert(
                "podCIDRs".into(),
                json(serde_json::to_value(self.pod_cidrs()?).unwrap_or_default()),
            );
            info.insert(
                "daemon".into(),
                json(serde_json::json!({
                    "pid": std::process::id(),
                    "version": env!("CARGO_PKG_VERSION"),
                    "revision": crate::GIT_REVISION,
                    "database": self.store.path(),
                    "schemaVersion": self.store.schema_version()?,
                })),
            );
        }
        Ok(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: vec![runtime_ready, network_ready],
            }),
            info,
            runtime_handlers,
            // Supplemental groups policies are applied (container::user);
            // user namespaces are not implemented yet.
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
                user_namespaces_host_network: false,
            }),
        })
    }

    pub fn runtime_config(&self) -> cri::RuntimeConfigResponse {
        let cgroup_driver = match self.cgroups.driver {
            Driver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
            Driver::Systemd => cri::CgroupDriver::Systemd,
        };
        cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: cgroup_driver as i32,
            }),
        }
    }

    /// Records the node's pod CIDRs (comma-separated for dual-stack) for the
    /// network's IP ranges. An empty value keeps what was recorded, as the CRI
    /// says runtimes should ignore an empty CIDR.
    pub fn update_runtime_config(&self, pod_cidr: &str) -> Result<(), RuntimeError> {
        if pod_cidr.trim().is_empty() {
            return Ok(());
        }
        let cidrs: Vec<String> = pod_cidr.split(',').map(|c| c.trim().to_string()).collect();
        if !cidrs.iter().all(|c| is_cidr(c)) {
            return Err(RuntimeError::BadPodCidr(pod_cidr.to_string()));
        }
        self.store.put(Table::Settings, POD_CIDR_KEY, &cidrs)?;
        Ok(())
    }

    /// The configured handler a pod's `runtime_handler` names ("" is the
    /// default), or a clear error.
    pub fn resolve_handler(&self, name: &str) -> Result<String, SandboxError> {
        match self.handlers.get(name) {
            Some(info) => match &info.problem {
                None => Ok(info.name),
                Some(problem) => Err(SandboxError::Unavailable(format!(
                    "runtime handler {:?} cannot run containers on this node: {problem}",
                    info.name
                ))),
            },
            None => {
                let known: Vec<&String> = self.config.runtime.handlers.keys().collect();
                Err(SandboxError::Invalid(format!(
                    "runtime_handler {name:?} is not a configured runtime handler (configured: {known:?})"
                )))
            }
        }
    }

    pub fn pod_cidrs(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self
            .store
            .get(Table::Settings, POD_CIDR_KEY)?
            .unwrap_or_default())
    }
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> cri::RuntimeCondition {
    cri::RuntimeCondition {
        r#type: kind.into(),
        status,
        reason: reason.into(),
        message: message.into(),
    }
}

fn is_cidr(text: &str) -> bool {
    let Some((addr, prefix)) = text.split_once('/') else {
        return false;
    };
    let (Ok(addr), Ok(prefix)) = (addr.parse::<IpAddr>(), prefix.parse::<u8>()) else {
        return false;
    };
    prefix <= if addr.is_ipv4() { 32 } else { 128 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HandlerConfig;

    fn runtime(dir: &std::path::Path, binary: &str) -> Runtime {
        let mut config = Config {
            root: dir.join("root"),
            ..Default::default()
        };
        config.runtime.handlers.clear();
        config.runtime.handlers.insert(
            "runc".into(),
            HandlerConfig {
                binary: binary.into(),
            },
        );
        config.network.cni_conf_dir = dir.join("no-cni");
        config.network.builtin.enabled = false;
        Runtime::new(config, Store::open(dir).unwrap()).unwrap()
    }

    #[test]
    fn version_names_crius() {
        let dir = tempfile::tempdir().unwrap();
        let v = runtime(dir.path(), "true").version();
        assert_eq!(
            (v.runtime_name.as_str(), v.runtime_api_version.as_str()),
            ("crius", "v1")
        );
        assert_eq!(v.runtime_version, env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn status_is_truthful_about_missing_runtime_and_network() {
        let dir = tempfile::tempdir().unwrap();
        let status = runtime(dir.path(), "no-such-runc-xyz")
            .status(true)
            .unwrap();
        let conditions = status.status.unwrap().conditions;
        let runtime_ready = &conditions[0];
        assert_eq!(runtime_ready.r#type, "RuntimeReady");
        assert!(!runtime_ready.status);
        assert!(runtime_ready.message.contains("no-such-runc-xyz"));
        let network_ready = &conditions[1];
        assert!(!network_ready.status);
        assert_eq!(network_ready.reason, "NetworkPluginNotReady");
        assert!(status.info.contains_key("config"));
        let cgroups: serde_json::Value = serde_json::from_str(&status.info["cgroups"]).unwrap();
        assert!(cgroups.get("hierarchy").is_some());
    }

    #[test]
    fn usable_default_handler_is_listed_twice() {
        let dir = tempfile::tempdir().unwrap();
        let status = runtime(dir.path(), "true").status(false).unwrap();
        assert!(status.status.unwrap().conditions[0].status);
        let names: Vec<&str> = status
            .runtime_handlers
            .iter()
            .map(|h| h.name.as_str())
            .collect();
        assert_eq!(names, ["", "runc"]);
        assert!(status.info.is_empty());
    }

    #[test]
    fn pod_cidr_is_validated_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime(dir.path(), "true");
        let err = rt.update_runtime_config("10.0.0.0/33").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains("pod_cidr"));
        rt.update_runtime_config("10.244.1.0/24, fd00:1::/64")
            .unwrap();
        rt.update_runtime_config("").unwrap();
        assert_eq!(rt.pod_cidrs().unwrap(), ["10.244.1.0/24", "fd00:1::/64"]);
    }
}
