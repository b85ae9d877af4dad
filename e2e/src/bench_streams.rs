//! The streaming benchmark client: drives any CRI runtime's streaming server
//! over SPDY/3.1, as client-go does: Exec round trips (`echo hi`, from the
//! Exec call to the exit status), port-forward throughput over one
//! connection, and the daemon's memory while 20 execs stream at once.

use anyhow::{Context, bail};
use crius::cri;
use crius::stream::spdy::client::{self, Client};
use crius::stream::spdy::frame::Frame;
use std::time::{Duration, Instant};

#[derive(Clone)]
pub struct Options {
    pub endpoint: String,
    /// A running container with a shell and `head`.
    pub container: String,
    /// Its pod, with a web server on `port` serving `path`.
    pub pod: String,
    /// A running container under the RuntimeDefault seccomp profile.
    pub confined: String,
    pub port: u16,
    pub path: String,
    pub runs: usize,
    pub daemon_pid: u32,
    pub label: String,
}

async fn runtime(
    endpoint: &str,
) -> anyhow::Result<cri::runtime_service_client::RuntimeServiceClient<tonic::transport::Channel>> {
    let channel = crius::client::connect(endpoint, Duration::from_secs(10), None).await?;
    Ok(crius::client::runtime_client(channel))
}

/// Where one exec's time went (ms): the Exec call (with its gRPC
/// connection), the SPDY upgrade, and the streams until the exit status.
#[derive(Default, Clone, Copy)]
struct Phases {
    rpc: f64,
    upgrade: f64,
    streams: f64,
}

/// The median time of an ExecSync of `echo hi` in `container` (ms).
async fn exec_sync_median(opts: &Options, container: &str) -> anyhow::Result<f64> {
    let mut client = runtime(&opts.endpoint).await?;
    let mut times = Vec::new();
    for _ in 0..opts.runs {
        let started = Instant::now();
        let reply = client
            .exec_sync(cri::ExecSyncRequest {
                container_id: container.to_string(),
                cmd: vec!["echo".into(), "hi".into()],
                timeout: 10,
            })
            .await?
            .into_inner();
        times.push(started.elapsed().as_secs_f64() * 1e3);
        if reply.exit_code != 0 || reply.stdout != b"hi\n" {
            bail!("ExecSync echo hi in {container} gave {reply:?}");
        }
    }
    Ok(median(times))
}

/// Runs `cmd` over SPDY (v4); returns the bytes on stdout.
async fn exec(opts: &Options, cmd: &[&str]) -> anyhow::Result<usize> {
    exec_timed(opts, cmd).await.map(|(out, _)| out)
}

async fn exec_timed(opts: &Options, cmd: &[&str]) -> anyhow::Result<(usize, Phases)> {
    let started = Instant::now();
    let ms = |since: Instant| since.elapsed().as_secs_f64() * 1e3;
    let url = runtime(&opts.endpoint)
        .await?
        .exec(cri::ExecRequest {
            container_id: opts.container.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            stdout: true,
            ..Default::default()
        })
        .await?
        .into_inner()
        .url;
    let rpc = ms(started);
    let upgrading = Instant::now();
    let (mut conn, _) = client::connect(&url, "v4.channel.k8s.io").await?;
    let upgrade = ms(upgrading);
    let streaming = Instant::now();
    let error = conn.open(&[("streamtype", "error")]).await?;
    let stdout = conn.open(&[("streamtype", "stdout")]).await?;
    let (mut out, mut status) = (0usize, Vec::new());
    let (mut out_done, mut error_done) = (false, false);
    while !(out_done && error_done) {
        match conn.next_frame().await {
            Some(Frame::Data {
                stream_id,
                fin,
                data,
            }) => {
                if stream_id == stdout {
                    out += data.len();
                    out_done |= fin;
                } else if stream_id == error {
                    status.extend_from_slice(&data);
                    error_done |= fin;
                }
            }
            Some(_) => {}
            None => break,
        }
    }
    if !status.is_empty() && !String::from_utf8_lossy(&status).contains("Success") {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&status));
    }
    let streams = ms(streaming);
    Ok((
        out,
        Phases {
            rpc,
            upgrade,
            streams,
        },
    ))
}

/// One port-forward connection fetching `path`; returns the bytes read.
async fn fetch(opts: &Options) -> anyhow::Result<usize> {
    let url = runtime(&opts.endpoint)
        .await?
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: opts.pod.clone(),
            port: vec![opts.port as i32],
        })
        .await?
        .into_inner()
        .url;
    let (mut conn, _): (Client, _) = client::connect(&url, "portforward.k8s.io").await?;
    let port = opts.port.to_string();
    conn.open(&[("streamtype", "error"), ("port", &port), ("requestid", "0")])
        .await?;
    let data = conn
        .open(&[("streamtype", "data"), ("port", &port), ("requestid", "0")])
        .await?;
    let request = format!("GET {} HTTP/1.0\r\n\r\n", opts.path);
    conn.data(data, request.as_bytes(), false).await?;
    let mut total = 0;
    while let Some(frame) = conn.next_frame().await {
        if let Frame::Data {
            stream_id,
            fin,
            data: bytes,
        } = frame
            && stream_id == data
        {
            total += bytes.len();
            if fin {
                break;
            }
        }
    }
    Ok(total)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

pub async fn run(opts: Options) -> anyhow::Result<()> {
    let label = &opts.label;
    // Warm up: the first exec pays for things later ones share.
    exec(&opts, &["echo", "hi"]).await.context("a first exec")?;
    let mut times = Vec::new();
    let mut phases = Vec::new();
    for _ in 0..opts.runs {
        let started = Instant::now();
        let (out, phase) = exec_timed(&opts, &["echo", "hi"]).await?;
        times.push(started.elapsed().as_secs_f64() * 1e3);
        phases.push(phase);
        if out != 3 {
            bail!("echo hi gave {out} bytes");
        }
    }
    println!("{label}.exec_round_trip_median_ms={:.1}", median(times));
    let part = |f: fn(&Phases) -> f64| median(phases.iter().map(f).collect());
    println!(
        "{label}.exec_phases_median_ms=call {:.1}, upgrade {:.1}, streams to exit {:.1}",
        part(|p| p.rpc),
        part(|p| p.upgrade),
        part(|p| p.streams)
    );

    // ExecSync, as kubelet's exec probes call it.
    println!(
        "{label}.exec_sync_median_ms={:.1}",
        exec_sync_median(&opts, &opts.container).await?
    );
    println!(
        "{label}.exec_sync_confined_median_ms={:.1}",
        exec_sync_median(&opts, &opts.confined).await?
    );

    let mut rates = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let bytes = fetch(&opts).await?;
        let secs = started.elapsed().as_secs_f64();
        if bytes < 1 << 20 {
            bail!("port-forward fetched only {bytes} bytes");
        }
        rates.push(bytes as f64 / (1 << 20) as f64 / secs);
    }
    println!("{label}.port_forward_mib_per_s={:.0}", median(rates));

    let before = rss_kib(opts.daemon_pid);
    let mut peak = before;
    let mut streams = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let opts = opts.clone();
        streams.spawn(async move { exec(&opts, &["head", "-c", "52428800", "/dev/zero"]).await });
    }
    loop {
        peak = peak.max(rss_kib(opts.daemon_pid));
        tokio::select! {
            done = streams.join_next() => match done {
                Some(result) => { result??; }
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    println!(
        "{label}.rss_growth_20_streams_mib={:.1}",
        peak.saturating_sub(before) as f64 / 1024.0
    );
    Ok(())
}
