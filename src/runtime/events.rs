//! The CRI form of lifecycle events (GetContainerEvents).

use super::Runtime;
use crate::cri;
use crate::events::Event;

impl Runtime {
    /// The event with its pod's status and its pod's containers' statuses
    /// as they are now (the sandbox's as it was, for its own deletion).
    /// Without a sandbox status kubelet ignores the event and relists.
    pub fn container_event(&self, event: &Event) -> cri::ContainerEventResponse {
        let pod_sandbox_status = event.sandbox_status.as_deref().cloned().or_else(|| {
            self.sandboxes
                .get(&event.sandbox_id)
                .ok()
                .map(|sandbox| sandbox.status(false).0)
        });
        let in_pod = cri::ContainerFilter {
            pod_sandbox_id: event.sandbox_id.clone(),
            ..cri::ContainerFilter::default()
        };
        let containers_statuses = self
            .containers
            .list(Some(&in_pod))
            .iter()
            .map(|record| record.status(false).0)
            .collect();
        cri::ContainerEventResponse {
            container_id: event.id.clone(),
            container_event_type: event.kind.to_cri() as i32,
            created_at: event.at,
            pod_sandbox_status,
            containers_statuses,
        }
    }
}
