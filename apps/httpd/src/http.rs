//! HTTP/1.x request heads: just enough parsing to serve GET and HEAD,
//! strict about what it accepts, and never panicking on what it gets.

/// A parsed request head.
#[derive(Debug, PartialEq, Eq)]
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// HTTP/1.1 (true) or HTTP/1.0 (false).
    pub http11: bool,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// `Content-Length` of a request body (we serve no method with one,
    /// but must know it to stay in sync).
    pub content_length: usize,
    /// Bytes the head took, the blank line included.
    pub head_len: usize,
    /// The `If-Modified-Since` header's value, if sent.
    pub if_modified_since: Option<&'a str>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The head is not complete yet.
    Incomplete,
    /// The head exceeds the limit (431).
    TooLarge,
    /// Not HTTP (400).
    Malformed,
    /// An HTTP version we do not speak (505).
    Version,
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses the head at the start of `buf`.
pub fn parse(buf: &[u8], max_head: usize) -> Result<Request<'_>, ParseError> {
    let end = match find(buf, b"\r\n\r\n") {
        Some(i) => i + 4,
        None => {
            // Garbage is refused as soon as it shows, not after a full
            // head: the request line holds only printable ASCII.
            let first_line = match find(buf, b"\r\n") {
                Some(i) => &buf[..i],
                None => buf,
            };
            let garbage = first_line
                .iter()
                .any(|&b| !(0x20..0x7f).contains(&b) && b != b'\r');
            return Err(if garbage {
                ParseError::Malformed
            } else if buf.len() > max_head {
                ParseError::TooLarge
            } else {
                ParseError::Incomplete
            });
        }
    };
    if end > max_head {
        return Err(ParseError::TooLarge);
    }
    let head = core::str::from_utf8(&buf[..end - 4]).map_err(|_| ParseError::Malformed)?;
    let mut lines = head.split("\r\n");
    let request_line = lines.next().ok_or(ParseError::Malformed)?;
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed);
    };
    if !is_token(method) || !path.starts_with('/') || path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(ParseError::Malformed);
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(ParseError::Version),
        _ => return Err(ParseError::Malformed),
    };
    let mut keep_alive = http11;
    let mut content_length = 0usize;
    let mut if_modified_since = None;
    for line in lines {
        let (name, value) = line.split_once(':').ok_or(ParseError::Malformed)?;
        if !is_token(name) {
            return Err(ParseError::Malformed);
        }
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        if name.eq_ignore_ascii_case("connection") {
            for token in value.split(',') {
                let token = token.trim();
                if token.eq_ignore_ascii_case("close") {
                    keep_alive = false;
                } else if token.eq_ignore_ascii_case("keep-alive") {
                    keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("if-modified-since") {
            if_modified_since = Some(value);
        } else if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().map_err(|_| ParseError::Malformed)?;
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked request bodies are not served: treat as malformed so
            // the connection closes rather than desynchronizes.
            return Err(ParseError::Malformed);
        }
    }
    Ok(Request {
        method,
        path,
        http11,
        keep_alive,
        content_length,
        head_len: end,
        if_modified_since,
    })
}

/// Watches a connection's input for the end of a request head, looking
/// at each byte once however the head is split into segments (a head
/// trickling in byte by byte must not be rescanned from its start each
/// time: that is quadratic).
#[derive(Debug, Default)]
pub struct HeadScan {
    /// Bytes of the input looked at so far.
    scanned: usize,
    /// The request line ended (`\r\n` seen).
    line_done: bool,
    /// A byte that cannot be in a request line was seen.
    garbage: bool,
    /// Where the head ends (blank line included), once seen.
    end: Option<usize>,
}

impl HeadScan {
    /// Whether [`parse`] has something to say about `input` (the bytes
    /// this scan saw before, plus any appended since): a whole head, a
    /// request line with bytes no request line holds, or more than
    /// `max_head` bytes without a head's end.
    pub fn ready(&mut self, input: &[u8], max_head: usize) -> bool {
        if self.scanned > input.len() {
            // The input was replaced: start over.
            *self = HeadScan::default();
        }
        if self.end.is_none() && !self.garbage {
            self.scan(input);
        }
        self.end.is_some() || self.garbage || input.len() > max_head
    }

    /// The head was taken from the input: the next one starts at 0.
    pub fn reset(&mut self) {
        *self = HeadScan::default();
    }

    /// Looks at the bytes after `scanned` (and the 3 before, for a blank
    /// line split across segments).
    fn scan(&mut self, input: &[u8]) {
        let start = self.scanned;
        for (i, &b) in input.iter().enumerate().skip(start) {
            let after_cr = i > 0 && input[i - 1] == b'\r';
            if !self.line_done {
                if b == b'\n' && after_cr {
                    self.line_done = true;
                } else if !(0x20..0x7f).contains(&b) && b != b'\r' {
                    self.garbage = true;
                    break;
                }
            }
            if b == b'\n' && i >= 3 && &input[i - 3..=i] == b"\r\n\r\n" {
                self.end = Some(i + 1);
                break;
            }
        }
        self.scanned = input.len();
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The byte at `offset` of a `/bytes/<n>` body: lowercase letters in turn,
/// so a client can check the body without a copy.
pub fn pattern_byte(offset: usize) -> u8 {
    b'a' + (offset % 26) as u8
}

/// Escapes `s` as the inside of a JSON string.
pub fn json_escape(out: &mut alloc::string::String, s: &str) {
    use core::fmt::Write;
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Escapes `s` for HTML text.
pub fn html_escape(out: &mut alloc::string::String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_get() {
        let r = parse(b"GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\nrest", 1024).unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/api/stats");
        assert!(r.http11 && r.keep_alive);
        assert_eq!(r.head_len, 36);
        let r = parse(b"GET / HTTP/1.0\r\n\r\n", 1024).unwrap();
        assert!(!r.keep_alive);
        let r = parse(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 1024).unwrap();
        assert!(!r.keep_alive);
    }

    #[test]
    fn incomplete_and_too_large() {
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nHost:", 1024),
            Err(ParseError::Incomplete)
        );
        assert_eq!(parse(b"", 1024), Err(ParseError::Incomplete));
        let big = alloc::vec![b'a'; 2000];
        assert_eq!(parse(&big, 1024), Err(ParseError::TooLarge));
    }

    #[test]
    fn malformed_heads() {
        for bad in [
            &b"garbage\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"GET nopath HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.0\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
            b"G\xffT / HTTP/1.1\r\n\r\n",
            b"\x00\x01\x02\x03",
        ] {
            assert_eq!(parse(bad, 1024), Err(ParseError::Malformed), "{bad:?}");
        }
        assert_eq!(
            parse(b"GET / HTTP/2.0\r\n\r\n", 1024),
            Err(ParseError::Version)
        );
    }

    /// Feeds `input` to a scan `step` bytes at a time; the length at which
    /// it first was ready.
    fn ready_at(input: &[u8], step: usize, max: usize) -> Option<usize> {
        let mut scan = HeadScan::default();
        let mut n = 0;
        while n < input.len() {
            n = (n + step).min(input.len());
            if scan.ready(&input[..n], max) {
                return Some(n);
            }
        }
        None
    }

    #[test]
    fn scan_finds_the_end_however_split() {
        let head = b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /next";
        let end = 27;
        for step in 1..head.len() {
            assert_eq!(
                ready_at(head, step, 1024).map(|n| n >= end),
                Some(true),
                "{step}"
            );
        }
        // Byte by byte: ready exactly when the blank line completes.
        assert_eq!(ready_at(head, 1, 1024), Some(end));
        assert_eq!(ready_at(b"GET / HTTP/1.1\r\nHost: x\r\n", 1, 1024), None);
    }

    #[test]
    fn scan_refuses_garbage_and_oversize_early() {
        assert_eq!(ready_at(b"GE\x00T / HTTP/1.1", 1, 1024), Some(3));
        assert_eq!(ready_at(b"GET /\n", 1, 1024), Some(6));
        // Control bytes in header lines are for `parse` to judge.
        assert_eq!(ready_at(b"GET / HTTP/1.1\r\nX: \x01", 1, 1024), None);
        let big = alloc::vec![b'a'; 300];
        assert_eq!(ready_at(&big, 1, 256), Some(257));
    }

    #[test]
    fn scan_agrees_with_parse() {
        for input in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nA: b\r\n\r\n",
            b"garbage\r\n\r\n",
            b"\x00\x01\x02\x03",
            b"GET / HTTP/1.1\r\nHost:",
        ] {
            let ready = ready_at(input, 1, 1024).is_some();
            let parsed = parse(input, 1024) != Err(ParseError::Incomplete);
            assert_eq!(ready, parsed, "{input:?}");
        }
    }

    #[test]
    fn scan_looks_at_each_byte_once() {
        // A 16 KiB head trickling in byte by byte: the scan's position
        // only moves forward, one byte per step.
        let mut input = b"GET / HTTP/1.1\r\n".to_vec();
        let mut scan = HeadScan::default();
        for i in 0..16_000 {
            input.push(b'a' + (i % 26) as u8);
            assert!(!scan.ready(&input, 1 << 20));
            assert_eq!(scan.scanned, input.len());
        }
        input.extend_from_slice(b": v\r\n\r\n");
        assert!(scan.ready(&input, 1 << 20));
        assert_eq!(parse(&input, 1 << 20).unwrap().head_len, input.len());
    }

    #[test]
    fn scan_starts_over_on_new_input() {
        let mut scan = HeadScan::default();
        assert!(!scan.ready(b"GET / HTTP/1.1\r\nHost: x", 1024));
        assert!(scan.ready(b"GET / HTTP/1.1\r\n\r\n", 1024));
        // The head was consumed.
        scan.reset();
        assert!(!scan.ready(b"GET", 1024));
        assert!(scan.ready(b"GET / HTTP/1.0\r\n\r\n", 1024));
    }

    #[test]
    fn escaping() {
        let mut s = alloc::string::String::new();
        json_escape(&mut s, "a\"b\\c\n\x01");
        assert_eq!(s, "a\\\"b\\\\c\\n\\u0001");
        let mut s = alloc::string::String::new();
        html_escape(&mut s, "<a&b>");
        assert_eq!(s, "&lt;a&amp;b&gt;");
    }
}
