//! cgroup v1: one directory per controller (memory, cpuacct, cpu, pids,
//! blkio), each holding the container's cgroup at the same relative path.

use super::{
    CgroupUsage, Detail, DeviceIo, Memory, Swap, Throttling, device, device_entry, flat_keyed,
    number, pids,
};
use std::path::PathBuf;

/// v1 reports "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// `path(controller, file)` is the file of the cgroup in that controller.
pub(super) fn read(path: &dyn Fn(&str, &str) -> PathBuf, detail: Detail) -> Option<CgroupUsage> {
    let usage = number(&path("memory", "memory.usage_in_bytes"))?;
    let stat = flat_keyed(&path("memory", "memory.stat")).unwrap_or_default();
    let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
    let limit = number(&path("memory", "memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
    let full = detail == Detail::Full;
    let memory = Memory {
        usage,
        working_set: usage.saturating_sub(stat("total_inactive_file")),
        rss: stat("total_rss"),
        cache: stat("total_cache"),
        page_faults: stat("total_pgfault"),
        major_page_faults: stat("total_pgmajfault"),
        own_page_faults: stat("pgfault"),
        own_major_page_faults: stat("pgmajfault"),
        limit,
        limit_hits: full
            .then(|| number(&path("memory", "memory.failcnt")))
            .flatten(),
        oom_kills: full
            .then(|| {
                flat_keyed(&path("memory", "memory.oom_control"))?
                    .get("oom_kill")
                    .copied()
            })
            .flatten(),
    };
    // With swap accounting, memsw counts memory and swap together.
    let swap = number(&path("memory", "memory.memsw.usage_in_bytes")).map(|both| Swap {
        usage: both.saturating_sub(usage),
        limit: number(&path("memory", "memory.memsw.limit_in_bytes"))
            .filter(|&l| l < V1_UNLIMITED)
            .zip(limit)
            .map(|(both, memory)| both.saturating_sub(memory)),
    });
    let mut cgroup = CgroupUsage {
        cpu_ns: number(&path("cpuacct", "cpuacct.usage")),
        memory: Some(memory),
        swap,
        processes: number(&path("pids", "pids.current")),
        ..CgroupUsage::default()
    };
    if full {
        (cgroup.cpu_user_ns, cgroup.cpu_system_ns) = cpu_split(path);
        cgroup.throttling = flat_keyed(&path("cpu", "cpu.stat")).map(|stat| {
            let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
            Throttling {
                periods: stat("nr_periods"),
                throttled_periods: stat("nr_throttled"),
                throttled_ns: stat("throttled_time"),
            }
        });
        cgroup.pids = pids(&path("memory", "cgroup.procs"));
        cgroup.io = block_io(path);
    }
    Some(cgroup)
}

/// User and system CPU time in ns: cpuacct.usage_user/_sys where the kernel
/// has them (4.6+), else cpuacct.stat's clock ticks.
fn cpu_split(path: &dyn Fn(&str, &str) -> PathBuf) -> (Option<u64>, Option<u64>) {
    let user = number(&path("cpuacct", "cpuacct.usage_user"));
    let system = number(&path("cpuacct", "cpuacct.usage_sys"));
    if user.is_some() && system.is_some() {
        return (user, system);
    }
    let Some(stat) = flat_keyed(&path("cpuacct", "cpuacct.stat")) else {
        return (None, None);
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ns_per_tick = 1_000_000_000 / u64::try_from(ticks).unwrap_or(100).max(1);
    let ns = |key: &str| stat.get(key).map(|t| t.saturating_mul(ns_per_tick));
    (ns("user"), ns("system"))
}

/// blkio's throttle files count every request (the CFQ-only files stay
/// empty under blk-mq): "8:0 Read 4096" lines, with Sync/Async/Total too.
fn block_io(path: &dyn Fn(&str, &str) -> PathBuf) -> Vec<DeviceIo> {
    let read = |name: &str| {
        std::fs::read_to_string(path("blkio", &format!("{name}_recursive")))
            .or_else(|_| std::fs::read_to_string(path("blkio", name)))
            .unwrap_or_default()
    };
    let mut io = Vec::new();
    let bytes = read("blkio.throttle.io_service_bytes");
    let operations = read("blkio.throttle.io_serviced");
    for (text, is_bytes) in [(bytes, true), (operations, false)] {
        for line in text.lines() {
            let mut words = line.split_whitespace();
            let (Some(dev), Some(op), Some(value)) = (words.next(), words.next(), words.next())
            else {
                continue;
            };
            let (Some(dev), Ok(value)) = (device(dev), value.parse::<u64>()) else {
                continue;
            };
            let entry = device_entry(&mut io, dev);
            match (op, is_bytes) {
                ("Read", true) => entry.read_bytes = value,
                ("Write", true) => entry.write_bytes = value,
                ("Read", false) => entry.reads = value,
                ("Write", false) => entry.writes = value,
                _ => {}
            }
        }
    }
    io
}

#[cfg(test)]
mod tests {
    use super::super::fake_tree;
    use super::*;

    #[test]
    fn memory_cpu_swap_and_processes() {
        let tree = fake_tree(&[
            ("memory/memory.usage_in_bytes", "10000\n"),
            (
                "memory/memory.stat",
                "cache 1\ninactive_file 9\ntotal_inactive_file 3000\ntotal_rss 6000\ntotal_pgfault 77\ntotal_pgmajfault 2\n",
            ),
            ("memory/memory.limit_in_bytes", "9223372036854771712\n"),
            ("memory/memory.memsw.usage_in_bytes", "10500\n"),
            ("cpuacct/cpuacct.usage", "123456789\n"),
            ("pids/pids.current", "3\n"),
        ]);
        let root = tree.path().to_path_buf();
        let usage = read(&|c: &str, f: &str| root.join(c).join(f), Detail::Summary).unwrap();
        assert_eq!(usage.cpu_ns, Some(123_456_789));
        assert_eq!(
            usage.memory,
            Some(Memory {
                usage: 10_000,
                working_set: 7_000,
                rss: 6_000,
                page_faults: 77,
                major_page_faults: 2,
                ..Memory::default()
            })
        );
        assert_eq!(
            usage.swap,
            Some(Swap {
                usage: 500,
                limit: None
            })
        );
        assert_eq!(usage.processes, Some(3));
        assert_eq!(usage.cpu_pressure, None);
        // A cgroup that is gone reads as nothing.
        assert_eq!(
            read(
                &|c: &str, f: &str| root.join("gone").join(c).join(f),
                Detail::Full
            ),
            None
        );
    }

    #[test]
    fn old_kernels_split_cpu_time_in_clock_ticks() {
        let tree = fake_tree(&[
            ("memory/memory.usage_in_bytes", "1\n"),
            ("cpuacct/cpuacct.stat", "user 250\nsystem 50\n"),
            ("blkio/blkio.throttle.io_service_bytes", "8:16 Write 512\n"),
        ]);
        let root = tree.path().to_path_buf();
        let usage = read(&|c: &str, f: &str| root.join(c).join(f), Detail::Full).unwrap();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        assert_eq!(usage.cpu_user_ns, Some(250 * (1_000_000_000 / hz)));
        assert_eq!(usage.cpu_system_ns, Some(50 * (1_000_000_000 / hz)));
        assert_eq!(usage.throttling, None);
        assert_eq!(usage.io.len(), 1);
        assert_eq!((usage.io[0].minor, usage.io[0].write_bytes), (16, 512));
    }
}
