//! crius-pause: PID 1 of a pod-wide PID namespace. It reaps the orphans that
//! the namespace's processes leave, and exits on SIGTERM or SIGINT; killing it
//! ends the namespace and every process in it. `crius-pause --version`
//! prints its version.

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use nix::sys::wait::{WaitPidFlag, waitpid};

extern "C" fn ignore(_: libc::c_int) {}

fn main() {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == "--version")
    {
        println!("crius-pause {}", crius::VERSION);
        return;
    }
    // The kernel gives a namespace's PID 1 only the signals it has handlers
    // for, so these get a no-op one; all are blocked and taken synchronously
    // below, so the handler never runs.
    let handler = SigAction::new(
        SigHandler::Handler(ignore),
        SaFlags::empty(),
        SigSet::empty(),
    );
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGCHLD] {
        // SAFETY: installing a handler that does nothing.
        if unsafe { sigaction(signal, &handler) }.is_err() {
            std::process::exit(1);
        }
    }
    let all = SigSet::all();
    if all.thread_block().is_err() {
        std::process::exit(1);
    }
    loop {
        match all.wait() {
            Ok(Signal::SIGCHLD) => {
                while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    if status == nix::sys::wait::WaitStatus::StillAlive {
                        break;
                    }
                }
            }
            Ok(Signal::SIGTERM | Signal::SIGINT) => std::process::exit(0),
            _ => {}
        }
    }
}
