//! User-mode isolation: the echo pair in ring 3 (echo also answers this
//! runner's echo tests, kernel to user), faults in a user-mode component
//! that end it alone with the address and RIP in the log, and bad system
//! call arguments answered with errors.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;

use super::expect_peer_closed;
use super::request;
use super::wait_reconnect;
use super::Ctx;
use super::TestResult;

/// The kernel log as kept now (whole lines).
fn log_text(cx: &Ctx) -> Result<String, String> {
    let mut text = String::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut from = 0;
    loop {
        let (at, n) = cx
            .monitor
            .read_log(from, &mut buf)
            .map_err(|e| format!("read_log: {e}"))?;
        if n == 0 {
            return Ok(text);
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        from = at + n as u64;
    }
}

/// Waits up to 30 s for a log line containing `pattern`; the line.
fn wait_log(cx: &Ctx, pattern: &str) -> Result<String, String> {
    let start = starina::timer::now_ns();
    loop {
        if let Some(line) = log_text(cx)?.lines().rev().find(|l| l.contains(pattern)) {
            return Ok(line.into());
        }
        if starina::timer::now_ns() - start > 30_000_000_000 {
            return Err(format!("no log line with {pattern:?} within 30 s"));
        }
        starina::timer::sleep_ms(20).map_err(|e| format!("sleep: {e}"))?;
    }
}

pub fn user_mode_echo_pair(cx: &mut Ctx) -> TestResult {
    wait_log(cx, "user: echo runs in ring 3")?;
    wait_log(cx, "user: echo_client runs in ring 3")?;
    wait_log(cx, "echo_client: 1000 round trips, all replies correct")?;
    let reply = request(&cx.echo, &mut cx.buf, b"kernel to user")?;
    check!(
        reply == b"kernel to user",
        "echo in user mode answered {reply:?}"
    );
    Ok(())
}

/// Asks usercrash to fault with `cmd`; checks it ended alone, logged
/// `want` (the fault's kind, RIP and address), and came back as instance
/// `next`.
fn fault(
    cx: &mut Ctx,
    cmd: &[u8],
    next: u32,
    want: impl Fn(&Ctx) -> Result<String, String>,
) -> TestResult {
    cx.usercrash.send_data(cmd).map_err(|e| e.to_string())?;
    expect_peer_closed(&cx.usercrash, &mut cx.buf)?;
    let pattern = want(cx)?;
    wait_log(cx, &pattern)?;
    cx.usercrash = wait_reconnect(cx, "usercrash")?;
    let pong = request(&cx.usercrash, &mut cx.buf, b"ping")?;
    let expected = format!("pong {next}");
    check!(
        pong == expected.as_bytes(),
        "restarted usercrash answered {:?}",
        String::from_utf8_lossy(&pong)
    );
    Ok(())
}

pub fn user_mode_faults_end_the_component_alone(cx: &mut Ctx) -> TestResult {
    let pong = request(&cx.usercrash, &mut cx.buf, b"ping")?;
    check!(
        pong == b"pong 1",
        "usercrash answered {:?}",
        String::from_utf8_lossy(&pong)
    );
    fault(cx, b"write-null-page", 2, |_| {
        Ok("usercrash: user-mode fault: page fault (vector 14, error 0x7) at rip 0x".into())
    })?;
    check!(
        wait_log(cx, "usercrash: user-mode fault: page fault")?.ends_with(", address 0x1000"),
        "the fault at 0x1000 is not logged with its address"
    );
    fault(cx, b"write-kernel", 3, |_| {
        Ok(", address 0xffff800000100000".into())
    })?;
    fault(cx, b"exec-data", 4, |cx| {
        // The address it jumped to: RIP and the faulting address both.
        let line = wait_log(cx, "usercrash: jumping to data at ")?;
        let at = line.rsplit(' ').next().unwrap_or_default().to_string();
        Ok(format!("(vector 14, error 0x15) at rip {at}, address {at}"))
    })?;
    // Everyone else is unaffected.
    let reply = request(&cx.echo, &mut cx.buf, b"after the user faults")?;
    check!(
        reply == b"after the user faults",
        "echo broken after the user faults"
    );
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(
        pong.starts_with(b"pong "),
        "crasher broken after the user faults"
    );
    Ok(())
}

pub fn user_mode_bad_syscall_arguments(cx: &mut Ctx) -> TestResult {
    let answer = request(&cx.usercrash, &mut cx.buf, b"bad-arguments")?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    check!(answer.starts_with("ok: "), "usercrash: {answer}");
    Ok(())
}

/// Threads that start and end all the time reuse their stacks: usercrash
/// runs more threads one after another than its budget could hold stacks
/// for.
pub fn user_mode_thread_stacks_are_reused(cx: &mut Ctx) -> TestResult {
    let answer = request(&cx.usercrash, &mut cx.buf, b"threads")?;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    check!(answer.starts_with("ok: "), "usercrash: {answer}");
    Ok(())
}
