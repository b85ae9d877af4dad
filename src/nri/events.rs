//! The lifecycle points the runtime calls, in a request's order. Each
//! returns at once while no plugin is connected.
//!
//! Which failures fail the CRI call, as in containerd: RunPodSandbox,
//! CreateContainer, StartContainer and UpdateContainer; the others
//! (post-events, stops, removals) are only logged, since what they report
//! has already happened.

use super::result::{CreateMerge, UpdateMerge, UpdatesOnly};
use super::{Nri, NriError, api, convert};
use crate::container::ContainerRecord;
use crate::cri;
use crate::sandbox::SandboxRecord;
use api::Event;

impl Nri {
    async fn notify_all(
        &self,
        event: Event,
        pod: &api::PodSandbox,
        container: Option<&api::Container>,
    ) -> Result<(), NriError> {
        let plugins = self.plugins().await;
        for p in plugins.iter() {
            p.notify(event, pod, container).await?;
        }
        Ok(())
    }

    fn pod_event(&self, event: Event, pod: &SandboxRecord) -> Result<(), NriError> {
        if !self.active() {
            return Ok(());
        }
        let pod = convert::pod(pod);
        self.block_on(self.notify_all(event, &pod, None))
            .unwrap_or(Ok(()))
    }

    fn container_event(
        &self,
        event: Event,
        pod: Option<&SandboxRecord>,
        container: &ContainerRecord,
    ) -> Result<(), NriError> {
        if !self.active() {
            return Ok(());
        }
        let pod = pod.map(convert::pod).unwrap_or_default();
        let container = convert::container(container);
        self.block_on(self.notify_all(event, &pod, Some(&container)))
            .unwrap_or(Ok(()))
    }

    /// An event whose answer nothing waits for (the Post* events): the
    /// plugin list is locked before this returns, so the event reaches
    /// plugins before any later one, and it goes out in the background
    /// while the CRI call answers.
    fn post_event(&self, event: Event, pod: &api::PodSandbox, container: Option<api::Container>) {
        let Some(handle) = self.handle.get() else {
            return;
        };
        let Some(plugins) = self.block_on(self.plugins.clone().lock_owned()) else {
            return;
        };
        let pod = pod.clone();
        handle.spawn(async move {
            for p in plugins.iter() {
                if let Err(e) = p.notify(event, &pod, container.as_ref()).await {
                    let id = container.as_ref().map_or(&pod.id, |c| &c.id);
                    tracing::warn!(id, error = %e, "NRI {}", super::plugin::event_name(event));
                }
            }
        });
    }

    fn post_container_event(
        &self,
        event: Event,
        pod: Option<&SandboxRecord>,
        container: &ContainerRecord,
    ) {
        if !self.active() {
            return;
        }
        let pod = pod.map(convert::pod).unwrap_or_default();
        self.post_event(event, &pod, Some(convert::container(container)));
    }

    fn logged(what: &str, id: &str, result: Result<(), NriError>) {
        if let Err(e) = result {
            tracing::warn!(id, error = %e, "NRI {what}");
        }
    }

    /// After the pod is made; an error fails RunPodSandbox (the caller
    /// removes the pod).
    pub fn run_pod_sandbox(&self, pod: &SandboxRecord) -> Result<(), NriError> {
        self.pod_event(Event::RUN_POD_SANDBOX, pod)
    }

    /// Before a pod's new resources are recorded; an error fails
    /// UpdatePodSandboxResources.
    pub fn update_pod_sandbox(
        &self,
        pod: &SandboxRecord,
        overhead: Option<&cri::LinuxContainerResources>,
        resources: Option<&cri::LinuxContainerResources>,
    ) -> Result<(), NriError> {
        if !self.active() {
            return Ok(());
        }
        let mut req = api::UpdatePodSandboxRequest::new();
        req.pod = protobuf::MessageField::some(convert::pod(pod));
        req.overhead_linux_resources =
            protobuf::MessageField::from_option(overhead.map(convert::resources_from_cri));
        req.linux_resources =
            protobuf::MessageField::from_option(resources.map(convert::resources_from_cri));
        self.block_on(async {
            let plugins = self.plugins().await;
            for p in plugins.iter() {
                p.update_pod_sandbox(&req).await?;
            }
            Ok(())
        })
        .unwrap_or(Ok(()))
    }

    pub fn post_update_pod_sandbox(&self, pod: &SandboxRecord) {
        if self.active() {
            self.post_event(Event::POST_UPDATE_POD_SANDBOX, &convert::pod(pod), None);
        }
    }

    pub fn stop_pod_sandbox(&self, pod: &SandboxRecord) {
        Self::logged(
            "StopPodSandbox",
            &pod.id,
            self.pod_event(Event::STOP_POD_SANDBOX, pod),
        );
    }

    pub fn remove_pod_sandbox(&self, pod: &SandboxRecord) {
        Self::logged(
            "RemovePodSandbox",
            &pod.id,
            self.pod_event(Event::REMOVE_POD_SANDBOX, pod),
        );
    }

    /// Before the bundle is written: the plugins' merged adjustment of the
    /// container `container` (described from its spec). Updates plugins
    /// request of other containers are applied before this returns.
    pub fn create_container(
        &self,
        pod: &SandboxRecord,
        container: api::Container,
    ) -> Result<Option<api::ContainerAdjustment>, NriError> {
        if !self.active() {
            return Ok(None);
        }
        let pod = convert::pod(pod);
        let merged = self.block_on(async {
            let plugins = self.plugins().await;
            let validating = plugins.iter().any(|p| p.validates());
            // Validators see the container as it came, before adjustments.
            let pristine = validating.then(|| container.clone());
            let mut merge = CreateMerge::new(container);
            for p in plugins.iter() {
                let mut req = api::CreateContainerRequest::new();
                req.pod = protobuf::MessageField::some(pod.clone());
                req.container = protobuf::MessageField::some(merge.container.clone());
                if let Some(answer) = p.create_container(&req).await? {
                    if !answer.evict.is_empty() {
                        tracing::warn!(plugin = %p.name(), "NRI: evictions in a CreateContainer answer are ignored");
                    }
                    merge.apply(answer, &p.name())?;
                }
            }
            let owners = validating.then(|| merge.owners());
            let (adjust, updates) = merge.finish();
            if let (Some(container), Some(owners)) = (pristine, owners) {
                let mut req = api::ValidateContainerAdjustmentRequest::new();
                req.pod = protobuf::MessageField::some(pod.clone());
                req.container = protobuf::MessageField::some(container);
                req.adjust = protobuf::MessageField::some(adjust.clone());
                req.update = updates.clone();
                req.owners = protobuf::MessageField::some(owners);
                req.plugins = plugins
                    .iter()
                    .map(|p| {
                        let mut instance = api::PluginInstance::new();
                        instance.name = p.base.clone();
                        instance.index = p.idx.clone();
                        instance
                    })
                    .collect();
                // Validators are asked all at once; any refusal fails it.
                let answers =
                    futures_util::future::join_all(plugins.iter().map(|p| p.validate(&req))).await;
                let refusals: Vec<_> = answers.into_iter().filter_map(Result::err).collect();
                if !refusals.is_empty() {
                    return Err(NriError::Rejected(refusals));
                }
            }
            Ok::<_, NriError>((adjust, updates))
        });
        let Some(merged) = merged else {
            return Ok(None);
        };
        let (adjust, updates) = merged?;
        self.apply_updates(updates);
        Ok(Some(adjust))
    }

    /// A create that failed after plugins adjusted it: they hear it stop
    /// and go, as containerd tells them.
    pub fn undo_create_container(&self, pod: &SandboxRecord, container: api::Container) {
        if !self.active() {
            return;
        }
        let pod = convert::pod(pod);
        let result = self.block_on(async {
            self.stop_all(&pod, &container).await?;
            self.notify_all(Event::REMOVE_CONTAINER, &pod, Some(&container))
                .await
        });
        Self::logged(
            "undo CreateContainer",
            &container.id,
            result.unwrap_or(Ok(())),
        );
    }

    pub fn post_create_container(&self, pod: &SandboxRecord, container: &ContainerRecord) {
        self.post_container_event(Event::POST_CREATE_CONTAINER, Some(pod), container);
    }

    /// Before the container starts; an error fails StartContainer.
    pub fn start_container(
        &self,
        pod: Option<&SandboxRecord>,
        container: &ContainerRecord,
    ) -> Result<(), NriError> {
        self.container_event(Event::START_CONTAINER, pod, container)
    }

    pub fn post_start_container(&self, pod: Option<&SandboxRecord>, container: &ContainerRecord) {
        self.post_container_event(Event::POST_START_CONTAINER, pod, container);
    }

    /// Before new resources are applied: the resources as plugins left
    /// them (`None`: unchanged). Updates of other containers are applied
    /// before this returns.
    pub fn update_container(
        &self,
        pod: Option<&SandboxRecord>,
        container: &ContainerRecord,
        resources: &cri::LinuxContainerResources,
    ) -> Result<Option<cri::LinuxContainerResources>, NriError> {
        if !self.active() {
            return Ok(None);
        }
        let pod = pod.map(convert::pod).unwrap_or_default();
        let ctr = convert::container(container);
        let requested = convert::resources_from_cri(resources);
        let merged = self.block_on(async {
            let plugins = self.plugins().await;
            let mut merge = UpdateMerge::new(&ctr.id, &requested);
            for p in plugins.iter() {
                let mut req = api::UpdateContainerRequest::new();
                req.pod = protobuf::MessageField::some(pod.clone());
                req.container = protobuf::MessageField::some(ctr.clone());
                req.linux_resources = protobuf::MessageField::some(requested.clone());
                if let Some(answer) = p.update_container(&req).await? {
                    merge.apply(answer.update, &p.name())?;
                }
            }
            Ok::<_, NriError>(merge.finish())
        });
        let Some(merged) = merged else {
            return Ok(None);
        };
        let (own, others) = merged?;
        self.apply_updates(others);
        Ok(Some(convert::resources_to_cri(&own, resources)))
    }

    pub fn post_update_container(&self, pod: Option<&SandboxRecord>, container: &ContainerRecord) {
        self.post_container_event(Event::POST_UPDATE_CONTAINER, pod, container);
    }

    async fn stop_all(
        &self,
        pod: &api::PodSandbox,
        container: &api::Container,
    ) -> Result<Vec<api::ContainerUpdate>, NriError> {
        let plugins = self.plugins().await;
        let mut merge = UpdatesOnly::default();
        for p in plugins.iter() {
            let mut req = api::StopContainerRequest::new();
            req.pod = protobuf::MessageField::some(pod.clone());
            req.container = protobuf::MessageField::some(container.clone());
            if let Some(answer) = p.stop_container(&req).await? {
                merge.apply(answer.update, &p.name())?;
            }
        }
        Ok(merge.finish())
    }

    /// After the container stopped; plugins may update other containers.
    /// StopContainer, once per container: the call that stops it and
    /// the exit it causes both report it.
    pub fn stop_container(&self, pod: Option<&SandboxRecord>, container: &ContainerRecord) {
        if !self.active() {
            return;
        }
        let first = (self.stopped.lock().expect("nri stopped")).insert(container.id.clone());
        if !first {
            return;
        }
        let pod = pod.map(convert::pod).unwrap_or_default();
        let ctr = convert::container(container);
        match self.block_on(self.stop_all(&pod, &ctr)) {
            Some(Ok(updates)) => self.apply_updates(updates),
            Some(Err(e)) => Self::logged("StopContainer", &ctr.id, Err(e)),
            None => {}
        }
    }

    pub fn remove_container(&self, pod: Option<&SandboxRecord>, container: &ContainerRecord) {
        self.stopped
            .lock()
            .expect("nri stopped")
            .remove(&container.id);
        Self::logged(
            "RemoveContainer",
            &container.id,
            self.container_event(Event::REMOVE_CONTAINER, pod, container),
        );
    }

    /// Runs plugins' updates of other containers through the runtime.
    fn apply_updates(&self, updates: Vec<api::ContainerUpdate>) {
        if updates.is_empty() {
            return;
        }
        if let Some(domain) = self.domain() {
            let failed = domain.apply_updates(updates);
            if !failed.is_empty() {
                tracing::warn!(count = failed.len(), "NRI: some container updates failed");
            }
        }
    }
}
