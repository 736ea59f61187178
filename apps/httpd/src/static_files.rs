//! Static files from the native file system: a request for `/a/b.html`
//! is served from `<www_root>/a/b.html` (a directory serves its
//! `index.html`), with its content type by extension, `Last-Modified`,
//! and `304 Not Modified` for an `If-Modified-Since` no older than the
//! file. Paths are percent-decoded; a `..` segment, a NUL, or bad UTF-8
//! is 400. Nothing outside the root is reachable (symlinks inside it are
//! followed by the fs server like any path).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::fs::ErrorKind;
use starina::fs::FileType;
use starina::fs::Files;
use starina::fs::OpenOptions;

use crate::httpdate;
use crate::response::error_response;
use crate::response::file_response;
use crate::response::Body;
use crate::routes::Get;

pub struct StaticFiles {
    files: Files,
    /// The directory served, without a trailing slash (`/www`).
    root: String,
}

impl StaticFiles {
    pub fn new(files: Files, root: &str) -> StaticFiles {
        StaticFiles {
            files,
            root: String::from(root.trim_end_matches('/')),
        }
    }

    /// The response for `get`, or `None` if there is no such file.
    pub fn serve(&mut self, get: &Get<'_>) -> Option<Body> {
        let Some(relative) = decode_path(get.path) else {
            return Some(error_response(400, "Bad Request"));
        };
        let mut path = format!("{}{relative}", self.root);
        let mut stat = match self.files.stat(&path) {
            Ok(stat) => stat,
            Err(e) => return failure(e.kind, &e.text),
        };
        if stat.kind == FileType::Directory {
            path = format!("{}/index.html", path.trim_end_matches('/'));
            stat = match self.files.stat(&path) {
                Ok(stat) => stat,
                Err(e) => return failure(e.kind, &e.text),
            };
        }
        if stat.kind != FileType::Regular {
            return None;
        }
        let last_modified = httpdate::format(stat.mtime);
        let unchanged = get
            .if_modified_since
            .and_then(httpdate::parse)
            .is_some_and(|since| stat.mtime <= since);
        if unchanged {
            return Some(crate::response::not_modified(
                &last_modified,
                get.keep_alive,
            ));
        }
        let file = match self.files.open(&path, &OpenOptions::read()) {
            Ok(file) => file,
            Err(e) => return failure(e.kind, &e.text),
        };
        let kind = content_type(&path);
        Some(file_response(
            file,
            stat.size,
            kind,
            &last_modified,
            get.head_only,
            get.keep_alive,
        ))
    }
}

/// 404 for what is not there (`None`: the caller's not-found page), 503
/// when the file system cannot serve, 500 otherwise.
fn failure(kind: ErrorKind, text: &str) -> Option<Body> {
    match kind {
        ErrorKind::NotFound | ErrorKind::NotADirectory => None,
        ErrorKind::Unavailable | ErrorKind::TimedOut => {
            log::warn!("static files unavailable: {text}");
            Some(error_response(503, "Service Unavailable"))
        }
        _ => {
            log::warn!("static file failed: {text}");
            Some(error_response(500, "Internal Server Error"))
        }
    }
}

/// The request path, query cut, percent-decoded; `None` if it is not a
/// safe path under the root.
fn decode_path(path: &str) -> Option<String> {
    let path = path.split('?').next().unwrap_or(path);
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = core::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let decoded = String::from_utf8(out).ok()?;
    let unsafe_segment = decoded.split('/').any(|s| s == ".." || s.contains('\0'));
    (!unsafe_segment && decoded.starts_with('/')).then_some(decoded)
}

/// The content type for a file name's extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "wasm" => "application/wasm",
        "pdf" => "application/pdf",
        "woff2" => "font/woff2",
        "mp4" => "video/mp4",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_and_kept_under_the_root() {
        assert_eq!(decode_path("/a%20b.html?x=1").as_deref(), Some("/a b.html"));
        assert_eq!(decode_path("/").as_deref(), Some("/"));
        for bad in [
            "/../etc/passwd",
            "/a/%2e%2e/b",
            "/a%00b",
            "/%zz",
            "/%4",
            "/%ff%fe",
        ] {
            assert_eq!(decode_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("/www/index.HTML"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("/www/app.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("/www/logo.png"), "image/png");
        assert_eq!(content_type("/www/README"), "application/octet-stream");
    }
}
