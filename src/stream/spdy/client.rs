//! The client side of a SPDY/3.1 upgrade, as client-go does it: the HTTP
//! request (plain or inside TLS) offering Kubernetes sub-protocols, then
//! either a [`Session`] in client mode ([`connect_session`], for real use:
//! concurrent streams, flow control) or [`Client`], a bare frame client
//! that reads frames in the caller's task and does no flow control of its
//! own (as spdystream does none), for tests and benchmarks that must drive
//! any CRI streaming server frame by frame.

use super::frame::Frame;
use super::headers::{HeaderEncoder, Headers};
use super::session::Session;
use bytes::Bytes;
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// An upgraded connection, plain or inside TLS.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub struct Client {
    pub conn: Box<dyn Io>,
    encoder: HeaderEncoder,
    next_id: u32,
    buf: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("{0}: not an http:// or https:// URL")]
    Url(String),
    #[error("the streaming server answered {0}")]
    Status(u16),
    #[error("the streaming server answered 101 without a protocol of the {0} offered")]
    NoProtocol(usize),
    #[error(transparent)]
    Tls(#[from] crate::stream::tls::TlsError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// The parts of a streaming URL: whether it is https, the address to
/// connect to (with the scheme's port if it names none), the host for TLS
/// and the `Host` header, and the path with its query.
fn split_url(url: &str) -> Option<(bool, String, String, String)> {
    let (tls, rest) = match url.split_once("://")? {
        ("http", rest) => (false, rest),
        ("https", rest) => (true, rest),
        _ => return None,
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, "/"),
    };
    let path = if path.starts_with('?') {
        format!("/{path}")
    } else {
        path.to_string()
    };
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    // A port follows the last colon unless that colon is inside [IPv6].
    let has_port = authority
        .rfind(':')
        .is_some_and(|at| !authority[at..].contains(']'));
    let (host, address) = if has_port {
        let at = authority.rfind(':')?;
        (&authority[..at], authority.to_string())
    } else {
        let port = if tls { 443 } else { 80 };
        (authority, format!("{authority}:{port}"))
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((tls, address, host.to_string(), path))
}

/// Upgrades `url` to SPDY/3.1 offering `protocols` (one
/// `X-Stream-Protocol-Version` header each, in order of preference, as
/// client-go sends them); returns the connection and the protocol the
/// server chose. An https URL's certificate is not checked, as crictl does
/// not: the URL came from the runtime and carries a single-use token.
pub async fn upgrade(url: &str, protocols: &[&str]) -> Result<(Box<dyn Io>, String), ConnectError> {
    let (tls, address, host, path) =
        split_url(url).ok_or_else(|| ConnectError::Url(url.to_string()))?;
    let tcp = TcpStream::connect(&address).await?;
    tcp.set_nodelay(true)?;
    let mut conn: Box<dyn Io> = if tls {
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|_| ConnectError::Url(url.to_string()))?;
        let connector = crate::stream::tls::connector(None)?;
        Box::new(connector.connect(name, tcp).await?)
    } else {
        Box::new(tcp)
    };
    let authority = address.strip_suffix(if tls { ":443" } else { ":80" });
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n",
        authority.unwrap_or(&address)
    );
    for protocol in protocols {
        request.push_str(&format!("X-Stream-Protocol-Version: {protocol}\r\n"));
    }
    request.push_str("Content-Length: 0\r\n\r\n");
    conn.write_all(request.as_bytes()).await?;
    conn.flush().await?;
    // Byte by byte: what follows the head is already SPDY, and must stay
    // in the connection for the session.
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
    Ok((conn, chosen))
}

/// [`upgrade`], then a client [`Session`] on the connection. The server
/// must choose one of `protocols` (kubelet's answers none only when none
/// was offered).
pub async fn connect_session(
    url: &str,
    protocols: &[&str],
) -> Result<(Session, String), ConnectError> {
    let (conn, chosen) = upgrade(url, protocols).await?;
    if !protocols.contains(&chosen.as_str()) {
        return Err(ConnectError::NoProtocol(protocols.len()));
    }
    Ok((Session::client(conn), chosen))
}

/// Upgrades `url` to SPDY/3.1 offering `protocol`; returns the frame client
/// and the protocol the server chose.
pub async fn connect(url: &str, protocol: &str) -> Result<(Client, String), ConnectError> {
    let (conn, chosen) = upgrade(url, &[protocol]).await?;
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
        self.send(Frame::open(id, header_block)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_urls_split() {
        let split = |url: &str| split_url(url);
        assert_eq!(
            split("http://127.0.0.1:10010/exec/abc"),
            Some((
                false,
                "127.0.0.1:10010".into(),
                "127.0.0.1".into(),
                "/exec/abc".into()
            ))
        );
        assert_eq!(
            split("https://[::1]:8443/portforward/t?port=80"),
            Some((
                true,
                "[::1]:8443".into(),
                "::1".into(),
                "/portforward/t?port=80".into()
            ))
        );
        assert_eq!(
            split("https://node.example"),
            Some((
                true,
                "node.example:443".into(),
                "node.example".into(),
                "/".into()
            ))
        );
        assert_eq!(
            split("http://[fe80::1]/x").map(|s| s.1),
            Some("[fe80::1]:80".into())
        );
        for bad in ["ws://h/x", "http://", "http:///x", "h:1/x", "http://u@h/x"] {
            assert_eq!(split(bad), None, "{bad}");
        }
    }
}
