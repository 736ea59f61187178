//! `starina-guest-agent --net-probe HOST UDP_PORT TCP_PORT`: the socket
//! corners of the guest's network that busybox cannot exercise, against
//! servers the e2e test runs on the host (tests/tests/linux_net.rs):
//!
//! - `udp_echo`: datagrams of 1, 1,400 and 8,000 bytes to `HOST:UDP_PORT`
//!   come back unchanged (the server echoes each);
//! - `half_close`: 1 MiB to `HOST:TCP_PORT`, then `shutdown(SHUT_WR)`; the
//!   server reads to the end and only then answers with the byte count and
//!   a checksum, which must arrive in full before the connection ends;
//! - `refused`: a connection to a port nothing listens on fails at once
//!   with ECONNREFUSED (not a hang, not a success).
//!
//! One line per check, `probe <name> ok` or `probe <name> FAILED: <why>`,
//! then `probe: N passed, M failed`; the exit status is 1 if any failed.
//!
//! `starina-guest-agent --net-flood HOST`: a hostile program for the NAT's
//! bounds: 1,000 UDP datagrams, each to a new port of HOST (1,000 flows),
//! and 300 TCP connects to ports of HOST where nothing listens; prints
//! `flood udp_sent=N tcp_refused=M tcp_other=K`. The test then checks that
//! the network still works for everyone else.
//!
//! `starina-guest-agent --udp-echo PORT`: a UDP echo server on
//! `0.0.0.0:PORT` (busybox's `nc` has no UDP): sends each datagram back to
//! its sender, unchanged, until killed; prints `udp_echo_peer=<ip>:<port>`
//! for the first sender (the e2e test checks that the server sees the
//! host's own address through the forward).

use std::io::Read;
use std::io::Write;
use std::net::Shutdown;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::net::UdpSocket;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(10);

/// One check, by name.
type Check = (&'static str, Box<dyn Fn() -> Result<(), String>>);

/// The payload of `half_close`: a byte pattern both sides can compute.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// The checksum `half_close`'s server answers with (FNV-1a, 64 bits).
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

pub fn run(host: &str, udp_port: &str, tcp_port: &str) -> i32 {
    let (Ok(udp), Ok(tcp)) = (
        format!("{host}:{udp_port}").parse::<SocketAddr>(),
        format!("{host}:{tcp_port}").parse::<SocketAddr>(),
    ) else {
        eprintln!("net-probe: want HOST UDP_PORT TCP_PORT (an IPv4 address and two ports)");
        return 2;
    };
    let checks: [Check; 3] = [
        ("udp_echo", Box::new(move || udp_echo(udp))),
        ("half_close", Box::new(move || half_close(tcp))),
        ("refused", Box::new(move || refused(udp))),
    ];
    let mut failed = 0;
    for (name, check) in &checks {
        match check() {
            Ok(()) => println!("probe {name} ok"),
            Err(why) => {
                failed += 1;
                println!("probe {name} FAILED: {why}");
            }
        }
    }
    println!("probe: {} passed, {failed} failed", checks.len() - failed);
    i32::from(failed > 0)
}

/// `--net-flood HOST`.
pub fn flood(host: &str) -> i32 {
    let Ok(ip) = host.parse::<std::net::Ipv4Addr>() else {
        eprintln!("net-flood: want HOST (an IPv4 address)");
        return 2;
    };
    let socket = match UdpSocket::bind("0.0.0.0:0") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("net-flood: bind: {e}");
            return 1;
        }
    };
    let udp_sent = (0..1000u16)
        .filter(|i| socket.send_to(b"flood", (ip, 20000 + i)).is_ok())
        .count();
    let (mut refused, mut other) = (0, 0);
    for port in 30000..30300u16 {
        match TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_secs(2)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => refused += 1,
            _ => other += 1,
        }
    }
    println!("flood udp_sent={udp_sent} tcp_refused={refused} tcp_other={other}");
    0
}

/// `--udp-echo PORT`: returns only on an error (exit status 1; 2 for a
/// bad argument).
pub fn echo_server(port: &str) -> i32 {
    let Some(port) = port.parse::<u16>().ok().filter(|&p| p > 0) else {
        eprintln!("udp-echo: want PORT (1 to 65535)");
        return 2;
    };
    let socket = match UdpSocket::bind(("0.0.0.0", port)) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("udp-echo: bind port {port}: {e}");
            return 1;
        }
    };
    let mut buf = vec![0u8; 65536];
    let mut first = true;
    loop {
        let (n, from) = match socket.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e) => {
                eprintln!("udp-echo: receive: {e}");
                return 1;
            }
        };
        if first {
            first = false;
            println!("udp_echo_peer={from}");
            let _ = std::io::stdout().flush();
        }
        if let Err(e) = socket.send_to(&buf[..n], from) {
            eprintln!("udp-echo: send {n} bytes to {from}: {e}");
        }
    }
}

fn udp_echo(server: SocketAddr) -> Result<(), String> {
    let socket = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("bind: {e}"))?;
    socket
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    for len in [1usize, 1400, 8000] {
        let sent = pattern(len);
        socket
            .send_to(&sent, server)
            .map_err(|e| format!("send {len} bytes: {e}"))?;
        let mut buf = vec![0u8; 65536];
        let (n, from) = socket
            .recv_from(&mut buf)
            .map_err(|e| format!("no echo of {len} bytes: {e}"))?;
        if from != server || buf[..n] != sent[..] {
            return Err(format!("echo of {len} bytes: got {n} bytes from {from}"));
        }
    }
    Ok(())
}

fn half_close(server: SocketAddr) -> Result<(), String> {
    let mut stream =
        TcpStream::connect_timeout(&server, TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let data = pattern(1 << 20);
    stream.write_all(&data).map_err(|e| format!("write: {e}"))?;
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown(SHUT_WR): {e}"))?;
    let mut reply = String::new();
    stream
        .read_to_string(&mut reply)
        .map_err(|e| format!("reading the reply after our FIN: {e}"))?;
    let want = format!("{} {:016x}\n", data.len(), checksum(&data));
    if reply != want {
        return Err(format!("reply {reply:?}, want {want:?}"));
    }
    Ok(())
}

fn refused(server: SocketAddr) -> Result<(), String> {
    // The UDP port has no TCP listener on the host.
    match TcpStream::connect_timeout(&server, TIMEOUT) {
        Ok(_) => Err(format!("{server}: connected, want refused")),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
        Err(e) => Err(format!("{server}: {e}, want connection refused")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_is_fnv1a() {
        assert_eq!(checksum(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(checksum(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert_eq!(run("nonsense", "1", "2"), 2);
        assert_eq!(run("10.0.2.2", "x", "2"), 2);
        assert_eq!(echo_server("0"), 2);
        assert_eq!(echo_server("port"), 2);
    }

    #[test]
    fn the_echo_server_answers_each_sender() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = server.local_addr().unwrap().port();
        drop(server);
        std::thread::spawn(move || echo_server(&port.to_string()));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 64];
        // The server may not be bound yet: try until it answers.
        for _ in 0..50 {
            client.send_to(b"ping", ("127.0.0.1", port)).unwrap();
            if let Ok((n, from)) = client.recv_from(&mut buf) {
                assert_eq!(&buf[..n], b"ping");
                assert_eq!(from.port(), port);
                return;
            }
        }
        panic!("no echo from port {port}");
    }
}
