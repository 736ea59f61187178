//! An HTTP/1.x response read as it arrives: the head (status line and
//! headers), then the body framed by `Content-Length`, chunked transfer
//! coding, or the end of the connection.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// The longest response head accepted.
pub const HEAD_MAX: usize = 64 * 1024;
/// The longest chunk-size or trailer line accepted.
const LINE_MAX: usize = 4096;

/// The status line and headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// `HTTP/1.1 404 Not Found`, as sent.
    pub status_line: String,
    /// The head as received, up to and with its blank line.
    pub raw: Vec<u8>,
}

impl Head {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Length(u64),
    UntilClose,
    Chunked(Chunk),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Reading a chunk-size line.
    Size,
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// The CRLF after a chunk's data.
    DataEnd,
    /// The trailer lines after the last chunk, up to a blank one.
    Trailer,
}

/// Where the reading is.
#[derive(Debug)]
enum State {
    Head,
    Body(Framing),
    Done,
}

#[derive(Debug)]
pub struct Response {
    state: State,
    head: Option<Head>,
    /// Bytes of the head, or of a chunk line, not complete yet.
    pending: Vec<u8>,
}

impl Default for Response {
    fn default() -> Self {
        Response::new()
    }
}

impl Response {
    pub fn new() -> Response {
        Response {
            state: State::Head,
            head: None,
            pending: Vec::new(),
        }
    }

    /// The head, once it has arrived whole.
    pub fn head(&self) -> Option<&Head> {
        self.head.as_ref()
    }

    /// Whether the whole response has arrived (the connection may end).
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Takes `data` from the connection; body bytes go to `body`. Bytes
    /// after the end of the response are ignored.
    pub fn feed(&mut self, mut data: &[u8], body: &mut Vec<u8>) -> Result<(), String> {
        while !data.is_empty() {
            let used = match self.state {
                State::Head => self.feed_head(data)?,
                State::Body(Framing::UntilClose) => {
                    body.extend_from_slice(data);
                    data.len()
                }
                State::Body(Framing::Length(left)) => {
                    let n = (left.min(data.len() as u64)) as usize;
                    body.extend_from_slice(&data[..n]);
                    self.state = match left - n as u64 {
                        0 => State::Done,
                        rest => State::Body(Framing::Length(rest)),
                    };
                    n
                }
                State::Body(Framing::Chunked(chunk)) => self.feed_chunked(chunk, data, body)?,
                State::Done => return Ok(()),
            };
            data = &data[used..];
        }
        Ok(())
    }

    /// The connection ended: fine if the response is complete (or runs
    /// until the end), an error saying what is missing otherwise.
    pub fn finish(&mut self) -> Result<(), String> {
        match self.state {
            State::Done | State::Body(Framing::UntilClose) => {
                self.state = State::Done;
                Ok(())
            }
            State::Head => Err(String::from(
                "the connection ended before the response head",
            )),
            State::Body(Framing::Length(left)) => Err(format!(
                "the connection ended {left} bytes before the end of the body"
            )),
            State::Body(Framing::Chunked(_)) => {
                Err(String::from("the connection ended inside the chunked body"))
            }
        }
    }

    /// Head bytes: how many of `data` it took.
    fn feed_head(&mut self, data: &[u8]) -> Result<usize, String> {
        let old = self.pending.len();
        self.pending.extend_from_slice(data);
        // The blank line may straddle the previous piece.
        let search_from = old.saturating_sub(3);
        let found = self.pending[search_from..]
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| search_from + i + 4);
        let Some(end) = found else {
            if self.pending.len() > HEAD_MAX {
                return Err(format!(
                    "the response head is longer than {} KiB",
                    HEAD_MAX / 1024
                ));
            }
            return Ok(data.len());
        };
        if end > HEAD_MAX {
            return Err(format!(
                "the response head is longer than {} KiB",
                HEAD_MAX / 1024
            ));
        }
        let raw: Vec<u8> = self.pending[..end].to_vec();
        self.pending.clear();
        let (head, framing) = parse_head(raw)?;
        self.state = match framing {
            Framing::Length(0) => State::Done,
            f => State::Body(f),
        };
        self.head = Some(head);
        Ok(end - old)
    }

    /// Chunked body bytes: how many of `data` it took.
    fn feed_chunked(
        &mut self,
        chunk: Chunk,
        data: &[u8],
        body: &mut Vec<u8>,
    ) -> Result<usize, String> {
        if let Chunk::Data(left) = chunk {
            let n = (left.min(data.len() as u64)) as usize;
            body.extend_from_slice(&data[..n]);
            let next = if left == n as u64 {
                Chunk::DataEnd
            } else {
                Chunk::Data(left - n as u64)
            };
            self.state = State::Body(Framing::Chunked(next));
            return Ok(n);
        }
        let Some(nl) = data.iter().position(|&b| b == b'\n') else {
            self.pending.extend_from_slice(data);
            if self.pending.len() > LINE_MAX {
                return Err(String::from("a chunk line is too long"));
            }
            return Ok(data.len());
        };
        self.pending.extend_from_slice(&data[..nl + 1]);
        let line = core::mem::take(&mut self.pending);
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        self.state = match chunk {
            Chunk::DataEnd if line.is_empty() => State::Body(Framing::Chunked(Chunk::Size)),
            Chunk::DataEnd => return Err(String::from("a chunk does not end with CRLF")),
            Chunk::Size => match chunk_size(line)? {
                0 => State::Body(Framing::Chunked(Chunk::Trailer)),
                n => State::Body(Framing::Chunked(Chunk::Data(n))),
            },
            Chunk::Trailer if line.is_empty() => State::Done,
            Chunk::Trailer => State::Body(Framing::Chunked(Chunk::Trailer)),
            // Not reached: data is taken above.
            Chunk::Data(left) => State::Body(Framing::Chunked(Chunk::Data(left))),
        };
        Ok(nl + 1)
    }
}

/// A chunk-size line: hex digits, maybe `;extensions`.
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let text = core::str::from_utf8(line).map_err(|_| String::from("a bad chunk size line"))?;
    let digits = text.split(';').next().unwrap_or("").trim();
    if digits.is_empty() || digits.len() > 15 {
        return Err(format!("a bad chunk size '{digits}'"));
    }
    u64::from_str_radix(digits, 16).map_err(|_| format!("a bad chunk size '{digits}'"))
}

/// The status line and the headers that frame the body.
fn parse_head(raw: Vec<u8>) -> Result<(Head, Framing), String> {
    let text =
        core::str::from_utf8(&raw).map_err(|_| String::from("the response head is not text"))?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        return Err(format!(
            "not an HTTP/1.x response: '{}'",
            status_line.escape_debug()
        ));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|s| (100..600).contains(s))
        .ok_or_else(|| format!("a bad status code in '{}'", status_line.escape_debug()))?;
    let mut framing = Framing::UntilClose;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| format!("a bad header line '{}'", line.escape_debug()))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding")
            && value.to_ascii_lowercase().ends_with("chunked")
        {
            framing = Framing::Chunked(Chunk::Size);
        } else if name.eq_ignore_ascii_case("content-length") && framing == Framing::UntilClose {
            let n = value
                .parse()
                .map_err(|_| format!("a bad Content-Length '{}'", value.escape_debug()))?;
            framing = Framing::Length(n);
        }
    }
    if status == 204 || status == 304 || status < 200 {
        framing = Framing::Length(0);
    }
    let head = Head {
        status,
        status_line: String::from(status_line),
        raw,
    };
    Ok((head, framing))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `pieces` one after the other: (head, body, done).
    fn read(pieces: &[&[u8]]) -> Result<(Head, Vec<u8>, bool), String> {
        let mut r = Response::new();
        let mut body = Vec::new();
        for p in pieces {
            r.feed(p, &mut body)?;
        }
        let done = r.is_done();
        let head = r.head().cloned().ok_or("no head")?;
        Ok((head, body, done))
    }

    #[test]
    fn content_length_ends_the_body() {
        let (head, body, done) =
            read(&[b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhelloEXTRA"]).unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.status_line, "HTTP/1.0 200 OK");
        assert!(head.is_success() && done);
        assert_eq!(body, b"hello");
        assert!(head.raw.ends_with(b"\r\n\r\n"));
    }

    #[test]
    fn the_head_may_arrive_in_pieces() {
        let all = b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabc";
        for split in 1..all.len() {
            let (head, body, done) = read(&[&all[..split], &all[split..]]).unwrap();
            assert_eq!(
                (head.status, &body[..], done),
                (404, &b"abc"[..], true),
                "split {split}"
            );
            assert!(!head.is_success());
        }
    }

    #[test]
    fn without_a_length_the_body_runs_to_the_end() {
        let mut r = Response::new();
        let mut body = Vec::new();
        r.feed(b"HTTP/1.0 200 OK\r\n\r\nsome", &mut body).unwrap();
        r.feed(b" more", &mut body).unwrap();
        assert!(!r.is_done());
        assert_eq!(r.finish(), Ok(()));
        assert_eq!(body, b"some more");
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let all: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;x=y\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nX-T: 1\r\n\r\n";
        let (_, body, done) = read(&[all]).unwrap();
        assert!(done);
        assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.");
        for split in 1..all.len() {
            let (_, body, done) = read(&[&all[..split], &all[split..]]).unwrap();
            assert!(done, "split {split}");
            assert_eq!(body, b"Wikipedia in \r\n\r\nchunks.", "split {split}");
        }
    }

    #[test]
    fn no_body_statuses() {
        let (head, body, done) =
            read(&[b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"]).unwrap();
        assert_eq!((head.status, body.len(), done), (304, 0, true));
    }

    #[test]
    fn truncated_and_malformed_responses_are_errors() {
        let mut r = Response::new();
        let mut body = Vec::new();
        r.feed(
            b"HTTP/1.0 200 OK\r\nContent-Length: 10\r\n\r\nabc",
            &mut body,
        )
        .unwrap();
        assert!(r.finish().unwrap_err().contains("7 bytes before the end"));
        let mut r = Response::new();
        r.feed(b"HTTP/1.0 200", &mut body).unwrap();
        assert!(r.finish().unwrap_err().contains("before the response head"));
        let bad = |raw: &[u8]| read(&[raw]).unwrap_err();
        assert!(bad(b"SSH-2.0-x\r\n\r\n").contains("not an HTTP/1.x response"));
        assert!(bad(b"HTTP/1.1 2000 OK\r\n\r\n").contains("not an HTTP/1.x"));
        assert!(bad(b"HTTP/1.1 abc OK\r\n\r\n").contains("bad status code"));
        assert!(bad(b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n").contains("bad header"));
        assert!(bad(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").contains("Content-Length"));
        let chunk = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
        assert!(bad(chunk).contains("chunk size"));
        let big = alloc::vec![b'a'; HEAD_MAX + 10];
        assert!(bad(&big).contains("longer than"));
    }
}
