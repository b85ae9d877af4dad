//! The metric families crius serves through the CRI, under the names, types
//! and label sets cAdvisor gives them on kubelet's `/metrics/cadvisor`, so
//! that dashboards and recording rules work unchanged with kubelet's
//! `PodAndContainerStatsFromCRI`.
//!
//! Every family carries the base labels, in this order:
//! `container` (the container's name, "" for the pod itself), `id` (the
//! cgroup path, as cAdvisor names a container; the sandbox id for a pod
//! without a cgroup of its own), `image` (as the container config named
//! it), `name` (crius's id of the container or sandbox), `namespace` and
//! `pod`; some add their own after them (`interface`, `device`,
//! `failure_type` and `scope`).
//!
//! Values are whole units: the CRI carries a `UInt64Value` that kubelet
//! passes on as it is, so times are whole seconds (truncated, as containerd
//! and CRI-O do) and sizes bytes.

use crate::cri;
use crate::cri::MetricType::{Counter, Gauge};

pub const BASE_LABELS: [&str; 6] = ["container", "id", "image", "name", "namespace", "pod"];

/// One metric name: its help, type and the labels after the base ones.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub help: &'static str,
    pub kind: cri::MetricType,
    pub extra_labels: &'static [&'static str],
}

const fn family(
    name: &'static str,
    kind: cri::MetricType,
    extra_labels: &'static [&'static str],
    help: &'static str,
) -> Family {
    Family {
        name,
        help,
        kind,
        extra_labels,
    }
}

const NONE: &[&str] = &[];
const INTERFACE: &[&str] = &["interface"];
const DEVICE: &[&str] = &["device"];

pub const LAST_SEEN: Family = family(
    "container_last_seen",
    Gauge,
    NONE,
    "Last time a container was seen by the exporter (seconds since the epoch)",
);
pub const START_TIME: Family = family(
    "container_start_time_seconds",
    Gauge,
    NONE,
    "Start time of the container since unix epoch in seconds",
);

pub const CPU_USAGE: Family = family(
    "container_cpu_usage_seconds_total",
    Counter,
    NONE,
    "Cumulative cpu time consumed in seconds",
);
pub const CPU_USER: Family = family(
    "container_cpu_user_seconds_total",
    Counter,
    NONE,
    "Cumulative user cpu time consumed in seconds",
);
pub const CPU_SYSTEM: Family = family(
    "container_cpu_system_seconds_total",
    Counter,
    NONE,
    "Cumulative system cpu time consumed in seconds",
);
pub const CFS_PERIODS: Family = family(
    "container_cpu_cfs_periods_total",
    Counter,
    NONE,
    "Number of elapsed enforcement period intervals",
);
pub const CFS_THROTTLED_PERIODS: Family = family(
    "container_cpu_cfs_throttled_periods_total",
    Counter,
    NONE,
    "Number of throttled period intervals",
);
pub const CFS_THROTTLED_SECONDS: Family = family(
    "container_cpu_cfs_throttled_seconds_total",
    Counter,
    NONE,
    "Total time duration the container has been throttled, in seconds",
);

pub const MEMORY_USAGE: Family = family(
    "container_memory_usage_bytes",
    Gauge,
    NONE,
    "Current memory usage in bytes, including all memory regardless of when it was accessed",
);
pub const MEMORY_WORKING_SET: Family = family(
    "container_memory_working_set_bytes",
    Gauge,
    NONE,
    "Current working set in bytes",
);
pub const MEMORY_RSS: Family = family(
    "container_memory_rss",
    Gauge,
    NONE,
    "Size of RSS (anonymous memory) in bytes",
);
pub const MEMORY_CACHE: Family = family(
    "container_memory_cache",
    Gauge,
    NONE,
    "Number of bytes of page cache memory",
);
pub const MEMORY_SWAP: Family = family(
    "container_memory_swap",
    Gauge,
    NONE,
    "Container swap usage in bytes",
);
pub const MEMORY_FAILCNT: Family = family(
    "container_memory_failcnt",
    Counter,
    NONE,
    "Number of memory usage hits limits",
);
pub const MEMORY_FAILURES: Family = family(
    "container_memory_failures_total",
    Counter,
    &["failure_type", "scope"],
    "Cumulative count of memory allocation failures",
);
pub const OOM_EVENTS: Family = family(
    "container_oom_events_total",
    Counter,
    NONE,
    "Count of out of memory events observed for the container",
);

pub const SPEC_CPU_PERIOD: Family = family(
    "container_spec_cpu_period",
    Gauge,
    NONE,
    "CPU period of the container, in microseconds",
);
pub const SPEC_CPU_QUOTA: Family = family(
    "container_spec_cpu_quota",
    Gauge,
    NONE,
    "CPU quota of the container, in microseconds per period",
);
pub const SPEC_CPU_SHARES: Family = family(
    "container_spec_cpu_shares",
    Gauge,
    NONE,
    "CPU share of the container",
);
pub const SPEC_MEMORY_LIMIT: Family = family(
    "container_spec_memory_limit_bytes",
    Gauge,
    NONE,
    "Memory limit for the container in bytes (0: none)",
);
pub const SPEC_MEMORY_SWAP_LIMIT: Family = family(
    "container_spec_memory_swap_limit_bytes",
    Gauge,
    NONE,
    "Memory and swap limit for the container in bytes",
);

pub const PROCESSES: Family = family(
    "container_processes",
    Gauge,
    NONE,
    "Number of processes running inside the container",
);
pub const THREADS: Family = family(
    "container_threads",
    Gauge,
    NONE,
    "Number of threads running inside the container",
);
pub const FILE_DESCRIPTORS: Family = family(
    "container_file_descriptors",
    Gauge,
    NONE,
    "Number of open file descriptors for the container",
);

pub const FS_USAGE: Family = family(
    "container_fs_usage_bytes",
    Gauge,
    DEVICE,
    "Number of bytes consumed by the container's writable layer",
);
pub const FS_LIMIT: Family = family(
    "container_fs_limit_bytes",
    Gauge,
    DEVICE,
    "Number of bytes the filesystem of the container's writable layer holds",
);
pub const FS_INODES_FREE: Family = family(
    "container_fs_inodes_free",
    Gauge,
    DEVICE,
    "Number of available inodes on the filesystem of the writable layer",
);
pub const FS_INODES_TOTAL: Family = family(
    "container_fs_inodes_total",
    Gauge,
    DEVICE,
    "Number of inodes on the filesystem of the writable layer",
);
pub const FS_READS_BYTES: Family = family(
    "container_fs_reads_bytes_total",
    Counter,
    DEVICE,
    "Cumulative count of bytes read",
);
pub const FS_READS: Family = family(
    "container_fs_reads_total",
    Counter,
    DEVICE,
    "Cumulative count of reads completed",
);
pub const FS_WRITES_BYTES: Family = family(
    "container_fs_writes_bytes_total",
    Counter,
    DEVICE,
    "Cumulative count of bytes written",
);
pub const FS_WRITES: Family = family(
    "container_fs_writes_total",
    Counter,
    DEVICE,
    "Cumulative count of writes completed",
);

pub const NET_RX_BYTES: Family = family(
    "container_network_receive_bytes_total",
    Counter,
    INTERFACE,
    "Cumulative count of bytes received",
);
pub const NET_RX_PACKETS: Family = family(
    "container_network_receive_packets_total",
    Counter,
    INTERFACE,
    "Cumulative count of packets received",
);
pub const NET_RX_ERRORS: Family = family(
    "container_network_receive_errors_total",
    Counter,
    INTERFACE,
    "Cumulative count of errors encountered while receiving",
);
pub const NET_RX_DROPPED: Family = family(
    "container_network_receive_packets_dropped_total",
    Counter,
    INTERFACE,
    "Cumulative count of packets dropped while receiving",
);
pub const NET_TX_BYTES: Family = family(
    "container_network_transmit_bytes_total",
    Counter,
    INTERFACE,
    "Cumulative count of bytes transmitted",
);
pub const NET_TX_PACKETS: Family = family(
    "container_network_transmit_packets_total",
    Counter,
    INTERFACE,
    "Cumulative count of packets transmitted",
);
pub const NET_TX_ERRORS: Family = family(
    "container_network_transmit_errors_total",
    Counter,
    INTERFACE,
    "Cumulative count of errors encountered while transmitting",
);
pub const NET_TX_DROPPED: Family = family(
    "container_network_transmit_packets_dropped_total",
    Counter,
    INTERFACE,
    "Cumulative count of packets dropped while transmitting",
);

// Pressure stall information: "waiting" is the kernel's "some" line (at
// least one task stalled), "stalled" its "full" line (all tasks stalled).
pub const CPU_WAITING: Family = family(
    "container_pressure_cpu_waiting_seconds_total",
    Counter,
    NONE,
    "Total time duration tasks in the container have waited due to CPU congestion",
);
pub const CPU_STALLED: Family = family(
    "container_pressure_cpu_stalled_seconds_total",
    Counter,
    NONE,
    "Total time duration no tasks in the container could make progress due to CPU congestion",
);
pub const MEMORY_WAITING: Family = family(
    "container_pressure_memory_waiting_seconds_total",
    Counter,
    NONE,
    "Total time duration tasks in the container have waited due to memory congestion",
);
pub const MEMORY_STALLED: Family = family(
    "container_pressure_memory_stalled_seconds_total",
    Counter,
    NONE,
    "Total time duration no tasks in the container could make progress due to memory congestion",
);
pub const IO_WAITING: Family = family(
    "container_pressure_io_waiting_seconds_total",
    Counter,
    NONE,
    "Total time duration tasks in the container have waited due to IO congestion",
);
pub const IO_STALLED: Family = family(
    "container_pressure_io_stalled_seconds_total",
    Counter,
    NONE,
    "Total time duration no tasks in the container could make progress due to IO congestion",
);

/// Every family crius may send, in ListMetricDescriptors' order.
pub const FAMILIES: &[&Family] = &[
    &LAST_SEEN,
    &START_TIME,
    &CPU_USAGE,
    &CPU_USER,
    &CPU_SYSTEM,
    &CFS_PERIODS,
    &CFS_THROTTLED_PERIODS,
    &CFS_THROTTLED_SECONDS,
    &MEMORY_USAGE,
    &MEMORY_WORKING_SET,
    &MEMORY_RSS,
    &MEMORY_CACHE,
    &MEMORY_SWAP,
    &MEMORY_FAILCNT,
    &MEMORY_FAILURES,
    &OOM_EVENTS,
    &SPEC_CPU_PERIOD,
    &SPEC_CPU_QUOTA,
    &SPEC_CPU_SHARES,
    &SPEC_MEMORY_LIMIT,
    &SPEC_MEMORY_SWAP_LIMIT,
    &PROCESSES,
    &THREADS,
    &FILE_DESCRIPTORS,
    &FS_USAGE,
    &FS_LIMIT,
    &FS_INODES_FREE,
    &FS_INODES_TOTAL,
    &FS_READS_BYTES,
    &FS_READS,
    &FS_WRITES_BYTES,
    &FS_WRITES,
    &NET_RX_BYTES,
    &NET_RX_PACKETS,
    &NET_RX_ERRORS,
    &NET_RX_DROPPED,
    &NET_TX_BYTES,
    &NET_TX_PACKETS,
    &NET_TX_ERRORS,
    &NET_TX_DROPPED,
    &CPU_WAITING,
    &CPU_STALLED,
    &MEMORY_WAITING,
    &MEMORY_STALLED,
    &IO_WAITING,
    &IO_STALLED,
];

impl Family {
    pub fn label_keys(&self) -> Vec<String> {
        BASE_LABELS
            .iter()
            .chain(self.extra_labels)
            .map(|key| key.to_string())
            .collect()
    }

    pub fn descriptor(&self) -> cri::MetricDescriptor {
        cri::MetricDescriptor {
            name: self.name.to_string(),
            help: self.help.to_string(),
            label_keys: self.label_keys(),
        }
    }
}

/// ListMetricDescriptors' answer: every family, whether or not this node
/// produces it (pressure needs v2 with PSI), so that kubelet, which asks
/// once, knows each metric it may later see.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    FAMILIES.iter().map(|family| family.descriptor()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_and_shaped_like_cadvisor_names() {
        let names: HashSet<_> = FAMILIES.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), FAMILIES.len());
        for family in FAMILIES {
            assert!(family.name.starts_with("container_"), "{}", family.name);
            // Prometheus' convention, with cAdvisor's two historic names
            // that break it: counters end in _total, and only they.
            let total = family.name.ends_with("_total");
            let exception = ["container_memory_failcnt", "container_fs_inodes_total"];
            assert_eq!(
                total != exception.contains(&family.name),
                family.kind == Counter,
                "{}",
                family.name
            );
            let keys = family.label_keys();
            assert_eq!(&keys[..6], BASE_LABELS);
            assert_eq!(
                keys.iter().collect::<HashSet<_>>().len(),
                keys.len(),
                "{}",
                family.name
            );
        }
        assert_eq!(descriptors().len(), FAMILIES.len());
    }
}
