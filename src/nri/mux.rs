//! NRI's connection multiplexer: one Unix socket (the trunk) carries two
//! logical byte streams, each a ttrpc connection of its own. Conn 1 carries
//! the Plugin service (the runtime calls the plugin), conn 2 the Runtime
//! service (the plugin calls the runtime). Every write becomes one frame:
//! a big-endian u32 conn id, a big-endian u32 payload length, the payload.
//! Frames for ids nobody opened are dropped, as the Go side does; opening a
//! conn is not signalled on the wire.
//!
//! Go's reader hands each frame to one `Read` whose buffer must hold it, and
//! ttrpc-go reads through a buffer of a whole ttrpc message, so a frame is
//! never longer than a ttrpc header plus its largest message.

use bytes::{Buf, Bytes, BytesMut};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The logical connection of the Plugin service (runtime → plugin).
pub const PLUGIN_SERVICE_CONN: u32 = 1;
/// The logical connection of the Runtime service (plugin → runtime).
pub const RUNTIME_SERVICE_CONN: u32 = 2;

const HEADER_LEN: usize = 8;
/// A ttrpc message header (10 bytes) and ttrpc's largest message (4 MiB).
pub const MAX_PAYLOAD: usize = 10 + (4 << 20);

/// The trunk's reader and writer tasks; dropping it closes both logical
/// connections and the socket.
pub struct Trunk {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    closed: watch::Receiver<bool>,
}

impl Trunk {
    /// Resolves once the trunk is closed (the peer went away, a frame was
    /// malformed, or `close` was called).
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|c| *c).await;
    }

    pub fn is_closed(&self) -> bool {
        *self.closed.borrow()
    }

    pub fn close(&self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl Drop for Trunk {
    fn drop(&mut self) {
        self.close();
    }
}

/// Splits `stream` into the two logical connections `ids` (in that order).
pub fn multiplex(stream: UnixStream, ids: [u32; 2]) -> (Trunk, [Conn; 2]) {
    let (mut read_half, mut write_half) = stream.into_split();
    let (closed_tx, closed) = watch::channel(false);
    let closed_tx = Arc::new(closed_tx);
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<(u32, Bytes)>();
    let (in0, rx0) = mpsc::unbounded_channel::<Bytes>();
    let (in1, rx1) = mpsc::unbounded_channel::<Bytes>();

    let done = closed_tx.clone();
    let reader = tokio::spawn(async move {
        let mut header = [0u8; HEADER_LEN];
        loop {
            if read_half.read_exact(&mut header).await.is_err() {
                break;
            }
            let id = u32::from_be_bytes(header[0..4].try_into().expect("4 bytes"));
            let len = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes")) as usize;
            if len > MAX_PAYLOAD {
                tracing::warn!(len, "NRI: oversized frame from plugin; closing");
                break;
            }
            let mut payload = BytesMut::zeroed(len);
            if read_half.read_exact(&mut payload).await.is_err() {
                break;
            }
            let target = match id {
                _ if id == ids[0] => &in0,
                _ if id == ids[1] => &in1,
                _ => continue,
            };
            if !payload.is_empty() {
                let _ = target.send(payload.freeze());
            }
        }
        // Dropping the senders ends both logical connections' reads.
        let _ = done.send(true);
    });
    let done = closed_tx.clone();
    let writer = tokio::spawn(async move {
        while let Some((id, data)) = out_rx.recv().await {
            let mut frame = BytesMut::with_capacity(HEADER_LEN + data.len());
            frame.extend_from_slice(&id.to_be_bytes());
            frame.extend_from_slice(&(data.len() as u32).to_be_bytes());
            frame.extend_from_slice(&data);
            if write_half.write_all(&frame).await.is_err() {
                break;
            }
        }
        let _ = done.send(true);
    });
    let conns = [
        Conn::new(ids[0], rx0, out_tx.clone(), closed.clone()),
        Conn::new(ids[1], rx1, out_tx, closed.clone()),
    ];
    (
        Trunk {
            reader,
            writer,
            closed,
        },
        conns,
    )
}

/// One logical connection: a byte stream for ttrpc.
pub struct Conn {
    id: u32,
    rx: mpsc::UnboundedReceiver<Bytes>,
    pending: Bytes,
    tx: mpsc::UnboundedSender<(u32, Bytes)>,
    closed: watch::Receiver<bool>,
}

impl Conn {
    fn new(
        id: u32,
        rx: mpsc::UnboundedReceiver<Bytes>,
        tx: mpsc::UnboundedSender<(u32, Bytes)>,
        closed: watch::Receiver<bool>,
    ) -> Conn {
        Conn {
            id,
            rx,
            pending: Bytes::new(),
            tx,
            closed,
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pending.is_empty() {
            match self.rx.poll_recv(cx) {
                Poll::Ready(Some(data)) => self.pending = data,
                // EOF: the trunk is gone.
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if *self.closed.borrow() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        // Frames are queued whole to the trunk's writer, which keeps them
        // in order and never interleaves two.
        for chunk in data.chunks(MAX_PAYLOAD) {
            if self
                .tx
                .send((self.id, Bytes::copy_from_slice(chunk)))
                .is_err()
            {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
        }
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_are_routed_by_conn_id_and_unknown_ids_dropped() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let (_trunk, [mut one, mut two]) = multiplex(ours, [1, 2]);
        // The peer writes to conn 2, then an id nobody opened, then conn 1.
        for (id, payload) in [(2u32, &b"to-two"[..]), (7, b"lost"), (1, b"to-one")] {
            theirs.write_all(&id.to_be_bytes()).await.unwrap();
            theirs
                .write_all(&(payload.len() as u32).to_be_bytes())
                .await
                .unwrap();
            theirs.write_all(payload).await.unwrap();
        }
        let mut buf = [0u8; 6];
        one.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"to-one");
        two.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"to-two");

        one.write_all(b"hello").await.unwrap();
        let mut frame = [0u8; 13];
        theirs.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame[0..4], &1u32.to_be_bytes());
        assert_eq!(&frame[4..8], &5u32.to_be_bytes());
        assert_eq!(&frame[8..], b"hello");
    }

    #[tokio::test]
    async fn peer_closing_ends_reads_and_marks_the_trunk_closed() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let (trunk, [mut one, _two]) = multiplex(ours, [1, 2]);
        drop(theirs);
        let mut buf = Vec::new();
        assert_eq!(one.read_to_end(&mut buf).await.unwrap(), 0);
        trunk.closed().await;
        assert!(trunk.is_closed());
    }
}
