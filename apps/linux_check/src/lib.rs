//! Tests the linux server the way a native component uses it: through the
//! process API of `starina_bridge::exec`, over the `linux` channel.
//!
//! Logs `test <name> ... ok` or `test <name> ... FAILED: <why>` per test,
//! then `N passed, M failed`, and powers off with 0 when all passed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod files;
mod silent;

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// How a process ended, as this client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Exited(i32),
    Signaled(i32),
    Error(u16, String),
    TimedOut,
}

#[derive(Debug)]
struct Outcome {
    pid: Option<u32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    end: End,
}

/// One command to run.
struct Job {
    req: ExecRequest,
    stdin: Vec<u8>,
    /// Send `Abort { code }` once the process has started.
    abort: Option<u16>,
}

impl Job {
    fn new(req: ExecRequest) -> Self {
        Job {
            req,
            stdin: Vec::new(),
            abort: None,
        }
    }
}

struct Checker {
    linux: Channel,
    files: Option<starina::fs::Files>,
    supervisor: Channel,
    buf: MessageBuffer,
    timeout_ms: u64,
}

type TestResult = Result<(), String>;
type Test = (&'static str, fn(&mut Checker, usize) -> TestResult);

pub fn main(env: Env) {
    let mut c = Checker {
        linux: env.linux,
        files: starina::fs::Files::new(env.fs)
            .map_err(|e| log::error!("no fs client: {e}"))
            .ok(),
        supervisor: env.supervisor,
        buf: MessageBuffer::new(),
        timeout_ms: env.config.timeout_ms.max(1000) as u64,
    };
    let concurrent = env.config.concurrent.clamp(1, 60) as usize;
    let tests: [Test; 9] = [
        ("uname", |c, _| c.test_uname()),
        ("concurrent", |c, n| c.test_concurrent(n)),
        ("streams_and_status", |c, _| c.test_streams()),
        ("stdin", |c, _| c.test_stdin()),
        ("missing_program", |c, _| c.test_missing()),
        ("signals", |c, _| c.test_signals()),
        ("silent_channels_time_out", |c, _| c.test_silent_channels()),
        ("shared_files", |c, _| c.with_files(Checker::test_shared_files)),
        ("guest_panic_restarts", |c, _| c.test_panic()),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, test) in tests {
        match test(&mut c, concurrent) {
            Ok(()) => {
                passed += 1;
                log::info!("test {name} ... ok");
            }
            Err(why) => {
                failed += 1;
                log::info!("test {name} ... FAILED: {why}");
            }
        }
    }
    log::info!("{passed} passed, {failed} failed");
    let e = env.shutdown.power_off(if failed == 0 { 0 } else { 1 });
    log::error!("cannot power off: {e}");
}

impl Checker {
    /// Runs `test` with the fs client (taken out of `self` meanwhile).
    fn with_files(&mut self, test: fn(&mut Checker, &mut starina::fs::Files) -> TestResult) -> TestResult {
        let mut files = self.files.take().ok_or("no fs client")?;
        let result = test(self, &mut files);
        self.files = Some(files);
        result
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Checker {
    fn test_uname(&mut self) -> TestResult {
        let out = self.run_one(Job::new(ExecRequest::new(&["uname", "-sr"])))?;
        expect_end(&out, End::Exited(0))?;
        let s = text(&out.stdout);
        if !s.starts_with("Linux 6.12") {
            return Err(format!("uname -sr printed {s:?}"));
        }
        log::info!("guest says: {}", s.trim());
        Ok(())
    }

    fn test_concurrent(&mut self, n: usize) -> TestResult {
        let jobs = (0..n)
            .map(|i| {
                Job::new(ExecRequest::shell(&format!(
                    "echo hello {i}; echo err {i} >&2; exit {}",
                    i % 7
                )))
            })
            .collect();
        let outs = self.run_all(jobs)?;
        for (i, out) in outs.iter().enumerate() {
            expect_end(out, End::Exited((i % 7) as i32))
                .map_err(|e| format!("command {i}: {e}"))?;
            if out.stdout != format!("hello {i}\n").as_bytes()
                || out.stderr != format!("err {i}\n").as_bytes()
            {
                return Err(format!(
                    "command {i}: stdout {:?}, stderr {:?}",
                    text(&out.stdout),
                    text(&out.stderr)
                ));
            }
        }
        Ok(())
    }

    fn test_streams(&mut self) -> TestResult {
        let out = self.run_one(Job::new(ExecRequest::shell(
            "echo out; echo err >&2; exit 3",
        )))?;
        expect_end(&out, End::Exited(3))?;
        if out.stdout != b"out\n" || out.stderr != b"err\n" {
            return Err(format!(
                "stdout {:?}, stderr {:?}",
                text(&out.stdout),
                text(&out.stderr)
            ));
        }
        if out.pid.unwrap_or(0) == 0 {
            return Err(format!("no guest pid reported: {:?}", out.pid));
        }
        Ok(())
    }

    fn test_stdin(&mut self) -> TestResult {
        // 100 KiB: several channel messages and agent frames.
        let data: Vec<u8> = (0..100 * 1024).map(|i| b'a' + (i % 26) as u8).collect();
        let mut job = Job::new(ExecRequest::new(&["wc", "-c"]));
        job.stdin = data;
        let out = self.run_one(job)?;
        expect_end(&out, End::Exited(0))?;
        if text(&out.stdout).trim() != "102400" {
            return Err(format!("wc -c printed {:?}", text(&out.stdout)));
        }
        Ok(())
    }

    fn test_missing(&mut self) -> TestResult {
        let out = self.run_one(Job::new(ExecRequest::new(&["/no/such/program"])))?;
        expect_end(&out, End::Exited(127))?;
        if out.stderr.is_empty() {
            return Err("no message on stderr".into());
        }
        Ok(())
    }

    fn test_signals(&mut self) -> TestResult {
        let out = self.run_one(Job::new(ExecRequest::shell("kill -TERM $$")))?;
        expect_end(&out, End::Signaled(15))?;
        let mut job = Job::new(ExecRequest::new(&["sleep", "1000"]));
        job.abort = Some(9);
        let out = self.run_one(job)?;
        expect_end(&out, End::Signaled(9))
    }

    fn test_panic(&mut self) -> TestResult {
        let panic = Message::Open {
            call_id: 0,
            uri: "test:panic",
            handle: None,
        };
        self.linux
            .send(panic)
            .map_err(|e| format!("cannot send test:panic: {}", e.error))?;
        self.wait_reconnect()?;
        let out = self.run_one(Job::new(ExecRequest::new(&["uname", "-r"])))?;
        expect_end(&out, End::Exited(0))?;
        if !text(&out.stdout).starts_with("6.12") {
            return Err(format!(
                "uname -r after the restart printed {:?}",
                text(&out.stdout)
            ));
        }
        Ok(())
    }

    /// Waits for startup's `reconnect:linux` after the server restarted.
    fn wait_reconnect(&mut self) -> TestResult {
        let deadline = now_ns().saturating_add(self.timeout_ms.saturating_mul(1_000_000));
        loop {
            let left_ms = deadline.saturating_sub(now_ns()) / 1_000_000;
            match self.supervisor.recv_within(&mut self.buf, left_ms) {
                Ok(Some(Message::Open {
                    uri: "reconnect:linux",
                    handle: Some(h),
                    ..
                })) => {
                    self.linux = Channel::from_handle(h);
                    return Ok(());
                }
                Ok(Some(other)) => {
                    log::info!("ignoring {:?} on the supervisor channel", other.kind())
                }
                Ok(None) => {
                    return Err("the linux server did not come back (no reconnect:linux)".into())
                }
                Err(e) => return Err(format!("supervisor channel: {e}")),
            }
        }
    }

    fn run_one(&mut self, job: Job) -> Result<Outcome, String> {
        let mut outs = self.run_all(vec![job])?;
        outs.pop().ok_or_else(|| "no outcome".into())
    }

    /// Runs every job at once; returns their outcomes in order.
    fn run_all(&mut self, jobs: Vec<Job>) -> Result<Vec<Outcome>, String> {
        let err = |e: Error| e.to_string();
        let poll = Poll::create().map_err(err)?;
        let timer = Timer::create().map_err(err)?;
        let interests = Readiness::READABLE | Readiness::PEER_CLOSED;
        poll.add(self.linux.id(), interests).map_err(err)?;
        poll.add(timer.id(), Readiness::READABLE).map_err(err)?;
        timer.set_ms(self.timeout_ms).map_err(err)?;
        let mut outs: Vec<Outcome> = jobs
            .iter()
            .map(|_| Outcome {
                pid: None,
                stdout: Vec::new(),
                stderr: Vec::new(),
                end: End::TimedOut,
            })
            .collect();
        let mut done = vec![false; jobs.len()];
        let mut chans: Vec<Option<Channel>> = jobs.iter().map(|_| None).collect();
        for i in 0..jobs.len() {
            let open = Message::Open {
                call_id: i as u32 + 1,
                uri: exec::URI,
                handle: None,
            };
            self.linux
                .send(open)
                .map_err(|e| format!("cannot open a process: {}", e.error))?;
        }
        while done.iter().any(|d| !d) {
            let (id, _) = poll.wait().map_err(err)?;
            if id == timer.id() {
                break;
            }
            if id == self.linux.id() {
                self.on_linux(&jobs, &mut chans, &mut outs, &mut done, &poll)?;
                continue;
            }
            let Some(i) = chans
                .iter()
                .position(|c| c.as_ref().map(Channel::id) == Some(id))
            else {
                continue;
            };
            self.on_process(
                i,
                &jobs[i],
                &mut chans,
                &mut outs[i],
                &mut done[i],
                &poll,
                id,
            );
        }
        Ok(outs)
    }

    fn on_linux(
        &mut self,
        jobs: &[Job],
        chans: &mut [Option<Channel>],
        outs: &mut [Outcome],
        done: &mut [bool],
        poll: &Poll,
    ) -> TestResult {
        loop {
            match self.linux.try_recv(&mut self.buf) {
                Ok(Message::OpenReply { call_id, handle }) => {
                    let i = call_id as usize - 1;
                    let Some(job) = jobs.get(i) else { continue };
                    let ch = Channel::from_handle(handle);
                    let body = job.req.encode().map_err(|e| e.to_string())?;
                    ch.send_data(&body).map_err(|e| e.to_string())?;
                    for chunk in job.stdin.chunks(exec::MESSAGE_MAX) {
                        ch.send_data_waiting(chunk).map_err(|e| format!("stdin: {e}"))?;
                    }
                    let _ = ch.send(Message::Close);
                    poll.add(ch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
                        .map_err(|e| e.to_string())?;
                    chans[i] = Some(ch);
                }
                Ok(Message::Error {
                    call_id,
                    code,
                    text,
                }) => {
                    let i = call_id as usize - 1;
                    if let (Some(out), Some(d)) = (outs.get_mut(i), done.get_mut(i)) {
                        out.end = End::Error(code, text.into());
                        *d = true;
                    }
                }
                Ok(other) => log::info!("ignoring {:?} from the linux server", other.kind()),
                Err(Error::WouldBlock) => return Ok(()),
                Err(e) => return Err(format!("linux channel: {e}")),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_process(
        &mut self,
        i: usize,
        job: &Job,
        chans: &mut [Option<Channel>],
        out: &mut Outcome,
        done: &mut bool,
        poll: &Poll,
        id: HandleId,
    ) {
        loop {
            let Some(ch) = &chans[i] else { return };
            match ch.try_recv(&mut self.buf) {
                Ok(Message::Data(d)) => match exec::Event::decode(d) {
                    Ok(exec::Event::Started { pid }) => {
                        out.pid = Some(pid);
                        if let Some(code) = job.abort {
                            let _ = ch.send(Message::Abort {
                                code,
                                reason: "test",
                            });
                        }
                    }
                    Ok(exec::Event::Stdout(b)) => out.stdout.extend_from_slice(b),
                    Ok(exec::Event::Stderr(b)) => out.stderr.extend_from_slice(b),
                    Ok(exec::Event::Exited(c)) => {
                        out.end = End::Exited(c);
                        *done = true;
                    }
                    Ok(exec::Event::Signaled(s)) => {
                        out.end = End::Signaled(s);
                        *done = true;
                    }
                    Err(e) => {
                        out.end = End::Error(0, format!("bad event: {e}"));
                        *done = true;
                    }
                },
                Ok(Message::Error { code, text, .. }) => {
                    out.end = End::Error(code, text.into());
                    *done = true;
                }
                Ok(_) => {}
                Err(Error::WouldBlock) => return,
                Err(_) => {
                    if !*done {
                        out.end = End::Error(0, "process channel closed early".into());
                        *done = true;
                    }
                    let _ = poll.remove(id);
                    chans[i] = None;
                    return;
                }
            }
        }
    }
}

fn expect_end(out: &Outcome, want: End) -> TestResult {
    if out.end == want {
        Ok(())
    } else {
        Err(format!(
            "expected {want:?}, got {:?} (stdout {:?}, stderr {:?})",
            out.end,
            text(&out.stdout),
            text(&out.stderr)
        ))
    }
}
