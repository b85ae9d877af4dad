//! Starting a process in a running container without the OCI runtime: what
//! ExecSync (kubelet's exec probes) and Exec do for runc and crun
//! containers.
//!
//! `runc exec` spends ~30 ms starting Go twice (runc, then `runc init`) to
//! do a few dozen system calls. Here criusd reads the container's process
//! settings from its bundle (`plan`, seccomp compiled by `seccomp_bpf` and
//! `enosys`), opens its init as a pidfd and its cgroup files (`target`),
//! and hands all of it to a small helper of its own (`crius-enter`, run by
//! `helper`) which enters the container and execs the command as runc
//! would. The helper is not a fork of criusd: it starts from its own
//! binary with an empty environment and only the descriptors it is sent,
//! so nothing of criusd's memory or descriptors is ever in the container's
//! reach, and whatever the container's files do (a FIFO at /etc/passwd) can
//! only hold up the helper, which the caller's deadline kills.
//!
//! Settings this path does not apply (`plan::NotHere`: scheduler, I/O
//! priority, personality, seccomp notifiers, an init that moved to a
//! sub-cgroup) and runtimes whose containers are not plain processes on
//! this kernel (anything but runc and crun) go through `<runtime> exec`.
//!
//! Like runc, criusd cannot be overwritten through what it starts: the
//! helper runs from a detached read-only view of its binary (`helper`),
//! and criusd itself from one of its own (`crate::read_only_exe`).

mod enosys;
pub mod helper;
pub mod plan;
mod seccomp_bpf;
mod target;

use super::ContainerRecord;
use crius_enter::protocol::{self, Instructions};
use plan::{NotHere, Plan};
use std::os::fd::{AsFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use target::Target;
use tokio::net::unix::pipe;

/// Runtimes whose containers criusd can enter itself.
pub fn runtime_allows(binary: &Path) -> bool {
    matches!(
        binary.file_name().and_then(|n| n.to_str()),
        Some("runc" | "crun")
    )
}

/// Why an exec cannot be started here.
#[derive(Debug)]
pub enum Error {
    /// The container's settings are malformed (InvalidArgument).
    Invalid(String),
    /// Anything else: the init is gone, the bundle is unreadable.
    Failed(String),
}

/// A container ready to be entered.
#[derive(Debug)]
pub struct Entry {
    plan: Plan,
    target: Target,
    /// The container's session keyring, as runc names it.
    keyring: String,
}

/// Reads the container's settings and opens its init; blocking (criusd's
/// own files and /proc only, never the container's). The inner error says
/// why this exec goes through the runtime.
pub fn prepare(record: &ContainerRecord) -> Result<Result<Entry, NotHere>, Error> {
    let target = match Target::open(record.init_pid, &record.cgroup.relative) {
        Ok(Ok(target)) => target,
        Ok(Err(why)) => return Ok(Err(why)),
        Err(e) => return Err(Error::Failed(e)),
    };
    let config_path = record.dir.join("config.json");
    let config = std::fs::read(&config_path)
        .map_err(|e| Error::Failed(format!("{}: {e}", config_path.display())))?;
    Ok(plan::plan(&config)?.map(|mut plan| {
        inherit_rlimits(&mut plan.rlimits, record.init_pid);
        Entry {
            plan,
            target,
            keyring: format!("_ses.{}", record.id),
        }
    }))
}

/// The limits the bundle leaves out are the container's init's: what
/// `runc exec` gives too, since its process and the init both inherit
/// runc's own (whose Go runtime raises the soft RLIMIT_NOFILE to the hard
/// one), not criusd's.
fn inherit_rlimits(limits: &mut Vec<protocol::Rlimit>, init_pid: i32) {
    const RLIMIT_COUNT: u32 = 16; // RLIM_NLIMITS on every Linux architecture
    for resource in 0..RLIMIT_COUNT {
        if limits.iter().any(|l| l.resource == resource) {
            continue;
        }
        let mut old = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: reads the limit into `old`; no new limit is set.
        let read = unsafe {
            libc::prlimit(
                init_pid,
                resource as libc::__rlimit_resource_t,
                std::ptr::null(),
                &mut old,
            )
        };
        let mut own = old;
        // SAFETY: as above, for criusd itself.
        let own_read = unsafe {
            libc::prlimit(
                0,
                resource as libc::__rlimit_resource_t,
                std::ptr::null(),
                &mut own,
            )
        };
        if read == 0 && own_read == 0 {
            // Never above criusd's own: raising a hard limit takes
            // CAP_SYS_RESOURCE, which a privileged init may have had.
            let hard = old.rlim_max.min(own.rlim_max);
            limits.push(protocol::Rlimit {
                resource,
                soft: old.rlim_cur.min(hard),
                hard,
            });
        }
    }
}

/// Which stdio the process gets: pipes for those asked, or a terminal.
#[derive(Debug, Clone, Copy)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Streams {
    /// A pipe for a stream that is asked for, unless a terminal is its
    /// stdio; /dev/null otherwise.
    pub fn pipe(&self, wanted: bool) -> Stdio {
        if wanted && !self.tty {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    }
}

/// A process started in a container.
pub struct Entered {
    /// The helper's relay, whose exit status is the process's: a SIGTERM
    /// to it or dropping it kills the process.
    pub child: tokio::process::Child,
    pub stdin: Option<pipe::Sender>,
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    /// The terminal's master end, with `tty`.
    pub terminal: Option<std::fs::File>,
}

/// Starts `cmd` in the container; the error is for the client. Returns once
/// the command is exec'd; cancelling it kills the helper.
pub async fn spawn(entry: Entry, cmd: &[String], streams: Streams) -> Result<Entered, String> {
    let null = dev_null()?;
    let piped = |wanted: bool| wanted && !streams.tty;
    let stdin = piped(streams.stdin).then(pipe_pair).transpose()?;
    let stdout = piped(streams.stdout).then(pipe_pair).transpose()?;
    let stderr = piped(streams.stderr).then(pipe_pair).transpose()?;
    fn theirs<'a>(
        pair: &'a Option<(OwnedFd, OwnedFd)>,
        read_end: bool,
        null: &'a std::fs::File,
    ) -> BorrowedFd<'a> {
        match pair {
            Some((read, write)) => (if read_end { read } else { write }).as_fd(),
            None => null.as_fd(),
        }
    }
    let mut fds = vec![
        theirs(&stdin, true, null),
        theirs(&stdout, false, null),
        theirs(&stderr, false, null),
        entry.target.pidfd.as_fd(),
    ];
    fds.extend(entry.target.cgroup_procs.iter().map(|fd| fd.as_fd()));
    let instructions = instructions(&entry, cmd, streams.tty);
    let started = helper::run(&instructions, &fds).await?;
    drop(fds);
    let ours = |pair: Option<(OwnedFd, OwnedFd)>, read_end: bool| {
        pair.map(|(read, write)| if read_end { read } else { write })
    };
    let wrap = |e: std::io::Error| format!("exec pipes: {e}");
    Ok(Entered {
        child: started.child,
        stdin: ours(stdin, false)
            .map(pipe::Sender::from_owned_fd)
            .transpose()
            .map_err(wrap)?,
        stdout: ours(stdout, true)
            .map(pipe::Receiver::from_owned_fd)
            .transpose()
            .map_err(wrap)?,
        stderr: ours(stderr, true)
            .map(pipe::Receiver::from_owned_fd)
            .transpose()
            .map_err(wrap)?,
        terminal: started.terminal.map(std::fs::File::from),
    })
}

fn instructions(entry: &Entry, cmd: &[String], tty: bool) -> Instructions {
    let plan = &entry.plan;
    let bytes = |s: &String| s.as_bytes().to_vec();
    Instructions {
        argv: cmd.iter().map(bytes).collect(),
        env: plan.env.iter().map(bytes).collect(),
        home_wanted: plan.home_wanted,
        cwd: bytes(&plan.cwd),
        uid: plan.uid,
        gid: plan.gid,
        groups: plan.groups.clone(),
        umask: plan.umask,
        caps: plan.caps,
        last_cap: plan.last_cap,
        rlimits: plan.rlimits.clone(),
        no_new_privs: plan.no_new_privs,
        apparmor: plan.apparmor.as_ref().map(bytes),
        selinux: plan.selinux.as_ref().map(bytes),
        oom_score_adj: plan.oom_score_adj,
        session_keyring: Some(bytes(&entry.keyring)),
        seccomp: plan.seccomp.as_ref().map(|bpf| protocol::Seccomp {
            flags: bpf.flags as u32,
            program: bpf
                .program
                .iter()
                .map(|f| protocol::Filter {
                    code: f.code,
                    jt: f.jt,
                    jf: f.jf,
                    k: f.k,
                })
                .collect(),
        }),
        pid_namespace: entry.target.pid_namespace,
        namespaces: entry.target.namespaces,
        tty,
        cgroups: entry.target.cgroup_procs.len() as u32,
    }
}

/// /dev/null for the streams not asked for, opened once.
fn dev_null() -> Result<&'static std::fs::File, String> {
    static NULL: std::sync::OnceLock<std::fs::File> = std::sync::OnceLock::new();
    if let Some(null) = NULL.get() {
        return Ok(null);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?;
    Ok(NULL.get_or_init(|| file))
}

/// A pipe, (read end, write end), both close-on-exec.
fn pipe_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds, owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: new fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
