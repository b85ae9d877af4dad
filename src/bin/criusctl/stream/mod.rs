//! Streaming commands: `exec` (without `-s`), `attach` and `port-forward`,
//! over the runtime's streaming server (any CRI runtime's serves both
//! transports): `--transport websocket` (the channel protocols,
//! `websocket`) or `spdy` (SPDY/3.1 as client-go speaks it, `spdy`). On a
//! terminal, `-t` puts it in raw mode and sends its size, again on every
//! SIGWINCH (`terminal`, shared by both).

mod spdy;
mod terminal;
mod websocket;

use crate::endpoint::Settings;
use anyhow::Context;
use crius::cri;

/// How criusctl reaches the streaming server. WebSocket is the default:
/// kubectl's own since Kubernetes 1.30 (port-forward 1.31), and its v5
/// protocol closes stdin explicitly; crictl defaults to SPDY, which
/// `--transport spdy` speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Websocket,
    Spdy,
}

#[derive(clap::Args)]
pub struct AttachArgs {
    /// Container id (or unique prefix)
    id: String,
    /// Keep stdin open and send it to the container
    #[arg(short = 'i', long)]
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
    /// How to connect to the streaming server
    #[arg(long, value_enum, default_value = "websocket")]
    transport: Transport,
}

/// What one exec or attach session sends.
pub struct Session {
    pub url: String,
    pub stdin: bool,
    pub tty: bool,
}

/// What the error stream said when the session ended.
pub enum Ended {
    /// A v4+ `metav1.Status` (JSON); empty if none came.
    Status(Vec<u8>),
    /// An older protocol's error text; empty means success.
    Text(Vec<u8>),
}

/// Runs an exec or attach session and exits with the remote command's code
/// when it is not 0.
async fn run(transport: Transport, session: Session) -> anyhow::Result<()> {
    let ended = match transport {
        Transport::Websocket => websocket::run(&session).await?,
        Transport::Spdy => spdy::run(&session).await?,
    };
    let code = match ended {
        Ended::Status(status) => exit_code(&status),
        Ended::Text(text) if text.is_empty() => 0,
        Ended::Text(text) => {
            eprintln!("{}", String::from_utf8_lossy(&text));
            1
        }
    };
    if code != 0 {
        std::process::exit(code);
    }
    Ok(())
}

/// The exit code a v4 Status gives (0 without one); prints its message
/// when it failed otherwise.
fn exit_code(bytes: &[u8]) -> i32 {
    if bytes.is_empty() {
        return 0;
    }
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
    (stdin, tty): (bool, bool),
    transport: Transport,
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
    run(transport, Session { url, stdin, tty }).await
}

pub async fn attach(settings: &Settings, args: AttachArgs) -> anyhow::Result<()> {
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
    run(
        args.transport,
        Session {
            url,
            stdin: args.stdin,
            tty: args.tty,
        },
    )
    .await
}

/// The streaming URL of a PortForward call for `ports` of `pod`.
async fn port_forward_url(
    settings: &Settings,
    pod: &str,
    ports: impl IntoIterator<Item = u16>,
) -> anyhow::Result<String> {
    Ok(settings
        .runtime()
        .await?
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.to_string(),
            port: ports.into_iter().map(i32::from).collect(),
        })
        .await
        .with_context(|| format!("port-forward to pod {pod}"))?
        .into_inner()
        .url)
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
/// pod's port, until interrupted: over WebSocket a connection (and a
/// PortForward call) per local connection, over SPDY one connection for
/// all, a stream pair each, as client-go does.
pub async fn port_forward(settings: &Settings, args: PortForwardArgs) -> anyhow::Result<()> {
    let pairs: Vec<(u16, u16)> = args
        .ports
        .iter()
        .map(|p| port_pair(p))
        .collect::<Result<_, _>>()?;
    let mut listeners = Vec::new();
    for (local, remote) in pairs {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
            .await
            .with_context(|| format!("listening on 127.0.0.1:{local}"))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        listeners.push((listener, remote));
    }
    if args.transport == Transport::Spdy {
        return spdy::port_forward(settings, &args.pod, listeners).await;
    }
    let mut accepting = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let settings = settings.clone();
        let pod = args.pod.clone();
        accepting.spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    continue;
                };
                let (settings, pod) = (settings.clone(), pod.clone());
                tokio::spawn(async move {
                    if let Err(e) = websocket::forward(&settings, &pod, remote, conn).await {
                        eprintln!("criusctl: port-forward {remote}: {e:#}");
                    }
                });
            }
        });
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = accepting.join_next() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_come_from_the_status() {
        assert_eq!(exit_code(b""), 0);
        assert_eq!(exit_code(br#"{"metadata":{},"status":"Success"}"#), 0);
        let failed = br#"{"status":"Failure","reason":"NonZeroExitCode",
            "details":{"causes":[{"reason":"ExitCode","message":"42"}]}}"#;
        assert_eq!(exit_code(failed), 42);
        assert_eq!(
            exit_code(br#"{"status":"Failure","reason":"InternalError","message":"x"}"#),
            1
        );
        assert_eq!(exit_code(b"not json"), 1);
    }

    #[test]
    fn port_pairs_parse() {
        assert_eq!(port_pair("8080:80").unwrap(), (8080, 80));
        assert_eq!(port_pair("80").unwrap(), (80, 80));
        let err = port_pair("x:80").unwrap_err().to_string();
        assert!(err.contains("\"x\""), "{err}");
    }
}
