//! A hostile guest does not freeze the native side: boot profile
//! `guest_flood` (network stack, httpd, Linux, host link), run
//! `/init --flood` in the guest through `starina exec` (the guest agent's
//! mode that makes VM exits as fast as it can: CPUID, console output through
//! the guest's serial driver, and port I/O of random widths and values where
//! the guest kernel lets user space do it), and meanwhile time HTTP GETs
//! from the host to the native httpd: every one must answer within 1 s. The
//! same GETs while the guest sleeps give the latency without the flood.
//!
//! Booting needs QEMU: `cargo test -p starina-tests -- --ignored`.

use std::io::Read;
use std::io::Write;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_host::exec::ExecOptions;
use starina_host::Streams;
use starina_tests::host_with_env;
use starina_tests::kernel;
use starina_tests::SharedText;

/// Every GET answers within this, flood or not.
const DEADLINE: Duration = Duration::from_secs(1);
/// How long one GET may take before it counts as lost (so that a frozen
/// system still gives latencies to report, and the test stays bounded).
const GIVE_UP: Duration = Duration::from_secs(5);
/// GETs (one every `INTERVAL`) per phase.
const REQUESTS: usize = 20;
const INTERVAL: Duration = Duration::from_millis(500);
/// The guest sleeps this long (the phase without flood), then floods for
/// `FLOOD_SECONDS` by its own clock: long enough to cover the GETs.
const IDLE_SECONDS: u32 = 15;
const FLOOD_SECONDS: u32 = 25;
/// Boot, Linux included, until the command's first line; then the rest.
const BOOT_TIMEOUT: Duration = Duration::from_secs(400);

/// One `GET /api/stats` to httpd: how long until the whole response (or
/// `GIVE_UP`, or the error).
fn timed_get(port: u16) -> Result<Duration, String> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, GIVE_UP).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(GIVE_UP)).unwrap();
    stream
        .write_all(b"GET /api/stats HTTP/1.1\r\nHost: starina\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| format!("{e} after {:?}", start.elapsed()))?;
    let elapsed = start.elapsed();
    if !response.starts_with(b"HTTP/1.1 200") {
        return Err(format!(
            "not a 200: {:?}",
            String::from_utf8_lossy(&response[..response.len().min(80)])
        ));
    }
    Ok(elapsed)
}

/// `REQUESTS` GETs, one every `INTERVAL`: each latency, or why it failed.
fn phase(port: u16) -> Vec<Result<Duration, String>> {
    let mut results = Vec::new();
    for _ in 0..REQUESTS {
        let start = Instant::now();
        results.push(timed_get(port));
        if let Some(rest) = INTERVAL.checked_sub(start.elapsed()) {
            thread::sleep(rest);
        }
    }
    results
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[((sorted.len() * p).div_ceil(100)).clamp(1, sorted.len()) - 1]
}

/// Prints the phase's latencies (p50, p99, max) and returns the failures.
fn report(name: &str, results: &[Result<Duration, String>]) -> Vec<String> {
    let mut ok: Vec<Duration> = results.iter().filter_map(|r| r.clone().ok()).collect();
    ok.sort();
    let failures: Vec<String> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match r {
            Ok(d) if *d <= DEADLINE => None,
            Ok(d) => Some(format!("{name} GET {i}: {d:?}")),
            Err(e) => Some(format!("{name} GET {i}: {e}")),
        })
        .collect();
    if ok.is_empty() {
        println!("{name}: no GET answered");
    } else {
        println!(
            "{name}: {} of {} answered; p50 {:?}, p99 {:?}, max {:?}",
            ok.len(),
            results.len(),
            percentile(&ok, 50),
            percentile(&ok, 99),
            ok[ok.len() - 1]
        );
    }
    failures
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn httpd_answers_within_a_second_while_the_guest_floods_vm_exits() {
    let host = host_with_env(&[]);
    let port = host.http_port;
    let script =
        format!("echo guest-idle; sleep {IDLE_SECONDS}; exec /init --flood {FLOOD_SECONDS}");
    let mut opts = ExecOptions::new(&["/bin/sh", "-c", &script]);
    opts.profile = "guest_flood".into();
    opts.build = false;
    opts.kernel = Some(kernel());
    opts.timeout = Some((BOOT_TIMEOUT.as_secs() + 120) as f64);
    let stdout = SharedText::new();
    let stderr = SharedText::new();
    let (mut out, mut err) = (stdout.clone(), stderr.clone());
    let session = thread::spawn(move || {
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        let input = Box::new(std::io::Cursor::new(Vec::new()));
        starina_host::exec::exec(&host, &opts, input, &mut io).code()
    });

    let booted = stdout.wait_for("guest-idle", BOOT_TIMEOUT);
    assert!(
        booted,
        "the guest command never started; stderr:\n{}",
        stderr.text()
    );
    let idle = phase(port);
    // If the flood freezes the native side, its first line may never reach
    // the host: time the GETs anyway once it must have begun.
    let started = stdout.wait_for(
        "guest-flood: started",
        Duration::from_secs(IDLE_SECONDS as u64 + 30),
    );
    let flood = phase(port);
    let still_flooding = !stdout.text().contains("guest-flood: exits=");
    let code = session.join().expect("the exec session panicked");
    println!("guest wrote:\n{}", stdout.text());

    let mut failures = report("without flood", &idle);
    failures.extend(report("during flood", &flood));
    assert!(
        failures.is_empty(),
        "GETs over {DEADLINE:?} or lost:\n{}",
        failures.join("\n")
    );
    assert!(started, "the flood never reported its start");
    assert!(
        still_flooding,
        "the flood ended before the GETs did: make it longer"
    );
    assert_eq!(
        code,
        0,
        "the flood did not end normally; stderr:\n{}",
        stderr.text()
    );
}
