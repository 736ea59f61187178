//! Responses: the head and body of each, and how they are cut into
//! `Data` messages. A `/bytes/<n>` body is generated as it is sent.

use alloc::borrow::Cow;
use alloc::format;
use alloc::vec::Vec;

use crate::http;

/// Bytes per `Data` message of a response.
pub const CHUNK: usize = 16 * 1024;

/// What remains of a response to send.
#[derive(Debug)]
pub enum Body {
    Bytes {
        data: Vec<u8>,
        sent: usize,
    },
    /// A response head, then `len` bytes of the `/bytes` pattern,
    /// generated as they are sent.
    Pattern {
        head: Vec<u8>,
        head_sent: usize,
        offset: usize,
        len: usize,
    },
}

impl Body {
    /// The next `Data` message to send: at most [`CHUNK`] bytes (the head
    /// of a pattern body goes whole), or `None` once everything went out.
    pub fn next_piece(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Body::Bytes { data, sent } => {
                let end = (*sent + CHUNK).min(data.len());
                (*sent < end).then(|| Cow::Borrowed(&data[*sent..end]))
            }
            Body::Pattern {
                head, head_sent, ..
            } if *head_sent < head.len() => Some(Cow::Borrowed(&head[*head_sent..])),
            Body::Pattern { offset, len, .. } => {
                let n = CHUNK.min(*len - *offset);
                (n > 0)
                    .then(|| Cow::Owned((*offset..*offset + n).map(http::pattern_byte).collect()))
            }
        }
    }

    /// The piece [`Body::next_piece`] gave (`n` bytes) went out.
    pub fn advance(&mut self, n: usize) {
        match self {
            Body::Bytes { sent, .. } => *sent += n,
            Body::Pattern {
                head, head_sent, ..
            } if *head_sent < head.len() => *head_sent += n,
            Body::Pattern { offset, .. } => *offset += n,
        }
    }
}

fn head(status: u16, reason: &str, content_type: &str, len: usize, keep_alive: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {reason}\r\nServer: starina-httpd\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\nConnection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes()
}

/// A whole response (just its head for `HEAD`).
pub fn response(
    status: u16,
    reason: &str,
    content_type: &str,
    body: &[u8],
    head_only: bool,
    keep_alive: bool,
) -> Body {
    let mut out = head(status, reason, content_type, body.len(), keep_alive);
    if !head_only {
        out.extend_from_slice(body);
    }
    Body::Bytes { data: out, sent: 0 }
}

/// An error page; the connection closes after it.
pub fn error_response(status: u16, reason: &str) -> Body {
    response(
        status,
        reason,
        "text/plain",
        format!("{status} {reason}\n").as_bytes(),
        false,
        false,
    )
}

/// `n` bytes of the pattern: small bodies in one piece, big ones
/// generated as they are sent.
pub fn pattern_response(n: usize, head_only: bool, keep_alive: bool) -> Body {
    let mut data = head(200, "OK", "application/octet-stream", n, keep_alive);
    if head_only {
        return Body::Bytes { data, sent: 0 };
    }
    if n <= CHUNK {
        data.extend((0..n).map(http::pattern_byte));
        Body::Bytes { data, sent: 0 }
    } else {
        Body::Pattern {
            head: data,
            head_sent: 0,
            offset: 0,
            len: n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every piece of `body`, as sent.
    fn pieces(mut body: Body) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(piece) = body.next_piece() {
            let piece = piece.into_owned();
            body.advance(piece.len());
            out.push(piece);
        }
        out
    }

    #[test]
    fn a_pattern_body_is_its_head_then_chunks() {
        let n = 2 * CHUNK + 100;
        let sent = pieces(pattern_response(n, false, true));
        let head = "HTTP/1.1 200 OK\r\nServer: starina-httpd\r\nContent-Type: application/octet-stream\r\nContent-Length: 32868\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(sent[0], head.as_bytes());
        assert_eq!(sent.len(), 4);
        assert!(sent[1..].iter().all(|p| p.len() <= CHUNK));
        let body: Vec<u8> = sent[1..].concat();
        let want: Vec<u8> = (0..n).map(http::pattern_byte).collect();
        assert_eq!(body, want);
    }

    #[test]
    fn small_and_head_only_pattern_bodies_are_one_piece() {
        let sent = pieces(pattern_response(30, false, false));
        assert_eq!(sent.len(), 1);
        assert!(sent[0].ends_with(b"Connection: close\r\n\r\nabcdefghijklmnopqrstuvwxyzabcd"));
        let sent = pieces(pattern_response(1 << 20, true, true));
        assert_eq!(sent.len(), 1);
        assert!(sent[0].ends_with(b"Content-Length: 1048576\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn bytes_bodies_go_in_chunks() {
        let data = alloc::vec![7u8; CHUNK + 1];
        let sent = pieces(response(200, "OK", "x/y", &data, false, true));
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].len(), CHUNK);
        let sent = pieces(error_response(404, "Not Found"));
        assert_eq!(
            sent[0],
            b"HTTP/1.1 404 Not Found\r\nServer: starina-httpd\r\nContent-Type: text/plain\r\nContent-Length: 14\r\nConnection: close\r\n\r\n404 Not Found\n"
        );
    }
}
