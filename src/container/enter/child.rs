//! The code that runs between `fork` and `exec`, in a copy of criusd that
//! has one thread: raw system calls on data prepared before the fork, no
//! allocation, no locks (async-signal-safe only).
//!
//! std's child of criusd becomes the *relay*: it enters the container's PID
//! namespace (which only a child can live in) and forks the *process*, then
//! closes everything it holds, waits for the process and exits with its
//! status, so criusd's `Child` of the relay reports the process's exit. A
//! SIGTERM to the relay kills the process; if the relay dies, the process
//! gets SIGKILL (parent-death signal).
//!
//! The process, in runc's order for `runc exec`: undumpable (nothing in the
//! container may ptrace it or open its /proc files before it is the
//! command), into the container's cgroups, oom_score_adj, into its other
//! namespaces (with one `setns` on the init's pidfd), SELinux exec label, a
//! new session and the terminal, stdio handed to the user, rlimits,
//! no_new_privs, seccomp (here when it needs privilege to load), the
//! working dir, the bounding set, groups and ids (keeping capabilities),
//! the capability sets, umask, the AppArmor exec profile, seccomp (here,
//! last, under no_new_privs), parent-death signal; then std execs the
//! command with the container's environment.

use super::plan::Plan;
use super::target::Target;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// A step of the process's set-up, reported by number when it fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    PidNamespace = 1,
    Fork,
    Cgroup,
    OomScoreAdj,
    Namespaces,
    SelinuxLabel,
    Session,
    Terminal,
    SendTerminal,
    Rlimit,
    NoNewPrivileges,
    Seccomp,
    BoundingSet,
    KeepCapabilities,
    Groups,
    Gid,
    Uid,
    WorkingDir,
    Capabilities,
    AmbientCapabilities,
    AppArmor,
    RelayGone,
}

impl Step {
    const ALL: [Step; 22] = [
        Step::PidNamespace,
        Step::Fork,
        Step::Cgroup,
        Step::OomScoreAdj,
        Step::Namespaces,
        Step::SelinuxLabel,
        Step::Session,
        Step::Terminal,
        Step::SendTerminal,
        Step::Rlimit,
        Step::NoNewPrivileges,
        Step::Seccomp,
        Step::BoundingSet,
        Step::KeepCapabilities,
        Step::Groups,
        Step::Gid,
        Step::Uid,
        Step::WorkingDir,
        Step::Capabilities,
        Step::AmbientCapabilities,
        Step::AppArmor,
        Step::RelayGone,
    ];

    pub fn from_code(code: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == code)
    }

    pub fn describe(self) -> &'static str {
        match self {
            Step::PidNamespace => "entering the container's PID namespace",
            Step::Fork => "forking the process",
            Step::Cgroup => "joining the container's cgroup",
            Step::OomScoreAdj => "setting oom_score_adj",
            Step::Namespaces => "entering the container's namespaces",
            Step::SelinuxLabel => "setting the SELinux exec label",
            Step::Session => "starting a session",
            Step::Terminal => "opening a terminal in the container",
            Step::SendTerminal => "handing the terminal to criusd",
            Step::Rlimit => "setting rlimits",
            Step::NoNewPrivileges => "setting no_new_privs",
            Step::Seccomp => "loading the seccomp filter",
            Step::BoundingSet => "dropping capabilities from the bounding set",
            Step::KeepCapabilities => "keeping capabilities across the user change",
            Step::Groups => "setting supplementary groups",
            Step::Gid => "setting the gid",
            Step::Uid => "setting the uid",
            Step::WorkingDir => "changing to the working directory",
            Step::Capabilities => "setting capabilities",
            Step::AmbientCapabilities => "raising ambient capabilities",
            Step::AppArmor => "setting the AppArmor exec profile",
            Step::RelayGone => "its relay exited first",
        }
    }
}

/// What the child needs, all prepared before the fork.
pub struct Prepared {
    pub plan: Plan,
    pub target: Target,
    /// Write end of the report pipe: a failing step writes `[step, errno]`.
    pub report: RawFd,
    /// With a terminal: the socket the terminal's master end goes back on.
    pub console: Option<RawFd>,
}

type Failure = (Step, i32);

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

fn check(result: libc::c_long, step: Step) -> Result<(), Failure> {
    if result < 0 {
        return Err((step, errno()));
    }
    Ok(())
}

/// The pre-exec hook: runs in std's child (the relay) and returns only in
/// the process, ready to exec.
///
/// # Safety
/// Only between fork and exec, in a single-threaded child.
pub unsafe fn relay_then_enter(prepared: &Prepared) -> std::io::Result<()> {
    match unsafe { fork_relay(prepared) }.and_then(|relay| unsafe { enter(prepared, relay) }) {
        Ok(()) => Ok(()),
        Err((step, errno)) => {
            let mut message = [0u8; 8];
            message[..4].copy_from_slice(&(step as u32).to_ne_bytes());
            message[4..].copy_from_slice(&errno.to_ne_bytes());
            // SAFETY: a stack buffer of the length given.
            unsafe { libc::write(prepared.report, message.as_ptr().cast(), 8) };
            Err(std::io::Error::from_raw_os_error(errno))
        }
    }
}

/// The relay's child's pid, for the relay's SIGTERM handler.
static PROCESS: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_process(_: libc::c_int) {
    let pid = PROCESS.load(Ordering::Relaxed);
    if pid > 0 {
        // SAFETY: kill is async-signal-safe.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Forks the process; the relay never returns from here. Returns the
/// relay's pid in the process.
unsafe fn fork_relay(prepared: &Prepared) -> Result<libc::pid_t, Failure> {
    let target = &prepared.target;
    // SAFETY (all calls here): plain system calls on fds we hold.
    unsafe {
        if target.pid_namespace {
            check(
                libc::setns(target.pidfd.as_raw_fd(), libc::CLONE_NEWPID).into(),
                Step::PidNamespace,
            )?;
        }
        let relay = libc::getpid();
        let pid = libc::fork();
        if pid < 0 {
            return Err((Step::Fork, errno()));
        }
        if pid == 0 {
            return Ok(relay);
        }
        PROCESS.store(pid, Ordering::Relaxed);
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = kill_process as *const () as libc::sighandler_t;
        libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        // Its copies of stdio, the report pipe and std's exec-status pipe
        // would keep their readers waiting until it exits.
        libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32);
        let mut status = 0;
        loop {
            if libc::waitpid(pid, &mut status, 0) == pid {
                break;
            }
            if errno() != libc::EINTR {
                libc::_exit(255);
            }
        }
        if libc::WIFEXITED(status) {
            libc::_exit(libc::WEXITSTATUS(status));
        }
        libc::_exit(128 + libc::WTERMSIG(status));
    }
}

/// Writes `text` (NUL-terminated) to the file at `path` (NUL-terminated).
unsafe fn write_file(path: &std::ffi::CStr, text: &std::ffi::CStr) -> Result<(), i32> {
    // SAFETY: NUL-terminated strings; the fd is closed here.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(errno());
        }
        let bytes = text.to_bytes();
        let written = libc::write(fd, bytes.as_ptr().cast(), bytes.len());
        let failed = if written < 0 { Some(errno()) } else { None };
        libc::close(fd);
        failed.map_or(Ok(()), Err)
    }
}

unsafe fn enter(prepared: &Prepared, relay: libc::pid_t) -> Result<(), Failure> {
    let (plan, target) = (&prepared.plan, &prepared.target);
    // SAFETY (all calls here): system calls on fds we hold and on data
    // prepared before the fork, which the fork copied.
    unsafe {
        libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
        for procs in &target.cgroup_procs {
            check(
                libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) as libc::c_long,
                Step::Cgroup,
            )?;
        }
        if let Some(score) = &plan.oom_score_adj {
            // Below criusd's own needs CAP_SYS_RESOURCE; the spec's value
            // was clamped to what this node allows when it was made.
            match write_file(c"/proc/self/oom_score_adj", score) {
                Ok(()) | Err(libc::EACCES) => {}
                Err(e) => return Err((Step::OomScoreAdj, e)),
            }
        }
        if target.namespaces != 0 {
            check(
                libc::setns(target.pidfd.as_raw_fd(), target.namespaces).into(),
                Step::Namespaces,
            )?;
        }
        if let Some(label) = &plan.selinux {
            write_file(c"/proc/thread-self/attr/exec", label)
                .map_err(|e| (Step::SelinuxLabel, e))?;
        }
        check(libc::setsid().into(), Step::Session)?;
        if let Some(console) = prepared.console {
            open_terminal(console)?;
        }
        hand_stdio_to(plan.uid, plan.gid);
        for (resource, limit) in &plan.rlimits {
            check(libc::setrlimit(*resource as _, limit).into(), Step::Rlimit)?;
        }
        if plan.no_new_privs {
            check(
                libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).into(),
                Step::NoNewPrivileges,
            )?;
        } else {
            // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN,
            // which the process holds only until it becomes the user.
            load_seccomp(plan)?;
        }
        become_user(plan)?;
        if let Some(profile) = &plan.apparmor {
            write_file(c"/proc/thread-self/attr/apparmor/exec", profile)
                .or_else(|_| write_file(c"/proc/self/attr/exec", profile))
                .map_err(|e| (Step::AppArmor, e))?;
        }
        if plan.no_new_privs {
            // As close to exec as it can be: the filter allows what is left.
            load_seccomp(plan)?;
        }
        // Set after the id change, which clears it. A relay outside the
        // process's PID namespace shows as parent 0; once it is gone the
        // parent is a reaper inside.
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0);
        let parent = if target.pid_namespace { 0 } else { relay };
        if libc::getppid() != parent {
            return Err((Step::RelayGone, libc::ESRCH));
        }
        // Nothing of criusd's may reach the command.
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        );
    }
    Ok(())
}

/// A new terminal from the container's devpts made the controlling
/// terminal and stdio; its master end goes back to criusd over `console`.
unsafe fn open_terminal(console: RawFd) -> Result<(), Failure> {
    // SAFETY: system calls on fds opened here; the message buffers live on
    // the stack for the sendmsg call.
    unsafe {
        let master = libc::open(
            c"/dev/ptmx".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        );
        if master < 0 {
            return Err((Step::Terminal, errno()));
        }
        let unlock: libc::c_int = 0;
        check(
            libc::ioctl(master, libc::TIOCSPTLCK, &unlock).into(),
            Step::Terminal,
        )?;
        let slave = libc::ioctl(master, libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY);
        if slave < 0 {
            return Err((Step::Terminal, errno()));
        }
        let mut byte = [0u8; 1];
        let mut iov = libc::iovec {
            iov_base: byte.as_mut_ptr().cast(),
            iov_len: 1,
        };
        // Room for one fd, aligned for cmsghdr.
        let mut control = [0u64; 4];
        let mut message: libc::msghdr = std::mem::zeroed();
        message.msg_iov = &mut iov;
        message.msg_iovlen = 1;
        message.msg_control = control.as_mut_ptr().cast();
        message.msg_controllen = libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as _;
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header).cast::<RawFd>(), master);
        check(
            libc::sendmsg(console, &message, 0) as libc::c_long,
            Step::SendTerminal,
        )?;
        libc::close(master);
        check(
            libc::ioctl(slave, libc::TIOCSCTTY, 0).into(),
            Step::Terminal,
        )?;
        for fd in 0..3 {
            check(libc::dup2(slave, fd).into(), Step::Terminal)?;
        }
        if slave > 2 {
            libc::close(slave);
        }
    }
    Ok(())
}

/// Gives stdio to the user, so that it can reopen them (`/dev/stdout`) as
/// runc allows; /dev/null stays as it is. Best effort, as in runc.
unsafe fn hand_stdio_to(uid: u32, gid: u32) {
    // SAFETY: fstat into a stack struct; fchown on our stdio.
    unsafe {
        for fd in 0..3 {
            let mut stat: libc::stat = std::mem::zeroed();
            if libc::fstat(fd, &mut stat) < 0 || stat.st_uid == uid {
                continue;
            }
            let is_null = (stat.st_mode & libc::S_IFMT) == libc::S_IFCHR
                && stat.st_rdev == libc::makedev(1, 3);
            if !is_null {
                libc::fchown(fd, uid, gid);
            }
        }
    }
}

unsafe fn load_seccomp(plan: &Plan) -> Result<(), Failure> {
    let Some(bpf) = &plan.seccomp else {
        return Ok(());
    };
    let program = libc::sock_fprog {
        len: bpf.program.len() as u16,
        filter: bpf.program.as_ptr().cast_mut(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    check(
        unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                bpf.flags,
                &program as *const libc::sock_fprog,
            )
        },
        Step::Seccomp,
    )
}

/// The working dir, the bounding set, then the user's groups and ids with
/// capabilities kept, then the capability sets.
unsafe fn become_user(plan: &Plan) -> Result<(), Failure> {
    let caps = plan.caps;
    // SAFETY (all calls here): system calls on prepared data. Raw setres*id
    // calls: they change this (only) thread, without glibc's broadcast.
    unsafe {
        // As root first, so a working dir the user cannot reach still is
        // its cwd (as in runc); again as the user if root may not.
        let early = libc::chdir(plan.cwd.as_ptr());
        if early < 0 && !matches!(errno(), libc::EACCES | libc::EPERM) {
            return Err((Step::WorkingDir, errno()));
        }
        for cap in 0..=plan.last_cap.min(63) {
            if caps.bounding & (1 << cap) == 0
                && libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) < 0
                && errno() != libc::EINVAL
            {
                return Err((Step::BoundingSet, errno()));
            }
        }
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0).into(),
            Step::KeepCapabilities,
        )?;
        check(
            libc::syscall(libc::SYS_setgroups, plan.groups.len(), plan.groups.as_ptr()),
            Step::Groups,
        )?;
        check(
            libc::syscall(libc::SYS_setresgid, plan.gid, plan.gid, plan.gid),
            Step::Gid,
        )?;
        check(
            libc::syscall(libc::SYS_setresuid, plan.uid, plan.uid, plan.uid),
            Step::Uid,
        )?;
        check(
            libc::prctl(libc::PR_SET_KEEPCAPS, 0, 0, 0, 0).into(),
            Step::KeepCapabilities,
        )?;
        if early < 0 {
            check(libc::chdir(plan.cwd.as_ptr()).into(), Step::WorkingDir)?;
        }
        #[repr(C)]
        struct Header {
            version: u32,
            pid: libc::c_int,
        }
        #[repr(C)]
        #[derive(Clone, Copy)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        let header = Header {
            version: 0x2008_0522, // _LINUX_CAPABILITY_VERSION_3
            pid: 0,
        };
        let half = |mask: u64, high: bool| (if high { mask >> 32 } else { mask }) as u32;
        let data = [false, true].map(|high| Data {
            effective: half(caps.effective, high),
            permitted: half(caps.permitted, high),
            inheritable: half(caps.inheritable, high),
        });
        check(
            libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()),
            Step::Capabilities,
        )?;
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        );
        for cap in 0..=plan.last_cap.min(63) {
            if caps.ambient & (1 << cap) != 0 {
                check(
                    libc::prctl(
                        libc::PR_CAP_AMBIENT,
                        libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                        cap as libc::c_ulong,
                        0,
                        0,
                    )
                    .into(),
                    Step::AmbientCapabilities,
                )?;
            }
        }
        if let Some(mask) = plan.umask {
            libc::umask(mask);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_round_trip_through_their_codes() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step as u32), Some(step));
            assert!(!step.describe().is_empty());
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(Step::from_code(999), None);
    }
}
