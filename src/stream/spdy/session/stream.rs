//! A stream's handles: [`Stream`], split into [`StreamReader`] and
//! [`StreamWriter`]; they only touch the session's shared state.

use super::*;

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
    /// The handles of stream `id`, which the session counts as two.
    pub(super) fn new(id: u32, headers: Headers, shared: &Arc<Shared>) -> Stream {
        Stream {
            headers,
            reader: StreamReader {
                id,
                shared: shared.clone(),
            },
            writer: StreamWriter {
                id,
                shared: shared.clone(),
            },
        }
    }

    pub fn id(&self) -> u32 {
        self.reader.id
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.writer.shared
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

    /// See [`StreamReader::finished_by_peer`].
    pub fn finished_by_peer(&self) -> bool {
        self.reader.finished_by_peer()
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

    /// Whether the peer finished the stream with FIN: once [`read`] has
    /// returned `None`, this tells a clean end from a reset or a lost
    /// connection.
    ///
    /// [`read`]: StreamReader::read
    pub fn finished_by_peer(&self) -> bool {
        self.shared
            .lock()
            .streams
            .get(&self.id)
            .is_some_and(|s| s.recv_fin)
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
