//! Networking end to end: boot profile `net_test` (virtio-net driver,
//! TCP/IP server, httpd, netcheck) on each machine type (on q35 its
//! variant `net_test_user`: the driver, the TCP/IP server and httpd in user
//! mode, and drvprobe's checks of user-mode drivers) with the guest's
//! port 80 forwarded to the host, and drive it as a user would: HTTP
//! requests from the host (status page, JSON API, a 1 MiB body, 200
//! concurrent connections, 10,000 requests, malformed requests), and an
//! HTTP server on the host that the guest's netcheck uploads to through
//! QEMU's 10.0.2.2, and the http-get command netcheck runs against httpd.
//!
//! Booting needs QEMU: `cargo test -p starina-tests -- --ignored`.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::Shutdown;
use std::net::TcpListener;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_host::cp::Copy;
use starina_tests::http::connect;
use starina_tests::http::cpu_loads;
use starina_tests::http::free_port;
use starina_tests::http::json_number;
use starina_tests::http::json_object;
use starina_tests::markers;
use starina_tests::LiveGuest;
use starina_tests::TempDisk;
use starina_tests::TEST_DISK_SIZE;

/// How long a read from the guest may block.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where netcheck connects (`specs/netcheck.toml`: tcp:10.0.2.2:18080).
const HOST_SERVER_PORT: u16 = 18080;

/// The static files httpd serves in these tests, put on the guest's disk
/// under /www with `starina cp` before it boots: (path under /www, contents).
fn www_files() -> Vec<(&'static str, Vec<u8>)> {
    let binary: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    vec![
        ("hello.txt", b"hello from the native file system\n".to_vec()),
        ("site/index.html", b"<h1>a site</h1>".to_vec()),
        ("img/pattern.png", binary),
        ("with space.css", b"body{}".to_vec()),
    ]
}

/// A disk with [`www_files`] under /www.
fn disk_with_www() -> TempDisk {
    let disk = TempDisk::new().expect("a temporary directory");
    starina_host::disk::create(&disk.path(), TEST_DISK_SIZE, None).expect("mke2fs");
    let tree = disk.path().with_file_name("www");
    for (path, data) in www_files() {
        let file = tree.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, data).unwrap();
    }
    let copy = Copy::parse(tree.to_str().unwrap(), "starina:/").unwrap();
    starina_host::cp::copy(&disk.path(), &copy).expect("starina cp of the www tree");
    disk
}

/// `profile` (`net_test` or `net_test_user`) booted in the background on
/// `cpus` CPUs with `qemu_args`, serving HTTP (and
/// the static files of [`www_files`]).
fn boot_net_test(
    profile: &str,
    machine: &str,
    port: u16,
    qemu_args: &[&str],
    cpus: u8,
) -> (LiveGuest, TempDisk) {
    let disk = disk_with_www();
    let guest = LiveGuest::boot_on_cpus(&disk.path(), profile, machine, port, qemu_args, cpus);
    guest.wait_console(markers::HTTPD_SERVING, Duration::from_secs(120));
    (guest, disk)
}

/// A response: status code, headers (lowercase names) and body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (Content-Length bodies only, as httpd sends).
fn read_response(reader: &mut BufReader<TcpStream>) -> std::io::Result<Response> {
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {line:?}")))?;
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Response {
        status,
        headers,
        body,
    })
}

fn get(port: u16, path: &str) -> Response {
    let mut s = connect(port, READ_TIMEOUT);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: starina\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(s)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// FNV-1a 64, as netcheck computes it.
fn fnv1a(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for &b in data {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// The host's test server: answers `POST /echo` with the body it received
/// (read until the client's FIN) echoed back, and its length and FNV-1a
/// hash in an `X-Upload: len=<n> fnv=<hex>` header.
fn host_server() -> (Arc<Mutex<Vec<String>>>, thread::JoinHandle<()>) {
    // Another test run on this machine may hold the port for a while.
    let start = Instant::now();
    let listener = loop {
        match TcpListener::bind(("127.0.0.1", HOST_SERVER_PORT)) {
            Ok(l) => break l,
            Err(e) if start.elapsed() < Duration::from_secs(300) => {
                eprintln!("network: 127.0.0.1:{HOST_SERVER_PORT} busy ({e}); waiting");
                thread::sleep(Duration::from_secs(2));
            }
            Err(e) => {
                panic!("cannot bind the host test server on 127.0.0.1:{HOST_SERVER_PORT}: {e}")
            }
        }
    };
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let handle = thread::spawn(move || {
        for stream in listener.incoming().take(1) {
            let mut stream = stream.unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(60)))
                .unwrap();
            let mut all = Vec::new();
            let _ = stream.read_to_end(&mut all);
            let split = all.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
            let (head, body) = match split {
                Some(i) => (String::from_utf8_lossy(&all[..i]).into_owned(), &all[i..]),
                None => (String::from_utf8_lossy(&all).into_owned(), &all[..0]),
            };
            let answer = format!("len={} fnv={:016x}", body.len(), fnv1a(body));
            log.lock()
                .unwrap()
                .push(format!("{}|{answer}", head.lines().next().unwrap_or("")));
            let _ = write!(
                stream,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nX-Upload: {answer}\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    (seen, handle)
}

/// The first nameserver of the host's /etc/resolv.conf: QEMU's user network
/// forwards the guest's DNS queries (to 10.0.2.3, which DHCP hands out)
/// there.
fn host_nameserver() -> Option<String> {
    let conf = std::fs::read_to_string("/etc/resolv.conf").ok()?;
    conf.lines().find_map(|l| {
        let mut words = l.split_whitespace();
        (words.next() == Some("nameserver")).then(|| words.next().map(str::to_string))?
    })
}

/// Asks `server` for the A record of `name`; the answer's RCODE, or `None`
/// without an answer within 3 s.
fn dns_rcode(server: &str, name: &str) -> Option<u8> {
    let sock = std::net::UdpSocket::bind(("0.0.0.0", 0)).ok()?;
    sock.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut q = vec![0x5a, 0x17, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let addr = if server.contains(':') {
        format!("[{server}]:53")
    } else {
        format!("{server}:53")
    };
    sock.send_to(&q, addr).ok()?;
    let mut buf = [0u8; 512];
    let (n, _) = sock.recv_from(&mut buf).ok()?;
    (n >= 12 && buf[..2] == q[..2]).then_some(buf[3] & 0x0f)
}

/// Heap in use (kernel) and the TCP/IP server's own memory, from
/// /api/stats. httpd refreshes tcpip's figures every second: wait for a
/// fresh copy first.
fn memory(port: u16) -> (u64, u64, String) {
    thread::sleep(Duration::from_millis(2500));
    let stats = String::from_utf8_lossy(&get(port, "/api/stats").body).into_owned();
    let tcpip = json_object(&stats, "tcpip").to_string();
    (
        json_number(&stats, "heap_in_use"),
        json_number(&tcpip, "memory_bytes"),
        stats,
    )
}

/// GET with extra request header lines.
fn get_with(port: u16, path: &str, headers: &str) -> Response {
    let mut s = connect(port, READ_TIMEOUT);
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: starina\r\n{headers}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(s)).unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// httpd's static files from /www of the native file system (fs server,
/// ext2, virtio-blk): bodies, content types, directories' index.html,
/// Last-Modified and If-Modified-Since, and paths that try to leave /www.
fn static_files(port: u16) {
    for (path, data) in www_files() {
        let url = format!("/{}", path.replace(' ', "%20"));
        let r = get(port, &url);
        assert_eq!(r.status, 200, "GET {url}");
        assert_eq!(
            fnv1a(&r.body),
            fnv1a(&data),
            "GET {url}: {} bytes, not the {} on the disk",
            r.body.len(),
            data.len()
        );
    }
    assert_eq!(
        get(port, "/hello.txt").header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        get(port, "/img/pattern.png").header("content-type"),
        Some("image/png")
    );
    let site = get(port, "/site/");
    assert_eq!(
        (site.status, site.body.as_slice()),
        (200, &b"<h1>a site</h1>"[..])
    );
    assert_eq!(
        site.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let hello = get(port, "/hello.txt");
    let modified = hello
        .header("last-modified")
        .expect("Last-Modified")
        .to_string();
    assert!(modified.ends_with(" GMT"), "Last-Modified: {modified}");
    let again = get_with(
        port,
        "/hello.txt",
        &format!("If-Modified-Since: {modified}\r\n"),
    );
    assert_eq!(
        (again.status, again.body.len()),
        (304, 0),
        "If-Modified-Since the file's own date"
    );
    let old = get_with(
        port,
        "/hello.txt",
        "If-Modified-Since: Thu, 01 Jan 1998 00:00:00 GMT\r\n",
    );
    assert_eq!(old.status, 200, "If-Modified-Since before the file's date");
    assert_eq!(get(port, "/no/such/file").status, 404);
    assert_eq!(get(port, "/hello.txt/below").status, 404);
    assert_eq!(get(port, "/../etc/passwd").status, 400);
    assert_eq!(get(port, "/img/%2e%2e/%2e%2e/x").status, 400);
    // The built-in pages stay: "/" is the status page (no /www/index.html).
    assert!(String::from_utf8_lossy(&get(port, "/").body).contains("<h1>Starina</h1>"));
}

fn network(profile: &str, machine: &str, qemu_args: &[&str], cpus: u8) {
    let port = free_port();
    let t0 = Instant::now();
    let (seen, server) = host_server();
    let (guest, _disk) = boot_net_test(profile, machine, port, qemu_args, cpus);
    let booted = t0.elapsed();
    if profile == "net_test_user" {
        let console = guest.console();
        for name in ["virtio_net", "tcpip", "httpd"] {
            let line = format!("user: {name} runs in ring 3");
            assert!(console.contains(&line), "no '{line}':\n{console}");
        }
        user_mode_drivers(&guest, port);
    }

    // Status page and JSON endpoints.
    let page = get(port, "/");
    assert_eq!(page.status, 200);
    let html = String::from_utf8_lossy(&page.body);
    for needle in [
        "<h1>Starina</h1>",
        "virtio_net",
        "tcpip",
        "httpd",
        "running",
        "<h2>CPU load</h2>",
    ] {
        assert!(html.contains(needle), "status page lacks {needle}:\n{html}");
    }
    static_files(port);

    let comps = get(port, "/api/components");
    assert_eq!(comps.header("content-type"), Some("application/json"));
    let json = String::from_utf8_lossy(&comps.body);
    assert!(json.starts_with('[') && json.ends_with(']'), "{json}");
    for name in ["virtio_net", "tcpip", "httpd"] {
        let entry = format!("{{\"name\":\"{name}\",");
        let at = json
            .find(&entry)
            .unwrap_or_else(|| panic!("{name} missing: {json}"));
        assert!(json[at..].contains("\"state\":\"running\""), "{json}");
    }
    let logs = String::from_utf8_lossy(&get(port, "/api/logs").body).into_owned();
    assert!(
        logs.starts_with("{\"lines\":[") && logs.ends_with("]}"),
        "{logs}"
    );
    assert!(logs.contains("configured by DHCP"), "{logs}");
    let stats = String::from_utf8_lossy(&get(port, "/api/stats").body).into_owned();
    for key in ["uptime_ms", "heap_in_use", "requests", "connections_open"] {
        json_number(&stats, key);
    }

    // A 1 MiB body, byte for byte.
    let big = get(port, "/bytes/1048576");
    assert_eq!(big.status, 200);
    assert_eq!(big.body.len(), 1 << 20);
    let want: Vec<u8> = (0..1usize << 20).map(|i| b'a' + (i % 26) as u8).collect();
    assert!(big.body == want, "the 1 MiB body differs");

    // 200 connections open at once, then a request on each at the same
    // moment. QEMU's user network accepts forwarded connections on a host
    // socket with a listen backlog of 1, so 200 simultaneous connects
    // overflow the host kernel's accept queue (the host drops the
    // handshake's last ACK and the client waits for an answer that never
    // comes). So they are opened one after another, each proven to reach
    // httpd by one keep-alive request, and held open.
    let conc = Instant::now();
    let mut held = Vec::new();
    for _ in 0..200 {
        let s = connect(port, READ_TIMEOUT);
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        write!(w, "GET /bytes/1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let resp = read_response(&mut r).expect("a keep-alive request");
        assert_eq!((resp.status, resp.body.as_slice()), (200, &b"a"[..]));
        held.push((w, r));
    }
    let open = json_number(
        &String::from_utf8_lossy(&get(port, "/api/stats").body),
        "connections_open",
    );
    assert!(
        open >= 201,
        "httpd has {open} connections open, not 200 + this one"
    );
    let barrier = Arc::new(std::sync::Barrier::new(200));
    let workers: Vec<_> = held
        .into_iter()
        .enumerate()
        .map(|(i, (mut w, mut r))| {
            let barrier = barrier.clone();
            thread::spawn(move || {
                let n = 1000 + i * 97;
                barrier.wait();
                write!(
                    w,
                    "GET /bytes/{n} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let resp = read_response(&mut r).unwrap_or_else(|e| panic!("connection {i}: {e}"));
                assert_eq!(resp.status, 200, "connection {i}");
                let want: Vec<u8> = (0..n).map(|k| b'a' + (k % 26) as u8).collect();
                assert!(
                    resp.body == want,
                    "connection {i}: the body of /bytes/{n} differs"
                );
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a concurrent request failed");
    }
    let conc = conc.elapsed();

    // 10,000 requests: 100 connections of 100 keep-alive requests each.
    // The kernel heap and tcpip's own memory must come back to where they
    // were.
    let (heap_before, tcpip_before, _) = memory(port);
    let seq = Instant::now();
    let mut busy_stats = String::new();
    for _ in 0..100 {
        let s = connect(port, READ_TIMEOUT);
        let mut w = s.try_clone().unwrap();
        let mut r = BufReader::new(s);
        for _ in 0..100 {
            write!(w, "GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
            let resp = read_response(&mut r).unwrap();
            assert_eq!(resp.status, 200);
            busy_stats = String::from_utf8_lossy(&resp.body).into_owned();
        }
    }
    let seq = seq.elapsed();
    let (heap_after, tcpip_after, stats) = memory(port);
    cpu_load_is_shown(&busy_stats, &stats, cpus);
    assert!(json_number(&stats, "requests") >= 10_000, "{stats}");
    eprintln!(
        "network {machine}: 10,000 requests in {:.1} s; kernel heap in use {heap_before} -> {heap_after} bytes; \
         tcpip memory {tcpip_before} -> {tcpip_after} bytes",
        seq.as_secs_f64()
    );
    assert!(
        heap_after <= heap_before + 256 * 1024,
        "the kernel heap grew from {heap_before} to {heap_after} bytes over 10,000 requests"
    );
    assert!(
        tcpip_after <= tcpip_before,
        "tcpip's memory grew from {tcpip_before} to {tcpip_after} bytes over 10,000 requests: {stats}"
    );

    // Malformed requests: an error status or a closed connection, never a
    // crash.
    let mut s = connect(port, READ_TIMEOUT);
    s.write_all(b"\x00\x01garbage\r\n\r\n").unwrap();
    let r = read_response(&mut BufReader::new(s)).unwrap();
    assert_eq!(r.status, 400);
    let mut s = connect(port, READ_TIMEOUT);
    let mut huge = b"GET / HTTP/1.1\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100_000));
    let _ = s.write_all(&huge);
    if let Ok(r) = read_response(&mut BufReader::new(s)) {
        assert_eq!(r.status, 431); // or closed: also acceptable
    }
    let mut s = connect(port, READ_TIMEOUT);
    s.write_all(b"GET /api/sta").unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(
        rest.is_empty() || rest.starts_with(b"HTTP/1.1 400"),
        "{:?}",
        String::from_utf8_lossy(&rest)
    );
    let r = get(port, "/api/stats");
    assert_eq!(r.status, 200, "httpd stopped answering after bad requests");
    assert!(!guest.console().contains("panicked"), "{}", guest.console());

    // Outbound: netcheck uploaded to our server through tcpip and got it
    // back, then resolved a name through the DHCP-provided DNS server.
    guest.wait_console("netcheck: dns ", Duration::from_secs(60));
    let console = guest.console();
    assert!(console.contains("netcheck: ok"), "{console}");
    server.join().unwrap();
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert!(
        seen[0].starts_with("POST /echo HTTP/1.0|len=262144 fnv="),
        "{seen:?}"
    );
    // QEMU forwards the guest's queries to the host's resolver: the guest
    // must get the answer the host gets (NXDOMAIN for a `.invalid` name).
    let name = "starina-netcheck.invalid";
    let host = host_nameserver().and_then(|ns| dns_rcode(&ns, name));
    match host {
        Some(3) => assert!(
            console.contains(&format!("netcheck: dns {name}: not found")),
            "{console}"
        ),
        Some(0) => assert!(
            console.contains(&format!("netcheck: dns {name}: resolved")),
            "{console}"
        ),
        _ => {
            eprintln!("network: the host's resolver did not answer for {name}; the guest's DNS query timed out as expected");
            assert!(
                console.contains(&format!("netcheck: dns {name}: FAILED")),
                "{console}"
            );
        }
    }
    // Last, netcheck ran the http-get command against httpd through tcpip
    // (specs/netcheck.toml's http_get_url): a page, and a 404 as status 1.
    guest.wait_console("netcheck: http-get ", Duration::from_secs(60));
    let console = guest.console();
    assert!(
        console.contains("netcheck: http-get ok: 100000 bytes"),
        "{console}"
    );
    // And the udp command against a UDP port netcheck holds itself
    // (tcpip's loopback), then against one nobody holds.
    guest.wait_console("netcheck: udp ", Duration::from_secs(60));
    let console = guest.console();
    assert!(
        console.contains("netcheck: udp ok: a datagram to localhost:5400 came from 127.0.0.1 and the answer came back; port 5401: udp: localhost:5401: nothing listens on UDP port 5401 here"),
        "{console}"
    );
    eprintln!(
        "network {machine}: boot {:.1} s, 200 concurrent {:.1} s, total {:.1} s",
        booted.as_secs_f64(),
        conc.as_secs_f64(),
        t0.elapsed().as_secs_f64()
    );
}

/// `/api/stats` has one entry per CPU whose busy and idle time add up to
/// about the time since boot; `busy` (the last response of the 10,000
/// requests) shows load over httpd's last second, `idle` (2.5 s later)
/// totals that grew meanwhile.
fn cpu_load_is_shown(busy: &str, idle: &str, cpus: u8) {
    let during = cpu_loads(busy);
    let after = cpu_loads(idle);
    assert_eq!(after.len(), usize::from(cpus), "{idle}");
    let uptime = json_number(idle, "uptime_ms");
    for (i, c) in after.iter().enumerate() {
        assert_eq!(c.cpu, i as u64, "{idle}");
        assert!((0.0..=100.0).contains(&c.busy_pct), "{idle}");
        // Each CPU starts a little after boot (and the figures are read
        // a moment after the uptime).
        let total = c.busy_ms + c.idle_ms;
        assert!(
            total <= uptime + 100 && total + 10_000 >= uptime,
            "CPU {i}: busy {} + idle {} ms against an uptime of {uptime} ms: {idle}",
            c.busy_ms,
            c.idle_ms
        );
        assert!(
            c.busy_ms + c.idle_ms > during[i].busy_ms + during[i].idle_ms,
            "{busy}\n{idle}"
        );
    }
    // Serving requests back to back keeps the system busy.
    let load: f64 = during.iter().map(|c| c.busy_pct).sum();
    assert!(load >= 5.0, "{load} % busy while serving requests: {busy}");
    eprintln!(
        "network: CPU busy while serving (last second): {:?} %",
        during.iter().map(|c| c.busy_pct).collect::<Vec<_>>()
    );
}

/// The user-mode drivers of `net_test_user`: virtio_net in ring 3 (which
/// the rest of [`network`] then drives), and drvprobe's checks, crashes and
/// restart (`specs/drvprobe.toml`): every refusal checked by every
/// instance, each crash a fault that ended it alone, the instance after
/// the last crash driving the device again, and the DMA memory the crashed
/// instances held freed.
fn user_mode_drivers(guest: &LiveGuest, port: u16) {
    const CRASHES: usize = 5;
    const CRASH_DMA_PAGES: u64 = 256;
    let up = format!(
        "drvprobe: instance {}: up after {CRASHES} crashes",
        CRASHES + 1
    );
    guest.wait_console(&up, Duration::from_secs(60));
    let console = guest.console();
    assert!(
        console.contains("user: virtio_net runs in ring 3"),
        "{console}"
    );
    let count = |needle: &str| console.matches(needle).count();
    assert_eq!(
        count("refusals checked; 64 random bytes from the device"),
        CRASHES + 1,
        "{console}"
    );
    assert_eq!(
        count("crashing on purpose holding 256 DMA pages"),
        CRASHES,
        "{console}"
    );
    assert_eq!(
        count("drvprobe: user-mode fault: page fault (vector 14, error 0x7)"),
        CRASHES,
        "{console}"
    );
    assert!(
        !console.contains("drvprobe: stopped") && !console.contains("drvprobe: panicked"),
        "{console}"
    );
    // What the crashed instances held (5 x 256 pages) is gone: the drivers
    // still running hold their queues only.
    let stats = String::from_utf8_lossy(&get(port, "/api/stats").body).into_owned();
    let dma = json_number(&stats, "dma_pages");
    eprintln!("network: {dma} DMA pages in use after {CRASHES} user-mode driver crashes");
    assert!(
        dma < CRASH_DMA_PAGES,
        "{dma} DMA pages in use: the crashed drivers' {CRASH_DMA_PAGES} pages each were not freed"
    );
}

#[test]
#[ignore = "boots QEMU"]
fn network_q35() {
    // On two CPUs: the per-CPU figures of /api/stats. The NIC's driver,
    // tcpip and httpd run in user mode here (profile net_test_user, with drvprobe and its
    // virtio-rng device); on microvm in the kernel.
    network("net_test_user", "q35", &["-device", "virtio-rng-pci"], 2);
}

#[test]
#[ignore = "boots QEMU"]
fn network_microvm() {
    network("net_test", "microvm", &[], 1);
}
