//! The client end: against crius's own server session, and against a
//! hand-written server that checks the frames one by one.

use super::*;
use tokio::io::DuplexStream;
use tokio::time::timeout;

const T: Duration = Duration::from_secs(10);

fn headers(streamtype: &str) -> Headers {
    [("streamtype", streamtype)].into_iter().collect()
}

/// A client session and a server session on one in-memory pipe.
fn pair() -> (Session, Session) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    (Session::client(a), Session::new(b))
}

#[tokio::test]
async fn streams_open_in_order_and_carry_data_both_ways() {
    let (client, mut server) = pair();
    let error = client.open(headers("error")).unwrap();
    let mut stdin = client.open(headers("stdin")).unwrap();
    assert_eq!((error.id(), stdin.id()), (1, 3), "client ids are odd");
    let first = server.accept().await.unwrap();
    let mut second = server.accept().await.unwrap();
    assert_eq!(first.header("streamtype"), Some("error"));
    assert_eq!(second.header("streamtype"), Some("stdin"));
    first.reply(false).await.unwrap();
    second.reply(false).await.unwrap();
    timeout(T, error.replied()).await.unwrap().unwrap();
    timeout(T, stdin.replied()).await.unwrap().unwrap();

    stdin.write(b"to the server").await.unwrap();
    stdin.finish().await.unwrap();
    assert_eq!(second.read().await.as_deref(), Some(&b"to the server"[..]));
    assert_eq!(second.read().await, None, "FIN ends the server's reads");
    second.write(b"to the client").await.unwrap();
    second.finish().await.unwrap();
    assert_eq!(stdin.read().await.as_deref(), Some(&b"to the client"[..]));
    assert_eq!(stdin.read().await, None);
    assert!(stdin.finished_by_peer());
    first.finish().await.unwrap();
    let mut error = error;
    assert_eq!(error.read().await, None);

    // The server closing ends the client's session too.
    drop((first, second, error, stdin));
    server.close().await;
    timeout(T, client.closed()).await.unwrap();
    assert!(client.open(headers("late")).is_err());
}

#[tokio::test]
async fn a_refused_stream_is_an_error() {
    let (client, mut server) = pair();
    let stream = client.open(headers("bogus")).unwrap();
    let accepted = server.accept().await.unwrap();
    accepted.reset(RstStatus::Cancel);
    let err = timeout(T, stream.replied()).await.unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused);
    let mut stream = stream;
    assert_eq!(stream.read().await, None);
    assert!(!stream.finished_by_peer(), "a reset is no FIN");
    // And a server session opens nothing.
    assert_eq!(
        server.open(headers("x")).unwrap_err().kind(),
        io::ErrorKind::Unsupported
    );
}

/// 32 MiB from crius's server: the client's WINDOW_UPDATEs switch the
/// server to flow control, and returning window as it reads keeps the data
/// flowing (a client that returned none would stall after 64 KiB).
#[tokio::test]
async fn bulk_data_flows_under_flow_control() {
    let (client, mut server) = pair();
    let mut stdout = client.open(headers("stdout")).unwrap();
    let stream = server.accept().await.unwrap();
    const LEN: usize = 32 << 20;
    let writer = tokio::spawn(async move {
        let chunk: Vec<u8> = (0..256 * 1024).map(|i| (i % 251) as u8).collect();
        for _ in 0..LEN / chunk.len() {
            stream.write(&chunk).await.unwrap();
        }
        stream.finish().await.unwrap();
        stream
    });
    timeout(T, stdout.replied()).await.unwrap().unwrap();
    let mut total = 0;
    let mut sum = 0u64;
    while let Some(data) = timeout(T, stdout.read()).await.expect("data keeps flowing") {
        sum += data.iter().map(|b| u64::from(*b)).sum::<u64>();
        total += data.len();
    }
    assert_eq!(total, LEN);
    let per_chunk: u64 = (0..256 * 1024u64).map(|i| i % 251).sum();
    assert_eq!(sum, per_chunk * (LEN / (256 * 1024)) as u64);
    let _server_stream = writer.await.unwrap();
    assert!(
        server.shared.lock().send_flow_control,
        "the client's WINDOW_UPDATEs put the server's windows in force"
    );
}

/// A hand-written server: frames in and out, header blocks decoded.
struct Peer {
    io: DuplexStream,
    enc: HeaderEncoder,
    dec: HeaderDecoder,
    buf: BytesMut,
}

impl Peer {
    fn new() -> (Peer, Session) {
        let (a, b) = tokio::io::duplex(256 * 1024);
        let peer = Peer {
            io: b,
            enc: HeaderEncoder::new(),
            dec: HeaderDecoder::new(),
            buf: BytesMut::new(),
        };
        (peer, Session::client(a))
    }

    async fn send(&mut self, f: Frame) {
        let mut out = Vec::new();
        f.encode(&mut out);
        self.io.write_all(&out).await.unwrap();
    }

    async fn reply(&mut self, stream_id: u32) {
        let header_block = self.enc.encode(&Headers::new()).into();
        self.send(Frame::SynReply {
            stream_id,
            fin: false,
            header_block,
        })
        .await;
    }

    /// The next frame, `None` at EOF or after `wait` without one. A
    /// SYN_STREAM's header block is replaced by its decoded streamtype.
    async fn recv_within(&mut self, wait: Duration) -> Option<Frame> {
        timeout(wait, async {
            loop {
                if let Some((f, n)) = Frame::parse(&self.buf).unwrap() {
                    self.buf.advance(n);
                    return Some(match f {
                        Frame::SynStream {
                            stream_id,
                            header_block,
                            ..
                        } => {
                            let h = self.dec.decode(&header_block).unwrap();
                            let kind = h.get("streamtype").unwrap_or("").to_string();
                            Frame::open(stream_id, Bytes::from(kind))
                        }
                        f => f,
                    });
                }
                self.buf.reserve(64 * 1024);
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        })
        .await
        .unwrap_or(None)
    }

    async fn recv(&mut self) -> Frame {
        self.recv_within(T).await.expect("a frame")
    }

    /// Counts DATA bytes for `id` until nothing comes for a while.
    async fn drain_data(&mut self, id: u32) -> usize {
        let mut n = 0;
        while let Some(f) = self.recv_within(Duration::from_millis(300)).await {
            if let Frame::Data {
                stream_id, data, ..
            } = f
                && stream_id == id
            {
                n += data.len();
            }
        }
        n
    }
}

fn syn(stream_id: u32, kind: &'static str) -> Frame {
    Frame::open(stream_id, Bytes::from_static(kind.as_bytes()))
}

#[tokio::test]
async fn syn_streams_pings_and_server_streams() {
    let (mut peer, client) = Peer::new();
    let _error = client.open(headers("error")).unwrap();
    let _stdout = client.open(headers("stdout")).unwrap();
    assert_eq!(peer.recv().await, syn(1, "error"));
    assert_eq!(peer.recv().await, syn(3, "stdout"));
    // A server's ping (even id) is echoed; an odd id would answer a ping
    // of ours, and there is none.
    peer.send(Frame::Ping { id: 1 }).await;
    peer.send(Frame::Ping { id: 2 }).await;
    assert_eq!(peer.recv().await, Frame::Ping { id: 2 });
    // A stream the server opens is refused; the session goes on.
    let header_block = peer.enc.encode(&headers("push")).into();
    peer.send(Frame::open(2, header_block)).await;
    assert_eq!(
        peer.recv().await,
        Frame::RstStream {
            stream_id: 2,
            status: RstStatus::RefusedStream
        }
    );
    // DATA for a stream nobody opened is an invalid stream.
    peer.send(Frame::Data {
        stream_id: 7,
        fin: false,
        data: Bytes::from_static(b"?"),
    })
    .await;
    assert_eq!(
        peer.recv().await,
        Frame::RstStream {
            stream_id: 7,
            status: RstStatus::InvalidStream
        }
    );
    assert!(!client.is_closing());
}

/// What the client reads is credited back in steps of at least half a
/// window (updates not yet sent are merged), on the stream and the session.
#[tokio::test]
async fn reading_returns_window() {
    let (mut peer, client) = Peer::new();
    let mut stdout = client.open(headers("stdout")).unwrap();
    assert_eq!(peer.recv().await, syn(1, "stdout"));
    peer.reply(1).await;
    timeout(T, stdout.replied()).await.unwrap().unwrap();
    for _ in 0..4 {
        peer.send(Frame::Data {
            stream_id: 1,
            fin: false,
            data: Bytes::from(vec![7u8; 16 * 1024]),
        })
        .await;
    }
    let mut read = 0;
    while read < 64 * 1024 {
        read += stdout.read().await.unwrap().len();
    }
    let mut credited = [0u32; 2];
    while credited != [64 * 1024; 2] {
        match peer.recv().await {
            Frame::WindowUpdate { stream_id, delta } => {
                assert!(delta >= 32 * 1024, "half-window steps: {delta}");
                credited[if stream_id == 0 { 0 } else { 1 }] += delta;
            }
            f => panic!("unexpected {f:?}"),
        }
    }
}

/// Once the server shows it keeps windows (a WINDOW_UPDATE), the client
/// keeps them too: it stops at the window and goes on when credited.
#[tokio::test]
async fn send_windows_hold_once_the_peer_keeps_them() {
    let (mut peer, client) = Peer::new();
    let stdin = client.open(headers("stdin")).unwrap();
    assert_eq!(peer.recv().await, syn(1, "stdin"));
    peer.reply(1).await;
    timeout(T, stdin.replied()).await.unwrap().unwrap();
    peer.send(Frame::WindowUpdate {
        stream_id: 1,
        delta: 1,
    })
    .await;
    // Let the reader see it before writing.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let (_r, w) = stdin.split();
    let writer = tokio::spawn(async move {
        w.write(&vec![1u8; 200 * 1024]).await.unwrap();
        w
    });
    // The session window (64 KiB) is the tighter one.
    assert_eq!(peer.drain_data(1).await, 64 * 1024);
    for id in [0, 1] {
        peer.send(Frame::WindowUpdate {
            stream_id: id,
            delta: 200 * 1024,
        })
        .await;
    }
    assert_eq!(peer.drain_data(1).await, 136 * 1024);
    timeout(T, writer).await.unwrap().unwrap();
}
