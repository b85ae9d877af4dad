//! Exec, attach and port-forward over a SPDY/3.1 session, as kubelet's
//! streaming server serves them to client-go (`remotecommand` SPDY
//! executor, `portforward`).
//!
//! Remote command: the client opens one stream per role, named by the
//! `streamType` header (`error`, `stdin`, `stdout`, `stderr`, and `resize`
//! for a terminal from v3 on); the exec runs once all it asked for are
//! open (at most [`STREAM_WAIT`]). At the end the error stream carries a
//! Status (v4) or the error's text (older protocols), then the session
//! closes. Port-forward: per connection the client opens an `error` and a
//! `data` stream tied by their `requestID` and `port` headers; each pair
//! becomes one TCP connection into the pod.

use super::portforward;
use super::remotecommand::{self, Command, ResizeParser};
use super::spdy::{RstStatus, Session, Stream};
use super::status;
use crate::container::streams::ProcessIo;
use crate::runtime::Runtime;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// How long the client has to open the streams it asked for.
pub const STREAM_WAIT: Duration = Duration::from_secs(30);

/// The streams of one exec or attach.
#[derive(Default)]
struct Roles {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

impl Roles {
    fn complete(&self, command: &Command, resize: bool) -> bool {
        self.error.is_some()
            && (!command.stdin || self.stdin.is_some())
            && (!command.stdout || self.stdout.is_some())
            && (!command.stderr || command.tty || self.stderr.is_some())
            && (!(command.tty && resize) || self.resize.is_some())
    }
}

/// Runs an exec or attach over the SPDY connection `io`.
pub async fn remote_command<IO>(io: IO, protocol: &str, runtime: Arc<Runtime>, command: Command)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut session = Session::new(io);
    let v4 = protocol == "v4.channel.k8s.io";
    let resize = matches!(protocol, "v4.channel.k8s.io" | "v3.channel.k8s.io");
    let mut roles = Roles::default();
    let gathered = tokio::time::timeout(STREAM_WAIT, async {
        while !roles.complete(&command, resize) {
            let stream = session.accept().await?;
            let slot = match stream.header("streamtype").unwrap_or("") {
                "error" => &mut roles.error,
                "stdin" => &mut roles.stdin,
                "stdout" => &mut roles.stdout,
                "stderr" => &mut roles.stderr,
                "resize" => &mut roles.resize,
                _ => {
                    stream.reset(RstStatus::Cancel);
                    continue;
                }
            };
            let _ = stream.reply(false).await;
            *slot = Some(stream);
        }
        Some(())
    })
    .await;
    if !matches!(gathered, Ok(Some(()))) {
        tracing::debug!("remote command: the client did not open its streams");
        session.close().await;
        return;
    }
    let Roles {
        error,
        stdin,
        stdout,
        stderr,
        resize: resize_stream,
    } = roles;

    // Keep accepting (late streams are refused), and learn when the client
    // has gone; close when told to.
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let keeper = tokio::spawn(async move {
        tokio::select! {
            () = async {
                while let Some(late) = session.accept().await {
                    late.reset(RstStatus::RefusedStream);
                }
            } => drop(gone_tx),
            _ = done_rx => {}
        }
        session.close().await;
    });

    let mut pumps = tokio::task::JoinSet::new();
    let stdin_rx = stdin.map(|mut stream| {
        let (tx, rx) = mpsc::channel::<Bytes>(16);
        pumps.spawn(async move {
            while let Some(data) = stream.read().await {
                if tx.send(data).await.is_err() {
                    return;
                }
            }
        });
        rx
    });
    let resize_rx = resize_stream.map(|mut stream| {
        let (tx, rx) = mpsc::channel::<(u16, u16)>(4);
        pumps.spawn(async move {
            let mut parser = ResizeParser::default();
            while let Some(data) = stream.read().await {
                for size in parser.push(&data) {
                    let _ = tx.send(size).await;
                }
            }
        });
        rx
    });
    let mut writers = tokio::task::JoinSet::new();
    let mut output = |stream: Option<Stream>| {
        stream.map(|stream| {
            let (tx, mut rx) = mpsc::channel::<Bytes>(16);
            writers.spawn(async move {
                while let Some(data) = rx.recv().await {
                    if stream.write(&data).await.is_err() {
                        return;
                    }
                }
                let _ = stream.finish().await;
            });
            tx
        })
    };
    let io = ProcessIo {
        stdin: stdin_rx,
        stdout: output(stdout),
        stderr: if command.tty { None } else { output(stderr) },
        resize: resize_rx,
        gone: gone_rx,
    };
    let result = remotecommand::run(&runtime, &command, io).await;
    // Everything the process wrote goes out before the status.
    while writers.join_next().await.is_some() {}
    pumps.abort_all();
    if let Some(error) = error {
        let status = if v4 {
            Some(status::status_json(&result, &command.words()))
        } else {
            status::status_text(&result)
        };
        if let Some(status) = status {
            let _ = error.write(&status).await;
        }
        let _ = error.finish().await;
    }
    let _ = done_tx.send(());
    let _ = keeper.await;
}

/// Forwards each data/error stream pair the client opens to its port in
/// the pod, until the client goes.
pub async fn port_forward<IO>(io: IO, sandbox_id: String, netns: Option<std::path::PathBuf>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut session = Session::new(io);
    let mut halves: HashMap<String, (Option<Stream>, Option<Stream>)> = HashMap::new();
    let mut forwards = tokio::task::JoinSet::new();
    while let Some(stream) = session.accept().await {
        let request = stream.header("requestid").unwrap_or("").to_string();
        let kind = stream.header("streamtype").unwrap_or("").to_string();
        let Some(port) = stream.header("port").and_then(|p| p.parse::<u16>().ok()) else {
            stream.reset(RstStatus::Cancel);
            continue;
        };
        if stream.reply(false).await.is_err() {
            continue;
        }
        let pair = halves.entry(request.clone()).or_default();
        match kind.as_str() {
            "data" => pair.0 = Some(stream),
            "error" => pair.1 = Some(stream),
            _ => {
                stream.reset(RstStatus::Cancel);
                continue;
            }
        }
        if let (Some(_), Some(_)) = pair {
            let (Some(data), Some(error)) = halves.remove(&request).unwrap_or_default() else {
                continue;
            };
            let (netns, sandbox) = (netns.clone(), sandbox_id.clone());
            forwards.spawn(forward(data, error, netns, sandbox, port));
        }
        // Finished forwards are collected as we go.
        while forwards.try_join_next().is_some() {}
    }
    forwards.abort_all();
    session.close().await;
}

async fn forward(
    data: Stream,
    error: Stream,
    netns: Option<std::path::PathBuf>,
    sandbox: String,
    port: u16,
) {
    let conn = match portforward::connect(netns, port).await {
        Ok(conn) => conn,
        Err(e) => {
            let text = portforward::connect_error(&sandbox, port, &e);
            let _ = error.write(text.as_bytes()).await;
            let _ = error.finish().await;
            let _ = data.finish().await;
            return;
        }
    };
    let (mut from_pod, mut to_pod) = conn.into_split();
    let (mut from_client, to_client) = data.split();
    // The client's FIN half-closes the connection to the pod (client-go
    // sends it when its local connection stops sending, e.g. after a
    // request); the reply still flows back until the pod closes.
    let upstream = async {
        while let Some(bytes) = from_client.read().await {
            if to_pod.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to_pod.shutdown().await;
        std::future::pending::<()>().await
    };
    let downstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to_client.write(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
        let _ = to_client.finish().await;
    };
    // Done when the pod's side closes, or writing to the pod fails.
    tokio::select! {
        () = upstream => {}
        () = downstream => {}
    }
    let _ = error.finish().await;
}
