//! The process, forked by the relay, from the container's cgroups and
//! namespaces to the command's execve, in runc's order for `runc exec`
//! (see the list in `main`). It has one thread and holds nothing of
//! criusd's, so it may allocate and read files freely; after the seccomp
//! filter there is nothing but execve.

use crate::procfs::Procfs;
use crate::{Failure, inside, sys};
use crius_enter::protocol::{Instructions, Report, Step};
use std::convert::Infallible;
use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

/// What the relay hands over: all of it is closed before the exec but the
/// report socket, which is close-on-exec.
pub struct Held<'a> {
    pub report: &'a OwnedFd,
    pub procfs: Procfs,
    pub pidfd: OwnedFd,
    pub cgroups: Vec<OwnedFd>,
}

fn at(step: Step) -> impl Fn(i32) -> Failure {
    move |errno| (step, errno, String::new())
}

/// Never returns but by the exec, or with the step that failed.
pub fn run(
    instructions: &Instructions,
    held: Held,
    parent: libc::pid_t,
) -> Result<Infallible, Failure> {
    let Held {
        report,
        procfs,
        pidfd,
        cgroups,
    } = held;
    let i = instructions;
    stay_with_parent(parent)?;
    // Nothing in the container may ptrace it or open its /proc files until
    // it is the command.
    sys::prctl(libc::PR_SET_DUMPABLE, 0).map_err(at(Step::Undumpable))?;
    for procs in cgroups {
        sys::write_all(&procs, b"0").map_err(at(Step::Cgroup))?;
    }
    if let Some(score) = i.oom_score_adj {
        // Below criusd's own needs CAP_SYS_RESOURCE; the spec's value was
        // clamped to what this node allows when it was made.
        match procfs.write(c"self/oom_score_adj", score.to_string().as_bytes()) {
            Ok(()) | Err(libc::EACCES) => {}
            Err(e) => return Err((Step::OomScoreAdj, e, String::new())),
        }
    }
    if i.namespaces != 0 {
        // SAFETY: setns on the pidfd we hold.
        sys::check_int(unsafe { libc::setns(pidfd.as_raw_fd(), i.namespaces) })
            .map_err(at(Step::Namespaces))?;
    }
    drop(pidfd);
    if let Some(name) = &i.session_keyring {
        join_session_keyring(&procfs, name, i.selinux.as_deref())?;
    }
    if let Some(label) = &i.selinux {
        procfs
            .write(c"thread-self/attr/exec", label)
            .map_err(at(Step::SelinuxLabel))?;
    }
    // setgroups(2) is not allowed where the user namespace's setgroups
    // file says deny (runc then skips it).
    let groups_denied = procfs
        .read(c"self/setgroups")
        .is_ok_and(|text| text.trim_ascii() == b"deny");
    // Opened now, written as the user: runc's order, and no directory of
    // the host is held when the working dir is resolved.
    let apparmor = match &i.apparmor {
        None => None,
        Some(_) => Some(
            procfs
                .open_file(c"thread-self/attr/apparmor/exec", libc::O_WRONLY)
                .or_else(|_| procfs.open_file(c"thread-self/attr/exec", libc::O_WRONLY))
                .map_err(at(Step::AppArmor))?,
        ),
    };
    drop(procfs);
    // SAFETY: setsid takes no arguments.
    sys::check_int(unsafe { libc::setsid() }).map_err(at(Step::Session))?;
    if i.tty {
        open_terminal(report)?;
    }
    let mut env = i.env.clone();
    if i.home_wanted {
        let mut home = b"HOME=".to_vec();
        home.extend(inside::home_of(i.uid));
        env.push(home);
    }
    hand_stdio_to(i.uid, i.gid);
    let fd_limit = fd_limit();
    for limit in &i.rlimits {
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: setrlimit with a struct on the stack.
        sys::check_int(unsafe { libc::setrlimit(limit.resource as _, &value) })
            .map_err(at(Step::Rlimit))?;
    }
    if i.no_new_privs {
        sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1).map_err(at(Step::NoNewPrivileges))?;
    } else {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN,
        // which the process holds only until it becomes the user.
        load_seccomp(i)?;
    }
    become_user(i, groups_denied)?;
    if let (Some(attr), Some(profile)) = (apparmor, &i.apparmor) {
        let mut text = b"exec ".to_vec();
        text.extend_from_slice(profile);
        sys::write_all(&attr, &text).map_err(at(Step::AppArmor))?;
    }
    let path =
        inside::find_command(&i.argv[0], &env).map_err(|detail| (Step::FindCommand, 0, detail))?;
    let argv = c_strings(&i.argv, "argv")?;
    let envp = c_strings(&env, "env")?;
    let argv_ptrs = pointers(&argv);
    let envp_ptrs = pointers(&envp);
    let mut exec_failed = Report::Failed {
        step: Step::Exec,
        errno: 0,
        detail: format!("{path:?}"),
    }
    .encode();
    default_signals();
    // The id change cleared the parent-death signal.
    stay_with_parent(parent)?;
    // Nothing but stdio and the report socket (close-on-exec) may reach
    // the command. Every handle above it was dropped already.
    sys::close_from(crate::REPORT_FD as u32 + 1, fd_limit).map_err(at(Step::CloseFds))?;
    if i.no_new_privs {
        // Last: the filter sees nothing of ours but execve.
        load_seccomp(i)?;
    }
    // SAFETY: NUL-terminated arrays of NUL-terminated strings that outlive
    // the call; it returns only on failure.
    unsafe { libc::execve(path.as_ptr(), argv_ptrs.as_ptr(), envp_ptrs.as_ptr()) };
    let errno = sys::errno();
    // The errno's place in the pre-encoded report: after the tag and step.
    exec_failed[5..9].copy_from_slice(&errno.to_ne_bytes());
    // SAFETY: a write of a live buffer, then _exit; nothing may allocate
    // under the filter.
    unsafe {
        libc::write(
            report.as_raw_fd(),
            exec_failed.as_ptr().cast(),
            exec_failed.len(),
        );
        libc::_exit(if errno == libc::ENOENT { 127 } else { 126 })
    }
}

/// The descriptor limit the process started with: none of ours is above.
fn fd_limit() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit into a struct on the stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } < 0 {
        return 1 << 20;
    }
    limit.rlim_cur.min(1 << 20) as u32
}

/// Dies with the relay: parent-death signal, then a check that the relay
/// has not already gone (a relay outside the process's PID namespace shows
/// as parent 0; once it is gone the parent is a reaper inside).
fn stay_with_parent(parent: libc::pid_t) -> Result<(), Failure> {
    sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong)
        .map_err(at(Step::ParentGone))?;
    // SAFETY: getppid takes no arguments.
    if unsafe { libc::getppid() } != parent {
        return Err((Step::ParentGone, libc::ESRCH, String::new()));
    }
    Ok(())
}

/// The container's session keyring rather than criusd's, as `runc exec`
/// joins the `_ses.<id>` keyring its init made; a kernel without keyrings
/// is no error (as in runc).
fn join_session_keyring(
    procfs: &Procfs,
    name: &[u8],
    selinux: Option<&[u8]>,
) -> Result<(), Failure> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let name =
        CString::new(name).map_err(|_| (Step::SessionKeyring, libc::EINVAL, "name".into()))?;
    if let Some(label) = selinux {
        procfs
            .write(c"thread-self/attr/keycreate", label)
            .map_err(at(Step::SessionKeyring))?;
    }
    // SAFETY: keyctl with a NUL-terminated name.
    let joined =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    let errno = sys::errno();
    if selinux.is_some()
        && let Ok(fd) = procfs.open_file(c"thread-self/attr/keycreate", libc::O_WRONLY)
    {
        // An empty write resets the label for keys made later.
        // SAFETY: a zero-length write.
        unsafe { libc::write(fd.as_raw_fd(), c"".as_ptr().cast(), 0) };
    }
    if joined < 0 && errno != libc::ENOSYS {
        return Err((Step::SessionKeyring, errno, String::new()));
    }
    Ok(())
}

/// A new terminal from the container's devpts made the controlling
/// terminal and stdio; its master end goes back to criusd.
fn open_terminal(report: &OwnedFd) -> Result<(), Failure> {
    let master = sys::open_at(libc::AT_FDCWD, c"/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY)
        .map_err(at(Step::Terminal))?;
    let unlock: libc::c_int = 0;
    // SAFETY: ioctls on the terminal we opened, with arguments of the
    // types they take.
    unsafe {
        sys::check_int(libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock))
            .map_err(at(Step::Terminal))?;
        let slave = sys::owned(libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY,
        ))
        .map_err(at(Step::Terminal))?;
        send_fd(report, &master, &Report::Terminal.encode()).map_err(at(Step::Terminal))?;
        drop(master);
        sys::check_int(libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0))
            .map_err(at(Step::Terminal))?;
        for fd in 0..3 {
            sys::check_int(libc::dup2(slave.as_raw_fd(), fd)).map_err(at(Step::Terminal))?;
        }
    }
    Ok(())
}

fn send_fd(socket: &OwnedFd, fd: &OwnedFd, bytes: &[u8]) -> Result<(), i32> {
    match crius_enter::scm::send(socket.as_fd(), bytes, &[fd.as_fd()]) {
        Ok(_) => Ok(()),
        Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// Gives stdio to the user, so that it can reopen them (`/dev/stdout`) as
/// runc allows; /dev/null stays as it is. Best effort, as in runc.
fn hand_stdio_to(uid: u32, gid: u32) {
    for fd in 0..3 {
        // SAFETY: fstat into a stack struct; fchown on our stdio.
        unsafe {
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

fn load_seccomp(i: &Instructions) -> Result<(), Failure> {
    let Some(seccomp) = &i.seccomp else {
        return Ok(());
    };
    let program: Vec<libc::sock_filter> = seccomp
        .program
        .iter()
        .map(|f| libc::sock_filter {
            code: f.code,
            jt: f.jt,
            jf: f.jf,
            k: f.k,
        })
        .collect();
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: the program outlives the call; the kernel copies it.
    sys::check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            seccomp.flags,
            &fprog as *const libc::sock_fprog,
        )
    })
    .map(drop)
    .map_err(at(Step::Seccomp))
}

/// The working dir, the bounding set, then the user's groups and ids with
/// capabilities kept, the working dir checked, then the capability sets.
fn become_user(i: &Instructions, groups_denied: bool) -> Result<(), Failure> {
    let caps = i.caps;
    let cwd = CString::new(i.cwd.clone())
        .map_err(|_| (Step::WorkingDir, libc::EINVAL, "NUL in cwd".into()))?;
    // As root first, so a working dir the user cannot reach still is its
    // cwd (as in runc); again as the user if root may not.
    // SAFETY: chdir with a NUL-terminated path.
    let early = sys::check_int(unsafe { libc::chdir(cwd.as_ptr()) });
    if let Err(e) = early
        && !matches!(e, libc::EACCES | libc::EPERM)
    {
        return Err((Step::WorkingDir, e, format!("{cwd:?}")));
    }
    for cap in 0..=i.last_cap.min(63) {
        if caps.bounding & (1 << cap) == 0 {
            match sys::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong) {
                Ok(()) | Err(libc::EINVAL) => {}
                Err(e) => return Err((Step::BoundingSet, e, String::new())),
            }
        }
    }
    sys::prctl(libc::PR_SET_KEEPCAPS, 1).map_err(at(Step::KeepCapabilities))?;
    // Raw setres*id calls: they change this (only) thread, without glibc's
    // broadcast to threads.
    // SAFETY (all three): system calls with integer or live-slice arguments.
    unsafe {
        if !groups_denied {
            sys::check(libc::syscall(
                libc::SYS_setgroups,
                i.groups.len(),
                i.groups.as_ptr(),
            ))
            .map_err(at(Step::Groups))?;
        }
        sys::check(libc::syscall(libc::SYS_setresgid, i.gid, i.gid, i.gid))
            .map_err(at(Step::Gid))?;
        sys::check(libc::syscall(libc::SYS_setresuid, i.uid, i.uid, i.uid))
            .map_err(at(Step::Uid))?;
    }
    if early.is_err() {
        // SAFETY: chdir with a NUL-terminated path.
        sys::check_int(unsafe { libc::chdir(cwd.as_ptr()) })
            .map_err(|e| (Step::WorkingDir, e, format!("{cwd:?}")))?;
    }
    verify_cwd()?;
    sys::prctl(libc::PR_SET_KEEPCAPS, 0).map_err(at(Step::KeepCapabilities))?;
    set_capabilities(i)?;
    if let Some(mask) = i.umask {
        // SAFETY: umask takes a mode.
        unsafe { libc::umask(mask as libc::mode_t) };
    }
    Ok(())
}

/// The working dir must be inside the container's root (CVE-2024-21626,
/// as runc's verifyCwd): the kernel's getcwd names a directory outside the
/// root "(unreachable)/...", and fails for one that was removed.
fn verify_cwd() -> Result<(), Failure> {
    let mut buffer = vec![0u8; libc::PATH_MAX as usize + 1];
    // SAFETY: getcwd into a buffer of the size given.
    let n = unsafe { libc::syscall(libc::SYS_getcwd, buffer.as_mut_ptr(), buffer.len()) };
    if n < 0 {
        return Err((
            Step::WorkingDirOutside,
            sys::errno(),
            "the working directory cannot be named".into(),
        ));
    }
    let cwd = &buffer[..(n as usize).saturating_sub(1)];
    if cwd.first() != Some(&b'/') {
        return Err((
            Step::WorkingDirOutside,
            0,
            format!(
                "the working directory {:?} is outside the container's root",
                String::from_utf8_lossy(cwd)
            ),
        ));
    }
    Ok(())
}

fn set_capabilities(i: &Instructions) -> Result<(), Failure> {
    let caps = i.caps;
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
    // SAFETY: capset with a header and two data structs, as the kernel
    // expects for version 3.
    sys::check(unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) })
        .map_err(at(Step::Capabilities))?;
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    for cap in 0..=i.last_cap.min(63) {
        if caps.ambient & (1 << cap) != 0 {
            // SAFETY: prctl with integer arguments.
            sys::check_int(unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    cap as libc::c_ulong,
                    0,
                    0,
                )
            })
            .map_err(at(Step::AmbientCapabilities))?;
        }
    }
    Ok(())
}

/// Signals as a new program expects them: none blocked, none ignored
/// (Rust's runtime ignores SIGPIPE, and ignoring survives execve).
fn default_signals() {
    // SAFETY: sigset and signal calls with valid arguments; an error (for
    // SIGKILL, SIGSTOP or libc's own signals) changes nothing.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        for signal in 1..=libc::SIGRTMAX() {
            libc::signal(signal, libc::SIG_DFL);
        }
    }
}

fn c_strings(items: &[Vec<u8>], what: &str) -> Result<Vec<CString>, Failure> {
    items
        .iter()
        .map(|item| {
            CString::new(item.clone())
                .map_err(|_| (Step::Exec, libc::EINVAL, format!("NUL in {what}")))
        })
        .collect()
}

fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
    strings
        .iter()
        .map(|s| s.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect()
}
