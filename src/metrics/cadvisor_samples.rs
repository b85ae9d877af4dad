//! One pass over a pod's sources, turned into metrics: a container's
//! cgroup, processes, writable layer and spec; a pod's own cgroup and its
//! interfaces. The readers run once per scrape and every metric of an
//! object comes from that one reading.

use super::cadvisor::{self as family, Family};
use crate::cri;
use crate::image::FsUsage;
use crate::network::netlink::InterfaceCounters;
use crate::stats::cgroup::{CgroupUsage, Pressure};

const NS_PER_S: u64 = 1_000_000_000;

/// The base label values of one container or pod, in `BASE_LABELS` order.
#[derive(Debug, Clone, Default)]
pub struct BaseLabels {
    pub container: String,
    pub id: String,
    pub image: String,
    pub name: String,
    pub namespace: String,
    pub pod: String,
}

/// The filesystem that holds the writable layers (one statvfs per scrape).
#[derive(Debug, Clone, Default)]
pub struct Filesystem {
    pub device: String,
    pub bytes_total: u64,
    pub inodes_total: u64,
    pub inodes_free: u64,
}

/// What the container asked for (the resources in force), as cAdvisor's
/// `container_spec_*` reports it.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub cpu_period: u64,
    pub cpu_quota: u64,
    pub cpu_shares: u64,
    pub memory_limit: u64,
    pub memory_swap_limit: u64,
}

impl Spec {
    pub fn from_resources(resources: Option<&cri::LinuxContainerResources>) -> Spec {
        let Some(r) = resources else {
            return Spec::default();
        };
        let positive = |v: i64| u64::try_from(v).unwrap_or(0);
        Spec {
            cpu_period: positive(r.cpu_period),
            cpu_quota: positive(r.cpu_quota),
            cpu_shares: positive(r.cpu_shares),
            memory_limit: positive(r.memory_limit_in_bytes),
            memory_swap_limit: positive(r.memory_swap_limit_in_bytes),
        }
    }
}

pub struct ContainerSample<'a> {
    pub labels: BaseLabels,
    pub cgroup: &'a CgroupUsage,
    /// Open descriptors of the cgroup's processes.
    pub open_fds: Option<u64>,
    pub writable_layer: Option<FsUsage>,
    pub filesystem: Option<&'a Filesystem>,
    pub spec: Spec,
    /// Nanoseconds since the epoch.
    pub started_at: i64,
    /// A device's name for the `device` label, from its numbers.
    pub device_name: &'a dyn Fn(u32, u32) -> String,
}

pub struct PodSample<'a> {
    pub labels: BaseLabels,
    /// The pod's own cgroup, when kubelet gave it one.
    pub cgroup: Option<&'a CgroupUsage>,
    pub interfaces: &'a [InterfaceCounters],
    pub device_name: &'a dyn Fn(u32, u32) -> String,
}

/// Collects one object's metrics with its base labels.
struct Metrics {
    base: [String; 6],
    out: Vec<cri::Metric>,
}

impl Metrics {
    fn new(labels: BaseLabels) -> Metrics {
        let BaseLabels {
            container,
            id,
            image,
            name,
            namespace,
            pod,
        } = labels;
        Metrics {
            base: [container, id, image, name, namespace, pod],
            out: Vec::with_capacity(48),
        }
    }

    fn add(&mut self, family: &Family, extra: &[&str], value: u64) {
        debug_assert_eq!(extra.len(), family.extra_labels.len(), "{}", family.name);
        let mut label_values = Vec::with_capacity(self.base.len() + extra.len());
        label_values.extend(self.base.iter().cloned());
        label_values.extend(extra.iter().map(|v| v.to_string()));
        self.out.push(cri::Metric {
            name: family.name.to_string(),
            // Gathered now, for this call: the CRI's "0 when live".
            timestamp: 0,
            metric_type: family.kind as i32,
            label_values,
            value: Some(cri::UInt64Value { value }),
        });
    }

    fn seconds(&mut self, family: &Family, ns: u64) {
        self.add(family, &[], ns / NS_PER_S);
    }
}

fn now_seconds() -> u64 {
    u64::try_from(crate::time::now_nanos()).unwrap_or(0) / NS_PER_S
}

pub fn container_metrics(sample: &ContainerSample) -> Vec<cri::Metric> {
    let mut m = Metrics::new(sample.labels.clone());
    m.add(&family::LAST_SEEN, &[], now_seconds());
    if sample.started_at > 0 {
        m.seconds(&family::START_TIME, sample.started_at as u64);
    }
    cgroup_metrics(&mut m, sample.cgroup, sample.device_name);
    if let Some(pids) = &sample.cgroup.pids {
        m.add(&family::PROCESSES, &[], pids.len() as u64);
    }
    if let Some(fds) = sample.open_fds {
        m.add(&family::FILE_DESCRIPTORS, &[], fds);
    }
    let spec = &sample.spec;
    m.add(&family::SPEC_MEMORY_LIMIT, &[], spec.memory_limit);
    for (family, value) in [
        (&family::SPEC_CPU_PERIOD, spec.cpu_period),
        (&family::SPEC_CPU_QUOTA, spec.cpu_quota),
        (&family::SPEC_CPU_SHARES, spec.cpu_shares),
        (&family::SPEC_MEMORY_SWAP_LIMIT, spec.memory_swap_limit),
    ] {
        if value > 0 {
            m.add(family, &[], value);
        }
    }
    if let (Some(layer), Some(fs)) = (&sample.writable_layer, sample.filesystem) {
        let device = [fs.device.as_str()];
        m.add(&family::FS_USAGE, &device, layer.bytes);
        m.add(&family::FS_LIMIT, &device, fs.bytes_total);
        m.add(&family::FS_INODES_TOTAL, &device, fs.inodes_total);
        m.add(&family::FS_INODES_FREE, &device, fs.inodes_free);
    }
    m.out
}

pub fn pod_metrics(sample: &PodSample) -> Vec<cri::Metric> {
    let mut m = Metrics::new(sample.labels.clone());
    m.add(&family::LAST_SEEN, &[], now_seconds());
    if let Some(cgroup) = sample.cgroup {
        cgroup_metrics(&mut m, cgroup, sample.device_name);
    }
    for interface in sample.interfaces {
        let name = [interface.name.as_str()];
        for (family, value) in [
            (&family::NET_RX_BYTES, interface.rx_bytes),
            (&family::NET_RX_PACKETS, interface.rx_packets),
            (&family::NET_RX_ERRORS, interface.rx_errors),
            (&family::NET_RX_DROPPED, interface.rx_dropped),
            (&family::NET_TX_BYTES, interface.tx_bytes),
            (&family::NET_TX_PACKETS, interface.tx_packets),
            (&family::NET_TX_ERRORS, interface.tx_errors),
            (&family::NET_TX_DROPPED, interface.tx_dropped),
        ] {
            m.add(family, &name, value);
        }
    }
    m.out
}

/// What containers and pods share: CPU, memory, threads, block I/O and
/// pressure, each where the cgroup reported it.
fn cgroup_metrics(m: &mut Metrics, cgroup: &CgroupUsage, device_name: &dyn Fn(u32, u32) -> String) {
    for (family, ns) in [
        (&family::CPU_USAGE, cgroup.cpu_ns),
        (&family::CPU_USER, cgroup.cpu_user_ns),
        (&family::CPU_SYSTEM, cgroup.cpu_system_ns),
    ] {
        if let Some(ns) = ns {
            m.seconds(family, ns);
        }
    }
    if let Some(t) = &cgroup.throttling {
        m.add(&family::CFS_PERIODS, &[], t.periods);
        m.add(&family::CFS_THROTTLED_PERIODS, &[], t.throttled_periods);
        m.seconds(&family::CFS_THROTTLED_SECONDS, t.throttled_ns);
    }
    if let Some(memory) = &cgroup.memory {
        m.add(&family::MEMORY_USAGE, &[], memory.usage);
        m.add(&family::MEMORY_WORKING_SET, &[], memory.working_set);
        m.add(&family::MEMORY_RSS, &[], memory.rss);
        m.add(&family::MEMORY_CACHE, &[], memory.cache);
        if let Some(hits) = memory.limit_hits {
            m.add(&family::MEMORY_FAILCNT, &[], hits);
        }
        if let Some(kills) = memory.oom_kills {
            m.add(&family::OOM_EVENTS, &[], kills);
        }
        for (kind, scope, value) in [
            ("pgfault", "container", memory.own_page_faults),
            ("pgfault", "hierarchy", memory.page_faults),
            ("pgmajfault", "container", memory.own_major_page_faults),
            ("pgmajfault", "hierarchy", memory.major_page_faults),
        ] {
            m.add(&family::MEMORY_FAILURES, &[kind, scope], value);
        }
    }
    if let Some(swap) = &cgroup.swap {
        m.add(&family::MEMORY_SWAP, &[], swap.usage);
    }
    if let Some(threads) = cgroup.processes {
        m.add(&family::THREADS, &[], threads);
    }
    for io in &cgroup.io {
        let device = device_name(io.major, io.minor);
        let device = [device.as_str()];
        m.add(&family::FS_READS_BYTES, &device, io.read_bytes);
        m.add(&family::FS_READS, &device, io.reads);
        m.add(&family::FS_WRITES_BYTES, &device, io.write_bytes);
        m.add(&family::FS_WRITES, &device, io.writes);
    }
    let pressure = |m: &mut Metrics, p: &Option<Pressure>, waiting, stalled| {
        if let Some(p) = p {
            m.seconds(waiting, p.some.total_us.saturating_mul(1000));
            if let Some(full) = &p.full {
                m.seconds(stalled, full.total_us.saturating_mul(1000));
            }
        }
    };
    pressure(
        m,
        &cgroup.cpu_pressure,
        &family::CPU_WAITING,
        &family::CPU_STALLED,
    );
    pressure(
        m,
        &cgroup.memory_pressure,
        &family::MEMORY_WAITING,
        &family::MEMORY_STALLED,
    );
    pressure(
        m,
        &cgroup.io_pressure,
        &family::IO_WAITING,
        &family::IO_STALLED,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::Hierarchy;
    use crate::metrics::cadvisor::FAMILIES;
    use crate::stats::cgroup::fixtures;

    fn labels(container: &str) -> BaseLabels {
        BaseLabels {
            container: container.into(),
            id: "/kubepods/pod1/c1".into(),
            image: "busybox:latest".into(),
            name: "c1".into(),
            namespace: "ns".into(),
            pod: "web".into(),
        }
    }

    fn container(hierarchy: Hierarchy) -> Vec<cri::Metric> {
        let usage = fixtures::read(hierarchy);
        let fs = Filesystem {
            device: "/dev/vda1".into(),
            bytes_total: 1 << 30,
            inodes_total: 1000,
            inodes_free: 900,
        };
        container_metrics(&ContainerSample {
            labels: labels("app"),
            cgroup: &usage,
            open_fds: Some(9),
            writable_layer: Some(FsUsage {
                bytes: 4096,
                inodes: 3,
            }),
            filesystem: Some(&fs),
            spec: Spec {
                cpu_period: 100_000,
                cpu_quota: 50_000,
                memory_limit: 20480,
                ..Spec::default()
            },
            started_at: 1_700_000_000_500_000_000,
            device_name: &|major, minor| format!("/dev/{major}-{minor}"),
        })
    }

    fn value(metrics: &[cri::Metric], name: &str, extra: &[&str]) -> u64 {
        let found: Vec<_> = metrics
            .iter()
            .filter(|m| m.name == name && m.label_values[6..] == *extra)
            .collect();
        assert_eq!(found.len(), 1, "{name} {extra:?}");
        found[0].value.as_ref().unwrap().value
    }

    /// Every metric has a descriptor whose labels it fills in order, and
    /// carries its family's type.
    fn assert_described(metrics: &[cri::Metric]) {
        for metric in metrics {
            let family = FAMILIES
                .iter()
                .find(|f| f.name == metric.name)
                .unwrap_or_else(|| panic!("{} has no descriptor", metric.name));
            assert_eq!(
                metric.label_values.len(),
                family.label_keys().len(),
                "{}",
                metric.name
            );
            assert_eq!(metric.metric_type, family.kind as i32, "{}", metric.name);
        }
    }

    #[test]
    fn v1_and_v2_nodes_give_the_same_metrics_in_seconds_and_bytes() {
        let from_v1 = container(Hierarchy::V1);
        let from_v2 = container(Hierarchy::V2);
        assert_described(&from_v1);
        let without_clock = |metrics: Vec<cri::Metric>| -> Vec<cri::Metric> {
            metrics
                .into_iter()
                .filter(|m| m.name != "container_last_seen")
                .collect()
        };
        assert_eq!(without_clock(from_v1.clone()), without_clock(from_v2));
        let m = &from_v1;
        assert_eq!(value(m, "container_cpu_usage_seconds_total", &[]), 3);
        assert_eq!(value(m, "container_cpu_user_seconds_total", &[]), 2);
        assert_eq!(value(m, "container_cpu_system_seconds_total", &[]), 1);
        assert_eq!(value(m, "container_cpu_cfs_periods_total", &[]), 50);
        // 0.25 s of throttling is less than a whole second.
        assert_eq!(
            value(m, "container_cpu_cfs_throttled_seconds_total", &[]),
            0
        );
        assert_eq!(value(m, "container_memory_working_set_bytes", &[]), 8000);
        assert_eq!(value(m, "container_memory_cache", &[]), 3000);
        assert_eq!(value(m, "container_memory_failcnt", &[]), 4);
        assert_eq!(value(m, "container_oom_events_total", &[]), 2);
        assert_eq!(
            value(
                m,
                "container_memory_failures_total",
                &["pgmajfault", "hierarchy"]
            ),
            1
        );
        assert_eq!(value(m, "container_processes", &[]), 2);
        assert_eq!(value(m, "container_threads", &[]), 3);
        assert_eq!(value(m, "container_file_descriptors", &[]), 9);
        assert_eq!(value(m, "container_start_time_seconds", &[]), 1_700_000_000);
        assert_eq!(value(m, "container_spec_cpu_quota", &[]), 50_000);
        assert_eq!(value(m, "container_spec_memory_limit_bytes", &[]), 20480);
        assert_eq!(
            value(m, "container_fs_reads_bytes_total", &["/dev/8-0"]),
            4096
        );
        assert_eq!(value(m, "container_fs_writes_total", &["/dev/8-0"]), 2);
        assert_eq!(value(m, "container_fs_usage_bytes", &["/dev/vda1"]), 4096);
        assert_eq!(value(m, "container_fs_inodes_free", &["/dev/vda1"]), 900);
        let seen = value(m, "container_last_seen", &[]);
        assert!(seen.abs_diff(now_seconds()) <= 1, "{seen}");
        // Unset spec values are left out, as cAdvisor does.
        assert!(!m.iter().any(|m| m.name == "container_spec_cpu_shares"));
        // No PSI in the fixture: no pressure metrics.
        assert!(!m.iter().any(|m| m.name.starts_with("container_pressure_")));
        for metric in m {
            assert_eq!(
                &metric.label_values[..6],
                &[
                    "app",
                    "/kubepods/pod1/c1",
                    "busybox:latest",
                    "c1",
                    "ns",
                    "web"
                ]
            );
            assert_eq!(metric.timestamp, 0);
        }
    }

    #[test]
    fn spec_takes_the_resources_in_force_and_drops_unset_or_negative_ones() {
        let spec = Spec::from_resources(Some(&cri::LinuxContainerResources {
            cpu_period: 100_000,
            cpu_quota: -1,
            cpu_shares: 512,
            memory_limit_in_bytes: 1 << 20,
            ..Default::default()
        }));
        assert_eq!(
            (
                spec.cpu_period,
                spec.cpu_quota,
                spec.cpu_shares,
                spec.memory_limit
            ),
            (100_000, 0, 512, 1 << 20)
        );
        assert_eq!(Spec::from_resources(None).memory_limit, 0);
    }

    #[test]
    fn pods_report_interfaces_and_pressure_in_seconds() {
        let usage = CgroupUsage {
            cpu_ns: Some(7_900_000_000),
            cpu_pressure: Some(Pressure {
                some: crate::stats::cgroup::PressureLine {
                    total_us: 2_500_000,
                    ..Default::default()
                },
                full: Some(crate::stats::cgroup::PressureLine {
                    total_us: 1_000_000,
                    ..Default::default()
                }),
            }),
            ..CgroupUsage::default()
        };
        let eth0 = InterfaceCounters {
            name: "eth0".into(),
            rx_bytes: 1000,
            rx_packets: 10,
            tx_dropped: 1,
            ..InterfaceCounters::default()
        };
        let net1 = InterfaceCounters {
            name: "net1".into(),
            tx_bytes: 5,
            ..InterfaceCounters::default()
        };
        let metrics = pod_metrics(&PodSample {
            labels: labels(""),
            cgroup: Some(&usage),
            interfaces: &[eth0, net1],
            device_name: &|major, minor| format!("{major}:{minor}"),
        });
        assert_described(&metrics);
        assert_eq!(value(&metrics, "container_cpu_usage_seconds_total", &[]), 7);
        assert_eq!(
            value(
                &metrics,
                "container_pressure_cpu_waiting_seconds_total",
                &[]
            ),
            2
        );
        assert_eq!(
            value(
                &metrics,
                "container_pressure_cpu_stalled_seconds_total",
                &[]
            ),
            1
        );
        assert_eq!(
            value(
                &metrics,
                "container_network_receive_packets_total",
                &["eth0"]
            ),
            10
        );
        assert_eq!(
            value(
                &metrics,
                "container_network_transmit_packets_dropped_total",
                &["eth0"]
            ),
            1
        );
        assert_eq!(
            value(
                &metrics,
                "container_network_transmit_bytes_total",
                &["net1"]
            ),
            5
        );
        // Nothing the pod did not report: no memory without a memory reading.
        assert!(
            !metrics
                .iter()
                .any(|m| m.name.starts_with("container_memory"))
        );
    }
}
