//! Exec, attach and port-forward over WebSocket with Kubernetes' channel
//! protocols: every message is one channel byte and its data.

use super::terminal::{self, Input, Out};
use super::{Ended, Session};
use crate::endpoint::Settings;
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crius::stream::spdy::client::Io;

async fn open(url: &str, protocols: &str) -> anyhow::Result<WebSocketStream<Box<dyn Io>>> {
    let tls = url.starts_with("https://");
    let ws_url = url
        .replacen("https://", "wss://", 1)
        .replacen("http://", "ws://", 1);
    let mut request = ws_url
        .as_str()
        .into_client_request()
        .with_context(|| format!("streaming URL {url}"))?;
    request
        .headers_mut()
        .insert("Sec-WebSocket-Protocol", protocols.parse()?);
    let host = request
        .uri()
        .authority()
        .map(|a| a.to_string())
        .context("streaming URL without a host")?;
    let tcp = TcpStream::connect(&host)
        .await
        .with_context(|| format!("connecting to the streaming server {host}"))?;
    let io: Box<dyn Io> = if tls {
        // As crictl: the URL came from the runtime, its token is single-use.
        let connector = crius::stream::tls::connector(None)?;
        let name = rustls::pki_types::ServerName::try_from(
            request.uri().host().unwrap_or_default().to_string(),
        )
        .with_context(|| format!("streaming URL {url}: host"))?;
        Box::new(
            connector
                .connect(name, tcp)
                .await
                .with_context(|| format!("TLS with the streaming server {host}"))?,
        )
    } else {
        Box::new(tcp)
    };
    let (ws, _) = tokio_tungstenite::client_async(request, io)
        .await
        .with_context(|| format!("opening {url}"))?;
    Ok(ws)
}

fn channel_message(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::binary(bytes)
}

/// Runs an exec or attach session; returns how it ended.
pub async fn run(session: &Session) -> anyhow::Result<Ended> {
    let ws = open(&session.url, "v5.channel.k8s.io, v4.channel.k8s.io").await?;
    let (mut sink, mut source) = ws.split();
    let mut local = terminal::start(session.stdin, session.tty);
    let sender = tokio::spawn(async move {
        while let Some(input) = local.inputs.recv().await {
            let message = match input {
                Input::Stdin(data) => channel_message(0, &data),
                // v5's close signal: our input has ended.
                Input::StdinEnd => channel_message(255, &[0]),
                Input::Resize(w, h) => channel_message(4, &terminal::resize_json(w, h)),
            };
            if sink.send(message).await.is_err() {
                return;
            }
        }
    });
    let mut status: Option<Vec<u8>> = None;
    let result = async {
        while let Some(message) = source.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => bail!("the stream broke: {e}"),
            };
            match message {
                Message::Binary(bytes) if !bytes.is_empty() => match bytes[0] {
                    1 => terminal::write_out(Out::Stdout, &bytes[1..]).await?,
                    2 => terminal::write_out(Out::Stderr, &bytes[1..]).await?,
                    3 => status
                        .get_or_insert_with(Vec::new)
                        .extend_from_slice(&bytes[1..]),
                    _ => {}
                },
                Message::Close(_) => break,
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    // Dropping the sender's task drops `local`: the terminal leaves raw
    // mode before anything is printed.
    sender.abort();
    let _ = sender.await;
    result?;
    Ok(Ended::Status(status.unwrap_or_default()))
}

/// One local connection, forwarded over a WebSocket of its own (a new
/// PortForward call each: the channel protocol carries one connection).
pub async fn forward(
    settings: &Settings,
    pod: &str,
    port: u16,
    conn: TcpStream,
) -> anyhow::Result<()> {
    let url = super::port_forward_url(settings, pod, [port]).await?;
    let ws = open(&format!("{url}?port={port}"), "v4.channel.k8s.io").await?;
    let (mut sink, mut source) = ws.split();
    let (mut from_local, mut to_local) = conn.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_local.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if sink.send(channel_message(0, &buf[..n])).await.is_err() {
                        return;
                    }
                }
            }
        }
    };
    let downstream = async {
        // Each channel's first message is the port number.
        let mut prefixed = [false; 2];
        while let Some(Ok(message)) = source.next().await {
            let Message::Binary(bytes) = message else {
                continue;
            };
            let Some((&channel, mut data)) = bytes.split_first() else {
                continue;
            };
            if channel > 1 {
                continue;
            }
            if !prefixed[channel as usize] {
                prefixed[channel as usize] = true;
                data = data.get(2..).unwrap_or_default();
            }
            if channel == 1 && !data.is_empty() {
                eprintln!("criusctl: {}", String::from_utf8_lossy(data));
            } else if to_local.write_all(data).await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
    Ok(())
}
