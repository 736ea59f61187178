//! A hostile guest does not freeze the native side: boot profile
//! `guest_flood` (network stack, httpd, Linux, host link), talk to the guest
//! agent over the host link directly, and run the agent's flood mode
//! (`linux-guest/agent/src/flood.rs`: CPUID exits, port I/O of random widths
//! and values over the whole port space, MMIO of random widths through
//! /dev/mem, garbage LDT entries, console output) while the test times HTTP
//! GETs from the host to the native httpd: every one must answer within
//! 1 s. The same GETs while the guest idles give the latency without the
//! flood.
//!
//! Two floods: the survivable one (which leaves out what wrecks any PC's
//! guest by itself: resets, its PIC, PIT and console UART, segment loads),
//! which the guest must live through; then the same ending in a guest reset
//! (`STARINA_FLOOD_END=reset`), after which the linux server restarts the VM
//! and Linux must come back while httpd keeps answering. The guest's boot id
//! tells a survivor from a restarted guest. Last, the guest hangs itself
//! (masks both PICs: no timer, no interrupts, no crash): the linux server
//! must notice that the agent no longer answers pings and restart it.
//!
//! Booting needs QEMU: `cargo test -p starina-tests -- --ignored`.

use std::io::Read;
use std::io::Write;
use std::net::SocketAddr;
use std::net::TcpStream;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_host::agent::Agent;
use starina_host::agent::Outcome;
use starina_tests::LinkedGuest;

/// Every GET answers within this, flood or not.
const DEADLINE: Duration = Duration::from_secs(1);
/// How long one GET may take before it counts as lost (so that a frozen
/// system still gives latencies to report, and the test stays bounded).
const GIVE_UP: Duration = Duration::from_secs(5);
/// GETs (one every `INTERVAL`) per phase.
const REQUESTS: usize = 20;
const INTERVAL: Duration = Duration::from_millis(500);
/// Each flood runs this long by the guest's clock: long enough to cover the
/// GETs.
const FLOOD_SECONDS: u32 = 25;
const SEED: u64 = 0x5eed_f100d;
/// Boot, Linux included, until the first command answers; also how long a
/// restarted guest may take to come back.
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

/// The guest's boot id, retried until `timeout`: a guest that is
/// restarting refuses or drops commands for a while.
fn boot_id(m: &mut LinkedGuest, timeout: Duration) -> Result<String, String> {
    let start = Instant::now();
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        let result = m
            .spawn(&["cat", "/proc/sys/kernel/random/boot_id"])
            .and_then(|id| m.wait_done(id, left.min(Duration::from_secs(60))));
        match result {
            Ok(o) if o.exited == Some(0) => {
                return Ok(String::from_utf8_lossy(&o.stdout).trim().to_string())
            }
            Ok(_) if start.elapsed() < timeout => thread::sleep(Duration::from_secs(2)),
            Ok(o) => return Err(format!("cat boot_id: {}", o.status())),
            // A hung guest answers nothing until it is restarted.
            Err(e) if e.starts_with("timed out") && start.elapsed() < timeout => {}
            Err(e) => return Err(e),
        }
    }
}

/// What one flood did.
struct Flood {
    gets: Vec<Result<Duration, String>>,
    /// The flood's own report, or why it has none.
    outcome: Result<Outcome, String>,
    /// The GETs ended while the flood was still running.
    covered: bool,
    /// The guest's boot id afterwards (Linux came back, or never left).
    boot_id: Result<String, String>,
}

/// Runs the flood (ending in a guest reset, or not) in the guest and times
/// GETs meanwhile.
fn flood(m: &mut LinkedGuest, port: u16, reset: bool) -> Flood {
    let end = if reset { "reset" } else { "" };
    let script = format!("STARINA_FLOOD_END={end} exec /init --flood {FLOOD_SECONDS} {SEED}");
    let id = m
        .spawn(&["/bin/sh", "-c", &script])
        .expect("send the flood");
    // The flood says when its first batch is done. If it freezes the
    // native side, that line may never arrive: time the GETs anyway.
    let _ = m.agent.wait(
        |a| {
            let o = &a.outcomes[&id];
            o.done() || String::from_utf8_lossy(&o.stdout).contains("guest-flood: started")
        },
        Duration::from_secs(60),
        "the flood to start",
    );
    let getter = thread::spawn(move || phase(port));
    // Meanwhile, keep reading the link, to see whether the flood ends
    // before the GETs do.
    let mut covered = true;
    while !getter.is_finished() {
        let done = |a: &Agent| a.outcomes[&id].done();
        match m.agent.wait(done, Duration::from_millis(200), "") {
            Ok(()) => {
                covered = false;
                break;
            }
            Err(e) if e.starts_with("timed out") => {}
            Err(_) => break,
        }
    }
    let gets = getter.join().expect("the GET thread panicked");
    let outcome = m.wait_done(id, Duration::from_secs(FLOOD_SECONDS as u64 + 120));
    let boot_id = boot_id(m, BOOT_TIMEOUT);
    Flood {
        gets,
        outcome,
        covered,
        boot_id,
    }
}

/// Hangs the guest (a short flood that ends by masking both PICs: no
/// timer, no virtio interrupts, no crash), times GETs while it hangs, and
/// waits for Linux to come back: the linux server must notice the silence
/// and restart the VM. Returns the GETs, the new boot id and how long
/// Linux took to come back.
fn hang(
    m: &mut LinkedGuest,
    port: u16,
) -> (
    Vec<Result<Duration, String>>,
    Result<String, String>,
    Duration,
) {
    let start = Instant::now();
    let script = format!("STARINA_FLOOD_END=wedge exec /init --flood 2 {SEED}");
    let id = m
        .spawn(&["/bin/sh", "-c", &script])
        .expect("send the flood");
    let said = m.agent.wait(
        |a| String::from_utf8_lossy(&a.outcomes[&id].stdout).contains("masking every PIC line"),
        Duration::from_secs(120),
        "the guest to hang",
    );
    if let Err(e) = said {
        println!("hung guest: no word from the flood ({e})");
    }
    let gets = phase(port);
    let boot_id = boot_id(m, BOOT_TIMEOUT);
    (gets, boot_id, start.elapsed())
}

/// Prints the flood's report and whether the guest survived; returns the
/// failures. The guest must survive the flood, and come back after its
/// reset if the flood ends in one.
fn judge(name: &str, f: &Flood, boot_before: &str, reset: bool) -> Vec<String> {
    let mut failures = report(name, &f.gets);
    match &f.outcome {
        Ok(o) => println!(
            "{name}: the flood ended with {}; it wrote:\n{}{}",
            o.status(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => println!("{name}: no end of the flood: {e}"),
    }
    // The flood ran its course (and printed its counts); with `reset`, the
    // guest then went down under it.
    let reported = f
        .outcome
        .as_ref()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("guest-flood: exits="));
    let exited = f.outcome.as_ref().is_ok_and(|o| o.exited == Some(0));
    match &f.boot_id {
        Ok(id) if id == boot_before => {
            println!("{name}: the guest survived (same boot id)");
            if !exited {
                failures.push(format!("{name}: the guest lived but the flood failed"));
            }
            if reset {
                failures.push(format!("{name}: the guest lived through its own reset"));
            }
        }
        Ok(_) if reset && reported => println!("{name}: the guest was reset and came back"),
        // Fine too: the native side kept answering and Linux is back.
        Ok(_) => println!("{name}: the guest died during the flood and came back (new boot id)"),
        Err(e) => failures.push(format!("{name}: Linux did not come back: {e}")),
    }
    if reported && !f.covered {
        failures.push(format!(
            "{name}: the flood ended before the GETs did: make it longer"
        ));
    }
    failures
}

#[test]
#[ignore = "boots Starina and Linux under QEMU; run by make test"]
fn httpd_answers_within_a_second_while_the_guest_floods_vm_exits() {
    let mut m = LinkedGuest::boot("guest_flood", true, BOOT_TIMEOUT);
    let port = m.http_port.expect("guest_flood has a NIC");
    let boot_before = boot_id(&mut m, BOOT_TIMEOUT)
        .unwrap_or_else(|e| panic!("Linux never answered: {e}\n{}", m.console()));
    let idle = phase(port);
    let survivable = flood(&mut m, port, false);
    let boot_after = survivable.boot_id.clone().unwrap_or_default();
    let reset = flood(&mut m, port, true);
    let boot_after_reset = reset.boot_id.clone().unwrap_or_default();
    let (hung_gets, hung_boot_id, back_after) = hang(&mut m, port);
    let console = m.console();
    drop(m);

    let mut failures = report("without flood", &idle);
    failures.extend(judge("survivable flood", &survivable, &boot_before, false));
    failures.extend(judge("flood and reset", &reset, &boot_after, true));
    failures.extend(report("hung guest", &hung_gets));
    match hung_boot_id {
        Ok(id) if id != boot_after_reset => {
            println!("hung guest: restarted by the linux server, Linux back after {back_after:?}")
        }
        Ok(_) => failures.push("hung guest: still the same boot, never restarted".into()),
        Err(e) => failures.push(format!("hung guest: Linux did not come back: {e}")),
    }
    let vmm_lines = console
        .lines()
        .filter(|l| l.contains(" linux: vmm"))
        .count();
    let suppressed = console
        .lines()
        .filter(|l| l.contains("lines suppressed"))
        .count();
    println!("console: {vmm_lines} VMM lines, {suppressed} notes of suppressed lines");
    for line in console
        .lines()
        .filter(|l| l.contains("ERROR linux: the Linux guest stopped"))
    {
        println!("console: {line}");
    }
    for pattern in ["panicked", "PANIC"] {
        if console.contains(pattern) {
            failures.push(format!("the console shows '{pattern}'"));
        }
    }
    if !failures.is_empty() {
        println!("--- serial console:\n{console}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
