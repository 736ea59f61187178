//! Process channels that never send their request: the linux server closes
//! each with `Error { code: TIMED_OUT }` after its `request_timeout_ms`, so
//! that silent clients cannot hold every process slot for ever.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::message::codes;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;

use crate::expect_end;
use crate::Checker;
use crate::End;
use crate::Job;
use crate::TestResult;

/// More process channels than any `max_processes` a profile gives.
const MAX_OPEN: u32 = 512;
/// How long a silent channel may stay open before this test gives up on
/// the server closing it (the spec's timeout is 5 s).
const CLOSE_WITHIN_MS: u64 = 30_000;

/// What arrived on a channel within the time given.
enum Got {
    OpenReply(Channel),
    Error(u16, String),
    Other(String),
    Closed,
    TimedOut,
}

impl Checker {
    /// Fills every process slot with channels that send nothing, checks
    /// that the next open is refused, that the server closes each silent
    /// channel with `TIMED_OUT`, and that a command runs afterwards.
    pub(crate) fn test_silent_channels(&mut self) -> TestResult {
        let mut silent = Vec::new();
        let refused = loop {
            if silent.len() as u32 == MAX_OPEN {
                return Err(format!("{MAX_OPEN} process channels opened, none refused"));
            }
            let call_id = 10_000 + silent.len() as u32;
            match self.open_process(call_id)? {
                Got::OpenReply(ch) => silent.push(ch),
                Got::Error(code, text) if code == codes::UNAVAILABLE => break text,
                Got::Error(code, text) => return Err(format!("open refused with {code}: {text}")),
                Got::Other(what) => return Err(format!("open answered with {what}")),
                Got::Closed | Got::TimedOut => return Err("no answer to an exec open".into()),
            }
        };
        log::info!(
            "{} silent process channels fill the server ({refused})",
            silent.len()
        );
        let start = now_ns();
        for (i, ch) in silent.iter().enumerate() {
            match self.recv_within(ch, CLOSE_WITHIN_MS)? {
                Got::Error(code, _) if code == codes::TIMED_OUT => {}
                Got::Error(code, text) => {
                    return Err(format!("silent channel {i}: error {code}: {text}"))
                }
                Got::Other(what) => return Err(format!("silent channel {i}: got {what}")),
                Got::Closed => return Err(format!("silent channel {i} closed without an Error")),
                Got::TimedOut | Got::OpenReply(_) => {
                    return Err(format!(
                        "silent channel {i} still open after {CLOSE_WITHIN_MS} ms"
                    ))
                }
            }
        }
        log::info!(
            "the server closed them all with TIMED_OUT within {} ms",
            (now_ns() - start) / 1_000_000
        );
        drop(silent);
        let out = self.run_one(Job::new(ExecRequest::new(&["true"])))?;
        expect_end(&out, End::Exited(0)).map_err(|e| format!("after the silent channels: {e}"))
    }

    /// Asks the linux server for a process channel; its answer.
    fn open_process(&mut self, call_id: u32) -> Result<Got, String> {
        let open = Message::Open {
            call_id,
            uri: exec::URI,
            handle: None,
        };
        self.linux
            .send(open)
            .map_err(|e| format!("cannot open a process: {}", e.error))?;
        loop {
            match recv_within(&self.linux, &mut self.buf, self.timeout_ms)? {
                (Some(id), got) if id == call_id => return Ok(got),
                (None, got @ (Got::Closed | Got::TimedOut)) => return Ok(got),
                _ => {}
            }
        }
    }

    fn recv_within(&mut self, ch: &Channel, ms: u64) -> Result<Got, String> {
        recv_within(ch, &mut self.buf, ms).map(|(_, got)| got)
    }
}

/// The next message on `ch` within `ms`, with its call id when it has one.
fn recv_within(
    ch: &Channel,
    buf: &mut MessageBuffer,
    ms: u64,
) -> Result<(Option<u32>, Got), String> {
    let err = |e: Error| e.to_string();
    let poll = Poll::create().map_err(err)?;
    let timer = Timer::create().map_err(err)?;
    poll.add(ch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
        .map_err(err)?;
    poll.add(timer.id(), Readiness::READABLE).map_err(err)?;
    timer.set_ms(ms).map_err(err)?;
    loop {
        let (ready, _) = poll.wait().map_err(err)?;
        if ready == timer.id() {
            return Ok((None, Got::TimedOut));
        }
        match ch.try_recv(buf) {
            Ok(Message::OpenReply { call_id, handle }) => {
                return Ok((Some(call_id), Got::OpenReply(Channel::from_handle(handle))))
            }
            Ok(Message::Error {
                call_id,
                code,
                text,
            }) => return Ok((Some(call_id), Got::Error(code, text.into()))),
            Ok(other) => return Ok((None, Got::Other(format!("{:?}", other.kind())))),
            Err(Error::WouldBlock) => {}
            Err(_) => return Ok((None, Got::Closed)),
        }
    }
}
