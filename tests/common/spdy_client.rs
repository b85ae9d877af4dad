//! A small SPDY/3.1 client for tests, on crius's own codec: the HTTP upgrade,
//! then streams opened by name (`streamtype`), data in and out, FIN.

use bytes::Bytes;
use crius::stream::spdy::frame::Frame;
use crius::stream::spdy::headers::{HeaderEncoder, Headers};
use std::collections::BTreeMap;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct Client {
    pub conn: TcpStream,
    encoder: HeaderEncoder,
    next_id: u32,
    buf: Vec<u8>,
}

/// Upgrades `url` to SPDY/3.1 offering `protocol`; the HTTP status when the
/// server refuses (and the chosen protocol when it accepts).
pub async fn connect(url: &str, protocol: &str) -> Result<(Client, String), u16> {
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut conn = TcpStream::connect(host).await.unwrap();
    let request = format!(
        "POST /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {protocol}\r\nContent-Length: 0\r\n\r\n"
    );
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if conn.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    if status != 101 {
        return Err(status);
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
    async fn send(&mut self, frame: Frame) {
        let mut out = Vec::new();
        frame.encode(&mut out);
        self.conn.write_all(&out).await.unwrap();
    }

    /// Opens a stream with these headers; returns its id.
    pub async fn open(&mut self, headers: &[(&str, &str)]) -> u32 {
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
        .await;
        id
    }

    pub async fn data(&mut self, stream_id: u32, data: &[u8], fin: bool) {
        self.send(Frame::Data {
            stream_id,
            fin,
            data: Bytes::copy_from_slice(data),
        })
        .await;
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
