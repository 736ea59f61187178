//! `starina exec` against a running instance (`starina up`): the command
//! goes over the instance's control socket, which carries the process
//! protocol to the instance's host link ([`crate::mux`]); nothing boots.

use std::io::Read;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::MAX_DATA_CHUNK;

use crate::exec::ExecOptions;
use crate::host::fmt_seconds;
use crate::host::Host;
use crate::host::Streams;
use crate::instance::Dir;
use crate::instance::Request;
use crate::status::ExitStatus;
use crate::status::SIGINT;

/// The process id the session uses (the instance maps it to its own).
const ID: u32 = 1;

/// Runs `opts.argv` in the instance at `dir`; its status, or why not.
pub fn exec(
    host: &Host,
    dir: &Dir,
    opts: &ExecOptions,
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    let stream = match dir.connect(Request::Exec) {
        Ok(s) => s,
        Err(e) => {
            io.say(&format!("cannot reach the running instance: {e}"));
            return ExitStatus::NoStatus;
        }
    };
    let (reader, writer) = match (stream.try_clone(), stream.try_clone()) {
        (Ok(r), Ok(w)) => (r, Arc::new(Mutex::new(w))),
        _ => {
            io.say("cannot use the instance's socket");
            return ExitStatus::NoStatus;
        }
    };
    if let Err(e) = send(&writer, &Frame::Spawn(opts.spawn(ID))) {
        io.say(&format!("the instance: {e}"));
        return ExitStatus::NoStatus;
    }
    // Raw mode and resizes until the session ends (`-t`).
    let terminal = match opts.tty {
        true => match crate::exec::start_terminal(&writer, ID) {
            Ok(t) => Some(t),
            Err(e) => {
                io.say(&e);
                return ExitStatus::NoStatus;
            }
        },
        false => None,
    };
    pump_stdin(stdin, writer.clone());
    let (tx, rx) = mpsc::channel();
    read_frames(reader, tx);
    let deadline = opts
        .timeout
        .map(|t| Instant::now() + Duration::from_secs_f64(t));
    let status = match &terminal {
        // Messages need CR LF while the terminal is raw.
        Some(t) if t.is_raw() => {
            let mut err = crate::terminal::CrLf(&mut *io.err);
            let mut raw_io = Streams {
                out: &mut *io.out,
                err: &mut err,
            };
            session(host, opts, &rx, &writer, deadline, &mut raw_io)
        }
        _ => session(host, opts, &rx, &writer, deadline, io),
    };
    drop(terminal);
    let _ = stream.shutdown(std::net::Shutdown::Both);
    status
}

/// Frames until the command's end, the instance's end, a timeout or a
/// second signal.
fn session(
    host: &Host,
    opts: &ExecOptions,
    rx: &mpsc::Receiver<Option<Frame>>,
    writer: &Mutex<UnixStream>,
    deadline: Option<Instant>,
    io: &mut Streams,
) -> ExitStatus {
    let mut signals_seen = 0;
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Some(frame)) => {
                if let Some(status) = on_frame(frame, io) {
                    return status;
                }
            }
            Ok(None) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                io.say("the Starina instance went down before the command finished");
                return ExitStatus::NoStatus;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            let secs = fmt_seconds(opts.timeout.unwrap_or_default());
            io.say(&format!("timed out after {secs} s: the command was killed"));
            return ExitStatus::Timeout;
        }
        while host.stop.count() > signals_seen {
            signals_seen += 1;
            // On a terminal (`-t`) Ctrl-C arrives as a key: a signal to
            // the CLI ends the session.
            if signals_seen > 1 || host.stop.signal() != Some(SIGINT) || opts.tty {
                io.say("interrupted: the command was killed");
                return ExitStatus::from_signal(host.stop.signal().unwrap_or(SIGINT));
            }
            // The first Ctrl-C goes to the command.
            let _ = send(
                writer,
                &Frame::Kill {
                    id: ID,
                    signal: SIGINT,
                },
            );
        }
    }
}

/// Shows what the command wrote; its status once it ended.
fn on_frame(frame: Frame, io: &mut Streams) -> Option<ExitStatus> {
    match frame {
        Frame::Stdout { data, .. } => {
            let _ = io.out.write_all(&data).and_then(|_| io.out.flush());
        }
        Frame::Stderr { data, .. } => io.err_bytes(&data),
        Frame::Exited { code, .. } => return Some(ExitStatus::from_exit(code)),
        Frame::Signaled { signal, .. } => return Some(ExitStatus::from_signal(signal)),
        Frame::SpawnFailed { errno, msg, .. } => {
            io.say(&format!("cannot run the command: {msg} (code {errno})"));
            return Some(ExitStatus::NoStatus);
        }
        _ => {}
    }
    None
}

fn send(stream: &Mutex<UnixStream>, frame: &Frame) -> Result<(), String> {
    let bytes = frame.encode().map_err(|e| e.to_string())?;
    let mut stream = stream.lock().unwrap_or_else(|e| e.into_inner());
    stream.write_all(&bytes).map_err(|e| e.to_string())
}

/// A thread that sends `stdin` to the command, then closes its stdin.
fn pump_stdin(mut stdin: Box<dyn Read + Send>, stream: Arc<Mutex<UnixStream>>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            let data = buf[..n].to_vec();
            if send(&stream, &Frame::Stdin { id: ID, data }).is_err() {
                return;
            }
        }
        let _ = send(&stream, &Frame::StdinClose { id: ID });
    });
}

/// A thread that decodes the instance's frames; `None` when it closes.
fn read_frames(mut stream: UnixStream, tx: mpsc::Sender<Option<Frame>>) {
    thread::spawn(move || {
        let mut decoder = FrameDecoder::new();
        let mut buf = vec![0u8; 65536];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            decoder.push(&buf[..n]);
            while let Some(frame) = decoder.next() {
                match frame {
                    Ok(frame) => {
                        if tx.send(Some(frame)).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.is_fatal() => {
                        let _ = tx.send(None);
                        return;
                    }
                    Err(_) => {}
                }
            }
        }
        let _ = tx.send(None);
    });
}
