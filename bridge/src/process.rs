//! The process protocol between the native linux server (the host side) and
//! the guest agent.
//!
//! # Wire format
//!
//! A byte stream of frames. Every integer is little-endian.
//!
//! ```text
//! [u32 len][u8 type][u32 id][payload: len - 5 bytes]
//! ```
//!
//! `len` counts everything after itself (type, id and payload), so it is at
//! least [`HEADER_LEN`] and at most the decoder's limit ([`MAX_FRAME_LEN`] by
//! default). `id` names the process a frame is about; the host picks it in
//! [`Spawn`] and every later frame about that process carries it. Frames that
//! are about no process carry 0 ([`Frame::Ready`], [`Frame::Panic`],
//! [`Frame::Listening`]) or a nonce ([`Frame::Ping`]/[`Frame::Pong`]).
//!
//! Payload building blocks: `bytes` is `[u32 n][n bytes]`, `str` is a `bytes`
//! that must be UTF-8, `list<T>` is `[u32 count][T; count]`.
//!
//! | type | frame | direction | payload |
//! |------|-------|-----------|---------|
//! | 0x01 | [`Frame::Spawn`] | host → guest | `list<bytes>` argv, `list<(bytes, bytes)>` env, `u8` has_cwd, `bytes` cwd (if has_cwd), `u8` has_user, `bytes` user (if has_user; see below), then optionally `u8` has_terminal, `u16` rows, `u16` cols (if has_terminal) |
//! | 0x02 | [`Frame::Stdin`] | host → guest | raw data (rest of the frame) |
//! | 0x03 | [`Frame::StdinClose`] | host → guest | none |
//! | 0x04 | [`Frame::Kill`] | host → guest | `i32` signal |
//! | 0x05 | [`Frame::Ping`] | host → guest | none |
//! | 0x06 | [`Frame::Resize`] | host → guest | `u16` rows, `u16` cols |
//! | 0x0f | [`Frame::Panic`] | host → guest | `u32` [`PANIC_MAGIC`] |
//! | 0x81 | [`Frame::Ready`] | guest → host | `str` kernel release |
//! | 0x82 | [`Frame::Started`] | guest → host | `u32` guest pid |
//! | 0x83 | [`Frame::Stdout`] | guest → host | raw data (rest of the frame) |
//! | 0x84 | [`Frame::Stderr`] | guest → host | raw data (rest of the frame) |
//! | 0x85 | [`Frame::Exited`] | guest → host | `i32` exit code |
//! | 0x86 | [`Frame::Signaled`] | guest → host | `i32` signal |
//! | 0x87 | [`Frame::SpawnFailed`] | guest → host | `i32` errno, `str` message |
//! | 0x88 | [`Frame::Pong`] | guest → host | none |
//! | 0x89 | [`Frame::StdinAck`] | guest → host | `u32` bytes |
//! | 0x8a | [`Frame::Listening`] | guest → host | `u8` [`Proto`] (6 TCP, 17 UDP), `u16` port, `u8` open (0 or 1), `str` process |
//! | 0x8b | [`Frame::NativeSpawn`] | guest → host | `list<str>` argv, `list<(str, str)>` vars |
//! | 0x8c | [`Frame::NativeStdin`] | guest → host | raw data (rest of the frame) |
//! | 0x8d | [`Frame::NativeStdinClose`] | guest → host | none |
//! | 0x8e | [`Frame::NativeKill`] | guest → host | none |
//! | 0x8f | [`Frame::NativeOutputAck`] | guest → host | `u32` bytes |
//! | 0x11 | [`Frame::NativeStdout`] | host → guest | raw data (rest of the frame) |
//! | 0x12 | [`Frame::NativeStderr`] | host → guest | raw data (rest of the frame) |
//! | 0x13 | [`Frame::NativeExited`] | host → guest | `i32` status |
//! | 0x14 | [`Frame::NativeSpawnFailed`] | host → guest | `i32` status, `str` reason |
//! | 0x15 | [`Frame::NativeStdinAck`] | host → guest | `u32` bytes |
//!
//! The Spawn frame's user field came last and is optional on the wire: a
//! frame that ends after the cwd (as older encoders write it) decodes with
//! `user: None`. Encoders always write `has_user`. `has_user` is 0 or 1;
//! any other value is [`ProtoError::BadValue`].
//!
//! The terminal field came after it, optional the same way: encoders write
//! it only for a terminal request (`has_terminal` 1, then the window size),
//! so a Spawn without a terminal is byte for byte what older encoders wrote.
//! A window size outside 1..=[`MAX_TERMINAL_DIM`] in either dimension is
//! [`ProtoError::BadValue`], in a Spawn and in a [`Frame::Resize`].
//!
//! # Terminals
//!
//! A Spawn with a terminal runs the program on a pseudo-terminal of that
//! size: it is a session leader with the pty as its controlling terminal,
//! and stdin, stdout and stderr are all the pty, so everything it writes
//! comes back as `Stdout` (no `Stderr`). Stdin bytes go to the pty as typed
//! keys: the pty's line discipline turns Ctrl-C, Ctrl-Z and Ctrl-\ into
//! SIGINT, SIGTSTP and SIGQUIT for the foreground process group.
//! `StdinClose` sends the end-of-file character (Ctrl-D) instead of closing.
//! [`Frame::Resize`] sets the pty's window size (the guest kernel then sends
//! SIGWINCH); the agent ignores, with a line on its console, a Resize for an
//! unknown id or for a process without a terminal.
//!
//! # Limits
//!
//! Both sides check frame lengths: [`Frame::encode_into`] refuses a frame
//! longer than [`MAX_FRAME_LEN`] (so an oversized argv or environment is an
//! error to the caller, never bytes on the wire), and [`FrameDecoder`]
//! refuses a `len` out of range. A bad `len` means the stream is out of sync:
//! the bytes after it may be the middle of a frame, chosen by whoever wrote
//! its payload, so the decoder yields nothing more from that stream. The
//! side that sees it closes the link rather than hunting for the next frame
//! inside untrusted bytes.
//!
//! # Stdin flow control
//!
//! Every process has a stdin window of [`STDIN_WINDOW`] bytes: the host may
//! have at most that many bytes of `Stdin` data sent for a process and not
//! yet acknowledged. The agent acknowledges with [`Frame::StdinAck`] as the
//! process takes its stdin (bytes written into its pipe, or discarded once
//! the pipe is closed), so a process that does not read its stdin holds at
//! most one window in the agent and stalls only its own writer; the control
//! stream and every other process go on. [`StdinWindow`] keeps the count on
//! the sending side; [`StdinOutbox`] adds the data waiting for the window. A host that sends beyond the window breaks the
//! protocol: the agent drops that process's stdin, says so on its stderr and
//! kills it (`SIGKILL`) rather than buffer without bound.
//!
//! # Process life cycle
//!
//! `Spawn` is answered by `Started` (then any number of `Stdout`/`Stderr`,
//! then exactly one `Exited` or `Signaled`, sent after both output streams
//! reached end of file), or by one `SpawnFailed`. A program that does not
//! exist is not a `SpawnFailed`: like a shell, the agent reports it as
//! `Started` with pid 0, a message on stderr and exit code 127 (126 when the
//! program is not executable). `SpawnFailed` is for requests that cannot be
//! run at all: empty argv, a missing cwd, an unknown user, an id in use, no
//! resources.
//! After the final frame the id may be reused.
//!
//! # Listener reports
//!
//! When the guest has a network, the agent tells the host which ports guest
//! programs listen on, so that the host can forward them: one
//! [`Frame::Listening`] with `open: true` when the first socket listens on a
//! (protocol, port) (a TCP socket in LISTEN, or an unconnected UDP socket),
//! and one with `open: false` when the last one goes. However many sockets
//! share a port (IPv4 and IPv6, `SO_REUSEPORT`), it is one report. The first
//! reports after `Ready` are the ports already open.
//!
//! # Native commands
//!
//! The other way round, a Linux program (`starina CMD ARGS...` in the
//! guest) runs a native command through the agent: the `Native*` frames.
//! Their ids are the guest's (the agent picks them; a separate space from
//! the host's process ids), and the guest's requests are untrusted: the
//! host bounds how many run at once and what it buffers for each.
//!
//! `NativeSpawn` (argv\[0\] names the command, vars its environment) is
//! answered by any number of `NativeStdout`/`NativeStderr`, then exactly
//! one `NativeExited` (the command's status: 137 killed, 141 broken pipe,
//! 134 panicked), or by one `NativeSpawnFailed` (a status, 127 for a name
//! no command has, and a reason for the user). After the final frame the
//! id may be reused. `NativeKill` ends the command (its output is dropped
//! from then on; the final frame still follows).
//!
//! Both data directions keep to a window of [`NATIVE_WINDOW`] bytes: the
//! guest has at most that many bytes of `NativeStdin` unacknowledged (the
//! host acknowledges with `NativeStdinAck` as the command takes them; a
//! guest that sends more gets its command killed), and the host at most
//! that many of `NativeStdout` + `NativeStderr` (the agent acknowledges
//! with `NativeOutputAck` as the Linux program takes them, or as it drops
//! them for a program that is gone).

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// Bytes of `type` + `id`, the smallest possible value of `len`.
pub const HEADER_LEN: usize = 5;
/// Bytes of the `len` prefix.
pub const LEN_PREFIX: usize = 4;
/// Default cap on `len`: 1 MiB. A Spawn with a huge environment is the only
/// frame that comes close; data frames should stay below [`MAX_DATA_CHUNK`].
pub const MAX_FRAME_LEN: usize = 1 << 20;
/// The largest data chunk senders put in one Stdin/Stdout/Stderr frame.
pub const MAX_DATA_CHUNK: usize = 32 * 1024;
/// Bytes of stdin the host may have sent to one process and not yet seen
/// acknowledged by [`Frame::StdinAck`] (see the module docs).
pub const STDIN_WINDOW: usize = 256 * 1024;
/// The value a [`Frame::Panic`] must carry: garbage on the stream must never
/// crash the guest by accident.
pub const PANIC_MAGIC: u32 = 0x5041_4e43; // "PANC"
/// Bytes of native stdin, and of native output, one side may have sent for
/// one native command and not yet seen acknowledged (see "Native commands").
pub const NATIVE_WINDOW: usize = 64 * 1024;

/// One message of the process protocol.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Run a program (host → guest).
    Spawn(Spawn),
    /// Bytes for the process's stdin (host → guest).
    Stdin { id: u32, data: Vec<u8> },
    /// Close the process's stdin (host → guest).
    StdinClose { id: u32 },
    /// Send a signal to the process (host → guest).
    Kill { id: u32, signal: i32 },
    /// Ask for a [`Frame::Pong`] with the same nonce (host → guest).
    Ping { nonce: u32 },
    /// Set the window size of the process's terminal (host → guest).
    Resize { id: u32, size: WinSize },
    /// Test only: make the guest kernel panic, to test VM restarts
    /// (host → guest). Encoded with [`PANIC_MAGIC`]; a Panic frame without it
    /// does not decode.
    Panic,
    /// The agent is up and serving (guest → host).
    Ready { kernel_release: String },
    /// The process is running (guest → host). `pid` is its pid in the
    /// guest, or 0 when the program could not be run (exit code 126/127).
    Started { id: u32, pid: u32 },
    /// Bytes the process wrote to stdout (guest → host).
    Stdout { id: u32, data: Vec<u8> },
    /// Bytes the process wrote to stderr (guest → host).
    Stderr { id: u32, data: Vec<u8> },
    /// The process exited with this code (guest → host).
    Exited { id: u32, code: i32 },
    /// The process was killed by this signal (guest → host).
    Signaled { id: u32, signal: i32 },
    /// The process could not be started (guest → host).
    SpawnFailed { id: u32, errno: i32, msg: String },
    /// Answer to [`Frame::Ping`] (guest → host).
    Pong { nonce: u32 },
    /// The process took `bytes` more bytes of its stdin: the host may send
    /// that many more (guest → host; see [`STDIN_WINDOW`]). Never sent
    /// after the process's final frame.
    StdinAck { id: u32, bytes: u32 },
    /// A guest program started (`open: true`) or stopped (`open: false`)
    /// listening on `port` (guest → host; see "Listener reports" above).
    /// `process` names the program that owns the first socket (its
    /// `/proc/<pid>/comm`), or is `"unknown"`; in a close it is the name
    /// the open gave.
    Listening {
        proto: Proto,
        port: u16,
        open: bool,
        process: String,
    },
    /// Run a native command (guest → host; see "Native commands").
    NativeSpawn(NativeSpawn),
    /// Bytes for the native command's stdin (guest → host).
    NativeStdin { id: u32, data: Vec<u8> },
    /// End of the native command's stdin (guest → host).
    NativeStdinClose { id: u32 },
    /// End the native command now (guest → host).
    NativeKill { id: u32 },
    /// The Linux program took (or the agent dropped) `bytes` more of the
    /// native command's output (guest → host; see [`NATIVE_WINDOW`]).
    NativeOutputAck { id: u32, bytes: u32 },
    /// Bytes the native command wrote to stdout (host → guest).
    NativeStdout { id: u32, data: Vec<u8> },
    /// Bytes the native command wrote to stderr (host → guest).
    NativeStderr { id: u32, data: Vec<u8> },
    /// The native command ended with this status (host → guest; final).
    NativeExited { id: u32, status: i32 },
    /// The native command could not be started (host → guest; final):
    /// the status the Linux program exits with, and why.
    NativeSpawnFailed {
        id: u32,
        status: i32,
        reason: String,
    },
    /// The native command took `bytes` more of its stdin (host → guest).
    NativeStdinAck { id: u32, bytes: u32 },
}

/// A Linux program's request to run a native command.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NativeSpawn {
    /// The guest's id for it, unique among its native commands in flight.
    pub id: u32,
    /// The command's name, then its arguments.
    pub argv: Vec<String>,
    /// Its environment.
    pub vars: Vec<(String, String)>,
}

/// The transport protocol of a [`Frame::Listening`]; on the wire, its IP
/// protocol number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    /// The IP protocol number, the frame's encoding.
    pub const fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
        }
    }

    /// The protocol with this IP protocol number, if TCP or UDP.
    pub const fn from_number(n: u8) -> Option<Proto> {
        match n {
            6 => Some(Proto::Tcp),
            17 => Some(Proto::Udp),
            _ => None,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// The largest number of rows or columns a window size may have.
pub const MAX_TERMINAL_DIM: u16 = 4096;

/// A terminal's window size, in characters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WinSize {
    pub rows: u16,
    pub cols: u16,
}

impl WinSize {
    /// The size, if both dimensions are in 1..=[`MAX_TERMINAL_DIM`].
    pub fn new(rows: u16, cols: u16) -> Option<WinSize> {
        let ok = |n: u16| (1..=MAX_TERMINAL_DIM).contains(&n);
        (ok(rows) && ok(cols)).then_some(WinSize { rows, cols })
    }

    /// The size with both dimensions clamped into 1..=[`MAX_TERMINAL_DIM`].
    pub fn clamped(rows: u32, cols: u32) -> WinSize {
        let clamp = |n: u32| n.clamp(1, MAX_TERMINAL_DIM as u32) as u16;
        WinSize {
            rows: clamp(rows),
            cols: clamp(cols),
        }
    }

    /// Parses `ROWSxCOLS` (e.g. `24x80`); `None` if malformed or out of range.
    pub fn parse(text: &str) -> Option<WinSize> {
        let (rows, cols) = text.split_once('x')?;
        WinSize::new(rows.parse().ok()?, cols.parse().ok()?)
    }
}

impl fmt::Display for WinSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.rows, self.cols)
    }
}

/// A request to run a program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Spawn {
    /// The process id chosen by the host; unique among live processes.
    pub id: u32,
    /// The program (`argv[0]`, looked up in `PATH` if it has no `/`) and its
    /// arguments. Linux arguments are bytes, not necessarily UTF-8.
    pub argv: Vec<Vec<u8>>,
    /// Variables set on top of the agent's base environment.
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// Working directory; `None` means the agent's (`/` in the guest).
    pub cwd: Option<Vec<u8>>,
    /// The user to run as: a name from the guest's `/etc/passwd`, a uid
    /// (`"1000"`) or `uid:gid` (`"1000:100"`); `None` means the agent's
    /// user (root). `scripts/starina exec --user` sets it.
    pub user: Option<Vec<u8>>,
    /// Run on a pseudo-terminal of this size (see "Terminals" above);
    /// `None` runs on pipes.
    pub terminal: Option<WinSize>,
}

impl Spawn {
    /// A spawn request from string arguments, with no extra environment.
    pub fn new(id: u32, argv: &[&str]) -> Self {
        Spawn {
            id,
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: Vec::new(),
            cwd: None,
            user: None,
            terminal: None,
        }
    }
}

/// Why bytes did not decode into a frame, or a frame did not encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtoError {
    /// `len` is above the limit. Fatal: the stream is out of sync.
    FrameTooLarge { len: usize, max: usize },
    /// `len` is below [`HEADER_LEN`]. Fatal: the stream is out of sync.
    FrameTooShort { len: usize },
    /// The type byte names no frame; the frame was skipped.
    UnknownType(u8),
    /// The payload ended inside a field; the frame was skipped.
    Truncated { frame_type: u8 },
    /// The payload has bytes after its last field; the frame was skipped.
    TrailingBytes { frame_type: u8 },
    /// A text field is not UTF-8; the frame was skipped.
    InvalidUtf8 { frame_type: u8 },
    /// A Panic frame without [`PANIC_MAGIC`]; the frame was skipped.
    BadPanicMagic,
    /// A field has a value outside its range (e.g. a protocol number that
    /// is neither TCP nor UDP); the frame was skipped.
    BadValue { frame_type: u8 },
}

impl ProtoError {
    /// Whether the decoder lost track of frame boundaries. After a fatal
    /// error a [`FrameDecoder`] yields nothing more until [`FrameDecoder::reset`].
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            ProtoError::FrameTooLarge { .. } | ProtoError::FrameTooShort { .. }
        )
    }
}

impl fmt::Display for ProtoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtoError::FrameTooLarge { len, max } => {
                write!(f, "frame length {len} is above the limit of {max} bytes")
            }
            ProtoError::FrameTooShort { len } => {
                write!(
                    f,
                    "frame length {len} is below the {HEADER_LEN}-byte header"
                )
            }
            ProtoError::UnknownType(t) => write!(f, "unknown frame type {t:#04x}"),
            ProtoError::Truncated { frame_type } => {
                write!(
                    f,
                    "frame type {frame_type:#04x}: payload ends inside a field"
                )
            }
            ProtoError::TrailingBytes { frame_type } => {
                write!(
                    f,
                    "frame type {frame_type:#04x}: bytes after the last field"
                )
            }
            ProtoError::InvalidUtf8 { frame_type } => {
                write!(f, "frame type {frame_type:#04x}: text field is not UTF-8")
            }
            ProtoError::BadPanicMagic => write!(f, "panic frame without the magic value"),
            ProtoError::BadValue { frame_type } => {
                write!(f, "frame type {frame_type:#04x}: a field is out of range")
            }
        }
    }
}

impl core::error::Error for ProtoError {}

mod ty {
    pub const SPAWN: u8 = 0x01;
    pub const STDIN: u8 = 0x02;
    pub const STDIN_CLOSE: u8 = 0x03;
    pub const KILL: u8 = 0x04;
    pub const PING: u8 = 0x05;
    pub const RESIZE: u8 = 0x06;
    pub const PANIC: u8 = 0x0f;
    pub const READY: u8 = 0x81;
    pub const STARTED: u8 = 0x82;
    pub const STDOUT: u8 = 0x83;
    pub const STDERR: u8 = 0x84;
    pub const EXITED: u8 = 0x85;
    pub const SIGNALED: u8 = 0x86;
    pub const SPAWN_FAILED: u8 = 0x87;
    pub const PONG: u8 = 0x88;
    pub const STDIN_ACK: u8 = 0x89;
    pub const LISTENING: u8 = 0x8a;
    pub const NATIVE_SPAWN: u8 = 0x8b;
    pub const NATIVE_STDIN: u8 = 0x8c;
    pub const NATIVE_STDIN_CLOSE: u8 = 0x8d;
    pub const NATIVE_KILL: u8 = 0x8e;
    pub const NATIVE_OUTPUT_ACK: u8 = 0x8f;
    pub const NATIVE_STDOUT: u8 = 0x11;
    pub const NATIVE_STDERR: u8 = 0x12;
    pub const NATIVE_EXITED: u8 = 0x13;
    pub const NATIVE_SPAWN_FAILED: u8 = 0x14;
    pub const NATIVE_STDIN_ACK: u8 = 0x15;
}

impl Frame {
    /// The process id (or nonce) the frame carries in its header.
    pub fn id(&self) -> u32 {
        match self {
            Frame::Spawn(s) => s.id,
            Frame::Stdin { id, .. }
            | Frame::StdinClose { id }
            | Frame::Kill { id, .. }
            | Frame::Resize { id, .. }
            | Frame::Started { id, .. }
            | Frame::Stdout { id, .. }
            | Frame::Stderr { id, .. }
            | Frame::Exited { id, .. }
            | Frame::Signaled { id, .. }
            | Frame::SpawnFailed { id, .. }
            | Frame::StdinAck { id, .. }
            | Frame::NativeStdin { id, .. }
            | Frame::NativeStdinClose { id }
            | Frame::NativeKill { id }
            | Frame::NativeOutputAck { id, .. }
            | Frame::NativeStdout { id, .. }
            | Frame::NativeStderr { id, .. }
            | Frame::NativeExited { id, .. }
            | Frame::NativeSpawnFailed { id, .. }
            | Frame::NativeStdinAck { id, .. } => *id,
            Frame::NativeSpawn(s) => s.id,
            Frame::Ping { nonce } | Frame::Pong { nonce } => *nonce,
            Frame::Panic | Frame::Ready { .. } | Frame::Listening { .. } => 0,
        }
    }

    fn frame_type(&self) -> u8 {
        match self {
            Frame::Spawn(_) => ty::SPAWN,
            Frame::Stdin { .. } => ty::STDIN,
            Frame::StdinClose { .. } => ty::STDIN_CLOSE,
            Frame::Kill { .. } => ty::KILL,
            Frame::Ping { .. } => ty::PING,
            Frame::Resize { .. } => ty::RESIZE,
            Frame::Panic => ty::PANIC,
            Frame::Ready { .. } => ty::READY,
            Frame::Started { .. } => ty::STARTED,
            Frame::Stdout { .. } => ty::STDOUT,
            Frame::Stderr { .. } => ty::STDERR,
            Frame::Exited { .. } => ty::EXITED,
            Frame::Signaled { .. } => ty::SIGNALED,
            Frame::SpawnFailed { .. } => ty::SPAWN_FAILED,
            Frame::Pong { .. } => ty::PONG,
            Frame::StdinAck { .. } => ty::STDIN_ACK,
            Frame::Listening { .. } => ty::LISTENING,
            Frame::NativeSpawn(_) => ty::NATIVE_SPAWN,
            Frame::NativeStdin { .. } => ty::NATIVE_STDIN,
            Frame::NativeStdinClose { .. } => ty::NATIVE_STDIN_CLOSE,
            Frame::NativeKill { .. } => ty::NATIVE_KILL,
            Frame::NativeOutputAck { .. } => ty::NATIVE_OUTPUT_ACK,
            Frame::NativeStdout { .. } => ty::NATIVE_STDOUT,
            Frame::NativeStderr { .. } => ty::NATIVE_STDERR,
            Frame::NativeExited { .. } => ty::NATIVE_EXITED,
            Frame::NativeSpawnFailed { .. } => ty::NATIVE_SPAWN_FAILED,
            Frame::NativeStdinAck { .. } => ty::NATIVE_STDIN_ACK,
        }
    }

    /// The frame's `len`: bytes after the length prefix. Saturates instead
    /// of overflowing, so a huge frame is measured without being built.
    pub fn encoded_len(&self) -> usize {
        let field = |b: &[u8]| b.len().saturating_add(4);
        let payload = match self {
            Frame::Spawn(s) => {
                let argv = s
                    .argv
                    .iter()
                    .fold(4usize, |n, a| n.saturating_add(field(a)));
                let env = s.env.iter().fold(4usize, |n, (k, v)| {
                    n.saturating_add(field(k)).saturating_add(field(v))
                });
                let optional =
                    |o: &Option<Vec<u8>>| o.as_deref().map_or(1, |b| field(b).saturating_add(1));
                // has_terminal, rows, cols: only for a terminal.
                let terminal = if s.terminal.is_some() { 5 } else { 0 };
                argv.saturating_add(env)
                    .saturating_add(optional(&s.cwd))
                    .saturating_add(optional(&s.user))
                    .saturating_add(terminal)
            }
            Frame::Stdin { data, .. }
            | Frame::Stdout { data, .. }
            | Frame::Stderr { data, .. }
            | Frame::NativeStdin { data, .. }
            | Frame::NativeStdout { data, .. }
            | Frame::NativeStderr { data, .. } => data.len(),
            Frame::NativeSpawn(s) => {
                let argv = s
                    .argv
                    .iter()
                    .fold(4usize, |n, a| n.saturating_add(field(a.as_bytes())));
                s.vars.iter().fold(argv.saturating_add(4), |n, (k, v)| {
                    n.saturating_add(field(k.as_bytes()))
                        .saturating_add(field(v.as_bytes()))
                })
            }
            Frame::NativeSpawnFailed { reason, .. } => field(reason.as_bytes()).saturating_add(4),
            Frame::NativeOutputAck { .. }
            | Frame::NativeExited { .. }
            | Frame::NativeStdinAck { .. } => 4,
            Frame::NativeStdinClose { .. } | Frame::NativeKill { .. } => 0,
            Frame::Ready { kernel_release } => field(kernel_release.as_bytes()),
            Frame::SpawnFailed { msg, .. } => field(msg.as_bytes()).saturating_add(4),
            // proto, port, open, process.
            Frame::Listening { process, .. } => field(process.as_bytes()).saturating_add(1 + 2 + 1),
            Frame::Kill { .. }
            | Frame::Panic
            | Frame::Started { .. }
            | Frame::StdinAck { .. }
            | Frame::Exited { .. }
            | Frame::Signaled { .. }
            | Frame::Resize { .. } => 4,
            Frame::StdinClose { .. } | Frame::Ping { .. } | Frame::Pong { .. } => 0,
        };
        payload.saturating_add(HEADER_LEN)
    }

    /// Appends the encoded frame to `out`. Fails with
    /// [`ProtoError::FrameTooLarge`] (leaving `out` as it was, and before
    /// copying anything) if the frame would be longer than
    /// [`MAX_FRAME_LEN`]: e.g. a Spawn whose argv and environment add up to
    /// more than 1 MiB.
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        let len = self.encoded_len();
        if len > MAX_FRAME_LEN {
            return Err(ProtoError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        let start = out.len();
        out.reserve(LEN_PREFIX + len);
        out.extend_from_slice(&(len as u32).to_le_bytes());
        out.push(self.frame_type());
        out.extend_from_slice(&self.id().to_le_bytes());
        self.put_payload(out);
        debug_assert_eq!(out.len() - start, LEN_PREFIX + len);
        Ok(())
    }

    fn put_payload(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Spawn(s) => {
                put_u32(out, s.argv.len());
                for arg in &s.argv {
                    put_bytes(out, arg);
                }
                put_u32(out, s.env.len());
                for (key, value) in &s.env {
                    put_bytes(out, key);
                    put_bytes(out, value);
                }
                put_optional(out, s.cwd.as_deref());
                put_optional(out, s.user.as_deref());
                if let Some(size) = s.terminal {
                    out.push(1);
                    put_size(out, size);
                }
            }
            Frame::Resize { size, .. } => put_size(out, *size),
            Frame::Stdin { data, .. } | Frame::Stdout { data, .. } | Frame::Stderr { data, .. } => {
                out.extend_from_slice(data)
            }
            Frame::Kill { signal, .. } => out.extend_from_slice(&signal.to_le_bytes()),
            Frame::Panic => out.extend_from_slice(&PANIC_MAGIC.to_le_bytes()),
            Frame::Ready { kernel_release } => put_bytes(out, kernel_release.as_bytes()),
            Frame::Started { pid, .. } => out.extend_from_slice(&pid.to_le_bytes()),
            Frame::StdinAck { bytes, .. } => out.extend_from_slice(&bytes.to_le_bytes()),
            Frame::Exited { code, .. } => out.extend_from_slice(&code.to_le_bytes()),
            Frame::Signaled { signal, .. } => out.extend_from_slice(&signal.to_le_bytes()),
            Frame::SpawnFailed { errno, msg, .. } => {
                out.extend_from_slice(&errno.to_le_bytes());
                put_bytes(out, msg.as_bytes());
            }
            Frame::Listening {
                proto,
                port,
                open,
                process,
            } => {
                out.push(proto.number());
                out.extend_from_slice(&port.to_le_bytes());
                out.push(u8::from(*open));
                put_bytes(out, process.as_bytes());
            }
            Frame::NativeSpawn(s) => {
                put_u32(out, s.argv.len());
                for arg in &s.argv {
                    put_bytes(out, arg.as_bytes());
                }
                put_u32(out, s.vars.len());
                for (key, value) in &s.vars {
                    put_bytes(out, key.as_bytes());
                    put_bytes(out, value.as_bytes());
                }
            }
            Frame::NativeStdin { data, .. }
            | Frame::NativeStdout { data, .. }
            | Frame::NativeStderr { data, .. } => out.extend_from_slice(data),
            Frame::NativeOutputAck { bytes, .. } | Frame::NativeStdinAck { bytes, .. } => {
                out.extend_from_slice(&bytes.to_le_bytes())
            }
            Frame::NativeExited { status, .. } => out.extend_from_slice(&status.to_le_bytes()),
            Frame::NativeSpawnFailed { status, reason, .. } => {
                out.extend_from_slice(&status.to_le_bytes());
                put_bytes(out, reason.as_bytes());
            }
            Frame::StdinClose { .. }
            | Frame::Ping { .. }
            | Frame::Pong { .. }
            | Frame::NativeStdinClose { .. }
            | Frame::NativeKill { .. } => {}
        }
    }

    /// The encoded frame as a new buffer.
    pub fn encode(&self) -> Result<Vec<u8>, ProtoError> {
        let mut out = Vec::new();
        self.encode_into(&mut out)?;
        Ok(out)
    }

    /// Decodes one frame body (type, id, payload: what follows `len`).
    pub fn decode_body(body: &[u8]) -> Result<Frame, ProtoError> {
        if body.len() < HEADER_LEN {
            return Err(ProtoError::FrameTooShort { len: body.len() });
        }
        let frame_type = body[0];
        let id = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
        let mut r = Reader {
            rest: &body[HEADER_LEN..],
            frame_type,
        };
        let frame = match frame_type {
            ty::SPAWN => {
                let argc = r.u32()?;
                let mut argv = Vec::new();
                for _ in 0..argc {
                    argv.push(r.bytes()?.to_vec());
                }
                let envc = r.u32()?;
                let mut env = Vec::new();
                for _ in 0..envc {
                    let key = r.bytes()?.to_vec();
                    let value = r.bytes()?.to_vec();
                    env.push((key, value));
                }
                let cwd = match r.u8()? {
                    0 => None,
                    _ => Some(r.bytes()?.to_vec()),
                };
                // Absent in frames from older encoders: the agent's user.
                let user = if r.rest.is_empty() {
                    None
                } else {
                    match r.u8()? {
                        0 => None,
                        1 => Some(r.bytes()?.to_vec()),
                        _ => return Err(ProtoError::BadValue { frame_type }),
                    }
                };
                // Absent unless the request is for a terminal.
                let terminal = if r.rest.is_empty() {
                    None
                } else {
                    match r.u8()? {
                        0 => None,
                        1 => Some(r.size()?),
                        _ => return Err(ProtoError::BadValue { frame_type }),
                    }
                };
                Frame::Spawn(Spawn {
                    id,
                    argv,
                    env,
                    cwd,
                    user,
                    terminal,
                })
            }
            ty::STDIN => Frame::Stdin {
                id,
                data: r.rest().to_vec(),
            },
            ty::STDIN_CLOSE => Frame::StdinClose { id },
            ty::KILL => Frame::Kill {
                id,
                signal: r.i32()?,
            },
            ty::PING => Frame::Ping { nonce: id },
            ty::RESIZE => Frame::Resize {
                id,
                size: r.size()?,
            },
            ty::PANIC => {
                if r.u32()? != PANIC_MAGIC {
                    return Err(ProtoError::BadPanicMagic);
                }
                Frame::Panic
            }
            ty::READY => Frame::Ready {
                kernel_release: r.str()?,
            },
            ty::STARTED => Frame::Started { id, pid: r.u32()? },
            ty::STDOUT => Frame::Stdout {
                id,
                data: r.rest().to_vec(),
            },
            ty::STDERR => Frame::Stderr {
                id,
                data: r.rest().to_vec(),
            },
            ty::EXITED => Frame::Exited { id, code: r.i32()? },
            ty::SIGNALED => Frame::Signaled {
                id,
                signal: r.i32()?,
            },
            ty::SPAWN_FAILED => Frame::SpawnFailed {
                id,
                errno: r.i32()?,
                msg: r.str()?,
            },
            ty::PONG => Frame::Pong { nonce: id },
            ty::STDIN_ACK => Frame::StdinAck {
                id,
                bytes: r.u32()?,
            },
            ty::LISTENING => {
                let bad = ProtoError::BadValue { frame_type };
                let proto = Proto::from_number(r.u8()?).ok_or(bad.clone())?;
                let port = r.u16()?;
                let open = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(bad),
                };
                Frame::Listening {
                    proto,
                    port,
                    open,
                    process: r.str()?,
                }
            }
            ty::NATIVE_SPAWN => {
                let argc = r.u32()?;
                let mut argv = Vec::new();
                for _ in 0..argc {
                    argv.push(r.str()?);
                }
                let varc = r.u32()?;
                let mut vars = Vec::new();
                for _ in 0..varc {
                    let key = r.str()?;
                    vars.push((key, r.str()?));
                }
                Frame::NativeSpawn(NativeSpawn { id, argv, vars })
            }
            ty::NATIVE_STDIN => Frame::NativeStdin {
                id,
                data: r.rest().to_vec(),
            },
            ty::NATIVE_STDIN_CLOSE => Frame::NativeStdinClose { id },
            ty::NATIVE_KILL => Frame::NativeKill { id },
            ty::NATIVE_OUTPUT_ACK => Frame::NativeOutputAck {
                id,
                bytes: r.u32()?,
            },
            ty::NATIVE_STDOUT => Frame::NativeStdout {
                id,
                data: r.rest().to_vec(),
            },
            ty::NATIVE_STDERR => Frame::NativeStderr {
                id,
                data: r.rest().to_vec(),
            },
            ty::NATIVE_EXITED => Frame::NativeExited {
                id,
                status: r.i32()?,
            },
            ty::NATIVE_SPAWN_FAILED => Frame::NativeSpawnFailed {
                id,
                status: r.i32()?,
                reason: r.str()?,
            },
            ty::NATIVE_STDIN_ACK => Frame::NativeStdinAck {
                id,
                bytes: r.u32()?,
            },
            other => return Err(ProtoError::UnknownType(other)),
        };
        if !r.rest.is_empty() {
            return Err(ProtoError::TrailingBytes { frame_type });
        }
        Ok(frame)
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths above u32::MAX cannot occur: encode_into refuses frames above
    // the cap, which is far below it, before writing anything.
    out.extend_from_slice(&(n.min(u32::MAX as usize) as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
}

fn put_size(out: &mut Vec<u8>, size: WinSize) {
    out.extend_from_slice(&size.rows.to_le_bytes());
    out.extend_from_slice(&size.cols.to_le_bytes());
}

/// `u8` present (0 or 1), then the `bytes` if present.
fn put_optional(out: &mut Vec<u8>, field: Option<&[u8]>) {
    match field {
        Some(bytes) => {
            out.push(1);
            put_bytes(out, bytes);
        }
        None => out.push(0),
    }
}

/// Bounds-checked reads from a payload. Counts are never trusted for
/// allocation: every element is read before it is stored.
struct Reader<'a> {
    rest: &'a [u8],
    frame_type: u8,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtoError> {
        if self.rest.len() < n {
            return Err(ProtoError::Truncated {
                frame_type: self.frame_type,
            });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ProtoError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, ProtoError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    /// `u16` rows, `u16` cols, each in 1..=[`MAX_TERMINAL_DIM`].
    fn size(&mut self) -> Result<WinSize, ProtoError> {
        let (rows, cols) = (self.u16()?, self.u16()?);
        WinSize::new(rows, cols).ok_or(ProtoError::BadValue {
            frame_type: self.frame_type,
        })
    }

    fn u32(&mut self) -> Result<u32, ProtoError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, ProtoError> {
        Ok(self.u32()? as i32)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtoError> {
        let n = self.u32()? as usize;
        self.take(n)
    }

    fn str(&mut self) -> Result<String, ProtoError> {
        let frame_type = self.frame_type;
        let bytes = self.bytes()?;
        core::str::from_utf8(bytes)
            .map(String::from)
            .map_err(|_| ProtoError::InvalidUtf8 { frame_type })
    }

    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.rest)
    }
}

/// Turns a byte stream, fed in pieces of any size, into frames.
///
/// ```
/// use starina_bridge::process::{Frame, FrameDecoder};
/// let bytes = Frame::Ping { nonce: 7 }.encode().unwrap();
/// let mut decoder = FrameDecoder::new();
/// decoder.push(&bytes[..3]);
/// assert!(decoder.next().is_none()); // not a whole frame yet
/// decoder.push(&bytes[3..]);
/// assert_eq!(decoder.next(), Some(Ok(Frame::Ping { nonce: 7 })));
/// ```
///
/// A frame whose payload is malformed yields one `Err` and decoding goes on
/// with the next frame. A length out of range is fatal (see
/// [`ProtoError::is_fatal`]): it yields one `Err`, then the decoder drops its
/// input and yields nothing, whatever bytes follow, until
/// [`FrameDecoder::reset`]. The caller should then close the link: the bytes
/// that follow may be the rest of an oversized frame, whose payload can look
/// like any frame.
#[derive(Debug)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    /// Bytes of `buf` already consumed; compacted lazily.
    start: usize,
    max_frame_len: usize,
    broken: bool,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameDecoder {
    /// A decoder that accepts frames up to [`MAX_FRAME_LEN`].
    pub fn new() -> Self {
        Self::with_max_frame_len(MAX_FRAME_LEN)
    }

    /// A decoder that accepts frames whose `len` is at most `max`.
    pub fn with_max_frame_len(max: usize) -> Self {
        FrameDecoder {
            buf: Vec::new(),
            start: 0,
            max_frame_len: max.max(HEADER_LEN),
            broken: false,
        }
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next frame, if a whole one has arrived.
    #[allow(clippy::should_implement_trait)] // Not an Iterator: push() refills it.
    pub fn next(&mut self) -> Option<Result<Frame, ProtoError>> {
        if self.broken {
            return None;
        }
        let avail = &self.buf[self.start..];
        if avail.len() < LEN_PREFIX {
            return None;
        }
        let len = u32::from_le_bytes([avail[0], avail[1], avail[2], avail[3]]) as usize;
        let fatal = if len < HEADER_LEN {
            Some(ProtoError::FrameTooShort { len })
        } else if len > self.max_frame_len {
            Some(ProtoError::FrameTooLarge {
                len,
                max: self.max_frame_len,
            })
        } else {
            None
        };
        if let Some(err) = fatal {
            self.broken = true;
            self.buf = Vec::new();
            self.start = 0;
            return Some(Err(err));
        }
        if avail.len() < LEN_PREFIX + len {
            return None;
        }
        let body = &avail[LEN_PREFIX..LEN_PREFIX + len];
        let result = Frame::decode_body(body);
        self.start += LEN_PREFIX + len;
        Some(result)
    }

    /// Whether a fatal error stopped the decoder.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Forgets all input and any fatal error. Only for a point that cannot
    /// be inside a frame, i.e. a new connection: never to resume the stream
    /// that broke.
    pub fn reset(&mut self) {
        self.buf.clear();
        self.start = 0;
        self.broken = false;
    }

    /// Bytes received but not yet returned as frames.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// The sending side's count of one process's stdin window (see
/// [`STDIN_WINDOW`]): how many bytes may go out now.
///
/// ```
/// use starina_bridge::process::{StdinWindow, STDIN_WINDOW};
/// let mut w = StdinWindow::new();
/// assert_eq!(w.available(), STDIN_WINDOW);
/// w.sent(1000);
/// assert_eq!(w.available(), STDIN_WINDOW - 1000);
/// w.acked(1000); // a StdinAck { bytes: 1000 } came back
/// assert_eq!(w.available(), STDIN_WINDOW);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StdinWindow {
    /// Bytes sent and not yet acknowledged.
    unacked: usize,
}

impl StdinWindow {
    /// A full window, as every process starts with.
    pub const fn new() -> Self {
        StdinWindow { unacked: 0 }
    }

    /// How many bytes of stdin may be sent now.
    pub fn available(&self) -> usize {
        STDIN_WINDOW.saturating_sub(self.unacked)
    }

    /// Whether nothing may be sent until an acknowledgement comes.
    pub fn is_closed(&self) -> bool {
        self.available() == 0
    }

    /// Bytes sent and not yet acknowledged.
    pub fn unacked(&self) -> usize {
        self.unacked
    }

    /// Records `n` bytes sent as `Stdin` data. The caller sends at most
    /// [`StdinWindow::available`] bytes.
    pub fn sent(&mut self, n: usize) {
        self.unacked = self.unacked.saturating_add(n);
    }

    /// Records a [`Frame::StdinAck`]. More than was sent is capped: a stale
    /// or bogus acknowledgement never opens the window beyond its size.
    pub fn acked(&mut self, bytes: u32) {
        self.unacked = self.unacked.saturating_sub(bytes as usize);
    }
}

/// The host side of one process's stdin: data waiting for the window, and
/// the close that goes after it. Whoever sends `Stdin` to the agent (the
/// linux server) keeps one per process:
///
/// ```
/// use starina_bridge::process::{Frame, StdinOutbox, MAX_DATA_CHUNK, STDIN_WINDOW};
/// let mut stdin = StdinOutbox::new();
/// stdin.push(&vec![b'y'; STDIN_WINDOW + 10]);
/// let mut sent = 0;
/// while let Some(frame) = stdin.next_frame(7) {
///     let Frame::Stdin { data, .. } = frame else { unreachable!() };
///     assert!(data.len() <= MAX_DATA_CHUNK);
///     sent += data.len();
/// }
/// assert_eq!(sent, STDIN_WINDOW); // the window is full...
/// assert_eq!(stdin.pending(), 10); // ...so stop reading the client
/// stdin.acked(10); // the agent's StdinAck
/// assert_eq!(stdin.next_frame(7), Some(Frame::Stdin { id: 7, data: vec![b'y'; 10] }));
/// ```
#[derive(Clone, Debug, Default)]
pub struct StdinOutbox {
    window: StdinWindow,
    pending: VecDeque<u8>,
    /// StdinClose goes once `pending` is empty.
    close: bool,
    close_sent: bool,
}

impl StdinOutbox {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues stdin data from the client. The caller bounds what waits:
    /// while [`StdinOutbox::pending`] is not zero it reads no more stdin.
    pub fn push(&mut self, data: &[u8]) {
        if !self.close {
            self.pending.extend(data);
        }
    }

    /// The client closed stdin: `StdinClose` follows the data.
    pub fn close(&mut self) {
        self.close = true;
    }

    /// Records the agent's [`Frame::StdinAck`].
    pub fn acked(&mut self, bytes: u32) {
        self.window.acked(bytes);
    }

    /// Bytes waiting for the window.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The next frame that may go to the agent now for process `id`:
    /// `Stdin` chunks within the window, then `StdinClose` once.
    pub fn next_frame(&mut self, id: u32) -> Option<Frame> {
        let n = self
            .pending
            .len()
            .min(MAX_DATA_CHUNK)
            .min(self.window.available());
        if n > 0 {
            self.window.sent(n);
            let data = self.pending.drain(..n).collect();
            return Some(Frame::Stdin { id, data });
        }
        if self.close && !self.close_sent && self.pending.is_empty() {
            self.close_sent = true;
            return Some(Frame::StdinClose { id });
        }
        None
    }
}

#[cfg(test)]
#[path = "process_native_tests.rs"]
mod native_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn all_frames() -> Vec<Frame> {
        vec![
            Frame::Spawn(Spawn {
                id: 1,
                argv: vec![b"/bin/sh".to_vec(), b"-c".to_vec(), vec![0xff, 0, 1]],
                env: vec![(b"A".to_vec(), b"1".to_vec()), (b"EMPTY".to_vec(), vec![])],
                cwd: Some(b"/tmp".to_vec()),
                user: Some(b"nobody".to_vec()),
                terminal: None,
            }),
            Frame::Spawn(Spawn {
                terminal: WinSize::new(24, 80),
                ..Spawn::new(2, &["bash", "-l"])
            }),
            Frame::Spawn(Spawn {
                user: Some(b"starina".to_vec()),
                terminal: WinSize::new(MAX_TERMINAL_DIM, 1),
                ..Spawn::new(2, &["vi"])
            }),
            Frame::Resize {
                id: 3,
                size: WinSize {
                    rows: 50,
                    cols: 132,
                },
            },
            Frame::Spawn(Spawn {
                user: Some(b"1000:100".to_vec()),
                ..Spawn::new(2, &["id"])
            }),
            Frame::Spawn(Spawn::new(2, &["uname", "-a"])),
            Frame::Spawn(Spawn::default()),
            Frame::Stdin {
                id: 3,
                data: b"hello\n".to_vec(),
            },
            Frame::Stdin {
                id: 3,
                data: vec![],
            },
            Frame::StdinClose { id: 3 },
            Frame::Kill { id: 4, signal: 9 },
            Frame::Kill { id: 4, signal: -1 },
            Frame::Ping { nonce: 0xdead_beef },
            Frame::Panic,
            Frame::Ready {
                kernel_release: "6.12.117".into(),
            },
            Frame::Started { id: 5, pid: 42 },
            Frame::Stdout {
                id: 5,
                data: vec![0; 1000],
            },
            Frame::Stderr {
                id: 5,
                data: b"oops".to_vec(),
            },
            Frame::Exited { id: 5, code: 127 },
            Frame::Exited { id: 5, code: -3 },
            Frame::Signaled { id: 6, signal: 15 },
            Frame::SpawnFailed {
                id: 7,
                errno: 2,
                msg: "no such directory: /nope ✗".into(),
            },
            Frame::Pong { nonce: 9 },
            Frame::StdinAck {
                id: 5,
                bytes: 65536,
            },
            Frame::Listening {
                proto: Proto::Tcp,
                port: 8080,
                open: true,
                process: "python3".into(),
            },
            Frame::Listening {
                proto: Proto::Udp,
                port: 65535,
                open: false,
                process: String::new(),
            },
        ]
    }

    #[test]
    fn round_trip_each_frame() {
        for frame in all_frames() {
            let bytes = frame.encode().unwrap();
            let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(len + LEN_PREFIX, bytes.len(), "{frame:?}");
            assert_eq!(len, frame.encoded_len(), "{frame:?}");
            assert_eq!(Frame::decode_body(&bytes[4..]), Ok(frame.clone()));
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            assert_eq!(d.next(), Some(Ok(frame)));
            assert_eq!(d.next(), None);
            assert_eq!(d.pending(), 0);
        }
    }

    #[test]
    fn header_layout_is_stable() {
        let bytes = Frame::Exited {
            id: 0x0102_0304,
            code: 1,
        }
        .encode()
        .unwrap();
        assert_eq!(bytes, [9, 0, 0, 0, 0x85, 4, 3, 2, 1, 1, 0, 0, 0]);
    }

    #[test]
    fn listening_layout_is_stable() {
        let bytes = Frame::Listening {
            proto: Proto::Udp,
            port: 0x0135,
            open: true,
            process: "dns".into(),
        }
        .encode()
        .unwrap();
        assert_eq!(
            bytes,
            [16, 0, 0, 0, 0x8a, 0, 0, 0, 0, 17, 0x35, 0x01, 1, 3, 0, 0, 0, b'd', b'n', b's']
        );
    }

    #[test]
    fn spawn_layout_is_stable() {
        let mut spawn = Spawn::new(3, &["id"]);
        // argc 1, "id", envc 0, no cwd, no user.
        let payload = [1, 0, 0, 0, 2, 0, 0, 0, b'i', b'd', 0, 0, 0, 0, 0, 0];
        assert_eq!(Frame::Spawn(spawn.clone()).encode().unwrap()[9..], payload);
        spawn.user = Some(b"nobody".to_vec());
        let bytes = Frame::Spawn(spawn).encode().unwrap();
        assert_eq!(bytes[9..24], payload[..15]);
        assert_eq!(bytes[24..], *b"\x01\x06\0\0\0nobody");
    }

    #[test]
    fn terminal_layout_is_stable() {
        let spawn = Spawn {
            terminal: WinSize::new(24, 80),
            ..Spawn::new(3, &["sh"])
        };
        let bytes = Frame::Spawn(spawn).encode().unwrap();
        // argc 1, "sh", envc 0, no cwd, no user, a 24x80 terminal.
        assert_eq!(
            bytes[9..],
            [1, 0, 0, 0, 2, 0, 0, 0, b's', b'h', 0, 0, 0, 0, 0, 0, 1, 24, 0, 80, 0]
        );
        let resize = Frame::Resize {
            id: 3,
            size: WinSize {
                rows: 0x0102,
                cols: 7,
            },
        };
        assert_eq!(
            resize.encode().unwrap(),
            [9, 0, 0, 0, 0x06, 3, 0, 0, 0, 2, 1, 7, 0]
        );
    }

    #[test]
    fn terminal_sizes_are_checked() {
        let head = [1, 0, 0, 0, 2, 0, 0, 0, b's', b'h', 0, 0, 0, 0, 0, 0];
        let with = |tail: &[u8]| {
            let mut payload = head.to_vec();
            payload.extend_from_slice(tail);
            Frame::decode_body(&raw(ty::SPAWN, 1, &payload)[4..])
        };
        let bad = Err(ProtoError::BadValue {
            frame_type: ty::SPAWN,
        });
        assert_eq!(with(&[1, 0, 0, 80, 0]), bad); // zero rows
        assert_eq!(with(&[1, 24, 0, 0xff, 0xff]), bad); // 65535 columns
        assert_eq!(with(&[2, 24, 0, 80, 0]), bad); // has_terminal 2
        assert!(matches!(
            with(&[1, 24, 0]),
            Err(ProtoError::Truncated { .. })
        ));
        assert_eq!(with(&[0]), Ok(Frame::Spawn(Spawn::new(1, &["sh"]))));
        let resize = |payload: &[u8]| Frame::decode_body(&raw(ty::RESIZE, 1, payload)[4..]);
        let bad = Err(ProtoError::BadValue {
            frame_type: ty::RESIZE,
        });
        assert_eq!(resize(&[0, 0, 80, 0]), bad);
        assert_eq!(resize(&[1, 0x10, 80, 0]), bad); // 4097 rows
        assert!(matches!(resize(&[1, 0]), Err(ProtoError::Truncated { .. })));
        assert_eq!(
            WinSize::clamped(0, 100_000),
            WinSize {
                rows: 1,
                cols: 4096
            }
        );
        assert_eq!(WinSize::parse("24x80"), WinSize::new(24, 80));
        assert_eq!(WinSize::parse("0x80"), None);
        assert_eq!(WinSize::parse("24"), None);
        assert_eq!(WinSize::parse("24x80x1"), None);
        assert_eq!(WinSize::new(24, 80).unwrap().to_string(), "24x80");
    }

    /// A Spawn as encoders wrote it before the user field: it ends after
    /// the cwd, and runs as the agent's user.
    #[test]
    fn spawn_without_the_user_field_decodes() {
        let old = raw(
            ty::SPAWN,
            4,
            &[
                1, 0, 0, 0, 2, 0, 0, 0, b'i', b'd', 0, 0, 0, 0, 1, 1, 0, 0, 0, b'/',
            ],
        );
        let want = Spawn {
            cwd: Some(b"/".to_vec()),
            ..Spawn::new(4, &["id"])
        };
        assert_eq!(Frame::decode_body(&old[4..]), Ok(Frame::Spawn(want)));
    }

    #[test]
    fn spawn_user_field_is_checked() {
        let head = [1, 0, 0, 0, 2, 0, 0, 0, b'i', b'd', 0, 0, 0, 0, 0];
        let with = |tail: &[u8]| {
            let payload = [&head[..], tail].concat();
            Frame::decode_body(&raw(ty::SPAWN, 1, &payload)[4..])
        };
        let spawn = ProtoError::BadValue {
            frame_type: ty::SPAWN,
        };
        assert_eq!(with(&[2, 0, 0, 0, 0]), Err(spawn.clone()));
        assert_eq!(
            with(&[1, 5, 0, 0, 0, b'a']),
            Err(ProtoError::Truncated {
                frame_type: ty::SPAWN
            })
        );
        // No user, no terminal, then a stray byte.
        assert_eq!(
            with(&[0, 0, 0]),
            Err(ProtoError::TrailingBytes {
                frame_type: ty::SPAWN
            })
        );
        // has_terminal 9.
        assert_eq!(with(&[1, 1, 0, 0, 0, b'a', 9]), Err(spawn.clone()));
        let ok = with(&[1, 1, 0, 0, 0, b'a']).unwrap();
        assert!(matches!(ok, Frame::Spawn(s) if s.user.as_deref() == Some(&b"a"[..])));
    }

    #[test]
    fn byte_at_a_time_stream() {
        let frames = all_frames();
        let mut stream = Vec::new();
        for f in &frames {
            f.encode_into(&mut stream).unwrap();
        }
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &stream {
            d.push(core::slice::from_ref(b));
            while let Some(r) = d.next() {
                got.push(r.unwrap());
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn uneven_chunks() {
        let frames = all_frames();
        let mut stream = Vec::new();
        for f in &frames {
            f.encode_into(&mut stream).unwrap();
        }
        for chunk in [2, 3, 7, 13, 64, 1000] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.next() {
                    got.push(r.unwrap());
                }
            }
            assert_eq!(got, frames, "chunk size {chunk}");
        }
    }

    fn raw(frame_type: u8, id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = ((HEADER_LEN + payload.len()) as u32).to_le_bytes().to_vec();
        v.push(frame_type);
        v.extend_from_slice(&id.to_le_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn malformed_payload_skips_one_frame() {
        let cases: Vec<(Vec<u8>, ProtoError)> = vec![
            (raw(0x42, 1, b"x"), ProtoError::UnknownType(0x42)),
            (
                raw(ty::EXITED, 1, &[1, 0]),
                ProtoError::Truncated {
                    frame_type: ty::EXITED,
                },
            ),
            (
                raw(ty::EXITED, 1, &[1, 0, 0, 0, 9]),
                ProtoError::TrailingBytes {
                    frame_type: ty::EXITED,
                },
            ),
            (
                raw(ty::READY, 0, &[2, 0, 0, 0, 0xc3, 0x28]),
                ProtoError::InvalidUtf8 {
                    frame_type: ty::READY,
                },
            ),
            (raw(ty::PANIC, 0, &[0, 0, 0, 0]), ProtoError::BadPanicMagic),
            (
                raw(ty::PANIC, 0, &[]),
                ProtoError::Truncated {
                    frame_type: ty::PANIC,
                },
            ),
            // argc says a billion arguments; there are none.
            (
                raw(ty::SPAWN, 1, &[0, 0, 0, 0x40]),
                ProtoError::Truncated {
                    frame_type: ty::SPAWN,
                },
            ),
            // One argument claiming 4 GiB.
            (
                raw(ty::SPAWN, 1, &[1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]),
                ProtoError::Truncated {
                    frame_type: ty::SPAWN,
                },
            ),
            (
                raw(ty::SPAWN_FAILED, 1, &[2, 0, 0, 0, 5, 0, 0, 0, b'a']),
                ProtoError::Truncated {
                    frame_type: ty::SPAWN_FAILED,
                },
            ),
            // Protocol 1 (ICMP) is neither TCP nor UDP.
            (
                raw(ty::LISTENING, 0, &[1, 0x50, 0, 1, 0, 0, 0, 0]),
                ProtoError::BadValue {
                    frame_type: ty::LISTENING,
                },
            ),
            // `open` is 0 or 1.
            (
                raw(ty::LISTENING, 0, &[6, 0x50, 0, 2, 0, 0, 0, 0]),
                ProtoError::BadValue {
                    frame_type: ty::LISTENING,
                },
            ),
            // The port is cut short.
            (
                raw(ty::LISTENING, 0, &[17, 0x50]),
                ProtoError::Truncated {
                    frame_type: ty::LISTENING,
                },
            ),
            (
                raw(ty::LISTENING, 0, &[6, 0x50, 0, 1, 1, 0, 0, 0, 0xff]),
                ProtoError::InvalidUtf8 {
                    frame_type: ty::LISTENING,
                },
            ),
            (
                raw(ty::LISTENING, 0, &[6, 0x50, 0, 1, 0, 0, 0, 0, 0]),
                ProtoError::TrailingBytes {
                    frame_type: ty::LISTENING,
                },
            ),
        ];
        for (bytes, err) in cases {
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            d.push(&Frame::Pong { nonce: 1 }.encode().unwrap());
            assert_eq!(d.next(), Some(Err(err.clone())));
            assert!(!err.is_fatal());
            assert_eq!(d.next(), Some(Ok(Frame::Pong { nonce: 1 })), "after {err}");
            assert_eq!(d.next(), None);
        }
    }

    #[test]
    fn bad_lengths_are_fatal_until_reset() {
        for len in [0u32, 4, (MAX_FRAME_LEN + 1) as u32, u32::MAX] {
            let mut d = FrameDecoder::new();
            d.push(&len.to_le_bytes());
            let err = d.next().unwrap().unwrap_err();
            assert!(err.is_fatal(), "{err}");
            assert!(d.is_broken());
            d.push(&Frame::Pong { nonce: 1 }.encode().unwrap());
            assert_eq!(d.next(), None);
            d.reset();
            d.push(&Frame::Pong { nonce: 1 }.encode().unwrap());
            assert_eq!(d.next(), Some(Ok(Frame::Pong { nonce: 1 })));
        }
    }

    #[test]
    fn custom_cap() {
        let bytes = Frame::Stdout {
            id: 1,
            data: vec![7; 100],
        }
        .encode()
        .unwrap();
        let mut d = FrameDecoder::with_max_frame_len(64);
        d.push(&bytes);
        assert_eq!(
            d.next(),
            Some(Err(ProtoError::FrameTooLarge { len: 105, max: 64 }))
        );
    }

    #[test]
    fn encode_rejects_oversized_frames() {
        let mut out = vec![1, 2, 3];
        let frame = Frame::Stdout {
            id: 1,
            data: vec![0; MAX_FRAME_LEN],
        };
        assert!(matches!(
            frame.encode_into(&mut out),
            Err(ProtoError::FrameTooLarge { .. })
        ));
        assert_eq!(out, [1, 2, 3]);
    }

    fn spawn_with(argv: Vec<Vec<u8>>, env: Vec<(Vec<u8>, Vec<u8>)>) -> Frame {
        Frame::Spawn(Spawn {
            id: 1,
            argv,
            env,
            cwd: None,
            user: None,
            terminal: None,
        })
    }

    #[test]
    fn encode_refuses_oversized_argv_and_env() {
        let big = vec![b'x'; MAX_FRAME_LEN];
        let cases = [
            spawn_with(vec![b"echo".to_vec(), big.clone()], vec![]),
            spawn_with(vec![b"env".to_vec()], vec![(b"K".to_vec(), big.clone())]),
            // Many small arguments add up too.
            spawn_with(vec![vec![b'a'; 1000]; 1100], vec![]),
        ];
        for frame in cases {
            let mut out = vec![9];
            let err = frame.encode_into(&mut out).unwrap_err();
            assert!(
                matches!(err, ProtoError::FrameTooLarge { max, len } if max == MAX_FRAME_LEN && len > max)
            );
            assert_eq!(out, [9], "nothing written");
            assert!(frame.encode().is_err());
        }
    }

    #[test]
    fn encode_accepts_a_frame_exactly_at_the_limit() {
        // Payload: argc, one (len, bytes) argument, envc, has_cwd, has_user.
        let arg = vec![b'y'; MAX_FRAME_LEN - HEADER_LEN - 4 - 4 - 4 - 1 - 1];
        let frame = spawn_with(vec![arg], vec![]);
        assert_eq!(frame.encoded_len(), MAX_FRAME_LEN);
        let bytes = frame.encode().unwrap();
        let mut d = FrameDecoder::new();
        d.push(&bytes);
        assert_eq!(d.next(), Some(Ok(frame)));
    }

    #[test]
    fn nothing_decodes_after_a_fatal_error() {
        let mut stream = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec();
        for f in all_frames() {
            f.encode_into(&mut stream).unwrap();
        }
        for chunk in [1, 5, 4096, stream.len()] {
            let mut d = FrameDecoder::new();
            let mut got = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.next() {
                    got.push(r);
                }
            }
            assert_eq!(got.len(), 1, "chunk {chunk}: {got:?}");
            assert!(got[0].as_ref().unwrap_err().is_fatal());
            assert!(d.is_broken());
            assert_eq!(d.pending(), 0, "input is dropped, not kept");
        }
    }

    /// The attack of an oversized frame: its payload carries valid frames
    /// (here Panic, Kill and Spawn), which a decoder that resynchronised
    /// after the bad length would run.
    #[test]
    fn panic_inside_an_oversized_frame_is_never_decoded() {
        let mut inner = Vec::new();
        Frame::Panic.encode_into(&mut inner).unwrap();
        Frame::Kill { id: 1, signal: 9 }
            .encode_into(&mut inner)
            .unwrap();
        Frame::Spawn(Spawn::new(2, &["reboot"]))
            .encode_into(&mut inner)
            .unwrap();
        let mut payload = Vec::new();
        while payload.len() < MAX_FRAME_LEN + 64 * 1024 {
            payload.extend_from_slice(&inner);
        }
        // As a sender without a length check would put it on the wire: an
        // argument of a Spawn, the len field above the limit.
        let body_len = HEADER_LEN + 4 + 4 + payload.len() + 4 + 1;
        let mut stream = (body_len as u32).to_le_bytes().to_vec();
        stream.push(ty::SPAWN);
        stream.extend_from_slice(&1u32.to_le_bytes());
        stream.extend_from_slice(&1u32.to_le_bytes());
        stream.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        stream.extend_from_slice(&payload);
        stream.extend_from_slice(&[0, 0, 0, 0, 0]);
        for chunk in [7, 4096, 65536] {
            let mut d = FrameDecoder::new();
            let mut frames = Vec::new();
            for piece in stream.chunks(chunk) {
                d.push(piece);
                while let Some(r) = d.next() {
                    frames.push(r);
                }
            }
            assert!(
                !frames.iter().any(|f| f.is_ok()),
                "{chunk}: decoded {frames:?}"
            );
            assert_eq!(frames.len(), 1);
        }
        // And the encoder never produces such a frame.
        let argv = vec![b"sh".to_vec(), payload];
        assert!(spawn_with(argv, vec![]).encode().is_err());
    }

    #[test]
    fn stdin_window_counts_and_caps() {
        let mut w = StdinWindow::new();
        w.sent(STDIN_WINDOW - 10);
        assert_eq!(w.available(), 10);
        assert!(!w.is_closed());
        w.sent(10);
        assert!(w.is_closed());
        w.acked(4096);
        assert_eq!(w.available(), 4096);
        assert_eq!(w.unacked(), STDIN_WINDOW - 4096);
        // A bogus acknowledgement does not open more than the window.
        w.acked(u32::MAX);
        assert_eq!(w.available(), STDIN_WINDOW);
        assert_eq!(w.unacked(), 0);
    }

    fn drain(outbox: &mut StdinOutbox, id: u32) -> Vec<Frame> {
        core::iter::from_fn(|| outbox.next_frame(id)).collect()
    }

    #[test]
    fn stdin_outbox_keeps_to_the_window_and_closes_last() {
        let mut o = StdinOutbox::new();
        let data: Vec<u8> = (0..STDIN_WINDOW * 2 + 5).map(|i| i as u8).collect();
        o.push(&data[..100]);
        o.push(&data[100..]);
        o.close();
        o.push(b"after close: dropped");
        let mut got = Vec::new();
        let mut closed = false;
        for round in 0..10 {
            let frames = drain(&mut o, 3);
            let bytes: usize = frames
                .iter()
                .map(|f| match f {
                    Frame::Stdin { id: 3, data } => {
                        assert!(data.len() <= MAX_DATA_CHUNK);
                        got.extend_from_slice(data);
                        data.len()
                    }
                    Frame::StdinClose { id: 3 } => {
                        closed = true;
                        0
                    }
                    other => panic!("{other:?}"),
                })
                .sum();
            assert!(bytes <= STDIN_WINDOW, "round {round}: {bytes}");
            if closed {
                break;
            }
            // The agent takes everything and acknowledges it.
            o.acked(bytes as u32);
        }
        assert!(closed);
        assert_eq!(got, data);
        assert_eq!(o.pending(), 0);
        assert_eq!(drain(&mut o, 3), []);
    }

    #[test]
    fn stdin_outbox_holds_data_while_the_window_is_shut() {
        let mut o = StdinOutbox::new();
        o.push(&vec![1; STDIN_WINDOW]);
        assert_eq!(drain(&mut o, 1).len(), STDIN_WINDOW / MAX_DATA_CHUNK);
        o.push(b"more");
        o.close();
        assert_eq!(drain(&mut o, 1), [], "no close before the data");
        assert_eq!(o.pending(), 4);
        o.acked(2);
        assert_eq!(
            drain(&mut o, 1),
            [Frame::Stdin {
                id: 1,
                data: b"mo".to_vec()
            }]
        );
        o.acked(2);
        assert_eq!(
            drain(&mut o, 1),
            [
                Frame::Stdin {
                    id: 1,
                    data: b"re".to_vec()
                },
                Frame::StdinClose { id: 1 }
            ]
        );
    }

    /// A small deterministic generator, so the test needs no dependencies.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        let valid: Vec<Vec<u8>> = all_frames().iter().map(|f| f.encode().unwrap()).collect();
        for _ in 0..3000 {
            let mut stream = Vec::new();
            // Mix valid frames, mutated frames and noise.
            for _ in 0..(rng.next() % 6) {
                let mut f = valid[(rng.next() as usize) % valid.len()].clone();
                match rng.next() % 4 {
                    0 => {
                        let i = (rng.next() as usize) % f.len();
                        f[i] = rng.next() as u8;
                    }
                    1 => f.truncate((rng.next() as usize) % (f.len() + 1)),
                    2 => f.extend((0..rng.next() % 16).map(|_| rng.next() as u8)),
                    _ => {}
                }
                stream.extend_from_slice(&f);
            }
            let mut d = FrameDecoder::with_max_frame_len(4096);
            for piece in stream.chunks(1 + (rng.next() as usize) % 50) {
                d.push(piece);
                // Bounded: every Some consumes input or breaks the decoder.
                for _ in 0..10_000 {
                    if d.next().is_none() {
                        break;
                    }
                }
            }
        }
    }
}
