//! Notices containers' exits as they happen. A shim renames `exit.json`
//! into its container's dir once init has exited and the output is drained;
//! an inotify watch on each live container's dir wakes one thread, which
//! brings the record up to date (and so sends the Stopped event) without
//! waiting for a client to ask.

use crius_shim::protocol::EXIT_FILE;
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, WatchDescriptor};
use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

pub struct ExitWatcher {
    inotify: Inotify,
    /// Watched dirs by watch, to their containers' ids.
    watches: Mutex<HashMap<WatchDescriptor, String>>,
}

impl ExitWatcher {
    pub fn new() -> nix::Result<ExitWatcher> {
        Ok(ExitWatcher {
            inotify: Inotify::init(InitFlags::IN_CLOEXEC)?,
            watches: Mutex::new(HashMap::new()),
        })
    }

    /// Watches the dir of container `id` for its exit record. The watch
    /// goes with the dir when the container is removed.
    pub fn watch(&self, id: &str, dir: &Path) {
        let flags = AddWatchFlags::IN_MOVED_TO | AddWatchFlags::IN_CLOSE_WRITE;
        match self.inotify.add_watch(dir, flags) {
            Ok(wd) => {
                self.watches
                    .lock()
                    .expect("exit watches")
                    .insert(wd, id.to_string());
            }
            Err(e) => {
                tracing::warn!(id, error = %e, "cannot watch for the container's exit; it is noticed when next asked about")
            }
        }
    }

    /// Blocks until something happens, or for at most `timeout`; the ids
    /// whose exit record appeared.
    pub fn wait(&self, timeout: Option<Duration>) -> Vec<String> {
        if let Some(timeout) = timeout {
            let mut poll = libc::pollfd {
                fd: self.inotify.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd for the duration of the call.
            let ready = unsafe { libc::poll(&mut poll, 1, timeout.as_millis() as libc::c_int) };
            if ready <= 0 {
                return Vec::new();
            }
        }
        let events = match self.inotify.read_events() {
            Ok(events) => events,
            Err(nix::errno::Errno::EINTR) => return Vec::new(),
            Err(e) => {
                tracing::warn!(error = %e, "exit watcher failed; exits are noticed when asked about");
                std::thread::sleep(std::time::Duration::from_secs(1));
                return Vec::new();
            }
        };
        let mut watches = self.watches.lock().expect("exit watches");
        let mut exited = Vec::new();
        for event in events {
            if event.mask.contains(AddWatchFlags::IN_IGNORED) {
                watches.remove(&event.wd);
            } else if event.name.as_deref() == Some(std::ffi::OsStr::new(EXIT_FILE))
                && let Some(id) = watches.get(&event.wd)
            {
                exited.push(id.clone());
            }
        }
        exited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_record_wakes_the_watcher_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let watcher = ExitWatcher::new().unwrap();
        watcher.watch("c1", dir.path());
        std::fs::write(dir.path().join("log"), b"x").unwrap();
        std::fs::write(dir.path().join("exit.tmp"), b"{}").unwrap();
        std::fs::rename(dir.path().join("exit.tmp"), dir.path().join(EXIT_FILE)).unwrap();
        let mut seen = Vec::new();
        while seen.is_empty() {
            seen = watcher.wait(None);
        }
        assert_eq!(seen, vec!["c1".to_string()]);
        // Removing the dir drops its watch.
        drop(dir);
        let _ = watcher.wait(None);
        assert!(watcher.watches.lock().unwrap().is_empty());
        // Nothing pending: a bounded wait returns empty-handed.
        assert!(watcher.wait(Some(Duration::from_millis(10))).is_empty());
    }
}
