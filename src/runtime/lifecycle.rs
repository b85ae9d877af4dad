//! kubelet calls that span domains: a pod's containers stop and go with
//! their sandbox, and a container is made from a sandbox, an image and a
//! runtime handler.

use super::Runtime;
use crate::container::{ContainerError, ContainerRecord, CreateRequest};
use crate::cri;
use crate::error::{Classify, ErrorKind};
use crate::network::pod::NetworkPlan;
use crate::nri::NriError;
use crate::sandbox::{SandboxError, SandboxRecord, SandboxState};

#[derive(Debug, thiserror::Error)]
pub enum PodError {
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Container(#[from] ContainerError),
    #[error(transparent)]
    Nri(#[from] NriError),
}

impl Classify for PodError {
    fn kind(&self) -> ErrorKind {
        match self {
            PodError::Sandbox(e) => e.kind(),
            PodError::Container(e) => e.kind(),
            PodError::Nri(e) => e.kind(),
        }
    }
}

impl Runtime {
    /// RunPodSandbox with the handler's name resolved.
    pub fn run_pod_sandbox(
        &self,
        config: cri::PodSandboxConfig,
        handler: &str,
    ) -> Result<SandboxRecord, PodError> {
        let handler = self.resolve_handler(handler)?;
        if let Some(linux) = &config.linux {
            self.cgroups
                .check_parent(&linux.cgroup_parent)
                .map_err(|e| SandboxError::Invalid(format!("config.linux.cgroup_parent: {e}")))?;
            let userns = linux
                .security_context
                .as_ref()
                .and_then(|s| s.namespace_options.as_ref())
                .and_then(|n| n.userns_options.as_ref())
                .is_some_and(|u| u.mode == cri::NamespaceMode::Pod as i32);
            if userns
                && !self
                    .handlers
                    .get(&handler)
                    .is_some_and(|h| h.features.user_namespaces)
            {
                return Err(SandboxError::Unsupported(format!(
                    "config.linux.security_context.namespace_options.userns_options: runtime handler {handler:?} has no user namespace support on this node (Linux 5.19 or later is needed, for overlayfs over idmapped layers)"
                ))
                .into());
            }
        }
        let network = self.network_plan(&config);
        let record = self.sandboxes.run(config, &handler, network)?;
        if let Err(e) = self.nri.run_pod_sandbox(&record) {
            // Plugins that saw it run hear it go.
            let _ = self.sandboxes.stop(&record.id);
            self.nri.remove_pod_sandbox(&record);
            let _ = self.sandboxes.remove(&record.id);
            return Err(e.into());
        }
        Ok(record)
    }

    /// The network a new pod joins: the first valid CNI config list, read
    /// now (so a config dropped in later is used at once), else the built-in
    /// network. None for host-network pods, and while no network is
    /// configured (the pod then has only `lo`; Status says
    /// NetworkReady=false).
    fn network_plan(&self, config: &cri::PodSandboxConfig) -> Option<NetworkPlan> {
        let mode = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.as_ref())
            .map(|n| n.network)
            .unwrap_or_default();
        if mode == cri::NamespaceMode::Node as i32 {
            return None;
        }
        let pod_cidrs = self.pod_cidrs().unwrap_or_default();
        match crate::network::cni_config::load_first(&self.config.network.cni_conf_dir) {
            Ok(Some(list)) => Some(NetworkPlan::Cni {
                list,
                bin_dirs: self.config.network.cni_bin_dirs.clone(),
                pod_cidrs,
            }),
            Ok(None) if self.network.enabled() => Some(NetworkPlan::Builtin {
                subnets: self.network.subnets(&pod_cidrs),
                network: self.network.clone(),
            }),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "no CNI network for the pod");
                None
            }
        }
    }

    /// StopPodSandbox: its containers are killed, then the sandbox stops.
    /// kubelet has already stopped them gracefully; what still runs is
    /// killed. Unknown ids succeed.
    pub fn stop_pod_sandbox(&self, id: &str) -> Result<(), PodError> {
        let sandbox = match self.sandboxes.get(id) {
            Ok(s) => s,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for container in self.containers.in_sandbox(&sandbox.id) {
            self.stop_container(&container, 0)?;
        }
        self.sandboxes.stop(&sandbox.id)?;
        self.nri.stop_pod_sandbox(&sandbox);
        Ok(())
    }

    /// RemovePodSandbox: its containers are removed, then the sandbox.
    pub fn remove_pod_sandbox(&self, id: &str) -> Result<(), PodError> {
        let sandbox = match self.sandboxes.get(id) {
            Ok(s) => s,
            Err(SandboxError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for container in self.containers.in_sandbox(&sandbox.id) {
            self.remove_container(&container)?;
        }
        self.sandboxes.remove(&sandbox.id)?;
        self.nri.remove_pod_sandbox(&sandbox);
        // After the record: a crash in between leaves volumes that start-up
        // releases, never a pod without its volumes.
        self.images
            .release_image_volumes(&sandbox.id)
            .map_err(ContainerError::from)?;
        Ok(())
    }

    /// CreateContainer in a ready sandbox, with the sandbox's handler.
    pub fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<ContainerRecord, PodError> {
        let sandbox = self.sandboxes.get(sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(ContainerError::Precondition(format!(
                "pod sandbox {} is not ready",
                sandbox.id
            ))
            .into());
        }
        let handler = self.handlers.get(&sandbox.runtime_handler).ok_or_else(|| {
            SandboxError::Invalid(format!(
                "runtime handler {:?} of pod sandbox {} is no longer configured",
                sandbox.runtime_handler, sandbox.id
            ))
        })?;
        if let Some(problem) = &handler.problem {
            return Err(ContainerError::Precondition(format!(
                "runtime handler {:?}: {problem}",
                handler.name
            ))
            .into());
        }
        Ok(self.containers.create(CreateRequest {
            sandbox: &sandbox,
            config,
            handler: &handler,
        })?)
    }

    /// UpdatePodSandboxResources: the new pod-level resources recorded;
    /// plugins hear of them before and after.
    pub fn update_pod_sandbox_resources(
        &self,
        id: &str,
        overhead: Option<cri::LinuxContainerResources>,
        resources: Option<cri::LinuxContainerResources>,
    ) -> Result<(), PodError> {
        if self.nri.active() {
            let pod = self.sandboxes.get(id)?;
            self.nri
                .update_pod_sandbox(&pod, overhead.as_ref(), resources.as_ref())?;
        }
        self.sandboxes.update_resources(id, overhead, resources)?;
        if self.nri.active()
            && let Ok(pod) = self.sandboxes.get(id)
        {
            self.nri.post_update_pod_sandbox(&pod);
        }
        Ok(())
    }

    /// The pod of a container, for NRI events (gone for a container
    /// whose pod was removed first).
    fn pod_of(&self, container: &ContainerRecord) -> Option<SandboxRecord> {
        self.sandboxes.get(&container.sandbox_id).ok()
    }

    /// StartContainer: plugins hear of it before and after; one that
    /// fails StartContainer fails the call (and hears the container stop).
    pub fn start_container(&self, id: &str) -> Result<(), PodError> {
        if !self.nri.active() {
            return Ok(self.containers.start(id)?);
        }
        let record = self.containers.get(id)?;
        let pod = self.pod_of(&record);
        self.nri.start_container(pod.as_ref(), &record)?;
        if let Err(e) = self.containers.start(&record.id) {
            self.nri.stop_container(pod.as_ref(), &record);
            return Err(e.into());
        }
        if let Ok(record) = self.containers.get(&record.id) {
            self.nri.post_start_container(pod.as_ref(), &record);
        }
        Ok(())
    }

    /// StopContainer; plugins hear of it once it has stopped.
    pub fn stop_container(&self, id: &str, timeout: i64) -> Result<(), PodError> {
        let before = self.containers.get(id).ok();
        self.containers.stop(id, timeout)?;
        if let Some(record) = before.filter(|r| r.is_live() && self.nri.active()) {
            let record = self.containers.get(&record.id).unwrap_or(record);
            self.nri
                .stop_container(self.pod_of(&record).as_ref(), &record);
        }
        Ok(())
    }

    /// NRI's StopContainer for containers that stopped on their own, as
    /// containerd sends it from its exit handler (once per container:
    /// StopContainer may have told plugins already).
    pub fn tell_plugins_of_exits(&self, ids: &[String]) {
        if !self.nri.active() {
            return;
        }
        for id in ids {
            if let Ok(record) = self.containers.get(id) {
                self.nri
                    .stop_container(self.pod_of(&record).as_ref(), &record);
            }
        }
    }

    /// RemoveContainer; plugins hear of it once it is gone.
    pub fn remove_container(&self, id: &str) -> Result<(), PodError> {
        let before = self.containers.get(id).ok();
        self.containers.remove(id)?;
        if let Some(record) = before.filter(|_| self.nri.active()) {
            let pod = self.pod_of(&record);
            if record.is_live() {
                self.nri.stop_container(pod.as_ref(), &record);
            }
            self.nri.remove_container(pod.as_ref(), &record);
        }
        Ok(())
    }

    /// UpdateContainerResources: plugins may change the resources first.
    pub fn update_container_resources(
        &self,
        id: &str,
        resources: cri::LinuxContainerResources,
    ) -> Result<(), PodError> {
        if !self.nri.active() {
            return Ok(self.containers.update_resources(id, resources)?);
        }
        let record = self.containers.get(id)?;
        let pod = self.pod_of(&record);
        let resources = self
            .nri
            .update_container(pod.as_ref(), &record, &resources)?
            .unwrap_or(resources);
        self.containers.update_resources(&record.id, resources)?;
        if let Ok(record) = self.containers.get(&record.id) {
            self.nri.post_update_container(pod.as_ref(), &record);
        }
        Ok(())
    }
}
