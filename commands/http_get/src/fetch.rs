//! One request through the TCP/IP server: open `tcp:host:port`, send a
//! `GET`, read the response until it is complete or the server closes.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::channel::MessageBuffer;
use starina::channel::OpenError;
use starina::command::CommandError;
use starina::command::Output;
use starina::Channel;
use starina::Error;
use starina::Message;

use crate::response::Response;
use crate::url::Url;
use crate::STALL_MS;

/// Fetches `url`, writing the body (and with `include_head` the head) to
/// `out`. A non-2xx status is an error carrying the status line.
pub fn fetch(
    tcpip: &Channel,
    url: &Url,
    include_head: bool,
    out: &mut Output,
) -> Result<(), CommandError> {
    let mut buf = MessageBuffer::new();
    let conn = connect(tcpip, url)?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: starina-http-get\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.target,
        url.host_header()
    );
    conn.send_data(request.as_bytes())
        .map_err(|e| CommandError::new(format!("sending the request: {e}")))?;
    let mut response = Response::new();
    let mut body = Vec::new();
    let mut head_seen = false;
    while !response.is_done() {
        let ended = match receive(&conn, &mut buf)? {
            Some(data) => {
                response.feed(data, &mut body).map_err(bad_response)?;
                false
            }
            None => {
                response.finish().map_err(bad_response)?;
                true
            }
        };
        if !head_seen {
            if let Some(head) = response.head() {
                head_seen = true;
                if !head.is_success() {
                    return Err(CommandError::new(head.status_line.clone()));
                }
                if include_head {
                    out.write(&head.raw)?;
                }
            }
        }
        if !body.is_empty() {
            out.write(&body)?;
            body.clear();
        }
        if ended {
            break;
        }
    }
    Ok(())
}

fn bad_response(why: String) -> CommandError {
    CommandError::new(format!("bad response: {why}"))
}

/// Asks tcpip for a connection to the URL's host and port.
fn connect(tcpip: &Channel, url: &Url) -> Result<Channel, CommandError> {
    let target = format!("{}:{}", url.host, url.port);
    tcpip
        .open_within(&url.tcp_uri(), STALL_MS)
        .map_err(|e| match e {
            OpenError::TimedOut => CommandError::new(format!(
                "{target}: no connection within {} s",
                STALL_MS / 1000
            )),
            OpenError::Kernel(Error::PeerClosed) => {
                CommandError::new("the TCP/IP server went away")
            }
            OpenError::Unexpected(kind) => {
                CommandError::new(format!("tcpip answered {kind:?} to a connect"))
            }
            e => CommandError::new(format!("{target}: {e}")),
        })
}

/// The next bytes from the server; `None` when it has closed.
fn receive<'b>(
    conn: &Channel,
    buf: &'b mut MessageBuffer,
) -> Result<Option<&'b [u8]>, CommandError> {
    match conn.recv_within(buf, STALL_MS) {
        Ok(Some(Message::Data(d))) => Ok(Some(d)),
        Ok(Some(Message::Close)) | Err(Error::PeerClosed) => Ok(None),
        Ok(Some(Message::Abort { reason, .. })) => {
            Err(CommandError::new(format!("the connection broke: {reason}")))
        }
        Ok(Some(other)) => Err(CommandError::new(format!(
            "unexpected {:?} on the connection",
            other.kind()
        ))),
        Ok(None) => Err(CommandError::new(format!(
            "no data for {} s: giving up",
            STALL_MS / 1000
        ))),
        Err(e) => Err(CommandError::new(format!("reading the response: {e}"))),
    }
}
