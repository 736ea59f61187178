//! Routing: from the bytes a client sent to the response for its next
//! request (an error page for a request we do not serve), and from a
//! path to its handler.

use alloc::string::String;

use crate::http;
use crate::pages;
use crate::pages::Site;
use crate::response::error_response;
use crate::response::pattern_response;
use crate::response::response;
use crate::response::Body;
use crate::static_files::StaticFiles;

/// The largest `/bytes/<n>`.
const BYTES_MAX: usize = 64 << 20;
const JSON: &str = "application/json";

/// What a GET or HEAD asks for.
pub struct Get<'a> {
    pub path: &'a str,
    pub head_only: bool,
    pub keep_alive: bool,
    pub if_modified_since: Option<&'a str>,
}

/// The response to the request at the start of a connection's input.
#[derive(Debug)]
pub struct Reply {
    pub body: Body,
    /// Close the connection after this response (and parse no more).
    pub close: bool,
    /// Input bytes the request took.
    pub consumed: usize,
}

/// The reply to the request at the start of `input`, or `None` until its
/// head is complete. `route` serves a GET or HEAD.
pub fn respond(
    input: &[u8],
    max_header: usize,
    route: impl FnOnce(&Get<'_>) -> Body,
) -> Option<Reply> {
    let failed = |status, reason| Reply {
        body: error_response(status, reason),
        close: true,
        consumed: 0,
    };
    let req = match http::parse(input, max_header) {
        Ok(req) => req,
        Err(http::ParseError::Incomplete) => return None,
        Err(http::ParseError::TooLarge) => {
            return Some(failed(431, "Request Header Fields Too Large"))
        }
        Err(http::ParseError::Malformed) => return Some(failed(400, "Bad Request")),
        Err(http::ParseError::Version) => return Some(failed(505, "HTTP Version Not Supported")),
    };
    if req.content_length > 0 || (req.method != "GET" && req.method != "HEAD") {
        return Some(Reply {
            consumed: req.head_len,
            ..failed(405, "Method Not Allowed")
        });
    }
    let body = route(&Get {
        path: req.path,
        head_only: req.method == "HEAD",
        keep_alive: req.keep_alive,
        if_modified_since: req.if_modified_since,
    });
    Some(Reply {
        body,
        close: !req.keep_alive,
        consumed: req.head_len,
    })
}

/// The handler for `get`: the built-in pages, then static files, then 404.
/// `/` and `/index.html` are the status page unless the static files
/// have an `index.html` of their own.
pub fn route(site: &Site, files: Option<&mut StaticFiles>, get: &Get<'_>) -> Body {
    let (head_only, keep_alive) = (get.head_only, get.keep_alive);
    let path = get.path.split('?').next().unwrap_or(get.path);
    if let Some(files) = files {
        if !matches!(
            path,
            "/api/components" | "/api/logs" | "/api/stats" | "/api/forwards"
        ) && !path.starts_with("/bytes/")
        {
            if let Some(body) = files.serve(get) {
                return body;
            }
        }
    }
    let ok = |content_type, body: String| {
        response(
            200,
            "OK",
            content_type,
            body.as_bytes(),
            head_only,
            keep_alive,
        )
    };
    match path {
        "/" | "/index.html" => ok("text/html; charset=utf-8", pages::status_page(site)),
        "/api/components" => ok(JSON, pages::components_json(site.monitor)),
        "/api/logs" => ok(JSON, pages::logs_json(site.monitor)),
        "/api/stats" => ok(JSON, pages::stats_json(site)),
        "/api/forwards" => ok(JSON, String::from(site.forwards)),
        p if p.starts_with("/bytes/") => bytes(&p["/bytes/".len()..], head_only, keep_alive),
        _ => response(
            404,
            "Not Found",
            "text/plain",
            b"404 Not Found\n",
            head_only,
            keep_alive,
        ),
    }
}

/// `/bytes/<n>`: `n` bytes of the pattern.
fn bytes(n: &str, head_only: bool, keep_alive: bool) -> Body {
    match n.parse::<usize>() {
        Ok(n) if n <= BYTES_MAX => pattern_response(n, head_only, keep_alive),
        _ => error_response(400, "Bad Request"),
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn never(_: &Get<'_>) -> Body {
        panic!("routed a request that must be refused")
    }

    /// The status code of a response.
    fn status(body: &Body) -> u16 {
        let head = body.next_piece().unwrap();
        core::str::from_utf8(&head[9..12]).unwrap().parse().unwrap()
    }

    #[test]
    fn routes_gets_and_heads() {
        let mut seen = Vec::new();
        let input = b"HEAD /api/stats HTTP/1.1\r\n\r\nGET";
        let reply = respond(input, 1024, |get| {
            seen.push((String::from(get.path), get.head_only, get.keep_alive));
            error_response(200, "OK")
        })
        .unwrap();
        assert_eq!(seen, [(String::from("/api/stats"), true, true)]);
        assert_eq!(reply.consumed, input.len() - 3);
        assert!(!reply.close);
        let reply = respond(b"GET / HTTP/1.0\r\n\r\n", 1024, |_| {
            error_response(404, "Not Found")
        });
        assert!(reply.unwrap().close);
    }

    #[test]
    fn refuses_what_it_does_not_serve() {
        assert!(respond(b"GET / HTTP/1.1\r\nHo", 1024, never).is_none());
        let refused = |input: &[u8]| {
            let reply = respond(input, 64, never).unwrap();
            assert!(reply.close);
            status(&reply.body)
        };
        assert_eq!(refused(b"POST / HTTP/1.1\r\n\r\n"), 405);
        assert_eq!(refused(b"GET / HTTP/1.1\r\nContent-Length: 3\r\n\r\n"), 405);
        assert_eq!(refused(b"\x00\x01"), 400);
        assert_eq!(refused(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(refused(&[b'a'; 100]), 431);
    }

    #[test]
    fn bytes_wants_a_number_in_range() {
        assert_eq!(status(&bytes("10", false, true)), 200);
        assert_eq!(status(&bytes("67108864", true, true)), 200);
        assert_eq!(status(&bytes("67108865", false, true)), 400);
        assert_eq!(status(&bytes("x", false, true)), 400);
    }
}
