//! The system commands (commands/sysutils: ps, log, restart, stop,
//! uptime, free) and http-get's failures in a profile without a network,
//! run as a shell would run them, checked by what they print and their
//! status.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::command::Input;
use starina::command::Job;
use starina::command::STATUS_BROKEN_PIPE;
use starina::command::STATUS_KILLED;
use starina::poll::Poll;
use starina::timer::Timer;

use crate::commands::run;
use crate::commands::spawn;
use crate::expect_peer_closed;
use crate::request;
use crate::wait_reconnect;
use crate::Ctx;
use crate::TestResult;

/// `ps`'s row for `name`, split into its cells.
fn ps_row(cx: &Ctx, name: &str) -> Result<Vec<String>, String> {
    let (status, out, err) = run(cx, "ps", &[])?;
    check!(status == 0, "ps: status {status}, stderr {err:?}");
    check!(out.starts_with("NAME"), "ps has no header: {out:?}");
    out.lines()
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|cells| cells.first().map(String::as_str) == Some(name))
        .ok_or_else(|| format!("ps has no row for {name}: {out:?}"))
}

/// A job's status, waiting at most `ms`.
fn wait_within(job: &Job, ms: u64) -> Result<i32, String> {
    let poll = Poll::create().map_err(|e| e.to_string())?;
    let timer = Timer::create().map_err(|e| e.to_string())?;
    poll.add(job.id(), Readiness::READABLE)
        .map_err(|e| e.to_string())?;
    poll.add(timer.id(), Readiness::READABLE)
        .map_err(|e| e.to_string())?;
    timer.set_ms(ms).map_err(|e| e.to_string())?;
    loop {
        if let Some(status) = job.status().map_err(|e| e.to_string())? {
            return Ok(status);
        }
        let (id, _) = poll.wait().map_err(|e| e.to_string())?;
        if id == timer.id() {
            return Err(format!("the command still runs {ms} ms later"));
        }
    }
}

pub fn sysutils_ps_lists_components(cx: &mut Ctx) -> TestResult {
    for name in ["echo", "testrunner"] {
        let row = ps_row(cx, name)?;
        check!(
            row.get(2).map(String::as_str) == Some("running"),
            "{name}: {row:?}"
        );
        check!(
            row.get(3).map(String::as_str) == Some("1"),
            "{name}'s instance: {row:?}"
        );
        check!(row.len() >= 6 && row[5] != "0", "{name}'s memory: {row:?}");
    }
    let (status, _, err) = run(cx, "ps", &["extra"])?;
    check!(
        status == 2 && err.starts_with("ps: "),
        "ps extra: {status} {err:?}"
    );
    let (status, out, _) = run(cx, "ps", &["--help"])?;
    check!(
        status == 0 && out.starts_with("usage: ps"),
        "ps --help: {status} {out:?}"
    );
    Ok(())
}

pub fn sysutils_log_prints_the_last_lines(cx: &mut Ctx) -> TestResult {
    let (status, out, err) = run(cx, "log", &["-n", "5"])?;
    check!(status == 0, "log -n 5: status {status}, stderr {err:?}");
    check!(
        out.lines().count() == 5 && out.ends_with('\n'),
        "log -n 5 gave {out:?}"
    );
    // The whole log has the earlier tests' results in it.
    let (status, out, _) = run(cx, "log", &[])?;
    check!(
        status == 0 && out.contains("test echo_round_trips ... ok"),
        "log: {status}"
    );
    let (status, _, err) = run(cx, "log", &["-n", "x"])?;
    check!(
        status == 2 && err.contains("not a number"),
        "log -n x: {status} {err:?}"
    );
    Ok(())
}

pub fn sysutils_log_follow_ends_when_killed(cx: &mut Ctx) -> TestResult {
    let (job, peer) = spawn(cx, "log", &["-n", "1", "-f"])?;
    let mut stdout = Input::new(peer.stdout);
    let line = stdout.read_line().map_err(|e| e.to_string())?;
    check!(
        line.is_some_and(|l| l.ends_with(b"\n")),
        "log -n 1 -f printed no line"
    );
    // It keeps following: a line logged now reaches it.
    log::info!("commands_system: a line for log -f");
    let mut seen = false;
    while let Some(line) = stdout.read_line().map_err(|e| e.to_string())? {
        if line.ends_with(b"a line for log -f\n") {
            seen = true;
            break;
        }
    }
    check!(seen, "log -f did not print the new line");
    check!(
        job.status() == Ok(None),
        "log -f ended by itself: {:?}",
        job.status()
    );
    job.kill().map_err(|e| e.to_string())?;
    let status = wait_within(&job, 5_000)?;
    check!(status == STATUS_KILLED, "killed log -f: {status}");
    Ok(())
}

pub fn sysutils_log_follow_ends_without_a_reader(cx: &mut Ctx) -> TestResult {
    // Nothing to print at first: it notices the reader is gone while idle.
    let (job, peer) = spawn(cx, "log", &["-n", "0", "-f"])?;
    starina::timer::sleep_ms(300).map_err(|e| e.to_string())?;
    check!(
        job.status() == Ok(None),
        "log -f ended early: {:?}",
        job.status()
    );
    drop(peer.stdout);
    let status = wait_within(&job, 5_000)?;
    check!(
        status == STATUS_BROKEN_PIPE,
        "log -f without a reader: {status}"
    );
    Ok(())
}

pub fn sysutils_restart_and_stop(cx: &mut Ctx) -> TestResult {
    let (status, _, err) = run(cx, "restart", &["nosuch"])?;
    check!(
        status == 1 && err == "restart: no component 'nosuch'\n",
        "restart nosuch: {status} {err:?}"
    );
    let (status, _, err) = run(cx, "stop", &[])?;
    check!(
        status == 2 && err.starts_with("stop: "),
        "stop without a name: {status} {err:?}"
    );
    let before = ps_row(cx, "greeter")?;
    let first: u32 = before
        .get(3)
        .and_then(|i| i.parse().ok())
        .ok_or("greeter's instance")?;

    let (status, _, err) = run(cx, "restart", &["greeter"])?;
    check!(status == 0, "restart greeter: {status} {err:?}");
    expect_peer_closed(&cx.greeter, &mut cx.buf)?;
    cx.greeter = wait_reconnect(cx, "greeter")?;
    let row = ps_row(cx, "greeter")?;
    check!(
        row[2] == "running" && row[3] == (first + 1).to_string(),
        "after restart: {row:?}"
    );
    greeter_answers(cx)?;

    let (status, _, err) = run(cx, "stop", &["greeter"])?;
    check!(status == 0, "stop greeter: {status} {err:?}");
    expect_peer_closed(&cx.greeter, &mut cx.buf)?;
    let row = ps_row(cx, "greeter")?;
    check!(row[2] == "stopped", "after stop: {row:?}");

    let (status, _, err) = run(cx, "restart", &["greeter"])?;
    check!(status == 0, "restart a stopped greeter: {status} {err:?}");
    cx.greeter = wait_reconnect(cx, "greeter")?;
    let row = ps_row(cx, "greeter")?;
    check!(
        row[2] == "running" && row[3] == (first + 2).to_string(),
        "after a second restart: {row:?}"
    );
    greeter_answers(cx)
}

fn greeter_answers(cx: &mut Ctx) -> TestResult {
    let reply = request(&cx.greeter, &mut cx.buf, b"again")?;
    check!(
        reply == b"Hello, again!",
        "greeter said {:?}",
        String::from_utf8_lossy(&reply)
    );
    Ok(())
}

pub fn sysutils_uptime_and_free(cx: &mut Ctx) -> TestResult {
    let (status, out, err) = run(cx, "uptime", &[])?;
    check!(
        status == 0 && out.starts_with("up ") && out.contains(" s"),
        "uptime: {status} {out:?} {err:?}"
    );
    check!(
        out.contains("\nclock "),
        "uptime has no clock line: {out:?}"
    );
    let (status, out, err) = run(cx, "free", &[])?;
    check!(status == 0, "free: {status} {err:?}");
    let pages: Vec<u64> = out
        .lines()
        .find(|l| l.starts_with("pages"))
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .filter_map(|n| n.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    check!(pages.len() == 3, "free has no page figures: {out:?}");
    let (total, used, free) = (pages[0], pages[1], pages[2]);
    check!(
        total > 0 && free > 0 && used + free == total,
        "free's pages: {out:?}"
    );
    check!(out.contains("kernel heap in use: "), "free: {out:?}");
    Ok(())
}

pub fn http_get_needs_a_network_and_a_url(cx: &mut Ctx) -> TestResult {
    let (status, out, err) = run(cx, "http-get", &["http://10.0.2.2/"])?;
    check!(
        status == 1
            && out.is_empty()
            && err == "http-get: no network (the profile runs no tcpip)\n",
        "http-get without tcpip: {status} {err:?}"
    );
    let (status, _, err) = run(cx, "http-get", &["ftp://10.0.2.2/"])?;
    check!(
        status == 2 && err.contains("only http://"),
        "http-get ftp: {status} {err:?}"
    );
    let (status, _, err) = run(cx, "http-get", &[])?;
    check!(
        status == 2 && err.starts_with("http-get: "),
        "http-get alone: {status} {err:?}"
    );
    let (status, out, _) = run(cx, "http-get", &["--help"])?;
    check!(
        status == 0 && out.starts_with("usage: http-get"),
        "--help: {status} {out:?}"
    );
    Ok(())
}
