//! SPDY/3.1 as spoken by Kubernetes streaming clients and servers.
//!
//! `kubectl exec/attach/port-forward`, the kubelet and API-server proxies
//! and `crictl` reach a CRI streaming server through an HTTP upgrade to
//! `SPDY/3.1` (k8s.io/apimachinery `httpstream/spdy`), which runs Go's
//! `github.com/moby/spdystream` on both ends. This module is the server
//! end (and, with the roles swapped, criusctl's client end), written from
//! the SPDY/3 draft (plus 3.1's session window) and matched to what
//! spdystream actually does:
//!
//! - [`frame`]: the wire codec (no session logic).
//! - [`headers`]: name/value blocks and their zlib compression with the
//!   SPDY/3 dictionary.
//! - [`session`]: [`Session`] / [`Stream`] over any tokio byte stream,
//!   server end ([`Session::new`]) or client end ([`Session::client`]).
//! - [`client`]: the HTTP upgrade from the client's side, to a client
//!   session or a bare frame client.
//!
//! # What spdystream does, and what we therefore do
//!
//! Facts below cite `moby/spdystream` at commit f0be51f (files
//! `connection.go`, `stream.go`, `priority.go`, `spdy/*.go`) and
//! `kubernetes/apimachinery` `pkg/util/httpstream/spdy/connection.go`
//! before the 2026 move to `k8s.io/streaming` (same code).
//!
//! **No flow control at all.** spdystream never sends WINDOW_UPDATE or
//! SETTINGS (no code constructs either frame). Received WINDOW_UPDATE and
//! SETTINGS frames parse (`spdy/read.go` knows types 4 and 9) and then fall
//! to `default` in `Serve` (connection.go:388) and to "unhandled frame type"
//! in `frameHandler` (connection.go:440-441): logged only with `DEBUG` set,
//! otherwise ignored. `Stream.WriteData` (stream.go:57-80) writes one DATA
//! frame per `Write` call, of any size up to 16 MiB - 1, never looking at a
//! window. Its only brake is back-pressure: `handleDataFrame` hands each
//! payload to the reader over an unbuffered channel (connection.go:608),
//! the per-worker frame queue holds 50 frames (connection.go:40) and `Push`
//! blocks when full (priority.go:79-83), so a slow reader stops the whole
//! connection's read loop and TCP pushes back. Therefore:
//!
//! - *Sending*: we track the 64 KiB stream and session windows but enforce
//!   them only once the peer shows it does flow control, by sending a
//!   WINDOW_UPDATE or a SETTINGS with INITIAL_WINDOW_SIZE (always, with
//!   [`Config::strict_flow_control`]). Enforcing them against spdystream
//!   would stall every stream after its first 64 KiB, forever. Memory on
//!   our side is bounded by the write queue ([`Config::write_queue`]):
//!   `write` waits while it is full, i.e. while TCP pushes back.
//! - *Receiving*: we send WINDOW_UPDATEs (stream and session, in
//!   half-window steps) as the application consumes data, which a
//!   compliant peer needs and spdystream ignores. Per-stream buffering is
//!   bounded by [`Config::recv_buffer`] plus one frame: past it the reader
//!   task stops reading the connection until the application drains the
//!   stream, which is exactly spdystream's own server behaviour. A client
//!   overrunning its window is **not** reset by default, because spdystream
//!   overruns it whenever the application reads slower than the network
//!   (e.g. `kubectl cp` into a slow process); with
//!   [`Config::strict_flow_control`] it gets RST_STREAM FLOW_CONTROL_ERROR
//!   (GOAWAY PROTOCOL_ERROR for the session window), as the spec says.
//!
//! **Streams and replies.** Kubernetes clients open every stream (odd ids
//! from 1; the server's own ids would be even, connection.go:235-238, and
//! we open none) with `CreateStream`, then wait up to 30 s for SYN_REPLY
//! (apimachinery `createStreamResponseTimeout`). The apimachinery server
//! answers each accepted stream with `SendReply(http.Header{}, false)`, an
//! empty header block without FIN, and rejects one with `stream.Reset()`
//! (RST_STREAM CANCEL). spdystream **drops DATA on a stream it has no
//! SYN_REPLY for** (connection.go:596), so SYN_REPLY must precede our
//! DATA: [`StreamWriter::write`] and [`StreamWriter::finish`] send it
//! themselves if [`StreamWriter::reply`] was not called, and one FIFO
//! keeps the order. spdystream rejects SYN_STREAM ids that do not increase
//! with RST PROTOCOL_ERROR (connection.go:487-496); we treat them (and
//! even or zero ids) as a session error: GOAWAY PROTOCOL_ERROR.
//!
//! **Header blocks.** spdystream's framer compresses with Go's zlib and the
//! SPDY/3 dictionary, flushing per frame (`spdy/types.go` NewFramer,
//! `spdy/write.go`), with 32-bit counts and lengths. Its reader fails the
//! whole connection on a duplicate header name, an upper-case name, or a
//! header block whose compressed bytes are not consumed exactly
//! (`spdy/read.go` parseHeaderValueBlock and WrongCompressedPayloadSize),
//! so our encoder joins repeated names with NUL, lowercases, and ends every
//! block with a SYNC_FLUSH.
//!
//! **Unknown frames.** spdystream fails the connection on any control type
//! it does not know (`spdy/read.go` newControlFrame → InvalidControlFrame),
//! so we send only SYN_REPLY, RST_STREAM, PING, GOAWAY, WINDOW_UPDATE and
//! DATA. We skip unknown types, as the spec asks.
//!
//! **PING.** Clients may ping periodically (apimachinery `sendPings`, when a
//! ping period is configured). spdystream echoes a PING whose id parity
//! differs from its own and takes a same-parity one as the answer
//! (connection.go:619-632), client ids being odd. We echo odd ids
//! unchanged and ignore even ones; we send no pings of our own.
//!
//! **GOAWAY.** On receiving GOAWAY spdystream stops reading at once
//! (connection.go:384-387), drains the frames already read, closes every
//! stream and then the connection. So our GOAWAY goes out only after every
//! queued frame ([`Session::close`]), and afterwards we shut our write side
//! and keep reading until the client hangs up (bounded by
//! [`Config::close_timeout`]) so the socket is not reset under unread data.
//! Its own `Close` sends GOAWAY OK with the last stream id it received and
//! keeps serving open streams (connection.go:766-792); we then stop
//! accepting ([`Session::accept`] returns `None`) but keep existing
//! streams running until the connection ends. The apimachinery server's
//! `Close` resets every stream not yet finished, then sends GOAWAY; our
//! handle drops do the same (below).
//!
//! # Lifecycle
//!
//! [`Session::new`] spawns a reader and a writer task (see [`session`]).
//! Handles are cheap: dropping the [`Session`] refuses streams not yet
//! accepted (RST REFUSED_STREAM) and any opened later; dropping every
//! handle of a stream that was not [`finish`](StreamWriter::finish)ed or
//! reset sends RST_STREAM CANCEL; once the `Session` and every stream
//! handle are gone the session closes itself as [`Session::close`] would.
//! The I/O object is dropped when both tasks have ended: after the client
//! hangs up following our GOAWAY, or at [`Config::close_timeout`].

pub mod client;
pub mod frame;
pub mod headers;
pub mod session;

pub use frame::{Frame, FrameError, GoAwayStatus, RstStatus};
pub use headers::{HeaderDecoder, HeaderEncoder, HeaderError, Headers};
pub use session::{Config, Session, Stream, StreamReader, StreamWriter};

/// Feeds arbitrary bytes through the frame codec and, for every header
/// block, the header decoder, the way the session's reader task does.
/// Must never panic nor allocate beyond the codec's bounds. Parsed frames
/// must also re-encode to themselves. The entry point of the `spdy_frames`
/// fuzz target (`fuzz/`) and of the `fuzz_corpus_smoke` test.
#[doc(hidden)]
pub fn fuzz_frames(data: &[u8]) {
    let mut decoder = HeaderDecoder::new();
    let mut pos = 0;
    while let Ok(Some((frame, n))) = Frame::parse(&data[pos..]) {
        pos += n;
        let mut out = Vec::new();
        frame.encode(&mut out);
        let again = Frame::parse(&out);
        assert_eq!(
            again,
            Ok(Some((frame.clone(), out.len()))),
            "re-encoding changed a frame"
        );
        match &frame {
            Frame::SynStream { header_block, .. }
            | Frame::SynReply { header_block, .. }
            | Frame::Headers { header_block, .. } => {
                // Errors are fine (the session ends); panics are not.
                let _ = decoder.decode(header_block);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::frame::Setting;
    use super::*;
    use bytes::Bytes;

    /// xorshift64*: a fixed-seed generator, so failures reproduce.
    pub(crate) struct Rng(pub(crate) u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    /// A plausible client byte stream: streams opened with compressed
    /// headers, data, pings, settings, window updates, resets, GOAWAY.
    pub(crate) fn valid_session_bytes(rng: &mut Rng) -> Vec<u8> {
        let mut enc = HeaderEncoder::new();
        let mut out = Vec::new();
        for i in 0..(1 + rng.below(6)) as u32 {
            let id = 2 * i + 1;
            let headers: Headers = [("streamtype", "stdout"), ("requestid", "0"), ("port", "80")]
                .into_iter()
                .collect();
            let frames = [
                Frame::SynStream {
                    stream_id: id,
                    associated_stream_id: 0,
                    priority: (i % 8) as u8,
                    slot: 0,
                    fin: false,
                    unidirectional: false,
                    header_block: enc.encode(&headers).into(),
                },
                Frame::Data {
                    stream_id: id,
                    fin: i % 2 == 0,
                    data: Bytes::from(vec![b'x'; rng.below(100)]),
                },
                Frame::Ping { id: 2 * i + 1 },
                Frame::Settings {
                    clear: false,
                    entries: vec![Setting {
                        flags: 0,
                        id: frame::setting::INITIAL_WINDOW_SIZE,
                        value: 1 << 20,
                    }],
                },
                Frame::WindowUpdate {
                    stream_id: id,
                    delta: 1000,
                },
                Frame::Headers {
                    stream_id: id,
                    fin: false,
                    header_block: enc.encode(&headers).into(),
                },
                Frame::RstStream {
                    stream_id: id,
                    status: RstStatus::Cancel,
                },
                Frame::GoAway {
                    last_good_stream_id: 0,
                    status: GoAwayStatus::Ok,
                },
            ];
            for f in frames {
                f.encode(&mut out);
            }
        }
        out
    }

    /// [`valid_session_bytes`] with a few flips, truncations, insertions
    /// and overwritten bytes.
    pub(crate) fn mutated_session_bytes(rng: &mut Rng) -> Vec<u8> {
        let mut data = valid_session_bytes(rng);
        for _ in 0..(1 + rng.below(4)) {
            let at = rng.below(data.len());
            match rng.below(4) {
                0 => data[at] ^= 1 << rng.below(8),
                1 => data.truncate(at),
                2 => data.insert(at, rng.next() as u8),
                _ => data[at] = 0xff,
            }
            if data.is_empty() {
                break;
            }
        }
        data
    }

    #[test]
    fn fuzz_corpus_smoke() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Pure noise, with the control bit and version 3 forced in half of
        // the cases so that parsing gets past the first check.
        for _ in 0..3000 {
            let len = rng.below(300);
            let mut data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if len >= 2 && rng.below(2) == 0 {
                data[0] = 0x80;
                data[1] = 0x03;
            }
            fuzz_frames(&data);
        }
        // Mutations of a valid byte stream: flips, truncations, insertions,
        // overwritten length fields.
        for _ in 0..3000 {
            let data = mutated_session_bytes(&mut rng);
            fuzz_frames(&data);
        }
    }
}
