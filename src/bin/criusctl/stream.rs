//! Streaming commands: `exec` (without `-s`), `attach` and `port-forward`,
//! over the runtime's streaming server with WebSocket and Kubernetes'
//! channel protocols (any CRI runtime's server speaks them). On a terminal,
//! `-t` puts it in raw mode and sends its size, again on every SIGWINCH.

use crate::endpoint::Settings;
use anyhow::{Context, bail};
use crius::cri;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Websocket,
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Container id (or unique prefix)
    id: String,
    /// Keep stdin open and send it to the container
    #[arg(short, long)]
    stdin: bool,
    /// The container has a terminal (as it was created)
    #[arg(short, long)]
    tty: bool,
    /// How to connect to the streaming server
    #[arg(long, value_enum, default_value = "websocket")]
    transport: Transport,
}

#[derive(clap::Args)]
pub struct PortForwardArgs {
    /// Pod sandbox id (or unique prefix)
    pod: String,
    /// LOCAL:REMOTE port pairs (or one port for both)
    #[arg(required = true)]
    ports: Vec<String>,
    #[arg(long, value_enum, default_value = "websocket")]
    transport: Transport,
}

/// What one exec or attach session sends and how it ends.
pub struct Session {
    pub url: String,
    pub stdin: bool,
    pub tty: bool,
}

/// A connection to the streaming server, plain or inside TLS.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

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

/// The terminal in raw mode until dropped.
struct RawTerminal(Option<nix::sys::termios::Termios>);

impl RawTerminal {
    fn enter() -> RawTerminal {
        use nix::sys::termios;
        let stdin = std::io::stdin();
        let Ok(saved) = termios::tcgetattr(&stdin) else {
            return RawTerminal(None);
        };
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(&stdin, termios::SetArg::TCSANOW, &raw);
        RawTerminal(Some(saved))
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            let _ = nix::sys::termios::tcsetattr(
                std::io::stdin(),
                nix::sys::termios::SetArg::TCSANOW,
                saved,
            );
        }
    }
}

fn terminal_size() -> Option<(u16, u16)> {
    let mut size = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills the winsize struct we own.
    let rc = unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut size) };
    (rc == 0 && size.ws_col > 0).then_some((size.ws_col, size.ws_row))
}

fn resize_message(width: u16, height: u16) -> Message {
    let mut bytes = vec![4u8];
    bytes.extend_from_slice(format!(r#"{{"Width":{width},"Height":{height}}}"#).as_bytes());
    Message::binary(bytes)
}

/// Runs an exec or attach session; returns the exit code to exit with.
pub async fn run(session: Session) -> anyhow::Result<i32> {
    let ws = open(&session.url, "v5.channel.k8s.io, v4.channel.k8s.io").await?;
    let (mut sink, mut source) = ws.split();
    let interactive = session.tty && nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let _raw = interactive.then(RawTerminal::enter);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    if interactive && let Some((w, h)) = terminal_size() {
        let _ = out_tx.send(resize_message(w, h)).await;
    }
    let mut tasks = tokio::task::JoinSet::new();
    if interactive {
        let tx = out_tx.clone();
        tasks.spawn(async move {
            let Ok(mut winch) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while winch.recv().await.is_some() {
                if let Some((w, h)) = terminal_size()
                    && tx.send(resize_message(w, h)).await.is_err()
                {
                    return;
                }
            }
        });
    }
    if session.stdin {
        let tx = out_tx.clone();
        tasks.spawn(async move {
            let mut stdin = tokio::io::stdin();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let mut bytes = vec![0u8];
                        bytes.extend_from_slice(&buf[..n]);
                        if tx.send(Message::binary(bytes)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            // v5's close signal: our input has ended.
            let _ = tx.send(Message::binary(vec![255u8, 0])).await;
        });
    }
    drop(out_tx);
    tasks.spawn(async move {
        while let Some(message) = out_rx.recv().await {
            if sink.send(message).await.is_err() {
                return;
            }
        }
    });
    let mut stdout = tokio::io::stdout();
    let mut stderr = tokio::io::stderr();
    let mut status: Option<Vec<u8>> = None;
    while let Some(message) = source.next().await {
        let message = match message {
            Ok(m) => m,
            Err(e) => bail!("the stream broke: {e}"),
        };
        match message {
            Message::Binary(bytes) if !bytes.is_empty() => match bytes[0] {
                1 => {
                    stdout.write_all(&bytes[1..]).await?;
                    stdout.flush().await?;
                }
                2 => {
                    stderr.write_all(&bytes[1..]).await?;
                    stderr.flush().await?;
                }
                3 => status
                    .get_or_insert_with(Vec::new)
                    .extend_from_slice(&bytes[1..]),
                _ => {}
            },
            Message::Close(_) => break,
            _ => {}
        }
    }
    tasks.abort_all();
    Ok(exit_code(status.as_deref()))
}

/// The exit code a v4 Status gives (0 without one).
fn exit_code(status: Option<&[u8]>) -> i32 {
    let Some(bytes) = status.filter(|b| !b.is_empty()) else {
        return 0;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        eprintln!("{}", String::from_utf8_lossy(bytes));
        return 1;
    };
    if value["status"] == "Success" {
        return 0;
    }
    if value["reason"] == "NonZeroExitCode"
        && let Some(code) = value["details"]["causes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["reason"] == "ExitCode"))
            .and_then(|c| c["message"].as_str())
            .and_then(|m| m.parse().ok())
    {
        return code;
    }
    eprintln!(
        "{}",
        value["message"].as_str().unwrap_or("the command failed")
    );
    1
}

pub async fn exec(
    settings: &Settings,
    id: String,
    cmd: Vec<String>,
    stdin: bool,
    tty: bool,
) -> anyhow::Result<()> {
    let url = settings
        .runtime()
        .await?
        .exec(cri::ExecRequest {
            container_id: id.clone(),
            cmd,
            tty,
            stdin,
            stdout: true,
            stderr: !tty,
        })
        .await
        .with_context(|| format!("exec in container {id}"))?
        .into_inner()
        .url;
    let code = run(Session { url, stdin, tty }).await?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

pub async fn attach(settings: &Settings, args: AttachArgs) -> anyhow::Result<()> {
    let _ = args.transport;
    let url = settings
        .runtime()
        .await?
        .attach(cri::AttachRequest {
            container_id: args.id.clone(),
            stdin: args.stdin,
            tty: args.tty,
            stdout: true,
            stderr: !args.tty,
        })
        .await
        .with_context(|| format!("attach to container {}", args.id))?
        .into_inner()
        .url;
    let code = run(Session {
        url,
        stdin: args.stdin,
        tty: args.tty,
    })
    .await?;
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

fn port_pair(spec: &str) -> anyhow::Result<(u16, u16)> {
    let (local, remote) = spec.split_once(':').unwrap_or((spec, spec));
    let parse = |p: &str| {
        p.parse::<u16>()
            .with_context(|| format!("{spec:?}: {p:?} is not a port"))
    };
    Ok((parse(local)?, parse(remote)?))
}

/// Listens on 127.0.0.1 for each pair and forwards every connection to the
/// pod's port over a stream of its own, until interrupted.
pub async fn port_forward(settings: &Settings, args: PortForwardArgs) -> anyhow::Result<()> {
    let _ = args.transport;
    let pairs: Vec<(u16, u16)> = args
        .ports
        .iter()
        .map(|p| port_pair(p))
        .collect::<Result<_, _>>()?;
    let mut listeners = tokio::task::JoinSet::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{local}"))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        let settings = settings.clone();
        let pod = args.pod.clone();
        listeners.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (settings, pod) = (settings.clone(), pod.clone());
                tokio::spawn(async move {
                    if let Err(e) = forward_one(&settings, &pod, remote, conn).await {
                        eprintln!("criusctl: port-forward {remote}: {e:#}");
                    }
                });
            }
        });
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = listeners.join_next() => Ok(()),
    }
}

async fn forward_one(
    settings: &Settings,
    pod: &str,
    port: u16,
    conn: TcpStream,
) -> anyhow::Result<()> {
    let url = settings
        .runtime()
        .await?
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: vec![port as i32],
        })
        .await
        .with_context(|| format!("port-forward to pod {pod}"))?
        .into_inner()
        .url;
    let ws = open(&format!("{url}?port={port}"), "v4.channel.k8s.io").await?;
    let (mut sink, mut source) = ws.split();
    let (mut from_local, mut to_local) = conn.into_split();
    let upstream = async {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_local.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    let mut bytes = vec![0u8];
                    bytes.extend_from_slice(&buf[..n]);
                    if sink.send(Message::binary(bytes)).await.is_err() {
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
