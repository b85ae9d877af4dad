//! Arbitrary bytes through the SPDY/3 frame codec, and every SYN_STREAM,
//! SYN_REPLY and HEADERS header block through one shared header decoder
//! (zlib with the SPDY dictionary, then the name/value parser), as the
//! session's reader task does. Any panic is a bug.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    crius::stream::spdy::fuzz_frames(data);
});
