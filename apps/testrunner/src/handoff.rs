//! Direct delivery (the kernel's `object/rendezvous.rs`): a message sent
//! while its receiver waits in `Poll::wait_recv` is copied straight into
//! the receiver's buffer. The receiver must see exactly what queueing
//! gives: every message, in order, whichever way each one went.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::Error;
use starina::Message;

use super::wait_message;
use super::Ctx;
use super::Received;
use super::TestResult;

/// Receives `n` messages on `ch` with `wait_recv`, then sends back one
/// message naming them in the order they came: a Data message by its
/// bytes, an Open by its URI.
fn collect(ch: Channel, n: usize) -> Result<(), Error> {
    let poll = Poll::create()?;
    poll.add(ch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)?;
    let mut buf = MessageBuffer::new();
    let mut seen: Vec<String> = Vec::new();
    while seen.len() < n {
        let event = poll.wait_recv(&mut buf)?;
        let Some(received) = event.received else {
            return Err(Error::PeerClosed);
        };
        let info = match received {
            Ok(info) => info,
            Err(Error::WouldBlock) => continue,
            Err(e) => return Err(e),
        };
        let handles = buf.take_handles(&info);
        let name = match Message::decode(info.kind, buf.data(&info), handles)? {
            Message::Data(d) => String::from_utf8_lossy(d).into_owned(),
            Message::Open { uri, .. } => uri.to_string(),
            other => format!("{:?}", other.kind()),
        };
        seen.push(name);
    }
    ch.send_data(seen.join(" ").as_bytes())?;
    Ok(())
}

/// Messages queued before the receiver waits, handed over while it waits,
/// queued behind a handed-over one, and one moving a handle (never handed
/// over): all arrive, in the order sent.
pub fn handoff_keeps_order(cx: &mut Ctx) -> TestResult {
    let (tx, rx) = Channel::create().map_err(|e| e.to_string())?;
    starina::thread::spawn(move || {
        if let Err(e) = collect(rx, 7) {
            log::error!("collector failed: {e}");
        }
    })
    .map_err(|e| format!("spawn: {e}"))?;
    let send = |what: &[u8]| tx.send_data(what).map_err(|e| format!("send: {e}"));
    // Before the collector ever runs: queued.
    send(b"m0")?;
    send(b"m1")?;
    // It drains them and waits, lending its buffer.
    starina::timer::sleep_ms(20).map_err(|e| e.to_string())?;
    send(b"m2")?; // handed over
    send(b"m3")?; // queued: the buffer is taken until the collector runs
    starina::timer::sleep_ms(20).map_err(|e| e.to_string())?;
    // It waits again. A message moving a handle is never handed over: it
    // queues (and wakes the collector)...
    let (_kept, given) = Channel::create().map_err(|e| e.to_string())?;
    let open = Message::Open {
        call_id: 0,
        uri: "m4",
        handle: Some(given.into_handle()),
    };
    tx.send(open)
        .map_err(|e| format!("send Open: {}", e.error))?;
    // ...so this one, though the buffer is still lent, must queue behind it.
    send(b"m5")?;
    starina::timer::sleep_ms(20).map_err(|e| e.to_string())?;
    send(b"m6")?; // handed over again
    match wait_message(&tx, &mut cx.buf, 5_000) {
        Ok(Received::Data(d)) => check!(
            d == b"m0 m1 m2 m3 m4 m5 m6",
            "the collector saw {:?}",
            String::from_utf8_lossy(&d)
        ),
        Ok(_) => return Err("unexpected message from the collector".to_string()),
        Err(e) => return Err(format!("nothing from the collector: {e}")),
    }
    Ok(())
}

/// A reply sent out of the receive buffer (`Poll::send_received_wait_recv`,
/// what the main loop's `reply_data` uses for part of the message being
/// handled): the peer gets exactly that part, the same call receives the
/// next message into the buffer, and a range outside the buffer is an
/// error that sends nothing.
pub fn send_received_sends_part_of_the_buffer(_cx: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    let poll = Poll::create().map_err(|e| e.to_string())?;
    poll.add(a.id(), Readiness::READABLE)
        .map_err(|e| e.to_string())?;
    let mut buf = MessageBuffer::new();
    b.send_data(b"hello world").map_err(|e| e.to_string())?;
    let first = poll.wait_recv(&mut buf).map_err(|e| e.to_string())?;
    check!(
        matches!(first.received, Some(Ok(info)) if buf.data(&info) == b"hello world"),
        "the first message did not arrive: {first:?}"
    );
    b.send_data(b"next").map_err(|e| e.to_string())?;
    let waited = poll
        .send_received_wait_recv(&a, 6..11, &mut buf)
        .map_err(|e| format!("send: {e}"))?
        .map_err(|e| format!("wait: {e}"))?;
    check!(
        matches!(waited.received, Some(Ok(info)) if buf.data(&info) == b"next"),
        "the wait did not receive the next message: {waited:?}"
    );
    let mut theirs = MessageBuffer::new();
    match b.try_recv(&mut theirs) {
        Ok(Message::Data(d)) => check!(
            d == b"world",
            "the peer got {:?}",
            String::from_utf8_lossy(d)
        ),
        other => return Err(format!("the peer got no Data message: {other:?}")),
    }
    let too_far = starina::abi::MESSAGE_DATA_MAX + 1;
    match poll.send_received_wait_recv(&a, 0..too_far, &mut buf) {
        Err(Error::InvalidArgument) => {}
        other => return Err(format!("a range past the buffer gave {other:?}")),
    }
    check!(
        matches!(b.try_recv(&mut theirs), Err(Error::WouldBlock)),
        "a refused send reached the peer"
    );
    Ok(())
}
