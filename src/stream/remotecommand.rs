//! Exec and attach, whatever the transport: what a token's request asks
//! for, and running it over the channels a transport made
//! (`crate::container::streams` does the container's side).

use super::tokens::Request;
use crate::container::streams::{self, Ended, ProcessIo};
use crate::runtime::Runtime;

/// An exec or attach, from its token's request.
#[derive(Debug, Clone)]
pub struct Command {
    pub container_id: String,
    /// The command for an exec; `None` for an attach.
    pub cmd: Option<Vec<String>>,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Command {
    pub fn of(request: &Request) -> Option<Command> {
        match request {
            Request::Exec(r) => Some(Command {
                container_id: r.container_id.clone(),
                cmd: Some(r.cmd.clone()),
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            }),
            Request::Attach(r) => Some(Command {
                container_id: r.container_id.clone(),
                cmd: None,
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr,
                tty: r.tty,
            }),
            Request::PortForward(_) => None,
        }
    }

    /// For the error stream's message.
    pub fn words(&self) -> Vec<String> {
        self.cmd.clone().unwrap_or_default()
    }
}

/// Runs `command` over `io`; the error is the text for the error stream.
pub async fn run(runtime: &Runtime, command: &Command, io: ProcessIo) -> Result<Ended, String> {
    let record = runtime
        .containers
        .observe(&command.container_id)
        .map_err(|e| e.to_string())?;
    let enters_itself = runtime.containers.enters_itself(&record);
    match &command.cmd {
        Some(cmd) => streams::exec(&record, cmd, command.tty, io, enters_itself)
            .await
            .map_err(|e| e.to_string()),
        // An attach ends when the container does; its exit code is the
        // container's business, not the attach's.
        None => streams::attach(&record, io)
            .await
            .map(|ended| match ended {
                Some(Ended::ClientGone) => Ended::ClientGone,
                _ => Ended::Exited(0),
            })
            .map_err(|e| e.to_string()),
    }
}

/// Terminal sizes from a resize stream: JSON objects one after another,
/// `{"Width":80,"Height":24}`.
#[derive(Default)]
pub struct ResizeParser {
    buf: Vec<u8>,
}

impl ResizeParser {
    /// Takes more bytes; returns the sizes completed by them. Garbage is
    /// dropped (a resize is never worth ending a session over).
    pub fn push(&mut self, data: &[u8]) -> Vec<(u16, u16)> {
        #[derive(serde::Deserialize)]
        struct Size {
            #[serde(rename = "Width")]
            width: u16,
            #[serde(rename = "Height")]
            height: u16,
        }
        self.buf.extend_from_slice(data);
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<Size>();
        let mut used = 0;
        loop {
            match stream.next() {
                Some(Ok(size)) => {
                    sizes.push((size.width, size.height));
                    used = stream.byte_offset();
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(_)) => {
                    used = self.buf.len();
                    break;
                }
                None => {
                    used = self.buf.len();
                    break;
                }
            }
        }
        self.buf.drain(..used);
        if self.buf.len() > 4096 {
            self.buf.clear();
        }
        sizes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resizes_arrive_in_pieces() {
        let mut p = ResizeParser::default();
        assert!(p.push(br#"{"Width":80,"#).is_empty());
        assert_eq!(
            p.push(br#""Height":24}{"Width":100,"Height":40}"#),
            [(80, 24), (100, 40)]
        );
        assert!(p.push(b"garbage").is_empty());
        assert_eq!(p.push(br#"{"Width":1,"Height":2}"#), [(1, 2)]);
    }
}
