//! What a cgroup has used: CPU time, memory, swap, processes and pressure,
//! read from the v1 controllers' files or the v2 unified tree.

use crate::cgroups::{CgroupInfo, Hierarchy};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// v1 reports "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupUsage {
    /// CPU time of all cores, nanoseconds.
    pub cpu_ns: Option<u64>,
    pub memory: Option<Memory>,
    pub swap: Option<Swap>,
    pub processes: Option<u64>,
    /// Pressure stall information (v2 only).
    pub cpu_pressure: Option<Pressure>,
    pub memory_pressure: Option<Pressure>,
    pub io_pressure: Option<Pressure>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    /// Usage less inactive file pages: what kubelet evicts on.
    pub working_set: u64,
    /// Anonymous memory.
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    pub limit: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swap {
    pub usage: u64,
    pub limit: Option<u64>,
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
pub fn read(info: &CgroupInfo, relative: &Path) -> Option<CgroupUsage> {
    match info.hierarchy {
        Hierarchy::V1 => read_v1(&|controller: &str, file: &str| {
            Path::new(CGROUP_ROOT)
                .join(controller)
                .join(relative)
                .join(file)
        }),
        Hierarchy::V2 => read_v2(&Path::new(CGROUP_ROOT).join(relative)),
    }
}

fn read_v1(path: &dyn Fn(&str, &str) -> PathBuf) -> Option<CgroupUsage> {
    let usage = number(&path("memory", "memory.usage_in_bytes"))?;
    let stat = flat_keyed(&path("memory", "memory.stat")).unwrap_or_default();
    let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
    let limit = number(&path("memory", "memory.limit_in_bytes")).filter(|&l| l < V1_UNLIMITED);
    let memory = Memory {
        usage,
        working_set: usage.saturating_sub(stat("total_inactive_file")),
        rss: stat("total_rss"),
        page_faults: stat("total_pgfault"),
        major_page_faults: stat("total_pgmajfault"),
        limit,
    };
    // With swap accounting, memsw counts memory and swap together.
    let swap = number(&path("memory", "memory.memsw.usage_in_bytes")).map(|both| Swap {
        usage: both.saturating_sub(usage),
        limit: number(&path("memory", "memory.memsw.limit_in_bytes"))
            .filter(|&l| l < V1_UNLIMITED)
            .zip(limit)
            .map(|(both, memory)| both.saturating_sub(memory)),
    });
    Some(CgroupUsage {
        cpu_ns: number(&path("cpuacct", "cpuacct.usage")),
        memory: Some(memory),
        swap,
        processes: number(&path("pids", "pids.current")),
        ..CgroupUsage::default()
    })
}

fn read_v2(dir: &Path) -> Option<CgroupUsage> {
    if !dir.is_dir() {
        return None;
    }
    let memory = number(&dir.join("memory.current")).map(|usage| {
        let stat = flat_keyed(&dir.join("memory.stat")).unwrap_or_default();
        let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
        Memory {
            usage,
            working_set: usage.saturating_sub(stat("inactive_file")),
            rss: stat("anon"),
            page_faults: stat("pgfault"),
            major_page_faults: stat("pgmajfault"),
            limit: number(&dir.join("memory.max")),
        }
    });
    let swap = number(&dir.join("memory.swap.current")).map(|usage| Swap {
        usage,
        limit: number(&dir.join("memory.swap.max")),
    });
    let cpu_ns = flat_keyed(&dir.join("cpu.stat"))
        .and_then(|stat| stat.get("usage_usec").copied())
        .map(|us| us.saturating_mul(1000));
    Some(CgroupUsage {
        cpu_ns,
        memory,
        swap,
        processes: number(&dir.join("pids.current")),
        cpu_pressure: pressure(&dir.join("cpu.pressure")),
        memory_pressure: pressure(&dir.join("memory.pressure")),
        io_pressure: pressure(&dir.join("io.pressure")),
    })
}

/// A file holding one number ("max" and unreadable files give `None`).
fn number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// "key value" lines (memory.stat, cpu.stat).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    #[test]
    fn v1_memory_cpu_swap_and_processes() {
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
        let usage = read_v1(&|c: &str, f: &str| root.join(c).join(f)).unwrap();
        assert_eq!(usage.cpu_ns, Some(123_456_789));
        assert_eq!(
            usage.memory,
            Some(Memory {
                usage: 10_000,
                working_set: 7_000,
                rss: 6_000,
                page_faults: 77,
                major_page_faults: 2,
                limit: None,
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
            read_v1(&|c: &str, f: &str| root.join("gone").join(c).join(f)),
            None
        );
    }

    #[test]
    fn v2_memory_cpu_limits_and_pressure() {
        let tree = fake_tree(&[
            ("memory.current", "8192\n"),
            (
                "memory.stat",
                "anon 4096\nfile 4096\ninactive_file 1024\npgfault 10\npgmajfault 1\n",
            ),
            ("memory.max", "16384\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            (
                "cpu.stat",
                "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n",
            ),
            ("pids.current", "2\n"),
            (
                "cpu.pressure",
                "some avg10=1.50 avg60=0.25 avg300=0.00 total=4200\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=7\n",
            ),
        ]);
        let usage = read_v2(tree.path()).unwrap();
        assert_eq!(usage.cpu_ns, Some(2_500_000));
        let memory = usage.memory.unwrap();
        assert_eq!(
            (memory.usage, memory.working_set, memory.rss),
            (8192, 7168, 4096)
        );
        assert_eq!(memory.limit, Some(16384));
        assert_eq!(
            usage.swap,
            Some(Swap {
                usage: 0,
                limit: None
            })
        );
        let cpu = usage.cpu_pressure.unwrap();
        assert_eq!(cpu.some.total_us, 4200);
        assert_eq!(cpu.some.avg10, 1.5);
        assert_eq!(cpu.full.unwrap().total_us, 7);
        assert_eq!(usage.memory_pressure, None);
        assert_eq!(read_v2(&tree.path().join("gone")), None);
    }
}
