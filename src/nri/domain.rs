//! What NRI asks of the runtime: the pods and containers that exist (for
//! Synchronize), and carrying out the updates and evictions plugins request.
//! Called on blocking threads, never while the plugin list is locked by an
//! event in the same thread.

use super::{api, convert};
use crate::runtime::Runtime;

pub trait Domain: Send + Sync {
    /// Every pod and container, as NRI describes them.
    fn snapshot(&self) -> (Vec<api::PodSandbox>, Vec<api::Container>);
    /// Applies resource updates as UpdateContainerResources does (without
    /// NRI events of their own); returns those that failed.
    fn apply_updates(&self, updates: Vec<api::ContainerUpdate>) -> Vec<api::ContainerUpdate>;
    /// Stops a container a plugin evicts.
    fn evict(&self, id: &str, reason: &str);
}

impl Domain for Runtime {
    fn snapshot(&self) -> (Vec<api::PodSandbox>, Vec<api::Container>) {
        let pods = self.sandboxes.list(None).iter().map(convert::pod).collect();
        let containers = self
            .containers
            .list(None)
            .iter()
            .map(convert::container)
            .collect();
        (pods, containers)
    }

    fn apply_updates(&self, updates: Vec<api::ContainerUpdate>) -> Vec<api::ContainerUpdate> {
        let mut failed = Vec::new();
        for update in updates {
            let Some(resources) = update.linux.as_ref().and_then(|l| l.resources.as_ref()) else {
                continue;
            };
            let result = self
                .containers
                .get(&update.container_id)
                .and_then(|record| {
                    let base = record.resources.clone().unwrap_or_default();
                    self.containers
                        .update_resources(&record.id, convert::resources_to_cri(resources, &base))
                });
            if let Err(e) = result {
                tracing::warn!(container = %update.container_id, error = %e, "NRI: plugin's container update failed");
                if !update.ignore_failure {
                    failed.push(update);
                }
            }
        }
        failed
    }

    fn evict(&self, id: &str, reason: &str) {
        tracing::info!(container = %id, reason, "NRI: plugin evicts container");
        if let Err(e) = self.containers.stop(id, 0) {
            tracing::warn!(container = %id, error = %e, "NRI: eviction failed");
        }
    }
}
