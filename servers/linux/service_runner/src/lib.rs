//! The runner of a Linux service: what startup runs for a spec with
//! `kind = "linux"` (the generated wiring calls [`run`] with what the spec
//! declares). It is a native component like any other, so a Linux service
//! is started, logged, listed and restarted exactly as one:
//!
//! - it asks the linux server (its one need, `linux`) to forward the
//!   service's `ports`, then to run its `command` (the process API of
//!   `starina_bridge::exec`, with the spec's environment, working
//!   directory and user); the server holds the request until the guest is
//!   up;
//! - the program's stdout and stderr become log lines (info) under the service's
//!   name;
//! - when the program ends, the runner ends with its status (128 + N for
//!   signal N), and startup applies the spec's restart policy; when the
//!   runner ends first (its component stopped), its process channel
//!   closes and the linux server kills the program;
//! - when Linux itself goes down (the linux server ends, say after a guest
//!   panic), the program went with it through no fault of its own: the
//!   runner waits for startup's `reconnect:linux` and runs it again in the
//!   new VM, as a service comes back when its machine reboots, whatever
//!   its restart policy.

#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod lines;
mod request;

use alloc::format;
use alloc::string::String;

use starina::abi::Error;
use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::env::RawEnv;
use starina::message::Message;
use starina::poll::Poll;
use starina::spec::LinuxService;
use starina_bridge::exec;
use starina_bridge::exec::Event;

use lines::Lines;

/// The `Open` URI asking the linux server to forward a port (see
/// servers/linux/README.md).
pub const FORWARD_PORT_URI: &str = "forward-port:";

/// Call ids of our opens on the `linux` channel: the process, then one
/// per port.
const EXEC_CALL: u32 = 1;

/// How the program ended.
enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// Why a run of the program stopped short of its end.
enum Stopped {
    /// The linux server went away (Linux restarts): run again once it is
    /// back.
    LinuxGone,
    /// Anything else: the service fails with this reason.
    Failed(String),
}

impl From<String> for Stopped {
    fn from(why: String) -> Stopped {
        Stopped::Failed(why)
    }
}

/// The `Open` URI startup sends on the supervisor channel when it has
/// restarted the linux server.
const RECONNECT_URI: &str = "reconnect:linux";

/// Runs `service` until its program ends; never returns on a failure (the
/// component exits with the program's status).
pub fn run(mut raw: RawEnv, service: &'static LinuxService) {
    // Its log lines carry the service's name, not this crate's.
    let name = raw.component();
    let (mut linux, supervisor) = match (raw.take_channel("linux"), raw.take_channel("supervisor"))
    {
        (Ok(linux), Ok(supervisor)) => (linux, supervisor),
        (Err(e), _) | (_, Err(e)) => fail(name, &format!("{e}")),
    };
    let ended = loop {
        match serve(name, &linux, service) {
            Ok(ended) => break ended,
            Err(Stopped::LinuxGone) => {
                log::warn!(target: name, "Linux went down; running again once it is back");
                linux = match wait_for_linux(&supervisor) {
                    Ok(linux) => linux,
                    Err(why) => fail(name, &why),
                };
            }
            Err(Stopped::Failed(why)) => fail(name, &why),
        }
    };
    let status = match ended {
        Ended::Exited(0) => return,
        Ended::Exited(code) => code,
        Ended::Signaled(signal) => {
            log::warn!(target: name, "killed by signal {signal}");
            128 + signal
        }
    };
    starina::thread::exit(status)
}

/// Waits for startup's `reconnect:linux`: the channel to the new linux
/// server. Other messages (none are expected) are dropped.
fn wait_for_linux(supervisor: &Channel) -> Result<Channel, String> {
    let poll = Poll::create().map_err(|e| format!("cannot create a poll: {e}"))?;
    poll.add(
        supervisor.id(),
        Readiness::READABLE | Readiness::PEER_CLOSED,
    )
    .map_err(|e| format!("cannot watch the supervisor: {e}"))?;
    let mut buf = MessageBuffer::new();
    loop {
        match supervisor.try_recv(&mut buf) {
            Ok(Message::Open {
                uri,
                handle: Some(handle),
                ..
            }) if uri == RECONNECT_URI => return Ok(Channel::from_handle(handle)),
            Ok(_) | Err(Error::MalformedMessage) => {}
            Err(Error::WouldBlock) => {
                poll.wait().map_err(|e| format!("poll: {e}"))?;
            }
            Err(e) => return Err(format!("waiting for Linux to come back: {e}")),
        }
    }
}

/// Logs why the service cannot run and ends the component with status 1.
fn fail(name: &'static str, why: &str) -> ! {
    log::error!(target: name, "{why}");
    starina::thread::exit(1)
}

fn serve(name: &'static str, linux: &Channel, service: &LinuxService) -> Result<Ended, Stopped> {
    let poll = Poll::create().map_err(|e| format!("cannot create a poll: {e}"))?;
    let interests = Readiness::READABLE | Readiness::PEER_CLOSED;
    poll.add(linux.id(), interests)
        .map_err(|e| format!("cannot watch the linux channel: {e}"))?;
    ask_for_ports(name, linux, service);
    open(linux, EXEC_CALL, exec::URI)?;
    let mut buf = MessageBuffer::new();
    let process = wait_for_process(name, linux, &poll, &mut buf)?;
    let body = request::encode(service)?;
    process
        .send_data(&body)
        .map_err(|e| format!("cannot send the request: {e}"))?;
    // No input: the program reads end-of-file, as from /dev/null.
    let _ = process.send(Message::Close);
    poll.add(process.id(), interests)
        .map_err(|e| format!("cannot watch the process: {e}"))?;
    follow(name, linux, &process, &poll, &mut buf)
}

fn open(linux: &Channel, call_id: u32, uri: &str) -> Result<(), Stopped> {
    let msg = Message::Open {
        call_id,
        uri,
        handle: None,
    };
    linux.send(msg).map_err(|e| match e.error {
        Error::PeerClosed => Stopped::LinuxGone,
        e => Stopped::Failed(format!("cannot reach the linux server: {e}")),
    })
}

/// Asks the linux server to forward each of the service's ports (answered
/// on the `linux` channel; see `on_linux`).
fn ask_for_ports(name: &'static str, linux: &Channel, service: &LinuxService) {
    for (i, port) in service.ports.iter().enumerate() {
        let uri = format!("{FORWARD_PORT_URI}{port}");
        if let Err(Stopped::Failed(why)) = open(linux, EXEC_CALL + 1 + i as u32, &uri) {
            log::warn!(target: name, "port {port}: {why}");
        }
    }
}

/// Waits for the linux server's answer to the exec open.
fn wait_for_process(
    name: &'static str,
    linux: &Channel,
    poll: &Poll,
    buf: &mut MessageBuffer,
) -> Result<Channel, Stopped> {
    loop {
        poll.wait().map_err(|e| format!("poll: {e}"))?;
        if let Some(process) = on_linux(name, linux, buf)? {
            return Ok(process);
        }
    }
}

/// Handles what waits on the `linux` channel; the process channel if the
/// exec open was answered.
fn on_linux(
    name: &'static str,
    linux: &Channel,
    buf: &mut MessageBuffer,
) -> Result<Option<Channel>, Stopped> {
    loop {
        match linux.try_recv(buf) {
            Ok(Message::OpenReply { call_id, handle }) if call_id == EXEC_CALL => {
                return Ok(Some(Channel::from_handle(handle)));
            }
            // A port's forward is set up; the reply's channel says no more.
            Ok(Message::OpenReply { .. }) => {}
            Ok(Message::Error { call_id, text, .. }) if call_id == EXEC_CALL => {
                return Err(format!("the linux server cannot run it: {text}").into());
            }
            Ok(Message::Error { text, .. }) => {
                log::warn!(target: name, "forwarding a port: {text}")
            }
            Ok(_) => {}
            Err(Error::WouldBlock) => return Ok(None),
            Err(Error::PeerClosed) => return Err(Stopped::LinuxGone),
            Err(e) => return Err(format!("the linux channel: {e}").into()),
        }
    }
}

/// Logs the program's output until it ends.
fn follow(
    name: &'static str,
    linux: &Channel,
    process: &Channel,
    poll: &Poll,
    buf: &mut MessageBuffer,
) -> Result<Ended, Stopped> {
    let mut out = Output::new(name);
    loop {
        let (id, _) = poll.wait().map_err(|e| format!("poll: {e}"))?;
        if id == linux.id() {
            // Late port answers; a closed linux channel shows on the
            // process channel too.
            let _ = on_linux(name, linux, buf);
            continue;
        }
        loop {
            match process.try_recv(buf) {
                Ok(Message::Data(data)) => {
                    let event = Event::decode(data).map_err(|e| format!("a bad event: {e}"))?;
                    if let Some(ended) = out.on_event(event) {
                        return Ok(ended);
                    }
                }
                Ok(Message::Error { text, .. }) => {
                    out.finish();
                    let why = format!("the linux server: {text}");
                    return Err(linux_gone_or(linux, buf, why));
                }
                Ok(_) => {}
                Err(Error::WouldBlock) => break,
                Err(_) => {
                    out.finish();
                    let why = "the linux server closed the process".into();
                    return Err(linux_gone_or(linux, buf, why));
                }
            }
        }
    }
}

/// Why the process ended before the program did: the linux server is
/// gone (Linux restarts: the server fails its processes, then its `linux`
/// channel closes in the same teardown, so wait a moment for that), or it
/// ended the process for a reason of its own, `why`.
fn linux_gone_or(linux: &Channel, buf: &mut MessageBuffer, why: String) -> Stopped {
    /// How long the `linux` channel may lag the process's end.
    const TEARDOWN_MS: u64 = 2_000;
    loop {
        match linux.recv_within(buf, TEARDOWN_MS) {
            // Late port answers.
            Ok(Some(_)) => {}
            Err(Error::PeerClosed) => return Stopped::LinuxGone,
            Ok(None) | Err(_) => return Stopped::Failed(why),
        }
    }
}

/// The program's output streams, logged under the service's name.
struct Output {
    name: &'static str,
    stdout: Lines,
    stderr: Lines,
}

impl Output {
    fn new(name: &'static str) -> Output {
        Output {
            name,
            stdout: Lines::default(),
            stderr: Lines::default(),
        }
    }

    /// Logs an event; how the program ended, if it did.
    fn on_event(&mut self, event: Event) -> Option<Ended> {
        let name = self.name;
        match event {
            Event::Started { pid } => log::info!(target: name, "running as pid {pid} in Linux"),
            Event::Stdout(bytes) => self.stdout.push(bytes, |l| log::info!(target: name, "{l}")),
            Event::Stderr(bytes) => self.stderr.push(bytes, |l| log::info!(target: name, "{l}")),
            Event::Exited(code) => {
                self.finish();
                return Some(Ended::Exited(code));
            }
            Event::Signaled(signal) => {
                self.finish();
                return Some(Ended::Signaled(signal));
            }
        }
        None
    }

    fn finish(&mut self) {
        let name = self.name;
        self.stdout.finish(|l| log::info!(target: name, "{l}"));
        self.stderr.finish(|l| log::info!(target: name, "{l}"));
    }
}
