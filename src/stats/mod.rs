//! Resource usage for ContainerStats and PodSandboxStats: cgroup counters
//! (`cgroup`), writable-layer disk use (`disk`), turned into CRI messages.
//! The CRI metrics (`crate::metrics`) read the same sources, with the
//! processes' open descriptors (`process`) and device names
//! (`block_device`).
//! CPU rates (`usage_nano_cores`) need two samples: each call is compared
//! with the previous one for the same container or pod, so kubelet's
//! periodic polling yields a rate from its second call on.

pub mod block_device;
pub mod cgroup;
pub mod disk;
pub mod process;

use crate::cri;
use crate::image::FsUsage;
use crate::network::netlink::InterfaceCounters;
use cgroup::{CgroupUsage, Pressure};
use std::collections::HashMap;
use std::sync::Mutex;

/// The CPU samples behind rates, by container or sandbox id.
#[derive(Default)]
pub struct CpuRates {
    last: Mutex<HashMap<String, (i64, u64)>>,
}

impl CpuRates {
    /// Nanocores used since the previous sample of `id`, if there was one.
    fn rate(&self, id: &str, now: i64, cpu_ns: u64) -> Option<u64> {
        let mut last = self.last.lock().expect("cpu samples");
        let previous = last.insert(id.to_string(), (now, cpu_ns));
        let (then, before) = previous?;
        let elapsed = u64::try_from(now - then).ok().filter(|&e| e > 0)?;
        // ns of CPU per ns of wall time, in billionths of a core.
        Some((cpu_ns.checked_sub(before)? as u128 * 1_000_000_000 / elapsed as u128) as u64)
    }

    /// Drops the samples of ids no longer present.
    pub fn retain(&self, present: &dyn Fn(&str) -> bool) {
        self.last
            .lock()
            .expect("cpu samples")
            .retain(|id, _| present(id));
    }

    pub fn cpu(&self, id: &str, now: i64, usage: &CgroupUsage) -> Option<cri::CpuUsage> {
        let cpu_ns = usage.cpu_ns?;
        Some(cri::CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: value(cpu_ns),
            usage_nano_cores: self.rate(id, now, cpu_ns).and_then(value),
            psi: usage.cpu_pressure.as_ref().map(psi),
        })
    }
}

fn value(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

fn psi(pressure: &Pressure) -> cri::PsiStats {
    let data = |line: &cgroup::PressureLine| cri::PsiData {
        total: line.total_us.saturating_mul(1000),
        avg10: line.avg10,
        avg60: line.avg60,
        avg300: line.avg300,
    };
    cri::PsiStats {
        full: pressure.full.as_ref().map(data),
        some: Some(data(&pressure.some)),
    }
}

pub fn memory(now: i64, usage: &CgroupUsage) -> Option<cri::MemoryUsage> {
    let memory = usage.memory.as_ref()?;
    Some(cri::MemoryUsage {
        timestamp: now,
        working_set_bytes: value(memory.working_set),
        available_bytes: memory
            .limit
            .and_then(|limit| value(limit.saturating_sub(memory.working_set))),
        usage_bytes: value(memory.usage),
        rss_bytes: value(memory.rss),
        page_faults: value(memory.page_faults),
        major_page_faults: value(memory.major_page_faults),
        psi: usage.memory_pressure.as_ref().map(psi),
    })
}

pub fn swap(now: i64, usage: &CgroupUsage) -> Option<cri::SwapUsage> {
    let swap = usage.swap.as_ref()?;
    Some(cri::SwapUsage {
        timestamp: now,
        swap_available_bytes: swap
            .limit
            .and_then(|limit| value(limit.saturating_sub(swap.usage))),
        swap_usage_bytes: value(swap.usage),
    })
}

pub fn io(now: i64, usage: &CgroupUsage) -> Option<cri::IoUsage> {
    Some(cri::IoUsage {
        timestamp: now,
        psi: Some(psi(usage.io_pressure.as_ref()?)),
    })
}

pub fn processes(now: i64, usage: &CgroupUsage) -> Option<cri::ProcessUsage> {
    Some(cri::ProcessUsage {
        timestamp: now,
        process_count: value(usage.processes?),
    })
}

pub fn filesystem(now: i64, mountpoint: &str, used: FsUsage) -> cri::FilesystemUsage {
    cri::FilesystemUsage {
        timestamp: now,
        fs_id: Some(cri::FilesystemIdentifier {
            mountpoint: mountpoint.to_string(),
        }),
        used_bytes: value(used.bytes),
        inodes_used: value(used.inodes),
    }
}

/// A pod's interfaces; `eth0` (where CNI and the built-in network put the
/// pod) is the default one.
pub fn network(now: i64, interfaces: Vec<InterfaceCounters>) -> cri::NetworkUsage {
    let usage = |c: InterfaceCounters| cri::NetworkInterfaceUsage {
        name: c.name,
        rx_bytes: value(c.rx_bytes),
        rx_errors: value(c.rx_errors),
        tx_bytes: value(c.tx_bytes),
        tx_errors: value(c.tx_errors),
    };
    let interfaces: Vec<_> = interfaces.into_iter().map(usage).collect();
    cri::NetworkUsage {
        timestamp: now,
        default_interface: interfaces.iter().find(|i| i.name == "eth0").cloned(),
        interfaces,
    }
}

/// A pod's usage when it has no cgroup of its own (no `cgroup_parent`):
/// the sum of its containers'.
pub fn sum(usages: &[CgroupUsage]) -> CgroupUsage {
    let total = |get: &dyn Fn(&CgroupUsage) -> Option<u64>| -> Option<u64> {
        usages.iter().filter_map(get).reduce(|a, b| a + b)
    };
    let memory =
        |get: &dyn Fn(&cgroup::Memory) -> u64| total(&|u: &CgroupUsage| u.memory.as_ref().map(get));
    CgroupUsage {
        cpu_ns: total(&|u| u.cpu_ns),
        cpu_user_ns: total(&|u| u.cpu_user_ns),
        cpu_system_ns: total(&|u| u.cpu_system_ns),
        memory: memory(&|m| m.usage).map(|usage| cgroup::Memory {
            usage,
            working_set: memory(&|m| m.working_set).unwrap_or(0),
            rss: memory(&|m| m.rss).unwrap_or(0),
            page_faults: memory(&|m| m.page_faults).unwrap_or(0),
            major_page_faults: memory(&|m| m.major_page_faults).unwrap_or(0),
            cache: memory(&|m| m.cache).unwrap_or(0),
            ..cgroup::Memory::default()
        }),
        processes: total(&|u| u.processes),
        ..CgroupUsage::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rate_needs_a_previous_sample() {
        let rates = CpuRates::default();
        let usage = |ns| CgroupUsage {
            cpu_ns: Some(ns),
            ..CgroupUsage::default()
        };
        let first = rates.cpu("c", 1_000_000_000, &usage(5_000_000)).unwrap();
        assert_eq!(first.usage_core_nano_seconds.unwrap().value, 5_000_000);
        assert_eq!(first.usage_nano_cores, None);
        // Half a core over two seconds.
        let second = rates
            .cpu("c", 3_000_000_000, &usage(1_005_000_000))
            .unwrap();
        assert_eq!(second.usage_nano_cores.unwrap().value, 500_000_000);
        // A counter that went back (a new cgroup) gives no rate.
        let reset = rates.cpu("c", 4_000_000_000, &usage(1)).unwrap();
        assert_eq!(reset.usage_nano_cores, None);
        rates.retain(&|id| id != "c");
        let again = rates.cpu("c", 5_000_000_000, &usage(2)).unwrap();
        assert_eq!(again.usage_nano_cores, None);
    }

    #[test]
    fn available_memory_is_the_limit_less_the_working_set() {
        let usage = CgroupUsage {
            memory: Some(cgroup::Memory {
                usage: 100,
                working_set: 60,
                limit: Some(1000),
                ..cgroup::Memory::default()
            }),
            ..CgroupUsage::default()
        };
        let memory = memory(7, &usage).unwrap();
        assert_eq!(memory.available_bytes.unwrap().value, 940);
        assert_eq!(memory.working_set_bytes.unwrap().value, 60);
        assert_eq!(memory.timestamp, 7);
    }

    #[test]
    fn eth0_is_the_default_interface_and_pods_sum_their_containers() {
        let eth0 = InterfaceCounters {
            name: "eth0".into(),
            rx_bytes: 10,
            ..InterfaceCounters::default()
        };
        let net1 = InterfaceCounters {
            name: "net1".into(),
            ..InterfaceCounters::default()
        };
        let network = network(1, vec![net1, eth0]);
        assert_eq!(network.interfaces.len(), 2);
        assert_eq!(
            network.default_interface.unwrap().rx_bytes.unwrap().value,
            10
        );

        let container = |cpu, rss| CgroupUsage {
            cpu_ns: Some(cpu),
            memory: Some(cgroup::Memory {
                usage: rss,
                working_set: rss,
                rss,
                limit: Some(1 << 30),
                ..cgroup::Memory::default()
            }),
            processes: Some(1),
            ..CgroupUsage::default()
        };
        let pod = sum(&[container(5, 100), container(7, 50)]);
        assert_eq!(pod.cpu_ns, Some(12));
        let memory = pod.memory.unwrap();
        assert_eq!((memory.usage, memory.rss, memory.limit), (150, 150, None));
        assert_eq!(pod.processes, Some(2));
        assert_eq!(sum(&[]), CgroupUsage::default());
    }
}
