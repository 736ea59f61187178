//! Linux's network for `starina bench` (`--net-only` runs only this): the
//! same Linux kernel and initramfs through Starina (`exec` on profile
//! `linux`: the guest's virtio-net, the linux server's NAT, tcpip, QEMU's
//! user network) and booted directly by the same QEMU
//! (`linux-guest/run-direct.sh` with a virtio-net NIC on QEMU's user network
//! and a host forward straight into it). [`RUNS`] boots of each (the
//! `RUNS` environment variable overrides it), interleaved: Starina, direct,
//! Starina, ...
//!
//! In each boot the guest runs the same steps ([`prepare_and_download`],
//! [`start_httpd`]): it makes a 64 MiB file and a small one in /tmp/www,
//! downloads 64 MiB from a server this bench runs on the host
//! (`http://10.0.2.2:H/big`, to /dev/null), tells the host
//! (`GET /starting`) and starts `busybox httpd` on port P, then waits
//! (Starina: on exec's standard input; direct: on `GET /stop`, which the
//! host server holds open until the host is done) while the host measures,
//! one after the other:
//!
//! - `net_out_mbps_{starina,direct}`: the host server's own timing of the
//!   64 MiB it sends, from writing the first byte to the client's close
//!   (busybox wget closes once it read the whole body; the server shuts its
//!   side after the last byte);
//! - `net_forward_delay_ms` (Starina; the direct figure goes to stderr):
//!   from the guest's `GET /starting` to the first request on
//!   127.0.0.1:P that httpd answers, polled every 20 ms. Through Starina
//!   it includes the linux server's listener scan, tcpip's listen and the
//!   host tool's monitor round trip (console line, then `hostfwd_add`);
//! - `net_in_mbps_{starina,direct}`: the host downloads the 64 MiB file from
//!   Linux's httpd at 127.0.0.1:P, from connect to the last byte;
//! - `net_in_connect_ms_{starina,direct}`: [`CONNECTS`] times per boot, a
//!   new connection, a 100-byte request and the small file's reply; the
//!   p50 over every boot's samples pooled (p90 on stderr).
//!
//! MB/s are 10^6 bytes per second. `net_{in,out}_ratio` is Starina's
//! median over the direct median (each run's values and their spread go
//! to stderr). Any failed boot, short transfer or failed request fails the
//! bench.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::Shutdown;
use std::net::TcpListener;
use std::net::TcpStream;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use crate::bench::tail;
use crate::cli::BenchOptions;
use crate::exec::TempDir;
use crate::host::Host;
use crate::host::Streams;
use crate::stats::median;
use crate::stats::percentile;
use crate::stats::spread;

/// Boots of each side.
pub const RUNS: usize = 5;
/// The large transfer, each way.
const BIG: usize = 64 << 20;
/// Connect + request + reply samples per boot.
pub const CONNECTS: usize = 200;
/// Every request the host sends is this long.
const REQUEST_LEN: usize = 100;
/// The small file the guest serves.
const SMALL_BODY: &str = "starina bench-net: the small file\n";
/// How often the host tries Linux's port after `/starting`.
const POLL: Duration = Duration::from_millis(20);
/// From the boot's start to the guest's download of `/big` and to
/// `/starting` (boot and the 64 MiB file included).
const BOOT_LIMIT: Duration = Duration::from_secs(600);
/// From `/starting` to httpd answering on the host's side.
const FORWARD_LIMIT: Duration = Duration::from_secs(60);
/// The longest the host server holds one `GET /stop` (the direct boot's
/// agent gives each command 60 s; more wait commands follow).
const STOP_HOLD: Duration = Duration::from_secs(45);
/// The direct boot's wait commands: up to `DIRECT_WAITS * STOP_HOLD` of
/// measuring.
const DIRECT_WAITS: usize = 8;
/// From the host being done to the boot's end.
const END_LIMIT: Duration = Duration::from_secs(120);

/// One side's figures from one boot.
#[derive(Debug, Default)]
struct Sample {
    out_mbps: f64,
    in_mbps: f64,
    forward_ms: f64,
    connect_ms: Vec<f64>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Side {
    Starina,
    Direct,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::Starina => "starina",
            Side::Direct => "direct",
        }
    }
}

/// The figures, in print order: (name, value with its unit).
pub fn figures(host: &Host, opts: &BenchOptions) -> Result<Vec<(String, String)>, String> {
    let runs = runs()?;
    let server = HostServer::start(Arc::new(pattern(BIG)))?;
    let mut host = host.clone();
    if std::env::var_os("STARINA_HTTP_PORT").is_none() {
        host.http_port = crate::host::free_port().ok_or("no free port for Starina's httpd")?;
    }
    let port = linux_port()?;
    eprintln!(
        "bench-net: host server 127.0.0.1:{} (10.0.2.2 from Linux), Linux's httpd on port {port}",
        server.port
    );
    let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
    for i in 1..=runs {
        for (side, list) in [Side::Starina, Side::Direct].into_iter().zip(&mut samples) {
            eprintln!("bench-net: run {i}/{runs}, {}", side.name());
            let sample = one_boot(&host, opts, &server, side, port)
                .map_err(|e| format!("run {i}/{runs}, {}: {e}", side.name()))?;
            eprintln!(
                "bench-net:   out {:.2} MB/s, in {:.2} MB/s, forward {:.0} ms, connect p50 {:.2} ms",
                sample.out_mbps,
                sample.in_mbps,
                sample.forward_ms,
                percentile(&sample.connect_ms, 50.0)
            );
            list.push(sample);
        }
    }
    Ok(summarize(&samples[0], &samples[1]))
}

/// Boots of each side: `RUNS` from the environment, else [`RUNS`].
pub fn runs() -> Result<usize, String> {
    match std::env::var("RUNS") {
        Ok(r) => match r.parse() {
            Ok(0) | Err(_) => Err(format!("RUNS={r:?}: want a number of boots, 1 or more")),
            Ok(n) => Ok(n),
        },
        Err(_) => Ok(RUNS),
    }
}

/// Linux's listening port: `STARINA_BENCH_NET_PORT`, else a free one.
fn linux_port() -> Result<u16, String> {
    match std::env::var("STARINA_BENCH_NET_PORT") {
        Ok(p) => match p.parse::<u16>() {
            Ok(port) if port >= 1024 => Ok(port),
            _ => Err(format!(
                "STARINA_BENCH_NET_PORT={p:?}: want a port from 1024 up"
            )),
        },
        Err(_) => crate::host::free_port().ok_or_else(|| "no free port for Linux's httpd".into()),
    }
}

/// The figures from every run; per-run values and spreads go to stderr.
fn summarize(starina: &[Sample], direct: &[Sample]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let pair = |name: &str, get: fn(&Sample) -> f64| {
        let (s, d): (Vec<f64>, Vec<f64>) = (
            starina.iter().map(get).collect(),
            direct.iter().map(get).collect(),
        );
        eprintln!(
            "bench-net: {name} (interleaved runs): starina {s:.2?}, direct {d:.2?}; spread: starina {}, direct {}",
            range(&s),
            range(&d)
        );
        let median = |v: &[f64]| median(v).unwrap_or(f64::NAN);
        (median(&s), median(&d))
    };
    let (in_s, in_d) = pair("net_in_mbps", |s| s.in_mbps);
    let (out_s, out_d) = pair("net_out_mbps", |s| s.out_mbps);
    let (fwd_s, fwd_d) = pair("forward delay ms", |s| s.forward_ms);
    let pooled = |v: &[Sample]| -> Vec<f64> {
        v.iter()
            .flat_map(|s| s.connect_ms.iter().copied())
            .collect()
    };
    let (conn_s, conn_d) = (pooled(starina), pooled(direct));
    eprintln!(
        "bench-net: net_in_connect_ms over {} samples each: starina p50 {:.2} p90 {:.2}, direct p50 {:.2} p90 {:.2}",
        conn_s.len(),
        percentile(&conn_s, 50.0),
        percentile(&conn_s, 90.0),
        percentile(&conn_d, 50.0),
        percentile(&conn_d, 90.0)
    );
    eprintln!(
        "bench-net: net_forward_delay_ms includes the host tool's monitor round trip (console line, then hostfwd_add); the direct boot's static forward took {fwd_d:.0} ms (median)"
    );
    eprintln!(
        "bench-net: net_out_mbps is timed by the host server from its first byte to the client's close after the last"
    );
    let mut put = |name: &str, value: String| out.push((name.to_string(), value));
    put("net_in_mbps_starina", format!("{in_s:.2} MB/s"));
    put("net_in_mbps_direct", format!("{in_d:.2} MB/s"));
    put("net_in_ratio", format!("{:.3}", in_s / in_d));
    put("net_out_mbps_starina", format!("{out_s:.2} MB/s"));
    put("net_out_mbps_direct", format!("{out_d:.2} MB/s"));
    put("net_out_ratio", format!("{:.3}", out_s / out_d));
    put(
        "net_in_connect_ms_starina",
        format!("{:.2} ms", percentile(&conn_s, 50.0)),
    );
    put(
        "net_in_connect_ms_direct",
        format!("{:.2} ms", percentile(&conn_d, 50.0)),
    );
    put("net_forward_delay_ms", format!("{fwd_s:.0} ms"));
    out
}

/// One boot of `side` and what the host measured in it.
fn one_boot(
    host: &Host,
    opts: &BenchOptions,
    server: &HostServer,
    side: Side,
    port: u16,
) -> Result<Sample, String> {
    server.reset();
    let mut guest = match side {
        Side::Starina => Guest::starina(host, opts, server.port, port)?,
        Side::Direct => Guest::direct(host, server.port, port)?,
    };
    match measure(server, &mut guest, port) {
        Ok(sample) => {
            server.release();
            guest.finish()?;
            Ok(sample)
        }
        Err(e) => {
            server.release();
            Err(format!("{e}\n{}", guest.abort()))
        }
    }
}

/// The host's side of one boot, in the guest's order.
fn measure(server: &HostServer, guest: &mut Guest, port: u16) -> Result<Sample, String> {
    let out = match server.next_event(BOOT_LIMIT, || guest.alive())? {
        Event::Out(result) => result?,
        Event::Starting(_) => return Err("the guest skipped its download of /big".into()),
    };
    let started = match server.next_event(BOOT_LIMIT, || guest.alive())? {
        Event::Starting(at) => at,
        Event::Out(_) => return Err("the guest downloaded /big twice".into()),
    };
    let forward = wait_for_httpd(port, started, || guest.alive())?;
    let in_mbps = download_big(port)?;
    let connect_ms = connect_samples(port)?;
    Ok(Sample {
        out_mbps: mbps(BIG, out),
        in_mbps,
        forward_ms: forward.as_secs_f64() * 1000.0,
        connect_ms,
    })
}

fn mbps(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64() / 1e6
}

/// From `since` to the first request to 127.0.0.1:`port` that httpd
/// answers with the small file (the time that request started).
fn wait_for_httpd(
    port: u16,
    since: Instant,
    mut alive: impl FnMut() -> bool,
) -> Result<Duration, String> {
    let mut next = since;
    loop {
        let attempt = Instant::now();
        let error = match get(port, "/small", Duration::from_secs(5)) {
            Ok(body) if body == SMALL_BODY.as_bytes() => return Ok(attempt - since),
            Ok(body) => format!("/small answered {} bytes", body.len()),
            Err(e) => e,
        };
        if since.elapsed() > FORWARD_LIMIT {
            return Err(format!(
                "127.0.0.1:{port} did not answer within {} s of /starting (last: {error})",
                FORWARD_LIMIT.as_secs()
            ));
        }
        if !alive() {
            return Err(format!(
                "the boot ended before 127.0.0.1:{port} answered (last: {error})"
            ));
        }
        next += POLL;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
}

/// The host downloads the guest's 64 MiB file: MB/s, connect to last byte.
fn download_big(port: u16) -> Result<f64, String> {
    let start = Instant::now();
    let body = get(port, "/big", Duration::from_secs(120)).map_err(|e| format!("GET /big: {e}"))?;
    let took = start.elapsed();
    if body.len() != BIG {
        return Err(format!(
            "GET /big from Linux: {} bytes, want {BIG}",
            body.len()
        ));
    }
    Ok(mbps(BIG, took))
}

/// [`CONNECTS`] requests for the small file, each on a new connection: ms.
fn connect_samples(port: u16) -> Result<Vec<f64>, String> {
    let mut samples = Vec::with_capacity(CONNECTS);
    for i in 1..=CONNECTS {
        let start = Instant::now();
        let body = get(port, "/small", Duration::from_secs(10))
            .map_err(|e| format!("small request {i} of {CONNECTS}: {e}"))?;
        if body != SMALL_BODY.as_bytes() {
            return Err(format!(
                "small request {i} of {CONNECTS}: {:?}",
                String::from_utf8_lossy(&body)
            ));
        }
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

/// `GET path` on a new connection to 127.0.0.1:`port` (a [`REQUEST_LEN`]
/// request): the body of a 200 answer.
fn get(port: u16, path: &str, timeout: Duration) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    s.write_all(request(path).as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read after {} bytes: {e}", answer.len()))?;
    body_of(&answer).map(<[u8]>::to_vec)
}

/// An HTTP/1.0 GET of `path`, padded with a header to [`REQUEST_LEN`] bytes.
fn request(path: &str) -> String {
    let head = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nX-Pad: ");
    let pad = REQUEST_LEN.saturating_sub(head.len() + "\r\n\r\n".len());
    format!("{head}{}\r\n\r\n", "x".repeat(pad))
}

/// The body of a `200` answer; else what the answer said.
fn body_of(answer: &[u8]) -> Result<&[u8], String> {
    let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Err(format!("no complete headers in {} bytes", answer.len()));
    };
    let status_line = answer[..end]
        .split(|&b| b == b'\r')
        .next()
        .unwrap_or_default();
    let status = status_line.split(|&b| b == b' ').nth(1);
    if status != Some(b"200".as_slice()) {
        return Err(format!(
            "answer: {:?}",
            String::from_utf8_lossy(status_line)
        ));
    }
    Ok(&answer[end + 4..])
}

/// The guest's first steps: the files, then the 64 MiB download.
fn prepare_and_download(server_port: u16) -> String {
    format!(
        "mkdir -p /tmp/www\n\
         head -c {BIG} /dev/zero > /tmp/www/big\n\
         echo \"{}\" > /tmp/www/small\n\
         wget -qO /dev/null http://10.0.2.2:{server_port}/big\n",
        SMALL_BODY.trim_end()
    )
}

/// Tells the host, then starts httpd in the background (its pid in `$!`).
fn start_httpd(server_port: u16, port: u16) -> String {
    format!(
        "wget -qO /dev/null http://10.0.2.2:{server_port}/starting\n\
         busybox httpd -f -p {port} -h /tmp/www </dev/null >/dev/null 2>&1 &\n"
    )
}

/// The whole script for `exec` (Starina): waits on its standard input.
fn starina_script(server_port: u16, port: u16) -> String {
    format!(
        "set -e\n{}{}pid=$!\nread line\nkill $pid\nwait $pid 2>/dev/null || true\n",
        prepare_and_download(server_port),
        start_httpd(server_port, port)
    )
}

/// The direct boot's `--run` commands (each must end within the agent's
/// 60 s): the same steps, then waits on `GET /stop`, then httpd's end.
fn direct_commands(server_port: u16, port: u16) -> Vec<String> {
    let sh = |script: String| format!("sh -c '{script}'");
    let mut commands = vec![
        sh(format!("set -e\n{}", prepare_and_download(server_port))),
        sh(format!(
            "set -e\n{}echo $! > /tmp/httpd.pid\n",
            start_httpd(server_port, port)
        )),
    ];
    let wait = sh(format!(
        "wget -qO- http://10.0.2.2:{server_port}/stop 2>/dev/null"
    ));
    commands.extend(std::iter::repeat_n(wait, DIRECT_WAITS));
    commands.push(sh("kill $(cat /tmp/httpd.pid)".into()));
    commands
}

/// A booted guest running the bench's steps.
enum Guest {
    /// `exec` in a thread: its exit code, stdout and messages.
    Starina {
        stdin: Option<std::io::PipeWriter>,
        stop: Arc<crate::host::Stop>,
        runner: thread::JoinHandle<(i32, String, String)>,
    },
    /// `linux-guest/run-direct.sh` (its own process group).
    Direct {
        child: Child,
        output: thread::JoinHandle<String>,
        _tmp: TempDir,
    },
}

impl Guest {
    fn starina(
        host: &Host,
        opts: &BenchOptions,
        server_port: u16,
        port: u16,
    ) -> Result<Guest, String> {
        let mut host = host.clone();
        host.stop = Arc::new(Default::default());
        let stop = host.stop.clone();
        let script = starina_script(server_port, port);
        let mut exec = crate::exec::ExecOptions::new(&["sh", "-c", &script]);
        exec.build = false;
        exec.cpus = opts.cpus;
        exec.kernel = opts.kernel.clone();
        exec.timeout = Some(crate::bench::TIMEOUT);
        exec.verbose = true;
        exec.disk = crate::bench::bench_disk();
        let (reader, writer) =
            std::io::pipe().map_err(|e| format!("a pipe for exec's stdin: {e}"))?;
        let runner = thread::spawn(move || {
            let (mut out, mut err) = (Vec::new(), Vec::new());
            let status = crate::exec::exec(
                &host,
                &exec,
                Box::new(reader),
                &mut Streams {
                    out: &mut out,
                    err: &mut err,
                },
            );
            (
                status.code(),
                String::from_utf8_lossy(&out).into_owned(),
                String::from_utf8_lossy(&err).into_owned(),
            )
        });
        Ok(Guest::Starina {
            stdin: Some(writer),
            stop,
            runner,
        })
    }

    fn direct(host: &Host, server_port: u16, port: u16) -> Result<Guest, String> {
        let tmp =
            TempDir::new("starina-bench-net").map_err(|e| format!("temporary directory: {e}"))?;
        let mut command = Command::new(host.root.join("linux-guest/run-direct.sh"));
        for run in direct_commands(server_port, port) {
            command.arg("--run").arg(run);
        }
        command
            .arg("--serial-log")
            .arg(tmp.0.join("serial.log"))
            .env(
                "QEMU_EXTRA",
                format!(
                    "-netdev user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:{port} \
                     -device virtio-net-device,netdev=n0"
                ),
            )
            .env("CMDLINE_EXTRA", "starina.net=10.0.2.15/24,10.0.2.2")
            .current_dir(&host.root)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("cannot run linux-guest/run-direct.sh: {e}"))?;
        let (mut stdout, mut stderr) = (child.stdout.take(), child.stderr.take());
        let output = thread::spawn(move || {
            let err = thread::spawn(move || {
                let mut text = String::new();
                if let Some(e) = stderr.as_mut() {
                    let _ = e.read_to_string(&mut text);
                }
                text
            });
            let mut text = String::new();
            if let Some(o) = stdout.as_mut() {
                let _ = o.read_to_string(&mut text);
            }
            text + &err.join().unwrap_or_default()
        });
        Ok(Guest::Direct {
            child,
            output,
            _tmp: tmp,
        })
    }

    fn alive(&mut self) -> bool {
        match self {
            Guest::Starina { runner, .. } => !runner.is_finished(),
            Guest::Direct { child, .. } => matches!(child.try_wait(), Ok(None)),
        }
    }

    /// Lets the guest's steps end; an error if the boot did not end well.
    fn finish(self) -> Result<(), String> {
        match self {
            Guest::Starina {
                stdin,
                stop,
                runner,
            } => {
                if let Some(mut w) = stdin {
                    let _ = writeln!(w, "stop");
                }
                let start = Instant::now();
                while !runner.is_finished() && start.elapsed() < END_LIMIT {
                    thread::sleep(Duration::from_millis(50));
                }
                if !runner.is_finished() {
                    stop.request(crate::status::SIGTERM);
                }
                match runner.join() {
                    Ok((0, _, _)) => Ok(()),
                    Ok((code, out, err)) => Err(format!(
                        "exec ended with {code}:\n{}{}",
                        tail(&out, 2000),
                        tail(&err, 3000)
                    )),
                    Err(_) => Err("the exec thread panicked".into()),
                }
            }
            Guest::Direct {
                mut child, output, ..
            } => {
                let start = Instant::now();
                while matches!(child.try_wait(), Ok(None)) && start.elapsed() < END_LIMIT {
                    thread::sleep(Duration::from_millis(50));
                }
                let status = child.try_wait();
                let ok = matches!(status, Ok(Some(s)) if s.success());
                if !ok {
                    stop_group(&mut child);
                }
                let text = output.join().unwrap_or_default();
                // Each command's outcome: `[exit status N, ...]`.
                let failed = text
                    .lines()
                    .filter(|l| l.starts_with('[') && l.ends_with(" round trip]"))
                    .any(|l| !l.starts_with("[exit status 0,"));
                if ok && !failed {
                    Ok(())
                } else {
                    Err(format!(
                        "the direct boot did not end well:\n{}",
                        tail(&text, 4000)
                    ))
                }
            }
        }
    }

    /// Stops the boot; what it printed.
    fn abort(self) -> String {
        match self {
            Guest::Starina {
                stdin,
                stop,
                runner,
            } => {
                drop(stdin);
                stop.request(crate::status::SIGTERM);
                match runner.join() {
                    Ok((code, out, err)) => format!(
                        "exec ended with {code}; its output:\n{}{}",
                        tail(&out, 2000),
                        tail(&err, 3000)
                    ),
                    Err(_) => "the exec thread panicked".into(),
                }
            }
            Guest::Direct {
                mut child, output, ..
            } => {
                stop_group(&mut child);
                let text = output.join().unwrap_or_default();
                format!("the direct boot's output:\n{}", tail(&text, 4000))
            }
        }
    }
}

/// SIGTERM to `child`'s process group (run-direct.sh, `starina direct`,
/// QEMU), SIGKILL after 5 s.
fn stop_group(child: &mut Child) {
    let group = format!("-{}", child.id());
    let signal = |name: &str| {
        let _ = Command::new("kill")
            .args(["-s", name, "--", &group])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    };
    signal("TERM");
    let start = Instant::now();
    while matches!(child.try_wait(), Ok(None)) && start.elapsed() < Duration::from_secs(5) {
        thread::sleep(Duration::from_millis(50));
    }
    if matches!(child.try_wait(), Ok(None)) {
        signal("KILL");
        let _ = child.wait();
    }
}

/// What the host server saw, in order.
enum Event {
    /// `GET /big` served: the time from the first byte to the client's
    /// close.
    Out(Result<Duration, String>),
    /// `GET /starting` arrived.
    Starting(Instant),
}

/// The server on the host that Linux reaches at 10.0.2.2:`port`.
struct HostServer {
    port: u16,
    events: mpsc::Receiver<Event>,
    /// Set when the host is done: `GET /stop` answers `stop`.
    released: Arc<(Mutex<bool>, Condvar)>,
}

impl HostServer {
    fn start(big: Arc<Vec<u8>>) -> Result<HostServer, String> {
        let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("host server: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("host server: {e}"))?
            .port();
        let (tx, events) = mpsc::channel();
        let released = Arc::new((Mutex::new(false), Condvar::new()));
        let gate = released.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (big, tx, gate) = (big.clone(), tx.clone(), gate.clone());
                thread::spawn(move || serve(stream, &big, &tx, &gate));
            }
        });
        Ok(HostServer {
            port,
            events,
            released,
        })
    }

    /// Before a boot: `/stop` waits again, old events go.
    fn reset(&self) {
        *self.released.0.lock().unwrap() = false;
        while self.events.try_recv().is_ok() {}
    }

    fn release(&self) {
        *self.released.0.lock().unwrap() = true;
        self.released.1.notify_all();
    }

    /// The next event, while `alive` and within `limit`.
    fn next_event(
        &self,
        limit: Duration,
        mut alive: impl FnMut() -> bool,
    ) -> Result<Event, String> {
        let start = Instant::now();
        loop {
            match self.events.recv_timeout(Duration::from_millis(200)) {
                Ok(event) => return Ok(event),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the host server stopped".into())
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if !alive() {
                return Err("the boot ended before the guest's next step".into());
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "no word from the guest within {} s",
                    limit.as_secs()
                ));
            }
        }
    }
}

/// One connection to the host server.
fn serve(
    stream: TcpStream,
    big: &[u8],
    events: &mpsc::Sender<Event>,
    released: &(Mutex<bool>, Condvar),
) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
            break;
        }
    }
    let mut out = stream;
    match request_path(&line) {
        Some("/big") => {
            let _ = events.send(Event::Out(send_big(&mut out, big)));
        }
        Some("/starting") => {
            let _ = events.send(Event::Starting(Instant::now()));
            let _ = reply(&mut out, "200 OK", "ok\n");
        }
        Some("/stop") => {
            let (lock, cv) = released;
            let guard = lock.lock().unwrap();
            let (guard, _) = cv
                .wait_timeout_while(guard, STOP_HOLD, |done| !*done)
                .unwrap();
            let answer = if *guard { "stop\n" } else { "wait\n" };
            drop(guard);
            let _ = reply(&mut out, "200 OK", answer);
        }
        _ => {
            let _ = reply(&mut out, "404 Not Found", "");
        }
    }
}

fn reply(out: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.0 {status}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Sends `big`, shuts the sending side, waits for the client's close: the
/// time from the first byte.
fn send_big(out: &mut TcpStream, big: &[u8]) -> Result<Duration, String> {
    let start = Instant::now();
    write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\n\r\n",
        big.len()
    )
    .and_then(|_| out.write_all(big))
    .and_then(|_| out.shutdown(Shutdown::Write))
    .map_err(|e| format!("sending /big to Linux: {e}"))?;
    out.set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| e.to_string())?;
    let mut rest = [0u8; 256];
    loop {
        match out.read(&mut rest) {
            Ok(0) => return Ok(start.elapsed()),
            Ok(_) => {}
            Err(e) => return Err(format!("/big: waiting for Linux's close: {e}")),
        }
    }
}

/// `GET /path HTTP/1.x` -> `/path`.
fn request_path(line: &str) -> Option<&str> {
    let mut words = line.split_whitespace();
    match (words.next(), words.next(), words.next()) {
        (Some("GET"), Some(path), Some(version)) if version.starts_with("HTTP/") => Some(path),
        _ => None,
    }
}

/// `len` bytes of xorshift (what the host serves; the end-to-end network
/// tests serve it too).
pub fn pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// "lo..hi" of `values`.
fn range(values: &[f64]) -> String {
    let (lo, hi) = spread(values);
    format!("{lo:.2}..{hi:.2}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_print_lowest_and_highest() {
        assert_eq!(range(&[2.5, 1.0, 3.25]), "1.00..3.25");
    }

    #[test]
    fn requests_are_100_bytes() {
        for path in ["/small", "/big"] {
            let r = request(path);
            assert_eq!(r.len(), REQUEST_LEN, "{r:?}");
            assert!(r.starts_with(&format!("GET {path} HTTP/1.0\r\n")));
            assert!(r.ends_with("x\r\n\r\n"));
            assert_eq!(request_path(r.lines().next().unwrap()), Some(path));
        }
    }

    #[test]
    fn request_lines() {
        assert_eq!(request_path("GET /big HTTP/1.1\r\n"), Some("/big"));
        assert_eq!(request_path("GET /stop HTTP/1.0"), Some("/stop"));
        assert_eq!(request_path("POST /big HTTP/1.1"), None);
        assert_eq!(request_path("GET /big"), None);
        assert_eq!(request_path(""), None);
    }

    #[test]
    fn answers() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        assert_eq!(body_of(ok), Ok(b"abc".as_slice()));
        let missing = b"HTTP/1.0 404 Not Found\r\n\r\nno";
        assert_eq!(
            body_of(missing),
            Err("answer: \"HTTP/1.0 404 Not Found\"".into())
        );
        assert!(body_of(b"HTTP/1.0 200 OK\r\nContent-Le").is_err());
        assert!(body_of(b"").is_err());
    }

    #[test]
    fn scripts_fit_their_quotes() {
        for command in direct_commands(40000, 18150) {
            let words = crate::agent::shell_words(&command).unwrap();
            assert_eq!(words.len(), 3, "{command}");
            assert_eq!((words[0].as_str(), words[1].as_str()), ("sh", "-c"));
        }
        let script = starina_script(40000, 18150);
        assert!(script.contains("wget -qO /dev/null http://10.0.2.2:40000/big\n"));
        assert!(script.contains("busybox httpd -f -p 18150 -h /tmp/www"));
        let small = script.find("/starting").unwrap();
        assert!(script.find("/big").unwrap() < small);
        assert!(small < script.find("busybox httpd").unwrap());
    }

    /// The host server: `/big` is timed and reported, `/starting` too,
    /// `/stop` waits for the release.
    #[test]
    fn host_server_events() {
        let server = HostServer::start(Arc::new(pattern(1 << 20))).unwrap();
        let raw_get = |path: &str| {
            let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.write_all(request(path).as_bytes()).unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).unwrap();
            body_of(&answer).unwrap().to_vec()
        };
        assert_eq!(raw_get("/big"), pattern(1 << 20));
        assert!(matches!(
            server.next_event(Duration::from_secs(5), || true),
            Ok(Event::Out(Ok(_)))
        ));
        assert_eq!(raw_get("/starting"), b"ok\n");
        assert!(matches!(
            server.next_event(Duration::from_secs(5), || true),
            Ok(Event::Starting(_))
        ));
        let port = server.port;
        let waiter = thread::spawn(move || {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(request("/stop").as_bytes()).unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).unwrap();
            answer
        });
        thread::sleep(Duration::from_millis(200));
        assert!(!waiter.is_finished(), "/stop answered before the release");
        server.release();
        let answer = waiter.join().unwrap();
        assert_eq!(body_of(&answer), Ok(b"stop\n".as_slice()));
        assert!(server
            .next_event(Duration::from_millis(300), || true)
            .is_err());
    }
}
