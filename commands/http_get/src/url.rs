//! `http://host[:port][/path][?query]` URLs.

use alloc::format;
use alloc::string::String;

/// A URL http-get can fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// A dotted IPv4 address or a DNS name, as given (lowercase).
    pub host: String,
    pub port: u16,
    /// The request target: the path and query, `/` at least.
    pub target: String,
}

impl Url {
    /// The `Host` header's value: the port only when it is not 80.
    pub fn host_header(&self) -> String {
        if self.port == 80 {
            self.host.clone()
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// What to ask the TCP/IP server to open.
    pub fn tcp_uri(&self) -> String {
        format!("tcp:{}:{}", self.host, self.port)
    }
}

/// Parses `text`; the error says what is wrong with it.
pub fn parse(text: &str) -> Result<Url, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err(format!("not a URL (expected http://host/path): '{text}'"));
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Err(format!("only http:// URLs are supported, not {scheme}://"));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let target = tail.split('#').next().unwrap_or("");
    if target.chars().any(|c| c.is_ascii_control() || c == ' ') {
        return Err(String::from("the path has spaces or control characters"));
    }
    let target = match target {
        "" => String::from("/"),
        t if t.starts_with('?') => format!("/{t}"),
        t => String::from(t),
    };
    if authority.contains('@') {
        return Err(String::from("user names in URLs are not supported"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, parse_port(port)?),
        None => (authority, 80),
    };
    check_host(host)?;
    Ok(Url {
        host: host.to_ascii_lowercase(),
        port,
        target,
    })
}

fn parse_port(port: &str) -> Result<u16, String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(p),
        _ => Err(format!("bad port '{port}' (1-65535)")),
    }
}

/// A host is a DNS name or a dotted IPv4 address: labels of letters,
/// digits and `-`, 63 bytes each, 253 in all.
fn check_host(host: &str) -> Result<(), String> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if host.is_empty() {
        return Err(String::from("the URL has no host"));
    }
    if host.len() > 253 || !host.split('.').all(label_ok) {
        return Err(format!(
            "bad host '{host}' (a DNS name or a dotted IPv4 address)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(host: &str, port: u16, target: &str) -> Url {
        Url {
            host: host.into(),
            port,
            target: target.into(),
        }
    }

    #[test]
    fn good_urls() {
        assert_eq!(
            parse("http://10.0.2.2:18080/x/y?z=1").unwrap(),
            url("10.0.2.2", 18080, "/x/y?z=1")
        );
        assert_eq!(
            parse("http://Example.COM").unwrap(),
            url("example.com", 80, "/")
        );
        assert_eq!(
            parse("HTTP://localhost/#frag").unwrap(),
            url("localhost", 80, "/")
        );
        assert_eq!(parse("http://h?q").unwrap(), url("h", 80, "/?q"));
        assert_eq!(parse("http://h:8000/").unwrap().host_header(), "h:8000");
        assert_eq!(parse("http://h/").unwrap().host_header(), "h");
        assert_eq!(parse("http://h:81/").unwrap().tcp_uri(), "tcp:h:81");
    }

    #[test]
    fn bad_urls_say_why() {
        let why = |u: &str| parse(u).unwrap_err();
        assert!(why("example.com").starts_with("not a URL"));
        assert!(why("https://example.com/").contains("only http://"));
        assert!(why("http:///path").contains("no host"));
        assert!(why("http://h:0/").contains("bad port"));
        assert!(why("http://h:99999/").contains("bad port"));
        assert!(why("http://h:+80/").contains("bad port"));
        assert!(why("http://h:/").contains("bad port"));
        assert!(why("http://a_b/").contains("bad host"));
        assert!(why("http://[::1]/").contains("bad"));
        assert!(why("http://u@h/").contains("user names"));
        assert!(why("http://h/a b").contains("spaces"));
        assert!(why("http://a..b/").contains("bad host"));
    }
}
