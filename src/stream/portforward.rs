//! PortForward's far end: connections to `localhost:<port>` inside a pod's
//! network namespace (the node's, for host-network pods). The transports
//! (`spdy`, `websocket`) tie client streams to these connections.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to `port` on the pod's loopback (IPv4, then IPv6).
pub async fn connect(netns: Option<PathBuf>, port: u16) -> std::io::Result<tokio::net::TcpStream> {
    // A thread of its own enters the namespace and ends with it: no worker
    // thread is ever left in a pod's namespace. The socket keeps the
    // namespace it was made in.
    let stream = tokio::task::spawn_blocking(move || {
        std::thread::spawn(move || -> std::io::Result<TcpStream> {
            if let Some(netns) = netns {
                let file = std::fs::File::open(&netns)?;
                nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET)?;
            }
            let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
                .or_else(|e| TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e))
        })
        .join()
        .map_err(|_| std::io::Error::other("the connecting thread panicked"))?
    })
    .await
    .map_err(std::io::Error::other)??;
    stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(stream)
}

/// The error text a client shows when the pod's port does not answer.
pub fn connect_error(pod: &str, port: u16, e: &std::io::Error) -> String {
    format!(
        "an error occurred forwarding {port} -> {port}: connecting to port {port} in pod sandbox {pod}: {e}"
    )
}
