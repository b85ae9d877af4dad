//! A server-side SPDY/3.1 session over any tokio byte stream.
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
    /// Highest SYN_STREAM id seen (ids must increase).
    last_client_id: u32,
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

/// A server-side SPDY/3.1 session. See the [module docs](super).
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
            last_client_id: 0,
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
    /// or failed, or the session is closing.
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
                return Some(Some(Stream {
                    headers,
                    reader: StreamReader {
                        id,
                        shared: shared.clone(),
                    },
                    writer: StreamWriter {
                        id,
                        shared: shared.clone(),
                    },
                }));
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

/// A stream opened by the client. Reads and writes can also be done from
/// two tasks after [`Stream::split`].
///
/// Dropping every handle of a stream that was not finished with
/// [`StreamWriter::finish`] (or reset) sends RST_STREAM CANCEL.
pub struct Stream {
    headers: Headers,
    reader: StreamReader,
    writer: StreamWriter,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("id", &self.id())
            .field("headers", &self.headers)
            .finish()
    }
}

impl Stream {
    pub fn id(&self) -> u32 {
        self.reader.id
    }

    /// The first value of a SYN_STREAM header (name compared
    /// case-insensitively; SPDY names are lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    /// All SYN_STREAM headers.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// See [`StreamWriter::reply`].
    pub async fn reply(&self, fin: bool) -> io::Result<()> {
        self.writer.reply(fin).await
    }

    /// See [`StreamReader::read`].
    pub async fn read(&mut self) -> Option<Bytes> {
        self.reader.read().await
    }

    /// See [`StreamWriter::write`].
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        self.writer.write(data).await
    }

    /// See [`StreamWriter::finish`].
    pub async fn finish(&self) -> io::Result<()> {
        self.writer.finish().await
    }

    /// See [`StreamWriter::reset`].
    pub fn reset(&self, status: RstStatus) {
        self.writer.reset(status)
    }

    /// Splits into a reading half and a (cloneable) writing half.
    pub fn split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }
}

/// The receiving half of a [`Stream`].
pub struct StreamReader {
    id: u32,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader")
            .field("id", &self.id)
            .finish()
    }
}

impl StreamReader {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next chunk of client data (one DATA frame's payload, never
    /// empty). `None` at the client's FIN, after a reset (theirs: once the
    /// data received before it is read; ours: at once), or once the session
    /// is closing or the connection is gone (again after buffered data).
    pub async fn read(&mut self) -> Option<Bytes> {
        let readable = self.shared.lock().streams.get(&self.id)?.readable.clone();
        let id = self.id;
        let shared = &*self.shared;
        wait_until(shared, &readable, |st| {
            let s = match st.streams.get_mut(&id) {
                Some(s) => s,
                None => return Some(None),
            };
            if s.local_reset {
                return Some(None);
            }
            if let Some(chunk) = s.recv.pop_front() {
                s.recv_bytes -= chunk.len();
                shared.consumed(st, Some(id), chunk.len());
                shared.reader_wake.notify_one();
                return Some(Some(chunk));
            }
            if s.recv_fin || s.reset || st.reader_done || st.closing.is_some() {
                return Some(None);
            }
            None
        })
        .await
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.reader_alive = false;
            let unread = std::mem::take(&mut s.recv_bytes);
            s.recv.clear();
            self.shared.consumed(&mut st, Some(self.id), unread);
            self.shared.maybe_remove(&mut st, self.id);
        }
        self.shared.release_handle(&mut st);
        self.shared.reader_wake.notify_one();
    }
}

/// The sending half of a [`Stream`]; clones share the stream.
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter")
            .field("id", &self.id)
            .finish()
    }
}

impl Clone for StreamWriter {
    fn clone(&self) -> Self {
        let mut st = self.shared.lock();
        st.handles += 1;
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.writers += 1;
        }
        StreamWriter {
            id: self.id,
            shared: self.shared.clone(),
        }
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get_mut(&self.id) {
            s.writers = s.writers.saturating_sub(1);
            self.shared.maybe_remove(&mut st, self.id);
        }
        self.shared.release_handle(&mut st);
    }
}

/// Why a stream cannot be written to, if it cannot.
fn write_blocker(st: &State, id: u32) -> Option<io::Error> {
    if st.closing.is_some() || st.writer_done {
        return Some(closed_err("session is closed"));
    }
    match st.streams.get(&id) {
        None => Some(closed_err("stream is gone")),
        Some(s) if s.reset => Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "SPDY stream was reset",
        )),
        Some(s) if s.sent_fin => Some(closed_err("stream is finished")),
        Some(_) => None,
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Sends SYN_REPLY with an empty header block (what Kubernetes servers
    /// send), with FIN if `fin`. A second call does nothing. `write` and
    /// `finish` reply first on their own if this was not called.
    pub async fn reply(&self, fin: bool) -> io::Result<()> {
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get(&self.id)
            && s.replied
            && !s.reset
        {
            return Ok(());
        }
        if let Some(e) = write_blocker(&st, self.id) {
            return Err(e);
        }
        let s = st
            .streams
            .get_mut(&self.id)
            .expect("checked by write_blocker");
        s.replied = true;
        s.sent_fin |= fin;
        self.shared.push(
            &mut st,
            Out::Reply {
                stream_id: self.id,
                fin,
                headers: Headers::new(),
            },
        );
        Ok(())
    }

    /// Sends `data` as DATA frames of at most [`MAX_DATA_CHUNK`] bytes,
    /// waiting for queue space and, when flow control is in force, for
    /// send window. Returns once the data is queued, not written.
    pub async fn write(&self, data: &[u8]) -> io::Result<()> {
        let (id, shared) = (self.id, &*self.shared);
        let limit = shared.config.write_queue;
        let mut rest = data;
        while !rest.is_empty() {
            let n = wait_until(shared, &shared.writers, |st| {
                if let Some(e) = write_blocker(st, id) {
                    return Some(Err(e));
                }
                if st.queued_cost >= limit {
                    return None;
                }
                let fc = st.send_flow_control;
                let session_window = st.session_send_window;
                let s = st.streams.get_mut(&id).expect("checked by write_blocker");
                let mut n = rest.len().min(MAX_DATA_CHUNK);
                if fc {
                    let w = s.send_window.min(session_window);
                    if w <= 0 {
                        return None;
                    }
                    n = n.min(w as usize);
                }
                s.send_window -= n as i64;
                let reply = !std::mem::replace(&mut s.replied, true);
                st.session_send_window -= n as i64;
                if reply {
                    shared.push(
                        st,
                        Out::Reply {
                            stream_id: id,
                            fin: false,
                            headers: Headers::new(),
                        },
                    );
                }
                shared.push(
                    st,
                    Out::Frame(Frame::Data {
                        stream_id: id,
                        fin: false,
                        data: Bytes::copy_from_slice(&rest[..n]),
                    }),
                );
                Some(Ok(n))
            })
            .await?;
            rest = &rest[n..];
        }
        Ok(())
    }

    /// Half-closes: an empty DATA frame with FIN (or a SYN_REPLY with FIN
    /// if nothing was sent yet). Idempotent.
    pub async fn finish(&self) -> io::Result<()> {
        let mut st = self.shared.lock();
        if let Some(s) = st.streams.get(&self.id)
            && s.sent_fin
            && !s.reset
        {
            return Ok(());
        }
        if let Some(e) = write_blocker(&st, self.id) {
            return Err(e);
        }
        let s = st
            .streams
            .get_mut(&self.id)
            .expect("checked by write_blocker");
        s.sent_fin = true;
        let out = if std::mem::replace(&mut s.replied, true) {
            Out::Frame(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
        } else {
            Out::Reply {
                stream_id: self.id,
                fin: true,
                headers: Headers::new(),
            }
        };
        self.shared.push(&mut st, out);
        Ok(())
    }

    /// Aborts the stream with RST_STREAM `status`: pending reads end, data
    /// already queued for it is still sent before the RST, later writes
    /// fail. Does nothing if the stream is already reset or closed both ways.
    pub fn reset(&self, status: RstStatus) {
        let mut st = self.shared.lock();
        let closing = st.closing.is_some();
        let Some(s) = st.streams.get_mut(&self.id) else {
            return;
        };
        if s.reset || (s.sent_fin && s.recv_fin) {
            return;
        }
        s.reset = true;
        s.local_reset = true;
        let unread = std::mem::take(&mut s.recv_bytes);
        s.recv.clear();
        s.readable.notify_one();
        self.shared.consumed(&mut st, None, unread);
        if !closing {
            self.shared.push(
                &mut st,
                Out::Frame(Frame::RstStream {
                    stream_id: self.id,
                    status,
                }),
            );
        }
        self.shared.writers.notify_waiters();
        self.shared.reader_wake.notify_one();
    }
}

async fn writer_task<W: AsyncWrite + Unpin>(shared: Arc<Shared>, mut wr: W) {
    let mut rx = shared.deadline.subscribe();
    let mut encoder = HeaderEncoder::new();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut dirty = false;
    let result: io::Result<()> = async {
        loop {
            let notified = shared.writer_wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut goaway = None;
            {
                let mut st = shared.lock();
                for (stream_id, delta) in st.pending_window_updates.drain(..) {
                    Frame::WindowUpdate { stream_id, delta }.encode(&mut buf);
                }
                let mut freed = false;
                while buf.len() < 64 * 1024 {
                    let Some(out) = st.queue.pop_front() else {
                        break;
                    };
                    st.queued_cost -= out.cost();
                    freed = true;
                    match out {
                        Out::Frame(f) => f.encode(&mut buf),
                        Out::Reply {
                            stream_id,
                            fin,
                            headers,
                        } => Frame::SynReply {
                            stream_id,
                            fin,
                            header_block: encoder.encode(&headers).into(),
                        }
                        .encode(&mut buf),
                    }
                }
                if freed {
                    shared.writers.notify_waiters();
                    shared.reader_wake.notify_one();
                }
                if buf.is_empty()
                    && let Some(status) = st.closing
                {
                    goaway = Some(Frame::GoAway {
                        last_good_stream_id: st.last_good_id,
                        status,
                    });
                }
            }
            if !buf.is_empty() {
                bounded(&mut rx, wr.write_all(&buf)).await?;
                buf.clear();
                dirty = true;
                shared.lock().last_activity = Instant::now();
                continue;
            }
            if dirty {
                bounded(&mut rx, wr.flush()).await?;
                dirty = false;
                continue;
            }
            if let Some(goaway) = goaway {
                goaway.encode(&mut buf);
                bounded(&mut rx, wr.write_all(&buf)).await?;
                bounded(&mut rx, wr.flush()).await?;
                bounded(&mut rx, wr.shutdown()).await?;
                return Ok(());
            }
            notified.await;
        }
    }
    .await;

    let mut st = shared.lock();
    if let Err(e) = result {
        tracing::debug!(error = %e, "SPDY session: write side failed");
        shared.abort(&mut st);
    }
    st.writer_done = true;
    st.queue.clear();
    st.queued_cost = 0;
    shared.wake_all(&st);
    shared.writer_finished.notify_waiters();
}

/// A session-level protocol violation: GOAWAY PROTOCOL_ERROR.
#[derive(Debug)]
struct Fatal(String);

struct Reader {
    shared: Arc<Shared>,
    decoder: HeaderDecoder,
}

impl Reader {
    fn new(shared: Arc<Shared>) -> Reader {
        let decoder = HeaderDecoder::with_limit(shared.config.max_header_block);
        Reader { shared, decoder }
    }

    async fn run<R: AsyncRead + Unpin>(mut self, mut rd: R) {
        let mut rx = self.shared.deadline.subscribe();
        let limits = self.shared.config.limits;
        let idle = self.shared.config.idle_timeout;
        let mut buf = BytesMut::with_capacity(16 * 1024);
        let mut broken = false;
        loop {
            if !broken {
                match Frame::parse_with_limits(&buf, &limits) {
                    Ok(Some((frame, n))) => {
                        buf.advance(n);
                        if let Err(Fatal(why)) = self.handle(frame).await {
                            self.protocol_error(&why);
                            broken = true;
                        }
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        self.protocol_error(&e.to_string());
                        broken = true;
                    }
                }
            }
            if broken {
                // Nothing more can be parsed: read and drop until the peer
                // hangs up or the close deadline passes, so that closing the
                // socket does not reset it under unread data.
                buf.clear();
            }
            let want = if broken {
                16 * 1024
            } else {
                frame::frame_len(&buf, &limits)
                    .ok()
                    .flatten()
                    .unwrap_or(frame::HEADER_LEN)
                    .saturating_sub(buf.len())
                    .clamp(1, 64 * 1024)
            };
            buf.reserve(want);
            let idle_deadline = {
                let st = self.shared.lock();
                idle.filter(|_| st.closing.is_none())
                    .map(|d| st.last_activity + d)
            };
            let idle_sleep = async {
                match idle_deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = rd.read_buf(&mut buf) => match r {
                    Ok(0) => break,
                    Ok(_) => self.shared.lock().last_activity = Instant::now(),
                    Err(e) => {
                        tracing::debug!(error = %e, "SPDY session: read side failed");
                        break;
                    }
                },
                _ = deadline_passed(&mut rx) => break,
                _ = idle_sleep => {
                    let mut st = self.shared.lock();
                    if let Some(d) = idle
                        && st.last_activity + d <= Instant::now()
                    {
                        tracing::debug!("SPDY session idle, closing");
                        self.shared.begin_close(&mut st, GoAwayStatus::Ok);
                    }
                }
            }
        }
        let mut st = self.shared.lock();
        st.reader_done = true;
        // The peer is gone (or we stopped listening): finish up.
        self.shared.begin_close(&mut st, GoAwayStatus::Ok);
        self.shared.wake_all(&st);
    }

    fn protocol_error(&self, why: &str) {
        tracing::debug!(reason = why, "SPDY protocol error, sending GOAWAY");
        let mut st = self.shared.lock();
        self.shared
            .begin_close(&mut st, GoAwayStatus::ProtocolError);
    }

    /// Queues a control frame the protocol makes us send in reply, waiting
    /// (and so not reading) while the queue is over its bound. Dropped once
    /// the session is closing.
    async fn reply_control(&self, frame: Frame) {
        let shared = &*self.shared;
        let limit = shared.config.write_queue + CONTROL_SLACK;
        let mut frame = Some(frame);
        wait_until(shared, &shared.reader_wake, |st| {
            if st.closing.is_some() {
                return Some(());
            }
            if st.queued_cost >= limit {
                return None;
            }
            shared.push(st, Out::Frame(frame.take().expect("pushed once")));
            Some(())
        })
        .await
    }

    fn decode(&mut self, block: &[u8]) -> Result<Headers, Fatal> {
        self.decoder
            .decode(block)
            .map_err(|e| Fatal(format!("header block: {e}")))
    }

    async fn handle(&mut self, frame: Frame) -> Result<(), Fatal> {
        match frame {
            Frame::SynStream {
                stream_id,
                fin,
                unidirectional,
                header_block,
                ..
            } => {
                let headers = self.decode(&header_block)?;
                self.syn_stream(stream_id, fin, unidirectional, headers)
                    .await
            }
            Frame::SynReply { header_block, .. } => {
                // We open no streams; keep the zlib context in step and
                // otherwise ignore it.
                self.decode(&header_block)?;
                Ok(())
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                self.decode(&header_block)?;
                if fin {
                    let mut st = self.shared.lock();
                    if let Some(s) = st.streams.get_mut(&stream_id) {
                        s.recv_fin = true;
                        s.readable.notify_one();
                    }
                }
                Ok(())
            }
            Frame::RstStream { stream_id, .. } => {
                let mut st = self.shared.lock();
                if let Some(s) = st.streams.get_mut(&stream_id) {
                    s.reset = true;
                    s.readable.notify_one();
                    self.shared.writers.notify_waiters();
                }
                Ok(())
            }
            Frame::Settings { entries, .. } => {
                let mut st = self.shared.lock();
                for e in entries {
                    if e.id != frame::setting::INITIAL_WINDOW_SIZE {
                        continue;
                    }
                    let v = i64::from(e.value);
                    if v > MAX_WINDOW {
                        return Err(Fatal(format!("INITIAL_WINDOW_SIZE {v} too large")));
                    }
                    let delta = v - st.initial_send_window;
                    st.initial_send_window = v;
                    st.send_flow_control = true;
                    for s in st.streams.values_mut() {
                        s.send_window += delta;
                    }
                }
                self.shared.writers.notify_waiters();
                Ok(())
            }
            Frame::Ping { id } => {
                // Odd ids are the client's; even ones would answer our own
                // pings, and we send none.
                if !id.is_multiple_of(2) {
                    self.reply_control(Frame::Ping { id }).await;
                }
                Ok(())
            }
            Frame::GoAway { .. } => {
                let mut st = self.shared.lock();
                st.remote_goaway = true;
                self.shared.accept_wake.notify_one();
                Ok(())
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut rst = None;
                {
                    let mut st = self.shared.lock();
                    st.send_flow_control = true;
                    if stream_id == 0 {
                        st.session_send_window += i64::from(delta);
                        if st.session_send_window > MAX_WINDOW {
                            return Err(Fatal("session send window overflow".into()));
                        }
                    } else if let Some(s) = st.streams.get_mut(&stream_id) {
                        s.send_window += i64::from(delta);
                        if s.send_window > MAX_WINDOW && !s.reset {
                            s.reset = true;
                            s.readable.notify_one();
                            rst = Some(RstStatus::FlowControlError);
                        }
                    }
                    self.shared.writers.notify_waiters();
                }
                if let Some(status) = rst {
                    self.reply_control(Frame::RstStream { stream_id, status })
                        .await;
                }
                Ok(())
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => self.data(stream_id, fin, data).await,
            Frame::Unknown { .. } => Ok(()),
        }
    }

    async fn syn_stream(
        &mut self,
        id: u32,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    ) -> Result<(), Fatal> {
        let refuse = {
            let mut st = self.shared.lock();
            if id == 0 || id.is_multiple_of(2) {
                return Err(Fatal(format!("SYN_STREAM with server-side id {id}")));
            }
            if id <= st.last_client_id {
                return Err(Fatal(format!(
                    "SYN_STREAM id {id} not above {}",
                    st.last_client_id
                )));
            }
            st.last_client_id = id;
            if st.closing.is_some() || st.remote_goaway {
                return Ok(());
            }
            st.last_good_id = id;
            if !st.session_alive || st.streams.len() >= self.shared.config.max_streams {
                true
            } else {
                let initial = st.initial_send_window;
                st.streams.insert(
                    id,
                    StreamState {
                        readable: Arc::new(Notify::new()),
                        headers: Some(headers),
                        recv: VecDeque::new(),
                        recv_bytes: 0,
                        recv_fin: fin,
                        reset: false,
                        local_reset: false,
                        recv_window: i64::from(DEFAULT_WINDOW),
                        recv_unacked: 0,
                        reader_alive: true,
                        writers: 0,
                        send_window: initial,
                        replied: false,
                        // A unidirectional stream is half-closed for us.
                        sent_fin: unidirectional,
                    },
                );
                st.incoming.push_back(id);
                self.shared.accept_wake.notify_one();
                false
            }
        };
        if refuse {
            self.reply_control(Frame::RstStream {
                stream_id: id,
                status: RstStatus::RefusedStream,
            })
            .await;
        }
        Ok(())
    }

    async fn data(&mut self, id: u32, fin: bool, data: Bytes) -> Result<(), Fatal> {
        if id == 0 {
            return Err(Fatal("DATA on stream 0".into()));
        }
        let shared = &*self.shared;
        let strict = shared.config.strict_flow_control;
        let len = data.len();
        let mut rst = None;
        {
            let mut st = shared.lock();
            // Everything received counts against the session window; what
            // is dropped instead of buffered is credited back at once.
            st.session_recv_window -= len as i64;
            let session_overrun = strict && st.session_recv_window < 0;
            let closing = st.closing.is_some();
            let last_client_id = st.last_client_id;
            match st.streams.get_mut(&id) {
                None => {
                    // Closed and forgotten (ignore), or never opened.
                    shared.consumed(&mut st, None, len);
                    if id.is_multiple_of(2) || id > last_client_id {
                        rst = Some(RstStatus::InvalidStream);
                    }
                }
                Some(s) if s.reset || !s.reader_alive || closing => {
                    s.recv_fin |= fin;
                    shared.consumed(&mut st, Some(id), len);
                }
                Some(s) if s.recv_fin => {
                    s.reset = true;
                    s.readable.notify_one();
                    shared.writers.notify_waiters();
                    shared.consumed(&mut st, None, len);
                    rst = Some(RstStatus::StreamAlreadyClosed);
                }
                Some(s) => {
                    // A stream overrun is a stream error, checked first:
                    // with equal stream and session windows a single
                    // stream's overrun would otherwise always be reported
                    // as the session's.
                    s.recv_window -= len as i64;
                    if strict && s.recv_window < 0 {
                        s.reset = true;
                        s.readable.notify_one();
                        shared.writers.notify_waiters();
                        shared.consumed(&mut st, None, len);
                        rst = Some(RstStatus::FlowControlError);
                    } else if session_overrun {
                        return Err(Fatal("session receive window exceeded".into()));
                    }
                }
            }
        }
        if let Some(status) = rst {
            self.reply_control(Frame::RstStream {
                stream_id: id,
                status,
            })
            .await;
            return Ok(());
        }
        // Buffer it, waiting while the stream holds more than its share
        // (the peer ignores flow control, so the connection is the brake).
        let cap = shared.config.recv_buffer;
        let mut data = Some(data);
        wait_until(shared, &shared.reader_wake, |st| {
            let closing = st.closing.is_some();
            let s = match st.streams.get_mut(&id) {
                None => {
                    shared.consumed(st, None, len);
                    return Some(());
                }
                Some(s) => s,
            };
            if s.reset || !s.reader_alive || closing {
                s.recv_fin |= fin;
                shared.consumed(st, Some(id), len);
                return Some(());
            }
            if len > 0 && s.recv_bytes > 0 && s.recv_bytes + len > cap {
                return None;
            }
            if len > 0 {
                s.recv_bytes += len;
                s.recv.push_back(data.take().expect("buffered once"));
            }
            s.recv_fin |= fin;
            s.readable.notify_one();
            Some(())
        })
        .await;
        Ok(())
    }
}

#[cfg(test)]
impl Session {
    /// Bytes buffered for stream `id`, not yet read by the application.
    fn buffered(&self, id: u32) -> Option<usize> {
        self.shared.lock().streams.get(&id).map(|s| s.recv_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::spdy::frame::Setting;
    use tokio::io::DuplexStream;
    use tokio::time::timeout;

    const T: Duration = Duration::from_secs(5);

    /// The handles' futures can be spawned.
    #[allow(dead_code)]
    fn futures_are_send(s: &mut Session, st: &mut Stream, r: &mut StreamReader, w: &StreamWriter) {
        fn send<T: Send>(_: T) {}
        send(s.accept());
        send(s.close());
        send(st.read());
        send(st.write(b""));
        send(st.reply(false));
        send(st.finish());
        send(r.read());
        send(w.write(b""));
        send(w.finish());
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Session>();
        send_sync::<Stream>();
        send_sync::<StreamReader>();
        send_sync::<StreamWriter>();
    }

    /// A hand-written SPDY/3.1 client, framing like spdystream does.
    struct Client {
        io: DuplexStream,
        enc: HeaderEncoder,
        dec: HeaderDecoder,
        buf: BytesMut,
    }

    impl Client {
        fn new() -> (Client, DuplexStream) {
            let (a, b) = tokio::io::duplex(64 * 1024);
            let c = Client {
                io: a,
                enc: HeaderEncoder::new(),
                dec: HeaderDecoder::new(),
                buf: BytesMut::new(),
            };
            (c, b)
        }

        async fn send(&mut self, f: Frame) {
            let mut out = Vec::new();
            f.encode(&mut out);
            self.io.write_all(&out).await.unwrap();
        }

        async fn open(&mut self, id: u32, streamtype: &str, fin: bool) {
            let headers: Headers = [("streamtype", streamtype), ("requestid", "0")]
                .into_iter()
                .collect();
            let header_block = self.enc.encode(&headers).into();
            self.send(Frame::SynStream {
                stream_id: id,
                associated_stream_id: 0,
                priority: 0,
                slot: 0,
                fin,
                unidirectional: false,
                header_block,
            })
            .await;
        }

        async fn data(&mut self, id: u32, data: &[u8], fin: bool) {
            self.send(Frame::Data {
                stream_id: id,
                fin,
                data: Bytes::copy_from_slice(data),
            })
            .await;
        }

        /// The next frame (SYN_REPLY header blocks are decoded, keeping the
        /// zlib context in step); None at EOF.
        async fn recv_any(&mut self) -> Option<Frame> {
            timeout(T, async {
                loop {
                    if let Some((f, n)) = Frame::parse(&self.buf).unwrap() {
                        self.buf.advance(n);
                        if let Frame::SynReply { header_block, .. } = &f {
                            assert!(self.dec.decode(header_block).unwrap().is_empty());
                        }
                        return Some(f);
                    }
                    self.buf.reserve(16 * 1024);
                    if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                        return None;
                    }
                }
            })
            .await
            .expect("client timed out waiting for a frame")
        }

        /// The next frame that is not a WINDOW_UPDATE (spdystream ignores them).
        async fn recv(&mut self) -> Option<Frame> {
            loop {
                match self.recv_any().await {
                    Some(Frame::WindowUpdate { .. }) => continue,
                    f => return f,
                }
            }
        }

        async fn expect(&mut self, want: Frame) {
            assert_eq!(self.recv().await, Some(want));
        }
    }

    fn reply(id: u32, fin: bool) -> Frame {
        // Header blocks are checked in recv_any; compare the rest.
        Frame::SynReply {
            stream_id: id,
            fin,
            header_block: Bytes::new(),
        }
    }

    fn strip(f: Option<Frame>) -> Option<Frame> {
        match f {
            Some(Frame::SynReply { stream_id, fin, .. }) => Some(reply(stream_id, fin)),
            f => f,
        }
    }

    #[tokio::test]
    async fn streams_reply_data_fin_ping() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);

        c.open(1, "error", false).await;
        c.open(3, "stdin", false).await;
        c.open(5, "stdout", false).await;
        let err = session.accept().await.unwrap();
        let mut stdin = session.accept().await.unwrap();
        let stdout = session.accept().await.unwrap();
        assert_eq!((err.id(), stdin.id(), stdout.id()), (1, 3, 5));
        assert_eq!(err.header("streamtype"), Some("error"));
        assert_eq!(stdin.header("StreamType"), Some("stdin"));
        assert_eq!(stdout.header("requestid"), Some("0"));
        for s in [&err, &stdin, &stdout] {
            s.reply(false).await.unwrap();
            s.reply(false).await.unwrap(); // second reply: no-op
        }
        for id in [1, 3, 5] {
            assert_eq!(strip(c.recv().await), Some(reply(id, false)));
        }

        // Client data and FIN.
        c.data(3, b"hello", false).await;
        c.data(3, b" there", true).await;
        assert_eq!(stdin.read().await.unwrap(), &b"hello"[..]);
        assert_eq!(stdin.read().await.unwrap(), &b" there"[..]);
        assert_eq!(stdin.read().await, None);

        // Server data and FIN.
        stdout.write(b"output").await.unwrap();
        stdout.finish().await.unwrap();
        stdout.finish().await.unwrap(); // idempotent
        c.expect(Frame::Data {
            stream_id: 5,
            fin: false,
            data: Bytes::from_static(b"output"),
        })
        .await;
        c.expect(Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::new(),
        })
        .await;
        assert!(stdout.write(b"late").await.is_err());

        // PING: odd ids echoed, even ids (answers to pings we never sent)
        // ignored.
        c.send(Frame::Ping { id: 2 }).await;
        c.send(Frame::Ping { id: 7 }).await;
        c.expect(Frame::Ping { id: 7 }).await;

        // Unknown control frames are skipped.
        c.io.write_all(&[0x80, 0x03, 0x00, 0x0a, 0, 0, 0, 3, 1, 2, 3])
            .await
            .unwrap();
        c.send(Frame::Ping { id: 9 }).await;
        c.expect(Frame::Ping { id: 9 }).await;
    }

    #[tokio::test]
    async fn write_sends_reply_first() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdout", false).await;
        let s = session.accept().await.unwrap();
        s.write(b"x").await.unwrap();
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        c.expect(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"x"),
        })
        .await;
        // finish without a reply → SYN_REPLY with FIN.
        c.open(3, "stderr", false).await;
        let s = session.accept().await.unwrap();
        s.finish().await.unwrap();
        assert_eq!(strip(c.recv().await), Some(reply(3, true)));
    }

    /// 1 MiB to a client that, like spdystream, never sends WINDOW_UPDATE.
    #[tokio::test]
    async fn one_mib_without_window_updates() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdout", false).await;
        let s = session.accept().await.unwrap();
        s.reply(false).await.unwrap();
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 251) as u8).collect();
        let expected = payload.clone();
        let w = tokio::spawn(async move {
            s.write(&payload).await.unwrap();
            s.finish().await.unwrap();
            s
        });
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        let mut got = Vec::new();
        loop {
            match c.recv().await.unwrap() {
                Frame::Data {
                    stream_id: 1,
                    fin,
                    data,
                } => {
                    assert!(data.len() <= MAX_DATA_CHUNK);
                    got.extend_from_slice(&data);
                    if fin {
                        break;
                    }
                }
                f => panic!("unexpected {f:?}"),
            }
        }
        assert_eq!(got, expected);
        w.await.unwrap();
    }

    /// 1 MiB to a client that does SPDY/3.1 flow control: it announces it
    /// (SETTINGS), checks we never overrun its windows, and sends
    /// WINDOW_UPDATEs as it consumes.
    #[tokio::test]
    async fn one_mib_with_window_updates() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.send(Frame::Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: frame::setting::INITIAL_WINDOW_SIZE,
                value: DEFAULT_WINDOW,
            }],
        })
        .await;
        c.open(1, "stdout", false).await;
        let s = session.accept().await.unwrap();
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
        let expected = payload.clone();
        let w = tokio::spawn(async move {
            s.write(&payload).await.unwrap();
            s.finish().await.unwrap();
            s
        });
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        let (mut stream_window, mut session_window) =
            (DEFAULT_WINDOW as i64, DEFAULT_WINDOW as i64);
        let mut unacked = 0u32;
        let mut got = Vec::new();
        let mut stalled_once = false;
        loop {
            match c.recv().await.unwrap() {
                Frame::Data {
                    stream_id: 1,
                    fin,
                    data,
                } => {
                    stream_window -= data.len() as i64;
                    session_window -= data.len() as i64;
                    assert!(stream_window >= 0 && session_window >= 0, "window overrun");
                    got.extend_from_slice(&data);
                    unacked += data.len() as u32;
                    if fin {
                        break;
                    }
                    if stream_window == 0 && !stalled_once {
                        // The server must now wait for us.
                        stalled_once = true;
                        let more = timeout(Duration::from_millis(200), c.recv()).await;
                        assert!(more.is_err(), "server wrote past a closed window: {more:?}");
                    }
                    // Credit only once the window is empty, so the server
                    // must stall every 64 KiB.
                    if stream_window == 0 {
                        for id in [1, 0] {
                            c.send(Frame::WindowUpdate {
                                stream_id: id,
                                delta: unacked,
                            })
                            .await;
                        }
                        stream_window += unacked as i64;
                        session_window += unacked as i64;
                        unacked = 0;
                    }
                }
                f => panic!("unexpected {f:?}"),
            }
        }
        assert!(stalled_once);
        assert_eq!(got, expected);
        w.await.unwrap();
    }

    /// SETTINGS INITIAL_WINDOW_SIZE shrinking the windows of open streams.
    #[tokio::test]
    async fn settings_initial_window_size_applies_to_open_streams() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdout", false).await;
        let s = session.accept().await.unwrap();
        s.reply(false).await.unwrap();
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        c.send(Frame::Settings {
            clear: false,
            entries: vec![Setting {
                flags: 0,
                id: frame::setting::INITIAL_WINDOW_SIZE,
                value: 1000,
            }],
        })
        .await;
        // A PING round trip orders the SETTINGS before the write.
        c.send(Frame::Ping { id: 1 }).await;
        c.expect(Frame::Ping { id: 1 }).await;
        let w = tokio::spawn(async move { s.write(&[7u8; 3000]).await.map(|_| s) });
        let mut n = 0;
        while n < 1000 {
            match c.recv().await.unwrap() {
                Frame::Data { data, .. } => n += data.len(),
                f => panic!("unexpected {f:?}"),
            }
        }
        assert_eq!(n, 1000);
        assert!(timeout(Duration::from_millis(200), c.recv()).await.is_err());
        c.send(Frame::WindowUpdate {
            stream_id: 1,
            delta: 2000,
        })
        .await;
        while n < 3000 {
            match c.recv().await.unwrap() {
                Frame::Data { data, .. } => n += data.len(),
                f => panic!("unexpected {f:?}"),
            }
        }
        w.await.unwrap().unwrap();
    }

    /// A client pushing 1 MiB (spdystream ignores windows) into a stream
    /// the application reads late: no reset, bounded buffering, all data
    /// delivered in order.
    #[tokio::test]
    async fn lenient_overrun_is_backpressure() {
        let (c, io) = Client::new();
        let mut session = Session::new(io);
        let (mut c_rd, mut c_wr) = tokio::io::split(c.io);
        let mut enc = HeaderEncoder::new();
        let headers: Headers = [("streamtype", "stdin")].into_iter().collect();
        let mut out = Vec::new();
        Frame::SynStream {
            stream_id: 1,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: enc.encode(&headers).into(),
        }
        .encode(&mut out);
        c_wr.write_all(&out).await.unwrap();
        let payload: Vec<u8> = (0..1 << 20).map(|i| (i % 241) as u8).collect();
        let expected = payload.clone();
        let sender = tokio::spawn(async move {
            for (i, chunk) in payload.chunks(32 * 1024).enumerate() {
                let mut out = Vec::new();
                Frame::Data {
                    stream_id: 1,
                    fin: i == 31,
                    data: Bytes::copy_from_slice(chunk),
                }
                .encode(&mut out);
                c_wr.write_all(&out).await.unwrap();
            }
            c_wr
        });
        // Drain what the server sends so it never blocks on us.
        let drain = tokio::spawn(async move {
            let mut buf = BytesMut::new();
            let mut frames = Vec::new();
            loop {
                while let Some((f, n)) = Frame::parse(&buf).unwrap() {
                    buf.advance(n);
                    frames.push(f);
                }
                buf.reserve(4096);
                if c_rd.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                    return frames;
                }
            }
        });
        let mut s = session.accept().await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let buffered = session.buffered(1).unwrap();
        assert!(
            buffered > 0 && buffered <= DEFAULT_WINDOW as usize + 32 * 1024,
            "{buffered}"
        );
        assert!(!sender.is_finished(), "the client should be held back");
        let mut got = Vec::new();
        while let Some(b) = s.read().await {
            got.extend_from_slice(&b);
        }
        assert_eq!(got, expected);
        let _c_wr = sender.await.unwrap();
        s.finish().await.unwrap();
        drop(s);
        session.close().await;
        let frames = drain.await.unwrap();
        assert!(
            !frames.iter().any(|f| matches!(f, Frame::RstStream { .. })),
            "{frames:?}"
        );
        // WINDOW_UPDATEs were sent as the data was consumed (spdystream
        // ignores them; a compliant client needs them).
        let credited: u64 = frames
            .iter()
            .filter_map(|f| match f {
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta,
                } => Some(u64::from(*delta)),
                _ => None,
            })
            .sum();
        assert!(
            credited >= (1 << 20) - u64::from(DEFAULT_WINDOW),
            "{credited}"
        );
        assert!(matches!(
            frames.last(),
            Some(Frame::GoAway {
                status: GoAwayStatus::Ok,
                ..
            })
        ));
    }

    #[tokio::test]
    async fn strict_overrun_gets_rst_flow_control_error() {
        let (mut c, io) = Client::new();
        let config = Config {
            strict_flow_control: true,
            ..Config::default()
        };
        let mut session = Session::with_config(io, config);
        c.open(1, "stdin", false).await;
        let mut s = session.accept().await.unwrap();
        s.reply(false).await.unwrap();
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        // 64 KiB fits the window exactly; one byte more does not.
        for _ in 0..4 {
            c.data(1, &[1u8; 16 * 1024], false).await;
        }
        c.data(1, &[2u8], false).await;
        c.expect(Frame::RstStream {
            stream_id: 1,
            status: RstStatus::FlowControlError,
        })
        .await;
        // The data received within the window is still readable.
        let mut n = 0;
        while let Some(b) = s.read().await {
            n += b.len();
        }
        assert_eq!(n, 64 * 1024);
        assert!(s.write(b"x").await.is_err());
        // The session itself is fine.
        c.send(Frame::Ping { id: 1 }).await;
        c.expect(Frame::Ping { id: 1 }).await;
    }

    #[tokio::test]
    async fn window_updates_follow_consumption() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdin", false).await;
        let mut s = session.accept().await.unwrap();
        s.reply(false).await.unwrap();
        c.data(1, &[0u8; 20 * 1024], false).await;
        c.data(1, &[0u8; 20 * 1024], false).await;
        s.read().await.unwrap();
        s.read().await.unwrap();
        assert_eq!(strip(c.recv_any().await), Some(reply(1, false)));
        let mut got = Vec::new();
        for _ in 0..2 {
            got.push(c.recv_any().await.unwrap());
        }
        got.sort_by_key(|f| f.stream_id());
        assert_eq!(
            got,
            [
                Frame::WindowUpdate {
                    stream_id: 0,
                    delta: 40 * 1024
                },
                Frame::WindowUpdate {
                    stream_id: 1,
                    delta: 40 * 1024
                },
            ]
        );
    }

    async fn expect_goaway(c: &mut Client, status: GoAwayStatus) {
        loop {
            match c.recv().await {
                Some(Frame::GoAway { status: s, .. }) => {
                    assert_eq!(s, status);
                    break;
                }
                Some(_) => continue,
                None => panic!("EOF before GOAWAY"),
            }
        }
        // Then the server shuts its write side.
        assert_eq!(c.recv().await, None);
    }

    #[tokio::test]
    async fn malformed_bytes_end_the_session() {
        let cases: Vec<Vec<u8>> = vec![
            // SPDY/2 control frame.
            vec![0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1],
            // Control frame over the size bound.
            vec![0x80, 0x03, 0x00, 0x01, 0, 0xff, 0xff, 0xff],
            // RST_STREAM with a wrong length.
            vec![0x80, 0x03, 0x00, 0x03, 0, 0, 0, 4, 0, 0, 0, 1],
            // SYN_STREAM whose header block is not zlib.
            vec![
                0x80, 0x03, 0x00, 0x01, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ],
            // DATA on stream 0.
            vec![0, 0, 0, 0, 0, 0, 0, 1, 9],
            // Noise. (Noise that happens to look like a DATA frame header
            // within the bounds is a partial frame, not an error.)
            b"\xff\xfe\xfd\xfc garbage".to_vec(),
        ];
        for bytes in cases {
            let (mut c, io) = Client::new();
            let mut session = Session::new(io);
            c.io.write_all(&bytes).await.unwrap();
            expect_goaway(&mut c, GoAwayStatus::ProtocolError).await;
            assert!(timeout(T, session.accept()).await.unwrap().is_none());
            assert!(session.is_closing());
        }
    }

    #[tokio::test]
    async fn bad_stream_ids_and_header_bomb_end_the_session() {
        // Non-increasing id.
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(5, "stdin", false).await;
        c.open(3, "stdout", false).await;
        expect_goaway(&mut c, GoAwayStatus::ProtocolError).await;
        drop(session.accept().await);

        // Even (server-side) id.
        let (mut c, io) = Client::new();
        let _session = Session::new(io);
        c.open(2, "stdin", false).await;
        expect_goaway(&mut c, GoAwayStatus::ProtocolError).await;

        // A header block inflating past the bound.
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        let bomb = c.enc.compress(&vec![0u8; 2 << 20]);
        assert!(bomb.len() < DEFAULT_MAX_DECOMPRESSED);
        c.send(Frame::SynStream {
            stream_id: 1,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block: bomb.into(),
        })
        .await;
        expect_goaway(&mut c, GoAwayStatus::ProtocolError).await;
        assert!(session.accept().await.is_none());
    }

    #[tokio::test]
    async fn close_flushes_then_goaway() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdout", false).await;
        let s = session.accept().await.unwrap();
        s.write(&[5u8; 40 * 1024]).await.unwrap();
        s.finish().await.unwrap();
        let closer = tokio::spawn(async move {
            session.close().await;
            session
        });
        let mut n = 0;
        let mut saw_fin = false;
        loop {
            match c.recv().await {
                Some(Frame::SynReply { .. }) => {}
                Some(Frame::Data { data, fin, .. }) => {
                    n += data.len();
                    saw_fin |= fin;
                }
                Some(Frame::GoAway {
                    last_good_stream_id,
                    status,
                }) => {
                    assert_eq!((last_good_stream_id, status), (1, GoAwayStatus::Ok));
                    break;
                }
                f => panic!("unexpected {f:?}"),
            }
        }
        assert_eq!((n, saw_fin), (40 * 1024, true));
        assert_eq!(c.recv().await, None);
        let mut session = closer.await.unwrap();
        assert!(session.accept().await.is_none());
        assert!(s.write(b"x").await.is_err());
    }

    #[tokio::test]
    async fn dropping_handles_resets_unfinished_streams() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdin", false).await;
        c.open(3, "stdout", false).await;
        let stdin = session.accept().await.unwrap();
        let stdout = session.accept().await.unwrap();
        stdin.reply(false).await.unwrap();
        stdout.reply(false).await.unwrap();
        stdout.finish().await.unwrap();
        let (r, w) = stdin.split();
        let w2 = w.clone();
        drop(w);
        drop(r);
        drop(stdout); // finished: no RST
        let mut frames = Vec::new();
        drop(w2); // last handle of stream 1: RST CANCEL
        c.send(Frame::Ping { id: 11 }).await;
        loop {
            let f = strip(c.recv().await).unwrap();
            if f == (Frame::Ping { id: 11 }) {
                break;
            }
            frames.push(f);
        }
        assert_eq!(
            frames,
            [
                reply(1, false),
                reply(3, false),
                Frame::Data {
                    stream_id: 3,
                    fin: true,
                    data: Bytes::new()
                },
                Frame::RstStream {
                    stream_id: 1,
                    status: RstStatus::Cancel
                },
            ]
        );
        // Data for the forgotten stream is ignored quietly.
        c.data(1, b"late", false).await;
        c.send(Frame::Ping { id: 13 }).await;
        c.expect(Frame::Ping { id: 13 }).await;
        // Dropping the Session, the last handle, closes.
        drop(session);
        expect_goaway(&mut c, GoAwayStatus::Ok).await;
    }

    #[tokio::test]
    async fn explicit_reset_and_client_reset() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdin", false).await;
        c.open(3, "data", false).await;
        let mut a = session.accept().await.unwrap();
        let mut b = session.accept().await.unwrap();
        a.reply(false).await.unwrap();
        b.reply(false).await.unwrap();
        a.reset(RstStatus::InternalError);
        assert_eq!(a.read().await, None);
        assert!(a.write(b"x").await.is_err());
        // Client data then RST: the data is still delivered, then None.
        c.data(3, b"before reset", false).await;
        c.send(Frame::RstStream {
            stream_id: 3,
            status: RstStatus::Cancel,
        })
        .await;
        assert_eq!(b.read().await.unwrap(), &b"before reset"[..]);
        assert_eq!(b.read().await, None);
        assert!(b.write(b"x").await.is_err());
        let mut frames = Vec::new();
        c.send(Frame::Ping { id: 1 }).await;
        loop {
            let f = strip(c.recv().await).unwrap();
            if f == (Frame::Ping { id: 1 }) {
                break;
            }
            frames.push(f);
        }
        assert_eq!(
            frames,
            [
                reply(1, false),
                reply(3, false),
                Frame::RstStream {
                    stream_id: 1,
                    status: RstStatus::InternalError
                },
            ]
        );
    }

    #[tokio::test]
    async fn unknown_stream_data_gets_invalid_stream() {
        let (mut c, io) = Client::new();
        let _session = Session::new(io);
        c.data(9, b"x", false).await;
        c.expect(Frame::RstStream {
            stream_id: 9,
            status: RstStatus::InvalidStream,
        })
        .await;
    }

    #[tokio::test]
    async fn client_goaway_ends_accept_but_not_streams() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdin", false).await;
        c.send(Frame::GoAway {
            last_good_stream_id: 0,
            status: GoAwayStatus::Ok,
        })
        .await;
        let mut s = session.accept().await.unwrap();
        assert!(session.accept().await.is_none());
        c.data(1, b"still here", true).await;
        assert_eq!(s.read().await.unwrap(), &b"still here"[..]);
        s.write(b"reply").await.unwrap();
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        c.expect(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"reply"),
        })
        .await;
    }

    #[tokio::test]
    async fn dropped_session_refuses_streams() {
        let (mut c, io) = Client::new();
        let mut session = Session::new(io);
        c.open(1, "stdin", false).await;
        let s = session.accept().await.unwrap();
        c.open(3, "stdout", false).await;
        c.send(Frame::Ping { id: 1 }).await;
        c.expect(Frame::Ping { id: 1 }).await; // stream 3 is now pending
        drop(session);
        c.expect(Frame::RstStream {
            stream_id: 3,
            status: RstStatus::RefusedStream,
        })
        .await;
        c.open(5, "stderr", false).await;
        c.expect(Frame::RstStream {
            stream_id: 5,
            status: RstStatus::RefusedStream,
        })
        .await;
        // The accepted stream keeps working.
        s.write(b"ok").await.unwrap();
        assert_eq!(strip(c.recv().await), Some(reply(1, false)));
        c.expect(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from_static(b"ok"),
        })
        .await;
    }

    #[tokio::test]
    async fn eof_ends_everything() {
        let (c, io) = Client::new();
        let mut session = Session::new(io);
        let mut c = c;
        c.open(1, "stdin", false).await;
        let (mut r, w) = session.accept().await.unwrap().split();
        drop(c);
        assert_eq!(timeout(T, r.read()).await.unwrap(), None);
        assert!(timeout(T, session.accept()).await.unwrap().is_none());
        timeout(T, session.close()).await.unwrap();
        assert!(w.write(b"x").await.is_err());
    }

    #[tokio::test]
    async fn idle_timeout_closes() {
        let (mut c, io) = Client::new();
        let config = Config {
            idle_timeout: Some(Duration::from_millis(100)),
            ..Config::default()
        };
        let _session = Session::with_config(io, config);
        expect_goaway(&mut c, GoAwayStatus::Ok).await;
    }

    /// Mutated client byte streams against a whole session: every one ends
    /// (GOAWAY or EOF) without a panic in the session's tasks (a panicked
    /// reader would leave `accept` hanging).
    #[tokio::test]
    async fn session_survives_mutated_input() {
        use crate::stream::spdy::tests::{Rng, mutated_session_bytes};
        let mut rng = Rng(0x0123_4567_89ab_cdef);
        for _ in 0..300 {
            let data = mutated_session_bytes(&mut rng);
            let (mut c, io) = Client::new();
            let mut session = Session::new(io);
            c.io.write_all(&data).await.unwrap();
            c.io.shutdown().await.unwrap();
            timeout(T, async {
                while let Some(mut s) = session.accept().await {
                    let _ = s.reply(false).await;
                    let _ = s.write(b"x").await;
                    let _ = timeout(Duration::from_millis(1), s.read()).await;
                }
            })
            .await
            .expect("session did not end");
            timeout(T, async {
                let mut b = vec![0u8; 4096];
                while c.io.read(&mut b).await.unwrap_or(0) > 0 {}
            })
            .await
            .expect("server did not hang up");
        }
    }

    #[tokio::test]
    async fn too_many_streams_are_refused() {
        let (mut c, io) = Client::new();
        let config = Config {
            max_streams: 2,
            ..Config::default()
        };
        let mut session = Session::with_config(io, config);
        for id in [1, 3, 5] {
            c.open(id, "data", false).await;
        }
        c.expect(Frame::RstStream {
            stream_id: 5,
            status: RstStatus::RefusedStream,
        })
        .await;
        assert_eq!(session.accept().await.unwrap().id(), 1);
        assert_eq!(session.accept().await.unwrap().id(), 3);
    }
}
