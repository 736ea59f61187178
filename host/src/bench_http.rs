//! HTTP figures for `starina bench`: Starina's httpd against busybox httpd
//! in a Linux booted directly by the same QEMU (`-M microvm`, the same
//! virtio-net NIC on QEMU's user network, the same host port forward to the
//! guest's port 80).
//!
//! - Linux: the microVM kernel `linux-guest/build-kernel.sh` builds (it has
//!   virtio-net, virtio-mmio and packet sockets) and an initramfs made here
//!   from Debian's busybox-static, whose /init brings eth0 up with udhcpc and
//!   runs `busybox httpd` on /www (a 128-byte file and a 1 MiB file holding
//!   what Starina's /bytes/<n> sends).
//! - Starina: the `default` profile on microvm.
//!
//! Load: one client on the host (127.0.0.1 only), one request per connection
//! (busybox httpd closes every connection), one connection at a time (QEMU's
//! user network accepts forwarded connections with a listen backlog of 1).
//! For each system: requests/s for the 128-byte body over RPS_SECONDS, and
//! MB/s (10^6 bytes/s) for the 1 MiB body over MIB_SECONDS.

use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::process::Child;
use std::process::Stdio;
use std::sync::Arc;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use crate::bench::header;
use crate::bench::Figures;
use crate::bootfs::linux_artifact;
use crate::cli::BenchOptions;
use crate::cpio;
use crate::exec::stop_qemu;
use crate::exec::TempDir;
use crate::host::Host;
use crate::kernel::Progress;
use crate::markers;
use crate::process::forward_lines;
use crate::qemu;
use crate::qemu::Machine;
use crate::run::RunOptions;
use crate::shared_text::SharedText;

const RPS_SECONDS: f64 = 10.0;
const MIB_SECONDS: f64 = 10.0;
const SMALL: usize = 128;
const BIG: usize = 1 << 20;
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

/// The figures, in the order they are printed.
pub const ORDER: [&str; 6] = [
    "http_rps_starina",
    "http_rps_linux",
    "http_rps_ratio",
    "http_1mib_mbps_starina",
    "http_1mib_mbps_linux",
    "http_1mib_ratio",
];

/// What Starina's `/bytes/<n>` sends: a, b, ... z, a, ...
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}


/// Returns the figures measured (missing ones absent).
pub fn figures(host: &Host, opts: &BenchOptions) -> Figures {
    let mut measured = Vec::new();
    for system in ["starina", "linux"] {
        let Some(port) = crate::host::free_port() else { continue };
        header(&format!("http: {system} on microvm (host port {port})"));
        let guest = match system {
            "starina" => boot_starina(host, opts, port),
            _ => boot_linux(host, port),
        };
        let Some(guest) = guest else { continue };
        let paths = match system {
            "starina" => (format!("/bytes/{SMALL}"), format!("/bytes/{BIG}")),
            _ => ("/small".to_string(), "/big".to_string()),
        };
        match measure(port, &paths.0, &paths.1) {
            Ok((rps, mbps)) => {
                println!("{system}: {rps:.1} requests/s ({SMALL}-byte body), {mbps:.2} MB/s (1 MiB body)");
                measured.push((format!("http_rps_{system}"), rps));
                measured.push((format!("http_1mib_mbps_{system}"), mbps));
            }
            Err(e) => eprintln!("bench: {system}: {e}"),
        }
        guest.stop();
    }
    let mut out = Figures::new();
    let get = |name: &str| measured.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
    for (name, value) in &measured {
        let text = if name.starts_with("http_rps") {
            format!("{value:.1}")
        } else {
            format!("{value:.2}")
        };
        out.insert(name.clone(), text);
    }
    for (ratio, a, b) in [
        ("http_rps_ratio", "http_rps_starina", "http_rps_linux"),
        (
            "http_1mib_ratio",
            "http_1mib_mbps_starina",
            "http_1mib_mbps_linux",
        ),
    ] {
        if let (Some(a), Some(b)) = (get(a), get(b)) {
            out.insert(ratio.to_string(), format!("{:.3}", a / b));
        }
    }
    out
}

/// A booted system whose console we scan.
enum Guest {
    /// Starina, run by `run` in a thread.
    Starina {
        host: Host,
        runner: thread::JoinHandle<()>,
    },
    /// QEMU running Linux directly.
    Linux(Child),
}

impl Guest {
    fn stop(self) {
        match self {
            Guest::Starina { host, runner } => {
                host.stop.request(crate::status::SIGTERM);
                let _ = runner.join();
            }
            Guest::Linux(mut child) => stop_qemu(&mut child),
        }
    }
}

fn boot_starina(host: &Host, opts: &BenchOptions, port: u16) -> Option<Guest> {
    let mut host = host.clone();
    host.http_port = port;
    host.stop = Arc::new(Default::default());
    let mut run = RunOptions::new("default");
    run.machine = Machine::Microvm;
    run.build = false;
    run.kernel = opts.kernel.clone();
    run.timeout = Some(BOOT_TIMEOUT.as_secs_f64() + 600.0);
    let console = SharedText::new();
    let (mut out, mut err) = (console.clone(), console.clone());
    let runner_host = host.clone();
    let runner = thread::spawn(move || {
        let mut io = crate::host::Streams {
            out: &mut out,
            err: &mut err,
        };
        crate::run::run(&runner_host, &run, &mut io);
    });
    if !console.wait_while(markers::HTTPD_SERVING, BOOT_TIMEOUT, || !runner.is_finished()) {
        eprintln!(
            "bench: Starina's httpd did not come up; its console:\n{}",
            console.tail(30)
        );
        Guest::Starina { host, runner }.stop();
        return None;
    }
    Some(Guest::Starina { host, runner })
}

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /usr/bin /usr/sbin /sbin
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sys /sys
ip link set lo up
ip link set eth0 up
udhcpc -i eth0 -q -n -t 20 -T 1 -s /udhcpc.sh >/dev/null 2>&1 || echo "bench-linux: no DHCP lease"
httpd -p 80 -h /www
echo "bench-linux: ready $(ip -4 -o addr show eth0)"
exec sleep 1000000
"#;

const UDHCPC: &str = r#"#!/bin/sh
case "$1" in
bound|renew)
    ifconfig "$interface" "$ip" netmask "$subnet" up
    [ -n "$router" ] && route add default gw "$router" dev "$interface"
    ;;
esac
exit 0
"#;

/// The busybox initramfs of the Linux side.
fn linux_initramfs() -> Result<Vec<u8>, String> {
    let busybox = std::fs::read("/bin/busybox").map_err(|e| format!("/bin/busybox: {e}"))?;
    let (small, big) = (pattern(SMALL), pattern(BIG));
    let entry = |name, mode, data| cpio::Entry {
        name,
        mode,
        data,
        rdev: (0, 0),
    };
    let device = |name, rdev| cpio::Entry {
        name,
        mode: cpio::CHAR_DEVICE | 0o600,
        data: b"",
        rdev,
    };
    Ok(cpio::newc(&[
        entry("bin", cpio::DIR, b""),
        entry("dev", cpio::DIR, b""),
        device("dev/console", (5, 1)),
        cpio::Entry {
            mode: cpio::CHAR_DEVICE | 0o666,
            ..device("dev/null", (1, 3))
        },
        entry("bin/busybox", cpio::EXECUTABLE, &busybox),
        entry("init", cpio::EXECUTABLE, INIT.as_bytes()),
        entry("udhcpc.sh", cpio::EXECUTABLE, UDHCPC.as_bytes()),
        entry("www", cpio::DIR, b""),
        entry("www/small", cpio::FILE, &small),
        entry("www/big", cpio::FILE, &big),
    ]))
}

fn boot_linux(host: &Host, port: u16) -> Option<Guest> {
    let fail = |e: String| eprintln!("bench: {e}");
    let kernel = linux_artifact(host, "build-kernel.sh", Progress::WhenSlow, &mut |l| {
        eprintln!("{l}")
    })
    .map_err(|e| fail(format!("cannot build the Linux kernel: {e}")))
    .ok()?;
    let tmp = TempDir::new("starina-bench")
        .map_err(|e| fail(e.to_string()))
        .ok()?;
    let initrd = tmp.0.join("initramfs.cpio");
    linux_initramfs()
        .and_then(|a| std::fs::write(&initrd, a).map_err(|e| e.to_string()))
        .map_err(fail)
        .ok()?;
    let netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80");
    let args: Vec<String> = [
        "-M",
        "microvm,acpi=off",
        "-cpu",
        "max",
        "-m",
        "512M",
        "-display",
        "none",
        "-monitor",
        "none",
        "-no-reboot",
        "-serial",
        "stdio",
        "-nic",
        "none",
        "-netdev",
        &netdev,
        "-device",
        "virtio-net-device,netdev=n0",
        "-kernel",
        &kernel.to_string_lossy(),
        "-initrd",
        &initrd.to_string_lossy(),
        "-append",
        "console=ttyS0 quiet panic=-1 reboot=k",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let mut cmd = qemu::command(host, &args)
        .map_err(|(_, msg)| fail(msg))
        .ok()?;
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| fail(e.to_string())).ok()?;
    let console = SharedText::new();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    forward_lines(child.stdout.take().expect("piped"), tx, |l| l);
    let mut sink = console.clone();
    thread::spawn(move || rx.into_iter().for_each(|l| drop(writeln!(sink, "{l}"))));
    if !console.wait_while(markers::BENCH_LINUX_READY, BOOT_TIMEOUT, || {
        matches!(child.try_wait(), Ok(None))
    }) {
        eprintln!(
            "bench: Linux did not come up; its console:\n{}",
            console.tail(30)
        );
        stop_qemu(&mut child);
        return None;
    }
    // The initramfs file may go: Linux has unpacked it.
    drop(tmp);
    Some(Guest::Linux(child))
}

/// One request on a new connection; the body's length, checked.
fn fetch(port: u16, path: &str, want_len: usize) -> Result<usize, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    write!(s, "GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n").map_err(|e| e.to_string())?;
    let mut data = Vec::with_capacity(want_len + 512);
    s.read_to_end(&mut data)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let split = data.windows(4).position(|w| w == b"\r\n\r\n");
    let (head, body_len) = match split {
        Some(at) => (
            String::from_utf8_lossy(&data[..at]).into_owned(),
            data.len() - at - 4,
        ),
        None => (String::from_utf8_lossy(&data).into_owned(), 0),
    };
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.starts_with("HTTP/1.") || !status_line.contains(" 200 ") || body_len != want_len
    {
        let start: String = head.chars().take(80).collect();
        return Err(format!(
            "GET {path}: bad answer ({} bytes): {start:?}",
            data.len()
        ));
    }
    Ok(body_len)
}

/// (requests/s for the small body, MB/s for the big one).
fn measure(port: u16, small: &str, big: &str) -> Result<(f64, f64), String> {
    let start = Instant::now();
    while fetch(port, small, SMALL).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("never answered HTTP".into());
        }
        thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..3 {
        fetch(port, small, SMALL)?; // Warm up.
    }
    let (mut n, t0) = (0u32, Instant::now());
    while t0.elapsed().as_secs_f64() < RPS_SECONDS {
        fetch(port, small, SMALL)?;
        n += 1;
    }
    let rps = n as f64 / t0.elapsed().as_secs_f64();
    fetch(port, big, BIG)?;
    let (mut total, t0) = (0usize, Instant::now());
    while t0.elapsed().as_secs_f64() < MIB_SECONDS || total < 3 * BIG {
        total += fetch(port, big, BIG)?;
    }
    Ok((rps, total as f64 / t0.elapsed().as_secs_f64() / 1e6))
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn fetch_checks_the_answer() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = thread::spawn(move || {
            for body in [pattern(SMALL), b"short".to_vec()] {
                let (mut s, _) = listener.accept().unwrap();
                // Read the whole request head: closing with unread bytes
                // would reset the connection.
                let mut req = Vec::new();
                let mut chunk = [0u8; 256];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "client closed before the request ended");
                    req.extend_from_slice(&chunk[..n]);
                }
                write!(
                    s,
                    "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
                    body.len()
                )
                .unwrap();
                s.write_all(&body).unwrap();
            }
        });
        assert_eq!(fetch(port, "/small", SMALL), Ok(SMALL));
        assert!(fetch(port, "/small", SMALL).is_err());
        server.join().unwrap();
        assert_eq!(&pattern(28)[24..], b"yzab");
    }
}
