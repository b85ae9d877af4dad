//! A small SPDY/3.1 client, for tests and benchmarks that must drive any
//! CRI streaming server (crius's or a peer's) the way client-go does: the
//! HTTP upgrade, streams opened by their headers, data in and out. It does
//! no flow control of its own (as spdystream does none) and reads frames
//! in the caller's task.

use super::frame::Frame;
use super::headers::{HeaderEncoder, Headers};
use bytes::Bytes;
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client {
    pub conn: TcpStream,
    encoder: HeaderEncoder,
    next_id: u32,
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}: not an http:// URL")]
    Url(String),
    #[error("the server answered {0}")]
    Status(u16),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Upgrades `url` to SPDY/3.1 offering `protocol`; returns the client and
/// the protocol the server chose.
pub async fn connect(url: &str, protocol: &str) -> Result<(Client, String), ConnectError> {
    let bad = || ConnectError::Url(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (host, path) = rest.split_once('/').ok_or_else(bad)?;
    let mut conn = TcpStream::connect(host).await?;
    conn.set_nodelay(true)?;
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 * 1024 {
        let mut byte = [0u8; 1];
        if conn.read(&mut byte).await? == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 {
        return Err(ConnectError::Status(status));
    }
    let chosen = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("x-stream-protocol-version:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    Ok((
        Client {
            conn,
            encoder: HeaderEncoder::new(),
            next_id: 1,
            buf: Vec::new(),
        },
        chosen,
    ))
}

impl Client {
    async fn send(&mut self, frame: Frame) -> std::io::Result<()> {
        let mut out = Vec::new();
        frame.encode(&mut out);
        self.conn.write_all(&out).await
    }

    /// Opens a stream with these headers; returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> std::io::Result<u32> {
        let mut block = Headers::new();
        for (name, value) in headers {
            block.push(*name, *value);
        }
        let id = self.next_id;
        self.next_id += 2;
        let header_block = Bytes::from(self.encoder.encode(&block));
        self.send(Frame::SynStream {
            stream_id: id,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block,
        })
        .await?;
        Ok(id)
    }

    pub async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) -> std::io::Result<()> {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await
    }

    /// The next frame from the server; `None` when the connection ends (or
    /// sends what does not parse).
    pub async fn next_frame(&mut self) -> Option<Frame> {
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            match Frame::parse(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                Ok(None) => {}
                Err(_) => return None,
            }
            match self.conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Reads frames until the server ends the connection; returns each
    /// stream's data and whether it saw a GOAWAY.
    pub async fn collect(&mut self) -> (BTreeMap<u32, Vec<u8>>, bool) {
        let mut streams: BTreeMap<u32, Vec<u8>> = BTreeMap::new();
        let mut goaway = false;
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            while let Ok(Some((frame, used))) = Frame::parse(&self.buf) {
                self.buf.drain(..used);
                match frame {
                    Frame::Data {
                        stream_id, data, ..
                    } => streams
                        .entry(stream_id)
                        .or_default()
                        .extend_from_slice(&data),
                    Frame::GoAway { .. } => goaway = true,
                    _ => {}
                }
            }
            match self.conn.read(&mut chunk).await {
                Ok(0) | Err(_) => return (streams, goaway),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}
