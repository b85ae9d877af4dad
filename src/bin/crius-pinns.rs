//! crius-pinns: creates a pod's namespaces and pins them.
//!
//!   crius-pinns --dir DIR [--net] [--ipc] [--uts] [--hostname NAME] [--sysctl KEY=VALUE]...
//!               [--pid-pause PAUSE]
//!
//! Unshares the requested namespaces, sets the hostname (UTS), the sysctls
//! (inside the new namespaces) and brings `lo` up (network), then bind-mounts
//! /proc/self/ns/{net,ipc,uts} onto DIR/{net,ipc,uts} and exits. The bind
//! mounts keep the namespaces alive with no process in them. With
//! `--pid-pause`, it also unshares a PID namespace and forks PAUSE into it as
//! PID 1 (in the pod's other namespaces, in a session of its own), writes its
//! host PID to DIR/pause.pid and pins DIR/pid; a PID namespace lives only as
//! long as its PID 1. criusd runs this
//! as a separate, single-threaded process because unshare(2) of these
//! namespaces must not happen in the daemon's own threads.

use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

struct Args {
    dir: PathBuf,
    namespaces: Vec<(&'static str, CloneFlags)>,
    hostname: Option<String>,
    sysctls: Vec<(String, String)>,
    pause: Option<PathBuf>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        dir: PathBuf::new(),
        namespaces: Vec::new(),
        hostname: None,
        sysctls: Vec::new(),
        pause: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--dir" => args.dir = it.next().ok_or("--dir needs a value")?.into(),
            "--net" => args.namespaces.push(("net", CloneFlags::CLONE_NEWNET)),
            "--ipc" => args.namespaces.push(("ipc", CloneFlags::CLONE_NEWIPC)),
            "--uts" => args.namespaces.push(("uts", CloneFlags::CLONE_NEWUTS)),
            "--hostname" => args.hostname = Some(it.next().ok_or("--hostname needs a value")?),
            "--pid-pause" => args.pause = Some(it.next().ok_or("--pid-pause needs a path")?.into()),
            "--sysctl" => {
                let kv = it.next().ok_or("--sysctl needs KEY=VALUE")?;
                let (k, v) = kv
                    .split_once('=')
                    .ok_or(format!("--sysctl {kv:?} is not KEY=VALUE"))?;
                args.sysctls.push((k.to_string(), v.to_string()));
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if args.dir.as_os_str().is_empty() {
        return Err("--dir is required".into());
    }
    Ok(args)
}

fn run(args: Args) -> Result<(), String> {
    let flags = args
        .namespaces
        .iter()
        .fold(CloneFlags::empty(), |acc, (_, f)| acc | *f);
    unshare(flags).map_err(|e| format!("unshare: {e}"))?;
    if let Some(name) = &args.hostname {
        nix::unistd::sethostname(name).map_err(|e| format!("sethostname {name:?}: {e}"))?;
    }
    for (key, value) in &args.sysctls {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).map_err(|e| format!("sysctl {key}={value}: {e}"))?;
    }
    if args.namespaces.iter().any(|(n, _)| *n == "net") {
        loopback_up()?;
    }
    for (name, _) in &args.namespaces {
        pin(&format!("/proc/self/ns/{name}"), &args.dir.join(name))?;
    }
    if let Some(pause) = &args.pause {
        start_pause(&args.dir, pause)?;
    }
    Ok(())
}

/// Forks PAUSE as PID 1 of a new PID namespace and pins that namespace.
fn start_pause(dir: &Path, pause: &Path) -> Result<(), String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let program = CString::new(pause.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let devnull = CString::new("/dev/null").expect("static");
    unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare PID namespace: {e}"))?;
    // SAFETY: this process is single-threaded; the child only calls
    // async-signal-safe functions before execv.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => unsafe {
            libc::setsid();
            let fd = libc::open(devnull.as_ptr(), libc::O_RDWR);
            if fd >= 0 {
                libc::dup2(fd, 0);
                libc::dup2(fd, 1);
                libc::dup2(fd, 2);
            }
            let argv = [program.as_ptr(), std::ptr::null()];
            libc::execv(program.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        },
        nix::unistd::ForkResult::Parent { child } => {
            std::fs::write(dir.join("pause.pid"), child.to_string())
                .map_err(|e| format!("pause.pid: {e}"))?;
            pin(&format!("/proc/{child}/ns/pid"), &dir.join("pid"))
        }
    }
}

/// Bind-mounts a namespace file onto `target`, which keeps the namespace
/// alive after its processes are gone.
fn pin(source: &str, target: &Path) -> Result<(), String> {
    std::fs::File::create(target).map_err(|e| format!("{}: {e}", target.display()))?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| format!("pinning {source} at {}: {e}", target.display()))
}

/// `ip link set lo up`, with an ioctl on a throwaway socket.
fn loopback_up() -> Result<(), String> {
    // SAFETY: plain syscalls on a socket we own, with a zeroed ifreq.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(format!("socket: {}", std::io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut result = libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(fd, libc::SIOCSIFFLAGS, &req);
        }
        let error = std::io::Error::last_os_error();
        libc::close(fd);
        if result != 0 {
            return Err(format!("bringing lo up: {error}"));
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius-pinns: {e}");
            ExitCode::FAILURE
        }
    }
}
