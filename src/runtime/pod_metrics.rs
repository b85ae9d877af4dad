//! ListPodSandboxMetrics: each ready pod's own metrics (its cgroup, its
//! interfaces) and its running containers' (cgroup, processes, writable
//! layer, spec), read once per call from the same sources as the stats
//! RPCs. Pods are measured by a few threads at once: most of the time goes
//! to file reads and a netlink dump per pod, which overlap well.

use super::Runtime;
use crate::container::{ContainerRecord, ContainerState};
use crate::cri;
use crate::metrics::cadvisor_samples::{
    self as samples, BaseLabels, ContainerSample, Filesystem, PodSample, Spec,
};
use crate::network::netlink::Netlink;
use crate::sandbox::{SandboxRecord, SandboxState};
use crate::stats::block_device::{DeviceNames, filesystem_of};
use crate::stats::cgroup::{self, Detail};
use crate::stats::{self, disk, process};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Threads measuring pods at once: enough to overlap their reads, few
/// enough not to crowd a small node's kubelet.
const MAX_WORKERS: usize = 4;

/// What all pods of one call share.
struct Scrape {
    devices: DeviceNames,
    filesystem: Option<Filesystem>,
}

impl Runtime {
    pub fn list_pod_sandbox_metrics(&self) -> Vec<cri::PodSandboxMetrics> {
        let pods: Vec<SandboxRecord> = self
            .sandboxes
            .list(None)
            .into_iter()
            .filter(|s| s.state == SandboxState::Ready)
            .collect();
        let mut running: HashMap<String, Vec<ContainerRecord>> = HashMap::new();
        for record in self.containers.list(None) {
            if record.state == ContainerState::Running {
                running
                    .entry(record.sandbox_id.clone())
                    .or_default()
                    .push(record);
            }
        }
        let devices = DeviceNames::default();
        let filesystem = filesystem_of(&self.images.rootfs_root()).map(|fs| Filesystem {
            device: devices.name(fs.major, fs.minor),
            bytes_total: fs.bytes_total,
            inodes_total: fs.inodes_total,
            inodes_free: fs.inodes_free,
        });
        let scrape = Scrape {
            devices,
            filesystem,
        };
        let measure = |pod: &SandboxRecord| {
            let containers = running.get(&pod.id).map(Vec::as_slice).unwrap_or(&[]);
            self.measure_pod_metrics(&scrape, pod, containers)
        };
        parallel_map(&pods, measure)
    }

    fn measure_pod_metrics(
        &self,
        scrape: &Scrape,
        pod: &SandboxRecord,
        containers: &[ContainerRecord],
    ) -> cri::PodSandboxMetrics {
        let metadata = pod.metadata();
        let device_name = |major, minor| scrape.devices.name(major, minor);
        let mut usages = Vec::with_capacity(containers.len());
        let mut container_metrics = Vec::with_capacity(containers.len());
        for record in containers {
            // A container that stopped since it was listed has no cgroup.
            let Some(usage) = cgroup::read(&self.cgroups, &record.cgroup.relative, Detail::Full)
            else {
                continue;
            };
            let labels = BaseLabels {
                container: record.metadata().name,
                id: format!("/{}", record.cgroup.relative.display()),
                image: record.image_name.clone(),
                name: record.id.clone(),
                namespace: metadata.namespace.clone(),
                pod: metadata.name.clone(),
            };
            let sample = ContainerSample {
                labels,
                cgroup: &usage,
                open_fds: usage
                    .pids
                    .as_ref()
                    .map(|pids| process::open_fds(Path::new("/proc"), pids)),
                writable_layer: self
                    .images
                    .writable_layer(&record.id)
                    .map(|d| disk::usage(&d)),
                filesystem: scrape.filesystem.as_ref(),
                spec: Spec::from_resources(record.resources.as_ref()),
                started_at: record.started_at,
                device_name: &device_name,
            };
            container_metrics.push(cri::ContainerMetrics {
                container_id: record.id.clone(),
                metrics: samples::container_metrics(&sample),
            });
            usages.push(usage);
        }
        let parent = pod
            .config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.as_str())
            .unwrap_or_default();
        let own = self.cgroups.pod(parent).and_then(|relative| {
            let usage = cgroup::read(&self.cgroups, &relative, Detail::Full)?;
            Some((format!("/{}", relative.display()), usage))
        });
        // Without a cgroup of its own, a pod is the sum of its containers,
        // as PodSandboxStats reports it.
        let (id, mut usage) = own.unwrap_or_else(|| (pod.id.clone(), stats::sum(&usages)));
        // The pod cgroup's own cgroup.procs is empty: its processes are in
        // its containers' cgroups, which report them.
        usage.pids = None;
        let interfaces = pod
            .namespaces
            .network
            .as_ref()
            .filter(|netns| netns.exists())
            .and_then(|netns| Netlink::open_in(netns).ok()?.interface_counters().ok())
            .unwrap_or_default();
        let sample = PodSample {
            labels: BaseLabels {
                container: String::new(),
                id,
                image: String::new(),
                name: pod.id.clone(),
                namespace: metadata.namespace,
                pod: metadata.name,
            },
            cgroup: Some(&usage),
            interfaces: &interfaces,
            device_name: &device_name,
        };
        cri::PodSandboxMetrics {
            pod_sandbox_id: pod.id.clone(),
            metrics: samples::pod_metrics(&sample),
            container_metrics,
        }
    }
}

/// `f` over `items` on up to `MAX_WORKERS` threads, results in order.
fn parallel_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(MAX_WORKERS)
        .min(items.len());
    if workers <= 1 {
        return items.iter().map(f).collect();
    }
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, R)>> = Mutex::new(Vec::with_capacity(items.len()));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let at = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(at) else { break };
                    let result = f(item);
                    results.lock().expect("results").push((at, result));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_unstable_by_key(|(at, _)| *at);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parallel_map_keeps_the_order() {
        let items: Vec<u32> = (0..100).collect();
        assert_eq!(
            parallel_map(&items, |i| i * 2),
            items.iter().map(|i| i * 2).collect::<Vec<_>>()
        );
        assert!(parallel_map(&[] as &[u32], |i| *i).is_empty());
    }
}
