//! Fuzz target for the HTTP request-head parser: raw bytes and request heads
//! assembled from likely pieces. Parsing never panics, a parsed head is a
//! prefix of the input ending in a blank line, parses the same on its own,
//! and every shorter prefix is incomplete (what lets the server parse as
//! bytes arrive). Budget and replay: `tests/fuzz_driver.rs` at the top.

#[path = "../../../tests/fuzz_driver.rs"]
mod driver;

use alloc::vec::Vec;

use driver::Bytes;
use driver::Seq;

use crate::http;
use crate::http::ParseError;

const METHODS: [&[u8]; 5] = [b"GET", b"HEAD", b"POST", b"G(T", b""];
const PATHS: [&[u8]; 5] = [b"/", b"/bytes/1024", b"/api/status", b"x", b"/a\x7fb"];
const VERSIONS: [&[u8]; 5] = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTPS", b""];
const NAMES: [&[u8]; 6] = [
    b"Host",
    b"Connection",
    b"content-length",
    b"Transfer-Encoding",
    b"X y",
    b"",
];
const VALUES: [&[u8]; 7] = [
    b"close",
    b"keep-alive, close",
    b"0",
    b"18446744073709551616",
    b" 12 ",
    b"chunked",
    b"\xff",
];

fn pick(list: &[&'static [u8]], i: u8) -> &'static [u8] {
    list[i as usize % list.len()]
}

/// (method, path, version, headers as (name, value, raw value), what
/// follows the head, max_head).
type Head = (u8, u8, u8, Seq<(u8, u8, Option<Bytes>)>, Bytes, u16);

fn assemble(&(method, path, version, ref headers, ref tail, _): &Head) -> Vec<u8> {
    let mut out = Vec::new();
    for part in [pick(&METHODS, method), b" ", pick(&PATHS, path), b" "] {
        out.extend_from_slice(part);
    }
    out.extend_from_slice(pick(&VERSIONS, version));
    out.extend_from_slice(b"\r\n");
    for (name, value, raw) in headers.iter() {
        out.extend_from_slice(pick(&NAMES, *name));
        out.extend_from_slice(b": ");
        out.extend_from_slice(raw.as_ref().map_or(pick(&VALUES, *value), |r| r.as_slice()));
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(tail);
    out
}

fn check_parse(buf: &[u8], max_head: usize) {
    let Ok(req) = http::parse(buf, max_head) else {
        return;
    };
    let end = req.head_len;
    assert!(end <= buf.len() && end <= max_head, "{req:?}");
    assert!(buf[..end].ends_with(b"\r\n\r\n"), "{req:?}");
    assert!(
        req.path.starts_with('/') && !req.method.is_empty(),
        "{req:?}"
    );
    assert_eq!(http::parse(&buf[..end], max_head).as_ref(), Ok(&req));
    for cut in 0..end {
        assert_eq!(
            http::parse(&buf[..cut], max_head),
            Err(ParseError::Incomplete),
            "a {cut}-byte prefix of a valid head"
        );
    }
}

#[test]
fn fuzz_http_request_bytes() {
    driver::run("httpd::http_bytes", 2000, |(max, buf): (u16, Bytes)| {
        check_parse(&buf, max as usize)
    });
}

#[test]
fn fuzz_http_request_heads() {
    driver::run("httpd::http_heads", 2000, |head: Head| {
        let buf = assemble(&head);
        check_parse(&buf, head.5 as usize);
        check_parse(&buf, 8192);
    });
}
