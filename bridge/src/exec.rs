//! The native process API: how a Starina component runs a Linux program
//! through the linux server, over channels and the SDK's fixed message kinds.
//!
//! # Protocol
//!
//! On its channel to the `linux` service, the client asks for a process
//! channel:
//!
//! | client → server | server → client |
//! |---|---|
//! | `Open { call_id, uri: "exec" }` | `OpenReply { call_id, handle }` (the process channel), or `Error { call_id, code, text }` (the VM is not available) |
//!
//! On the process channel, the client's first message is the request, the
//! rest is stdin:
//!
//! | client → server | meaning |
//! |---|---|
//! | `Data` (first) | the [`ExecRequest`]: argv, extra environment, working directory, user, terminal ([`ExecRequest::encode`]) |
//! | `Data` (later) | bytes for the process's stdin |
//! | `Close` | end of stdin (the process reads EOF) |
//! | `Abort { code }` | send signal `code` (1..=64) to the process; any other code sends `SIGKILL`. The exit status still follows. |
//! | `Open { call_id: 0, uri: "resize:ROWSxCOLS" }` | set the window size of the process's terminal ([`resize_uri`]); never answered. Ignored, with a log line, if the request asked for no terminal or the size is out of range. |
//! | closing the channel | the process is killed (`SIGKILL`) if it still runs; its output is dropped |
//!
//! The server answers with `Data` messages whose first byte is a tag
//! ([`Event::decode`]); the last message is `Exited`, `Signaled` or an
//! `Error`, after which the server closes the channel:
//!
//! | tag | event | rest of the body |
//! |---|---|---|
//! | `0x01` | [`Event::Stdout`] | the bytes (tag 1 and 2 are the stream's file descriptor) |
//! | `0x02` | [`Event::Stderr`] | the bytes |
//! | `0x10` | [`Event::Started`] | `u32 LE` pid in the guest; 0 when the program could not be run (exit status 127 or 126 follows, with a message on stderr, as a shell does) |
//! | `0x11` | [`Event::Exited`] | `i32 LE` exit status — final |
//! | `0x12` | [`Event::Signaled`] | `i32 LE` signal number — final |
//!
//! `Error { call_id: 0, code, text }` on the process channel means the
//! request failed and nothing more follows: a malformed request
//! (`codes::INVALID`), a request the guest refused (`codes::REFUSED`, e.g.
//! a missing working directory or an unknown user), or the guest went away
//! (`codes::UNAVAILABLE`: it crashed, and the linux server restarts it).
//!
//! A request with a terminal runs the program on a pseudo-terminal (the
//! process protocol's "Terminals"): all its output arrives as `Stdout`, and
//! `Close` sends the terminal's end-of-file character.
//!
//! Output chunks are at most [`MAX_EVENT_DATA`] bytes, so that a tagged chunk
//! fits in one channel message (16 KiB).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::process::Frame;
use crate::process::ProtoError;
use crate::process::Spawn;
use crate::process::WinSize;
use crate::process::HEADER_LEN;
use crate::process::LEN_PREFIX;

/// The `Open` URI that asks for a process channel.
pub const URI: &str = "exec";

/// The largest message body a Starina channel carries (the SDK's
/// `MESSAGE_DATA_MAX`; this crate does not depend on the SDK).
pub const MESSAGE_MAX: usize = 16 * 1024;

/// The most output bytes one event message carries (one byte goes to the tag).
pub const MAX_EVENT_DATA: usize = MESSAGE_MAX - 1;

pub mod tag {
    pub const STDOUT: u8 = 0x01;
    pub const STDERR: u8 = 0x02;
    pub const STARTED: u8 = 0x10;
    pub const EXITED: u8 = 0x11;
    pub const SIGNALED: u8 = 0x12;
}

/// The prefix of the `Open` URI that resizes a process's terminal.
pub const RESIZE_PREFIX: &str = "resize:";

/// The `Open` URI that sets the terminal's window size to `size`.
pub fn resize_uri(size: WinSize) -> String {
    format!("{RESIZE_PREFIX}{size}")
}

/// What an `Open` URI on a process channel asks for: `None` if it is not a
/// resize, `Some(None)` for a resize with a malformed or out-of-range size.
pub fn parse_resize_uri(uri: &str) -> Option<Option<WinSize>> {
    uri.strip_prefix(RESIZE_PREFIX).map(WinSize::parse)
}

/// The highest signal number an `Abort` code names (Linux's SIGRTMAX).
pub const MAX_SIGNAL: u16 = 64;
/// What `Abort` with a code outside 1..=[`MAX_SIGNAL`] sends.
pub const SIGKILL: i32 = 9;

/// The signal an `Abort { code }` on a process channel asks for.
pub fn abort_signal(code: u16) -> i32 {
    if (1..=MAX_SIGNAL).contains(&code) {
        code as i32
    } else {
        SIGKILL
    }
}

/// What to run: the first `Data` on a process channel.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExecRequest {
    /// The program (looked up in `PATH` if it has no `/`) and its arguments.
    pub argv: Vec<Vec<u8>>,
    /// Variables set on top of the guest agent's base environment
    /// (`PATH`, `HOME=/root`, `TERM`).
    pub env: Vec<(Vec<u8>, Vec<u8>)>,
    /// The working directory; `None` is `/`.
    pub cwd: Option<Vec<u8>>,
    /// The user to run as: a name from the guest's `/etc/passwd`, a uid or
    /// `uid:gid`; `None` is root. The process has that uid and gid, no
    /// supplementary groups, and `HOME` from `/etc/passwd` unless `env`
    /// sets it.
    pub user: Option<Vec<u8>>,
    /// Run on a pseudo-terminal of this size; `None` runs on pipes.
    pub terminal: Option<WinSize>,
}

impl ExecRequest {
    /// A request for `argv` with no extra environment, run in `/`.
    pub fn new(argv: &[&str]) -> Self {
        ExecRequest {
            argv: argv.iter().map(|a| a.as_bytes().to_vec()).collect(),
            env: Vec::new(),
            cwd: None,
            user: None,
            terminal: None,
        }
    }

    /// The same request, run as `user`.
    pub fn with_user(mut self, user: &str) -> Self {
        self.user = Some(user.as_bytes().to_vec());
        self
    }

    /// `/bin/sh -c <command>`.
    pub fn shell(command: &str) -> Self {
        Self::new(&["/bin/sh", "-c", command])
    }

    /// The encoding: exactly the payload of the process protocol's `Spawn`
    /// frame (`list<bytes>` argv, `list<(bytes, bytes)>` env, `u8` has_cwd,
    /// `bytes` cwd, `u8` has_user, `bytes` user, and for a terminal `u8` 1,
    /// `u16` rows, `u16` cols), so the server forwards it without re-encoding rules of
    /// its own. Fails if it is larger than one message.
    pub fn encode(&self) -> Result<Vec<u8>, ExecError> {
        let frame = Frame::Spawn(self.to_spawn(0));
        let bytes = frame.encode().map_err(ExecError::Proto)?;
        let payload = bytes[LEN_PREFIX + HEADER_LEN..].to_vec();
        if payload.len() > MESSAGE_MAX {
            return Err(ExecError::TooLarge { len: payload.len() });
        }
        Ok(payload)
    }

    /// Decodes a request; never panics on bad input.
    pub fn decode(data: &[u8]) -> Result<Self, ExecError> {
        let mut body = Vec::with_capacity(HEADER_LEN + data.len());
        body.push(0x01); // the Spawn frame type
        body.extend_from_slice(&0u32.to_le_bytes());
        body.extend_from_slice(data);
        match Frame::decode_body(&body).map_err(ExecError::Proto)? {
            Frame::Spawn(s) => {
                let req = ExecRequest {
                    argv: s.argv,
                    env: s.env,
                    cwd: s.cwd,
                    user: s.user,
                    terminal: s.terminal,
                };
                req.check()?;
                Ok(req)
            }
            // decode_body returns the type it was given.
            _ => Err(ExecError::Proto(ProtoError::UnknownType(0x01))),
        }
    }

    /// The checks the server applies before forwarding: a program to run,
    /// no NUL bytes (Linux arguments and variables are C strings), and a
    /// user, if any, that is not empty.
    pub fn check(&self) -> Result<(), ExecError> {
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return Err(ExecError::EmptyArgv);
        }
        let has_nul = |b: &Vec<u8>| b.contains(&0);
        if self.argv.iter().any(has_nul)
            || self.env.iter().any(|(k, v)| has_nul(k) || has_nul(v))
            || self.cwd.as_ref().is_some_and(has_nul)
            || self.user.as_ref().is_some_and(has_nul)
        {
            return Err(ExecError::NulByte);
        }
        if self
            .env
            .iter()
            .any(|(k, _)| k.is_empty() || k.contains(&b'='))
        {
            return Err(ExecError::BadVariableName);
        }
        if self.user.as_ref().is_some_and(|u| u.is_empty()) {
            return Err(ExecError::EmptyUser);
        }
        Ok(())
    }

    /// The agent's `Spawn` for this request, with process id `id`.
    pub fn to_spawn(&self, id: u32) -> Spawn {
        Spawn {
            id,
            argv: self.argv.clone(),
            env: self.env.clone(),
            cwd: self.cwd.clone(),
            user: self.user.clone(),
            terminal: self.terminal,
        }
    }
}

/// One message from the server on a process channel (a tagged `Data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event<'a> {
    Started { pid: u32 },
    Stdout(&'a [u8]),
    Stderr(&'a [u8]),
    Exited(i32),
    Signaled(i32),
}

impl<'a> Event<'a> {
    /// Appends the encoded message body to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Event::Started { pid } => {
                out.push(tag::STARTED);
                out.extend_from_slice(&pid.to_le_bytes());
            }
            Event::Stdout(data) => {
                out.push(tag::STDOUT);
                out.extend_from_slice(data);
            }
            Event::Stderr(data) => {
                out.push(tag::STDERR);
                out.extend_from_slice(data);
            }
            Event::Exited(code) => {
                out.push(tag::EXITED);
                out.extend_from_slice(&code.to_le_bytes());
            }
            Event::Signaled(signal) => {
                out.push(tag::SIGNALED);
                out.extend_from_slice(&signal.to_le_bytes());
            }
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_into(&mut out);
        out
    }

    /// Decodes a `Data` body from the server.
    pub fn decode(data: &'a [u8]) -> Result<Self, ExecError> {
        let (&t, rest) = data.split_first().ok_or(ExecError::Empty)?;
        let word = |rest: &[u8]| -> Result<[u8; 4], ExecError> {
            rest.try_into().map_err(|_| ExecError::BadLength { tag: t })
        };
        Ok(match t {
            tag::STDOUT => Event::Stdout(rest),
            tag::STDERR => Event::Stderr(rest),
            tag::STARTED => Event::Started {
                pid: u32::from_le_bytes(word(rest)?),
            },
            tag::EXITED => Event::Exited(i32::from_le_bytes(word(rest)?)),
            tag::SIGNALED => Event::Signaled(i32::from_le_bytes(word(rest)?)),
            other => return Err(ExecError::UnknownTag(other)),
        })
    }

    /// Whether this is the last event of a process.
    pub fn is_final(&self) -> bool {
        matches!(self, Event::Exited(_) | Event::Signaled(_))
    }

    /// The status a shell reports: the exit code, or 128 + the signal
    /// (saturating: the signal comes from the server, any value may).
    pub fn shell_status(&self) -> Option<i32> {
        match self {
            Event::Exited(code) => Some(*code),
            Event::Signaled(signal) => Some(128i32.saturating_add(*signal)),
            _ => None,
        }
    }
}

/// Splits output into event-sized chunks (at least one, even when empty).
pub fn output_chunks(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let empty: &[u8] = &[];
    let first = if data.is_empty() { Some(empty) } else { None };
    first.into_iter().chain(data.chunks(MAX_EVENT_DATA))
}

/// Why a request or an event did not decode or encode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExecError {
    Proto(ProtoError),
    /// The encoded request does not fit in one channel message.
    TooLarge {
        len: usize,
    },
    /// No program named.
    EmptyArgv,
    /// An argument, variable, the cwd or the user contains a NUL byte.
    NulByte,
    /// An environment variable name is empty or contains `=`.
    BadVariableName,
    /// The user is given but empty.
    EmptyUser,
    /// An empty event message.
    Empty,
    UnknownTag(u8),
    /// A fixed-size event with the wrong length.
    BadLength {
        tag: u8,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::Proto(e) => write!(f, "malformed exec request: {e}"),
            ExecError::TooLarge { len } => write!(
                f,
                "exec request of {len} bytes does not fit in one {MESSAGE_MAX}-byte message"
            ),
            ExecError::EmptyArgv => write!(f, "exec request names no program (empty argv)"),
            ExecError::NulByte => write!(
                f,
                "exec request has a NUL byte in an argument, variable, the cwd or the user"
            ),
            ExecError::BadVariableName => {
                write!(f, "exec request has an empty variable name or one with '='")
            }
            ExecError::EmptyUser => write!(f, "exec request has an empty user name"),
            ExecError::Empty => write!(f, "empty process event"),
            ExecError::UnknownTag(t) => write!(f, "unknown process event tag {t:#04x}"),
            ExecError::BadLength { tag } => {
                write!(f, "process event {tag:#04x} has the wrong length")
            }
        }
    }
}

impl core::error::Error for ExecError {}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn request_round_trip() {
        let reqs = [
            ExecRequest::new(&["uname", "-a"]),
            ExecRequest::shell("echo out; echo err >&2; exit 3"),
            ExecRequest {
                argv: vec![b"/bin/cat".to_vec(), vec![0xff, 0xfe]],
                env: vec![(b"A".to_vec(), b"1".to_vec()), (b"E".to_vec(), vec![])],
                cwd: Some(b"/tmp".to_vec()),
                user: None,
                terminal: None,
            },
            ExecRequest {
                terminal: WinSize::new(40, 120),
                ..ExecRequest::new(&["bash", "-l"]).with_user("starina")
            },
            ExecRequest::new(&["id", "-u"]).with_user("nobody"),
            ExecRequest {
                cwd: Some(b"/home".to_vec()),
                ..ExecRequest::new(&["id"]).with_user("1000:100")
            },
        ];
        for req in reqs {
            let bytes = req.encode().unwrap();
            assert_eq!(ExecRequest::decode(&bytes), Ok(req.clone()));
            let spawn = req.to_spawn(7);
            assert_eq!(spawn.id, 7);
            assert_eq!(spawn.argv, req.argv);
            assert_eq!(spawn.user, req.user);
        }
    }

    #[test]
    fn request_is_the_spawn_payload() {
        let req = ExecRequest::new(&["ls"]);
        let frame = Frame::Spawn(req.to_spawn(0)).encode().unwrap();
        assert_eq!(req.encode().unwrap(), frame[9..]);
        // argc 1, len 2 "ls", envc 0, no cwd, no user.
        assert_eq!(
            req.encode().unwrap(),
            [1, 0, 0, 0, 2, 0, 0, 0, b'l', b's', 0, 0, 0, 0, 0, 0]
        );
        let as_root = req.clone().with_user("root");
        let frame = Frame::Spawn(as_root.to_spawn(0)).encode().unwrap();
        assert_eq!(as_root.encode().unwrap(), frame[9..]);
    }

    /// A request from a client built before the user field: no user.
    #[test]
    fn request_without_the_user_field_decodes() {
        let old = [1, 0, 0, 0, 2, 0, 0, 0, b'l', b's', 0, 0, 0, 0, 0];
        assert_eq!(ExecRequest::decode(&old), Ok(ExecRequest::new(&["ls"])));
        let mut trailing = old.to_vec();
        trailing.extend_from_slice(&[0, 0, 0]);
        assert!(matches!(
            ExecRequest::decode(&trailing),
            Err(ExecError::Proto(ProtoError::TrailingBytes { .. }))
        ));
    }

    #[test]
    fn bad_users_are_errors() {
        let empty = ExecRequest::new(&["id"]).with_user("");
        assert_eq!(empty.check(), Err(ExecError::EmptyUser));
        assert_eq!(
            ExecRequest::decode(&empty.encode().unwrap()),
            Err(ExecError::EmptyUser)
        );
        let nul = ExecRequest::new(&["id"]).with_user("no\0body");
        assert_eq!(
            ExecRequest::decode(&nul.encode().unwrap()),
            Err(ExecError::NulByte)
        );
        assert!(ExecError::EmptyUser.to_string().contains("empty user"));
    }

    #[test]
    fn bad_requests_are_errors() {
        assert_eq!(
            ExecRequest::decode(&[]),
            Err(ExecError::Proto(ProtoError::Truncated { frame_type: 1 }))
        );
        assert_eq!(
            ExecRequest::decode(&[0, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(ExecError::EmptyArgv)
        );
        let mut trailing = ExecRequest::new(&["ls"]).encode().unwrap();
        trailing.push(1);
        assert!(matches!(
            ExecRequest::decode(&trailing),
            Err(ExecError::Proto(_))
        ));
        let nul = ExecRequest::new(&["a\0b"]).encode().unwrap();
        assert_eq!(ExecRequest::decode(&nul), Err(ExecError::NulByte));
        let mut bad_env = ExecRequest::new(&["env"]);
        bad_env.env.push((b"A=B".to_vec(), b"1".to_vec()));
        assert_eq!(
            ExecRequest::decode(&bad_env.encode().unwrap()),
            Err(ExecError::BadVariableName)
        );
        let huge = ExecRequest::new(&[&"x".repeat(MESSAGE_MAX)]);
        assert!(matches!(huge.encode(), Err(ExecError::TooLarge { .. })));
        // Garbage never panics.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in 0..2000 {
            let bytes: Vec<u8> = (0..n % 40)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 4) as u8
                })
                .collect();
            let _ = ExecRequest::decode(&bytes);
            let _ = Event::decode(&bytes);
        }
    }

    #[test]
    fn event_round_trip() {
        let events = [
            Event::Started { pid: 42 },
            Event::Stdout(b"out\n"),
            Event::Stderr(b""),
            Event::Exited(3),
            Event::Exited(-1),
            Event::Signaled(9),
        ];
        for e in events {
            assert_eq!(Event::decode(&e.encode()), Ok(e));
        }
        assert_eq!(Event::Stdout(b"x").encode(), [1, b'x']);
        assert_eq!(Event::Exited(3).encode(), [0x11, 3, 0, 0, 0]);
        assert_eq!(Event::Signaled(9).shell_status(), Some(137));
        assert_eq!(Event::Exited(3).shell_status(), Some(3));
        assert!(Event::Signaled(9).is_final() && !Event::Started { pid: 1 }.is_final());
    }

    #[test]
    fn bad_events_are_errors() {
        assert_eq!(Event::decode(&[]), Err(ExecError::Empty));
        assert_eq!(Event::decode(&[0x7f]), Err(ExecError::UnknownTag(0x7f)));
        assert_eq!(
            Event::decode(&[0x11, 1, 2]),
            Err(ExecError::BadLength { tag: 0x11 })
        );
        assert_eq!(
            Event::decode(&[0x10, 1, 2, 3, 4, 5]),
            Err(ExecError::BadLength { tag: 0x10 })
        );
    }

    #[test]
    fn chunks_fit_a_message() {
        let data = vec![7u8; 40_000];
        let chunks: Vec<&[u8]> = output_chunks(&data).collect();
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.len() < MESSAGE_MAX));
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 40_000);
        assert_eq!(output_chunks(&[]).count(), 1);
    }

    #[test]
    fn resize_uris() {
        let size = WinSize::new(50, 132).unwrap();
        assert_eq!(resize_uri(size), "resize:50x132");
        assert_eq!(parse_resize_uri(&resize_uri(size)), Some(Some(size)));
        assert_eq!(parse_resize_uri("resize:0x80"), Some(None));
        assert_eq!(parse_resize_uri("resize:big"), Some(None));
        assert_eq!(parse_resize_uri("exec"), None);
    }

    #[test]
    fn abort_codes() {
        assert_eq!(abort_signal(15), 15);
        assert_eq!(abort_signal(0), SIGKILL);
        assert_eq!(abort_signal(65), SIGKILL);
    }
}
