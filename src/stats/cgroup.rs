//! What a cgroup has used: CPU time, memory, swap, processes, block I/O and
//! pressure, read from the v1 controllers' files (`v1`) or the v2 unified
//! tree (`v2`) into the same units, so that callers never see the
//! hierarchy.

mod v1;
mod v2;

use crate::cgroups::{CgroupInfo, Hierarchy};
use std::collections::HashMap;
use std::path::Path;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// How much to read: the stats RPCs need the summary; the metrics RPCs
/// also read throttling, the CPU split, failures, block I/O and the pids,
/// which cost more files per cgroup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    Summary,
    Full,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupUsage {
    /// CPU time of all cores, nanoseconds.
    pub cpu_ns: Option<u64>,
    /// The user and system parts of `cpu_ns`, nanoseconds.
    pub cpu_user_ns: Option<u64>,
    pub cpu_system_ns: Option<u64>,
    pub throttling: Option<Throttling>,
    pub memory: Option<Memory>,
    pub swap: Option<Swap>,
    /// Tasks (threads) in the cgroup and below, as pids.current counts them.
    pub processes: Option<u64>,
    /// The processes in the cgroup itself (cgroup.procs); `Full` only.
    pub pids: Option<Vec<u32>>,
    /// Bytes and operations by block device; `Full` only.
    pub io: Vec<DeviceIo>,
    /// Pressure stall information (v2 only).
    pub cpu_pressure: Option<Pressure>,
    pub memory_pressure: Option<Pressure>,
    pub io_pressure: Option<Pressure>,
}

/// CFS bandwidth control: enforcement periods and the time held back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    /// Usage less inactive file pages: what kubelet evicts on.
    pub working_set: u64,
    /// Anonymous memory.
    pub rss: u64,
    /// Page cache.
    pub cache: u64,
    /// Faults of the cgroup and its descendants.
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Faults of the cgroup's own tasks (v1 tells them apart; v2 does not,
    /// so there they equal the hierarchical counts).
    pub own_page_faults: u64,
    pub own_major_page_faults: u64,
    pub limit: Option<u64>,
    /// Times usage hit the limit (v1 memory.failcnt, v2 memory.events
    /// "max"); `Full` only.
    pub limit_hits: Option<u64>,
    /// Processes the OOM killer ended (`oom_kill` in v1 memory.oom_control
    /// or v2 memory.events); `Full` only.
    pub oom_kills: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swap {
    pub usage: u64,
    pub limit: Option<u64>,
}

/// Completed I/O of one block device, `major:minor`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u32,
    pub minor: u32,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pressure {
    pub some: PressureLine,
    pub full: Option<PressureLine>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct PressureLine {
    /// Total stall time, microseconds (as the kernel counts it).
    pub total_us: u64,
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
}

/// The usage of the cgroup at `relative` (below each hierarchy's root), or
/// `None` when it does not exist (the container is not running).
pub fn read(info: &CgroupInfo, relative: &Path, detail: Detail) -> Option<CgroupUsage> {
    match info.hierarchy {
        Hierarchy::V1 => v1::read(
            &|controller: &str, file: &str| {
                Path::new(CGROUP_ROOT)
                    .join(controller)
                    .join(relative)
                    .join(file)
            },
            detail,
        ),
        Hierarchy::V2 => v2::read(&Path::new(CGROUP_ROOT).join(relative), detail),
    }
}

/// A file holding one number ("max" and unreadable files give `None`).
fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// "key value" lines (memory.stat, cpu.stat, memory.events).
fn flat_keyed(path: &Path) -> Option<HashMap<String, u64>> {
    Some(parse_flat_keyed(&std::fs::read_to_string(path).ok()?))
}

fn parse_flat_keyed(text: &str) -> HashMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(' ')?;
            Some((key.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// cgroup.procs: one pid a line.
fn pids(path: &Path) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.lines().filter_map(|l| l.trim().parse().ok()).collect())
}

/// "major:minor" as numbers.
fn device(text: &str) -> Option<(u32, u32)> {
    let (major, minor) = text.split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// The entry of `device` in `io`, added when new (devices come in the
/// kernel's order; a container touches few).
fn device_entry(io: &mut Vec<DeviceIo>, (major, minor): (u32, u32)) -> &mut DeviceIo {
    let at = match io.iter().position(|d| (d.major, d.minor) == (major, minor)) {
        Some(at) => at,
        None => {
            io.push(DeviceIo {
                major,
                minor,
                ..DeviceIo::default()
            });
            io.len() - 1
        }
    };
    &mut io[at]
}

fn pressure(path: &Path) -> Option<Pressure> {
    parse_pressure(&std::fs::read_to_string(path).ok()?)
}

/// "some avg10=0.00 avg60=0.00 avg300=0.00 total=0" and a "full" line.
fn parse_pressure(text: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let kind = words.next()?;
        let mut parsed = PressureLine::default();
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            match key {
                "avg10" => parsed.avg10 = value.parse().ok()?,
                "avg60" => parsed.avg60 = value.parse().ok()?,
                "avg300" => parsed.avg300 = value.parse().ok()?,
                "total" => parsed.total_us = value.parse().ok()?,
                _ => {}
            }
        }
        match kind {
            "some" => some = Some(parsed),
            "full" => full = Some(parsed),
            _ => {}
        }
    }
    Some(Pressure { some: some?, full })
}

/// Files in a fake cgroup tree, for the readers' tests.
#[cfg(test)]
fn fake_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// One workload as v1 and v2 kernels show it, for the readers' tests and
/// the metrics built from them.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub const V1: &[(&str, &str)] = &[
        ("memory/memory.usage_in_bytes", "10000\n"),
        (
            "memory/memory.stat",
            "cache 3000\nrss 6000\npgfault 7\npgmajfault 1\ntotal_cache 3000\ntotal_inactive_file 2000\ntotal_rss 6000\ntotal_pgfault 7\ntotal_pgmajfault 1\n",
        ),
        ("memory/memory.limit_in_bytes", "20480\n"),
        ("memory/memory.failcnt", "4\n"),
        (
            "memory/memory.oom_control",
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        ),
        ("memory/cgroup.procs", "10\n11\n"),
        ("cpuacct/cpuacct.usage", "3000000000\n"),
        ("cpuacct/cpuacct.usage_user", "2000000000\n"),
        ("cpuacct/cpuacct.usage_sys", "1000000000\n"),
        (
            "cpu/cpu.stat",
            "nr_periods 50\nnr_throttled 5\nthrottled_time 250000000\n",
        ),
        ("pids/pids.current", "3\n"),
        (
            "blkio/blkio.throttle.io_service_bytes_recursive",
            "8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 0\n8:0 Async 0\n8:0 Total 12288\nTotal 12288\n",
        ),
        (
            "blkio/blkio.throttle.io_serviced_recursive",
            "8:0 Read 1\n8:0 Write 2\n8:0 Total 3\nTotal 3\n",
        ),
    ];

    pub const V2: &[(&str, &str)] = &[
        ("memory.current", "10000\n"),
        (
            "memory.stat",
            "anon 6000\nfile 3000\ninactive_file 2000\npgfault 7\npgmajfault 1\n",
        ),
        ("memory.max", "20480\n"),
        ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 2\n"),
        ("cgroup.procs", "10\n11\n"),
        (
            "cpu.stat",
            "usage_usec 3000000\nuser_usec 2000000\nsystem_usec 1000000\nnr_periods 50\nnr_throttled 5\nthrottled_usec 250000\n",
        ),
        ("pids.current", "3\n"),
        (
            "io.stat",
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
        ),
    ];

    /// The fixture read in full as `hierarchy` shows it.
    pub fn read(hierarchy: Hierarchy) -> CgroupUsage {
        match hierarchy {
            Hierarchy::V1 => {
                let tree = fake_tree(V1);
                let root = tree.path().to_path_buf();
                v1::read(&|c: &str, f: &str| root.join(c).join(f), Detail::Full).unwrap()
            }
            Hierarchy::V2 => v2::read(fake_tree(V2).path(), Detail::Full).unwrap(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same workload as the v1 and v2 kernels write it: both readers
    /// must give the same numbers in the same units.
    #[test]
    fn v1_and_v2_give_the_same_usage_for_the_same_workload() {
        let v1 = fake_tree(fixtures::V1);
        let v2 = fake_tree(fixtures::V2);
        let root = v1.path().to_path_buf();
        let from_v1 = v1::read(&|c: &str, f: &str| root.join(c).join(f), Detail::Full).unwrap();
        let from_v2 = v2::read(v2.path(), Detail::Full).unwrap();
        assert_eq!(from_v1, from_v2);
        assert_eq!(from_v1.cpu_ns, Some(3_000_000_000));
        assert_eq!(from_v1.cpu_user_ns, Some(2_000_000_000));
        assert_eq!(
            from_v1.throttling,
            Some(Throttling {
                periods: 50,
                throttled_periods: 5,
                throttled_ns: 250_000_000
            })
        );
        let memory = from_v1.memory.unwrap();
        assert_eq!(
            (memory.working_set, memory.cache, memory.limit),
            (8000, 3000, Some(20480))
        );
        assert_eq!((memory.limit_hits, memory.oom_kills), (Some(4), Some(2)));
        assert_eq!(from_v1.pids, Some(vec![10, 11]));
        assert_eq!(
            from_v1.io,
            vec![DeviceIo {
                major: 8,
                minor: 0,
                read_bytes: 4096,
                write_bytes: 8192,
                reads: 1,
                writes: 2
            }]
        );
    }

    #[test]
    fn summary_skips_what_only_metrics_need() {
        let tree = fake_tree(&[
            ("memory.current", "10\n"),
            ("memory.events", "max 4\noom_kill 2\n"),
            ("cgroup.procs", "10\n"),
            ("io.stat", "8:0 rbytes=1 wbytes=1 rios=1 wios=1\n"),
        ]);
        let usage = v2::read(tree.path(), Detail::Summary).unwrap();
        assert_eq!(usage.pids, None);
        assert!(usage.io.is_empty());
        assert_eq!(usage.memory.unwrap().oom_kills, None);
    }

    #[test]
    fn pressure_lines_parse_and_garbage_does_not() {
        let p = parse_pressure(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=4200\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
        )
        .unwrap();
        assert_eq!((p.some.total_us, p.some.avg10), (4200, 1.5));
        assert_eq!(p.full.unwrap().total_us, 7);
        assert_eq!(parse_pressure("full total=1\n"), None);
        assert_eq!(parse_pressure("some total=x\n"), None);
        assert_eq!(device("8:16"), Some((8, 16)));
        assert_eq!(device("Total"), None);
    }
}
