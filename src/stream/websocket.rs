//! Exec, attach and port-forward over WebSocket (RFC 6455, through
//! tungstenite) with Kubernetes' channel protocols: every message starts
//! with its channel — 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize for
//! remote commands; for port-forward 2i data and 2i+1 error of the i-th
//! requested port, the first message of each starting with the port
//! (little-endian u16). `v5.channel.k8s.io` adds a close signal (a message
//! `[255, channel]` closes that channel: stdin's end). The `base64.` forms
//! send text messages: the channel as an ASCII digit, then the data in
//! base64.

use super::remotecommand::{self, Command, ResizeParser};
use super::status;
use crate::container::streams::ProcessIo;
use crate::runtime::Runtime;
use base64::Engine;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

/// A channel protocol's framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `channel.k8s.io` (v1: the error channel carries text).
    V1,
    /// `base64.channel.k8s.io`.
    Base64V1,
    /// `v4.channel.k8s.io`: a Status on the error channel.
    V4,
    V4Base64,
    /// `v5.channel.k8s.io`: v4 and the close signal.
    V5,
}

impl Framing {
    /// Remote command protocols, most preferred first.
    pub const REMOTE_COMMAND: &[(&str, Framing)] = &[
        ("v5.channel.k8s.io", Framing::V5),
        ("v4.channel.k8s.io", Framing::V4),
        ("v4.base64.channel.k8s.io", Framing::V4Base64),
        ("channel.k8s.io", Framing::V1),
        ("base64.channel.k8s.io", Framing::Base64V1),
    ];
    /// Port-forward protocols.
    pub const PORT_FORWARD: &[(&str, Framing)] = &[
        ("v4.channel.k8s.io", Framing::V4),
        ("v4.base64.channel.k8s.io", Framing::V4Base64),
        ("portforward.k8s.io", Framing::V4),
        ("channel.k8s.io", Framing::V4),
        ("base64.channel.k8s.io", Framing::V4Base64),
    ];

    /// The first of the client's offered protocols (`Sec-WebSocket-Protocol`
    /// values) that `supported` has; with none offered, the plain binary
    /// framing of the channel protocol.
    pub fn choose(
        offered: &[String],
        supported: &[(&'static str, Framing)],
    ) -> Option<(&'static str, Framing)> {
        if offered.is_empty() {
            return Some(("", Framing::V1));
        }
        offered
            .iter()
            .find_map(|o| supported.iter().find(|(name, _)| name == o).copied())
    }

    fn base64(self) -> bool {
        matches!(self, Framing::Base64V1 | Framing::V4Base64)
    }

    fn encode(self, channel: u8, data: &[u8]) -> Message {
        if self.base64() {
            let mut text = String::with_capacity(1 + data.len() * 4 / 3 + 4);
            text.push((b'0' + channel) as char);
            base64::engine::general_purpose::STANDARD.encode_string(data, &mut text);
            Message::text(text)
        } else {
            let mut bytes = Vec::with_capacity(data.len() + 1);
            bytes.push(channel);
            bytes.extend_from_slice(data);
            Message::binary(bytes)
        }
    }

    /// (channel, data) of a client message; `None` for what carries no
    /// channel data (pings, malformed frames).
    fn decode(self, message: &Message) -> Option<(u8, Vec<u8>)> {
        match message {
            Message::Binary(bytes) if !self.base64() && !bytes.is_empty() => {
                Some((bytes[0], bytes[1..].to_vec()))
            }
            Message::Text(text) if self.base64() && !text.is_empty() => {
                let channel = text.as_bytes()[0].checked_sub(b'0')?;
                let data = base64::engine::general_purpose::STANDARD
                    .decode(&text.as_bytes()[1..])
                    .ok()?;
                Some((channel, data))
            }
            _ => None,
        }
    }
}

const CLOSE_SIGNAL: u8 = 255;

fn normal_close() -> Message {
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

/// Runs an exec or attach over `ws`.
pub async fn remote_command<IO>(
    ws: WebSocketStream<IO>,
    framing: Framing,
    runtime: Arc<Runtime>,
    command: Command,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (stdout_tx, mut stdout_rx) = mpsc::channel::<Bytes>(16);
    let (stderr_tx, mut stderr_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel::<(u16, u16)>(4);
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let io = ProcessIo {
        stdin: command.stdin.then_some(stdin_rx),
        stdout: command.stdout.then_some(stdout_tx),
        stderr: (command.stderr && !command.tty).then_some(stderr_tx),
        resize: command.tty.then_some(resize_rx),
        gone: gone_rx,
    };
    // Client messages: input, resizes, the close signal; the end of the
    // connection means the client is gone.
    let reader = tokio::spawn(async move {
        let mut stdin = Some(stdin_tx);
        let mut resizes = ResizeParser::default();
        while let Some(Ok(message)) = source.next().await {
            if message.is_close() {
                break;
            }
            let Some((channel, data)) = framing.decode(&message) else {
                continue;
            };
            match channel {
                0 => {
                    if let Some(tx) = &stdin
                        && tx.send(Bytes::from(data)).await.is_err()
                    {
                        stdin = None;
                    }
                }
                4 => {
                    for size in resizes.push(&data) {
                        let _ = resize_tx.send(size).await;
                    }
                }
                CLOSE_SIGNAL if framing == Framing::V5 && data.first() == Some(&0) => {
                    stdin = None;
                }
                _ => {}
            }
        }
        drop(gone_tx);
    });
    let run = remotecommand::run(&runtime, &command, io);
    let forward = async {
        let (mut out_open, mut err_open) = (true, true);
        while out_open || err_open {
            let (channel, data) = tokio::select! {
                data = stdout_rx.recv(), if out_open => match data {
                    Some(d) => (1, d),
                    None => { out_open = false; continue; }
                },
                data = stderr_rx.recv(), if err_open => match data {
                    Some(d) => (2, d),
                    None => { err_open = false; continue; }
                },
            };
            if sink.send(framing.encode(channel, &data)).await.is_err() {
                return false;
            }
        }
        true
    };
    let (result, connected) = tokio::join!(run, forward);
    if connected {
        let status = match framing {
            Framing::V1 | Framing::Base64V1 => status::status_text(&result),
            _ => Some(status::status_json(&result, &command.words())),
        };
        if let Some(status) = status {
            let _ = sink.send(framing.encode(3, &status)).await;
        }
        // A normal closure (1000): clients read any other as an error.
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    }
    reader.abort();
}

/// Forwards each of `ports` over its channel pair.
pub async fn port_forward<IO>(
    ws: WebSocketStream<IO>,
    framing: Framing,
    sandbox_id: String,
    netns: Option<std::path::PathBuf>,
    ports: Vec<u16>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(32);
    let mut to_pod: Vec<mpsc::Sender<Bytes>> = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (data, error) = ((2 * i) as u8, (2 * i + 1) as u8);
        let (tx, mut rx) = mpsc::channel::<Bytes>(16);
        to_pod.push(tx);
        let out = out_tx.clone();
        let (netns, sandbox) = (netns.clone(), sandbox_id.clone());
        tasks.spawn(async move {
            // Each channel's first message names its port.
            let prefix = port.to_le_bytes().to_vec();
            let _ = out.send((data, prefix.clone())).await;
            let _ = out.send((error, prefix)).await;
            let conn = match super::portforward::connect(netns, port).await {
                Ok(conn) => conn,
                Err(e) => {
                    let text = super::portforward::connect_error(&sandbox, port, &e);
                    let _ = out.send((error, text.into_bytes())).await;
                    return;
                }
            };
            let (mut from, mut to) = conn.into_split();
            let upstream = async {
                while let Some(bytes) = rx.recv().await {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                let _ = to.shutdown().await;
            };
            let downstream = async {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match from.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if out.send((data, buf[..n].to_vec())).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            };
            // WebSocket has no half-close: a port is done when the pod's
            // side closes (or the client goes), as in kubelet's server.
            tokio::select! {
                () = upstream => {}
                () = downstream => {}
            }
        });
    }
    drop(out_tx);
    let writer = async {
        while let Some((channel, data)) = out_rx.recv().await {
            if sink.send(framing.encode(channel, &data)).await.is_err() {
                return;
            }
        }
        let _ = sink.send(normal_close()).await;
        let _ = sink.close().await;
    };
    let reader = async {
        while let Some(Ok(message)) = source.next().await {
            if message.is_close() {
                break;
            }
            if let Some((channel, data)) = framing.decode(&message)
                && channel % 2 == 0
                && let Some(tx) = to_pod.get(channel as usize / 2)
            {
                let _ = tx.send(Bytes::from(data)).await;
            }
        }
        // The client is gone: stop every connection.
        to_pod.clear();
    };
    tokio::select! {
        () = writer => {}
        () = reader => {}
    }
    tasks.abort_all();
}

/// The bytes carried by `ws`'s binary messages as one byte stream, for a
/// protocol tunnelled through WebSocket (SPDY port-forward).
pub fn byte_stream<IO>(ws: WebSocketStream<IO>) -> tokio::io::DuplexStream
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let (mut from_us, mut to_us) = tokio::io::split(ours);
    let (mut sink, mut source) = ws.split();
    tokio::spawn(async move {
        let inbound = async {
            while let Some(Ok(message)) = source.next().await {
                match message {
                    Message::Binary(bytes) if to_us.write_all(&bytes).await.is_err() => return,
                    Message::Close(_) => return,
                    _ => {}
                }
            }
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_us.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.send(normal_close()).await;
        };
        tokio::select! {
            () = inbound => {}
            () = outbound => {}
        }
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framings_round_trip_and_negotiate() {
        for framing in [Framing::V4, Framing::V4Base64, Framing::V5] {
            let message = framing.encode(1, b"hello");
            assert_eq!(framing.decode(&message), Some((1, b"hello".to_vec())));
        }
        let offered = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            Framing::choose(
                &offered(&["v5.channel.k8s.io", "v4.channel.k8s.io"]),
                Framing::REMOTE_COMMAND
            ),
            Some(("v5.channel.k8s.io", Framing::V5))
        );
        assert_eq!(
            Framing::choose(
                &offered(&["base64.channel.k8s.io"]),
                Framing::REMOTE_COMMAND
            ),
            Some(("base64.channel.k8s.io", Framing::Base64V1))
        );
        assert_eq!(
            Framing::choose(&offered(&["nope"]), Framing::REMOTE_COMMAND),
            None
        );
        assert_eq!(
            Framing::choose(&[], Framing::REMOTE_COMMAND),
            Some(("", Framing::V1))
        );
    }
}
