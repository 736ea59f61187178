//! Fuzz target for the URIs clients open: raw text and URIs assembled from
//! likely pieces. Parsing never panics, and a parsed URI printed back in its
//! canonical form parses to the same request. Budget and replay:
//! `tests/fuzz_driver.rs` at the top.

#[path = "../../../tests/fuzz_driver.rs"]
mod driver;

extern crate std;

use std::format;
use std::string::String;

use crate::uri;
use crate::uri::Host;
use crate::uri::Request;

fn canonical(req: &Request<'_>) -> String {
    let host = |h: &Host<'_>| match h {
        Host::Ip(ip) => format!("{ip}"),
        Host::Name(name) => String::from(*name),
    };
    match req {
        Request::Listen { port } => format!("tcp-listen:0.0.0.0:{port}"),
        Request::UdpListen { port } => format!("udp-listen:0.0.0.0:{port}"),
        Request::Tcp { host: h, port } => format!("tcp:{}:{port}", host(h)),
        Request::Udp { host: h, port } => format!("udp:{}:{port}", host(h)),
        Request::UdpDns => String::from("udp-dns:"),
        Request::Stats => String::from("stats:"),
    }
}

fn check_uri(text: &str) {
    let Ok(req) = uri::parse(text) else {
        return;
    };
    if let Request::Tcp {
        host: Host::Name(name),
        ..
    }
    | Request::Udp {
        host: Host::Name(name),
        ..
    } = &req
    {
        assert!(!name.is_empty() && name.len() <= 253, "{req:?}");
    }
    let again = canonical(&req);
    assert_eq!(uri::parse(&again), Ok(req), "{again:?}");
}

const SCHEMES: [&str; 7] = [
    "tcp:",
    "udp:",
    "tcp-listen:",
    "udp-listen:",
    "stats:",
    "TCP:",
    "",
];
const HOSTS: [&str; 8] = [
    "10.0.2.2",
    "0.0.0.0",
    "256.1.1.1",
    "1.2.3",
    "example.com",
    "-a.b",
    "a..b",
    "",
];

#[test]
fn fuzz_uri_text() {
    driver::run("tcpip::uri_text", 2000, |text: driver::Bytes| {
        check_uri(&String::from_utf8_lossy(&text))
    });
}

#[test]
fn fuzz_uri_pieces() {
    driver::run(
        "tcpip::uri_pieces",
        2000,
        |(scheme, host, raw_host, port, raw_port): (
            u8,
            u8,
            Option<String>,
            u16,
            Option<String>,
        )| {
            let host = raw_host.unwrap_or_else(|| String::from(HOSTS[host as usize % HOSTS.len()]));
            let port = raw_port.unwrap_or_else(|| format!("{port}"));
            let text = format!("{}{host}:{port}", SCHEMES[scheme as usize % SCHEMES.len()]);
            check_uri(&text);
        },
    );
}
