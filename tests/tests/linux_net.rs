//! Linux's network, end to end (the `linux` profile through `exec`: the
//! guest's virtio-net, the linux server's NAT, tcpip, QEMU's user network).
//! Boots Starina and Linux under QEMU: slow, run by `make test`.
//!
//! - `linux_reaches_out`: from Linux, a 16 MiB download from a server this
//!   test runs on the host (hash-checked), a 15 MiB upload, a DNS
//!   query compared with the host's resolver, `starina.internal` (the
//!   native httpd's `/api/components`), and the agent's `--net-probe`: a
//!   UDP echo, a half-close, a refused connect; then `--net-flood` (1,000
//!   UDP flows, 300 refused connects), after which DNS and a new connection
//!   still work.
//! - `linux_listeners_reach_the_host`: a `busybox httpd` started by `exec`
//!   is reached from the host at `127.0.0.1:<its port>` (the linux server
//!   forwards the port, the host tool adds the QEMU forward): a 16 MiB file
//!   hash-checked, 50 parallel requests, the client's own address seen by
//!   the server; the native httpd's `/api/forwards` lists it with its
//!   process and connection count; Linux reaches it through
//!   `starina.internal` too (tcpip's loopback into the forward); when the
//!   listener exits the port stops answering within two seconds. In the
//!   same boot, a UDP echo server (`/init --udp-echo`) is reached at
//!   `127.0.0.1:<its port>` over UDP (the `udp-listen:` forward and QEMU's
//!   `udp:` host forward): datagrams of 1 to 8,000 bytes come back
//!   unchanged from that port, the server sees the host's address, and
//!   `/api/forwards` lists it as `"protocol":"udp"`; when it exits the
//!   forward goes (the marker, `/api/forwards`, no more echoes).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_tests::exec_sh::Outcome;
use starina_tests::*;

/// Per-run limit (boot included), seconds.
const TIMEOUT: f64 = 300.0;
const BIG: usize = 16 << 20;
/// The upload: `seq 1 N` (busybox wget posts a file as a C string, so
/// text; about 15 MiB).
const UPLOAD_LINES: usize = 1_900_000;
/// A name the host's resolver knows (Debian's mirror, which `apt` uses).
const DNS_NAME: &str = "deb.debian.org";

/// Runs `sh -c script` in Starina's Linux (the `linux` profile) on a fresh
/// disk, with `stdin` as its standard input.
fn exec_sh(script: &str, stdin: Box<dyn Read + Send>, http_port: u16) -> Outcome {
    let (code, out, err) = exec_sh::exec_sh("linux", script, stdin, http_port, TIMEOUT);
    println!(
        "--- stdout:\n{out}\n--- stderr (console):\n{}",
        err.lines()
            .filter(|l| l.contains("net") || l.contains("linux:") || !l.starts_with('['))
            .collect::<Vec<_>>()
            .join("\n")
    );
    (code, out, err)
}

/// `key=value` lines.
fn values(out: &str) -> BTreeMap<&str, &str> {
    out.lines().filter_map(|l| l.split_once('=')).collect()
}

/// 16 MiB of xorshift bytes (what the host serves; the network bench's
/// pattern).
fn big_data() -> Vec<u8> {
    starina_host::bench_net::pattern(BIG)
}

fn sha256(data: &[u8], dir: &Path) -> String {
    let file = dir.join("sha-input");
    std::fs::write(&file, data).unwrap();
    let out = Command::new("sha256sum").arg(&file).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split(' ')
        .next()
        .unwrap()
        .to_string()
}

/// The FNV-1a checksum the agent's `--net-probe` half-close check expects.
fn fnv(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A tiny HTTP/1.0 server: `GET /big` serves `data`; `POST /upload`
/// answers `<length> <fnv>` of the body it read.
fn http_server(data: std::sync::Arc<Vec<u8>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let data = data.clone();
            thread::spawn(move || serve_http(stream, &data));
        }
    });
    port
}

fn serve_http(stream: TcpStream, data: &[u8]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request = String::new();
    let _ = reader.read_line(&mut request);
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
    }
    let mut out = stream;
    if request.starts_with("GET /small ") {
        let _ = out.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nsmall");
    } else if request.starts_with("GET /big ") {
        let _ = write!(
            out,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
            data.len()
        );
        let _ = out.write_all(data);
    } else if request.starts_with("POST /upload ") {
        let mut body = vec![0u8; length];
        let ok = reader.read_exact(&mut body).is_ok();
        let reply = format!("{} {:016x}", if ok { body.len() } else { 0 }, fnv(&body));
        let _ = write!(
            out,
            "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n{reply}",
            reply.len()
        );
    } else {
        let _ = out.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
    }
}

/// Echoes every datagram back to its sender.
fn udp_echo_server() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    port
}

/// Reads each connection to its end, then answers `<length> <fnv>\n`.
fn half_close_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            thread::spawn(move || {
                let mut data = Vec::new();
                if stream.read_to_end(&mut data).is_ok() {
                    let _ = writeln!(stream, "{} {:016x}", data.len(), fnv(&data));
                }
            });
        }
    });
    port
}

/// The host resolver's IPv4 addresses for `name` (empty if it has none).
fn host_addresses(name: &str) -> Vec<String> {
    let out = Command::new("getent")
        .args(["ahostsv4", name])
        .output()
        .unwrap();
    let mut addrs: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    addrs.sort();
    addrs.dedup();
    addrs
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn linux_reaches_out() {
    let data = std::sync::Arc::new(big_data());
    let scratch = TempDisk::new().unwrap();
    let want_sha = sha256(&data, scratch.path().parent().unwrap());
    let http = http_server(data.clone());
    let udp = udp_echo_server();
    let tcp = half_close_server();
    let script = format!(
        r#"
set -e
wget -qO /tmp/big http://10.0.2.2:{http}/big
echo "get_sha=$(sha256sum < /tmp/big | cut -d' ' -f1)"
seq 1 {UPLOAD_LINES} > /tmp/text
wget -qO /tmp/up --post-file=/tmp/text http://10.0.2.2:{http}/upload
echo "post=$(cat /tmp/up)"
echo "dns=$(nslookup -type=a {DNS_NAME} | sed -n 's/^Address: \([0-9.]*\)$/\1/p' | sort -u | tr '\n' ' ')"
echo "internal=$(nslookup -type=a starina.internal | sed -n 's/^Address: \([0-9.]*\)$/\1/p' | tr '\n' ' ')"
echo "components=$(wget -qO- http://starina.internal/api/components | head -c 40)"
/init --net-probe 10.0.2.2 {udp} {tcp}
/init --net-flood 10.0.2.2
echo "dns_after_flood=$(nslookup -type=a {DNS_NAME} | sed -n 's/^Address: \([0-9.]*\)$/\1/p' | sort -u | tr '\n' ' ')"
echo "get_after_flood=$(wget -qO- http://10.0.2.2:{http}/small)"
echo done=yes
"#
    );
    let (code, out, err) = exec_sh(&script, Box::new(std::io::empty()), http::free_port());
    let v = values(&out);
    let get = |key: &str| {
        *v.get(key)
            .unwrap_or_else(|| panic!("no '{key}=' in the output (exit {code}):\n{out}\n{err}"))
    };
    assert_eq!(get("get_sha"), want_sha, "the 16 MiB download");
    let text: String = (1..=UPLOAD_LINES).map(|i| format!("{i}\n")).collect();
    assert_eq!(
        get("post"),
        format!("{} {:016x}", text.len(), fnv(text.as_bytes())),
        "the upload"
    );
    let host = host_addresses(DNS_NAME);
    let guest: Vec<&str> = get("dns").split_whitespace().collect();
    if host.is_empty() {
        assert!(
            guest.is_empty(),
            "the host cannot resolve {DNS_NAME}, Linux did: {guest:?}"
        );
    } else {
        for addr in &host {
            assert!(
                guest.contains(&addr.as_str()),
                "{DNS_NAME}: host {host:?}, Linux {guest:?}"
            );
        }
    }
    assert_eq!(get("internal").trim(), "10.0.3.2");
    assert!(
        get("components").starts_with("[{\"name\":"),
        "native httpd through starina.internal: {}",
        get("components")
    );
    for check in ["udp_echo", "half_close", "refused"] {
        assert!(
            out.contains(&format!("probe {check} ok")),
            "probe {check}:\n{out}"
        );
    }
    // A program that floods the NAT's tables (1,000 UDP flows past the
    // 64 allowed, 300 refused connects) costs the others nothing: DNS and a
    // new connection still work, and the NAT says so at most once a second.
    assert!(out.contains("flood udp_sent=1000 tcp_refused=300"), "{out}");
    assert_eq!(
        get("dns_after_flood"),
        get("dns"),
        "DNS (forwarded) after the flood"
    );
    assert_eq!(get("get_after_flood"), "small");
    let mut warned_at: Vec<f64> = err
        .lines()
        .filter(|l| l.contains("UDP flows already"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.trim().parse().ok())
        .collect();
    warned_at.dedup();
    assert!(
        !warned_at.is_empty(),
        "the NAT never said its UDP table was full:\n{err}"
    );
    for pair in warned_at.windows(2) {
        assert!(
            pair[1] - pair[0] >= 0.99,
            "flow-table warnings closer than a second: {warned_at:?}"
        );
    }
    assert_eq!(get("done"), "yes");
    assert_eq!(code, 0, "{err}");
}

/// `GET path` on 127.0.0.1:`port`: the body of a 200 answer, else `None`
/// (refused, reset, closed without an answer, or another status).
fn http_get(port: u16, path: &str) -> Option<Vec<u8>> {
    http::get(port, path).ok()
}

/// A UDP port free on the host (and below Linux's ephemeral range, which
/// the NAT forwards only when `forward_ports` lists it).
fn free_udp_port() -> u16 {
    (0..100)
        .map(|_| {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
                % 30000
                + 2000
        })
        .find(|&p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        .expect("a free UDP port")
}

/// One datagram to 127.0.0.1:`port` and its echo, if one comes within
/// `wait`: `Ok(None)` if none came.
fn udp_round_trip(port: u16, payload: &[u8], wait: Duration) -> Result<Option<Vec<u8>>, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    socket
        .connect(("127.0.0.1", port))
        .map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(wait))
        .map_err(|e| e.to_string())?;
    // Before the forward exists nothing may listen: the send may be refused.
    if socket.send(payload).is_err() {
        return Ok(None);
    }
    let mut buf = vec![0u8; 65536];
    match socket.recv(&mut buf) {
        Ok(n) => Ok(Some(buf[..n].to_vec())),
        Err(_) => Ok(None),
    }
}

/// The UDP echo server in Linux answers at 127.0.0.1:`port` (its forward
/// appears once the agent reports the socket: boot included), is listed
/// by the native httpd (at `native`), and its forward goes when it exits
/// (the script kills it on the first line written to `writer`).
fn udp_forward_works(port: u16, native: u16, writer: &mut impl Write) -> Result<(), String> {
    let start = Instant::now();
    while udp_round_trip(port, b"hello", Duration::from_millis(300))? != Some(b"hello".to_vec()) {
        if start.elapsed() > Duration::from_secs(240) {
            return Err(format!("127.0.0.1:{port} never echoed"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    println!(
        "the UDP forward answered after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    for len in [0usize, 1, 1400, 8000] {
        let sent: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
        let got = udp_round_trip(port, &sent, Duration::from_secs(5))?;
        if got.as_deref() != Some(&sent[..]) {
            return Err(format!(
                "echo of {len} bytes: {:?} bytes back",
                got.map(|g| g.len())
            ));
        }
    }
    let want = format!("{{\"port\":{port},\"protocol\":\"udp\",\"process\":\"init");
    let listed = || {
        http_get(native, "/api/forwards")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let start = Instant::now();
    while !listed().contains(&want) {
        if start.elapsed() > Duration::from_secs(5) {
            return Err(format!(
                "/api/forwards does not list UDP port {port}: {}",
                listed()
            ));
        }
        thread::sleep(Duration::from_millis(200));
    }
    writeln!(writer, "stop-udp").map_err(|e| e.to_string())?;
    let stopped = Instant::now();
    while udp_round_trip(port, b"gone?", Duration::from_millis(200))?.is_some() {
        if stopped.elapsed() > Duration::from_secs(3) {
            return Err("the UDP port still echoes 3 s after the server exited".into());
        }
    }
    while listed().contains(&want) {
        if stopped.elapsed() > Duration::from_secs(5) {
            return Err(format!("/api/forwards still lists UDP port {port}"));
        }
        thread::sleep(Duration::from_millis(200));
    }
    // The host tool removed QEMU's forward: the host port is free again.
    while UdpSocket::bind(("127.0.0.1", port)).is_err() {
        if stopped.elapsed() > Duration::from_secs(5) {
            return Err(format!("QEMU still holds host UDP port {port}"));
        }
        thread::sleep(Duration::from_millis(100));
    }
    println!(
        "the UDP forward went after {} ms",
        stopped.elapsed().as_millis()
    );
    Ok(())
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn linux_listeners_reach_the_host() {
    let port = http::free_port();
    let udp_port = free_udp_port();
    // A second echo server, for a native client (the udp command, run from
    // Linux as `starina udp`) through tcpip's loopback.
    let native_udp_port = loop {
        let p = free_udp_port();
        if p != udp_port {
            break p;
        }
    };
    let script = format!(
        r#"
/init --udp-echo {udp_port} &
udp_pid=$!
/init --udp-echo {native_udp_port} > /tmp/udp2.out &
udp2_pid=$!
i=0
until native_udp=$(starina udp -w 1 linux {native_udp_port} native hello 2>/tmp/udp2.err) || [ $i -ge 20 ]; do sleep 0.5; i=$((i+1)); done
echo "native_udp=$native_udp"
echo "native_udp_server=$(cat /tmp/udp2.out) $(tail -1 /tmp/udp2.err)"
kill $udp2_pid
mkdir -p /tmp/www/cgi-bin
head -c {BIG} /dev/urandom > /tmp/www/big
sha256sum < /tmp/www/big | cut -d' ' -f1 > /tmp/www/big.sha
printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho "$REMOTE_ADDR"\n' > /tmp/www/cgi-bin/peer
chmod +x /tmp/www/cgi-bin/peer
busybox httpd -f -p {port} -h /tmp/www &
pid=$!
i=0
until hairpin=$(wget -qO- http://starina.internal:{port}/big.sha) || [ $i -ge 20 ]; do sleep 0.5; i=$((i+1)); done
echo "hairpin=$hairpin"
read line
kill $udp_pid
wait $udp_pid
echo udp_stopped=yes
read line
kill $pid
wait $pid
echo stopped=yes
sleep 4
"#
    );
    let (reader, mut writer) = std::io::pipe().unwrap();
    let native = http::free_port();
    let run = thread::spawn(move || exec_sh(&script, Box::new(reader), native));
    // The forward appears once Linux listens (boot included).
    let start = Instant::now();
    let sha = loop {
        if let Some(body) = http_get(port, "/big.sha") {
            break String::from_utf8(body).unwrap().trim().to_string();
        }
        if run.is_finished() || start.elapsed() > Duration::from_secs(240) {
            let _ = writeln!(writer, "stop");
            drop(writer);
            let (code, out, err) = run.join().unwrap();
            panic!("127.0.0.1:{port} never answered (exit {code}):\n{out}\n{err}");
        }
        thread::sleep(Duration::from_millis(200));
    };
    println!(
        "forward answered after {:.1} s",
        start.elapsed().as_secs_f64()
    );
    let big = http_get(port, "/big").expect("GET /big");
    assert_eq!(big.len(), BIG);
    let scratch = TempDisk::new().unwrap();
    assert_eq!(
        sha256(&big, scratch.path().parent().unwrap()),
        sha,
        "the 16 MiB file"
    );
    let peer = http_get(port, "/cgi-bin/peer").expect("GET /cgi-bin/peer");
    assert_eq!(
        String::from_utf8_lossy(&peer).trim(),
        "10.0.2.2",
        "the server sees the client's address (QEMU's host address, as Starina sees it)"
    );
    // Connects made at the same instant are sometimes reset before they
    // reach Starina: a capture of QEMU's frames to Starina's NIC (QEMU's
    // filter-dump) shows no SYN for them, and the native httpd's port 80
    // meets the same. The host's kernel resets them: QEMU's user network
    // listens on the forwarded port with a backlog of 1, the burst fills
    // that queue, the kernel answers with SYN cookies, and the cookies that
    // fail are reset (`nstat`'s TcpExtSyncookiesFailed and
    // TcpExtListenOverflows grow with each burst; the same happens with no
    // Starina behind the forward). So a request reset before any answer
    // byte is retried, as browsers retry idempotent requests, with backoff
    // and a per-request offset so that the retries do not meet as a burst
    // again. Each must succeed, with the right bytes.
    let parallel: Vec<_> = (0..50u64)
        .map(|i| {
            thread::spawn(move || {
                let mut result = http::get(port, "/big.sha");
                for attempt in 0..7 {
                    match &result {
                        Err(e) if e.starts_with("read after 0 bytes") => {
                            let backoff = 100 << attempt.min(4);
                            thread::sleep(Duration::from_millis(backoff + i * 13 % 100));
                            result = http::get(port, "/big.sha");
                        }
                        _ => break,
                    }
                }
                result
            })
        })
        .collect();
    let failures: Vec<String> = parallel
        .into_iter()
        .enumerate()
        .filter_map(|(i, t)| match t.join().unwrap() {
            Ok(body) if String::from_utf8_lossy(&body).trim() == sha => None,
            Ok(body) => Some(format!("request {i}: {body:?}")),
            Err(e) => Some(format!("request {i}: {e}")),
        })
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(writer, "stop");
        drop(writer);
        let (code, out, err) = run.join().unwrap();
        panic!(
            "{} of 50 parallel requests failed: {failures:?} (exit {code}):\n{out}\n{err}",
            failures.len()
        );
    }
    // The native httpd lists the forward (refreshed once a second) with
    // every connection so far: 3 above, the 50, and Linux's own through
    // starina.internal.
    let want = format!("{{\"port\":{port},\"protocol\":\"tcp\",\"process\":\"busybox\"");
    let served = |json: &str| {
        json.split(&want)
            .nth(1)
            .and_then(|rest| rest.split("\"connections\":").nth(1))
            .and_then(|n| {
                n.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse::<u64>()
                    .ok()
            })
    };
    let listed = Instant::now();
    loop {
        let json = http_get(native, "/api/forwards")
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        if served(&json).is_some_and(|n| n >= 54) {
            break;
        }
        assert!(
            listed.elapsed() < Duration::from_secs(5),
            "/api/forwards does not list port {port} with 54 connections: {json}"
        );
        thread::sleep(Duration::from_millis(200));
    }
    // The script waits at its first `read` by now (the transfers above
    // took seconds): the UDP server's turn, then the listener's.
    if let Err(why) = udp_forward_works(udp_port, native, &mut writer) {
        let _ = writeln!(writer, "stop");
        let _ = writeln!(writer, "stop");
        drop(writer);
        let (code, out, err) = run.join().unwrap();
        panic!("UDP forward: {why} (exit {code}):\n{out}\n{err}");
    }
    writeln!(writer, "stop").unwrap();
    let stopped = Instant::now();
    while http_get(port, "/big.sha").is_some() {
        assert!(
            stopped.elapsed() < Duration::from_secs(2),
            "the port still answers 2 s after the listener exited"
        );
        thread::sleep(Duration::from_millis(50));
    }
    println!(
        "the port stopped answering after {} ms",
        stopped.elapsed().as_millis()
    );
    drop(writer);
    let (code, out, err) = run.join().unwrap();
    assert!(out.contains("stopped=yes"), "{out}\n{err}");
    assert!(out.contains("udp_stopped=yes"), "{out}\n{err}");
    // A native client reached a Linux UDP port (`starina udp linux P`):
    // the answer came back, and Linux saw it come from the gateway (this
    // machine, as the guest routes it).
    assert!(out.contains("native_udp=native hello\n"), "{out}\n{err}");
    assert!(
        out.contains("native_udp_server=udp_echo_peer=10.0.3.2:"),
        "{out}\n{err}"
    );
    // The server saw the datagrams come from the host (QEMU's host address,
    // as Starina sees it), not from the NAT.
    let peer = values(&out).get("udp_echo_peer").copied().unwrap_or("");
    assert!(
        peer.starts_with("10.0.2.2:"),
        "the UDP server's peer: {out}"
    );
    for line in [
        format!("net: forwarding UDP port {udp_port} to Linux (init"),
        format!("net: stopped forwarding UDP port {udp_port} ("),
        format!("Linux's UDP port {udp_port} is at 127.0.0.1:{udp_port}"),
    ] {
        assert!(err.contains(&line), "no {line:?} in the log:\n{err}");
    }
    // Linux reached its own service as a native client would: the NAT's
    // `tcp:127.0.0.1:<port>` to tcpip, whose loopback hands the channel to
    // the forward of that port, back into Linux.
    assert_eq!(values(&out).get("hairpin"), Some(&sha.as_str()), "{out}");
    assert_eq!(code, 0, "{err}");
}
