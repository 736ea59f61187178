//! `Open` on the `linux` channel: a process channel for `exec`, the test
//! panic, or a refusal that says why.

use alloc::format;
use alloc::string::String;

use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::codes;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::process::Frame;

use crate::process::Proc;
use crate::Ctx;
use crate::Server;
use crate::FORWARDS_URI;
use crate::FORWARD_PORT_URI;
use crate::TEST_PANIC_URI;

impl Server {
    pub(crate) fn on_open(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        uri: &str,
    ) -> Result<(), Error> {
        if uri == TEST_PANIC_URI {
            return self.test_panic(cx, client, call_id);
        }
        if uri == FORWARDS_URI {
            return self.send_forwards(cx, client, call_id);
        }
        if let Some(port) = uri.strip_prefix(FORWARD_PORT_URI) {
            return self.forward_port(cx, client, call_id, port);
        }
        if let Some((code, text)) = self.refusal(uri) {
            return refuse(cx, client, call_id, code, &text);
        }
        let Some((ours, theirs)) = channel_pair(cx, client, call_id)? else {
            return Ok(());
        };
        // An error here: the client is gone or flooding us; nothing to answer.
        open_reply(cx, client, call_id, theirs)?;
        let id = self.new_id();
        let ch = cx.add_channel(ours, Ctx::Process(id))?;
        let now = starina::timer::now_ns();
        self.procs.insert(id, Proc::new(ch, now));
        self.watch_request(cx, now);
        Ok(())
    }

    /// Answers `forwards:` with a channel holding one `Data`, the ports
    /// forwarded into Linux as JSON, then closed.
    fn send_forwards(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
    ) -> Result<(), Error> {
        let json = self
            .net
            .as_ref()
            .map_or_else(|| String::from("[]"), |nat| nat.forwards_json());
        let Some((ours, theirs)) = channel_pair(cx, client, call_id)? else {
            return Ok(());
        };
        // Queued before the reply, so the client finds it at once; our end
        // drops here (the client sees the peer closed after the data).
        ours.send_data(json.as_bytes())?;
        open_reply(cx, client, call_id, theirs)
    }

    /// Answers `forward-port:P`: TCP port P of Linux is forwarded from now
    /// on when a Linux process listens there (a Linux service's declared
    /// port, below `forward_min_port`). The reply's channel carries
    /// nothing: it only says yes.
    fn forward_port(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
        port: &str,
    ) -> Result<(), Error> {
        let Some(port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
            let text = format!("'{port}' is not a TCP port (1 to 65535)");
            return refuse(cx, client, call_id, codes::INVALID, &text);
        };
        let Some(nat) = self.net.as_mut() else {
            let text = "Linux has no network in this profile (no tcpip)";
            return refuse(cx, client, call_id, codes::UNAVAILABLE, text);
        };
        nat.allow_port(cx, port);
        match channel_pair(cx, client, call_id)? {
            Some((_ours, theirs)) => open_reply(cx, client, call_id, theirs),
            None => Ok(()),
        }
    }

    /// Why an `exec` open cannot be served now, if it cannot.
    fn refusal(&self, uri: &str) -> Option<(u16, String)> {
        if uri != exec::URI {
            let text = format!(
                "unknown URI '{uri}': the linux server serves '{}'",
                exec::URI
            );
            return Some((codes::NOT_FOUND, text));
        }
        if let Some(why) = &self.unavailable {
            return Some((codes::UNAVAILABLE, why.clone()));
        }
        if self.procs.len() >= self.max_processes {
            let text = format!(
                "{} processes already run (spec config max_processes)",
                self.procs.len()
            );
            return Some((codes::UNAVAILABLE, text));
        }
        None
    }

    fn test_panic(
        &mut self,
        cx: &mut Cx<Ctx>,
        client: HandleId,
        call_id: u32,
    ) -> Result<(), Error> {
        if !self.allow_test_panic {
            let text = "test:panic is off (spec config allow_test_panic)";
            return refuse(cx, client, call_id, codes::REFUSED, text);
        }
        log::warn!("a client asked for a guest kernel panic (test)");
        // No reply: the guest crashes, this server restarts, and the client
        // gets `reconnect:` from startup.
        self.send_to_guest(cx, &Frame::Panic);
        Ok(())
    }

    fn new_id(&mut self) -> u32 {
        loop {
            let id = self.next_id;
            self.next_id = self.next_id.checked_add(1).unwrap_or(1);
            if !self.procs.contains_key(&id) {
                return id;
            }
        }
    }
}

/// A channel pair for answering `call_id` (ours, the client's); `None`
/// once the client was told none could be made.
fn channel_pair(
    cx: &mut Cx<Ctx>,
    client: HandleId,
    call_id: u32,
) -> Result<Option<(Channel, Channel)>, Error> {
    match Channel::create() {
        Ok(pair) => Ok(Some(pair)),
        Err(e) => {
            let text = format!("cannot create a channel: {e}");
            refuse(cx, client, call_id, codes::UNAVAILABLE, &text).map(|()| None)
        }
    }
}

/// Answers `call_id` with `theirs`.
fn open_reply(
    cx: &mut Cx<Ctx>,
    client: HandleId,
    call_id: u32,
    theirs: Channel,
) -> Result<(), Error> {
    let reply = Message::OpenReply {
        call_id,
        handle: theirs.into_handle(),
    };
    cx.send(client, reply)
}

fn refuse(
    cx: &mut Cx<Ctx>,
    client: HandleId,
    call_id: u32,
    code: u16,
    text: &str,
) -> Result<(), Error> {
    cx.send(
        client,
        Message::Error {
            call_id,
            code,
            text,
        },
    )
}
