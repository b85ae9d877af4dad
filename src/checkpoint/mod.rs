//! Checkpoints of running containers (CRI CheckpointContainer), as kubelet's
//! checkpoint API asks for them: a criu dump through the container's OCI
//! runtime (`<runtime> checkpoint --leave-running`), so the container runs
//! on, packed as one uncompressed tar at the location asked for, in the
//! layout containerd and CRI-O write and checkpointctl reads:
//!
//! | entry             | what                                              |
//! |-------------------|---------------------------------------------------|
//! | `checkpoint/`     | criu's images of the processes                    |
//! | `dump.log`, `stats-dump` | criu's log and statistics of the dump      |
//! | `config.dump`     | id, name, image, runtime and times (JSON)         |
//! | `spec.dump`       | the OCI spec it runs with, annotations included   |
//! | `rootfs-diff.tar` | what its writable layer holds                     |
//! | `deleted.files`   | the image's files it removed (JSON list)          |
//! | `container.log`   | its CRI log so far                                |
//!
//! Invariants: the container is left running whatever happens (a dump cut
//! short by its deadline is killed and the container thawed); the archive
//! appears whole at its location or not at all (written beside it, synced,
//! renamed); the work directory goes with the call.

mod criu;
pub mod diff;
pub mod restore;

pub use criu::ready as criu_ready;

use crate::container::ContainerRecord;
use crate::container::oci_runtime::OciRuntime;
use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The archive's entries (checkpointctl's names).
pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const CONFIG_DUMP: &str = "config.dump";
pub const SPEC_DUMP: &str = "spec.dump";
pub const ROOTFS_DIFF: &str = "rootfs-diff.tar";
pub const DELETED_FILES: &str = "deleted.files";
pub const CONTAINER_LOG: &str = "container.log";
pub const DUMP_LOG: &str = "dump.log";

/// How long a checkpoint may take when the request gives no timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Failed(String),
}

/// What a checkpoint needs to know of its container.
pub struct Dump<'a> {
    pub record: &'a ContainerRecord,
    pub runtime: OciRuntime,
    /// The overlay upper dir; `None` for a rootfs without one.
    pub writable_layer: Option<PathBuf>,
    /// Where the archive goes (see `check_location`).
    pub location: &'a Path,
    pub deadline: Instant,
}

/// Checks that `location` can take an archive: an absolute path whose
/// directory exists, not a directory itself.
pub fn check_location(location: &str) -> Result<PathBuf, CheckpointError> {
    let path = PathBuf::from(location);
    if location.is_empty() || !path.is_absolute() {
        return Err(CheckpointError::Invalid(format!(
            "location {location:?} must be an absolute path for the archive"
        )));
    }
    match path.parent().map(std::fs::metadata) {
        Some(Ok(meta)) if meta.is_dir() => {}
        _ => {
            return Err(CheckpointError::Invalid(format!(
                "location {location:?}: its directory does not exist"
            )));
        }
    }
    if path.symlink_metadata().is_ok_and(|m| m.is_dir()) {
        return Err(CheckpointError::Invalid(format!(
            "location {location:?} is a directory; it names the archive file"
        )));
    }
    Ok(path)
}

/// Takes the checkpoint and writes the archive.
pub fn checkpoint(dump: Dump<'_>) -> Result<(), CheckpointError> {
    criu_ready().map_err(CheckpointError::Precondition)?;
    let work = dump.record.dir.join("checkpoint-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&work)
        .map_err(|e| failed(&work, e))?;
    let result = dump_into(&dump, &work).and_then(|()| pack(&work, dump.location));
    let _ = std::fs::remove_dir_all(&work);
    result
}

fn failed(path: &Path, e: impl std::fmt::Display) -> CheckpointError {
    CheckpointError::Failed(format!("{}: {e}", path.display()))
}

fn dump_into(dump: &Dump<'_>, work: &Path) -> Result<(), CheckpointError> {
    let record = dump.record;
    let spec_bytes =
        std::fs::read(record.dir.join("config.json")).map_err(|e| failed(&record.dir, e))?;
    let spec: serde_json::Value = serde_json::from_slice(&spec_bytes)
        .map_err(|e| CheckpointError::Failed(format!("the container's spec: {e}")))?;

    let images = work.join(CHECKPOINT_DIR);
    let mut command = dump.runtime.command();
    command
        .arg("checkpoint")
        .arg("--leave-running")
        .arg("--image-path")
        .arg(&images)
        .arg("--work-path")
        .arg(work)
        .arg(&record.id);
    let output = run_until(command, dump.deadline).map_err(|e| match e {
        RunError::TimedOut => {
            thaw(&dump.runtime, &record.id);
            CheckpointError::Timeout(format!(
                "checkpoint of container {}: not done by its deadline; the dump was stopped and the container runs on",
                record.id
            ))
        }
        RunError::Io(e) => CheckpointError::Failed(format!(
            "cannot run {}: {e}",
            dump.runtime.binary.display()
        )),
    })?;
    if !output.status.success() {
        thaw(&dump.runtime, &record.id);
        let why = runtime_failure(&output, work);
        let message = format!("checkpoint of container {}: {why}", record.id);
        return Err(match node_limit(&why) {
            Some(limit) => CheckpointError::Precondition(format!("{message}; {limit}")),
            None => CheckpointError::Failed(message),
        });
    }

    write_json(&work.join(SPEC_DUMP), &spec)?;
    write_json(&work.join(CONFIG_DUMP), &config_dump(record))?;
    if let Some(upper) = &dump.writable_layer {
        let layer = File::open(upper).map_err(|e| failed(upper, e))?;
        let out_path = work.join(ROOTFS_DIFF);
        let out = create_private(&out_path)?;
        let mut out = std::io::BufWriter::new(out);
        let changes =
            diff::write(&layer, &mount_points(&spec), &mut out).map_err(|e| failed(upper, e))?;
        out.flush().map_err(|e| failed(&out_path, e))?;
        write_json(
            &work.join(DELETED_FILES),
            &serde_json::json!(changes.deleted),
        )?;
    }
    if let Some(log) = &record.log_path {
        copy_log(log, &work.join(CONTAINER_LOG))?;
    }
    Ok(())
}

/// Where the container has mounts: their stubs in its writable layer are
/// not its changes (CRI-O leaves them out too).
fn mount_points(spec: &serde_json::Value) -> HashSet<String> {
    spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .map(|d| format!("/{}", d.trim_matches('/')))
        .collect()
}

/// checkpointctl's `ContainerConfig`.
fn config_dump(record: &ContainerRecord) -> serde_json::Value {
    serde_json::json!({
        "id": record.id,
        "name": record.metadata().name,
        "rootfsImage": record.image_name,
        "rootfsImageRef": record.image_ref,
        "rootfsImageName": record.image_name,
        "runtime": if record.handler.is_empty() {
            record.runtime.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        } else {
            record.handler.clone()
        },
        "createdTime": crate::time::rfc3339(record.created_at),
        "checkpointedTime": crate::time::rfc3339(crate::time::now_nanos()),
        "restoredTime": crate::time::rfc3339(0),
        "restored": false,
    })
}

/// criu's own reason is in dump.log when runc's message only says it failed.
fn runtime_failure(output: &Output, work: &Path) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let said = stderr
        .lines()
        .filter_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["msg"].as_str().map(str::to_string))
                .or_else(|| Some(l.to_string()))
        })
        .filter(|l| !l.trim().is_empty())
        .collect::<Vec<_>>()
        .join("; ");
    match criu_error(&work.join(DUMP_LOG)) {
        Some(line) => format!("{said} (criu: {line})"),
        None if said.is_empty() => format!("exited with {}", output.status),
        None => said,
    }
}

/// The cause criu logged (`dump.log`, `restore.log`): its first error; the
/// last only says "Dumping FAILED" or "Restoring FAILED".
pub fn criu_error(log: &Path) -> Option<String> {
    let log = std::fs::read_to_string(log).ok()?;
    log.lines()
        .find(|l| l.contains("Error") && !l.contains("ing FAILED"))
        .or_else(|| log.lines().rev().find(|l| l.contains("Error")))
        .map(|l| l.trim().to_string())
}

/// Failures that come from what the node is, not from the request, with
/// what lets the container be checkpointed anyway.
fn node_limit(criu_said: &str) -> Option<String> {
    // glibc 2.35 and later register a restartable-sequence area for every
    // thread; criu reads it back with PTRACE_GET_RSEQ_CONFIGURATION, which
    // Linux has only from 5.13.
    criu_said.contains("has rseq but kernel lacks").then(|| {
        format!(
            "criu cannot dump a process using restartable sequences (rseq) on kernel {}, \
             which lacks PTRACE_GET_RSEQ_CONFIGURATION (Linux 5.13 and later have it); \
             a container started with GLIBC_TUNABLES=glibc.pthread.rseq=0 in its \
             environment can be checkpointed here",
            kernel_release()
        )
    })
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|r| r.trim().to_string())
        .unwrap_or_else(|_| "of this node".into())
}

/// A dump cut short may leave the container's cgroup frozen.
fn thaw(runtime: &OciRuntime, id: &str) {
    let paused = runtime
        .command()
        .arg("state")
        .arg(id)
        .output()
        .ok()
        .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
        .is_some_and(|state| state["status"] == "paused");
    if paused {
        let _ = runtime.command().arg("resume").arg(id).output();
    }
}

fn create_private(path: &Path) -> Result<File, CheckpointError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| failed(path, e))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), CheckpointError> {
    let mut file = create_private(path)?;
    serde_json::to_writer(&mut file, value).map_err(|e| failed(path, e))
}

/// The CRI log is the shim's file on the host; still, only a regular file
/// is copied.
fn copy_log(log: &Path, to: &Path) -> Result<(), CheckpointError> {
    let source = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(log)
    {
        Ok(file) if file.metadata().is_ok_and(|m| m.is_file()) => file,
        _ => return Ok(()),
    };
    let mut out = create_private(to)?;
    std::io::copy(&mut &source, &mut out).map_err(|e| failed(log, e))?;
    Ok(())
}

/// Packs `work` into `location`: written beside it, synced, then renamed,
/// so a reader never sees half an archive.
fn pack(work: &Path, location: &Path) -> Result<(), CheckpointError> {
    let name = location.file_name().ok_or_else(|| {
        CheckpointError::Invalid(format!("location {} names no file", location.display()))
    })?;
    let temp = location.with_file_name(format!(
        ".{}.crius-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let written = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temp)?;
        let mut builder = tar::Builder::new(std::io::BufWriter::new(file));
        builder.follow_symlinks(false);
        let mut entries: Vec<_> = std::fs::read_dir(work)?
            .flatten()
            .map(|e| e.file_name())
            .collect();
        entries.sort();
        for entry in entries {
            let path = work.join(&entry);
            if path.symlink_metadata()?.is_dir() {
                builder.append_dir_all(&entry, &path)?;
            } else {
                builder.append_path_with_name(&path, &entry)?;
            }
        }
        let file = builder
            .into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?;
        file.sync_all()?;
        std::fs::rename(&temp, location)?;
        if let Some(dir) = location.parent() {
            File::open(dir)?.sync_all()?;
        }
        Ok::<(), std::io::Error>(())
    })();
    written.map_err(|e| {
        let _ = std::fs::remove_file(&temp);
        failed(location, e)
    })
}

enum RunError {
    TimedOut,
    Io(std::io::Error),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::TimedOut => f.write_str("timed out"),
            RunError::Io(e) => e.fmt(f),
        }
    }
}

/// Runs `command` in a process group of its own and returns its output,
/// or kills the whole group (criu is the runtime's child) at `deadline`.
fn run_until(mut command: Command, deadline: Instant) -> Result<Output, RunError> {
    use std::os::unix::process::CommandExt;
    command
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(RunError::Io)?;
    let pid = child.id() as i32;
    // The output is read on threads so a chatty child never blocks on a
    // full pipe while we wait for it.
    let stdout = child.stdout.take().map(reader);
    let stderr = child.stderr.take().map(reader);
    loop {
        match child.try_wait().map_err(RunError::Io)? {
            Some(status) => {
                let collect = |r: Option<std::thread::JoinHandle<Vec<u8>>>| {
                    r.and_then(|r| r.join().ok()).unwrap_or_default()
                };
                return Ok(Output {
                    status,
                    stdout: collect(stdout),
                    stderr: collect(stderr),
                });
            }
            None if Instant::now() >= deadline => {
                // SAFETY: signalling the process group we made.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                let _ = child.wait();
                return Err(RunError::TimedOut);
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn reader(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_must_name_a_file_in_an_existing_directory() {
        assert!(matches!(
            check_location(""),
            Err(CheckpointError::Invalid(_))
        ));
        assert!(matches!(
            check_location("relative.tar"),
            Err(CheckpointError::Invalid(_))
        ));
        assert!(matches!(
            check_location("/nonexistent-dir/x.tar"),
            Err(CheckpointError::Invalid(_))
        ));
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            check_location(dir.path().to_str().unwrap()),
            Err(CheckpointError::Invalid(_))
        ));
        let file = dir.path().join("c.tar");
        assert_eq!(check_location(file.to_str().unwrap()).unwrap(), file);
    }

    #[test]
    fn a_kernel_without_rseq_dumps_is_named_with_the_way_around_it() {
        let criu = "criu failed (criu: (00.64) Error (criu/cr-dump.c:203): 1208 has rseq but kernel lacks get_rseq_conf feature)";
        let limit = node_limit(criu).unwrap();
        assert!(limit.contains("rseq"), "{limit}");
        assert!(
            limit.contains("GLIBC_TUNABLES=glibc.pthread.rseq=0"),
            "{limit}"
        );
        assert!(node_limit("criu failed (criu: Error: Can't dump ghost file)").is_none());
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_with_its_children() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 30 & sleep 30"]);
        let started = Instant::now();
        let result = run_until(command, Instant::now() + Duration::from_millis(200));
        assert!(matches!(result, Err(RunError::TimedOut)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn archives_appear_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join(CHECKPOINT_DIR)).unwrap();
        std::fs::write(work.join(CHECKPOINT_DIR).join("pages-1.img"), b"pages").unwrap();
        std::fs::write(work.join(CONFIG_DUMP), b"{}").unwrap();
        let location = dir.path().join("out.tar");
        pack(&work, &location).unwrap();
        let mut names: Vec<String> = tar::Archive::new(File::open(&location).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["checkpoint/", "checkpoint/pages-1.img", "config.dump"]
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers.len(), 2, "{leftovers:?}");
        // Nowhere to write: nothing is left behind.
        let gone = dir.path().join("missing/out.tar");
        assert!(pack(&work, &gone).is_err());
        assert!(!gone.exists());
    }
}
