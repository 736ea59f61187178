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
//! are about no process carry 0 ([`Frame::Ready`], [`Frame::Panic`]) or a
//! nonce ([`Frame::Ping`]/[`Frame::Pong`]).
//!
//! Payload building blocks: `bytes` is `[u32 n][n bytes]`, `str` is a `bytes`
//! that must be UTF-8, `list<T>` is `[u32 count][T; count]`.
//!
//! | type | frame | direction | payload |
//! |------|-------|-----------|---------|
//! | 0x01 | [`Frame::Spawn`] | host → guest | `list<bytes>` argv, `list<(bytes, bytes)>` env, `u8` has_cwd, `bytes` cwd (if has_cwd) |
//! | 0x02 | [`Frame::Stdin`] | host → guest | raw data (rest of the frame) |
//! | 0x03 | [`Frame::StdinClose`] | host → guest | none |
//! | 0x04 | [`Frame::Kill`] | host → guest | `i32` signal |
//! | 0x05 | [`Frame::Ping`] | host → guest | none |
//! | 0x0f | [`Frame::Panic`] | host → guest | `u32` [`PANIC_MAGIC`] |
//! | 0x81 | [`Frame::Ready`] | guest → host | `str` kernel release |
//! | 0x82 | [`Frame::Started`] | guest → host | `u32` guest pid |
//! | 0x83 | [`Frame::Stdout`] | guest → host | raw data (rest of the frame) |
//! | 0x84 | [`Frame::Stderr`] | guest → host | raw data (rest of the frame) |
//! | 0x85 | [`Frame::Exited`] | guest → host | `i32` exit code |
//! | 0x86 | [`Frame::Signaled`] | guest → host | `i32` signal |
//! | 0x87 | [`Frame::SpawnFailed`] | guest → host | `i32` errno, `str` message |
//! | 0x88 | [`Frame::Pong`] | guest → host | none |
//!
//! # Process life cycle
//!
//! `Spawn` is answered by `Started` (then any number of `Stdout`/`Stderr`,
//! then exactly one `Exited` or `Signaled`, sent after both output streams
//! reached end of file), or by one `SpawnFailed`. A program that does not
//! exist is not a `SpawnFailed`: like a shell, the agent reports it as
//! `Started` with pid 0, a message on stderr and exit code 127 (126 when the
//! program is not executable). `SpawnFailed` is for requests that cannot be
//! run at all: empty argv, a missing cwd, an id in use, no resources.
//! After the final frame the id may be reused.

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
/// The value a [`Frame::Panic`] must carry: garbage on the stream must never
/// crash the guest by accident.
pub const PANIC_MAGIC: u32 = 0x5041_4e43; // "PANC"

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
}

impl Spawn {
    /// A spawn request from string arguments, with no extra environment.
    pub fn new(id: u32, argv: &[&str]) -> Self {
        Spawn {
            id,
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: Vec::new(),
            cwd: None,
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
    pub const PANIC: u8 = 0x0f;
    pub const READY: u8 = 0x81;
    pub const STARTED: u8 = 0x82;
    pub const STDOUT: u8 = 0x83;
    pub const STDERR: u8 = 0x84;
    pub const EXITED: u8 = 0x85;
    pub const SIGNALED: u8 = 0x86;
    pub const SPAWN_FAILED: u8 = 0x87;
    pub const PONG: u8 = 0x88;
}

impl Frame {
    /// The process id (or nonce) the frame carries in its header.
    pub fn id(&self) -> u32 {
        match self {
            Frame::Spawn(s) => s.id,
            Frame::Stdin { id, .. }
            | Frame::StdinClose { id }
            | Frame::Kill { id, .. }
            | Frame::Started { id, .. }
            | Frame::Stdout { id, .. }
            | Frame::Stderr { id, .. }
            | Frame::Exited { id, .. }
            | Frame::Signaled { id, .. }
            | Frame::SpawnFailed { id, .. } => *id,
            Frame::Ping { nonce } | Frame::Pong { nonce } => *nonce,
            Frame::Panic | Frame::Ready { .. } => 0,
        }
    }

    fn frame_type(&self) -> u8 {
        match self {
            Frame::Spawn(_) => ty::SPAWN,
            Frame::Stdin { .. } => ty::STDIN,
            Frame::StdinClose { .. } => ty::STDIN_CLOSE,
            Frame::Kill { .. } => ty::KILL,
            Frame::Ping { .. } => ty::PING,
            Frame::Panic => ty::PANIC,
            Frame::Ready { .. } => ty::READY,
            Frame::Started { .. } => ty::STARTED,
            Frame::Stdout { .. } => ty::STDOUT,
            Frame::Stderr { .. } => ty::STDERR,
            Frame::Exited { .. } => ty::EXITED,
            Frame::Signaled { .. } => ty::SIGNALED,
            Frame::SpawnFailed { .. } => ty::SPAWN_FAILED,
            Frame::Pong { .. } => ty::PONG,
        }
    }

    /// Appends the encoded frame to `out`. Fails (leaving `out` as it was)
    /// if the frame would be longer than [`MAX_FRAME_LEN`].
    pub fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), ProtoError> {
        let start = out.len();
        out.extend_from_slice(&[0; LEN_PREFIX]);
        out.push(self.frame_type());
        out.extend_from_slice(&self.id().to_le_bytes());
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
                match &s.cwd {
                    Some(cwd) => {
                        out.push(1);
                        put_bytes(out, cwd);
                    }
                    None => out.push(0),
                }
            }
            Frame::Stdin { data, .. } | Frame::Stdout { data, .. } | Frame::Stderr { data, .. } => {
                out.extend_from_slice(data)
            }
            Frame::Kill { signal, .. } => out.extend_from_slice(&signal.to_le_bytes()),
            Frame::Panic => out.extend_from_slice(&PANIC_MAGIC.to_le_bytes()),
            Frame::Ready { kernel_release } => put_bytes(out, kernel_release.as_bytes()),
            Frame::Started { pid, .. } => out.extend_from_slice(&pid.to_le_bytes()),
            Frame::Exited { code, .. } => out.extend_from_slice(&code.to_le_bytes()),
            Frame::Signaled { signal, .. } => out.extend_from_slice(&signal.to_le_bytes()),
            Frame::SpawnFailed { errno, msg, .. } => {
                out.extend_from_slice(&errno.to_le_bytes());
                put_bytes(out, msg.as_bytes());
            }
            Frame::StdinClose { .. } | Frame::Ping { .. } | Frame::Pong { .. } => {}
        }
        let len = out.len() - start - LEN_PREFIX;
        if len > MAX_FRAME_LEN {
            out.truncate(start);
            return Err(ProtoError::FrameTooLarge {
                len,
                max: MAX_FRAME_LEN,
            });
        }
        out[start..start + LEN_PREFIX].copy_from_slice(&(len as u32).to_le_bytes());
        Ok(())
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
                Frame::Spawn(Spawn { id, argv, env, cwd })
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
            other => return Err(ProtoError::UnknownType(other)),
        };
        if !r.rest.is_empty() {
            return Err(ProtoError::TrailingBytes { frame_type });
        }
        Ok(frame)
    }
}

fn put_u32(out: &mut Vec<u8>, n: usize) {
    // Lengths above u32::MAX cannot occur: the frame cap is far below it, and
    // encode_into rejects the frame afterwards.
    out.extend_from_slice(&(n.min(u32::MAX as usize) as u32).to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len());
    out.extend_from_slice(bytes);
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
/// input and yields nothing until [`FrameDecoder::reset`].
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

    /// Forgets all input and any fatal error, e.g. when the peer reconnects.
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
        ]
    }

    #[test]
    fn round_trip_each_frame() {
        for frame in all_frames() {
            let bytes = frame.encode().unwrap();
            let len = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
            assert_eq!(len + LEN_PREFIX, bytes.len(), "{frame:?}");
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
