//! SPDY/3 header blocks: the name/value block format and its zlib
//! compression with the protocol's fixed dictionary.
//!
//! A name/value block is `count(32)` followed by `count` pairs of
//! `len(32) name len(32) value`, all big-endian. Names are lowercase; a
//! value may hold several values separated by NUL bytes, and a name must
//! not appear twice in one block (Go's framer rejects duplicates), so
//! [`encode_block`] joins repeated names with NUL.
//!
//! The block is compressed with zlib, primed with the dictionary of the
//! SPDY/3 draft, section 2.6.10.1. Each direction of a connection has one
//! continuous zlib stream: every header-bearing frame (SYN_STREAM,
//! SYN_REPLY, HEADERS) carries the next piece of it, ended by a SYNC_FLUSH.
//! So a session needs exactly one [`HeaderEncoder`] for the frames it sends
//! and one [`HeaderDecoder`] for the frames it receives, used in wire order.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Default bound on one decompressed header block (256 KiB).
pub const DEFAULT_MAX_DECOMPRESSED: usize = 256 * 1024;

/// Errors from header block handling. Any of them is a session-level
/// protocol error: the shared zlib context cannot be trusted afterwards.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("header block decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("header block is not valid zlib data")]
    Corrupt,
    #[error("header block asks for zlib dictionary {0:#010x}, not the SPDY/3 one")]
    WrongDictionary(u32),
    #[error("zlib stream of header blocks ended")]
    StreamEnded,
    #[error("malformed name/value block: {0}")]
    Malformed(&'static str),
    #[error("header decoder already failed")]
    Poisoned,
}

// The SPDY/3 zlib dictionary (draft 3, section 2.6.10.1): 65 words, each
// preceded by its 32-bit big-endian length, then a run of raw text.
const DICTIONARY_WORDS: [&str; 65] = [
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414",
    "415416417502504505203 Non-Authoritative Information204 No Content",
    "301 Moved Permanently400 Bad Request401 Unauthorized403 Forbidden",
    "404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec",
    " 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,",
    "application/xhtml+xml,text/plain,text/javascript,publicprivate",
    "max-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

const fn dictionary_len() -> usize {
    let mut n = DICTIONARY_TAIL.len();
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        n += 4 + DICTIONARY_WORDS[i].len();
        i += 1;
    }
    n
}

const fn build_dictionary() -> [u8; dictionary_len()] {
    let mut out = [0u8; dictionary_len()];
    let mut pos = 0;
    let mut i = 0;
    while i < DICTIONARY_WORDS.len() {
        let w = DICTIONARY_WORDS[i].as_bytes();
        let len = (w.len() as u32).to_be_bytes();
        let mut k = 0;
        while k < 4 {
            out[pos] = len[k];
            pos += 1;
            k += 1;
        }
        k = 0;
        while k < w.len() {
            out[pos] = w[k];
            pos += 1;
            k += 1;
        }
        i += 1;
    }
    let t = DICTIONARY_TAIL.as_bytes();
    let mut k = 0;
    while k < t.len() {
        out[pos] = t[k];
        pos += 1;
        k += 1;
    }
    out
}

const fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    let mut i = 0;
    while i < data.len() {
        a = (a + data[i] as u32) % 65521;
        b = (b + a) % 65521;
        i += 1;
    }
    (b << 16) | a
}

/// The SPDY/3 header compression dictionary (1423 bytes).
pub const DICTIONARY: [u8; dictionary_len()] = build_dictionary();
/// Its Adler-32, the dictionary id a zlib stream using it announces.
pub const DICTIONARY_ADLER32: u32 = adler32(&DICTIONARY);

/// A decoded name/value block, in wire order. Names are lowercase; a
/// NUL-separated value is split into one entry per value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Headers {
        Headers::default()
    }

    /// Adds a value; the name is lowercased.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let mut name = name.into();
        name.make_ascii_lowercase();
        self.entries.push((name, value.into()));
    }

    /// The first value of `name` (compared case-insensitively).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name` (compared case-insensitively), in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<N: Into<String>, V: Into<String>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Headers {
        let mut h = Headers::new();
        for (n, v) in iter {
            h.push(n, v);
        }
        h
    }
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// Serialises a name/value block (uncompressed). Repeated names become one
/// entry whose values are joined with NUL, in first-appearance order.
pub fn encode_block(headers: &Headers) -> Vec<u8> {
    let mut names: Vec<&str> = Vec::new();
    for (n, _) in headers.iter() {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut out = Vec::new();
    out.extend_from_slice(&(names.len() as u32).to_be_bytes());
    for name in names {
        put_bytes(&mut out, name.as_bytes());
        let mut value = Vec::new();
        for (i, v) in headers.get_all(name).enumerate() {
            if i > 0 {
                value.push(0);
            }
            value.extend_from_slice(v.as_bytes());
        }
        put_bytes(&mut out, &value);
    }
    out
}

/// Parses an uncompressed name/value block. Lenient where it is harmless
/// (upper-case names are lowercased, non-UTF-8 bytes replaced, repeated
/// names kept), strict where it is not (every length must fit, no empty
/// names, no trailing bytes). Allocation is bounded by `block.len()`.
pub fn parse_block(block: &[u8]) -> Result<Headers, HeaderError> {
    fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], HeaderError> {
        if rest.len() < n {
            return Err(HeaderError::Malformed("length past end of block"));
        }
        let (head, tail) = rest.split_at(n);
        *rest = tail;
        Ok(head)
    }
    fn take_len(rest: &mut &[u8]) -> Result<usize, HeaderError> {
        let b = take(rest, 4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }

    let mut rest = block;
    let count = take_len(&mut rest)?;
    // Each pair needs at least 8 bytes, so a huge count fails below; cap
    // the up-front reservation by what the block can hold.
    let mut headers = Headers {
        entries: Vec::with_capacity(count.min(rest.len() / 8)),
    };
    for _ in 0..count {
        let n = take_len(&mut rest)?;
        let name = take(&mut rest, n)?;
        if name.is_empty() {
            return Err(HeaderError::Malformed("empty header name"));
        }
        let name = String::from_utf8_lossy(name).to_ascii_lowercase();
        let n = take_len(&mut rest)?;
        let value = take(&mut rest, n)?;
        for v in value.split(|&b| b == 0) {
            headers
                .entries
                .push((name.clone(), String::from_utf8_lossy(v).into_owned()));
        }
    }
    if !rest.is_empty() {
        return Err(HeaderError::Malformed("bytes after the last pair"));
    }
    Ok(headers)
}

/// The compressing side of one connection direction.
pub struct HeaderEncoder {
    z: Compress,
}

impl Default for HeaderEncoder {
    fn default() -> Self {
        HeaderEncoder::new()
    }
}

impl HeaderEncoder {
    pub fn new() -> HeaderEncoder {
        let mut z = Compress::new(Compression::default(), true);
        // Cannot fail on a freshly initialised stream.
        z.set_dictionary(&DICTIONARY)
            .expect("deflateSetDictionary on a fresh zlib stream");
        HeaderEncoder { z }
    }

    /// Encodes and compresses `headers` as the next block of this stream.
    pub fn encode(&mut self, headers: &Headers) -> Vec<u8> {
        self.compress(&encode_block(headers))
    }

    /// Compresses an already serialised block, ending with a SYNC_FLUSH so
    /// the peer can decode it from this frame alone.
    pub fn compress(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(raw.len() / 2 + 64);
        let mut pos = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(raw.len().max(256));
            }
            let before = self.z.total_in();
            // deflate only fails on a misused stream, which this is not.
            self.z
                .compress_vec(&raw[pos..], &mut out, FlushCompress::Sync)
                .expect("deflate with SYNC_FLUSH");
            pos += (self.z.total_in() - before) as usize;
            // zlib: the flush is complete once a call returns with output
            // space left over and all input consumed.
            if pos == raw.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// The decompressing side of one connection direction.
pub struct HeaderDecoder {
    z: Decompress,
    max_len: usize,
    failed: bool,
}

impl Default for HeaderDecoder {
    fn default() -> Self {
        HeaderDecoder::new()
    }
}

impl HeaderDecoder {
    /// A decoder refusing blocks over [`DEFAULT_MAX_DECOMPRESSED`].
    pub fn new() -> HeaderDecoder {
        HeaderDecoder::with_limit(DEFAULT_MAX_DECOMPRESSED)
    }

    /// A decoder refusing blocks that decompress to more than `max_len`.
    pub fn with_limit(max_len: usize) -> HeaderDecoder {
        HeaderDecoder {
            z: Decompress::new(true),
            max_len,
            failed: false,
        }
    }

    /// Decompresses and parses the next block of this stream.
    pub fn decode(&mut self, block: &[u8]) -> Result<Headers, HeaderError> {
        let raw = self.decompress(block)?;
        parse_block(&raw)
    }

    /// Decompresses the next block of this stream. After an error every
    /// later call fails too (the stream position is lost).
    pub fn decompress(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        if self.failed {
            return Err(HeaderError::Poisoned);
        }
        let r = self.decompress_inner(block);
        if r.is_err() {
            self.failed = true;
        }
        r
    }

    fn decompress_inner(&mut self, block: &[u8]) -> Result<Vec<u8>, HeaderError> {
        let mut out = Vec::new();
        let mut chunk = [0u8; 8192];
        let mut pos = 0;
        loop {
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let res = self
                .z
                .decompress(&block[pos..], &mut chunk, FlushDecompress::Sync);
            let consumed = (self.z.total_in() - in0) as usize;
            let produced = (self.z.total_out() - out0) as usize;
            pos += consumed;
            if out.len() + produced > self.max_len {
                return Err(HeaderError::TooLarge(self.max_len));
            }
            out.extend_from_slice(&chunk[..produced]);
            match res {
                Ok(Status::StreamEnd) => {
                    // SPDY never ends the stream; nothing more can follow.
                    return Err(HeaderError::StreamEnded);
                }
                Ok(Status::Ok | Status::BufError) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ADLER32) => {
                        self.z
                            .set_dictionary(&DICTIONARY)
                            .map_err(|_| HeaderError::Corrupt)?;
                        continue;
                    }
                    Some(other) => return Err(HeaderError::WrongDictionary(other)),
                    None => return Err(HeaderError::Corrupt),
                },
            }
            if produced < chunk.len() && pos == block.len() {
                return Ok(out);
            }
            if consumed == 0 && produced == 0 {
                // No progress with input left: cannot happen for valid
                // data, so refuse rather than spin.
                return Err(HeaderError::Corrupt);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: usize) -> Headers {
        [
            (
                "streamtype",
                if i.is_multiple_of(2) {
                    "stdout"
                } else {
                    "stdin"
                },
            ),
            ("port", "8080"),
            ("requestid", "0"),
        ]
        .into_iter()
        .chain(std::iter::once(("x-count", "a")))
        .collect()
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(DICTIONARY.len(), 1423);
        // The dictionary id any SPDY/3 peer announces in its zlib header.
        assert_eq!(DICTIONARY_ADLER32, 0xe3c6_a7c2);
        assert_eq!(&DICTIONARY[..11], b"\0\0\0\x07options");
        assert!(DICTIONARY.ends_with(b",*,enq=0."));
    }

    #[test]
    fn block_round_trip_and_multi_values() {
        let mut h = Headers::new();
        h.push("StreamType", "error");
        h.push("accept", "a");
        h.push("accept", "b");
        let raw = encode_block(&h);
        // Two names on the wire, the repeated one NUL-joined.
        assert_eq!(&raw[..4], &[0, 0, 0, 2]);
        let back = parse_block(&raw).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.get("streamtype"), Some("error"));
        assert_eq!(back.get("STREAMTYPE"), Some("error"));
        assert_eq!(back.get_all("accept").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(
            parse_block(&encode_block(&Headers::new())).unwrap(),
            Headers::new()
        );
    }

    #[test]
    fn malformed_blocks_are_errors() {
        assert!(parse_block(&[]).is_err());
        assert!(parse_block(&[0, 0, 0, 1]).is_err());
        // A count of 4 billion with no pairs: error, no huge allocation.
        assert!(parse_block(&[0xff, 0xff, 0xff, 0xff]).is_err());
        // Name length past the end.
        assert!(parse_block(&[0, 0, 0, 1, 0, 0, 1, 0, b'a']).is_err());
        // Empty name.
        assert!(parse_block(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]).is_err());
        // Trailing bytes.
        assert!(parse_block(&[0, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn compressed_round_trip_across_frames() {
        let mut enc = HeaderEncoder::new();
        let mut dec = HeaderDecoder::new();
        let blocks: Vec<Vec<u8>> = (0..20).map(|i| enc.encode(&sample(i))).collect();
        // First block carries the zlib header announcing the dictionary.
        assert_eq!(blocks[0][0] & 0x0f, 8);
        assert_ne!(blocks[0][1] & 0x20, 0, "FDICT set");
        assert_eq!(&blocks[0][2..6], &DICTIONARY_ADLER32.to_be_bytes());
        // Every block ends with the SYNC_FLUSH marker.
        for b in &blocks {
            assert!(b.ends_with(&[0, 0, 0xff, 0xff]));
        }
        // Later blocks are smaller: the context is shared.
        assert!(blocks[10].len() < blocks[0].len());
        for (i, b) in blocks.iter().enumerate() {
            assert_eq!(dec.decode(b).unwrap(), sample(i));
        }
        // Empty header blocks (our SYN_REPLY) too.
        let b = enc.encode(&Headers::new());
        assert!(dec.decode(&b).unwrap().is_empty());
    }

    #[test]
    fn decodes_plain_zlib_with_dictionary() {
        // What another implementation (Go's compress/zlib with the
        // dictionary, flushed per frame) would send.
        let mut z = Compress::new(Compression::best(), true);
        z.set_dictionary(&DICTIONARY).unwrap();
        let mut dec = HeaderDecoder::new();
        for i in 0..3 {
            let raw = encode_block(&sample(i));
            let mut out = Vec::with_capacity(4096);
            z.compress_vec(&raw, &mut out, FlushCompress::Sync).unwrap();
            assert_eq!(dec.decode(&out).unwrap(), sample(i));
        }
    }

    #[test]
    fn decodes_zlib_without_dictionary() {
        let mut z = Compress::new(Compression::fast(), true);
        let raw = encode_block(&sample(0));
        let mut out = Vec::with_capacity(4096);
        z.compress_vec(&raw, &mut out, FlushCompress::Sync).unwrap();
        assert_eq!(HeaderDecoder::new().decode(&out).unwrap(), sample(0));
    }

    #[test]
    fn wrong_dictionary_is_refused() {
        let mut z = Compress::new(Compression::fast(), true);
        z.set_dictionary(b"not the spdy dictionary").unwrap();
        let mut out = Vec::with_capacity(4096);
        z.compress_vec(&encode_block(&sample(0)), &mut out, FlushCompress::Sync)
            .unwrap();
        assert!(matches!(
            HeaderDecoder::new().decode(&out),
            Err(HeaderError::WrongDictionary(_))
        ));
    }

    #[test]
    fn bomb_is_refused() {
        // 4 MiB of zeros compresses to ~4 KiB.
        let mut enc = HeaderEncoder::new();
        let zeros = vec![0u8; 4 << 20];
        let block = enc.compress(&zeros);
        assert!(block.len() < 16 * 1024, "{}", block.len());
        let mut dec = HeaderDecoder::new();
        assert_eq!(
            dec.decompress(&block),
            Err(HeaderError::TooLarge(DEFAULT_MAX_DECOMPRESSED))
        );
        // The decoder stays failed.
        assert_eq!(dec.decompress(&[]), Err(HeaderError::Poisoned));
    }

    #[test]
    fn garbage_is_refused() {
        let mut dec = HeaderDecoder::new();
        assert!(dec.decode(b"\x00\x01\x02\x03garbage").is_err());
        let mut dec = HeaderDecoder::new();
        assert!(dec.decode(&[0x78, 0xbb, 0xde, 0xad]).is_err());
        // A truncated but valid prefix yields a parse error, not a hang.
        let mut enc = HeaderEncoder::new();
        let b = enc.encode(&sample(0));
        let mut dec = HeaderDecoder::new();
        assert!(dec.decode(&b[..b.len() / 2]).is_err());
    }
}
