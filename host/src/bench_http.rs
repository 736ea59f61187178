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
//! - Starina: the `default` profile on microvm, measured once its Linux
//!   microVM has booted too.
//!
//! Wall time on a shared machine swings by 2x between boots, so each side
//! is booted [`RUNS`] times, interleaved (Starina, Linux, Starina, ...); a
//! run is one boot, a warm-up, then the three measurements below. Each
//! figure is the median of its side's runs (the table shows every run and
//! the spread), and each ratio is the ratio of the medians.
//!
//! The client is this program, on the host (127.0.0.1 only), one request
//! per connection (busybox httpd closes every connection):
//! - requests/s for the 128-byte body, one connection at a time, over
//!   [`RPS_SECONDS`];
//! - MB/s (10^6 bytes/s) for the 1 MiB body, one at a time, over
//!   [`MIB_SECONDS`];
//! - the 99th percentile latency (connect to last byte) of the 128-byte
//!   body with [`CLIENTS`] client threads each running requests back to
//!   back, over [`P99_SECONDS`] after a warm-up. QEMU's user network
//!   listens for forwarded connections with a backlog of 1, so part of that
//!   latency is the host kernel's 1 s SYN retransmission when connections
//!   arrive faster than QEMU accepts them, on both sides alike.

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
use crate::stats::median;
use crate::stats::percentile;
use crate::stats::spread;

/// Boots of each system, interleaved.
pub const RUNS: usize = 5;
const RPS_SECONDS: f64 = 4.0;
const MIB_SECONDS: f64 = 4.0;
/// The 1 MiB body is fetched at least this many times per run.
const MIB_MIN_FETCHES: usize = 3;
const P99_SECONDS: f64 = 4.0;
/// The latency clients start this far apart, and are measured from this
/// long after the first started.
const RAMP_STEP: Duration = Duration::from_millis(5);
const P99_WARMUP: Duration = Duration::from_secs(1);
/// Concurrent client connections for the latency figure.
pub const CLIENTS: usize = 32;
pub(crate) const SMALL: usize = 128;
const BIG: usize = 1 << 20;
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
/// What Starina says once booted: httpd serves, and the profile's Linux
/// microVM (a component of `default`) finished booting, so that its boot
/// does not share the CPU with the measurement (the Linux side is measured
/// once fully booted too).
const STARINA_UP: [&str; 2] = [markers::HTTPD_SERVING, markers::LINUX_GUEST_READY];
const SYSTEMS: [System; 2] = [System::Starina, System::Linux];

/// The figures, in the order they are printed.
pub const ORDER: [&str; 8] = [
    "http_rps_starina",
    "http_rps_linux",
    "http_rps_ratio",
    "http_1mib_mbps_starina",
    "http_1mib_mbps_linux",
    "http_1mib_ratio",
    "http_p99_ms_starina",
    "http_p99_ms_linux",
];

/// What Starina's `/bytes/<n>` sends: a, b, ... z, a, ...
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum System {
    Starina,
    Linux,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Starina => "starina",
            System::Linux => "linux",
        }
    }

    /// The paths of the small and the big body.
    fn paths(self) -> (String, String) {
        match self {
            System::Starina => (format!("/bytes/{SMALL}"), format!("/bytes/{BIG}")),
            System::Linux => ("/small".to_string(), "/big".to_string()),
        }
    }
}

/// One run's measurements.
#[derive(Clone, Debug, Default)]
struct Sample {
    rps: f64,
    mbps: f64,
    /// Latency under [`CLIENTS`] connections: median and 99th percentile.
    p50_ms: f64,
    p99_ms: f64,
    /// The same from the open connection on (without the wait for QEMU
    /// to accept it).
    p99_after_connect_ms: f64,
    /// Requests/s under [`CLIENTS`] connections.
    concurrent_rps: f64,
    /// Requests that failed under [`CLIENTS`] connections.
    errors: usize,
    /// The first failure's message.
    first_error: Option<String>,
}

/// Returns the figures measured (missing ones absent).
pub fn figures(host: &Host, opts: &BenchOptions) -> Figures {
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=RUNS {
        for (i, system) in SYSTEMS.into_iter().enumerate() {
            if let Some(sample) = run_once(host, opts, system, round) {
                samples[i].push(sample);
            }
        }
    }
    print_table(&samples);
    summarize(&samples)
}

/// Boots `system`, measures it, stops it.
fn run_once(host: &Host, opts: &BenchOptions, system: System, round: usize) -> Option<Sample> {
    let port = crate::host::free_port()?;
    let name = system.name();
    header(&format!(
        "http: {name} on microvm, run {round} of {RUNS} (host port {port})"
    ));
    let guest = match system {
        System::Starina => boot_starina(host, opts, port),
        System::Linux => boot_linux(host, port),
    }?;
    let (small, big) = system.paths();
    let result = measure(port, &small, &big);
    guest.stop();
    match result {
        Ok(s) => {
            println!(
                "{name}: {:.1} requests/s, {:.2} MB/s (1 MiB), {CLIENTS} clients: p50 {:.1} ms, p99 {:.1} ms, {:.1} requests/s, {} errors",
                s.rps, s.mbps, s.p50_ms, s.p99_ms, s.concurrent_rps, s.errors
            );
            if let Some(e) = &s.first_error {
                println!("{name}: first failed request: {e}");
            }
            Some(s)
        }
        Err(e) => {
            eprintln!("bench: {name}: {e}");
            None
        }
    }
}

/// Reads one figure of a sample.
type Measure = fn(&Sample) -> f64;

/// One figure of a sample, by what the table calls it.
const MEASURES: [(&str, Measure); 6] = [
    ("requests/s", |s| s.rps),
    ("1 MiB MB/s", |s| s.mbps),
    ("p99 ms (32 conns)", |s| s.p99_ms),
    ("p50 ms (32 conns)", |s| s.p50_ms),
    ("p99 ms after connect", |s| s.p99_after_connect_ms),
    ("requests/s (32 conns)", |s| s.concurrent_rps),
];

/// Every run, then each side's median and spread, per measure.
fn print_table(samples: &[Vec<Sample>; 2]) {
    header(&format!(
        "http: {RUNS} interleaved runs per side (median, min-max)"
    ));
    for (what, get) in MEASURES {
        for (i, system) in SYSTEMS.into_iter().enumerate() {
            let values: Vec<f64> = samples[i].iter().map(get).collect();
            let runs: Vec<String> = values.iter().map(|v| format!("{v:8.1}")).collect();
            let Some(mid) = median(&values) else {
                println!("{what:>22} {:>8}: no runs", system.name());
                continue;
            };
            let (lo, hi) = spread(&values);
            println!(
                "{what:>22} {:>8}: median {mid:8.1}  spread {lo:.1}-{hi:.1}  runs {}",
                system.name(),
                runs.join(" ")
            );
        }
    }
    let errors: Vec<usize> = samples
        .iter()
        .map(|s| s.iter().map(|s| s.errors).sum())
        .collect();
    println!(
        "{:>22}: starina {}, linux {}",
        "failed requests", errors[0], errors[1]
    );
}

/// The figures: each side's median, and the ratios of the medians.
fn summarize(samples: &[Vec<Sample>; 2]) -> Figures {
    let mut out = Figures::new();
    let mid =
        |i: usize, get: fn(&Sample) -> f64| median(&samples[i].iter().map(get).collect::<Vec<_>>());
    let per_side: [(&str, Measure, usize); 3] = [
        ("http_rps", |s| s.rps, 1),
        ("http_1mib_mbps", |s| s.mbps, 2),
        ("http_p99_ms", |s| s.p99_ms, 1),
    ];
    for (prefix, get, decimals) in per_side {
        for (i, system) in SYSTEMS.into_iter().enumerate() {
            if let Some(v) = mid(i, get) {
                let name = format!("{prefix}_{}", system.name());
                out.insert(name, format!("{v:.decimals$}"));
            }
        }
    }
    for (ratio, get) in [
        ("http_rps_ratio", (|s| s.rps) as Measure),
        ("http_1mib_ratio", |s| s.mbps),
    ] {
        if let (Some(a), Some(b)) = (mid(0, get), mid(1, get)) {
            out.insert(ratio.to_string(), format!("{:.3}", a / b));
        }
    }
    out
}

/// A booted system whose console we scan.
pub(crate) enum Guest {
    /// Starina, run by `run` in a thread.
    Starina {
        host: Host,
        runner: thread::JoinHandle<()>,
    },
    /// QEMU running Linux directly.
    Linux(Child),
}

impl Guest {
    pub(crate) fn stop(self) {
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
    boot_profile(host, opts, port, "default", &STARINA_UP)
}

/// Boots Starina's `profile` on microvm with the guest's port 80 on host
/// port `port`, and waits for each of `up` on its console.
pub(crate) fn boot_profile(
    host: &Host,
    opts: &BenchOptions,
    port: u16,
    profile: &str,
    up: &[&str],
) -> Option<Guest> {
    let mut host = host.clone();
    host.http_port = port;
    host.stop = Arc::new(Default::default());
    let mut run = RunOptions::new(profile);
    // One CPU, as this figure's baseline was measured.
    run.cpus = 1;
    run.disk = crate::bench::bench_disk();
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
    for marker in up {
        if !console.wait_while(marker, BOOT_TIMEOUT, || !runner.is_finished()) {
            eprintln!(
                "bench: Starina never said '{marker}'; its console:\n{}",
                console.tail(30)
            );
            Guest::Starina { host, runner }.stop();
            return None;
        }
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
pub(crate) fn fetch(port: u16, path: &str, want_len: usize) -> Result<usize, String> {
    fetch_timed(port, path, want_len).map(|(len, _)| len)
}

/// [`fetch`], and the time the connection took to open.
fn fetch_timed(port: u16, path: &str, want_len: usize) -> Result<(usize, Duration), String> {
    let start = Instant::now();
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    let connected = start.elapsed();
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    // One write, as clients send a request head (unbuffered `write!`
    // would send it in three segments).
    let request = format!("GET {path} HTTP/1.0\r\nHost: bench\r\n\r\n");
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
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
    Ok((body_len, connected))
}

/// Waits until the server answers, warms it up, then measures.
fn measure(port: u16, small: &str, big: &str) -> Result<Sample, String> {
    let start = Instant::now();
    while fetch(port, small, SMALL).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("never answered HTTP".into());
        }
        thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..3 {
        fetch(port, small, SMALL)?;
    }
    fetch(port, big, BIG)?;
    let rps = requests_per_second(port, small)?;
    let mbps = big_body_mbps(port, big)?;
    let (latencies, failures, elapsed) = concurrent_latencies(port, small);
    if latencies.is_empty() {
        return Err(format!("{CLIENTS} clients: no request succeeded"));
    }
    let total: Vec<f64> = latencies.iter().map(|l| l.total_ms).collect();
    let after: Vec<f64> = latencies.iter().map(|l| l.after_connect_ms).collect();
    Ok(Sample {
        rps,
        mbps,
        p50_ms: percentile(&total, 50.0),
        p99_ms: percentile(&total, 99.0),
        p99_after_connect_ms: percentile(&after, 99.0),
        concurrent_rps: latencies.len() as f64 / elapsed,
        errors: failures.len(),
        first_error: failures.into_iter().next(),
    })
}

/// Requests/s for the small body, one connection at a time.
pub(crate) fn requests_per_second(port: u16, small: &str) -> Result<f64, String> {
    let (mut n, t0) = (0u32, Instant::now());
    while t0.elapsed().as_secs_f64() < RPS_SECONDS {
        fetch(port, small, SMALL)?;
        n += 1;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// MB/s for the big body, one connection at a time.
fn big_body_mbps(port: u16, big: &str) -> Result<f64, String> {
    let (mut total, mut n, t0) = (0usize, 0usize, Instant::now());
    while t0.elapsed().as_secs_f64() < MIB_SECONDS || n < MIB_MIN_FETCHES {
        total += fetch(port, big, BIG)?;
        n += 1;
    }
    Ok(total as f64 / t0.elapsed().as_secs_f64() / 1e6)
}

/// [`CLIENTS`] threads fetching the small body back to back: every
/// successful request's latency in ms (connect to last byte), the failed
/// requests' errors, and the seconds measured. The threads start
/// [`RAMP_STEP`] apart and only requests started in the [`P99_SECONDS`]
/// after [`P99_WARMUP`] count: 32 connections at the same instant overflow
/// QEMU's accept queue of 2 (most wait for the host's 1 s SYN
/// retransmission), which measures QEMU's user network, not the guest.
fn concurrent_latencies(port: u16, small: &str) -> (Vec<Latency>, Vec<String>, f64) {
    let t0 = Instant::now();
    let from = t0 + P99_WARMUP;
    let deadline = from + Duration::from_secs_f64(P99_SECONDS);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let path = small.to_string();
            thread::spawn(move || {
                thread::sleep(RAMP_STEP * i as u32);
                let (mut ok, mut failed) = (Vec::new(), Vec::new());
                while Instant::now() < deadline {
                    let start = Instant::now();
                    let result = fetch_timed(port, &path, SMALL);
                    if start < from {
                        continue;
                    }
                    match result {
                        Ok((_, connect)) => {
                            let total = start.elapsed();
                            ok.push(Latency {
                                total_ms: total.as_secs_f64() * 1e3,
                                after_connect_ms: (total - connect).as_secs_f64() * 1e3,
                            })
                        }
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let (mut all, mut errors) = (Vec::new(), Vec::new());
    for client in clients {
        match client.join() {
            Ok((ok, failed)) => {
                all.extend(ok);
                errors.extend(failed);
            }
            Err(_) => errors.push("a client thread panicked".to_string()),
        }
    }
    (all, errors, P99_SECONDS)
}

/// One request's latency: from connect, and from the open connection.
struct Latency {
    total_ms: f64,
    after_connect_ms: f64,
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

    #[test]
    fn figures_are_medians_and_ratios_of_medians() {
        let sample = |rps, mbps, p99_ms| Sample {
            rps,
            mbps,
            p99_ms,
            ..Sample::default()
        };
        let starina = vec![
            sample(300.0, 20.0, 5.0),
            sample(100.0, 10.0, 9.0),
            sample(200.0, 30.0, 7.0),
        ];
        let linux = vec![
            sample(100.0, 10.0, 3.0),
            sample(50.0, 20.0, 4.0),
            sample(150.0, 40.0, 2.0),
        ];
        let f = summarize(&[starina, linux]);
        let get = |n: &str| f.get(n).map(String::as_str);
        assert_eq!(get("http_rps_starina"), Some("200.0"));
        assert_eq!(get("http_rps_linux"), Some("100.0"));
        assert_eq!(get("http_rps_ratio"), Some("2.000"));
        assert_eq!(get("http_1mib_mbps_starina"), Some("20.00"));
        assert_eq!(get("http_1mib_ratio"), Some("1.000"));
        assert_eq!(get("http_p99_ms_starina"), Some("7.0"));
        assert_eq!(get("http_p99_ms_linux"), Some("3.0"));
        assert!(ORDER.iter().all(|n| f.contains_key(*n)));
        let f = summarize(&[Vec::new(), Vec::new()]);
        assert!(f.is_empty());
    }
}
