//! The reader task: parses frames, decompresses header blocks and updates
//! the shared state.

use super::*;

/// A session-level protocol violation: GOAWAY PROTOCOL_ERROR.
#[derive(Debug)]
struct Fatal(String);

pub(super) struct Reader {
    shared: Arc<Shared>,
    decoder: HeaderDecoder,
}

impl Reader {
    pub(super) fn new(shared: Arc<Shared>) -> Reader {
        let decoder = HeaderDecoder::with_limit(shared.config.max_header_block);
        Reader { shared, decoder }
    }

    pub(super) async fn run<R: AsyncRead + Unpin>(mut self, mut rd: R) {
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
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                // Decoded to keep the zlib context in step; only a reply to
                // a stream of ours means anything (its headers do not).
                self.decode(&header_block)?;
                let mut st = self.shared.lock();
                if self.shared.role.owns(stream_id)
                    && let Some(s) = st.streams.get_mut(&stream_id)
                {
                    s.peer_replied = true;
                    s.recv_fin |= fin;
                    s.readable.notify_one();
                }
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
                // The peer's parity is its own ping, to echo; ours would
                // answer a ping of ours, and we send none.
                if !self.shared.role.owns(id) {
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
            if id == 0 || self.shared.role.owns(id) {
                return Err(Fatal(format!("SYN_STREAM with an id of ours, {id}")));
            }
            if id <= st.last_peer_id {
                return Err(Fatal(format!(
                    "SYN_STREAM id {id} not above {}",
                    st.last_peer_id
                )));
            }
            st.last_peer_id = id;
            if st.closing.is_some() || st.remote_goaway {
                return Ok(());
            }
            st.last_good_id = id;
            // A client takes no streams from its server (Kubernetes servers
            // open none).
            if !st.session_alive
                || self.shared.role == Role::Client
                || st.streams.len() >= self.shared.config.max_streams
            {
                true
            } else {
                let mut s = StreamState::new(st.initial_send_window, Some(headers), false);
                s.recv_fin = fin;
                // A unidirectional stream is half-closed for us.
                s.sent_fin = unidirectional;
                st.streams.insert(id, s);
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
            let never_opened = shared.never_opened(&st, id);
            match st.streams.get_mut(&id) {
                None => {
                    // Closed and forgotten (ignore), or never opened.
                    shared.consumed(&mut st, None, len);
                    if never_opened {
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
