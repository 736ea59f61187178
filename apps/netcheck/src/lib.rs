//! The outbound network check: through the TCP/IP server, connect to an
//! HTTP server on the host, upload `upload_bytes` bytes (`POST /echo`),
//! close our side (FIN), read the whole reply until the server closes, and
//! check that the server saw exactly what we sent (length and FNV-1a hash,
//! which the server reports in an `X-Upload: len=<n> fnv=<hex>` header)
//! and that the reply's body is our upload echoed back, byte for byte.
//! Logs one line, `netcheck: ok ...` or `netcheck: FAILED: ...`, for the
//! end-to-end test.
//!
//! Then, if `dns_name` is set, it resolves that name through the DNS server
//! DHCP gave tcpip (`udp:<name>:9`: tcpip resolves the name, then opens a
//! UDP socket, which sends nothing) and logs `netcheck: dns <name>:
//! resolved`, `... not found` (the resolver answered that the name does
//! not exist) or `... FAILED: <why>` (no answer).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::timer::Timer;
use starina::Error;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

const TIMEOUT_MS: u64 = 30_000;

fn upload_byte(i: usize) -> u8 {
    (i.wrapping_mul(7) % 251) as u8
}

fn fnv1a(hash: &mut u64, data: &[u8]) {
    for &b in data {
        *hash ^= b as u64;
        *hash = hash.wrapping_mul(0x100_0000_01b3);
    }
}

/// Waits until `ch` is ready for `interests`, or the timeout.
fn wait(ch: &Channel, interests: Readiness, timeout_ms: u64) -> Result<(), String> {
    let poll = Poll::create().map_err(|e| format!("poll: {e}"))?;
    let timer = Timer::create().map_err(|e| format!("timer: {e}"))?;
    poll.add(ch.id(), interests | Readiness::PEER_CLOSED)
        .map_err(|e| format!("poll add: {e}"))?;
    poll.add(timer.id(), Readiness::READABLE)
        .map_err(|e| format!("poll add: {e}"))?;
    timer.set_ms(timeout_ms).map_err(|e| format!("timer: {e}"))?;
    let (id, _) = poll.wait().map_err(|e| format!("poll wait: {e}"))?;
    if id == timer.id() {
        return Err(format!("timed out after {timeout_ms} ms"));
    }
    Ok(())
}

/// Opens `uri` through tcpip and returns the connection channel.
fn open(tcpip: &Channel, buf: &mut MessageBuffer, uri: &str) -> Result<Channel, String> {
    tcpip
        .send(Message::Open {
            call_id: 7,
            uri,
            handle: None,
        })
        .map_err(|e| format!("open {uri}: {}", e.error))?;
    loop {
        wait(tcpip, Readiness::READABLE, TIMEOUT_MS)?;
        match tcpip.try_recv(buf) {
            Ok(Message::OpenReply { handle, .. }) => return Ok(Channel::from_handle(handle)),
            Ok(Message::Error { code, text, .. }) => {
                return Err(format!("open {uri}: error {code}: {text}"))
            }
            Ok(other) => return Err(format!("open {uri}: unexpected {:?}", other.kind())),
            Err(Error::WouldBlock) => continue,
            Err(e) => return Err(format!("open {uri}: {e}")),
        }
    }
}

fn send_all(ch: &Channel, data: &[u8]) -> Result<(), String> {
    for chunk in data.chunks(starina::abi::MESSAGE_DATA_MAX) {
        loop {
            match ch.send_data(chunk) {
                Ok(()) => break,
                Err(Error::QueueFull) => wait(ch, Readiness::WRITABLE, TIMEOUT_MS)?,
                Err(e) => return Err(format!("send: {e}")),
            }
        }
    }
    Ok(())
}

/// Reads the stream until the peer's `Close`.
fn read_to_end(ch: &Channel, buf: &mut MessageBuffer) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        match ch.try_recv(buf) {
            Ok(Message::Data(d)) => out.extend_from_slice(d),
            Ok(Message::Close) => return Ok(out),
            Ok(Message::Abort { code, reason }) => {
                return Err(format!("connection aborted ({code}: {reason})"))
            }
            Ok(other) => return Err(format!("unexpected {:?}", other.kind())),
            Err(Error::WouldBlock) => wait(ch, Readiness::READABLE, TIMEOUT_MS)?,
            Err(Error::PeerClosed) => return Err("closed without Close".into()),
            Err(e) => return Err(format!("receive: {e}")),
        }
    }
}

fn check(env: &Env, buf: &mut MessageBuffer) -> Result<String, String> {
    let conn = open(&env.tcpip, buf, env.config.target)?;
    let n = env.config.upload_bytes.clamp(0, 16 << 20) as usize;
    let body: Vec<u8> = (0..n).map(upload_byte).collect();
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut hash, &body);
    let head = format!(
        "POST /echo HTTP/1.0\r\nHost: {}\r\nContent-Length: {n}\r\n\r\n",
        env.config.host_header
    );
    send_all(&conn, head.as_bytes())?;
    send_all(&conn, &body)?;
    conn.send(Message::Close)
        .map_err(|e| format!("close: {}", e.error))?;
    let reply = read_to_end(&conn, buf)?;
    let split = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("reply has no HTTP head ({} bytes)", reply.len()))?;
    let head = String::from_utf8_lossy(&reply[..split]);
    let echoed = &reply[split + 4..];
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("status line: {:?}", head.lines().next().unwrap_or("")));
    }
    let want = format!("len={n} fnv={hash:016x}");
    let saw = head
        .lines()
        .find_map(|l| l.strip_prefix("X-Upload: "))
        .unwrap_or("(no X-Upload header)");
    if saw != want {
        return Err(format!("server saw '{saw}', we sent '{want}'"));
    }
    let mut echo_hash = 0xcbf2_9ce4_8422_2325u64;
    fnv1a(&mut echo_hash, echoed);
    if echoed.len() != n || echo_hash != hash {
        return Err(format!(
            "the echoed body differs: {} bytes, fnv {echo_hash:016x}",
            echoed.len()
        ));
    }
    Ok(format!(
        "uploaded {n} bytes to {}, server confirmed {want}, downloaded the {} bytes echoed back intact",
        env.config.target,
        echoed.len()
    ))
}

pub fn main(env: Env) {
    let mut buf = MessageBuffer::new();
    match check(&env, &mut buf) {
        Ok(summary) => log::info!("netcheck: ok: {summary}"),
        Err(why) => log::error!("netcheck: FAILED: {why}"),
    }
    let name = env.config.dns_name;
    if !name.is_empty() {
        match open(&env.tcpip, &mut buf, &format!("udp:{name}:9")) {
            Ok(_) => log::info!("netcheck: dns {name}: resolved"),
            Err(why) if why.contains("name not found") => {
                log::info!("netcheck: dns {name}: not found ({why})")
            }
            Err(why) => log::error!("netcheck: dns {name}: FAILED: {why}"),
        }
    }
}
