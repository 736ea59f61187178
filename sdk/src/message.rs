//! Messages without an IDL: the fixed set of message kinds every component
//! speaks, so components compose like UNIX pipes.
//!
//! A channel message is a kind byte, a body of up to
//! [`MESSAGE_DATA_MAX`](crate::abi::MESSAGE_DATA_MAX) bytes and up to
//! [`MESSAGE_HANDLES_MAX`](crate::abi::MESSAGE_HANDLES_MAX) moved handles.
//! The kernel only checks sizes; the kinds and their bodies are defined here,
//! in this one place:
//!
//! | kind | byte | body | handles | meaning |
//! |---|---|---|---|---|
//! | `Open` | 1 | `call_id: u32 LE`, then `uri` (UTF-8) | 0 or 1 | with no handle: "open `uri` for me", answered by `OpenReply` or `Error` with the same `call_id`. With one channel handle: "here is a new connection for `uri`" (a client to a server, an accepted TCP connection); `call_id` 0 expects no answer. |
//! | `OpenReply` | 2 | `call_id: u32 LE` | 1 | the opened resource: a channel to talk to it |
//! | `Data` | 3 | the bytes | 0 | a chunk of a byte stream, or one request/reply |
//! | `Close` | 4 | empty | 0 | orderly end of the stream from the sender (like a FIN); the channel stays open for the other direction |
//! | `Abort` | 5 | `code: u16 LE`, then reason (UTF-8) | 0 | the stream broke (reset, fatal error); nothing more follows |
//! | `Error` | 6 | `call_id: u32 LE`, `code: u16 LE`, then text (UTF-8) | 0 | a request (`Open`, or a request in `Data`) failed |
//!
//! Decoding checks every field: a short body, bad UTF-8, an unknown kind or
//! the wrong number of handles is [`Error::MalformedMessage`], never a panic.

use alloc::vec::Vec;

use crate::abi::Error;
use crate::handle::OwnedHandle;

/// The kind byte of each message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    Open = 1,
    OpenReply = 2,
    Data = 3,
    Close = 4,
    Abort = 5,
    Error = 6,
}

impl MessageKind {
    pub fn from_raw(raw: u8) -> Option<MessageKind> {
        Some(match raw {
            1 => MessageKind::Open,
            2 => MessageKind::OpenReply,
            3 => MessageKind::Data,
            4 => MessageKind::Close,
            5 => MessageKind::Abort,
            6 => MessageKind::Error,
            _ => return None,
        })
    }
}

/// Error codes carried by `Abort` and `Error` messages. Components may use
/// other values; these are the ones the system's own servers send.
pub mod codes {
    /// The request was malformed.
    pub const INVALID: u16 = 1;
    /// The named resource does not exist (unknown URI scheme, no such file).
    pub const NOT_FOUND: u16 = 2;
    /// The remote side refused (connection refused, permission denied).
    pub const REFUSED: u16 = 3;
    /// The server cannot serve it now (out of resources, restarting).
    pub const UNAVAILABLE: u16 = 4;
    /// The server failed while handling it.
    pub const INTERNAL: u16 = 5;
    /// The operation timed out.
    pub const TIMED_OUT: u16 = 6;
    /// The connection was reset.
    pub const RESET: u16 = 7;
}

/// A decoded message. Strings and bytes borrow the receive buffer; handles
/// are owned (dropping an unused one closes it).
#[derive(Debug)]
pub enum Message<'a> {
    Open {
        call_id: u32,
        uri: &'a str,
        handle: Option<OwnedHandle>,
    },
    OpenReply {
        call_id: u32,
        handle: OwnedHandle,
    },
    Data(&'a [u8]),
    Close,
    Abort {
        code: u16,
        reason: &'a str,
    },
    Error {
        call_id: u32,
        code: u16,
        text: &'a str,
    },
}

fn read_u32(data: &[u8]) -> Result<(u32, &[u8]), Error> {
    if data.len() < 4 {
        return Err(Error::MalformedMessage);
    }
    let (head, rest) = data.split_at(4);
    Ok((u32::from_le_bytes([head[0], head[1], head[2], head[3]]), rest))
}

fn read_u16(data: &[u8]) -> Result<(u16, &[u8]), Error> {
    if data.len() < 2 {
        return Err(Error::MalformedMessage);
    }
    let (head, rest) = data.split_at(2);
    Ok((u16::from_le_bytes([head[0], head[1]]), rest))
}

fn read_str(data: &[u8]) -> Result<&str, Error> {
    core::str::from_utf8(data).map_err(|_| Error::MalformedMessage)
}

impl<'a> Message<'a> {
    pub fn kind(&self) -> MessageKind {
        match self {
            Message::Open { .. } => MessageKind::Open,
            Message::OpenReply { .. } => MessageKind::OpenReply,
            Message::Data(_) => MessageKind::Data,
            Message::Close => MessageKind::Close,
            Message::Abort { .. } => MessageKind::Abort,
            Message::Error { .. } => MessageKind::Error,
        }
    }

    /// Decodes a received message. `handles` are the handles that arrived
    /// with it; on error they are dropped (closed), so nothing leaks.
    pub fn decode(kind: u8, data: &'a [u8], handles: Vec<OwnedHandle>) -> Result<Self, Error> {
        let kind = MessageKind::from_raw(kind).ok_or(Error::MalformedMessage)?;
        let mut handles = handles;
        let expect_handles = |n: core::ops::RangeInclusive<usize>, got: usize| {
            if n.contains(&got) {
                Ok(())
            } else {
                Err(Error::MalformedMessage)
            }
        };
        match kind {
            MessageKind::Open => {
                expect_handles(0..=1, handles.len())?;
                let (call_id, rest) = read_u32(data)?;
                let uri = read_str(rest)?;
                Ok(Message::Open {
                    call_id,
                    uri,
                    handle: handles.pop(),
                })
            }
            MessageKind::OpenReply => {
                expect_handles(1..=1, handles.len())?;
                let (call_id, rest) = read_u32(data)?;
                if !rest.is_empty() {
                    return Err(Error::MalformedMessage);
                }
                let handle = handles.pop().ok_or(Error::MalformedMessage)?;
                Ok(Message::OpenReply { call_id, handle })
            }
            MessageKind::Data => {
                expect_handles(0..=0, handles.len())?;
                Ok(Message::Data(data))
            }
            MessageKind::Close => {
                expect_handles(0..=0, handles.len())?;
                if !data.is_empty() {
                    return Err(Error::MalformedMessage);
                }
                Ok(Message::Close)
            }
            MessageKind::Abort => {
                expect_handles(0..=0, handles.len())?;
                let (code, rest) = read_u16(data)?;
                Ok(Message::Abort {
                    code,
                    reason: read_str(rest)?,
                })
            }
            MessageKind::Error => {
                expect_handles(0..=0, handles.len())?;
                let (call_id, rest) = read_u32(data)?;
                let (code, rest) = read_u16(rest)?;
                Ok(Message::Error {
                    call_id,
                    code,
                    text: read_str(rest)?,
                })
            }
        }
    }

    /// Encodes the body into `out` (cleared first) and returns the handles to
    /// move, by reference. `Data` needs no copy: use [`Message::body`].
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        out.clear();
        match self {
            Message::Open { call_id, uri, .. } => {
                out.extend_from_slice(&call_id.to_le_bytes());
                out.extend_from_slice(uri.as_bytes());
            }
            Message::OpenReply { call_id, .. } => out.extend_from_slice(&call_id.to_le_bytes()),
            Message::Data(data) => out.extend_from_slice(data),
            Message::Close => {}
            Message::Abort { code, reason } => {
                out.extend_from_slice(&code.to_le_bytes());
                out.extend_from_slice(reason.as_bytes());
            }
            Message::Error {
                call_id,
                code,
                text,
            } => {
                out.extend_from_slice(&call_id.to_le_bytes());
                out.extend_from_slice(&code.to_le_bytes());
                out.extend_from_slice(text.as_bytes());
            }
        }
    }

    /// The handle this message moves, if any.
    pub fn handle(&self) -> Option<&OwnedHandle> {
        match self {
            Message::Open { handle, .. } => handle.as_ref(),
            Message::OpenReply { handle, .. } => Some(handle),
            _ => None,
        }
    }

    /// Takes the handle this message moves out of it.
    pub(crate) fn into_handle(self) -> Option<OwnedHandle> {
        match self {
            Message::Open { handle, .. } => handle,
            Message::OpenReply { handle, .. } => Some(handle),
            _ => None,
        }
    }

    /// Gives up the moved handle after a successful send.
    pub(crate) fn forget_handle(self) {
        match self {
            Message::Open {
                handle: Some(h), ..
            } => {
                h.into_raw();
            }
            Message::OpenReply { handle, .. } => {
                handle.into_raw();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn roundtrip(msg: Message<'_>) -> (u8, Vec<u8>) {
        let mut body = Vec::new();
        msg.encode_body(&mut body);
        (msg.kind() as u8, body)
    }

    #[test]
    fn every_handle_free_kind_round_trips() {
        let cases = [
            Message::Open {
                call_id: 7,
                uri: "tcp:10.0.2.2:80",
                handle: None,
            },
            Message::Data(b"hello"),
            Message::Data(b""),
            Message::Close,
            Message::Abort {
                code: codes::RESET,
                reason: "connection reset",
            },
            Message::Error {
                call_id: 9,
                code: codes::NOT_FOUND,
                text: "no such file",
            },
        ];
        for msg in cases {
            let (kind, body) = roundtrip(msg);
            let again = Message::decode(kind, &body, Vec::new()).expect("decodes");
            let (kind2, body2) = roundtrip(again);
            assert_eq!((kind, &body), (kind2, &body2));
        }
    }

    #[test]
    fn decoded_fields_are_exact() {
        let (kind, body) = roundtrip(Message::Error {
            call_id: 0xdead_beef,
            code: 513,
            text: "über",
        });
        match Message::decode(kind, &body, Vec::new()).unwrap() {
            Message::Error {
                call_id,
                code,
                text,
            } => assert_eq!((call_id, code, text), (0xdead_beef, 513, "über")),
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn malformed_messages_are_errors_not_panics() {
        let bad: &[(u8, &[u8])] = &[
            (0, b""),                    // unknown kind
            (99, b"x"),                  // unknown kind
            (1, b"\x01\x02"),            // Open: call_id cut short
            (1, b"\0\0\0\0\xff\xfe"),    // Open: URI not UTF-8
            (2, b"\0\0\0\0"),            // OpenReply without its handle
            (2, b""),                    // OpenReply: short
            (4, b"x"),                   // Close with a body
            (5, b"\x01"),                // Abort: code cut short
            (5, b"\x01\x00\xc3"),        // Abort: reason not UTF-8
            (6, b"\0\0\0\0\x01"),        // Error: code cut short
            (6, b"\0\0\0"),              // Error: call_id cut short
        ];
        for &(kind, body) in bad {
            assert_eq!(
                Message::decode(kind, body, Vec::new()).err(),
                Some(Error::MalformedMessage),
                "kind {kind} body {body:?}"
            );
        }
    }

    #[test]
    fn random_bytes_never_panic() {
        // A small xorshift generator: deterministic, no dependencies.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let kind = (x % 8) as u8;
            let len = ((x >> 8) % 24) as usize;
            let body: Vec<u8> = (0..len).map(|i| (x >> (i % 56)) as u8).collect();
            let _ = Message::decode(kind, &body, Vec::new());
        }
    }

    #[test]
    fn kinds_have_stable_numbers() {
        for (raw, kind) in [
            (1, MessageKind::Open),
            (2, MessageKind::OpenReply),
            (3, MessageKind::Data),
            (4, MessageKind::Close),
            (5, MessageKind::Abort),
            (6, MessageKind::Error),
        ] {
            assert_eq!(MessageKind::from_raw(raw), Some(kind));
            assert_eq!(kind as u8, raw);
        }
        assert_eq!(MessageKind::from_raw(7), None);
    }
}
