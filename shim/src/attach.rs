//! Attach: the container's stdio over the shim's control socket.
//!
//! A client sends `attach\n` (output only) or `attach stdin\n` (output and
//! input); the shim answers `ok\n` and from then on both sides send frames:
//! one byte of kind, four of length (big-endian), then the data. The shim
//! sends every output chunk from the moment of attaching ([`STDOUT`],
//! [`STDERR`]; a terminal's output is all [`STDOUT`]); the client sends
//! [`STDIN`] data, [`STDIN_CLOSE`] when its input ends, and [`RESIZE`]
//! (width and height, two big-endian u16) for a terminal. The shim closes
//! the connection when the container's init has exited and its output is
//! drained. A client that stops reading is dropped once its backlog passes
//! [`MAX_BACKLOG`]: the container never waits for an attached client.

pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const RESIZE: u8 = 4;
pub const STDIN_CLOSE: u8 = 5;

/// The longest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;
/// Output queued for one client before the shim drops it.
pub const MAX_BACKLOG: usize = 8 << 20;

/// Appends one frame to `out`.
pub fn encode(kind: u8, data: &[u8], out: &mut Vec<u8>) {
    out.push(kind);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// A resize frame's data.
pub fn resize_data(width: u16, height: u16) -> [u8; 4] {
    let (w, h) = (width.to_be_bytes(), height.to_be_bytes());
    [w[0], w[1], h[0], h[1]]
}

/// Width and height from a resize frame's data.
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    let d: [u8; 4] = data.try_into().ok()?;
    Some((
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
    ))
}

#[derive(Debug, PartialEq, Eq)]
pub struct TooLong(pub usize);

/// The first whole frame in `buf`: (kind, data range, bytes used), or
/// `None` until more bytes arrive.
pub fn decode(buf: &[u8]) -> Result<Option<(u8, std::ops::Range<usize>, usize)>, TooLong> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    if len > MAX_FRAME {
        return Err(TooLong(len));
    }
    if buf.len() < 5 + len {
        return Ok(None);
    }
    Ok(Some((buf[0], 5..5 + len, 5 + len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut out = Vec::new();
        encode(STDOUT, b"hello", &mut out);
        encode(RESIZE, &resize_data(80, 24), &mut out);
        let (kind, data, used) = decode(&out).unwrap().unwrap();
        assert_eq!((kind, &out[data], used), (STDOUT, &b"hello"[..], 10));
        let (kind, data, _) = decode(&out[used..]).unwrap().unwrap();
        assert_eq!(kind, RESIZE);
        assert_eq!(parse_resize(&out[used..][data]), Some((80, 24)));
        assert_eq!(decode(&out[..7]).unwrap(), None);
        let mut huge = vec![STDIN];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&huge).is_err());
    }
}
