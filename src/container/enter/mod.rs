//! Starting a process in a running container without the OCI runtime: what
//! ExecSync (kubelet's exec probes) and Exec do for runc and crun
//! containers.
//!
//! `runc exec` spends ~30 ms starting Go twice (runc, then `runc init`) to
//! do a few dozen system calls. criusd does them itself: the process is a
//! fork of criusd that enters the container through its init's pidfd and
//! applies the container's process settings from its bundle as runc would
//! (`child` has the order), then execs the command. Settings this path does
//! not apply (`plan::NotHere`: scheduler, I/O priority, personality,
//! seccomp notifiers) and runtimes whose containers are not plain processes
//! on this kernel (anything but runc and crun) go through `<runtime> exec`.
//!
//! Like runc, criusd cannot be overwritten through the forked process: see
//! `crate::daemon::sealed_exe` (criusd runs from a read-only mount of its
//! binary, so `/proc/<pid>/exe` of the fork cannot be opened for writing).

mod child;
mod enosys;
pub mod plan;
mod seccomp_bpf;
mod target;

use super::ContainerRecord;
use plan::{NotHere, Plan};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;
use target::Target;

/// Runtimes whose containers criusd can enter itself.
pub fn runtime_allows(binary: &Path) -> bool {
    matches!(
        binary.file_name().and_then(|n| n.to_str()),
        Some("runc" | "crun")
    )
}

/// A container ready to be entered.
#[derive(Debug)]
pub struct Entry {
    plan: Plan,
    target: Target,
}

/// Reads the container's settings and opens its init. The inner error says
/// why this exec goes through the runtime; the outer one why it cannot run
/// at all (the container's init is gone, its bundle is unreadable).
pub fn prepare(record: &ContainerRecord) -> Result<Result<Entry, NotHere>, String> {
    let target = Target::open(record.init_pid, &record.cgroup.relative)?;
    let config_path = record.dir.join("config.json");
    let config =
        std::fs::read(&config_path).map_err(|e| format!("{}: {e}", config_path.display()))?;
    let pid = record.init_pid;
    Ok(plan::plan(&config, |uid| Target::home_of(pid, uid))?.map(|plan| Entry { plan, target }))
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
    /// The relay, whose exit status is the process's: a SIGTERM to it or
    /// dropping it kills the process.
    pub child: tokio::process::Child,
    /// The terminal's master end, with `tty`.
    pub terminal: Option<std::fs::File>,
}

/// Starts `cmd` in the container; the error is for the client.
pub fn spawn(entry: Entry, cmd: &[String], streams: Streams) -> Result<Entered, String> {
    let (program, args) = cmd.split_first().ok_or("cmd is empty")?;
    let (report_read, report_write) = pipe()?;
    let console = if streams.tty {
        Some(socket_pair()?)
    } else {
        None
    };
    let mut command = tokio::process::Command::new(program);
    command.args(args).env_clear().kill_on_drop(true);
    for entry in &entry.plan.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry, ""));
        command.env(key, value);
    }
    command
        .stdin(streams.pipe(streams.stdin))
        .stdout(streams.pipe(streams.stdout))
        .stderr(streams.pipe(streams.stderr));
    let prepared = Box::new(child::Prepared {
        plan: entry.plan,
        target: entry.target,
        report: report_write.as_raw_fd(),
        console: console.as_ref().map(|(_, theirs)| theirs.as_raw_fd()),
    });
    // SAFETY: the hook makes only async-signal-safe system calls on data
    // prepared before the fork (see `child`).
    unsafe {
        command.pre_exec(move || child::relay_then_enter(&prepared));
    }
    let spawned = command.spawn();
    drop(command);
    drop(report_write);
    let child = spawned.map_err(|e| match failed_step(&report_read) {
        Some((step, errno)) => format!(
            "{}: {}",
            step.describe(),
            std::io::Error::from_raw_os_error(errno)
        ),
        None if e.kind() == std::io::ErrorKind::NotFound => {
            format!("exec: {program:?}: executable file not found in $PATH")
        }
        None => format!("exec: {program:?}: {e}"),
    })?;
    let terminal = match console {
        Some((ours, _)) => Some(receive_fd(&ours)?.into()),
        None => None,
    };
    Ok(Entered { child, terminal })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fds, owned below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } < 0 {
        return Err(format!("pipe: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: new fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn socket_pair() -> Result<(OwnedFd, OwnedFd), String> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two fds, owned below.
    let made = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
            fds.as_mut_ptr(),
        )
    };
    if made < 0 {
        return Err(format!("socketpair: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: new fds.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// The step that failed, if the process reported one.
fn failed_step(report: &OwnedFd) -> Option<(child::Step, i32)> {
    let mut message = [0u8; 8];
    // SAFETY: a stack buffer of the length given; the pipe does not block.
    let n = unsafe { libc::read(report.as_raw_fd(), message.as_mut_ptr().cast(), 8) };
    if n != 8 {
        return None;
    }
    let step = u32::from_ne_bytes(message[..4].try_into().expect("4 bytes"));
    let errno = i32::from_ne_bytes(message[4..].try_into().expect("4 bytes"));
    Some((child::Step::from_code(step)?, errno))
}

/// The fd the process sent before it exec'd (so it is there now).
fn receive_fd(socket: &OwnedFd) -> Result<OwnedFd, String> {
    let mut byte = [0u8; 1];
    let mut iov = libc::iovec {
        iov_base: byte.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; the buffers outlive the call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr().cast();
    message.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: as above.
    let n = unsafe { libc::recvmsg(socket.as_raw_fd(), &mut message, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(format!(
            "no terminal from the process: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: the header and data lie within `control`, as the kernel wrote.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            return Err("no terminal from the process".into());
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(header).cast::<i32>());
        Ok(OwnedFd::from_raw_fd(fd))
    }
}
