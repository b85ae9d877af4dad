//! The shim's life after `create`: one poll loop over the container's output,
//! the signalfd (SIGCHLD), the control socket and attached clients.
//! Single-threaded, so the shim costs one small process per container.

use crate::ContainerIo;
use crate::sys;
use crius_shim::attach;
use crius_shim::cri_log::{CriLog, Stream};
use crius_shim::protocol::{
    Command, EXIT_FILE, ExitRecord, ShimConfig, oom_kills, oom_kills_in, write_atomic,
};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
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
    /// The container's stdin (a pipe, or a terminal's master end), kept for
    /// attach; closed for good with `stdin_once` when an attach with input
    /// ends.
    stdin: Option<OwnedFd>,
    /// Input from attached clients not yet taken by the container.
    stdin_pending: Vec<u8>,
    /// `stdin_once`'s close is due: stdin closes once `stdin_pending` is
    /// written, so input sent just before the end is not lost.
    stdin_closing: bool,
    /// The terminal's master end, for resizes.
    terminal: Option<OwnedFd>,
    signals: OwnedFd,
    control: UnixListener,
    clients: Vec<(UnixStream, Vec<u8>)>,
    attached: Vec<Attached>,
    /// Wait status and time of init's exit.
    exited: Option<(libc::c_int, i64, Instant)>,
    /// The container's cgroup v2 `memory.events`, while it exists.
    oom: Option<OomWatch>,
    /// OOM kills counted by `oom` before its cgroup went away.
    oom_kills: u64,
    /// Whether the cgroup was gone when init's exit was reaped.
    oom_lost: bool,
    /// The parent cgroup's `memory.events` and its OOM kills when the
    /// container's own count was last read: v2 counts a child's kills in
    /// its parents too.
    parent_oom: Option<(OomWatch, u64)>,
}

/// cgroup v2's `memory.events`, watched while the container runs: with the
/// systemd driver the container's scope (and so the file) is gone soon after
/// its last process, often before the shim has reaped init, so the count is
/// taken each time the kernel signals a change (POLLPRI), not only at exit.
struct OomWatch(File);

impl OomWatch {
    fn open(path: &Path) -> Option<OomWatch> {
        if path.file_name()? != "memory.events" {
            return None;
        }
        File::open(path).ok().map(OomWatch)
    }

    /// The current count (reading also acknowledges the change); an error
    /// once the cgroup is gone, after which the file polls ready for ever.
    fn read(&self) -> std::io::Result<Option<u64>> {
        let mut buf = [0u8; 512];
        let n = self.0.read_at(&mut buf, 0)?;
        Ok(oom_kills_in(&String::from_utf8_lossy(&buf[..n])))
    }
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
        let (outputs, stdin, terminal) = match io {
            ContainerIo::Pipes {
                stdout,
                stderr,
                stdin,
            } => (
                vec![(stdout, Stream::Stdout), (stderr, Stream::Stderr)],
                stdin,
                None,
            ),
            ContainerIo::Terminal { master } => {
                let input = if config.stdin {
                    Some(master.try_clone()?)
                } else {
                    None
                };
                let resize = master.try_clone()?;
                (vec![(master, Stream::Stdout)], input, Some(resize))
            }
        };
        for (fd, _) in &outputs {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        if let Some(fd) = &stdin {
            sys::set_nonblocking(fd.as_raw_fd())?;
        }
        let path = &config.control_socket;
        let _ = std::fs::remove_file(path);
        let control = UnixListener::bind(path)?;
        control.set_nonblocking(true)?;
        let oom = config.oom_file.as_deref().and_then(OomWatch::open);
        let parent_oom = config
            .oom_file
            .as_deref()
            .filter(|_| oom.is_some())
            .and_then(|f| OomWatch::open(&f.parent()?.parent()?.join("memory.events")))
            .and_then(|w| Some((w.read().ok()??, w)))
            .map(|(n, w)| (w, n));
        Ok(Supervisor {
            dir: dir.to_path_buf(),
            config,
            init_pid,
            log,
            outputs,
            stdin,
            stdin_pending: Vec::new(),
            stdin_closing: false,
            terminal,
            signals,
            control,
            clients: Vec::new(),
            attached: Vec::new(),
            exited: None,
            oom,
            oom_kills: 0,
            oom_lost: false,
            parent_oom,
        })
    }

    pub fn run(mut self) {
        loop {
            let mut fds = vec![
                pollfd(self.signals.as_raw_fd(), libc::POLLIN),
                pollfd(self.control.as_raw_fd(), libc::POLLIN),
            ];
            fds.extend(
                self.outputs
                    .iter()
                    .map(|(fd, _)| pollfd(fd.as_raw_fd(), libc::POLLIN)),
            );
            fds.extend(
                self.clients
                    .iter()
                    .map(|(s, _)| pollfd(s.as_raw_fd(), libc::POLLIN)),
            );
            // Input waiting for the container: take no more until it goes.
            let input_blocked = !self.stdin_pending.is_empty();
            fds.extend(self.attached.iter().map(|a| {
                let mut events = if input_blocked { 0 } else { libc::POLLIN };
                if !a.backlog.is_empty() {
                    events |= libc::POLLOUT;
                }
                pollfd(a.stream.as_raw_fd(), events)
            }));
            if let (true, Some(stdin)) = (input_blocked, &self.stdin) {
                fds.push(pollfd(stdin.as_raw_fd(), libc::POLLOUT));
            }
            let oom_at = self.oom.as_ref().map(|w| {
                fds.push(pollfd(w.0.as_raw_fd(), libc::POLLPRI));
                fds.len() - 1
            });
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
            let (outputs, clients, attached) =
                (self.outputs.len(), self.clients.len(), self.attached.len());
            let outputs_ready = ready[2..2 + outputs].to_vec();
            let clients_ready = ready[2 + outputs..2 + outputs + clients].to_vec();
            let attached_ready =
                ready[2 + outputs + clients..2 + outputs + clients + attached].to_vec();
            self.read_outputs(&outputs_ready);
            self.serve_attached(&attached_ready);
            self.feed_stdin();
            self.serve_clients(&clients_ready);
            if let Some(at) = oom_at
                && ready[at]
            {
                self.read_oom();
            }
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
                self.read_oom();
                // The count at exit includes any kill of init: gone already,
                // it is lost.
                self.oom_lost = self.oom.is_none();
            }
        }
    }

    /// Updates the OOM count from the watched file, dropping the watch once
    /// the cgroup is gone.
    fn read_oom(&mut self) {
        match self.oom.as_ref().map(OomWatch::read) {
            Some(Ok(kills)) => {
                self.oom_kills = self.oom_kills.max(kills.unwrap_or(0));
                // Kills the parent counted so far are not this container's
                // unless its own count says so.
                if let Some((watch, before)) = &mut self.parent_oom
                    && let Ok(Some(n)) = watch.read()
                {
                    *before = n;
                }
            }
            Some(Err(_)) => self.oom = None,
            None => {}
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
                        let kind = match stream {
                            Stream::Stdout => attach::STDOUT,
                            Stream::Stderr => attach::STDERR,
                        };
                        for client in &mut self.attached {
                            client.send(kind, &buf[..n]);
                        }
                    }
                }
            }
        }
        self.attached.retain(|a| !a.gone);
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
    /// answer, except `attach`, after which the connection carries frames.
    fn serve_clients(&mut self, ready: &[bool]) {
        let mut done = Vec::new();
        let mut attaching = Vec::new();
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
            if let Some(end) = line.iter().position(|&b| b == b'\n') {
                let text = String::from_utf8_lossy(&line[..end]).into_owned();
                if let Some(Command::Attach { stdin }) = Command::parse(&text) {
                    attaching.push((i, stdin, end + 1));
                } else {
                    let answer = self.command(&text);
                    let _ = self.clients[i].0.write_all(answer.as_bytes());
                }
                done.push(i);
            } else if line.len() > 200 {
                let _ = self.clients[i].0.write_all(b"error: command too long\n");
                done.push(i);
            }
        }
        for (i, stdin, used) in &attaching {
            let (stream, line) = &self.clients[*i];
            let Ok(stream) = stream.try_clone() else {
                continue;
            };
            if *stdin && (self.stdin.is_none() || self.stdin_closing) {
                let _ = (&stream).write_all(b"error: the container has no stdin to attach\n");
                continue;
            }
            let mut client = Attached {
                stream,
                backlog: b"ok\n".to_vec(),
                input: line[*used..].to_vec(),
                stdin: *stdin,
                gone: false,
            };
            client.flush();
            self.attached.push(client);
        }
        done.sort_unstable();
        done.dedup();
        for i in done.into_iter().rev() {
            self.clients.remove(i);
        }
    }

    /// Reads attached clients' frames: input for the container, resizes.
    fn serve_attached(&mut self, ready: &[bool]) {
        for (i, client) in self.attached.iter_mut().enumerate() {
            if !ready.get(i).copied().unwrap_or(false) {
                continue;
            }
            client.flush();
            let mut buf = [0u8; 32 * 1024];
            match client.stream.read(&mut buf) {
                Ok(0) => client.gone = true,
                Ok(n) => client.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => client.gone = true,
            }
            let mut used = 0;
            loop {
                match attach::decode(&client.input[used..]) {
                    Ok(Some((kind, range, n))) => {
                        let data = &client.input[used..][range];
                        match kind {
                            attach::STDIN if client.stdin => {
                                self.stdin_pending.extend_from_slice(data)
                            }
                            attach::STDIN_CLOSE if client.stdin => {
                                client.stdin = false;
                                if self.config.stdin_once {
                                    self.stdin_closing = true;
                                }
                            }
                            attach::RESIZE => {
                                if let (Some(term), Some((w, h))) =
                                    (&self.terminal, attach::parse_resize(data))
                                {
                                    let _ = sys::set_window_size(term.as_raw_fd(), w, h);
                                }
                            }
                            _ => {}
                        }
                        used += n;
                    }
                    Ok(None) => break,
                    Err(_) => {
                        client.gone = true;
                        break;
                    }
                }
            }
            client.input.drain(..used);
            // stdin_once: the first attach with input to end closes it.
            if client.gone && client.stdin && self.config.stdin_once {
                self.stdin_closing = true;
            }
        }
        self.attached.retain(|a| !a.gone);
        self.close_stdin_if_due();
    }

    /// Closes stdin for `stdin_once` once what was sent before has gone in.
    fn close_stdin_if_due(&mut self) {
        if self.stdin_closing && self.stdin_pending.is_empty() {
            self.stdin = None;
        }
    }

    /// Writes attached input to the container's stdin, as much as it takes.
    fn feed_stdin(&mut self) {
        let Some(stdin) = &self.stdin else {
            self.stdin_pending.clear();
            return;
        };
        while !self.stdin_pending.is_empty() {
            // SAFETY: write from a valid buffer to an fd we own.
            let n = unsafe {
                libc::write(
                    stdin.as_raw_fd(),
                    self.stdin_pending.as_ptr().cast(),
                    self.stdin_pending.len(),
                )
            };
            if n > 0 {
                self.stdin_pending.drain(..n as usize);
                if self.stdin_pending.is_empty() {
                    self.close_stdin_if_due();
                    return;
                }
                continue;
            }
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock {
                return;
            }
            // The container closed its stdin: what it would not take is dropped.
            self.stdin_pending.clear();
            self.stdin = None;
            return;
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
            Some(Command::Attach { .. }) => "error: attach is not a one-line command\n".into(),
            None => format!("error: unknown command {:?}\n", line.trim()),
        }
    }

    /// The pod slice's OOM kills: when the container's own count was last
    /// read, and now.
    fn parent_kills(&self) -> Option<(u64, u64)> {
        let (watch, before) = self.parent_oom.as_ref()?;
        Some((*before, watch.read().ok()??))
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
        self.read_oom();
        let own = self.oom_kills.max(
            self.config
                .oom_file
                .as_deref()
                .and_then(oom_kills)
                .unwrap_or(0),
        );
        let oom_killed = oom_killed(own, self.oom_lost, signal, self.parent_kills());
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

/// Whether init was OOM-killed: its cgroup counted a kill; or, with the
/// systemd driver, the scope (and its `memory.events`) went between the
/// kernel's kill and the shim's read (the kernel spaces change notifications
/// 10 ms apart), init died of SIGKILL, and the pod's slice, whose count
/// includes its children's, counted a kill since the container's own count
/// was last read.
fn oom_killed(
    own_kills: u64,
    lost_at_exit: bool,
    signal: Option<i32>,
    parent_kills: Option<(u64, u64)>,
) -> bool {
    own_kills > 0
        || (lost_at_exit
            && signal == Some(libc::SIGKILL)
            && parent_kills.is_some_and(|(before, now)| now > before))
}

fn pollfd(fd: i32, events: libc::c_short) -> libc::pollfd {
    libc::pollfd {
        fd,
        events,
        revents: 0,
    }
}

/// A client attached to the container's stdio.
struct Attached {
    stream: UnixStream,
    /// Frames not yet taken by the client.
    backlog: Vec<u8>,
    /// Bytes read from the client, not yet a whole frame.
    input: Vec<u8>,
    /// It attached with input that has not ended.
    stdin: bool,
    gone: bool,
}

impl Attached {
    /// Queues one output frame and sends what the client takes now.
    fn send(&mut self, kind: u8, data: &[u8]) {
        attach::encode(kind, data, &mut self.backlog);
        self.flush();
        if self.backlog.len() > attach::MAX_BACKLOG {
            self.gone = true;
        }
    }

    fn flush(&mut self) {
        while !self.backlog.is_empty() {
            match self.stream.write(&self.backlog) {
                Ok(0) => {
                    self.gone = true;
                    return;
                }
                Ok(n) => {
                    self.backlog.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.gone = true;
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::oom_killed;

    #[test]
    fn an_oom_kill_is_the_containers_count_or_a_lost_count_and_its_pods() {
        let kill = Some(libc::SIGKILL);
        assert!(oom_killed(1, false, kill, None));
        assert!(oom_killed(1, false, None, None));
        assert!(
            !oom_killed(0, false, kill, Some((0, 1))),
            "counted 0 at exit"
        );
        assert!(oom_killed(0, true, kill, Some((2, 3))));
        assert!(
            !oom_killed(0, true, kill, Some((3, 3))),
            "no kill in the pod"
        );
        assert!(!oom_killed(0, true, Some(libc::SIGTERM), Some((2, 3))));
        assert!(!oom_killed(0, true, kill, None), "no pod count to go by");
    }
}
