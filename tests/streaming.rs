//! Exec, Attach and PortForward through the streaming server, with real
//! containers: the RPCs' checks, single-use URLs, and the streams over
//! WebSocket and SPDY (criusctl's over both: `criusctl_streams.rs`).

mod common;

use common::pods::{Pod, image};
use common::ws;
use crius::cri;
use serde_json::{Value, json};
use std::time::Duration;
use tonic::Code;

async fn exec_url(pod: &Pod, request: cri::ExecRequest) -> Result<String, tonic::Status> {
    Ok(pod
        .daemon
        .runtime()
        .await
        .exec(request)
        .await?
        .into_inner()
        .url)
}

fn exec_request(id: &str, cmd: &[&str], stdin: bool, tty: bool) -> cri::ExecRequest {
    cri::ExecRequest {
        container_id: id.into(),
        cmd: cmd.iter().map(|s| s.to_string()).collect(),
        tty,
        stdin,
        stdout: true,
        stderr: !tty,
    }
}

fn status(channels: &std::collections::BTreeMap<u8, Vec<u8>>) -> Value {
    serde_json::from_slice(channels.get(&3).expect("a status on the error channel")).unwrap()
}

async fn sleeper(pod: &Pod, name: &str) -> String {
    pod.run(name, json!({"command": ["sleep", "3600"]})).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_checked_and_urls_are_single_use() {
    let pod = Pod::new(json!({})).await;
    let id = sleeper(&pod, "c").await;
    let cases = [
        (
            exec_request(&id, &[], false, false),
            Code::InvalidArgument,
            "cmd",
        ),
        (
            exec_request("nope", &["true"], false, false),
            Code::NotFound,
            "nope",
        ),
        (
            cri::ExecRequest {
                stdout: false,
                stderr: false,
                ..exec_request(&id, &["true"], false, false)
            },
            Code::InvalidArgument,
            "stdin, stdout and stderr",
        ),
        (
            cri::ExecRequest {
                stderr: true,
                ..exec_request(&id, &["true"], false, true)
            },
            Code::InvalidArgument,
            "stderr must be false with tty",
        ),
    ];
    for (request, code, needle) in cases {
        let err = exec_url(&pod, request).await.unwrap_err();
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "{err:?}");
    }
    let created = pod
        .create("created", json!({"command": ["true"]}))
        .await
        .unwrap();
    let err = exec_url(&pod, exec_request(&created, &["true"], false, false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");

    let url = exec_url(&pod, exec_request(&id, &["true"], false, false))
        .await
        .unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let (mut conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    let out = ws::collect(&mut conn).await;
    assert_eq!(status(&out)["status"], "Success");
    assert_eq!(
        ws::connect(&url, "v4.channel.k8s.io").await.err(),
        Some(404),
        "reused"
    );
    let unknown = format!(
        "{}/exec/{}",
        url.rsplit_once("/exec/").unwrap().0,
        "0".repeat(64)
    );
    assert_eq!(
        ws::connect(&unknown, "v4.channel.k8s.io").await.err(),
        Some(404)
    );
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_websocket_streams_output_input_and_exit_codes() {
    let pod = Pod::new(json!({})).await;
    let id = sleeper(&pod, "c").await;

    // Output on its channels, and the exit code as a Status cause.
    let url = exec_url(
        &pod,
        exec_request(
            &id,
            &["sh", "-c", "echo out; echo err >&2; exit 3"],
            false,
            false,
        ),
    )
    .await
    .unwrap();
    let (mut conn, protocol) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    assert_eq!(protocol, "v4.channel.k8s.io");
    let out = ws::collect(&mut conn).await;
    assert_eq!(out.get(&1).map(Vec::as_slice), Some(&b"out\n"[..]));
    assert_eq!(out.get(&2).map(Vec::as_slice), Some(&b"err\n"[..]));
    let st = status(&out);
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["message"], "3");

    // Input echoed back, 10 MiB unchanged, ended by v5's close signal.
    let url = exec_url(&pod, exec_request(&id, &["cat"], true, false))
        .await
        .unwrap();
    let (conn, protocol) = ws::connect(&url, "v5.channel.k8s.io").await.unwrap();
    assert_eq!(protocol, "v5.channel.k8s.io");
    let data: Vec<u8> = (0..10 << 20).map(|i: u32| (i % 251) as u8).collect();
    let (mut sink, mut source) = futures_util::StreamExt::split(conn);
    let sent = data.clone();
    let writer = tokio::spawn(async move {
        use futures_util::SinkExt;
        for chunk in sent.chunks(64 * 1024) {
            let mut message = vec![0u8];
            message.extend_from_slice(chunk);
            sink.send(tokio_tungstenite::tungstenite::Message::binary(message))
                .await
                .unwrap();
        }
        sink.send(tokio_tungstenite::tungstenite::Message::binary(vec![
            255u8, 0,
        ]))
        .await
        .unwrap();
        sink
    });
    let mut echoed = Vec::new();
    let mut st = None;
    while let Some(Ok(message)) = futures_util::StreamExt::next(&mut source).await {
        if let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message {
            match bytes[0] {
                1 => echoed.extend_from_slice(&bytes[1..]),
                3 => st = Some(serde_json::from_slice::<Value>(&bytes[1..]).unwrap()),
                _ => {}
            }
        }
    }
    let _ = writer.await.unwrap();
    assert_eq!(echoed.len(), data.len());
    assert!(echoed == data, "10 MiB came back unchanged");
    assert_eq!(st.unwrap()["status"], "Success");

    // A terminal: its size follows resizes.
    let url = exec_url(
        &pod,
        exec_request(&id, &["sh", "-c", "sleep 1; stty size"], true, true),
    )
    .await
    .unwrap();
    let (mut conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    ws::send(&mut conn, 4, br#"{"Width":100,"Height":40}"#).await;
    let out = ws::collect(&mut conn).await;
    let text =
        String::from_utf8_lossy(out.get(&1).map(Vec::as_slice).unwrap_or_default()).into_owned();
    assert!(text.contains("40 100"), "{text:?}");
    assert_eq!(status(&out)["status"], "Success");
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_vanishes_leaves_no_process() {
    let pod = Pod::new(json!({})).await;
    let id = sleeper(&pod, "c").await;
    let url = exec_url(&pod, exec_request(&id, &["sleep", "1234"], false, false))
        .await
        .unwrap();
    let (conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    async fn running(pod: &Pod, id: &str) -> bool {
        let (_, out, _) = pod.exec(id, &["ps"]).await;
        out.contains("sleep 1234")
    }
    let deadline = std::time::Instant::now() + common::patience(Duration::from_secs(10));
    while !running(&pod, &id).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the exec never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(conn);
    let deadline = std::time::Instant::now() + common::patience(Duration::from_secs(10));
    while running(&pod, &id).await {
        assert!(
            std::time::Instant::now() < deadline,
            "the exec outlived its client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_over_websocket_sees_output_and_feeds_stdin() {
    let pod = Pod::new(json!({})).await;
    // A container reading its stdin and echoing it, with stdin_once.
    let id = pod
        .run(
            "reader",
            json!({"command": ["sh", "-c", "echo ready; while read line; do echo got $line; done; echo bye"],
                   "stdin": true, "stdin_once": true}),
        )
        .await;
    let attach = |stdin: bool| cri::AttachRequest {
        container_id: id.clone(),
        stdin,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let url = pod
        .daemon
        .runtime()
        .await
        .attach(attach(true))
        .await
        .unwrap()
        .into_inner()
        .url;
    let (mut conn, _) = ws::connect(&url, "v5.channel.k8s.io").await.unwrap();
    ws::send(&mut conn, 0, b"hello\n").await;
    ws::send(&mut conn, 255, &[0]).await; // stdin ends: stdin_once closes it
    let out = ws::collect(&mut conn).await;
    let text =
        String::from_utf8_lossy(out.get(&1).map(Vec::as_slice).unwrap_or_default()).into_owned();
    assert!(
        text.contains("got hello") && text.contains("bye"),
        "{text:?}"
    );
    assert_eq!(status(&out)["status"], "Success");
    let st = pod.wait_exit(&id, Duration::from_secs(10)).await;
    assert_eq!(st.exit_code, 0);
    // The container has exited: no more attaching.
    let err = pod
        .daemon
        .runtime()
        .await
        .attach(attach(false))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    pod.remove_pod().await;
}

/// A pod with busybox httpd serving the test page on port 80.
async fn web_pod() -> Pod {
    let pod = Pod::new(json!({})).await;
    pod.daemon.pull(&image("httpd"), None).await.unwrap();
    pod.run("web", json!({"image": {"image": image("httpd")}}))
        .await;
    pod
}

async fn port_forward_url(pod: &Pod) -> String {
    pod.daemon
        .runtime()
        .await
        .port_forward(cri::PortForwardRequest {
            pod_sandbox_id: pod.id.clone(),
            port: vec![80],
        })
        .await
        .unwrap()
        .into_inner()
        .url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_reaches_the_pod() {
    let pod = web_pod().await;
    let mut body = String::new();
    // httpd may take a moment to listen.
    for _ in 0..50 {
        let url = port_forward_url(&pod).await;
        let (mut conn, _) = ws::connect(&format!("{url}?port=80"), "v4.channel.k8s.io")
            .await
            .unwrap();
        ws::send(&mut conn, 0, b"GET / HTTP/1.0\r\n\r\n").await;
        let out = ws::collect(&mut conn).await;
        let data = out.get(&0).cloned().unwrap_or_default();
        assert_eq!(&data[..2], &80u16.to_le_bytes(), "the port prefix");
        body = String::from_utf8_lossy(&data[2..]).into_owned();
        if body.contains("crius test page") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        body.contains("200 OK") && body.contains("crius test page"),
        "{body:?}"
    );
    pod.remove_pod().await;
}

/// A client that half-closes after its request (client-go sends FIN when
/// its local connection stops sending) still gets the whole reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_spdy_keeps_the_reply_after_the_client_half_closes() {
    use crius::stream::spdy::{client, frame::Frame};
    let pod = web_pod().await;
    let mut body = Vec::new();
    for _ in 0..50 {
        let url = port_forward_url(&pod).await;
        let (mut conn, _) = client::connect(&url, "portforward.k8s.io").await.unwrap();
        let headers = |kind| [("streamtype", kind), ("port", "80"), ("requestid", "0")];
        conn.open(&headers("error")).await.unwrap();
        let data = conn.open(&headers("data")).await.unwrap();
        conn.data(data, b"GET / HTTP/1.0\r\n\r\n", true)
            .await
            .unwrap();
        body.clear();
        let reply = async {
            while let Some(frame) = conn.next_frame().await {
                if let Frame::Data {
                    stream_id,
                    fin,
                    data: bytes,
                } = frame
                    && stream_id == data
                {
                    body.extend_from_slice(&bytes);
                    if fin {
                        break;
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), reply)
            .await
            .expect("the reply and the data stream's FIN");
        if String::from_utf8_lossy(&body).contains("crius test page") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let body = String::from_utf8_lossy(&body);
    assert!(
        body.contains("200 OK") && body.contains("crius test page"),
        "{body:?}"
    );
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_spdy_and_hostile_connections() {
    use crius::stream::spdy::client as spdy_client;
    let pod = Pod::new(json!({})).await;
    let id = sleeper(&pod, "c").await;

    // v4: stdout and stderr on their streams, the exit code in the Status.
    let url = exec_url(
        &pod,
        exec_request(&id, &["sh", "-c", "cat; echo err >&2; exit 4"], true, false),
    )
    .await
    .unwrap();
    let (mut client, protocol) = spdy_client::connect(&url, "v4.channel.k8s.io")
        .await
        .unwrap();
    assert_eq!(protocol, "v4.channel.k8s.io");
    let error = client.open(&[("streamtype", "error")]).await.unwrap();
    let stdin = client.open(&[("streamtype", "stdin")]).await.unwrap();
    let stdout = client.open(&[("streamtype", "stdout")]).await.unwrap();
    let stderr = client.open(&[("streamtype", "stderr")]).await.unwrap();
    client.data(stdin, b"through spdy\n", true).await.unwrap();
    let (streams, goaway) = client.collect().await;
    assert_eq!(
        streams.get(&stdout).map(Vec::as_slice),
        Some(&b"through spdy\n"[..])
    );
    assert_eq!(streams.get(&stderr).map(Vec::as_slice), Some(&b"err\n"[..]));
    let st: Value = serde_json::from_slice(&streams[&error]).unwrap();
    assert_eq!(st["details"]["causes"][0]["message"], "4", "{st}");
    assert!(goaway, "the session ends with GOAWAY");

    // A protocol the server does not speak is refused before anything runs.
    let url = exec_url(&pod, exec_request(&id, &["true"], false, false))
        .await
        .unwrap();
    assert!(matches!(
        spdy_client::connect(&url, "v9.channel.k8s.io").await,
        Err(spdy_client::ConnectError::Status(403))
    ));

    // Garbage after the upgrade ends the connection, and nothing else.
    for garbage in [
        vec![0xffu8; 4096],
        b"\x80\x03\x00\x01\x00\xff\xff\xff".to_vec(),
    ] {
        let url = exec_url(&pod, exec_request(&id, &["sleep", "999"], false, false))
            .await
            .unwrap();
        let (mut client, _) = spdy_client::connect(&url, "v4.channel.k8s.io")
            .await
            .unwrap();
        use tokio::io::AsyncWriteExt;
        client.conn.write_all(&garbage).await.unwrap();
        let ended = tokio::time::timeout(Duration::from_secs(10), client.collect()).await;
        assert!(ended.is_ok(), "the server closed the connection");
    }
    // Malformed WebSocket frames likewise.
    let url = exec_url(&pod, exec_request(&id, &["true"], false, false))
        .await
        .unwrap();
    let (conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    let mut raw = conn.into_inner();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    raw.write_all(&[0x8f, 0xff, 0xff, 0xff]).await.unwrap();
    let mut sink = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the server closed the connection");
    // The daemon serves on.
    let (code, out, _) = pod.exec(&id, &["echo", "alive"]).await;
    assert_eq!((code, out.as_str()), (0, "alive\n"));
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_execs_big_outputs_and_kills() {
    let pod = Pod::new(json!({})).await;
    let id = sleeper(&pod, "c").await;
    let rss = |pid: u32| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let line = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .unwrap()
            .to_string();
        line.split_whitespace()
            .nth(1)
            .unwrap()
            .parse::<u64>()
            .unwrap()
    };
    let before = rss(pod.daemon.pid());

    // 100 MiB through stdout, counted, not kept.
    let url = exec_url(
        &pod,
        exec_request(&id, &["head", "-c", "104857600", "/dev/zero"], false, false),
    )
    .await
    .unwrap();
    let (conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    let (_, mut source) = futures_util::StreamExt::split(conn);
    let mut total = 0usize;
    while let Some(Ok(message)) = futures_util::StreamExt::next(&mut source).await {
        if let tokio_tungstenite::tungstenite::Message::Binary(bytes) = message
            && bytes.first() == Some(&1)
        {
            total += bytes.len() - 1;
        }
    }
    assert_eq!(total, 100 << 20, "every byte arrived");
    let grown = rss(pod.daemon.pid()).saturating_sub(before);
    assert!(
        grown < 64 * 1024,
        "criusd grew by {grown} KiB streaming 100 MiB"
    );

    // Killed: 128 + 9.
    let url = exec_url(
        &pod,
        exec_request(&id, &["sh", "-c", "kill -9 $$"], false, false),
    )
    .await
    .unwrap();
    let (mut conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
    let out = ws::collect(&mut conn).await;
    assert_eq!(status(&out)["details"]["causes"][0]["message"], "137");

    // 20 at once.
    let mut running = tokio::task::JoinSet::new();
    for n in 0..20 {
        let url = exec_url(
            &pod,
            exec_request(
                &id,
                &["sh", "-c", &format!("sleep 0.5; echo {n}")],
                false,
                false,
            ),
        )
        .await
        .unwrap();
        running.spawn(async move {
            let (mut conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
            let out = ws::collect(&mut conn).await;
            (n, out)
        });
    }
    let mut seen = 0;
    while let Some(done) = running.join_next().await {
        let (n, out) = done.unwrap();
        assert_eq!(
            out.get(&1).map(Vec::as_slice),
            Some(format!("{n}\n").as_bytes())
        );
        assert_eq!(status(&out)["status"], "Success");
        seen += 1;
    }
    assert_eq!(seen, 20);
    pod.remove_pod().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_attaches_and_host_network_port_forward() {
    // A host-network pod: port-forward reaches the node's loopback.
    let pod =
        Pod::new(json!({"linux": {"security_context": {"namespace_options": {"network": 2}}}}))
            .await;
    let id = pod
        .run(
            "ticker",
            json!({"command": ["sh", "-c", "for i in $(seq 1 30); do echo tick $i; sleep 0.1; done"]}),
        )
        .await;
    let attach = cri::AttachRequest {
        container_id: id.clone(),
        stdin: false,
        tty: false,
        stdout: true,
        stderr: true,
    };
    let mut clients = Vec::new();
    for _ in 0..3 {
        let url = pod
            .daemon
            .runtime()
            .await
            .attach(attach.clone())
            .await
            .unwrap()
            .into_inner()
            .url;
        let (conn, _) = ws::connect(&url, "v4.channel.k8s.io").await.unwrap();
        clients.push(tokio::spawn(async move {
            let mut conn = conn;
            ws::collect(&mut conn).await
        }));
    }
    for client in clients {
        let out = client.await.unwrap();
        let text = String::from_utf8_lossy(out.get(&1).map(Vec::as_slice).unwrap_or_default())
            .into_owned();
        assert!(
            text.contains("tick 30"),
            "every attach sees the output: {text:?}"
        );
    }

    // A server on the node's loopback, reached through the pod's port-forward.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = conn.write_all(b"hello from the node\n").await;
            });
        }
    });
    let mut connections = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let url = pod
            .daemon
            .runtime()
            .await
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: pod.id.clone(),
                port: vec![port as i32],
            })
            .await
            .unwrap()
            .into_inner()
            .url;
        connections.spawn(async move {
            let (mut conn, _) = ws::connect(&format!("{url}?port={port}"), "v4.channel.k8s.io")
                .await
                .unwrap();
            ws::collect(&mut conn).await
        });
    }
    while let Some(done) = connections.join_next().await {
        let out = done.unwrap();
        assert_eq!(&out[&0][2..], b"hello from the node\n");
    }
    pod.remove_pod().await;
}
