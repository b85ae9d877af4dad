//! The client end: streams this side opens (odd ids, as client-go's), and
//! the wait for the peer's SYN_REPLY.
//!
//! A client session is the server's session with the roles swapped, so it
//! inherits the same reads, writes, resets, closing and flow control: it
//! returns window through WINDOW_UPDATE as the application consumes data
//! (which crius's server needs once it sees one, and spdystream ignores),
//! and enforces send windows only once the peer shows it keeps them.

use super::*;

impl Session {
    /// Starts a client session on `io` (an upgraded connection) with the
    /// default [`Config`]. Must be called inside a tokio runtime.
    pub fn client<IO>(io: IO) -> Session
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Session::start(io, Config::default(), Role::Client)
    }

    /// [`Session::client`] with explicit tuning.
    pub fn client_with_config<IO>(io: IO, config: Config) -> Session
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Session::start(io, config, Role::Client)
    }

    /// Opens a stream with `headers`: its SYN_STREAM is queued behind
    /// everything already queued, so streams reach the peer in the order
    /// they were opened. Wait for [`Stream::replied`] before writing: a
    /// spdystream peer drops DATA on a stream it has not replied to yet.
    /// Fails on a server session, once the session is closing, or after the
    /// peer's GOAWAY.
    pub fn open(&self, headers: Headers) -> io::Result<Stream> {
        if self.shared.role != Role::Client {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "a server SPDY session opens no streams",
            ));
        }
        let mut st = self.shared.lock();
        if st.closing.is_some() || st.writer_done {
            return Err(closed_err("session is closed"));
        }
        if st.remote_goaway {
            return Err(closed_err("session: the peer sent GOAWAY"));
        }
        let id = st.next_local_id;
        if id > MAX_WINDOW as u32 {
            return Err(closed_err("session has used up its stream ids"));
        }
        st.next_local_id += 2;
        let mut stream = StreamState::new(st.initial_send_window, None, true);
        stream.writers = 1;
        st.streams.insert(id, stream);
        st.handles += 2;
        self.shared.push(
            &mut st,
            Out::Open {
                stream_id: id,
                headers: headers.clone(),
            },
        );
        Ok(Stream::new(id, headers, &self.shared))
    }

    /// Resolves once the session has started closing: closed here, or the
    /// connection ended or failed (a peer's GOAWAY is followed by its
    /// hang-up). Any number of tasks may wait.
    pub async fn closed(&self) {
        let mut rx = self.shared.deadline.subscribe();
        loop {
            if rx.borrow_and_update().is_some() || self.is_closing() {
                return;
            }
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl Stream {
    /// For a stream this side opened: waits for the peer's SYN_REPLY. An
    /// error if the peer reset the stream instead (refused it), or the
    /// session ended first.
    pub async fn replied(&self) -> io::Result<()> {
        let id = self.id();
        let shared = &**self.shared();
        let Some(readable) = shared.lock().streams.get(&id).map(|s| s.readable.clone()) else {
            return Err(closed_err("stream is gone"));
        };
        wait_until(shared, &readable, |st| {
            let ended = st.closing.is_some() || st.reader_done;
            let Some(s) = st.streams.get(&id) else {
                return Some(Err(closed_err("stream is gone")));
            };
            if s.peer_replied {
                Some(Ok(()))
            } else if s.reset {
                Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    "SPDY stream was refused",
                )))
            } else if ended {
                Some(Err(closed_err("session ended before the stream's reply")))
            } else {
                None
            }
        })
        .await
    }
}
