//! crius-pinns: creates a pod's namespaces and pins them.
//!
//!   crius-pinns --version
//!   crius-pinns --dir DIR [--net] [--ipc] [--uts] [--hostname NAME] [--sysctl KEY=VALUE]...
//!               [--pid-pause PAUSE] [--uid-map C:H:L,... --gid-map C:H:L,...]
//!
//! Unshares the requested namespaces, sets the hostname (UTS), the sysctls
//! (inside the new namespaces) and brings `lo` up (network), then bind-mounts
//! /proc/self/ns/{net,ipc,uts} onto DIR/{net,ipc,uts} and exits. The bind
//! mounts keep the namespaces alive with no process in them. With
//! `--pid-pause`, it also unshares a PID namespace and forks PAUSE into it as
//! PID 1 (in the pod's other namespaces, in a session of its own), writes its
//! host PID to DIR/pause.pid and pins DIR/pid; a PID namespace lives only as
//! long as its PID 1. With `--uid-map`/`--gid-map` the namespaces are owned by
//! a new user namespace with those maps, pinned at DIR/user. criusd runs this
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
    /// uid_map and gid_map contents ("inside outside length" lines): the
    /// pod gets a user namespace owning its other namespaces.
    uid_map: Option<String>,
    gid_map: Option<String>,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        dir: PathBuf::new(),
        namespaces: Vec::new(),
        hostname: None,
        sysctls: Vec::new(),
        pause: None,
        uid_map: None,
        gid_map: None,
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
            "--uid-map" => {
                args.uid_map = Some(map_lines(&it.next().ok_or("--uid-map needs C:H:L,...")?)?)
            }
            "--gid-map" => {
                args.gid_map = Some(map_lines(&it.next().ok_or("--gid-map needs C:H:L,...")?)?)
            }
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

/// "0:100000:65536,..." as uid_map lines.
fn map_lines(text: &str) -> Result<String, String> {
    let mut out = String::new();
    for part in text.split(',') {
        let fields: Vec<u32> = part
            .split(':')
            .map(|f| f.parse::<u32>())
            .collect::<Result<_, _>>()
            .map_err(|_| format!("bad id mapping {part:?}"))?;
        let [inside, outside, length] = fields[..] else {
            return Err(format!(
                "bad id mapping {part:?}: want inside:outside:length"
            ));
        };
        out.push_str(&format!("{inside} {outside} {length}\n"));
    }
    Ok(out)
}

fn run(args: Args) -> Result<(), String> {
    if args.uid_map.is_some() {
        return run_in_user_namespace(&args);
    }
    set_up(&args)?;
    for (name, _) in &args.namespaces {
        pin(&format!("/proc/self/ns/{name}"), &args.dir.join(name))?;
    }
    if let Some(pause) = &args.pause {
        unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("unshare PID namespace: {e}"))?;
        let pid = fork_pause(&args.dir, pause)?;
        pin(&format!("/proc/{pid}/ns/pid"), &args.dir.join("pid"))?;
    }
    Ok(())
}

/// Unshares the namespaces, then sets the hostname, sysctls and `lo` inside.
fn set_up(args: &Args) -> Result<(), String> {
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
    Ok(())
}

/// The pod's namespaces owned by a new user namespace. A child unshares the
/// user namespace; this process (root of the node) writes its id maps; the
/// child then makes the other namespaces, which the user namespace owns, and
/// waits while this process pins them (a process inside the user namespace
/// may not mount in the node's mount namespace), then is killed.
fn run_in_user_namespace(args: &Args) -> Result<(), String> {
    use std::io::{Read, Write};
    let (mut from_child, child_out) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    let (mut child_in, mut to_child) = std::io::pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: single-threaded; the child runs plain Rust code and exits.
    match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
        nix::unistd::ForkResult::Child => {
            drop(from_child);
            drop(to_child);
            let mut out = child_out;
            let result = (|| -> Result<(), String> {
                unshare(CloneFlags::CLONE_NEWUSER)
                    .map_err(|e| format!("unshare user namespace: {e}"))?;
                out.write_all(b"u").map_err(|e| e.to_string())?;
                let mut byte = [0u8; 1];
                child_in.read_exact(&mut byte).map_err(|e| e.to_string())?;
                set_up(args)?;
                if let Some(pause) = &args.pause {
                    unshare(CloneFlags::CLONE_NEWPID)
                        .map_err(|e| format!("unshare PID namespace: {e}"))?;
                    fork_pause(&args.dir, pause)?;
                }
                Ok(())
            })();
            let report = match result {
                Ok(()) => "d".to_string(),
                Err(e) => format!("e{e}"),
            };
            let _ = out.write_all(report.as_bytes());
            drop(out);
            // Stay until pinned (the parent kills us).
            if report == "d" {
                loop {
                    nix::unistd::pause();
                }
            }
            std::process::exit(1);
        }
        nix::unistd::ForkResult::Parent { child } => {
            drop(child_out);
            drop(child_in);
            let finish = |e: String| {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                let _ = nix::sys::wait::waitpid(child, None);
                e
            };
            let mut byte = [0u8; 1];
            from_child
                .read_exact(&mut byte)
                .map_err(|e| finish(format!("user namespace child: {e}")))?;
            if byte[0] != b'u' {
                let mut rest = String::new();
                let _ = from_child.read_to_string(&mut rest);
                return Err(finish(rest));
            }
            for (file, map) in [("uid_map", &args.uid_map), ("gid_map", &args.gid_map)] {
                let map = map.as_deref().unwrap_or_default();
                std::fs::write(format!("/proc/{child}/{file}"), map)
                    .map_err(|e| finish(format!("writing {file} {map:?}: {e}")))?;
            }
            to_child
                .write_all(b"m")
                .map_err(|e| finish(e.to_string()))?;
            let mut report = String::new();
            from_child
                .read_to_string(&mut report)
                .map_err(|e| finish(e.to_string()))?;
            if report != "d" {
                return Err(finish(report.trim_start_matches('e').to_string()));
            }
            let pinned = (|| {
                pin(&format!("/proc/{child}/ns/user"), &args.dir.join("user"))?;
                for (name, _) in &args.namespaces {
                    pin(&format!("/proc/{child}/ns/{name}"), &args.dir.join(name))?;
                }
                if args.pause.is_some() {
                    let pid = std::fs::read_to_string(args.dir.join("pause.pid"))
                        .map_err(|e| format!("pause.pid: {e}"))?;
                    pin(
                        &format!("/proc/{}/ns/pid", pid.trim()),
                        &args.dir.join("pid"),
                    )?;
                }
                Ok(())
            })();
            finish(String::new());
            pinned
        }
    }
}

/// Forks PAUSE as PID 1 of the PID namespace this process unshared (for its
/// children) and records its host PID in `dir/pause.pid`.
fn fork_pause(dir: &Path, pause: &Path) -> Result<i32, String> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let program = CString::new(pause.as_os_str().as_bytes()).map_err(|e| e.to_string())?;
    let devnull = CString::new("/dev/null").expect("static");
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
            Ok(child.as_raw())
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

/// `ip link set lo up`, through netlink in the new network namespace.
fn loopback_up() -> Result<(), String> {
    use crius::network::netlink::Netlink;
    let mut nl = Netlink::open().map_err(|e| format!("netlink: {e}"))?;
    let lo = nl
        .link_index("lo")
        .map_err(|e| format!("finding lo: {e}"))?
        .ok_or("the new network namespace has no lo")?;
    nl.set_up(lo, None)
        .map_err(|e| format!("bringing lo up: {e}"))
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some("--version") {
        println!("crius-pinns {}", crius::VERSION);
        return ExitCode::SUCCESS;
    }
    match parse().and_then(run) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crius-pinns: {e}");
            ExitCode::FAILURE
        }
    }
}
