//! The local end of an exec or attach, whatever the transport: raw mode on
//! a terminal, its size (at once, and again on every SIGWINCH), stdin, and
//! the output written as it comes. Each transport only maps [`Input`]s to
//! its frames and its frames to [`write_out`].

use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

/// What the local side sends, in the order it happened.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    Stdin(Vec<u8>),
    /// Stdin has ended (EOF or an error): the remote stdin is closed.
    StdinEnd,
    /// The terminal's width and height.
    Resize(u16, u16),
}

/// Raw mode (restored when dropped) and the tasks feeding [`Local::inputs`].
pub struct Local {
    pub inputs: mpsc::Receiver<Input>,
    _raw: Option<RawTerminal>,
    winch: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(task) = &self.winch {
            task.abort();
        }
    }
}

/// Starts reading stdin (if `stdin`) and, when `tty` and stdin is a
/// terminal, puts it in raw mode and reports its size.
pub fn start(stdin: bool, tty: bool) -> Local {
    let (tx, inputs) = mpsc::channel(16);
    let interactive = tty && nix::unistd::isatty(std::io::stdin()).unwrap_or(false);
    let raw = interactive.then(RawTerminal::enter);
    let mut winch = None;
    if interactive {
        if let Some((w, h)) = terminal_size() {
            let _ = tx.try_send(Input::Resize(w, h));
        }
        let tx = tx.clone();
        winch = Some(tokio::spawn(async move {
            let Ok(mut signals) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
            else {
                return;
            };
            while signals.recv().await.is_some() {
                if let Some((w, h)) = terminal_size()
                    && tx.send(Input::Resize(w, h)).await.is_err()
                {
                    return;
                }
            }
        }));
    }
    if stdin {
        // A thread of its own, not tokio's stdin: a read blocked on a
        // terminal would otherwise hold up the runtime's shutdown after the
        // remote side has ended. The thread dies with the process.
        std::thread::spawn(move || read_stdin(tx));
    }
    Local {
        inputs,
        _raw: raw,
        winch,
    }
}

fn read_stdin(tx: mpsc::Sender<Input>) {
    use std::io::Read;
    let mut stdin = std::io::stdin().lock();
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if tx.blocking_send(Input::Stdin(buf[..n].to_vec())).is_err() {
                    return;
                }
            }
        }
    }
    let _ = tx.blocking_send(Input::StdinEnd);
}

/// Which local stream remote output goes to.
#[derive(Debug, Clone, Copy)]
pub enum Out {
    Stdout,
    Stderr,
}

/// Writes remote output and flushes it, so a prompt shows at once.
pub async fn write_out(to: Out, data: &[u8]) -> std::io::Result<()> {
    match to {
        Out::Stdout => {
            let mut out = tokio::io::stdout();
            out.write_all(data).await?;
            out.flush().await
        }
        Out::Stderr => {
            let mut out = tokio::io::stderr();
            out.write_all(data).await?;
            out.flush().await
        }
    }
}

/// A resize as the Kubernetes protocols carry it (both transports).
pub fn resize_json(width: u16, height: u16) -> Vec<u8> {
    format!(r#"{{"Width":{width},"Height":{height}}}"#).into_bytes()
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
