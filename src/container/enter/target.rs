//! The running container a process enters, as handles criusd opens and
//! hands to the helper: its init as a pidfd (so a recycled pid can never be
//! entered), the namespaces that differ from criusd's, and the
//! `cgroup.procs` files of the cgroups its init is in. Only the host's
//! /proc and cgroupfs are read here, never a file of the container's.

use super::plan::NotHere;
use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub struct Target {
    pub pidfd: OwnedFd,
    /// The relay enters the container's PID namespace before forking.
    pub pid_namespace: bool,
    /// The other namespaces to enter (`CLONE_NEW*`), with one `setns`.
    pub namespaces: libc::c_int,
    /// Opened for writing; "0" moves the writer.
    pub cgroup_procs: Vec<OwnedFd>,
}

const NAMESPACES: &[(&str, libc::c_int)] = &[
    ("user", libc::CLONE_NEWUSER),
    ("mnt", libc::CLONE_NEWNS),
    ("net", libc::CLONE_NEWNET),
    ("ipc", libc::CLONE_NEWIPC),
    ("uts", libc::CLONE_NEWUTS),
    ("cgroup", libc::CLONE_NEWCGROUP),
    ("time", libc::CLONE_NEWTIME),
];

impl Target {
    /// Opens container init `pid`, which must be in `cgroup` (the
    /// container's cgroup below a hierarchy's root). An init that moved
    /// itself into a cgroup below that one (systemd in a container does)
    /// sends the exec to the runtime, which knows where to put it.
    pub fn open(pid: i32, cgroup: &Path) -> Result<Result<Target, NotHere>, String> {
        // SAFETY: pidfd_open takes a pid and flags; the fd returned is ours.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(format!(
                "its init (pid {pid}) is gone: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: a new fd.
        let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        let theirs = read(&format!("/proc/{pid}/cgroup"))?;
        let ours = read("/proc/self/cgroup")?;
        // Read after the pidfd was opened: a pid recycled before then would
        // not be in the container's cgroup.
        let expected = format!("/{}", cgroup.display());
        if !memberships(&theirs).any(|(_, path)| path == expected) {
            let below = format!("{expected}/");
            if let Some((_, path)) = memberships(&theirs).find(|(_, p)| p.starts_with(&below)) {
                return Ok(Err(NotHere(format!(
                    "the container's init moved to cgroup {path}"
                ))));
            }
            return Err(format!(
                "pid {pid} is not the container's init (not in cgroup {expected})"
            ));
        }
        let ours: Vec<(&str, &str)> = memberships(&ours).collect();
        let mut cgroup_procs = Vec::new();
        for (controllers, path) in memberships(&theirs) {
            if ours.contains(&(controllers, path)) {
                continue;
            }
            let mount = hierarchy_mount(controllers)
                .ok_or_else(|| format!("no mount of cgroup hierarchy {controllers:?}"))?;
            let file = mount
                .join(path.trim_start_matches('/'))
                .join("cgroup.procs");
            let procs = std::fs::OpenOptions::new()
                .write(true)
                .open(&file)
                .map_err(|e| format!("{}: {e}", file.display()))?;
            cgroup_procs.push(procs.into());
        }
        let differs = |name: &str| -> Result<bool, String> {
            let id = |path: String| {
                std::fs::metadata(&path)
                    .map(|m| Some((m.dev(), m.ino())))
                    .or_else(|e| match e.kind() {
                        // A kernel without this namespace type.
                        std::io::ErrorKind::NotFound => Ok(None),
                        _ => Err(format!("{path}: {e}")),
                    })
            };
            Ok(id(format!("/proc/{pid}/ns/{name}"))? != id(format!("/proc/self/ns/{name}"))?)
        };
        let mut namespaces = 0;
        for (name, flag) in NAMESPACES {
            if differs(name)? {
                namespaces |= flag;
            }
        }
        Ok(Ok(Target {
            pidfd,
            pid_namespace: differs("pid")?,
            namespaces,
            cgroup_procs,
        }))
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("pidfd", &self.pidfd.as_raw_fd())
            .field("pid_namespace", &self.pid_namespace)
            .field("namespaces", &format_args!("{:#x}", self.namespaces))
            .field("cgroups", &self.cgroup_procs.len())
            .finish()
    }
}

fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))
}

/// `(controllers, path)` of each line of a /proc/<pid>/cgroup text.
fn memberships(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        Some((controllers, path))
    })
}

/// Where the hierarchy of `controllers` ("cpu,cpuacct", "name=systemd", or
/// "" for v2) is mounted, from criusd's mountinfo (read once).
fn hierarchy_mount(controllers: &str) -> Option<PathBuf> {
    static MOUNTS: std::sync::OnceLock<Vec<(BTreeSet<String>, PathBuf)>> =
        std::sync::OnceLock::new();
    let mounts = MOUNTS.get_or_init(|| {
        let controllers = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
        let known: BTreeSet<&str> = controllers
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        cgroup_mounts(&mountinfo, &known)
    });
    mount_of(mounts, controllers).map(Path::to_path_buf)
}

/// The mount among `mounts` of the hierarchy of `controllers`.
fn mount_of<'a>(mounts: &'a [(BTreeSet<String>, PathBuf)], controllers: &str) -> Option<&'a Path> {
    let wanted: BTreeSet<String> = controllers
        .split(',')
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    mounts
        .iter()
        .find(|(set, _)| *set == wanted)
        .map(|(_, path)| path.as_path())
}

/// The root mounts of cgroup hierarchies: each v1 one with its controllers
/// (those of `known`, and `name=`), the v2 one with none.
fn cgroup_mounts(mountinfo: &str, known: &BTreeSet<&str>) -> Vec<(BTreeSet<String>, PathBuf)> {
    let mut mounts = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 5 || right.len() < 3 || left[3] != "/" {
            continue;
        }
        let set = match right[0] {
            "cgroup2" => BTreeSet::new(),
            "cgroup" => right[2]
                .split(',')
                .filter(|o| o.starts_with("name=") || known.contains(o))
                .map(str::to_string)
                .collect(),
            _ => continue,
        };
        if !mounts.iter().any(|(s, _)| *s == set) {
            mounts.push((set, PathBuf::from(left[4])));
        }
    }
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hierarchies_are_found_by_their_controllers() {
        let mountinfo = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/systemd rw,nosuid shared:11 - cgroup cgroup rw,xattr,name=systemd
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:13 - cgroup cgroup rw,memory
40 30 0:26 /kubepods /var/lib/other rw - cgroup cgroup rw,memory";
        let known = BTreeSet::from(["cpu", "cpuacct", "memory", "pids"]);
        let mounts = cgroup_mounts(mountinfo, &known);
        let find = |c: &str| mount_of(&mounts, c).map(|p| p.display().to_string());
        assert_eq!(find("").as_deref(), Some("/sys/fs/cgroup/unified"));
        assert_eq!(
            find("name=systemd").as_deref(),
            Some("/sys/fs/cgroup/systemd")
        );
        assert_eq!(
            find("cpu,cpuacct").as_deref(),
            Some("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(find("memory").as_deref(), Some("/sys/fs/cgroup/memory"));
        assert_eq!(find("pids"), None);
    }

    #[test]
    fn memberships_split_on_the_first_two_colons() {
        let text = "4:memory:/crius/a:b\n0::/crius/a\n";
        let got: Vec<_> = memberships(text).collect();
        assert_eq!(got, [("memory", "/crius/a:b"), ("", "/crius/a")]);
    }

    #[test]
    fn a_process_outside_the_cgroup_is_refused() {
        let me = std::process::id() as i32;
        let err = Target::open(me, Path::new("crius/no-such-container")).unwrap_err();
        assert!(err.contains("not the container's init"), "{err}");
        // Our own cgroup's parent: we are below it, so as an init that moved
        // into a sub-cgroup this goes to the runtime.
        let ours = read("/proc/self/cgroup").unwrap();
        if let Some((_, path)) = memberships(&ours).find(|(_, p)| p.matches('/').count() >= 2) {
            let parent = Path::new(path.trim_start_matches('/')).parent().unwrap();
            let why = Target::open(me, parent).unwrap().unwrap_err();
            assert!(why.0.contains("moved to cgroup"), "{why:?}");
        }
    }
}
