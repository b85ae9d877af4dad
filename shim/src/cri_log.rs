//! The CRI container log format, one record per line:
//!
//! `<RFC 3339 time with nanoseconds> <stdout|stderr> <F|P> <text>`
//!
//! `F` ends a line of the container's output; `P` is a part of a line longer
//! than [`MAX_LINE`], continued by the next record of the same stream. kubelet
//! reads this format for `kubectl logs` and rotates the files.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Longest text in one record; longer lines are split into `P` parts.
pub const MAX_LINE: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn name(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A CRI log file being written. Text is buffered per stream until a newline
/// (or [`MAX_LINE`] bytes) arrives.
pub struct CriLog {
    path: PathBuf,
    file: File,
    pending: [Vec<u8>; 2],
}

fn open(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl CriLog {
    pub fn open(path: &Path) -> std::io::Result<CriLog> {
        Ok(CriLog {
            path: path.to_path_buf(),
            file: open(path)?,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Opens the path again (kubelet renamed the file away to rotate it).
    pub fn reopen(&mut self) -> std::io::Result<()> {
        self.file = open(&self.path)?;
        Ok(())
    }

    /// Adds output of `stream` read at `now` (ns since the epoch). Write
    /// errors (a full disk) are returned but lose only this output.
    pub fn write(&mut self, stream: Stream, data: &[u8], now: i64) -> std::io::Result<()> {
        let slot = stream as usize;
        self.pending[slot].extend_from_slice(data);
        let mut out = Vec::new();
        let pending = &mut self.pending[slot];
        let mut start = 0;
        loop {
            let rest = &pending[start..];
            match rest.iter().position(|&b| b == b'\n') {
                Some(n) if n <= MAX_LINE => {
                    record(&mut out, now, stream, 'F', &rest[..n]);
                    start += n + 1;
                }
                _ if rest.len() >= MAX_LINE => {
                    record(&mut out, now, stream, 'P', &rest[..MAX_LINE]);
                    start += MAX_LINE;
                }
                _ => break,
            }
        }
        pending.drain(..start);
        self.emit(&out)
    }

    /// Writes what is buffered of `stream` as a last full line (the stream
    /// ended without a newline).
    pub fn finish(&mut self, stream: Stream, now: i64) -> std::io::Result<()> {
        let text = std::mem::take(&mut self.pending[stream as usize]);
        if text.is_empty() {
            return Ok(());
        }
        let mut out = Vec::new();
        record(&mut out, now, stream, 'F', &text);
        self.emit(&out)
    }

    fn emit(&mut self, out: &[u8]) -> std::io::Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        // One write per batch: with O_APPEND, records never interleave.
        self.file.write_all(out)
    }
}

fn record(out: &mut Vec<u8>, now: i64, stream: Stream, tag: char, text: &[u8]) {
    // A trailing CR of a CRLF line is the container's, not the format's.
    out.extend_from_slice(rfc3339_nano(now).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.name().as_bytes());
    out.push(b' ');
    out.push(tag as u8);
    out.push(b' ');
    out.extend_from_slice(text);
    out.push(b'\n');
}

/// One parsed record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub partial: bool,
    pub text: &'a [u8],
}

/// Parses one line (without its newline), or `None` if it is not a record.
pub fn parse(line: &[u8]) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, |&b| b == b' ');
    let time = std::str::from_utf8(parts.next()?).ok()?;
    let stream = std::str::from_utf8(parts.next()?).ok()?;
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let text = parts.next().unwrap_or_default();
    Some(Record {
        time,
        stream,
        partial,
        text,
    })
}

/// `2006-01-02T15:04:05.999999999Z` in UTC, always nine fraction digits.
pub fn rfc3339_nano(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let frac = nanos.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let day_secs = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:09}Z",
        day_secs / 3600,
        day_secs % 3600 / 60,
        day_secs % 60
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (the
/// well-known era-based conversion).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_nano_utc() {
        assert_eq!(rfc3339_nano(0), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.000000789Z, a leap day.
        assert_eq!(
            rfc3339_nano(1_709_210_096_000_000_789),
            "2024-02-29T12:34:56.000000789Z"
        );
        assert_eq!(
            rfc3339_nano(1_795_392_000_123_000_000),
            "2026-11-23T00:00:00.123000000Z"
        );
    }

    fn lines(path: &Path) -> Vec<(String, bool, String)> {
        std::fs::read(path)
            .unwrap()
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let r = parse(l).unwrap();
                (
                    r.stream.to_string(),
                    r.partial,
                    String::from_utf8_lossy(r.text).into_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn lines_are_split_and_tagged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = CriLog::open(&path).unwrap();
        log.write(Stream::Stdout, b"hello\nwor", 1).unwrap();
        log.write(Stream::Stderr, b"oops\n", 2).unwrap();
        log.write(Stream::Stdout, b"ld\n\nlast", 3).unwrap();
        log.finish(Stream::Stdout, 4).unwrap();
        log.finish(Stream::Stderr, 4).unwrap();
        let got = lines(&path);
        let want = [
            ("stdout", false, "hello"),
            ("stderr", false, "oops"),
            ("stdout", false, "world"),
            ("stdout", false, ""),
            ("stdout", false, "last"),
        ];
        assert_eq!(got.len(), want.len(), "{got:?}");
        for (g, w) in got.iter().zip(want) {
            assert_eq!((g.0.as_str(), g.1, g.2.as_str()), w);
        }
    }

    #[test]
    fn long_lines_become_partial_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = CriLog::open(&path).unwrap();
        let long = vec![b'x'; MAX_LINE * 2 + 10];
        log.write(Stream::Stdout, &long, 1).unwrap();
        log.write(Stream::Stdout, b"\n", 1).unwrap();
        let got = lines(&path);
        let shape: Vec<(bool, usize)> = got.iter().map(|l| (l.1, l.2.len())).collect();
        assert_eq!(shape, [(true, MAX_LINE), (true, MAX_LINE), (false, 10)]);
    }

    #[test]
    fn reopen_follows_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.log");
        let mut log = CriLog::open(&path).unwrap();
        log.write(Stream::Stdout, b"before\n", 1).unwrap();
        std::fs::rename(&path, dir.path().join("c.log.1")).unwrap();
        log.reopen().unwrap();
        log.write(Stream::Stdout, b"after\n", 2).unwrap();
        assert_eq!(lines(&path)[0].2, "after");
        assert_eq!(lines(&dir.path().join("c.log.1"))[0].2, "before");
    }
}
