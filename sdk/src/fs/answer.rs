//! Waiting for the answer to one call: the part every blocking fs client
//! shares (`Files` here, the linux server's FUSE backend).

use alloc::format;
use alloc::vec::Vec;

use super::wire;
use super::ErrorKind;
use super::FsError;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::abi::Readiness;
use crate::channel::MessageBuffer;
use crate::poll::Poll;
use crate::timer::Timer;
use crate::Channel;
use crate::Message;

/// How long a call waits for its answer before giving up (`TimedOut`).
pub const CALL_TIMEOUT_MS: u64 = 60_000;

/// What came back for a call.
pub enum Answer {
    /// A request's result bytes (after the call id).
    Data(Vec<u8>),
    /// An `Open`'s channel.
    Channel(Channel),
}

/// A kernel error while calling the fs server, as a file error.
pub fn kernel_error(what: &str, e: Error) -> FsError {
    let kind = match e {
        Error::PeerClosed => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    FsError::new(kind, format!("{what}: {e:?}"))
}

/// An answer that does not decode.
pub fn malformed(what: &str) -> FsError {
    FsError::new(
        ErrorKind::Malformed,
        format!("the fs server's answer to {what} is malformed"),
    )
}

/// Waits on `poll` (which watches channel `on` and `timer`) for the answer
/// to `call_id` on `on`, at most [`CALL_TIMEOUT_MS`]. Messages on other
/// channels of the poll, and answers to earlier calls that timed out, are
/// dropped. An `Error` answer is the call's error.
pub fn wait_answer(
    poll: &Poll,
    timer: &Timer,
    buf: &mut MessageBuffer,
    on: HandleId,
    call_id: u32,
) -> Result<Answer, FsError> {
    let waiting = |e| kernel_error("waiting for the fs server", e);
    timer.set_ms(CALL_TIMEOUT_MS).map_err(waiting)?;
    loop {
        let event = poll.wait_recv(buf).map_err(waiting)?;
        if event.id == timer.id() {
            return Err(FsError::new(
                ErrorKind::TimedOut,
                "the fs server did not answer in time",
            ));
        }
        let info = match event.received {
            Some(Ok(info)) => info,
            Some(Err(Error::WouldBlock)) => continue,
            Some(Err(e)) => return Err(waiting(e)),
            None if event.ready.contains(Readiness::PEER_CLOSED) => {
                return Err(FsError::new(
                    ErrorKind::Unavailable,
                    "the fs server is gone",
                ))
            }
            None => continue,
        };
        let handles = buf.take_handles(&info);
        let msg = Message::decode(info.kind, buf.data(&info), handles);
        if event.id != on {
            continue;
        }
        if let Some(answer) = answer_to(msg.map_err(|_| malformed("a call"))?, call_id)? {
            return Ok(answer);
        }
    }
}

/// The answer `msg` carries for `call_id`, if it is one.
fn answer_to(msg: Message<'_>, call_id: u32) -> Result<Option<Answer>, FsError> {
    Ok(match msg {
        Message::Data(body) => match wire::split_reply(body) {
            Some((id, result)) if id == call_id => Some(Answer::Data(result.to_vec())),
            Some(_) => None,
            None => return Err(malformed("a call")),
        },
        Message::OpenReply {
            call_id: id,
            handle,
        } if id == call_id => Some(Answer::Channel(Channel::from_handle(handle))),
        Message::Error {
            call_id: id,
            code,
            text,
        } if id == call_id => return Err(FsError::new(ErrorKind::from_code(code), text)),
        _ => None,
    })
}
