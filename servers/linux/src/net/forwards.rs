//! Inbound forwards: the guest agent reports each port a Linux process
//! listens on; the NAT listens on the same port on tcpip (`tcp-listen:`)
//! and turns each connection there into a connection into the guest.
//! When the Linux listener goes, so does the forward. UDP ports the agent
//! reports go to [`super::udp_forwards`].
//!
//! A port a native component already listens on is not taken: tcpip
//! refuses the second listener, and the conflict is logged. Each forward
//! added or removed is logged with a marker (`starina_abi::markers`) that
//! the host tool follows to add the matching QEMU port forward.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use starina::abi::markers;
use starina::channel::Channel;
use starina::mainloop::Cx;
use starina::message::Message;
use starina::HandleId;
use starina_bridge::process::Proto;

use super::Call;
use super::Nat;
use crate::Ctx;

pub struct Forward {
    /// The Linux process that listens (`comm (pid N)`).
    pub process: String,
    /// The tcpip listener; `None` while tcpip is asked.
    channel: Option<HandleId>,
    pub connections: u64,
}

impl Forwards {
    /// The tcpip listeners in the loop.
    pub fn channels(&self) -> impl Iterator<Item = HandleId> + '_ {
        self.ports.values().filter_map(|f| f.channel)
    }
}

#[derive(Default)]
pub struct Forwards {
    ports: BTreeMap<u16, Forward>,
    /// Every TCP port Linux listens on (forwarded or not), with its
    /// process: a NAT that replaces this one (tcpip restarted) forwards
    /// them again.
    listening: BTreeMap<u16, String>,
}

impl Nat {
    pub(super) fn forwarded(&self, port: u16) -> bool {
        port >= self.config.forward_min_port || self.config.forward_ports.contains(&port)
    }

    /// A Linux service's spec declares `port` (its runner asked through
    /// `forward-port:`): it is forwarded whatever `forward_min_port` says,
    /// TCP and UDP alike (as `forward_ports` is), at once if Linux listens
    /// or has a UDP socket there already.
    pub fn allow_port(&mut self, cx: &mut Cx<Ctx>, port: u16) {
        if self.config.forward_ports.contains(&port) {
            return;
        }
        let was = self.forwarded(port);
        self.config.forward_ports.push(port);
        if !was {
            log::info!(
                "net: TCP port {port} is forwarded (a Linux service declares it), and UDP port {port}"
            );
        }
        let listening = self.forwards.listening.get(&port).cloned();
        if let Some(process) = listening.filter(|_| !was) {
            self.on_listening(cx, Proto::Tcp, port, true, process);
        }
        let bound = self.udp_forwards.bound().find(|(p, _)| *p == port);
        if let Some(process) = bound.map(|(_, process)| String::from(process)) {
            self.on_listening(cx, Proto::Udp, port, true, process);
        }
    }

    /// The agent says a Linux process started (`open`) or stopped listening
    /// on `port`.
    pub fn on_listening(
        &mut self,
        cx: &mut Cx<Ctx>,
        proto: Proto,
        port: u16,
        open: bool,
        process: String,
    ) {
        if proto == Proto::Udp {
            return self.on_udp_bound(cx, port, open, process);
        }
        if open {
            self.forwards.listening.insert(port, process.clone());
        } else {
            self.forwards.listening.remove(&port);
        }
        if !open {
            if let Some(forward) = self.forwards.ports.remove(&port) {
                if let Some(ch) = forward.channel {
                    cx.remove(ch);
                    log::info!(
                        "{} {port} ({} connections)",
                        markers::NET_FORWARD_REMOVED,
                        forward.connections
                    );
                }
            }
            return;
        }
        if !self.forwarded(port) {
            log::info!("net: Linux listens on TCP port {port} ({process}); not forwarded (see forward_min_port, forward_ports)");
            return;
        }
        if let Some(forward) = self.forwards.ports.get_mut(&port) {
            forward.process = process;
            return;
        }
        let uri = format!("tcp-listen:0.0.0.0:{port}");
        if let Err(e) = self.open(cx, &uri, Call::Listen(port)) {
            log::warn!("net: cannot ask tcpip to listen on port {port}: {e}");
            return;
        }
        self.forwards.ports.insert(
            port,
            Forward {
                process,
                channel: None,
                connections: 0,
            },
        );
    }

    /// tcpip listens on `port` for us now (or refused to).
    pub(super) fn on_listen_reply(
        &mut self,
        cx: &mut Cx<Ctx>,
        port: u16,
        result: Result<Channel, String>,
    ) {
        let Some(forward) = self.forwards.ports.get_mut(&port) else {
            return; // The Linux listener went meanwhile; the channel drops.
        };
        let channel = match result {
            Ok(ch) => ch,
            Err(why) => {
                log::warn!(
                    "net: TCP port {port} of Linux ({}) is not forwarded: {why} (a native component may listen there)",
                    forward.process
                );
                self.forwards.ports.remove(&port);
                return;
            }
        };
        match cx.add_channel(channel, Ctx::Forward(port)) {
            Ok(id) => {
                forward.channel = Some(id);
                log::info!(
                    "{} {port} to Linux ({})",
                    markers::NET_FORWARD_ADDED,
                    forward.process
                );
            }
            Err(e) => {
                log::warn!("net: TCP port {port}: {e}");
                self.forwards.ports.remove(&port);
            }
        }
    }

    /// A connection arrived on forwarded `port`.
    pub fn on_forward_message(&mut self, cx: &mut Cx<Ctx>, port: u16, msg: Message<'_>) {
        let Message::Open {
            uri,
            handle: Some(handle),
            ..
        } = msg
        else {
            log::warn!(
                "net: ignoring a {:?} message on the listener of port {port}",
                msg.kind()
            );
            return;
        };
        let channel = Channel::from_handle(handle);
        let Some(client) = super::parse_conn_uri(uri) else {
            log::warn!("net: a connection on port {port} with a bad URI {uri:?}");
            return;
        };
        if self.connect_inbound(cx, client, port, channel) {
            if let Some(forward) = self.forwards.ports.get_mut(&port) {
                forward.connections += 1;
            }
        }
    }

    /// tcpip closed the listener of `port` (it restarted, say).
    pub fn on_forward_closed(&mut self, port: u16) {
        if let Some(forward) = self.forwards.ports.remove(&port) {
            log::warn!(
                "net: tcpip closed the forward of port {port} ({}); it is back when Linux listens again",
                forward.process
            );
        }
    }

    /// The TCP ports Linux listens on and the UDP ports it has sockets
    /// on, with their processes.
    pub fn listening(&self) -> impl Iterator<Item = (Proto, u16, &str)> {
        let tcp = self.forwards.listening.iter();
        let tcp = tcp.map(|(&port, process)| (Proto::Tcp, port, process.as_str()));
        let udp = self.udp_forwards.bound();
        tcp.chain(udp.map(|(port, process)| (Proto::Udp, port, process)))
    }

    /// The active forwards, TCP then UDP, as a JSON array (for `forwards:`).
    pub fn forwards_json(&self) -> String {
        let mut items: alloc::vec::Vec<String> = self
            .forwards
            .ports
            .iter()
            .filter(|(_, f)| f.channel.is_some())
            .map(|(port, f)| {
                format!(
                    "{{\"port\":{port},\"protocol\":\"tcp\",\"process\":\"{}\",\"connections\":{}}}",
                    json_escape(&f.process),
                    f.connections
                )
            })
            .collect();
        items.extend(self.udp_forwards.json_items());
        format!("[{}]", items.join(","))
    }
}

/// `s` as the inside of a JSON string.
pub(super) fn json_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::json_escape;

    #[test]
    fn process_names_are_escaped() {
        assert_eq!(json_escape("busybox"), "busybox");
        assert_eq!(json_escape("a\"b\\c\n"), "a\\\"b\\\\c\\u000a");
    }
}
