//! The URIs clients open: `tcp-listen:<addr>:<port>`,
//! `udp-listen:<addr>:<port>`, `tcp:<host>:<port>` and `udp:<host>:<port>`, where host is a dotted IPv4 address or a DNS
//! name, `udp-dns:` (a `udp:` channel to the DNS server DHCP gave, port
//! 53: a NAT forwards its clients' queries there), and `stats:` (the
//! server's own figures, as JSON).

use smoltcp::wire::Ipv4Address;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Host<'a> {
    Ip(Ipv4Address),
    Name(&'a str),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Listen { port: u16 },
    UdpListen { port: u16 },
    Tcp { host: Host<'a>, port: u16 },
    Udp { host: Host<'a>, port: u16 },
    UdpDns,
    Stats,
}

/// Why a URI was refused, for the `Error` reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UriError {
    UnknownScheme,
    BadPort,
    BadHost,
    BadListenAddress,
}

impl UriError {
    pub fn text(self) -> &'static str {
        match self {
            UriError::UnknownScheme => {
                "unknown URI scheme (expected tcp-listen:, udp-listen:, tcp:, udp:, udp-dns: or stats:)"
            }
            UriError::BadPort => "missing or invalid port (1-65535)",
            UriError::BadHost => "invalid host: a dotted IPv4 address or a DNS name",
            UriError::BadListenAddress => "can listen on 0.0.0.0 only",
        }
    }
}

fn split_host_port(rest: &str) -> Result<(&str, u16), UriError> {
    let (host, port) = rest.rsplit_once(':').ok_or(UriError::BadPort)?;
    let port: u16 = port.parse().map_err(|_| UriError::BadPort)?;
    if port == 0 {
        return Err(UriError::BadPort);
    }
    Ok((host, port))
}

fn parse_ipv4(s: &str) -> Option<Ipv4Address> {
    let mut octets = [0u8; 4];
    let mut parts = s.split('.');
    for o in octets.iter_mut() {
        let p = parts.next()?;
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *o = p.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(Ipv4Address::new(octets[0], octets[1], octets[2], octets[3]))
}

fn parse_host(s: &str) -> Result<Host<'_>, UriError> {
    if let Some(ip) = parse_ipv4(s) {
        return Ok(Host::Ip(ip));
    }
    let valid_name = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        // All-numeric labels would be a malformed address.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if valid_name {
        Ok(Host::Name(s))
    } else {
        Err(UriError::BadHost)
    }
}

/// The port of a listen URI's `0.0.0.0:<port>` (or `:<port>`).
fn listen_port(rest: &str) -> Result<u16, UriError> {
    let (addr, port) = split_host_port(rest)?;
    if addr != "0.0.0.0" && !addr.is_empty() {
        return Err(UriError::BadListenAddress);
    }
    Ok(port)
}

pub fn parse(uri: &str) -> Result<Request<'_>, UriError> {
    if uri == "stats:" {
        return Ok(Request::Stats);
    }
    if uri == "udp-dns:" {
        return Ok(Request::UdpDns);
    }
    if let Some(rest) = uri.strip_prefix("tcp-listen:") {
        return listen_port(rest).map(|port| Request::Listen { port });
    }
    if let Some(rest) = uri.strip_prefix("udp-listen:") {
        return listen_port(rest).map(|port| Request::UdpListen { port });
    }
    if let Some(rest) = uri.strip_prefix("tcp:") {
        let (host, port) = split_host_port(rest)?;
        return Ok(Request::Tcp {
            host: parse_host(host)?,
            port,
        });
    }
    if let Some(rest) = uri.strip_prefix("udp:") {
        let (host, port) = split_host_port(rest)?;
        return Ok(Request::Udp {
            host: parse_host(host)?,
            port,
        });
    }
    Err(UriError::UnknownScheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(
            parse("tcp-listen:0.0.0.0:80"),
            Ok(Request::Listen { port: 80 })
        );
        assert_eq!(
            parse("udp-listen:0.0.0.0:5353"),
            Ok(Request::UdpListen { port: 5353 })
        );
        assert_eq!(parse("udp-listen::9"), Ok(Request::UdpListen { port: 9 }));
        assert_eq!(parse("stats:"), Ok(Request::Stats));
        assert_eq!(parse("udp-dns:"), Ok(Request::UdpDns));
        assert_eq!(parse("udp-dns:x"), Err(UriError::UnknownScheme));
        assert_eq!(
            parse("tcp:10.0.2.2:8000"),
            Ok(Request::Tcp {
                host: Host::Ip(Ipv4Address::new(10, 0, 2, 2)),
                port: 8000
            })
        );
        assert_eq!(
            parse("tcp:host.name:80"),
            Ok(Request::Tcp {
                host: Host::Name("host.name"),
                port: 80
            })
        );
        assert_eq!(
            parse("udp:10.0.2.3:53"),
            Ok(Request::Udp {
                host: Host::Ip(Ipv4Address::new(10, 0, 2, 3)),
                port: 53
            })
        );
    }

    #[test]
    fn rejects_malformed_uris() {
        assert_eq!(parse("http://x"), Err(UriError::UnknownScheme));
        assert_eq!(parse(""), Err(UriError::UnknownScheme));
        assert_eq!(parse("tcp:10.0.2.2"), Err(UriError::BadPort));
        assert_eq!(parse("tcp:10.0.2.2:0"), Err(UriError::BadPort));
        assert_eq!(parse("tcp:10.0.2.2:65536"), Err(UriError::BadPort));
        assert_eq!(parse("tcp:10.0.2.2:-1"), Err(UriError::BadPort));
        assert_eq!(parse("tcp::80"), Err(UriError::BadHost));
        assert_eq!(parse("tcp:1.2.3.400:80"), Err(UriError::BadHost));
        assert_eq!(parse("tcp:1.2.3:80"), Err(UriError::BadHost));
        assert_eq!(parse("tcp:bad_name:80"), Err(UriError::BadHost));
        assert_eq!(parse("tcp:-a.b:80"), Err(UriError::BadHost));
        assert_eq!(
            parse("tcp-listen:10.0.2.15:80"),
            Err(UriError::BadListenAddress)
        );
        assert_eq!(
            parse("udp-listen:10.0.2.15:80"),
            Err(UriError::BadListenAddress)
        );
        assert_eq!(parse("udp-listen:0.0.0.0:0"), Err(UriError::BadPort));
        assert_eq!(parse("udp-listen:0.0.0.0"), Err(UriError::BadPort));
        assert_eq!(parse("udp-listen:0.0.0.0:x"), Err(UriError::BadPort));
        assert_eq!(parse("udp-listen"), Err(UriError::UnknownScheme));
    }
}
