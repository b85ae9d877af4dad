//! Exec, attach and port-forward over SPDY/3.1, as client-go does them
//! (crictl's default transport): one stream per role, named by its
//! `streamtype` header, on a client session of `crius::stream::spdy`.

use super::terminal::{self, Input, Out};
use super::{Ended, Session};
use crate::endpoint::Settings;
use anyhow::{Context, bail};
use crius::stream::spdy::client::connect_session;
use crius::stream::spdy::{self, Headers, StreamReader};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Offered in this order, one header each, as client-go offers them.
const REMOTE_COMMAND: [&str; 4] = [
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];
const PORT_FORWARD: [&str; 1] = ["portforward.k8s.io"];
/// How long the server has to answer a stream (client-go's
/// `createStreamResponseTimeout`).
const REPLY_WAIT: Duration = Duration::from_secs(30);

fn headers(pairs: &[(&str, &str)]) -> Headers {
    pairs.iter().copied().collect()
}

/// Opens a stream of `kind` with `extra` headers. Its SYN_STREAM goes out
/// behind those opened before; see [`answered`] before writing to it.
fn open(
    session: &spdy::Session,
    kind: &str,
    extra: &[(&str, &str)],
) -> anyhow::Result<spdy::Stream> {
    let mut pairs = vec![("streamtype", kind)];
    pairs.extend_from_slice(extra);
    session
        .open(headers(&pairs))
        .with_context(|| format!("opening the {kind} stream"))
}

/// Waits for the server's reply to each of `streams`, in order. client-go
/// waits for each before opening the next; opening them all first saves a
/// round trip per stream and is the same to a server, which answers each
/// as it comes. No data goes before the replies: a spdystream server drops
/// data on a stream it has not replied to.
async fn answered(streams: &[&spdy::Stream]) -> anyhow::Result<()> {
    for stream in streams {
        let kind = stream.header("streamtype").unwrap_or_default();
        tokio::time::timeout(REPLY_WAIT, stream.replied())
            .await
            .map_err(|_| anyhow::anyhow!("the server did not answer the {kind} stream"))?
            .with_context(|| format!("the {kind} stream"))?;
    }
    Ok(())
}

/// Reads a stream to its end; an error if it did not end with the peer's
/// FIN (a reset, or the connection was lost).
async fn read_all(mut reader: StreamReader, to: Option<Out>) -> anyhow::Result<Vec<u8>> {
    let mut kept = Vec::new();
    while let Some(data) = reader.read().await {
        match to {
            Some(to) => terminal::write_out(to, &data).await?,
            None => kept.extend_from_slice(&data),
        }
    }
    if !reader.finished_by_peer() {
        bail!("the connection to the streaming server was lost");
    }
    Ok(kept)
}

/// Runs an exec or attach session; returns how it ended.
pub async fn run(session: &Session) -> anyhow::Result<Ended> {
    let (spdy, protocol) = connect_session(&session.url, &REMOTE_COMMAND)
        .await
        .with_context(|| format!("opening {}", session.url))?;
    let resize =
        session.tty && matches!(protocol.as_str(), "v4.channel.k8s.io" | "v3.channel.k8s.io");
    // The order client-go opens them in.
    let error = open(&spdy, "error", &[])?;
    let stdin = session
        .stdin
        .then(|| open(&spdy, "stdin", &[]))
        .transpose()?;
    let stdout = open(&spdy, "stdout", &[])?;
    // A terminal merges stderr into stdout.
    let stderr = (!session.tty)
        .then(|| open(&spdy, "stderr", &[]))
        .transpose()?;
    let resize = resize.then(|| open(&spdy, "resize", &[])).transpose()?;
    let opened: Vec<&spdy::Stream> = [Some(&error), stdin.as_ref(), Some(&stdout)]
        .into_iter()
        .chain([stderr.as_ref(), resize.as_ref()])
        .flatten()
        .collect();
    answered(&opened).await?;

    let mut local = terminal::start(session.stdin, session.tty);
    let stdin = stdin.map(|s| s.split().1);
    let resize = resize.map(|s| s.split().1);
    let sender = tokio::spawn(async move {
        while let Some(input) = local.inputs.recv().await {
            let sent = match (input, &stdin, &resize) {
                (Input::Stdin(data), Some(stdin), _) => stdin.write(&data).await,
                (Input::StdinEnd, Some(stdin), _) => stdin.finish().await,
                (Input::Resize(w, h), _, Some(resize)) => {
                    resize.write(&terminal::resize_json(w, h)).await
                }
                _ => Ok(()),
            };
            if sent.is_err() {
                return;
            }
        }
    });
    let outputs = async {
        let stdout = read_all(stdout.split().0, Some(Out::Stdout));
        let stderr = async {
            match stderr {
                Some(s) => read_all(s.split().0, Some(Out::Stderr)).await,
                None => Ok(Vec::new()),
            }
        };
        let error = read_all(error.split().0, None);
        let (out, err, status) = tokio::join!(stdout, stderr, error);
        out?;
        err?;
        status
    };
    let status = outputs.await;
    // Dropping the sender's task drops `local`: the terminal leaves raw
    // mode before anything is printed.
    sender.abort();
    let _ = sender.await;
    spdy.close().await;
    let status = status?;
    Ok(match protocol.as_str() {
        "v4.channel.k8s.io" => Ended::Status(status),
        _ => Ended::Text(status),
    })
}

/// Forwards every connection the listeners accept over one SPDY
/// connection, a stream pair per connection, until interrupted or the
/// connection is lost.
pub async fn port_forward(
    settings: &Settings,
    pod: &str,
    listeners: Vec<(TcpListener, u16)>,
) -> anyhow::Result<()> {
    let remotes = listeners.iter().map(|(_, remote)| *remote);
    let url = super::port_forward_url(settings, pod, remotes).await?;
    let (session, _) = connect_session(&url, &PORT_FORWARD)
        .await
        .with_context(|| format!("opening {url}"))?;
    let session = Arc::new(session);
    let next_id = Arc::new(AtomicU64::new(0));
    let mut accepting = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let (session, next_id) = (session.clone(), next_id.clone());
        accepting.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let request = next_id.fetch_add(1, Ordering::Relaxed);
                let session = session.clone();
                tokio::spawn(async move {
                    if let Err(e) = forward(&session, request, remote, conn).await {
                        eprintln!("criusctl: port-forward to {remote}: {e:#}");
                    }
                });
            }
        });
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {
            session.close().await;
            Ok(())
        }
        () = session.closed() => bail!("lost the connection to the streaming server"),
    }
}

/// One local connection: an error stream, then a data stream, tied by
/// `requestid`. Ends when the pod's side does, or the local side fails.
async fn forward(
    session: &spdy::Session,
    request: u64,
    port: u16,
    conn: TcpStream,
) -> anyhow::Result<()> {
    let (port, request) = (port.to_string(), request.to_string());
    let tie = [("port", port.as_str()), ("requestid", request.as_str())];
    let error = open(session, "error", &tie)?;
    let data = open(session, "data", &tie)?;
    answered(&[&error, &data]).await?;
    // Nothing goes this way on the error stream; close our half at once.
    error.finish().await?;
    let errors = tokio::spawn(read_all(error.split().0, None));
    let (mut from_pod, to_pod) = data.split();
    let (mut from_local, mut to_local) = conn.into_split();
    {
        let upstream = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from_local.read(&mut buf).await {
                    Ok(0) => return to_pod.finish().await.is_ok(),
                    Err(_) => return false,
                    Ok(n) => {
                        if to_pod.write(&buf[..n]).await.is_err() {
                            return false;
                        }
                    }
                }
            }
        };
        let downstream = async {
            while let Some(data) = from_pod.read().await {
                if to_local.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = to_local.shutdown().await;
        };
        tokio::pin!(upstream, downstream);
        // After our FIN the pod's side may still answer.
        tokio::select! {
            () = &mut downstream => {}
            clean = &mut upstream => if clean { downstream.await },
        }
    }
    // Whatever is left of the data stream is reset, which ends the
    // server's side of it and so its error stream.
    drop((from_pod, to_pod));
    match errors.await {
        Ok(Ok(text)) if !text.is_empty() => bail!("{}", String::from_utf8_lossy(&text)),
        _ => Ok(()),
    }
}
