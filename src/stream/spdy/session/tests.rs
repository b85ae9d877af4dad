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
    let (mut stream_window, mut session_window) = (DEFAULT_WINDOW as i64, DEFAULT_WINDOW as i64);
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
    Frame::open(1, enc.encode(&headers).into()).encode(&mut out);
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
    c.send(Frame::open(1, bomb.into())).await;
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
