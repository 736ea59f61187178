//! The mainloop and its handler context, against the fake kernel: what
//! handlers can do while handling an event (add, remove, send, stop), and
//! the backpressure the SDK does for them.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use crate::fake_kernel::FakeKernel;

use crate::abi::CHANNEL_QUEUE_MAX;
use crate::channel::MessageBuffer;
use crate::mainloop::Cx;
use crate::mainloop::Handler;
use crate::mainloop::Mainloop;
use crate::outbox::BACKLOG_MAX_BYTES;
use crate::Channel;
use crate::Error;
use crate::HandleId;
use crate::Message;

/// Everything the handler saw, for the tests to check.
#[derive(Default)]
struct Seen {
    connected: Vec<String>,
    messages: Vec<Vec<u8>>,
    closed: Vec<&'static str>,
    drained: usize,
    bad: Vec<Error>,
    timers: usize,
    send_errors: Vec<Error>,
}

/// Each client's state: a name, handed back with its events.
struct Server {
    seen: Seen,
    /// Replies to send per message (to fill the peer's queue).
    replies_per_message: usize,
}

impl Handler for Server {
    type State = &'static str;

    fn connect(
        &mut self,
        cx: &mut Cx<&'static str>,
        service: &str,
        ch: Channel,
    ) -> Result<(), Error> {
        self.seen.connected.push(service.to_string());
        cx.add_channel(ch, "client").map(drop)
    }

    fn message(
        &mut self,
        cx: &mut Cx<&'static str>,
        id: HandleId,
        state: &mut &'static str,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        assert_eq!(
            *state, "client",
            "the state comes back with the channel's events"
        );
        let Message::Data(data) = msg else {
            return Err(Error::NotSupported);
        };
        self.seen.messages.push(data.to_vec());
        match data {
            b"bye" => {
                // Removing the channel being handled, from its own handler.
                assert_eq!(cx.remove(id), None, "the state is lent to the handler");
                Ok(())
            }
            b"stop" => {
                cx.stop();
                Ok(())
            }
            b"pause" => cx.pause_receiving(id),
            // A reply, then a send that must not overtake it.
            b"reply" => {
                cx.reply_data(id, b"r1")?;
                cx.send_data(id, b"s2")
            }
            // A reply left for the loop's next wait.
            b"reply-last" => cx.reply_data(id, data),
            // A reply made of part of the message.
            d if d.starts_with(b"tail:") => cx.reply_data(id, &d[5..]),
            // The same, then a send that must not overtake it (the reply
            // goes out of the receive buffer first).
            d if d.starts_with(b"tail-then:") => {
                cx.reply_data(id, &d[10..])?;
                cx.send_data(id, b"then")
            }
            b"reply-stop" => {
                cx.reply_data(id, b"stopping")?;
                cx.stop();
                Ok(())
            }
            b"timer" => {
                let timer = crate::timer::Timer::create()?;
                let t = cx.add_timer(timer, "timer")?;
                cx.set_timer(t, 1000)
            }
            _ => {
                for i in 0..self.replies_per_message {
                    let mut reply = data.to_vec();
                    reply.extend_from_slice(format!(" #{i}").as_bytes());
                    if let Err(e) = cx.send_data(id, &reply) {
                        self.seen.send_errors.push(e);
                        return Err(e);
                    }
                }
                Ok(())
            }
        }
    }

    fn peer_closed(
        &mut self,
        _cx: &mut Cx<&'static str>,
        _id: HandleId,
        state: &'static str,
    ) -> Result<(), Error> {
        self.seen.closed.push(state);
        Ok(())
    }

    fn timer(
        &mut self,
        cx: &mut Cx<&'static str>,
        id: HandleId,
        state: &mut &'static str,
    ) -> Result<(), Error> {
        assert_eq!(*state, "timer");
        self.seen.timers += 1;
        cx.remove(id);
        Ok(())
    }

    fn drained(
        &mut self,
        _cx: &mut Cx<&'static str>,
        _id: HandleId,
        _state: &mut &'static str,
    ) -> Result<(), Error> {
        self.seen.drained += 1;
        Ok(())
    }

    fn bad_message(
        &mut self,
        _cx: &mut Cx<&'static str>,
        _id: HandleId,
        _state: &mut &'static str,
        error: Error,
    ) -> Result<(), Error> {
        self.seen.bad.push(error);
        Ok(())
    }
}

fn server(replies_per_message: usize) -> Server {
    Server {
        seen: Seen::default(),
        replies_per_message,
    }
}

/// A loop with a supervisor that has offered one client; returns the loop,
/// the supervisor's end (kept open) and the client's end.
fn connected() -> (Mainloop<&'static str>, Channel, Channel) {
    FakeKernel::install();
    let mut ml = Mainloop::new().unwrap();
    let (sup_ours, sup_theirs) = Channel::create().unwrap();
    ml.cx().add_supervisor(sup_theirs).unwrap();
    let (client, for_server) = Channel::create().unwrap();
    sup_ours
        .send(Message::Open {
            call_id: 0,
            uri: "connect:greeter",
            handle: Some(for_server.into_handle()),
        })
        .unwrap();
    (ml, sup_ours, client)
}

/// The server's end of the one client channel (the object with a state).
fn client_id(ml: &mut Mainloop<&'static str>) -> HandleId {
    ml.cx().states_mut().map(|(id, _)| id).next().unwrap()
}

fn received(ch: &Channel) -> Vec<Vec<u8>> {
    let mut buf = MessageBuffer::new();
    let mut out = Vec::new();
    while let Ok(Message::Data(d)) = ch.try_recv(&mut buf) {
        out.push(d.to_vec());
    }
    out
}

#[test]
fn connect_then_messages_with_their_state() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    client.send_data(b"hello").unwrap();
    client.send_data(b"again").unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(h.seen.connected, ["greeter"]);
    assert_eq!(h.seen.messages, [b"hello".to_vec(), b"again".to_vec()]);
    assert_eq!(
        received(&client),
        [b"hello #0".to_vec(), b"again #0".to_vec()]
    );
}

#[test]
fn a_full_peer_gets_everything_later_in_order_and_drained_says_when() {
    let (mut ml, _sup, client) = connected();
    let n = CHANNEL_QUEUE_MAX + 40;
    let mut h = server(n);
    client.send_data(b"m").unwrap();
    ml.run(&mut h).unwrap();
    // The kernel queue took what fits; the rest waits in the outbox.
    let first = received(&client);
    assert_eq!(first.len(), CHANNEL_QUEUE_MAX);
    let id = client_id(&mut ml);
    assert!(ml.cx().backlog_bytes(id) > 0);
    assert_eq!(h.seen.drained, 0);
    // The client read: room again, so the loop flushes and says drained.
    ml.run(&mut h).unwrap();
    let rest = received(&client);
    assert_eq!(rest.len(), 40);
    assert_eq!(h.seen.drained, 1);
    assert_eq!(ml.cx().backlog_bytes(id), 0);
    let all: Vec<Vec<u8>> = first.into_iter().chain(rest).collect();
    let expected: Vec<Vec<u8>> = (0..n).map(|i| format!("m #{i}").into_bytes()).collect();
    assert_eq!(all, expected, "order is kept across the outbox");
    assert!(h.seen.send_errors.is_empty());
}

#[test]
fn a_peer_that_never_reads_costs_a_bounded_backlog() {
    let (mut ml, _sup, client) = connected();
    // 1 KiB replies, far more than the bound.
    let mut h = server(2 * BACKLOG_MAX_BYTES / 1024);
    client.send_data(&[b'x'; 1020]).unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(h.seen.send_errors, [Error::BacklogFull]);
    let id = client_id(&mut ml);
    assert!(ml.cx().backlog_bytes(id) <= BACKLOG_MAX_BYTES);
}

#[test]
fn a_handler_removes_its_own_channel_and_the_peer_sees_it_closed() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    client.send_data(b"bye").unwrap();
    ml.run(&mut h).unwrap();
    let mut buf = MessageBuffer::new();
    assert_eq!(client.try_recv(&mut buf).unwrap_err(), Error::PeerClosed);
    // Removed by the handler: no peer_closed callback for it.
    assert!(h.seen.closed.is_empty());
    assert_eq!(ml.cx().len(), 1, "only the supervisor is left");
}

#[test]
fn peer_closed_hands_the_state_back() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    client.send_data(b"last words").unwrap();
    drop(client);
    ml.run(&mut h).unwrap();
    assert_eq!(
        h.seen.messages,
        [b"last words".to_vec()],
        "messages before the close are delivered"
    );
    assert_eq!(h.seen.closed, ["client"]);
}

#[test]
fn malformed_messages_go_to_bad_message_and_the_loop_goes_on() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    client.send_raw(200, b"junk", &[]).unwrap();
    client.send_data(b"fine").unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(h.seen.bad, [Error::MalformedMessage]);
    assert_eq!(h.seen.messages, [b"fine".to_vec()]);
}

#[test]
fn handlers_add_timers_and_stop_the_loop() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    client.send_data(b"timer").unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(h.seen.timers, 1);
    client.send_data(b"stop").unwrap();
    client.send_data(b"after stop").unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(
        h.seen.messages.last().unwrap(),
        b"stop",
        "run returned right after stop"
    );
    ml.run(&mut h).unwrap();
    assert_eq!(h.seen.messages.last().unwrap(), b"after stop");
}

#[test]
fn sends_to_unknown_ids_and_non_channels_are_errors() {
    let (mut ml, _sup, _client) = connected();
    assert_eq!(
        ml.cx().send_data(HandleId(9999), b"x"),
        Err(Error::NotFound)
    );
    let timer = crate::timer::Timer::create().unwrap();
    let t = ml.cx().add_timer(timer, "timer").unwrap();
    assert_eq!(ml.cx().send_data(t, b"x"), Err(Error::WrongObjectType));
}

#[test]
fn a_paused_channel_keeps_its_messages_until_resumed() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    client.send_data(b"pause").unwrap();
    client.send_data(b"one").unwrap();
    client.send_data(b"two").unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(
        h.seen.messages,
        [b"pause".to_vec()],
        "nothing taken while paused"
    );
    let id = client_id(&mut ml);
    ml.cx().resume_receiving(id).unwrap();
    ml.run(&mut h).unwrap();
    assert_eq!(
        h.seen.messages,
        [b"pause".to_vec(), b"one".to_vec(), b"two".to_vec()]
    );
    assert_eq!(received(&client), [b"one #0".to_vec(), b"two #0".to_vec()]);
}

#[test]
fn replies_go_out_in_order_with_the_next_wait_or_before_any_other_send() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    for m in [
        &b"reply"[..],
        b"reply-last",
        b"hello",
        b"reply-last",
        b"reply-stop",
    ] {
        client.send_data(m).unwrap();
    }
    ml.run(&mut h).unwrap();
    assert_eq!(
        received(&client),
        [
            b"r1".to_vec(),
            b"s2".to_vec(),
            b"reply-last".to_vec(),
            b"hello #0".to_vec(),
            b"reply-last".to_vec(),
            b"stopping".to_vec(),
        ]
    );
}

/// Replies made of the received bytes are sent from the receive buffer
/// itself: each comes out intact though the next message is received in
/// the same call that sends it, and one still pending when the handler
/// sends something else goes first.
#[test]
fn replies_of_received_bytes_stay_intact() {
    let (mut ml, _sup, client) = connected();
    let mut h = server(1);
    for m in [
        &b"tail:first"[..],
        b"tail:second, longer",
        b"tail:x",
        b"hello",
        b"tail-then:third",
        b"tail:",
        b"reply-stop",
    ] {
        client.send_data(m).unwrap();
    }
    ml.run(&mut h).unwrap();
    assert_eq!(
        received(&client),
        [
            b"first".to_vec(),
            b"second, longer".to_vec(),
            b"x".to_vec(),
            b"hello #0".to_vec(),
            b"third".to_vec(),
            b"then".to_vec(),
            b"".to_vec(),
            b"stopping".to_vec(),
        ]
    );
}
