//! The SPDY/3 frame codec: bytes on the wire to [`Frame`] values and back.
//!
//! This module knows nothing of sessions, streams or Kubernetes; it only
//! checks what a frame's own bytes can tell (version, lengths, fixed
//! payload sizes). Header blocks stay compressed here; see
//! [`super::headers`] for those.
//!
//! Wire layout (SPDY/3, all integers big-endian):
//!
//! ```text
//! control frame:  |1| version(15) | type(16) | flags(8) | length(24) | payload
//! data frame:     |0| stream id(31)          | flags(8) | length(24) | payload
//! ```

use bytes::Bytes;

/// The only protocol version spoken: SPDY/3 (3.1 differs only in semantics).
pub const VERSION: u16 = 3;
/// Bytes in every frame header, control or data.
pub const HEADER_LEN: usize = 8;
/// The largest payload the 24-bit length field can describe.
pub const MAX_PAYLOAD_LEN: usize = (1 << 24) - 1;
/// Default bound on a control frame's payload (1 MiB).
pub const DEFAULT_MAX_CONTROL_LEN: usize = 1 << 20;
/// Default bound on a data frame's payload: the protocol maximum (16 MiB - 1);
/// Go's spdystream writes one DATA frame per `Write` call, however large.
pub const DEFAULT_MAX_DATA_LEN: usize = MAX_PAYLOAD_LEN;

/// FIN flag (control and data frames): the sender's last frame on the stream.
pub const FLAG_FIN: u8 = 0x01;
/// UNIDIRECTIONAL flag (SYN_STREAM): the recipient may not send on the stream.
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
/// CLEAR_SETTINGS flag (SETTINGS).
pub const FLAG_CLEAR_SETTINGS: u8 = 0x01;

/// Control frame type codes.
pub mod kind {
    pub const SYN_STREAM: u16 = 1;
    pub const SYN_REPLY: u16 = 2;
    pub const RST_STREAM: u16 = 3;
    pub const SETTINGS: u16 = 4;
    pub const PING: u16 = 6;
    pub const GOAWAY: u16 = 7;
    pub const HEADERS: u16 = 8;
    pub const WINDOW_UPDATE: u16 = 9;
}

/// SETTINGS ids.
pub mod setting {
    pub const UPLOAD_BANDWIDTH: u32 = 1;
    pub const DOWNLOAD_BANDWIDTH: u32 = 2;
    pub const ROUND_TRIP_TIME: u32 = 3;
    pub const MAX_CONCURRENT_STREAMS: u32 = 4;
    pub const CURRENT_CWND: u32 = 5;
    pub const DOWNLOAD_RETRANS_RATE: u32 = 6;
    pub const INITIAL_WINDOW_SIZE: u32 = 7;
    pub const CLIENT_CERTIFICATE_VECTOR_SIZE: u32 = 8;
}

/// Why the codec refused some bytes. Every variant is a session-level
/// protocol error: the byte stream cannot be resynchronised after it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    #[error("control frame type {kind} payload of {len} bytes exceeds the limit of {max}")]
    ControlTooLarge { kind: u16, len: usize, max: usize },
    #[error("data frame payload of {len} bytes exceeds the limit of {max}")]
    DataTooLarge { len: usize, max: usize },
    #[error("control frame type {kind} has invalid length {len}")]
    InvalidLength { kind: u16, len: usize },
}

/// RST_STREAM status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RstStatus {
    ProtocolError,
    InvalidStream,
    RefusedStream,
    UnsupportedVersion,
    Cancel,
    InternalError,
    FlowControlError,
    StreamInUse,
    StreamAlreadyClosed,
    InvalidCredentials,
    FrameTooLarge,
    /// A code this implementation does not name (0 is invalid on the wire
    /// but kept here so parsing never fails on it).
    Other(u32),
}

impl RstStatus {
    pub fn code(self) -> u32 {
        match self {
            RstStatus::ProtocolError => 1,
            RstStatus::InvalidStream => 2,
            RstStatus::RefusedStream => 3,
            RstStatus::UnsupportedVersion => 4,
            RstStatus::Cancel => 5,
            RstStatus::InternalError => 6,
            RstStatus::FlowControlError => 7,
            RstStatus::StreamInUse => 8,
            RstStatus::StreamAlreadyClosed => 9,
            RstStatus::InvalidCredentials => 10,
            RstStatus::FrameTooLarge => 11,
            RstStatus::Other(c) => c,
        }
    }

    pub fn from_code(code: u32) -> RstStatus {
        match code {
            1 => RstStatus::ProtocolError,
            2 => RstStatus::InvalidStream,
            3 => RstStatus::RefusedStream,
            4 => RstStatus::UnsupportedVersion,
            5 => RstStatus::Cancel,
            6 => RstStatus::InternalError,
            7 => RstStatus::FlowControlError,
            8 => RstStatus::StreamInUse,
            9 => RstStatus::StreamAlreadyClosed,
            10 => RstStatus::InvalidCredentials,
            11 => RstStatus::FrameTooLarge,
            c => RstStatus::Other(c),
        }
    }
}

/// GOAWAY status codes. (The SPDY/3 draft's text and its implementations
/// disagree on INTERNAL_ERROR; Go's spdystream and netty use 2, as here.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GoAwayStatus {
    Ok,
    ProtocolError,
    InternalError,
    Other(u32),
}

impl GoAwayStatus {
    pub fn code(self) -> u32 {
        match self {
            GoAwayStatus::Ok => 0,
            GoAwayStatus::ProtocolError => 1,
            GoAwayStatus::InternalError => 2,
            GoAwayStatus::Other(c) => c,
        }
    }

    pub fn from_code(code: u32) -> GoAwayStatus {
        match code {
            0 => GoAwayStatus::Ok,
            1 => GoAwayStatus::ProtocolError,
            2 => GoAwayStatus::InternalError,
            c => GoAwayStatus::Other(c),
        }
    }
}

/// One SETTINGS entry. `id` is 24 bits on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    pub id: u32,
    pub value: u32,
}

/// One SPDY/3 frame. Stream ids and window deltas are 31-bit: the reserved
/// high bit is dropped when parsing and never set when encoding. Flag bits
/// other than the ones named here are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_stream_id: u32,
        /// 0 (highest) to 7.
        priority: u8,
        slot: u8,
        fin: bool,
        unidirectional: bool,
        /// The compressed name/value block.
        header_block: Bytes,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    RstStream {
        stream_id: u32,
        status: RstStatus,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: GoAwayStatus,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        header_block: Bytes,
    },
    WindowUpdate {
        /// 0 is the session (SPDY/3.1).
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type this codec does not know. The spec says to
    /// ignore such frames; the payload is not kept.
    Unknown {
        kind: u16,
        flags: u8,
    },
}

/// Size bounds applied while parsing, checked as soon as a frame header is
/// visible so that an oversized frame is an error, not an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_control_len: usize,
    pub max_data_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_control_len: DEFAULT_MAX_CONTROL_LEN,
            max_data_len: DEFAULT_MAX_DATA_LEN,
        }
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

const ID_MASK: u32 = 0x7fff_ffff;

/// How far the frame at the front of `buf` extends, once its header is
/// visible: `Ok(None)` if fewer than [`HEADER_LEN`] bytes are buffered,
/// otherwise the total length (header + payload) after the size checks.
/// Lets a reader reserve exactly what the next frame needs.
pub fn frame_len(buf: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let first = be32(&buf[0..4]);
    let len = (be32(&buf[4..8]) & 0x00ff_ffff) as usize;
    if first & 0x8000_0000 != 0 {
        let version = ((first >> 16) & 0x7fff) as u16;
        if version != VERSION {
            return Err(FrameError::UnsupportedVersion(version));
        }
        let kind = (first & 0xffff) as u16;
        if len > limits.max_control_len {
            return Err(FrameError::ControlTooLarge {
                kind,
                len,
                max: limits.max_control_len,
            });
        }
    } else if len > limits.max_data_len {
        return Err(FrameError::DataTooLarge {
            len,
            max: limits.max_data_len,
        });
    }
    Ok(Some(HEADER_LEN + len))
}

impl Frame {
    /// A SYN_STREAM as both ends here open streams: bidirectional, not yet
    /// finished, with no associated stream, priority or slot.
    pub fn open(stream_id: u32, header_block: Bytes) -> Frame {
        Frame::SynStream {
            stream_id,
            associated_stream_id: 0,
            priority: 0,
            slot: 0,
            fin: false,
            unidirectional: false,
            header_block,
        }
    }

    /// Parses the frame at the front of `buf` with the default [`Limits`].
    /// `Ok(None)`: more bytes are needed. `Ok(Some((frame, n)))`: `n` bytes
    /// were used. Unknown control frame types come back as
    /// [`Frame::Unknown`] so the caller can drop their bytes and carry on.
    pub fn parse(buf: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        Self::parse_with_limits(buf, &Limits::default())
    }

    /// [`Frame::parse`] with explicit size bounds.
    pub fn parse_with_limits(
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(total) = frame_len(buf, limits)? else {
            return Ok(None);
        };
        if buf.len() < total {
            return Ok(None);
        }
        let first = be32(&buf[0..4]);
        let flags = buf[4];
        let p = &buf[HEADER_LEN..total];
        let fin = flags & FLAG_FIN != 0;

        if first & 0x8000_0000 == 0 {
            let frame = Frame::Data {
                stream_id: first & ID_MASK,
                fin,
                data: Bytes::copy_from_slice(p),
            };
            return Ok(Some((frame, total)));
        }

        let kind = (first & 0xffff) as u16;
        let bad_len = || FrameError::InvalidLength { kind, len: p.len() };
        let frame = match kind {
            kind::SYN_STREAM => {
                if p.len() < 10 {
                    return Err(bad_len());
                }
                Frame::SynStream {
                    stream_id: be32(&p[0..4]) & ID_MASK,
                    associated_stream_id: be32(&p[4..8]) & ID_MASK,
                    priority: p[8] >> 5,
                    slot: p[9],
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    header_block: Bytes::copy_from_slice(&p[10..]),
                }
            }
            kind::SYN_REPLY | kind::HEADERS => {
                if p.len() < 4 {
                    return Err(bad_len());
                }
                let stream_id = be32(&p[0..4]) & ID_MASK;
                let header_block = Bytes::copy_from_slice(&p[4..]);
                if kind == kind::SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        fin,
                        header_block,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        fin,
                        header_block,
                    }
                }
            }
            kind::RST_STREAM => {
                if p.len() != 8 {
                    return Err(bad_len());
                }
                Frame::RstStream {
                    stream_id: be32(&p[0..4]) & ID_MASK,
                    status: RstStatus::from_code(be32(&p[4..8])),
                }
            }
            kind::SETTINGS => {
                if p.len() < 4 {
                    return Err(bad_len());
                }
                let count = be32(&p[0..4]) as usize;
                // The count must describe exactly the bytes present: checked
                // before anything is allocated from it.
                if (p.len() - 4) / 8 != count || !(p.len() - 4).is_multiple_of(8) {
                    return Err(bad_len());
                }
                let entries = p[4..]
                    .chunks_exact(8)
                    .map(|e| {
                        let flag_id = be32(&e[0..4]);
                        Setting {
                            flags: (flag_id >> 24) as u8,
                            id: flag_id & 0x00ff_ffff,
                            value: be32(&e[4..8]),
                        }
                    })
                    .collect();
                Frame::Settings {
                    clear: flags & FLAG_CLEAR_SETTINGS != 0,
                    entries,
                }
            }
            kind::PING => {
                if p.len() != 4 {
                    return Err(bad_len());
                }
                Frame::Ping { id: be32(p) }
            }
            kind::GOAWAY => {
                // SPDY/2's GOAWAY had no status; SPDY/3's has 8 bytes.
                if p.len() != 8 {
                    return Err(bad_len());
                }
                Frame::GoAway {
                    last_good_stream_id: be32(&p[0..4]) & ID_MASK,
                    status: GoAwayStatus::from_code(be32(&p[4..8])),
                }
            }
            kind::WINDOW_UPDATE => {
                if p.len() != 8 {
                    return Err(bad_len());
                }
                Frame::WindowUpdate {
                    stream_id: be32(&p[0..4]) & ID_MASK,
                    delta: be32(&p[4..8]) & ID_MASK,
                }
            }
            _ => Frame::Unknown { kind, flags },
        };
        Ok(Some((frame, total)))
    }

    /// Appends the frame's wire form to `out`.
    ///
    /// # Panics
    /// If a payload exceeds [`MAX_PAYLOAD_LEN`] (a header block or data over
    /// 16 MiB): a caller bug. Parsed frames and the session's frames never do.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Frame::SynStream {
                stream_id,
                associated_stream_id,
                priority,
                slot,
                fin,
                unidirectional,
                header_block,
            } => {
                let flags = fin_flag(*fin)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control_header(out, kind::SYN_STREAM, flags, 10 + header_block.len());
                out.extend_from_slice(&(stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(&(associated_stream_id & ID_MASK).to_be_bytes());
                out.push((priority & 0x07) << 5);
                out.push(*slot);
                out.extend_from_slice(header_block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                header_block,
            } => {
                control_header(out, kind::SYN_REPLY, fin_flag(*fin), 4 + header_block.len());
                out.extend_from_slice(&(stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(header_block);
            }
            Frame::Headers {
                stream_id,
                fin,
                header_block,
            } => {
                control_header(out, kind::HEADERS, fin_flag(*fin), 4 + header_block.len());
                out.extend_from_slice(&(stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(header_block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, kind::RST_STREAM, 0, 8);
                out.extend_from_slice(&(stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(&status.code().to_be_bytes());
            }
            Frame::Settings { clear, entries } => {
                let flags = if *clear { FLAG_CLEAR_SETTINGS } else { 0 };
                control_header(out, kind::SETTINGS, flags, 4 + 8 * entries.len());
                out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for e in entries {
                    let flag_id = (u32::from(e.flags) << 24) | (e.id & 0x00ff_ffff);
                    out.extend_from_slice(&flag_id.to_be_bytes());
                    out.extend_from_slice(&e.value.to_be_bytes());
                }
            }
            Frame::Ping { id } => {
                control_header(out, kind::PING, 0, 4);
                out.extend_from_slice(&id.to_be_bytes());
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, kind::GOAWAY, 0, 8);
                out.extend_from_slice(&(last_good_stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(&status.code().to_be_bytes());
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, kind::WINDOW_UPDATE, 0, 8);
                out.extend_from_slice(&(stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(&(delta & ID_MASK).to_be_bytes());
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                out.extend_from_slice(&(stream_id & ID_MASK).to_be_bytes());
                out.extend_from_slice(&flags_len(fin_flag(*fin), data.len()).to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::Unknown { kind, flags } => control_header(out, *kind, *flags, 0),
        }
    }

    /// The stream the frame belongs to, if any (0 for session-level
    /// WINDOW_UPDATE; None for SETTINGS, PING, GOAWAY, unknown frames).
    pub fn stream_id(&self) -> Option<u32> {
        match self {
            Frame::SynStream { stream_id, .. }
            | Frame::SynReply { stream_id, .. }
            | Frame::RstStream { stream_id, .. }
            | Frame::Headers { stream_id, .. }
            | Frame::WindowUpdate { stream_id, .. }
            | Frame::Data { stream_id, .. } => Some(*stream_id),
            _ => None,
        }
    }
}

fn fin_flag(fin: bool) -> u8 {
    if fin { FLAG_FIN } else { 0 }
}

fn flags_len(flags: u8, len: usize) -> u32 {
    assert!(
        len <= MAX_PAYLOAD_LEN,
        "SPDY frame payload of {len} bytes does not fit the 24-bit length field"
    );
    (u32::from(flags) << 24) | len as u32
}

fn control_header(out: &mut Vec<u8>, kind: u16, flags: u8, len: usize) {
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&flags_len(flags, len).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::SynStream {
                stream_id: 1,
                associated_stream_id: 0,
                priority: 0,
                slot: 0,
                fin: false,
                unidirectional: false,
                header_block: Bytes::from_static(b"\x78\xbb compressed"),
            },
            Frame::SynStream {
                stream_id: 0x7fff_ffff,
                associated_stream_id: 5,
                priority: 7,
                slot: 3,
                fin: true,
                unidirectional: true,
                header_block: Bytes::new(),
            },
            Frame::SynReply {
                stream_id: 3,
                fin: true,
                header_block: Bytes::from_static(b"abc"),
            },
            Frame::SynReply {
                stream_id: 5,
                fin: false,
                header_block: Bytes::new(),
            },
            Frame::RstStream {
                stream_id: 9,
                status: RstStatus::FlowControlError,
            },
            Frame::RstStream {
                stream_id: 9,
                status: RstStatus::Other(77),
            },
            Frame::Settings {
                clear: true,
                entries: vec![
                    Setting {
                        flags: 1,
                        id: setting::INITIAL_WINDOW_SIZE,
                        value: 1 << 20,
                    },
                    Setting {
                        flags: 0,
                        id: setting::MAX_CONCURRENT_STREAMS,
                        value: 100,
                    },
                ],
            },
            Frame::Settings {
                clear: false,
                entries: vec![],
            },
            Frame::Ping { id: 1 },
            Frame::Ping { id: u32::MAX },
            Frame::GoAway {
                last_good_stream_id: 7,
                status: GoAwayStatus::ProtocolError,
            },
            Frame::GoAway {
                last_good_stream_id: 0,
                status: GoAwayStatus::Ok,
            },
            Frame::Headers {
                stream_id: 11,
                fin: true,
                header_block: Bytes::from_static(b"xyz"),
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 65536,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 0x7fff_ffff,
            },
            Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: Bytes::new(),
            },
            Frame::Unknown { kind: 10, flags: 3 },
        ]
    }

    #[test]
    fn round_trip_every_frame_type() {
        for frame in all_frames() {
            let mut out = Vec::new();
            frame.encode(&mut out);
            let (parsed, n) = Frame::parse(&out).unwrap().unwrap();
            assert_eq!(parsed, frame);
            assert_eq!(n, out.len());
        }
    }

    #[test]
    fn round_trip_back_to_back() {
        let mut out = Vec::new();
        for frame in all_frames() {
            frame.encode(&mut out);
        }
        let mut pos = 0;
        let mut got = Vec::new();
        while let Some((f, n)) = Frame::parse(&out[pos..]).unwrap() {
            got.push(f);
            pos += n;
        }
        assert_eq!(pos, out.len());
        assert_eq!(got, all_frames());
    }

    #[test]
    fn partial_input_needs_more() {
        for frame in all_frames() {
            let mut out = Vec::new();
            frame.encode(&mut out);
            for cut in 0..out.len() {
                assert_eq!(
                    Frame::parse(&out[..cut]).unwrap(),
                    None,
                    "{frame:?} cut at {cut}"
                );
            }
        }
    }

    #[test]
    fn known_wire_bytes() {
        // PING id 1 and a DATA frame with FIN, byte for byte.
        let mut out = Vec::new();
        Frame::Ping { id: 1 }.encode(&mut out);
        assert_eq!(
            out,
            [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 1]
        );
        out.clear();
        Frame::Data {
            stream_id: 5,
            fin: true,
            data: Bytes::from_static(b"ab"),
        }
        .encode(&mut out);
        assert_eq!(out, [0, 0, 0, 5, 0x01, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn oversized_lengths_are_errors_before_buffering() {
        let limits = Limits {
            max_control_len: 1024,
            max_data_len: 4096,
        };
        // Only the 8 header bytes are present: the error comes anyway.
        let data = [0, 0, 0, 1, 0, 0, 0x10, 0x01];
        assert_eq!(
            Frame::parse_with_limits(&data, &limits),
            Err(FrameError::DataTooLarge {
                len: 4097,
                max: 4096
            })
        );
        let ctl = [0x80, 0x03, 0x00, 0x01, 0, 0, 0x04, 0x01];
        assert!(matches!(
            Frame::parse_with_limits(&ctl, &limits),
            Err(FrameError::ControlTooLarge {
                kind: 1,
                len: 1025,
                ..
            })
        ));
        // Default control bound is 1 MiB.
        let ctl = [0x80, 0x03, 0x00, 0x04, 0, 0x10, 0x00, 0x01];
        assert!(matches!(
            Frame::parse(&ctl),
            Err(FrameError::ControlTooLarge { .. })
        ));
    }

    #[test]
    fn bad_version_and_fixed_lengths() {
        let v2 = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(Frame::parse(&v2), Err(FrameError::UnsupportedVersion(2)));
        // PING with 5 payload bytes.
        let ping = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 5, 0, 0, 0, 1, 9];
        assert!(matches!(
            Frame::parse(&ping),
            Err(FrameError::InvalidLength { kind: 6, len: 5 })
        ));
        // SETTINGS claiming 1000 entries in 12 bytes.
        let settings = [
            0x80, 0x03, 0x00, 0x04, 0, 0, 0, 12, 0, 0, 0x03, 0xe8, 0, 0, 0, 7, 0, 0, 0, 1,
        ];
        assert!(matches!(
            Frame::parse(&settings),
            Err(FrameError::InvalidLength { .. })
        ));
        // SYN_STREAM shorter than its fixed part.
        let syn = [0x80, 0x03, 0x00, 0x01, 0, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(
            Frame::parse(&syn),
            Err(FrameError::InvalidLength { .. })
        ));
    }

    #[test]
    fn unknown_control_types_are_skipped() {
        // Type 10 (SPDY/3 CREDENTIAL) with a 5-byte payload, then a PING.
        let mut buf = vec![0x80, 0x03, 0x00, 0x0a, 0x07, 0, 0, 5, 1, 2, 3, 4, 5];
        Frame::Ping { id: 3 }.encode(&mut buf);
        let (f, n) = Frame::parse(&buf).unwrap().unwrap();
        assert_eq!(f, Frame::Unknown { kind: 10, flags: 7 });
        assert_eq!(n, 13);
        let (f, _) = Frame::parse(&buf[n..]).unwrap().unwrap();
        assert_eq!(f, Frame::Ping { id: 3 });
    }

    #[test]
    fn reserved_bits_are_dropped() {
        let buf = [
            0x80, 0x03, 0x00, 0x09, 0, 0, 0, 8, 0x80, 0, 0, 1, 0x80, 0, 0, 2,
        ];
        let (f, _) = Frame::parse(&buf).unwrap().unwrap();
        assert_eq!(
            f,
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 2
            }
        );
    }
}
