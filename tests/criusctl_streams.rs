//! criusctl's streaming commands against a real daemon, over each
//! transport (`--transport websocket|spdy`): exec's exit codes, stdin
//! through `cat`, a terminal, 100 MiB of output; attach; port-forward with
//! concurrent connections and an error from the pod's side.

mod common;

use common::CRIUSCTL;
use common::pods::{Pod, image};
use serde_json::json;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::time::Duration;

const TRANSPORTS: [&str; 2] = ["websocket", "spdy"];

/// A criusctl command line against `pod`'s daemon.
fn criusctl(pod: &Pod, args: &[&str]) -> Command {
    let mut command = Command::new(CRIUSCTL);
    command
        .args([
            "--runtime-endpoint",
            &pod.daemon.endpoint(),
            "--timeout",
            "10s",
        ])
        .args(args)
        .env("CRI_CONFIG_FILE", "/dev/null");
    command
}

/// Runs criusctl with `input` on its stdin; returns (exit code, stdout,
/// stderr).
fn run_with_input(pod: &Pod, args: &[&str], input: Vec<u8>) -> (i32, Vec<u8>, String) {
    let mut child = criusctl(pod, args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    feeder.join().unwrap();
    (
        out.status.code().unwrap_or(-1),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn run(pod: &Pod, args: &[&str]) -> (i32, Vec<u8>, String) {
    run_with_input(pod, args, Vec::new())
}

/// Bytes no two runs of a bug would produce alike.
fn noise(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_each_transport() {
    let pod = Pod::new(json!({})).await;
    let id = pod.run("c", json!({"command": ["sleep", "3600"]})).await;
    let input = noise(3 << 20);
    for transport in TRANSPORTS {
        let call = |rest: &[&str], input: Vec<u8>| {
            let mut args = vec!["exec", "--transport", transport, id.as_str()];
            args.extend_from_slice(rest);
            run_with_input(&pod, &args, input)
        };

        // Output on its streams, and the command's exit code as criusctl's.
        let (code, out, err) = call(&["sh", "-c", "echo out; echo err >&2; exit 7"], vec![]);
        assert_eq!(code, 7, "{transport}: {err}");
        assert_eq!(out, b"out\n", "{transport}");
        assert!(err.contains("err"), "{transport}: {err:?}");
        let (code, out, err) = call(&["echo", "hi"], vec![]);
        assert_eq!(
            (code, out.as_slice()),
            (0, &b"hi\n"[..]),
            "{transport}: {err}"
        );

        // Stdin through cat, unchanged; its end closes cat's stdin.
        let (code, out, err) = call(&["-i", "cat"], input.clone());
        assert_eq!(code, 0, "{transport}: {err}");
        assert!(out == input, "{transport}: {} bytes back", out.len());

        // A terminal: its line discipline ends lines with CR LF. (The sleep
        // lets runc make criusd's pty raw first; output before that gets a
        // second CR, a race of the exec path, not of the transports.)
        let (code, out, err) = call(&["-t", "sh", "-c", "sleep 1; tty; echo hi"], vec![]);
        assert_eq!(code, 0, "{transport}: {err}");
        let out = String::from_utf8_lossy(&out);
        assert!(
            out.starts_with("/dev/pts/") && out.ends_with("\r\nhi\r\n"),
            "{transport}: {out:?}"
        );
    }

    // 100 MiB through stdout over SPDY: the client's window updates keep
    // the server sending once its windows are in force.
    let (code, out, err) = run(
        &pod,
        &[
            "exec",
            "--transport",
            "spdy",
            &id,
            "head",
            "-c",
            "104857600",
            "/dev/zero",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.len(), 100 << 20);
    assert!(out.iter().all(|b| *b == 0));
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_over_each_transport() {
    let pod = Pod::new(json!({})).await;
    for transport in TRANSPORTS {
        // Reads its stdin until it ends (stdin_once: when the attached
        // client's does).
        let id = pod
            .run(
                &format!("reader-{transport}"),
                json!({"command": ["sh", "-c", "while read line; do echo got $line; done; echo bye"],
                       "stdin": true, "stdin_once": true}),
            )
            .await;
        let (code, out, err) = run_with_input(
            &pod,
            &["attach", "-i", "--transport", transport, &id],
            b"hello\n".to_vec(),
        );
        let out = String::from_utf8_lossy(&out);
        assert_eq!(code, 0, "{transport}: {err}");
        assert!(
            out.contains("got hello") && out.contains("bye"),
            "{transport}: {out:?}"
        );
        let status = pod.wait_exit(&id, Duration::from_secs(10)).await;
        assert_eq!(status.exit_code, 0);
    }
    pod.remove_pod().await;
}

/// A port-forward process, killed (by its PID) when dropped.
struct Forwarder(std::process::Child);

impl Drop for Forwarder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An HTTP/1.0 GET of `/` through 127.0.0.1:`port`; the whole answer.
async fn get(port: u16) -> std::io::Result<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    conn.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer))
        .await
        .map_err(|_| std::io::Error::other("timed out"))??;
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_each_transport() {
    let pod = Pod::new(json!({})).await;
    pod.daemon.pull(&image("httpd"), None).await.unwrap();
    pod.run("web", json!({"image": {"image": image("httpd")}}))
        .await;
    for transport in TRANSPORTS {
        // Free local ports for 80 (httpd) and 81 (nothing listens).
        let mut child = criusctl(
            &pod,
            &[
                "port-forward",
                "--transport",
                transport,
                &pod.id,
                "0:80",
                "0:81",
            ],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap());
        let mut forwarder = Forwarder(child);
        let mut ports = Vec::new();
        for _ in 0..2 {
            let mut line = String::new();
            lines.read_line(&mut line).unwrap();
            // "Forwarding from 127.0.0.1:PORT -> REMOTE"
            let port = line
                .split_whitespace()
                .nth(2)
                .and_then(|a| a.rsplit(':').next())
                .and_then(|p| p.parse::<u16>().ok())
                .unwrap_or_else(|| panic!("{transport}: {line:?}"));
            ports.push(port);
        }
        // httpd may take a moment to listen.
        let mut first = String::new();
        for _ in 0..50 {
            first = get(ports[0]).await.unwrap_or_default();
            if first.contains("crius test page") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(first.contains("200 OK"), "{transport}: {first:?}");
        // Two connections at once, each on its own streams.
        let (a, b) = tokio::join!(get(ports[0]), get(ports[0]));
        for answer in [a.unwrap(), b.unwrap()] {
            assert!(
                answer.contains("200 OK") && answer.contains("crius test page"),
                "{transport}: {answer:?}"
            );
        }
        // Nothing listens on 81: the connection ends, the error is shown.
        let refused = get(ports[1]).await.unwrap_or_default();
        assert!(refused.is_empty(), "{transport}: {refused:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = forwarder.0.kill();
        let _ = forwarder.0.wait();
        let mut err = String::new();
        forwarder
            .0
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            err.contains("forwarding 81") && err.contains("connecting to port 81"),
            "{transport}: {err:?}"
        );
    }
    pod.remove_pod().await;
}
