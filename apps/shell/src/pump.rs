//! Pumps: threads that move a stream's bytes from where they come from to
//! where they go (a file, the console, a Linux process). Each ends at the
//! end of its source or when its sink breaks, and then drops both ends, so
//! the writer upstream sees a broken pipe as with SIGPIPE.

use alloc::vec::Vec;

use starina::channel::Channel;
use starina::command::Input;
use starina::command::Output;
use starina::console::Console;
use starina::fs::File;
use starina::Message;

/// Where a pump's bytes come from.
pub enum Source {
    Stream(Input),
    File(File),
}

/// Where a pump's bytes go.
pub enum Sink {
    Stream(Output),
    /// A file, written from this offset on.
    File(File, u64),
    /// The terminal: `\n` goes out as `\r\n`.
    Console(Console),
    /// A Linux process's stdin (its process channel): `Close` at the end.
    Linux(Channel),
}

/// Runs `source` into `sink` on a thread of its own. `done` is dropped when
/// it ends: the shell waits for every pump of a pipeline to close its copy.
pub fn start(source: Source, sink: Sink, done: Channel) -> Result<(), starina::Error> {
    starina::thread::spawn(move || {
        run(source, sink);
        drop(done);
    })
}

fn run(mut source: Source, mut sink: Sink) {
    let mut buf = alloc::vec![0u8; 16 * 1024];
    let mut offset = 0u64;
    loop {
        let n = match &mut source {
            // A broken stream ends it like its end.
            Source::Stream(input) => input.read(&mut buf).unwrap_or(0),
            Source::File(file) => match file.read_at(offset, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    log::warn!("reading a file for a redirection: {e}");
                    0
                }
            },
        };
        offset += n as u64;
        if n == 0 || !put(&mut sink, &buf[..n]) {
            break;
        }
    }
    if let Sink::Linux(channel) = &sink {
        let _ = channel.send(Message::Close);
    }
}

/// Writes `bytes` to `sink`; false once it is broken.
fn put(sink: &mut Sink, bytes: &[u8]) -> bool {
    match sink {
        Sink::Stream(out) => out.write(bytes).is_ok(),
        Sink::File(file, at) => match file.write_all_at(*at, bytes) {
            Ok(()) => {
                *at += bytes.len() as u64;
                true
            }
            Err(e) => {
                log::warn!("writing a redirection's file: {e}");
                false
            }
        },
        Sink::Console(console) => console.write(&crlf(bytes)).is_ok(),
        Sink::Linux(channel) => bytes
            .chunks(starina::abi::MESSAGE_DATA_MAX)
            .all(|c| channel.send_data_waiting(c).is_ok()),
    }
}

/// `\n` as `\r\n`, for a terminal in raw mode.
pub fn crlf(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    for &b in bytes {
        if b == b'\n' {
            out.push(b'\r');
        }
        out.push(b);
    }
    out
}
