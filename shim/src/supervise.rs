//! The shim's life after `create`: one poll loop over the container's output,
//! the signalfd (SIGCHLD) and the control socket. Single-threaded, so the
//! shim costs one small process per container.

use crate::ContainerIo;
use crate::sys;
use crius_shim::cri_log::{CriLog, Stream};
use crius_shim::protocol::{Command, EXIT_FILE, ExitRecord, ShimConfig, oom_kills, write_atomic};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long output is still collected after init exits: descendants in a
/// shared PID namespace may hold the pipes open forever.
const DRAIN: Duration = Duration::from_millis(500);

pub struct Supervisor {
    dir: PathBuf,
    config: ShimConfig,
    init_pid: i32,
    log: Option<CriLog>,
    outputs: Vec<(OwnedFd, Stream)>,
    /// Kept open so that a later attach can feed the container's stdin.
    _stdin: Option<OwnedFd>,
    signals: OwnedFd,
    control: UnixListener,
    clients: Vec<(UnixStream, Vec<u8>)>,
    /// Wait status and time of init's exit.
    exited: Option<(libc::c_int, i64, Instant)>,
}

impl Supervisor {
    pub fn new(
        dir: &Path,
        config: ShimConfig,
        init_pid: i32,
        io: ContainerIo,
        signals: OwnedFd,
    ) -> std::io::Result<Supervisor> {
        let log = match &config.log_path {
            Some(path) => Some(CriLog::open(path)?),
            None => None,
        };
        let (outputs, stdin) = match io {
            ContainerIo::Pipes {
                stdout,
                stderr,
                stdin,
            } => (
                vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)],
                stdin,
            ),
            ContainerIo::Terminal { master } => (vec![(master, Stream::Stdout)], None),
        };
        for (fd, _) in &outputs {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        let path = &config.control_socket;
        let _ = std::fs::remove_file(path);
        let control = UnixListener::bind(path)?;
        control.set_nonblocking(true)?;
        Ok(Supervisor {
            dir: dir.to_path_buf(),
            config,
            init_pid,
            log,
            outputs,
            _stdin: stdin,
            signals,
            control,
            clients: Vec::new(),
            exited: None,
        })
    }

    pub fn run(mut self) {
        loop {
            let mut fds = vec![
                pollfd(self.signals.as_raw_fd()),
                pollfd(self.control.as_raw_fd()),
            ];
            fds.extend(self.outputs.iter().map(|(fd, _)| pollfd(fd.as_raw_fd())));
            fds.extend(self.clients.iter().map(|(s, _)| pollfd(s.as_raw_fd())));
            let timeout = match &self.exited {
                Some((_, _, at)) => DRAIN.saturating_sub(at.elapsed()).as_millis() as i32,
                None => -1,
            };
            if let Err(e) = sys::poll(&mut fds, timeout) {
                eprintln!("crius-shim: poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            // Readiness by position, taken before any handler changes the
            // lists (an accept adds a client that was not polled).
            let ready: Vec<bool> = fds.iter().map(|f| f.revents != 0).collect();
            let outputs_ready = &ready[2..2 + self.outputs.len()];
            let clients_ready = &ready[2 + self.outputs.len()..];
            self.read_outputs(outputs_ready);
            self.serve_clients(clients_ready);
            if ready[0] {
                self.reap();
            }
            if ready[1] {
                self.accept();
            }
            if let Some((_, _, at)) = &self.exited
                && (self.outputs.is_empty() || at.elapsed() >= DRAIN)
            {
                break;
            }
        }
        self.finish();
    }

    fn reap(&mut self) {
        sys::drain_signals(&self.signals);
        while let Some((pid, status)) = sys::reap_any() {
            if pid == self.init_pid && self.exited.is_none() {
                self.exited = Some((status, sys::now_nanos(), Instant::now()));
            }
        }
    }

    fn read_outputs(&mut self, ready: &[bool]) {
        let mut buf = [0u8; 32 * 1024];
        let mut closed = Vec::new();
        for (i, (fd, stream)) in self.outputs.iter().enumerate() {
            if !ready[i] {
                continue;
            }
            loop {
                match sys::read(fd.as_raw_fd(), &mut buf) {
                    Ok(None) => break,
                    // EOF, or EIO from a terminal whose other end is closed.
                    Ok(Some(0)) | Err(_) => {
                        closed.push(i);
                        break;
                    }
                    Ok(Some(n)) => {
                        if let Some(log) = &mut self.log
                            && let Err(e) = log.write(*stream, &buf[..n], sys::now_nanos())
                        {
                            eprintln!("crius-shim: writing the container log: {e}");
                        }
                    }
                }
            }
        }
        for i in closed.into_iter().rev() {
            let (_, stream) = self.outputs.remove(i);
            if let Some(log) = &mut self.log {
                let _ = log.finish(stream, sys::now_nanos());
            }
        }
    }

    fn accept(&mut self) {
        while let Ok((stream, _)) = self.control.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push((stream, Vec::new()));
            }
        }
    }

    /// Reads command lines; each client sends one command and gets one
    /// answer.
    fn serve_clients(&mut self, ready: &[bool]) {
        let mut done = Vec::new();
        for (i, _) in ready.iter().enumerate().filter(|(_, r)| **r) {
            let mut buf = [0u8; 256];
            let (stream, line) = &mut self.clients[i];
            match stream.read(&mut buf) {
                Ok(0) => done.push(i),
                Ok(n) => line.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                Err(_) => done.push(i),
            }
            let line = &self.clients[i].1;
            if line.contains(&b'\n') || line.len() > 200 {
                let text = String::from_utf8_lossy(line).into_owned();
                let answer = self.command(&text);
                let _ = self.clients[i].0.write_all(answer.as_bytes());
                done.push(i);
            }
        }
        done.sort_unstable();
        done.dedup();
        for i in done.into_iter().rev() {
            self.clients.remove(i);
        }
    }

    fn command(&mut self, line: &str) -> String {
        match Command::parse(line) {
            Some(Command::Reopen) => match &mut self.log {
                Some(log) => match log.reopen() {
                    Ok(()) => "ok\n".into(),
                    Err(e) => format!("error: reopening the log: {e}\n"),
                },
                None => "ok\n".into(),
            },
            None => format!("error: unknown command {:?}\n", line.trim()),
        }
    }

    /// Flushes the log and writes the exit record, the last thing the shim
    /// does.
    fn finish(mut self) {
        if let Some(log) = &mut self.log {
            let now = sys::now_nanos();
            let _ = log.finish(Stream::Stdout, now);
            let _ = log.finish(Stream::Stderr, now);
        }
        let (status, finished_at, _) = self.exited.expect("finish after exit");
        let (exit_code, signal) = sys::decode_status(status);
        let oom_killed = self
            .config
            .oom_file
            .as_deref()
            .and_then(oom_kills)
            .is_some_and(|n| n > 0);
        let record = ExitRecord {
            exit_code,
            signal,
            finished_at,
            oom_killed,
        };
        let bytes = serde_json::to_vec(&record).expect("exit record encodes");
        if let Err(e) = write_atomic(&self.dir.join(EXIT_FILE), &bytes) {
            eprintln!("crius-shim: writing {EXIT_FILE}: {e}");
        }
        let _ = std::fs::remove_file(&self.config.control_socket);
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}
