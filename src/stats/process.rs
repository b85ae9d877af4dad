//! What a cgroup's processes hold open, from /proc.

use std::path::Path;

/// Open file descriptors of `pids` (a process gone since its cgroup was
/// read counts none).
pub fn open_fds(proc_root: &Path, pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")).ok())
        .map(|entries| entries.count() as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_process_entries_and_skips_gone_ones() {
        let proc_root = tempfile::tempdir().unwrap();
        for (pid, fds) in [(10, 3), (11, 2)] {
            let dir = proc_root.path().join(format!("{pid}/fd"));
            std::fs::create_dir_all(&dir).unwrap();
            for fd in 0..fds {
                std::fs::write(dir.join(fd.to_string()), "").unwrap();
            }
        }
        assert_eq!(open_fds(proc_root.path(), &[10, 11, 12]), 5);
        // Our own process, through the real /proc.
        let own = open_fds(Path::new("/proc"), &[std::process::id()]);
        assert!(own >= 3, "{own}");
    }
}
