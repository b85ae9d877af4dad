//! A WebSocket client for the streaming server, speaking Kubernetes'
//! channel protocols (`v4.channel.k8s.io`, `v5.channel.k8s.io`, ...).

use futures_util::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

pub type Ws = WebSocketStream<TcpStream>;

/// Opens `url` (http://...) as a WebSocket with `protocol`; the HTTP error
/// status when the server refuses.
pub async fn connect(url: &str, protocol: &str) -> Result<(Ws, String), u16> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let host = request.uri().authority().unwrap().to_string();
    let tcp = TcpStream::connect(&host).await.unwrap();
    match tokio_tungstenite::client_async(request, tcp).await {
        Ok((ws, response)) => {
            let chosen = response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            Ok((ws, chosen))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("websocket to {url}: {e}"),
    }
}

/// Opens `url` without any TLS; an error instead of a panic when the
/// handshake fails.
pub async fn connect_raw(url: &str, protocol: &str) -> Result<Ws, String> {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut request = ws_url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    let host = request.uri().authority().unwrap().to_string();
    let tcp = TcpStream::connect(&host).await.map_err(|e| e.to_string())?;
    let connect = tokio_tungstenite::client_async(request, tcp);
    match tokio::time::timeout(std::time::Duration::from_secs(10), connect).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".into()),
    }
}

pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    channel: u8,
    data: &[u8],
) {
    let mut bytes = vec![channel];
    bytes.extend_from_slice(data);
    ws.send(Message::binary(bytes)).await.unwrap();
}

/// Reads until the server closes; returns what each channel carried.
pub async fn collect<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
) -> BTreeMap<u8, Vec<u8>> {
    let mut channels: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    while let Some(Ok(message)) = ws.next().await {
        match message {
            Message::Binary(bytes) if !bytes.is_empty() => {
                channels
                    .entry(bytes[0])
                    .or_default()
                    .extend_from_slice(&bytes[1..]);
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    channels
}
