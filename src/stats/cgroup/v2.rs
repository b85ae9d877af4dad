//! cgroup v2: one directory per cgroup with every controller's files.

use super::{
    CgroupUsage, Detail, DeviceIo, Memory, Swap, Throttling, device, device_entry, flat_keyed,
    number, pids, pressure,
};
use std::path::Path;

pub(super) fn read(dir: &Path, detail: Detail) -> Option<CgroupUsage> {
    if !dir.is_dir() {
        return None;
    }
    let full = detail == Detail::Full;
    let memory = number(&dir.join("memory.current")).map(|usage| {
        let stat = flat_keyed(&dir.join("memory.stat")).unwrap_or_default();
        let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
        let events = full
            .then(|| flat_keyed(&dir.join("memory.events")))
            .flatten();
        let event = |key: &str| events.as_ref().map(|e| e.get(key).copied().unwrap_or(0));
        Memory {
            usage,
            working_set: usage.saturating_sub(stat("inactive_file")),
            rss: stat("anon"),
            cache: stat("file"),
            page_faults: stat("pgfault"),
            major_page_faults: stat("pgmajfault"),
            own_page_faults: stat("pgfault"),
            own_major_page_faults: stat("pgmajfault"),
            limit: number(&dir.join("memory.max")),
            limit_hits: event("max"),
            oom_kills: event("oom_kill"),
        }
    });
    let swap = number(&dir.join("memory.swap.current")).map(|usage| Swap {
        usage,
        limit: number(&dir.join("memory.swap.max")),
    });
    let cpu = flat_keyed(&dir.join("cpu.stat"));
    let usec = |key: &str| {
        cpu.as_ref()
            .and_then(|stat| stat.get(key))
            .map(|us| us.saturating_mul(1000))
    };
    // Without the cpu controller cpu.stat has only the usage lines.
    let throttling = cpu
        .as_ref()
        .filter(|stat| stat.contains_key("nr_periods"))
        .map(|stat| {
            let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
            Throttling {
                periods: stat("nr_periods"),
                throttled_periods: stat("nr_throttled"),
                throttled_ns: stat("throttled_usec").saturating_mul(1000),
            }
        });
    Some(CgroupUsage {
        cpu_ns: usec("usage_usec"),
        cpu_user_ns: usec("user_usec"),
        cpu_system_ns: usec("system_usec"),
        throttling,
        memory,
        swap,
        processes: number(&dir.join("pids.current")),
        pids: full.then(|| pids(&dir.join("cgroup.procs"))).flatten(),
        io: if full { block_io(dir) } else { Vec::new() },
        cpu_pressure: pressure(&dir.join("cpu.pressure")),
        memory_pressure: pressure(&dir.join("memory.pressure")),
        io_pressure: pressure(&dir.join("io.pressure")),
    })
}

/// io.stat: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0" lines.
fn block_io(dir: &Path) -> Vec<DeviceIo> {
    let text = std::fs::read_to_string(dir.join("io.stat")).unwrap_or_default();
    let mut io = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(dev) = words.next().and_then(device) else {
            continue;
        };
        let entry = device_entry(&mut io, dev);
        for word in words {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let Ok(value) = value.parse() else { continue };
            match key {
                "rbytes" => entry.read_bytes = value,
                "wbytes" => entry.write_bytes = value,
                "rios" => entry.reads = value,
                "wios" => entry.writes = value,
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
    fn memory_cpu_limits_and_pressure() {
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
        let usage = read(tree.path(), Detail::Summary).unwrap();
        assert_eq!(usage.cpu_ns, Some(2_500_000));
        assert_eq!(usage.cpu_system_ns, Some(500_000));
        // No cpu controller: no throttling figures rather than zeros.
        assert_eq!(usage.throttling, None);
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
        assert_eq!(read(&tree.path().join("gone"), Detail::Full), None);
    }

    #[test]
    fn io_stat_lines_per_device() {
        let tree = fake_tree(&[(
            "io.stat",
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n253:1 rbytes=5 wbytes=0 rios=1 wios=0\n",
        )]);
        let io = block_io(tree.path());
        assert_eq!(io.len(), 2);
        assert_eq!((io[1].major, io[1].minor, io[1].read_bytes), (253, 1, 5));
        assert_eq!(io[0].writes, 2);
    }
}
