//! Commands (spec `kind = "command"`): started on demand with arguments
//! and streams, ending with a status the starter's job receives.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::command::Input;
use starina::command::Job;
use starina::command::Request;
use starina::command::Stdio;
use starina::command::StdioPeer;
use starina::command::STATUS_BROKEN_PIPE;
use starina::command::STATUS_KILLED;
use starina::command::STATUS_PANICKED;
use starina::poll::Poll;
use starina::Error;
use starina::Message;

use crate::Ctx;
use crate::TestResult;

pub(crate) fn spawn(cx: &Ctx, name: &str, args: &[&str]) -> Result<(Job, StdioPeer), String> {
    let (stdio, peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let job = cx
        .spawn
        .spawn(name, &args, &[], stdio)
        .map_err(|e| format!("spawn {name}: {e}"))?;
    Ok((job, peer))
}

/// Everything until the end of the stream.
fn read_all(channel: Channel) -> Result<String, String> {
    let bytes = Input::new(channel)
        .read_to_end(1 << 20)
        .map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|_| "output is not UTF-8".to_string())
}

/// Runs a command with empty stdin: (status, stdout, stderr).
pub(crate) fn run(cx: &Ctx, name: &str, args: &[&str]) -> Result<(i32, String, String), String> {
    let (job, peer) = spawn(cx, name, args)?;
    drop(peer.stdin);
    let out = read_all(peer.stdout)?;
    let err = read_all(peer.stderr)?;
    let status = job.wait().map_err(|e| e.to_string())?;
    Ok((status, out, err))
}

pub fn commands_run_with_args_and_status(cx: &mut Ctx) -> TestResult {
    let (status, out, _) = run(cx, "echo", &["hello", "commands"])?;
    check!(status == 0 && out == "hello commands\n", "echo: {status} {out:?}");
    let (status, out, _) = run(cx, "false", &[])?;
    check!(status == 1 && out.is_empty(), "false: {status} {out:?}");
    let (status, _, _) = run(cx, "crash", &["status", "42"])?;
    check!(status == 42, "crash status 42 gave {status}");
    let (status, _, err) = run(cx, "crash", &["status", "x"])?;
    check!(status == 2 && err.contains("needs a number"), "usage error: {status} {err:?}");
    Ok(())
}

pub fn commands_read_stdin(cx: &mut Ctx) -> TestResult {
    let (job, peer) = spawn(cx, "cat", &[])?;
    peer.stdin.send_data(b"line one\n").map_err(|e| e.to_string())?;
    peer.stdin.send_data(b"line two\n").map_err(|e| e.to_string())?;
    peer.stdin.send(Message::Close).map_err(|e| e.error.to_string())?;
    let out = read_all(peer.stdout)?;
    check!(out == "line one\nline two\n", "cat gave {out:?}");
    check!(job.wait() == Ok(0), "cat's status");
    Ok(())
}

pub fn commands_pipe_into_each_other(cx: &mut Ctx) -> TestResult {
    // echo's stdout is cat's stdin: no one in between.
    let (pipe_w, pipe_r) = Channel::create().map_err(|e| e.to_string())?;
    let (echo_stdio, echo_peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let echo_stdio = Stdio {
        stdout: pipe_w,
        ..echo_stdio
    };
    let (cat_stdio, cat_peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let cat_stdio = Stdio {
        stdin: pipe_r,
        ..cat_stdio
    };
    let echo = cx
        .spawn
        .spawn_request(&Request::new("echo", &["through", "a", "pipe"]), echo_stdio)
        .map_err(|e| e.to_string())?;
    let cat = cx
        .spawn
        .spawn_request(&Request::new("cat", &[]), cat_stdio)
        .map_err(|e| e.to_string())?;
    drop((echo_peer, cat_peer.stdin));
    let out = read_all(cat_peer.stdout)?;
    check!(out == "through a pipe\n", "the pipe gave {out:?}");
    check!(echo.wait() == Ok(0) && cat.wait() == Ok(0), "statuses");
    Ok(())
}

pub fn commands_crash_is_a_status(cx: &mut Ctx) -> TestResult {
    let (status, _, err) = run(cx, "crash", &["panic"])?;
    check!(status == STATUS_PANICKED, "a panic gave status {status}");
    check!(err.contains("panicked") && err.contains("asked to panic"), "stderr: {err:?}");
    // And the system goes on: the next command runs.
    let (status, _, _) = run(cx, "true", &[])?;
    check!(status == 0, "true after a crash: {status}");
    Ok(())
}

pub fn commands_are_killed_and_closed(cx: &mut Ctx) -> TestResult {
    let (job, peer) = spawn(cx, "crash", &["spin"])?;
    check!(job.status() == Ok(None), "a spinning command has no status yet");
    job.kill().map_err(|e| e.to_string())?;
    check!(job.wait() == Ok(STATUS_KILLED), "killed: {:?}", job.status());
    // Closing the job ends the command too: its streams close.
    let (job, peer2) = spawn(cx, "crash", &["spin"])?;
    drop(job);
    let poll = Poll::create().map_err(|e| e.to_string())?;
    poll.add(peer2.stdout.id(), Readiness::PEER_CLOSED)
        .map_err(|e| e.to_string())?;
    poll.wait().map_err(|e| e.to_string())?;
    drop(peer);
    Ok(())
}

pub fn commands_broken_pipe_stops_the_writer(cx: &mut Ctx) -> TestResult {
    let (job, peer) = spawn(cx, "cat", &[])?;
    drop(peer.stdout);
    peer.stdin.send_data(b"nobody reads this\n").map_err(|e| e.to_string())?;
    let status = job.wait().map_err(|e| e.to_string())?;
    check!(status == STATUS_BROKEN_PIPE, "cat into a closed pipe: {status}");
    Ok(())
}

pub fn commands_bad_requests_are_refused(cx: &mut Ctx) -> TestResult {
    let (stdio, _peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let r = cx.spawn.spawn("no-such-command", &[], &[], stdio);
    check!(matches!(r, Err(Error::NotFound)), "unknown command: {r:?}");
    let mut bad = Request::new("echo", &[]);
    bad.vars.push(("A=B".to_string(), "c".to_string()));
    let (stdio, _peer) = Stdio::pipes().map_err(|e| e.to_string())?;
    let r = cx.spawn.spawn_request(&bad, stdio);
    check!(matches!(r, Err(Error::InvalidArgument)), "bad variable: {r:?}");
    Ok(())
}
