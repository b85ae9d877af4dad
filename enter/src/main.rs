//! crius-enter: starts one process in a running runc or crun container for
//! criusd, as `runc exec` would, without criusd's code, memory or
//! descriptors anywhere near the container.
//!
//!   crius-enter            (started by criusd: a Unix socket as stdin)
//!   crius-enter --version
//!
//! criusd runs this binary from a read-only view of it (see
//! `crius::container::enter::helper`), with an empty environment and three
//! descriptors: the socket as stdin, /dev/null as stdout and stderr. What
//! each process holds, step by step:
//!
//! 1. The helper (the *relay*) moves the socket to fd 3 (close-on-exec),
//!    closes anything above it, and reads its `Instructions` and
//!    descriptors: the process's stdio (now its 0-2), the container init's
//!    pidfd and the `cgroup.procs` files of the init's cgroups. It opens the
//!    host's /proc and checks it is a procfs root. It joins the container's
//!    PID namespace (with the pidfd) and forks the *process*, then closes
//!    everything it holds and waits: its exit status is the process's, and
//!    SIGTERM to it kills the process.
//! 2. The process (`process`): parent-death signal, undumpable, into the
//!    container's cgroups, oom_score_adj, one setns into its other
//!    namespaces (the pidfd and the cgroup files are closed then); inside,
//!    the container's session keyring, the SELinux exec label (through the
//!    host procfs), a new session and a terminal from the container's
//!    devpts, HOME from the container's /etc/passwd (`inside`), stdio handed
//!    to the user, rlimits, no_new_privs (or, without it, seccomp while it
//!    may still load), the working dir, the bounding set, groups and ids,
//!    the working dir checked to be inside the container's root, the
//!    capability sets, umask, the AppArmor exec profile (host procfs), the
//!    command's path; then default signal handling, the parent-death signal
//!    again, every descriptor but 0-3 closed (or the exec fails), seccomp,
//!    and execve. fd 3 closes at the exec: criusd reads that as "started".

mod inside;
mod process;
mod procfs;
mod sys;

use crius_enter::protocol::{Instructions, Report, Step};
use crius_enter::scm;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The socket to criusd: instructions in, reports out. Close-on-exec, so
/// the command never holds it.
const REPORT_FD: RawFd = 3;

/// A failed step, its errno (0 if none) and what errno cannot say.
pub type Failure = (Step, i32, String);

fn main() {
    if let Some(arg) = std::env::args_os().nth(1) {
        if arg == "--version" {
            // Built as a binary of the `crius` package, whose build.rs sets this.
            println!(
                "crius-enter {} (git {})",
                env!("CARGO_PKG_VERSION"),
                env!("CRIUS_GIT_REVISION")
            );
            return;
        }
        eprintln!("usage: crius-enter (run by criusd, with its instructions on stdin)");
        std::process::exit(2);
    }
    let report = match take_socket() {
        Ok(report) => report,
        Err(message) => {
            eprintln!("crius-enter: {message}");
            std::process::exit(2);
        }
    };
    // The name criusd's operators see in ps (an exec through /proc/self/fd
    // would show a number).
    let _ = sys::prctl(libc::PR_SET_NAME, c"crius-enter".as_ptr() as libc::c_ulong);
    let failure = match relay(&report) {
        Ok(never) => match never {},
        Err(failure) => failure,
    };
    fail(&report, failure)
}

/// Reports `failure` to criusd and exits.
pub fn fail(report: &OwnedFd, (step, errno, detail): Failure) -> ! {
    let _ = sys::write_all(
        report,
        &Report::Failed {
            step,
            errno,
            detail,
        }
        .encode(),
    );
    // SAFETY: _exit ends the process without running anything of ours.
    unsafe { libc::_exit(255) }
}

/// The socket on stdin, moved to `REPORT_FD`; nothing above it stays open.
fn take_socket() -> Result<OwnedFd, String> {
    // SAFETY: a plain struct filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::fstat(0, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("stdin is not criusd's socket".into());
    }
    // SAFETY: dup3 onto a fixed number, which this process now owns.
    let fd = unsafe { libc::dup3(0, REPORT_FD, libc::O_CLOEXEC) };
    let report = sys::owned(fd).map_err(|e| format!("dup3: {e}"))?;
    // Nothing but stdio and the socket, whatever the spawner leaked.
    sys::close_from(REPORT_FD as u32 + 1, 1 << 16)
        .map_err(|e| format!("closing inherited descriptors: errno {e}"))?;
    Ok(report)
}

fn relay(report: &OwnedFd) -> Result<std::convert::Infallible, Failure> {
    let (instructions, mut fds) =
        receive(report).map_err(|detail| (Step::Instructions, 0, detail))?;
    // The process's stdio becomes ours (the process inherits it), so that
    // nothing but the process holds the pipes once it runs.
    for (target, fd) in fds.drain(..3).enumerate() {
        // SAFETY: dup2 onto stdio, which this process owns.
        sys::check_int(unsafe { libc::dup2(fd.as_raw_fd(), target as RawFd) })
            .map_err(|e| (Step::Instructions, e, "stdio".into()))?;
    }
    let pidfd = fds.remove(0);
    let cgroups = fds;
    let procfs = procfs::Procfs::open().map_err(|(e, detail)| (Step::Procfs, e, detail))?;
    if instructions.pid_namespace {
        // SAFETY: setns on the pidfd we hold.
        sys::check_int(unsafe { libc::setns(pidfd.as_raw_fd(), libc::CLONE_NEWPID) })
            .map_err(|e| (Step::PidNamespace, e, String::new()))?;
    }
    // SAFETY: getpid and fork in a single-threaded process.
    let relay = unsafe { libc::getpid() };
    // SAFETY: as above; the child continues with a copy of this process.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err((Step::Fork, sys::errno(), String::new()));
    }
    if pid == 0 {
        let parent = if instructions.pid_namespace { 0 } else { relay };
        let held = process::Held {
            report,
            procfs,
            pidfd,
            cgroups,
        };
        let failure = match process::run(&instructions, held, parent) {
            Ok(never) => match never {},
            Err(failure) => failure,
        };
        fail(report, failure)
    }
    wait_for(pid)
}

/// The relay's child's pid, for the SIGTERM handler.
static PROCESS: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_process(_: libc::c_int) {
    let pid = PROCESS.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Closes everything (so criusd's readers see the process's EOF alone),
/// waits for the process and exits with its status.
fn wait_for(pid: libc::pid_t) -> ! {
    PROCESS.store(pid, Ordering::Relaxed);
    // SAFETY: a handler that only calls kill; plain system calls after it.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = kill_process as *const () as libc::sighandler_t;
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        // Every descriptor: the handles above are never used again, and
        // `_exit` below runs no destructor.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        while libc::waitpid(pid, &mut status, 0) != pid {
            if sys::errno() != libc::EINTR {
                libc::_exit(255);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        libc::_exit(128 + libc::WTERMSIG(status));
    }
}

/// The instructions and the descriptors that came with them.
fn receive(report: &OwnedFd) -> Result<(Instructions, Vec<OwnedFd>), String> {
    let mut bytes = vec![0u8; 64 * 1024];
    let mut fds = Vec::new();
    let n =
        scm::receive(report.as_fd(), &mut bytes, &mut fds).map_err(|e| format!("recvmsg: {e}"))?;
    bytes.truncate(n as usize);
    read_to(report, &mut bytes, 8)?;
    let header: [u8; 8] = bytes[..8].try_into().expect("8 bytes");
    let total = 8 + Instructions::body_len(&header)?;
    read_to(report, &mut bytes, total)?;
    if bytes.len() != total {
        return Err("bytes after the instructions".into());
    }
    let instructions = Instructions::decode(&bytes[8..])?;
    if fds.len() != instructions.fd_count() {
        return Err(format!(
            "{} descriptors for {} expected",
            fds.len(),
            instructions.fd_count()
        ));
    }
    Ok((instructions, fds))
}

/// Reads from `fd` until `bytes` holds `len`.
fn read_to(fd: &OwnedFd, bytes: &mut Vec<u8>, len: usize) -> Result<(), String> {
    let mut chunk = [0u8; 64 * 1024];
    while bytes.len() < len {
        let want = chunk.len().min(len - bytes.len());
        // SAFETY: a buffer of at least the length given.
        let n = unsafe { libc::read(fd.as_raw_fd(), chunk.as_mut_ptr().cast(), want) };
        match n {
            0 => return Err("instructions cut short".into()),
            n if n > 0 => bytes.extend_from_slice(&chunk[..n as usize]),
            _ if sys::errno() == libc::EINTR => {}
            _ => return Err(format!("read: {}", std::io::Error::last_os_error())),
        }
    }
    Ok(())
}
