//! Linux stages of a pipeline: a program run in the Linux microVM through
//! the linux server's process API (`starina_bridge::exec`), given the same
//! three channels as a native command so the pipeline cannot tell them
//! apart.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::channel::OpenError;
use starina::command::Input;
use starina::command::Output;
use starina::poll::Poll;
use starina::Message;
use starina_bridge::exec::Event;
use starina_bridge::exec::ExecRequest;

use crate::pipeline::dup;
use crate::pump;

/// How long the linux server may take to open a process channel.
const OPEN_TIMEOUT_MS: u64 = 10_000;

/// A running Linux program: `control` to signal it; its status arrives on
/// the pipeline's notify channel as `index:status`.
pub struct LinuxStage {
    pub control: Channel,
}

/// Starts `argv` in Linux with `cwd` as its working directory, reading
/// `stdin` and writing `stdout` and `stderr`.
pub fn start(
    linux: &Channel,
    argv: &[String],
    cwd: &str,
    io: [Channel; 3],
    notify: (usize, Channel),
    done: &Channel,
) -> Result<LinuxStage, String> {
    let process = open(linux)?;
    let mut request = ExecRequest::new(&argv.iter().map(String::as_str).collect::<Vec<_>>());
    request.cwd = Some(cwd.as_bytes().to_vec());
    let bytes = request.encode().map_err(|e| format!("{e:?}"))?;
    process.send_data(&bytes).map_err(|e| format!("linux: {e}"))?;
    let control = dup(&process)?;
    let stdin_sink = dup(&process)?;
    let [stdin, stdout, stderr] = io;
    pump::start(
        pump::Source::Stream(Input::new(stdin)),
        pump::Sink::Linux(stdin_sink),
        dup(done)?,
    )
    .map_err(|e| format!("{e}"))?;
    let done = dup(done)?;
    starina::thread::spawn(move || {
        output(process, Output::new(stdout), Output::new(stderr), notify);
        drop(done);
    })
    .map_err(|e| format!("{e}"))?;
    Ok(LinuxStage { control })
}

/// Asks the linux server for a process channel.
fn open(linux: &Channel) -> Result<Channel, String> {
    linux
        .open_within(starina_bridge::exec::URI, OPEN_TIMEOUT_MS)
        .map_err(|e| match e {
            OpenError::Unexpected(_) => "linux: unexpected answer".into(),
            OpenError::TimedOut => "linux: no answer (is Linux up?)".into(),
            e => format!("linux: {e}"),
        })
}

/// The process's events: output to the stage's channels, its status to
/// the pipeline (`index:status`, 128+N for signal N; 126 when it could not
/// be run at all).
fn output(process: Channel, mut stdout: Output, mut stderr: Output, notify: (usize, Channel)) {
    let mut buf = MessageBuffer::new();
    let Ok(poll) = Poll::create() else { return };
    if poll.add(process.id(), Readiness::READABLE | Readiness::PEER_CLOSED).is_err() {
        return;
    }
    let status = loop {
        let msg = match process.try_recv(&mut buf) {
            Ok(m) => m,
            Err(starina::Error::WouldBlock) => match poll.wait() {
                Ok(_) => continue,
                Err(_) => break 125,
            },
            Err(_) => break 125,
        };
        match msg {
            Message::Data(d) => match Event::decode(d) {
                Ok(Event::Stdout(b)) => {
                    let _ = stdout.write(b);
                }
                Ok(Event::Stderr(b)) => {
                    let _ = stderr.write(b);
                }
                Ok(Event::Exited(status)) => break status,
                Ok(Event::Signaled(signal)) => break 128 + signal,
                Ok(_) => {}
                Err(_) => break 125,
            },
            Message::Error { text, .. } => {
                let _ = stderr.print(&format!("linux: {text}\n"));
                break 126;
            }
            _ => {}
        }
    };
    drop((stdout, stderr));
    let (index, channel) = notify;
    let _ = channel.send_data_waiting(format!("{index}:{status}").as_bytes());
}
