//! ContainerStats and PodSandboxStats: a container's cgroup and writable
//! layer; a pod's cgroup (or its containers' sum), processes and
//! interfaces, with its containers' stats.

use super::Runtime;
use super::lifecycle::PodError;
use crate::container::{ContainerError, ContainerRecord};
use crate::cri;
use crate::network::netlink::Netlink;
use crate::sandbox::SandboxRecord;
use crate::stats::{self, cgroup::CgroupUsage};

impl Runtime {
    pub fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, ContainerError> {
        let record = self.containers.observe(id)?;
        Ok(self.measure_container(&record).0)
    }

    /// Stats of the containers that `filter` selects (all states: kubelet
    /// matches them with ListContainers).
    pub fn list_container_stats(
        &self,
        filter: Option<&cri::ContainerStatsFilter>,
    ) -> Vec<cri::ContainerStats> {
        let filter = filter.map(|f| cri::ContainerFilter {
            id: f.id.clone(),
            pod_sandbox_id: f.pod_sandbox_id.clone(),
            label_selector: f.label_selector.clone(),
            state: None,
        });
        let stats = self
            .containers
            .list(filter.as_ref())
            .iter()
            .map(|record| self.measure_container(record).0)
            .collect();
        self.forget_removed();
        stats
    }

    pub fn pod_sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats, PodError> {
        let sandbox = self.sandboxes.get(id)?;
        Ok(self.measure_sandbox(&sandbox))
    }

    pub fn list_pod_sandbox_stats(
        &self,
        filter: Option<&cri::PodSandboxStatsFilter>,
    ) -> Vec<cri::PodSandboxStats> {
        let filter = filter.map(|f| cri::PodSandboxFilter {
            id: f.id.clone(),
            label_selector: f.label_selector.clone(),
            state: None,
        });
        let stats = self
            .sandboxes
            .list(filter.as_ref())
            .iter()
            .map(|sandbox| self.measure_sandbox(sandbox))
            .collect();
        self.forget_removed();
        stats
    }

    /// The container's stats and its cgroup usage (for its pod's sum).
    fn measure_container(&self, record: &ContainerRecord) -> (cri::ContainerStats, CgroupUsage) {
        let now = crate::time::now_nanos();
        let usage = stats::cgroup::read(
            &self.cgroups,
            &record.cgroup.relative,
            stats::cgroup::Detail::Summary,
        )
        .unwrap_or_default();
        let writable_layer = self.images.writable_layer(&record.id).map(|dir| {
            let mountpoint = self.images.rootfs_root().display().to_string();
            stats::filesystem(now, &mountpoint, stats::disk::usage(&dir))
        });
        let container = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: record.id.clone(),
                metadata: Some(record.metadata()),
                labels: record.config.labels.clone(),
                annotations: record.config.annotations.clone(),
            }),
            cpu: self.cpu_rates.cpu(&record.id, now, &usage),
            memory: stats::memory(now, &usage),
            writable_layer,
            swap: stats::swap(now, &usage),
            io: stats::io(now, &usage),
        };
        (container, usage)
    }

    fn measure_sandbox(&self, sandbox: &SandboxRecord) -> cri::PodSandboxStats {
        let selector = cri::ContainerFilter {
            pod_sandbox_id: sandbox.id.clone(),
            ..cri::ContainerFilter::default()
        };
        let (containers, usages): (Vec<_>, Vec<_>) = self
            .containers
            .list(Some(&selector))
            .iter()
            .map(|record| self.measure_container(record))
            .unzip();
        let now = crate::time::now_nanos();
        let parent = sandbox
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or_default();
        let usage = self
            .cgroups
            .pod(parent)
            .and_then(|relative| {
                stats::cgroup::read(&self.cgroups, &relative, stats::cgroup::Detail::Summary)
            })
            .unwrap_or_else(|| stats::sum(&usages));
        // Host-network pods have no interfaces of their own to report.
        let network = sandbox
            .namespaces
            .network
            .as_ref()
            .filter(|netns| netns.exists())
            .and_then(|netns| Netlink::open_in(netns).ok()?.interface_counters().ok())
            .map(|interfaces| stats::network(now, interfaces));
        cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: Some(sandbox.metadata()),
                labels: sandbox.config.labels.clone(),
                annotations: sandbox.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: self.cpu_rates.cpu(&sandbox.id, now, &usage),
                memory: stats::memory(now, &usage),
                network,
                process: stats::processes(now, &usage),
                containers,
                io: stats::io(now, &usage),
            }),
            windows: None,
        }
    }

    /// CPU samples of removed containers and pods are not kept.
    fn forget_removed(&self) {
        self.cpu_rates
            .retain(&|id| self.containers.get(id).is_ok() || self.sandboxes.get(id).is_ok());
    }
}
