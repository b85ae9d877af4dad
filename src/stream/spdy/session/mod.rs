//! A SPDY/3.1 session over any tokio byte stream: the server end, which
//! accepts the streams a peer opens, or the client end (`client`), which
//! opens its own.
//!
//! Task model: [`Session::new`] splits the I/O and spawns two tasks. The
//! reader task parses frames, decompresses header blocks and updates the
//! shared state; the writer task drains one FIFO of outgoing frames,
//! compresses header blocks in wire order and writes. Application handles
//! ([`Session`], [`Stream`], [`StreamReader`], [`StreamWriter`]) only touch
//! the shared state (one `std::sync::Mutex`) and wait on `Notify`s; they
//! never do I/O themselves. Both tasks end on their own once the session is
//! closed, so nothing needs to be joined.
//!
//! Here: the shared state and [`Session`]; `reader` (the reader task),
//! `writer` (the writer task), `stream` (the application's stream handles),
//! `client` (opening streams, waiting for their replies). Both ends share
//! all of it (flow control, resets, closing); they differ only in whose
//! stream ids are odd and who answers SYN_STREAM.
//!
//! See the module documentation of [`super`] for the interoperability rules
//! (flow control in particular) and why they are what they are.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::frame::{self, Frame, GoAwayStatus, Limits, RstStatus};
use super::headers::{DEFAULT_MAX_DECOMPRESSED, HeaderDecoder, HeaderEncoder, Headers};

/// The initial stream and session window of SPDY/3.1 (64 KiB).
pub const DEFAULT_WINDOW: u32 = 64 * 1024;
/// The largest DATA payload this side sends.
pub const MAX_DATA_CHUNK: usize = 16 * 1024;
const MAX_WINDOW: i64 = 0x7fff_ffff;
/// Accounting cost of one queued frame beyond its payload.
const FRAME_COST: usize = 64;
/// Extra queue room the reader may use for control replies (PING, RST)
/// when data fills the queue, before it stops reading.
const CONTROL_SLACK: usize = 64 * 1024;

/// Session tuning. The defaults suit Kubernetes clients.
#[derive(Debug, Clone)]
pub struct Config {
    /// Streams held at once (accepted, or waiting in [`Session::accept`]'s
    /// backlog); SYN_STREAMs beyond it get RST_STREAM REFUSED_STREAM.
    pub max_streams: usize,
    /// Received bytes buffered per stream before the reader task stops
    /// reading the connection until the application drains them.
    pub recv_buffer: usize,
    /// Spec-strict flow control: send windows are enforced from the start,
    /// and a peer overrunning a receive window gets RST_STREAM
    /// FLOW_CONTROL_ERROR (GOAWAY for the session window). Go's spdystream
    /// does no flow control at all, so this must stay `false` for kubectl,
    /// crictl and the kubelet/API-server proxies.
    pub strict_flow_control: bool,
    /// Bytes (payload plus a per-frame overhead) queued for the socket
    /// before [`StreamWriter::write`] waits.
    pub write_queue: usize,
    /// Bound on closing: flushing queued frames, sending GOAWAY, and waiting
    /// for the peer to hang up.
    pub close_timeout: Duration,
    /// Close the session (GOAWAY) after this long with no frame read or
    /// written. kubelet's equivalent is its stream idle timeout.
    pub idle_timeout: Option<Duration>,
    /// Frame size bounds.
    pub limits: Limits,
    /// Bound on one decompressed header block.
    pub max_header_block: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: 1024,
            recv_buffer: DEFAULT_WINDOW as usize,
            strict_flow_control: false,
            write_queue: 256 * 1024,
            close_timeout: Duration::from_secs(10),
            idle_timeout: None,
            limits: Limits::default(),
            max_header_block: DEFAULT_MAX_DECOMPRESSED,
        }
    }
}

enum Out {
    Frame(Frame),
    /// A SYN_REPLY; its header block is compressed by the writer task so
    /// that compression order is wire order.
    Reply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    /// A SYN_STREAM this side opens, compressed likewise.
    Open {
        stream_id: u32,
        headers: Headers,
    },
}

/// Which end of the connection this session is. Clients open odd stream
/// ids, servers even ones (SPDY/3 section 2.3.2); a Kubernetes server opens
/// none and a Kubernetes client accepts none.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    Server,
    Client,
}

impl Role {
    /// Whether `id` is of this side's parity (its own streams and pings).
    fn owns(self, id: u32) -> bool {
        id.is_multiple_of(2) == (self == Role::Server)
    }
}

impl Out {
    fn cost(&self) -> usize {
        match self {
            Out::Frame(Frame::Data { data, .. }) => data.len() + FRAME_COST,
            _ => FRAME_COST,
        }
    }
}

struct StreamState {
    /// Wakes the one task reading this stream.
    readable: Arc<Notify>,
    /// Kept until the stream is accepted.
    headers: Option<Headers>,
    recv: VecDeque<Bytes>,
    recv_bytes: usize,
    /// FIN received.
    recv_fin: bool,
    /// RST_STREAM sent or received: no more frames either way.
    reset: bool,
    /// The reset was ours: reads end at once, buffered data is dropped.
    local_reset: bool,
    /// What the peer may still send under flow control (can go negative
    /// in lenient mode).
    recv_window: i64,
    /// Consumed but not yet returned through WINDOW_UPDATE.
    recv_unacked: u32,
    /// A reader handle exists (or the stream is not yet accepted).
    reader_alive: bool,
    /// Live writer handles.
    writers: usize,
    send_window: i64,
    replied: bool,
    sent_fin: bool,
    /// The peer's SYN_REPLY came (streams this side opened).
    peer_replied: bool,
}

impl StreamState {
    fn new(send_window: i64, headers: Option<Headers>, replied: bool) -> StreamState {
        StreamState {
            readable: Arc::new(Notify::new()),
            headers,
            recv: VecDeque::new(),
            recv_bytes: 0,
            recv_fin: false,
            reset: false,
            local_reset: false,
            recv_window: i64::from(DEFAULT_WINDOW),
            recv_unacked: 0,
            reader_alive: true,
            writers: 0,
            send_window,
            replied,
            sent_fin: false,
            peer_replied: false,
        }
    }
}

struct State {
    queue: VecDeque<Out>,
    queued_cost: usize,
    /// Coalesced WINDOW_UPDATEs (stream id, delta) for the writer.
    pending_window_updates: Vec<(u32, u32)>,

    /// Set once: the session is closing; the writer sends GOAWAY with this
    /// status after the queue, and no new work is accepted.
    closing: Option<GoAwayStatus>,
    writer_done: bool,
    reader_done: bool,
    remote_goaway: bool,
    last_activity: Instant,

    streams: HashMap<u32, StreamState>,
    incoming: VecDeque<u32>,
    /// Highest SYN_STREAM id the peer sent (ids must increase).
    last_peer_id: u32,
    /// The id this side's next stream gets (client end).
    next_local_id: u32,
    /// Highest stream id answered (accepted or refused): GOAWAY's
    /// last-good-stream-id.
    last_good_id: u32,
    session_alive: bool,
    /// Session + stream reader + stream writer handles alive; the session
    /// closes itself when this reaches zero.
    handles: usize,

    /// Send windows are enforced (strict mode, or the peer showed it does
    /// flow control by sending WINDOW_UPDATE or SETTINGS_INITIAL_WINDOW_SIZE).
    send_flow_control: bool,
    initial_send_window: i64,
    session_send_window: i64,
    session_recv_window: i64,
    session_recv_unacked: u32,
}

struct Shared {
    state: Mutex<State>,
    config: Config,
    role: Role,
    /// Wakes the writer task (queue not empty, or closing).
    writer_wake: Notify,
    /// Wakes the reader task (stream drained, queue space, handle dropped).
    reader_wake: Notify,
    /// Wakes [`Session::accept`].
    accept_wake: Notify,
    /// Wakes every blocked `write` (window, queue space, reset, close).
    writers: Notify,
    /// Wakes [`Session::close`] callers once the writer is done.
    writer_finished: Notify,
    /// Deadline for the I/O tasks: set when closing starts (now +
    /// close_timeout), or to now when the connection is broken.
    deadline: watch::Sender<Option<Instant>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere must not turn into panics here.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether stream `id` was never opened, by either side: DATA for it is
    /// answered with RST_STREAM INVALID_STREAM (a forgotten one is ignored).
    fn never_opened(&self, st: &State, id: u32) -> bool {
        if self.role.owns(id) {
            id >= st.next_local_id
        } else {
            id > st.last_peer_id
        }
    }

    fn push(&self, st: &mut State, out: Out) {
        st.queued_cost += out.cost();
        st.queue.push_back(out);
        self.writer_wake.notify_one();
    }

    fn window_update(&self, st: &mut State, stream_id: u32, delta: u32) {
        if delta == 0 || st.closing.is_some() {
            return;
        }
        match st
            .pending_window_updates
            .iter_mut()
            .find(|(id, _)| *id == stream_id)
        {
            Some((_, d)) => *d = d.saturating_add(delta).min(MAX_WINDOW as u32),
            None => st.pending_window_updates.push((stream_id, delta)),
        }
        self.writer_wake.notify_one();
    }

    /// Accounts `len` received bytes as consumed on the session and, if the
    /// stream is given, on it; returns window through WINDOW_UPDATE in
    /// half-window steps.
    fn consumed(&self, st: &mut State, stream_id: Option<u32>, len: usize) {
        let half = DEFAULT_WINDOW / 2;
        let len = len.min(u32::MAX as usize) as u32;
        if let Some(id) = stream_id
            && let Some(s) = st.streams.get_mut(&id)
        {
            s.recv_unacked = s.recv_unacked.saturating_add(len);
            if s.recv_unacked >= half && !s.recv_fin && !s.reset {
                let d = s.recv_unacked;
                s.recv_unacked = 0;
                s.recv_window += i64::from(d);
                self.window_update(st, id, d);
            }
        }
        st.session_recv_unacked = st.session_recv_unacked.saturating_add(len);
        if st.session_recv_unacked >= half {
            let d = st.session_recv_unacked;
            st.session_recv_unacked = 0;
            st.session_recv_window += i64::from(d);
            self.window_update(st, 0, d);
        }
    }

    fn begin_close(&self, st: &mut State, status: GoAwayStatus) {
        if st.closing.is_some() {
            return;
        }
        st.closing = Some(status);
        let deadline = Instant::now() + self.config.close_timeout;
        st.pending_window_updates.clear();
        self.deadline.send_if_modified(|d| match d {
            Some(old) if *old <= deadline => false,
            _ => {
                *d = Some(deadline);
                true
            }
        });
        self.wake_all(st);
    }

    /// The connection is unusable: stop both tasks now.
    fn abort(&self, st: &mut State) {
        self.begin_close(st, GoAwayStatus::InternalError);
        let now = Instant::now();
        self.deadline.send_replace(Some(now));
        self.wake_all(st);
    }

    fn wake_all(&self, st: &State) {
        for s in st.streams.values() {
            s.readable.notify_one();
        }
        self.writer_wake.notify_one();
        self.reader_wake.notify_one();
        self.accept_wake.notify_one();
        self.writers.notify_waiters();
    }

    fn release_handle(&self, st: &mut State) {
        st.handles = st.handles.saturating_sub(1);
        if st.handles == 0 {
            self.begin_close(st, GoAwayStatus::Ok);
        }
    }

    /// Drops a stream's state once no handle refers to it, resetting it if
    /// it was not finished (as kubelet's connection Close does).
    fn maybe_remove(&self, st: &mut State, id: u32) {
        let Some(s) = st.streams.get(&id) else { return };
        if s.reader_alive || s.writers > 0 {
            return;
        }
        let needs_reset = !s.reset && !s.sent_fin;
        let unread = s.recv_bytes;
        st.streams.remove(&id);
        if unread > 0 {
            self.consumed(st, None, unread);
        }
        if needs_reset && st.closing.is_none() {
            self.push(
                st,
                Out::Frame(Frame::RstStream {
                    stream_id: id,
                    status: RstStatus::Cancel,
                }),
            );
        }
        self.reader_wake.notify_one();
    }
}

/// Waits until `f` returns `Some`, re-running it whenever `notify` fires.
async fn wait_until<T>(
    shared: &Shared,
    notify: &Notify,
    mut f: impl FnMut(&mut State) -> Option<T>,
) -> T {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let r = f(&mut shared.lock());
        if let Some(v) = r {
            return v;
        }
        notified.await;
    }
}

/// Resolves when the I/O deadline passes (never, while there is none).
async fn deadline_passed(rx: &mut watch::Receiver<Option<Instant>>) {
    loop {
        let d = *rx.borrow_and_update();
        match d {
            Some(d) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(d) => return,
                    r = rx.changed() => if r.is_err() { return },
                }
            }
            None => {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Runs an I/O future, failing it once the I/O deadline passes.
async fn bounded<T>(
    rx: &mut watch::Receiver<Option<Instant>>,
    fut: impl Future<Output = io::Result<T>>,
) -> io::Result<T> {
    tokio::select! {
        r = fut => r,
        _ = deadline_passed(rx) => Err(io::Error::new(io::ErrorKind::TimedOut, "SPDY session close timed out")),
    }
}

fn closed_err(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, format!("SPDY {what}"))
}

/// A SPDY/3.1 session, server end ([`Session::new`]) or client end
/// ([`Session::client`]). See the [module docs](super).
pub struct Session {
    shared: Arc<Shared>,
}

impl Session {
    /// Starts the session's reader and writer tasks on `io` with the
    /// default [`Config`]. Must be called inside a tokio runtime.
    pub fn new<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Session::with_config(io, Config::default())
    }

    /// [`Session::new`] with explicit tuning.
    pub fn with_config<IO>(io: IO, config: Config) -> Session
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Session::start(io, config, Role::Server)
    }

    fn start<IO>(io: IO, config: Config, role: Role) -> Session
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let strict = config.strict_flow_control;
        let state = State {
            queue: VecDeque::new(),
            queued_cost: 0,
            pending_window_updates: Vec::new(),
            closing: None,
            writer_done: false,
            reader_done: false,
            remote_goaway: false,
            last_activity: Instant::now(),
            streams: HashMap::new(),
            incoming: VecDeque::new(),
            last_peer_id: 0,
            next_local_id: if role == Role::Client { 1 } else { 2 },
            last_good_id: 0,
            session_alive: true,
            handles: 1,
            send_flow_control: strict,
            initial_send_window: i64::from(DEFAULT_WINDOW),
            session_send_window: i64::from(DEFAULT_WINDOW),
            session_recv_window: i64::from(DEFAULT_WINDOW),
            session_recv_unacked: 0,
        };
        let (deadline, _) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            config,
            role,
            writer_wake: Notify::new(),
            reader_wake: Notify::new(),
            accept_wake: Notify::new(),
            writers: Notify::new(),
            writer_finished: Notify::new(),
            deadline,
        });
        let (rd, wr) = tokio::io::split(io);
        tokio::spawn(Reader::new(shared.clone()).run(rd));
        tokio::spawn(writer_task(shared.clone(), wr));
        Session { shared }
    }

    /// The next stream the client opened (SYN_STREAM), in order. `None`
    /// once no more can come: the client sent GOAWAY, the connection ended
    /// or failed, or the session is closing. A client session's peer opens
    /// none (they are refused), so there it only waits for the end.
    pub async fn accept(&mut self) -> Option<Stream> {
        let shared = self.shared.clone();
        wait_until(&self.shared, &self.shared.accept_wake, |st| {
            while let Some(id) = st.incoming.pop_front() {
                let Some(s) = st.streams.get_mut(&id) else {
                    continue;
                };
                s.writers = 1;
                let headers = s.headers.take().unwrap_or_default();
                st.handles += 2;
                return Some(Some(Stream::new(id, headers, &shared)));
            }
            if st.remote_goaway || st.closing.is_some() || st.reader_done {
                return Some(None);
            }
            None
        })
        .await
    }

    /// Sends GOAWAY (status OK) after every frame already queued, shuts the
    /// write side down and returns; bounded by [`Config::close_timeout`].
    /// Afterwards writes fail and reads end once buffered data is read.
    /// Idempotent.
    pub async fn close(&self) {
        {
            let mut st = self.shared.lock();
            self.shared.begin_close(&mut st, GoAwayStatus::Ok);
        }
        wait_until(&self.shared, &self.shared.writer_finished, |st| {
            st.writer_done.then_some(())
        })
        .await
    }

    /// Whether the session has started closing (locally, or because the
    /// connection ended or failed).
    pub fn is_closing(&self) -> bool {
        self.shared.lock().closing.is_some()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.session_alive = false;
        // Streams nobody will accept are refused.
        while let Some(id) = st.incoming.pop_front() {
            if let Some(s) = st.streams.remove(&id) {
                let unread = s.recv_bytes;
                self.shared.consumed(&mut st, None, unread);
                if !s.reset && st.closing.is_none() {
                    self.shared.push(
                        &mut st,
                        Out::Frame(Frame::RstStream {
                            stream_id: id,
                            status: RstStatus::RefusedStream,
                        }),
                    );
                }
            }
        }
        self.shared.release_handle(&mut st);
        self.shared.reader_wake.notify_one();
    }
}

mod client;
#[cfg(test)]
mod client_tests;
mod reader;
mod stream;
#[cfg(test)]
mod tests;
mod writer;

use reader::Reader;
pub use stream::{Stream, StreamReader, StreamWriter};
use writer::writer_task;

#[cfg(test)]
impl Session {
    /// Bytes buffered for stream `id`, not yet read by the application.
    fn buffered(&self, id: u32) -> Option<usize> {
        self.shared.lock().streams.get(&id).map(|s| s.recv_bytes)
    }
}
