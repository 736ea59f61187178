//! The in-OS test runner (profile `test`): exercises the kernel's objects
//! and its fault handling through the same API every component uses, logs
//! `test <name> ... ok` or `... FAILED: <why>` for each, then
//! `testrunner: N passed, M failed`, and powers the machine off with 0 when
//! all passed, 1 otherwise.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use core::mem::ManuallyDrop;

use starina::abi::guest_memory::GuestMemory;
use starina::abi::guest_memory::MemError;
use starina::abi::markers;
use starina::abi::HandleId;
use starina::abi::Readiness;
use starina::abi::Rights;
use starina::abi::CHANNEL_QUEUE_MAX;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::hypervisor::Hypervisor;
use starina::hypervisor::Injection;
use starina::message::MessageKind;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina::Message;

use starina::abi::vcpu::Access;
use starina::abi::vcpu::DescriptorTable;
use starina::abi::vcpu::Segment;
use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;
use starina::driver::Device;
use starina::driver::DmaBuffer;
use starina::handle::OwnedHandle;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

type TestResult = Result<(), String>;

struct Ctx {
    echo: Channel,
    crasher: Channel,
    usercrash: Channel,
    spinner: Channel,
    greeter: Channel,
    supervisor: Channel,
    hypervisor: Option<Hypervisor>,
    nic: Device,
    disk: disk::DiskSlot,
    disk_other: Option<Channel>,
    files: Option<starina::fs::Files>,
    spawn: starina::command::Spawner,
    monitor: starina::system::Monitor,
    /// The stress test's ring: its components and the messages each sends.
    ring_nodes: u32,
    ring_messages: u32,
    buf: MessageBuffer,
}

macro_rules! check {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+));
        }
    };
}

// After `check!`, which they use.
mod backward_copy;
mod float_state;
mod commands;
mod commands_system;
mod commands_files;
mod cpu_load;
mod disk;
mod files;
mod handoff;
mod parallel;
mod pinning;
mod ring;
mod user_mode;
mod xsetbv;

fn expect_err<T: core::fmt::Debug>(r: Result<T, Error>, want: Error) -> TestResult {
    match r {
        Err(e) if e == want => Ok(()),
        other => Err(format!("expected Err({want:?}), got {other:?}")),
    }
}

/// What `wait_message` saw.
enum Received {
    Data(Vec<u8>),
    Open { uri: String, handle: Option<Channel> },
    Other(MessageKind),
}

/// Waits up to `timeout_ms` for a message on `ch` (`WouldBlock`: none
/// came).
fn wait_message(ch: &Channel, buf: &mut MessageBuffer, timeout_ms: u64) -> Result<Received, Error> {
    Ok(match ch.recv_within(buf, timeout_ms)?.ok_or(Error::WouldBlock)? {
        Message::Data(d) => Received::Data(d.to_vec()),
        Message::Open { uri, handle, .. } => Received::Open {
            uri: uri.to_string(),
            handle: handle.map(Channel::from_handle),
        },
        other => Received::Other(other.kind()),
    })
}

fn request(ch: &Channel, buf: &mut MessageBuffer, data: &[u8]) -> Result<Vec<u8>, String> {
    ch.send_data(data).map_err(|e| format!("send failed: {e}"))?;
    match wait_message(ch, buf, 30_000) {
        Ok(Received::Data(d)) => Ok(d),
        Ok(Received::Other(kind)) => Err(format!("unexpected {kind:?} message")),
        Ok(Received::Open { .. }) => Err("unexpected Open message".to_string()),
        Err(Error::WouldBlock) => Err("no reply within 30 s".to_string()),
        Err(e) => Err(format!("receive failed: {e}")),
    }
}

fn echo_round_trips(cx: &mut Ctx) -> TestResult {
    for len in [0, 1, 100, 1024, 4096, MESSAGE_DATA_MAX] {
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + len) as u8).collect();
        let reply = request(&cx.echo, &mut cx.buf, &data)?;
        check!(reply == data, "echo of {len} bytes came back different");
    }
    Ok(())
}

/// Many blocking round trips, each with its own contents, with the
/// preemption timer firing: every reply arrives, in order, unchanged.
/// (A wake lost between "about to block" and "blocked" showed up in the
/// crasher tests below, where a notification can precede the wait.)
fn many_round_trips(cx: &mut Ctx) -> TestResult {
    for i in 0..20_000u32 {
        let data = i.to_le_bytes();
        let reply = request(&cx.echo, &mut cx.buf, &data).map_err(|e| format!("round trip {i}: {e}"))?;
        check!(reply == data, "round trip {i}: wrong reply");
    }
    Ok(())
}

/// The component the README's walkthrough builds, as written there.
fn readme_greeter(cx: &mut Ctx) -> TestResult {
    let reply = request(&cx.greeter, &mut cx.buf, b"Starina")?;
    check!(reply == b"Hello, Starina!", "greeter said {:?}", String::from_utf8_lossy(&reply));
    let reply = request(&cx.greeter, &mut cx.buf, &[0xff, 0xfe])?;
    check!(reply == b"Hello, stranger!", "greeter said {:?} to bad UTF-8", String::from_utf8_lossy(&reply));
    Ok(())
}

/// A handle number this test does not own, wrapped in an SDK type as a
/// buggy or malicious component could: never closed (not ours to close).
fn forged<T>(wrap: fn(OwnedHandle) -> T, id: HandleId) -> ManuallyDrop<T> {
    ManuallyDrop::new(wrap(OwnedHandle::from_raw(id)))
}

fn invalid_handle(_: &mut Ctx) -> TestResult {
    let send = |id| forged(Channel::from_handle, id).send_raw(3, b"x", &[]);
    expect_err(send(HandleId(9999)), Error::InvalidHandle)?;
    expect_err(send(HandleId(0)), Error::InvalidHandle)?;
    expect_err(OwnedHandle::from_raw(HandleId(12345)).close(), Error::InvalidHandle)?;
    expect_err(forged(Poll::from_handle, HandleId(777)).wait(), Error::InvalidHandle)
}

fn wrong_object_type(_: &mut Ctx) -> TestResult {
    let poll = Poll::create().map_err(|e| e.to_string())?;
    let as_channel = forged(Channel::from_handle, poll.id());
    expect_err(as_channel.send_raw(3, b"x", &[]), Error::WrongObjectType)?;
    let (a, _b) = Channel::create().map_err(|e| e.to_string())?;
    expect_err(forged(Poll::from_handle, a.id()).wait(), Error::WrongObjectType)?;
    expect_err(starina::timer::set_by_id(a.id(), 1), Error::WrongObjectType)
}

fn missing_right(_: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    let read_only = a
        .handle()
        .duplicate(Rights::READ | Rights::POLL)
        .map_err(|e| e.to_string())?;
    let read_only = Channel::from_handle(read_only);
    expect_err(read_only.send_raw(3, b"x", &[]), Error::MissingRight)?;
    // A copy cannot gain rights.
    expect_err(read_only.handle().duplicate(Rights::all()), Error::MissingRight)?;
    // Handles without TRANSFER do not move.
    let (c, _d) = Channel::create().map_err(|e| e.to_string())?;
    let pinned = c.handle().duplicate(Rights::READ | Rights::WRITE).map_err(|e| e.to_string())?;
    expect_err(b.send_raw(3, b"", &[pinned.id()]), Error::MissingRight)
}

fn oversized_message(_: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    let big = vec![0u8; MESSAGE_DATA_MAX + 1];
    expect_err(a.send_data(&big), Error::MessageTooLarge)?;
    expect_err(b.recv_raw(&mut [0; 16], &mut []), Error::WouldBlock)
}

fn too_many_handles(_: &mut Ctx) -> TestResult {
    let (a, _b) = Channel::create().map_err(|e| e.to_string())?;
    let mut extra = Vec::new();
    for _ in 0..MESSAGE_HANDLES_MAX + 1 {
        extra.push(Timer::create().map_err(|e| e.to_string())?);
    }
    let ids: Vec<HandleId> = extra.iter().map(|t| t.id()).collect();
    expect_err(a.send_raw(3, b"", &ids), Error::TooManyHandles)?;
    // Nothing moved: every handle still works.
    for t in &extra {
        t.set(1_000_000_000).map_err(|e| format!("handle lost after a failed send: {e}"))?;
    }
    Ok(())
}

fn full_queue_backpressure(cx: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    for i in 0..CHANNEL_QUEUE_MAX {
        a.send_data(&[i as u8]).map_err(|e| format!("send {i}: {e}"))?;
    }
    expect_err(a.send_data(b"overflow"), Error::QueueFull)?;
    let info = b.recv_raw(&mut cx.buf_data(), &mut []).map_err(|e| e.to_string())?;
    check!(info.data_len == 1, "first message has the wrong size");
    a.send_data(b"after").map_err(|e| format!("send after draining one: {e}"))?;
    let mut data = [0u8; 16];
    for i in 1..CHANNEL_QUEUE_MAX {
        let info = b.recv_raw(&mut data, &mut []).map_err(|e| e.to_string())?;
        check!(info.data_len == 1 && data[0] == i as u8, "message {i} out of order");
    }
    let info = b.recv_raw(&mut data, &mut []).map_err(|e| e.to_string())?;
    check!(&data[..info.data_len] == b"after", "last message wrong");
    Ok(())
}

impl Ctx {
    fn buf_data(&self) -> [u8; 64] {
        [0; 64]
    }
}

fn closed_peer(_: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    a.send_data(b"last").map_err(|e| e.to_string())?;
    drop(a);
    let mut data = [0u8; 16];
    let info = b.recv_raw(&mut data, &mut []).map_err(|e| e.to_string())?;
    check!(&data[..info.data_len] == b"last", "queued message lost when the peer closed");
    expect_err(b.recv_raw(&mut data, &mut []), Error::PeerClosed)?;
    expect_err(b.send_data(b"x"), Error::PeerClosed)
}

fn handle_transfer(cx: &mut Ctx) -> TestResult {
    let (x1, x2) = Channel::create().map_err(|e| e.to_string())?;
    let (y1, y2) = Channel::create().map_err(|e| e.to_string())?;
    expect_err(x1.send_raw(3, b"", &[x1.id()]), Error::InvalidTransfer)?;
    expect_err(x1.send_raw(3, b"", &[x2.id()]), Error::InvalidTransfer)?;
    let msg = Message::Open {
        call_id: 7,
        uri: "test:transfer",
        handle: Some(y2.into_handle()),
    };
    x1.send(msg).map_err(|e| e.error.to_string())?;
    let got = match x2.try_recv(&mut cx.buf).map_err(|e| e.to_string())? {
        Message::Open {
            call_id: 7,
            uri: "test:transfer",
            handle: Some(h),
        } => Channel::from_handle(h),
        other => return Err(format!("unexpected {other:?}")),
    };
    y1.send_data(b"through the moved handle").map_err(|e| e.to_string())?;
    let mut data = [0u8; 64];
    let info = got.recv_raw(&mut data, &mut []).map_err(|e| e.to_string())?;
    check!(&data[..info.data_len] == b"through the moved handle", "wrong data");
    Ok(())
}

/// Channel ends travel one level deep: an end whose queue carries ends is
/// not sent, and an end in flight receives no ends. So no chain of nested
/// channels can grow (its drop used to recurse once per level, on a kernel
/// stack) and no cycle of ends can keep them alive forever.
fn nested_channels_are_bounded(_: &mut Ctx) -> TestResult {
    let (a1, a2) = Channel::create().map_err(|e| e.to_string())?;
    let (b1, b2) = Channel::create().map_err(|e| e.to_string())?;
    let (c1, _c2) = Channel::create().map_err(|e| e.to_string())?;
    // b2 goes into a2's queue: a2 now carries an end, b2 is in flight.
    a1.send_raw(3, b"", &[b2.id()]).map_err(|e| e.to_string())?;
    core::mem::forget(b2); // moved
    expect_err(c1.send_raw(3, b"", &[a2.id()]), Error::InvalidTransfer)?;
    let (_d1, d2) = Channel::create().map_err(|e| e.to_string())?;
    expect_err(b1.send_raw(3, b"", &[d2.id()]), Error::InvalidTransfer)?;
    // Plain data still flows to the end in flight.
    b1.send_data(b"still fine").map_err(|e| e.to_string())
}

fn malformed_messages(cx: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    // Unknown kind, a short Open, bad UTF-8, Close with a body.
    let bad: [(u8, &[u8]); 4] = [(99, b"??"), (1, b"\x01"), (1, b"\0\0\0\0\xff\xfe"), (4, b"x")];
    for (kind, body) in bad {
        a.send_raw(kind, body, &[]).map_err(|e| e.to_string())?;
        expect_err(b.try_recv(&mut cx.buf).map(|_| ()), Error::MalformedMessage)?;
    }
    // An OpenReply without its handle.
    a.send_raw(MessageKind::OpenReply as u8, &5u32.to_le_bytes(), &[])
        .map_err(|e| e.to_string())?;
    expect_err(b.try_recv(&mut cx.buf).map(|_| ()), Error::MalformedMessage)?;
    // The channel still works.
    a.send_data(b"fine").map_err(|e| e.to_string())?;
    match b.try_recv(&mut cx.buf) {
        Ok(Message::Data(b"fine")) => Ok(()),
        other => Err(format!("channel broken after bad messages: {other:?}")),
    }
}

fn small_buffer_keeps_message(_: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    a.send_data(b"0123456789").map_err(|e| e.to_string())?;
    expect_err(b.recv_raw(&mut [0; 4], &mut []), Error::BufferTooSmall)?;
    let mut data = [0u8; 10];
    let info = b.recv_raw(&mut data, &mut []).map_err(|e| e.to_string())?;
    check!(info.data_len == 10 && &data == b"0123456789", "message changed");
    Ok(())
}

fn poll_errors(_: &mut Ctx) -> TestResult {
    let poll = Poll::create().map_err(|e| e.to_string())?;
    expect_err(poll.wait(), Error::PollEmpty)?;
    let (a, _b) = Channel::create().map_err(|e| e.to_string())?;
    poll.add(a.id(), Readiness::READABLE).map_err(|e| e.to_string())?;
    expect_err(poll.add(a.id(), Readiness::READABLE), Error::AlreadyExists)?;
    expect_err(poll.remove(HandleId(4242)), Error::NotFound)?;
    expect_err(poll.add(poll.id(), Readiness::READABLE), Error::WrongObjectType)
}

fn timers(_: &mut Ctx) -> TestResult {
    let poll = Poll::create().map_err(|e| e.to_string())?;
    let t1 = Timer::create().map_err(|e| e.to_string())?;
    let t2 = Timer::create().map_err(|e| e.to_string())?;
    poll.add(t1.id(), Readiness::READABLE).map_err(|e| e.to_string())?;
    poll.add(t2.id(), Readiness::READABLE).map_err(|e| e.to_string())?;
    let start = now_ns();
    t1.set_ms(40).map_err(|e| e.to_string())?;
    t2.set_ms(20).map_err(|e| e.to_string())?;
    let (first, _) = poll.wait().map_err(|e| e.to_string())?;
    let t_first = now_ns() - start;
    let (second, _) = poll.wait().map_err(|e| e.to_string())?;
    let t_second = now_ns() - start;
    check!(first == t2.id() && second == t1.id(), "timers fired out of order");
    check!(t_first >= 20_000_000, "20 ms timer fired after {t_first} ns");
    check!(t_second >= 40_000_000, "40 ms timer fired after {t_second} ns");
    Ok(())
}

/// Waits on the supervisor channel for `reconnect:<field>`.
fn wait_reconnect(cx: &mut Ctx, field: &str) -> Result<Channel, String> {
    match wait_message(&cx.supervisor, &mut cx.buf, 30_000) {
        Ok(Received::Open {
            uri,
            handle: Some(ch),
        }) if uri == format!("reconnect:{field}") => Ok(ch),
        Ok(_) => Err("unexpected message on the supervisor channel".to_string()),
        Err(e) => Err(format!("no reconnect from the supervisor: {e}")),
    }
}

fn expect_peer_closed(ch: &Channel, buf: &mut MessageBuffer) -> TestResult {
    match wait_message(ch, buf, 30_000) {
        Err(Error::PeerClosed) => Ok(()),
        Err(Error::WouldBlock) => Err("peer still open 30 s later".to_string()),
        Err(e) => Err(format!("unexpected error {e}")),
        Ok(_) => Err("got a message instead of peer-closed".to_string()),
    }
}

fn panic_is_isolated_and_restarted(cx: &mut Ctx) -> TestResult {
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(pong == b"pong 1", "first instance answered {:?}", String::from_utf8_lossy(&pong));
    cx.crasher.send_data(b"panic").map_err(|e| e.to_string())?;
    expect_peer_closed(&cx.crasher, &mut cx.buf)?;
    cx.crasher = wait_reconnect(cx, "crasher")?;
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(pong == b"pong 2", "restarted instance answered {:?}", String::from_utf8_lossy(&pong));
    // Everyone else is unaffected.
    let reply = request(&cx.echo, &mut cx.buf, b"still here?")?;
    check!(reply == b"still here?", "echo broken after the crash");
    Ok(())
}

fn stack_overflow_is_isolated(cx: &mut Ctx) -> TestResult {
    cx.crasher.send_data(b"overflow").map_err(|e| e.to_string())?;
    expect_peer_closed(&cx.crasher, &mut cx.buf)?;
    cx.crasher = wait_reconnect(cx, "crasher")?;
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(pong == b"pong 3", "restarted instance answered {:?}", String::from_utf8_lossy(&pong));
    Ok(())
}

/// A 1 MiB log line full of newlines is cut to one bounded line, and the
/// system goes on at once (it used to hold the console lock, interrupts
/// off, for the whole megabyte).
fn huge_log_line_is_bounded(cx: &mut Ctx) -> TestResult {
    let start = now_ns();
    let reply = request(&cx.crasher, &mut cx.buf, b"log-flood")?;
    let elapsed_ms = (now_ns() - start) / 1_000_000;
    check!(reply == b"logged", "crasher answered {:?}", String::from_utf8_lossy(&reply));
    check!(elapsed_ms < 1000, "logging one huge line took {elapsed_ms} ms");
    let reply = request(&cx.echo, &mut cx.buf, b"after the flood")?;
    check!(reply == b"after the flood", "echo broken after the flood");
    Ok(())
}

/// A `Display` that panics while a component logs ends that component
/// only (it used to panic inside the kernel's console lock).
fn panic_while_logging_is_isolated(cx: &mut Ctx) -> TestResult {
    cx.crasher.send_data(b"log-panic").map_err(|e| e.to_string())?;
    expect_peer_closed(&cx.crasher, &mut cx.buf)?;
    cx.crasher = wait_reconnect(cx, "crasher")?;
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(pong == b"pong 4", "restarted instance answered {:?}", String::from_utf8_lossy(&pong));
    Ok(())
}

/// A component torn down while one of its threads waits in `poll_wait`:
/// that thread's call unwinds, so the channel end its poll watches closes
/// and the peer sees it (a killed waiter used to keep it open for good).
fn teardown_releases_what_waiting_threads_hold(cx: &mut Ctx) -> TestResult {
    cx.crasher.send_data(b"wait-panic").map_err(|e| e.to_string())?;
    let held = match wait_message(&cx.crasher, &mut cx.buf, 30_000) {
        Ok(Received::Open { uri, handle: Some(ch) }) if uri == "held" => ch,
        Ok(_) => return Err("crasher did not send the held channel".to_string()),
        Err(e) => return Err(format!("no held channel: {e}")),
    };
    // The waiter lent its buffer to its poll (`wait_recv`): a message sent
    // now may be handed into it while the thread is being torn down. That
    // must harm no one (the thread takes its buffer back as it ends).
    match held.send_data(b"into a dying waiter") {
        Ok(()) | Err(Error::PeerClosed) => {}
        Err(e) => return Err(format!("send to the dying waiter: {e}")),
    }
    expect_peer_closed(&cx.crasher, &mut cx.buf)?;
    expect_peer_closed(&held, &mut cx.buf).map_err(|e| format!("the waiting thread's end: {e}"))?;
    cx.crasher = wait_reconnect(cx, "crasher")?;
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(pong == b"pong 5", "restarted instance answered {:?}", String::from_utf8_lossy(&pong));
    Ok(())
}

/// A component that allocates without bound is stopped at its memory
/// budget, alone, and restarted; the kernel and everyone else go on.
fn unbounded_allocation_is_stopped_alone(cx: &mut Ctx) -> TestResult {
    cx.crasher.send_data(b"hog").map_err(|e| e.to_string())?;
    expect_peer_closed(&cx.crasher, &mut cx.buf)?;
    cx.crasher = wait_reconnect(cx, "crasher")?;
    let pong = request(&cx.crasher, &mut cx.buf, b"ping")?;
    check!(pong == b"pong 6", "restarted instance answered {:?}", String::from_utf8_lossy(&pong));
    let reply = request(&cx.echo, &mut cx.buf, b"after the hog")?;
    check!(reply == b"after the hog", "echo broken after the hog");
    Ok(())
}

fn preemption(cx: &mut Ctx) -> TestResult {
    let reply = request(&cx.spinner, &mut cx.buf, b"spin")?;
    check!(reply == b"spinning", "spinner did not start");
    // The spinner never waits again. We still get the CPU back: a timer
    // fires, and the echo server still answers.
    let poll = Poll::create().map_err(|e| e.to_string())?;
    let timer = Timer::create().map_err(|e| e.to_string())?;
    poll.add(timer.id(), Readiness::READABLE).map_err(|e| e.to_string())?;
    let start = now_ns();
    timer.set_ms(50).map_err(|e| e.to_string())?;
    poll.wait().map_err(|e| e.to_string())?;
    let elapsed = now_ns() - start;
    check!(elapsed < 2_000_000_000, "a 50 ms timer took {elapsed} ns next to a spinning component");
    for i in 0..10u8 {
        let reply = request(&cx.echo, &mut cx.buf, &[i; 32])?;
        check!(reply == [i; 32], "echo reply {i} wrong while the spinner spins");
    }
    Ok(())
}

/// A real-mode guest: `out 0x3f8, 'A'`, `cpuid`, a 32-bit-addressed MMIO
/// write of 0x42 to 0xd000_0000 (outside guest RAM), then `hlt`.
const GUEST_CODE: &[u8] = &[
    0xba, 0xf8, 0x03, // mov dx, 0x3f8
    0xb0, 0x41, // mov al, 'A'
    0xee, // out dx, al
    0x0f, 0xa2, // cpuid
    0x67, 0xc6, 0x05, 0x00, 0x00, 0x00, 0xd0, 0x42, // mov byte [0xd0000000], 0x42
    0xf4, // hlt
];

fn real_mode_state(rip: u64) -> VcpuState {
    let code = Segment {
        selector: 0,
        attrib: 0x9b,
        limit: 0xffff,
        base: 0,
    };
    // "Unreal" data segment: a 4 GiB limit, so the 32-bit address works.
    let data = Segment {
        selector: 0,
        attrib: 0x93,
        limit: 0xffff_ffff,
        base: 0,
    };
    VcpuState {
        rip,
        rflags: 2,
        cr0: 0x10,
        cs: code,
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            selector: 0,
            attrib: 0x8b,
            limit: 0xffff,
            base: 0,
        },
        ldtr: Segment {
            selector: 0,
            attrib: 0x82,
            limit: 0xffff,
            base: 0,
        },
        gdtr: DescriptorTable { base: 0, limit: 0xffff },
        idtr: DescriptorTable { base: 0, limit: 0xffff },
        ..Default::default()
    }
}

fn hypervisor_runs_a_guest(cx: &mut Ctx) -> TestResult {
    let hv = cx.hypervisor.as_ref().ok_or("no hypervisor privilege")?;
    expect_err(hv.create_vm(3 << 20).map(|_| ()), Error::InvalidArgument)?;
    let (ram, vcpu) = hv
        .create_vm(2 << 20)
        .map_err(|e| format!("create_vm: {e} (see the kernel log for why)"))?;
    ram.write_bytes(0x1000, GUEST_CODE).map_err(|e| e.to_string())?;
    expect_err(ram.write_bytes((2 << 20) - 1, &[0, 0]), Error::OutsideGuestRam)?;
    expect_err(ram.read_bytes(u64::MAX, &mut [0]), Error::OutsideGuestRam)?;
    let mut state = real_mode_state(0x1000);
    // Host interrupts may also come back as exits (the first entry too);
    // skip those.
    let next = |state: &mut VcpuState| loop {
        match vcpu.run(state, Injection::None) {
            Ok(VmExit::HostInterrupt) => continue,
            other => return other,
        }
    };
    match next(&mut state).map_err(|e| e.to_string())? {
        VmExit::Io {
            port: 0x3f8,
            size: 1,
            access: Access::Write,
            value,
            next_rip,
            ..
        } if value & 0xff == 0x41 => state.rip = next_rip,
        other => return Err(format!("expected OUT 0x3f8 'A', got {other:?}")),
    }
    match next(&mut state).map_err(|e| e.to_string())? {
        VmExit::Cpuid { .. } => {}
        other => return Err(format!("expected CPUID, got {other:?}")),
    }
    state.rip += 2;
    match next(&mut state).map_err(|e| e.to_string())? {
        VmExit::NestedPageFault {
            gpa: 0xd000_0000,
            access: Access::Write,
            ..
        } => {}
        other => return Err(format!("expected an MMIO write at 0xd0000000, got {other:?}")),
    }
    state.rip += 8;
    match next(&mut state).map_err(|e| e.to_string())? {
        VmExit::Hlt => {}
        other => return Err(format!("expected HLT, got {other:?}")),
    }
    Ok(())
}

/// Guest RAM accesses outside RAM are `OutsideGuestRam` (formerly
/// `InvalidArgument`, like any other bad argument), and the VMM sees them as
/// out of bounds; other kernel errors stay themselves.
fn guest_ram_errors_say_why(cx: &mut Ctx) -> TestResult {
    let hv = cx.hypervisor.as_ref().ok_or("no hypervisor privilege")?;
    let (mut ram, _vcpu) = hv.create_vm(2 << 20).map_err(|e| format!("create_vm: {e}"))?;
    let size = ram.size();
    expect_err(ram.read_bytes(size, &mut [0]), Error::OutsideGuestRam)?;
    expect_err(ram.write_bytes(size - 1, &[0, 0]), Error::OutsideGuestRam)?;
    let mut word = [0u8; 4];
    match GuestMemory::read(&ram, size - 2, &mut word) {
        Err(MemError::OutOfBounds { gpa, len: 4 }) if gpa == size - 2 => {}
        other => return Err(format!("expected OutOfBounds at {:#x}, got {other:?}", size - 2)),
    }
    GuestMemory::write(&mut ram, size - 4, &[1, 2, 3, 4]).map_err(|e| e.to_string())?;
    GuestMemory::read(&ram, size - 4, &mut word).map_err(|e| e.to_string())?;
    check!(word == [1, 2, 3, 4], "guest RAM read back {word:?}");
    Ok(())
}

/// Guest RAM reads as zero however its pages were used before: the first
/// VM gets pages untouched since boot (not zeroed again, see
/// `mm::page::alloc_guest_pages`), the next ones get the pages the last
/// one filled, which must be zeroed.
fn guest_ram_starts_zeroed(cx: &mut Ctx) -> TestResult {
    let hv = cx.hypervisor.as_ref().ok_or("no hypervisor privilege")?;
    let mut buf = vec![0u8; 64 << 10];
    for round in 0..3 {
        let (ram, _vcpu) = hv.create_vm(4 << 20).map_err(|e| format!("create_vm: {e}"))?;
        for gpa in (0..ram.size()).step_by(buf.len()) {
            ram.read_bytes(gpa, &mut buf).map_err(|e| e.to_string())?;
            let nonzero = buf.chunks_exact(8).position(|w| w != [0; 8]);
            check!(nonzero.is_none(), "VM {round}: guest RAM at {gpa:#x} is not zero");
            buf.fill(0xa5);
            ram.write_bytes(gpa, &buf).map_err(|e| e.to_string())?;
            buf.fill(0);
        }
    }
    Ok(())
}

/// `cli; out 0x80, 1; sti; nop; nop; hlt`, and at 0x3000 the handler of
/// vector 0x20: `out 0x80, 0x99; hlt`.
const IRQ_GUEST: &[u8] = &[0xfa, 0xb0, 0x01, 0xe6, 0x80, 0xfb, 0x90, 0x90, 0xf4];
const IRQ_HANDLER: &[u8] = &[0xb0, 0x99, 0xe6, 0x80, 0xf4];

fn hypervisor_delivers_interrupts(cx: &mut Ctx) -> TestResult {
    let hv = cx.hypervisor.as_ref().ok_or("no hypervisor privilege")?;
    let (ram, vcpu) = hv.create_vm(2 << 20).map_err(|e| format!("create_vm: {e}"))?;
    ram.write_bytes(0x2000, IRQ_GUEST).map_err(|e| e.to_string())?;
    ram.write_bytes(0x3000, IRQ_HANDLER).map_err(|e| e.to_string())?;
    // Real-mode interrupt vector table: vector 0x20 -> 0000:3000.
    ram.write_bytes(0x20 * 4, &[0x00, 0x30, 0x00, 0x00]).map_err(|e| e.to_string())?;
    let mut state = real_mode_state(0x2000);
    // A host interrupt ends a run early: the interrupt asked for stays
    // queued in the kernel, so the run goes on with nothing new to inject.
    // Returns the exit, and whether a host interrupt came first.
    let run = |state: &mut VcpuState, mut inject: Injection| {
        let mut interrupted = false;
        loop {
            match vcpu.run(state, inject) {
                Ok(VmExit::HostInterrupt) => (inject, interrupted) = (Injection::None, true),
                other => return other.map(|exit| (exit, interrupted)),
            }
        }
    };
    match run(&mut state, Injection::None).map_err(|e| e.to_string())?.0 {
        VmExit::Io { port: 0x80, value, next_rip, .. } if value & 0xff == 1 => state.rip = next_rip,
        other => return Err(format!("expected OUT 0x80, 1, got {other:?}")),
    }
    // Interrupts are off: the kernel must hold the interrupt, ask for a
    // window, and deliver it once the guest executes STI. (If a host
    // interrupt stopped the guest after its STI, the next entry delivers
    // it at once: the window was open.)
    check!(!state.interrupts_enabled(), "guest should run with IF=0 here");
    let handler_ran = |exit: &VmExit| {
        matches!(exit, VmExit::Io { port: 0x80, value, .. } if value & 0xff == 0x99)
    };
    match run(&mut state, Injection::Interrupt(0x20)).map_err(|e| e.to_string())? {
        (VmExit::InterruptWindow, _) => {}
        (exit, true) if handler_ran(&exit) => return Ok(()),
        (other, _) => return Err(format!("expected an interrupt window, got {other:?}")),
    }
    match run(&mut state, Injection::None).map_err(|e| e.to_string())?.0 {
        exit if handler_ran(&exit) => {}
        other => return Err(format!("expected the handler's OUT 0x80, 0x99, got {other:?} at rip {:#x}", state.rip)),
    }
    Ok(())
}

/// A channel dressed up as a device: the closest a component without a
/// device handle gets to one.
fn fake_device() -> Result<(Device, Channel), String> {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    Ok((Device::from_handle(a.into_handle()), b))
}

/// DMA memory is an object owned by a handle, granted only against a device
/// handle (formerly any component holding some device got pages, and freed
/// them by address).
fn dma_needs_a_device_handle(_: &mut Ctx) -> TestResult {
    let (fake, _peer) = fake_device()?;
    expect_err(DmaBuffer::new(&fake, 1), Error::WrongObjectType)?;
    let unknown = forged(Device::from_handle, HandleId(4321));
    expect_err(DmaBuffer::new(&unknown, 1), Error::InvalidHandle)
}

/// Address translation needs the device's handle (formerly it needed none).
fn dma_translate_needs_a_device_handle(_: &mut Ctx) -> TestResult {
    let buf = vec![0u8; 64];
    let (fake, _peer) = fake_device()?;
    expect_err(fake.dma_address(&buf), Error::WrongObjectType)?;
    let unknown = forged(Device::from_handle, HandleId(4321));
    expect_err(unknown.dma_address(&buf), Error::InvalidHandle)
}

/// MMIO mapping needs the device's handle, and only its own regions
/// (formerly it took a bare physical address).
fn mmio_map_needs_the_device(_: &mut Ctx) -> TestResult {
    // The local APIC's registers: device memory, but no device of ours.
    let lapic = 0xfee0_0000;
    let (fake, _peer) = fake_device()?;
    expect_err(fake.map_mmio(lapic, 4096), Error::WrongObjectType)?;
    let unknown = forged(Device::from_handle, HandleId(4321));
    expect_err(unknown.map_mmio(lapic, 4096), Error::InvalidHandle)
}

/// With a real device: MMIO outside its own regions is refused, and its
/// DMA memory lives exactly as long as its buffer. The handle cannot be
/// closed by hand (that used to be `dma_free(paddr)`, a safe call that
/// freed pages a live buffer still handed out); dropping the buffer frees
/// it, and then the handle is gone.
fn real_device_dma_and_mmio(cx: &mut Ctx) -> TestResult {
    let lapic = 0xfee0_0000;
    expect_err(cx.nic.map_mmio(lapic, 4096), Error::InvalidArgument)?;
    let mut buf = DmaBuffer::new(&cx.nic, 1).map_err(|e| format!("dma: {e}"))?;
    buf.as_mut_slice()[0] = 0x5a;
    let id = buf.id();
    expect_err(OwnedHandle::from_raw(id).close(), Error::WrongObjectType)?;
    check!(buf.as_slice()[0] == 0x5a, "the buffer changed after a refused close");
    let address = cx.nic.dma_address(buf.as_slice());
    check!(address.is_ok(), "a live buffer has no device address: {address:?}");
    drop(buf);
    expect_err(OwnedHandle::from_raw(id).close(), Error::InvalidHandle)
}

/// A thread gets its state by move, with no `static` in between.
fn threads_take_closures(cx: &mut Ctx) -> TestResult {
    let (a, b) = Channel::create().map_err(|e| e.to_string())?;
    let words: Vec<u8> = b"moved into the thread".to_vec();
    starina::thread::spawn(move || {
        if let Err(e) = a.send_data(&words) {
            log::error!("thread could not send: {e}");
        }
    })
    .map_err(|e| format!("spawn: {e}"))?;
    match wait_message(&b, &mut cx.buf, 5_000) {
        Ok(Received::Data(d)) => check!(d == b"moved into the thread", "thread sent {d:?}"),
        Ok(_) => return Err("unexpected message from the thread".to_string()),
        Err(e) => return Err(format!("nothing from the thread: {e}")),
    }
    // The closure (and the channel end it owned) is gone with the thread.
    expect_peer_closed(&b, &mut cx.buf)
}

type Test = (&'static str, fn(&mut Ctx) -> TestResult);

const TESTS: &[Test] = &[
    ("echo_round_trips", echo_round_trips),
    ("many_round_trips", many_round_trips),
    ("handoff_keeps_order", handoff::handoff_keeps_order),
    (
        "send_received_sends_part_of_the_buffer",
        handoff::send_received_sends_part_of_the_buffer,
    ),
    ("readme_greeter", readme_greeter),
    ("invalid_handle", invalid_handle),
    ("wrong_object_type", wrong_object_type),
    ("missing_right", missing_right),
    ("oversized_message", oversized_message),
    ("too_many_handles", too_many_handles),
    ("full_queue_backpressure", full_queue_backpressure),
    ("closed_peer", closed_peer),
    ("handle_transfer", handle_transfer),
    ("nested_channels_are_bounded", nested_channels_are_bounded),
    ("malformed_messages", malformed_messages),
    ("small_buffer_keeps_message", small_buffer_keeps_message),
    ("poll_errors", poll_errors),
    ("timers", timers),
    ("dma_needs_a_device_handle", dma_needs_a_device_handle),
    ("dma_translate_needs_a_device_handle", dma_translate_needs_a_device_handle),
    ("mmio_map_needs_the_device", mmio_map_needs_the_device),
    ("real_device_dma_and_mmio", real_device_dma_and_mmio),
    ("threads_take_closures", threads_take_closures),
    (
        "interrupts_during_a_backward_copy",
        backward_copy::interrupts_during_a_backward_copy,
    ),
    (
        "sse_state_survives_interrupts_and_switches",
        float_state::sse_state_survives_interrupts_and_switches,
    ),
    ("disk_driver_checks_requests", disk::disk_driver_checks_requests),
    ("disk_holds_the_hosts_ext2", disk::disk_holds_the_hosts_ext2),
    ("disk_writes_read_back", disk::disk_writes_read_back),
    ("disk_refuses_past_the_end", disk::disk_refuses_past_the_end),
    ("disk_multi_message_transfer", disk::disk_multi_message_transfer),
    ("disk_serves_several_clients", disk::disk_serves_several_clients),
    ("disk_throughput", disk::disk_throughput),
    ("guest_ram_errors_say_why", guest_ram_errors_say_why),
    ("guest_ram_starts_zeroed", guest_ram_starts_zeroed),
    ("hypervisor_runs_a_guest", hypervisor_runs_a_guest),
    ("hypervisor_delivers_interrupts", hypervisor_delivers_interrupts),
    ("guest_xsetbv_stays_in_the_guest", xsetbv::guest_xsetbv_stays_in_the_guest),
    ("panic_is_isolated_and_restarted", panic_is_isolated_and_restarted),
    ("stack_overflow_is_isolated", stack_overflow_is_isolated),
    ("huge_log_line_is_bounded", huge_log_line_is_bounded),
    ("panic_while_logging_is_isolated", panic_while_logging_is_isolated),
    ("teardown_releases_what_waiting_threads_hold", teardown_releases_what_waiting_threads_hold),
    ("unbounded_allocation_is_stopped_alone", unbounded_allocation_is_stopped_alone),
    ("files_write_read_stat", files::files_write_read_stat),
    ("files_directories", files::files_directories),
    ("files_rename_replaces", files::files_rename_replaces),
    ("files_links_and_attributes", files::files_links_and_attributes),
    ("files_unlinked_file_lives_while_open", files::files_unlinked_file_lives_while_open),
    ("files_large_sparse_file", files::files_large_sparse_file),
    ("files_errors_are_clear", files::files_errors_are_clear),
    ("files_malformed_requests", files::files_malformed_requests),
    ("commands_run_with_args_and_status", commands::commands_run_with_args_and_status),
    ("commands_read_stdin", commands::commands_read_stdin),
    ("commands_pipe_into_each_other", commands::commands_pipe_into_each_other),
    ("commands_crash_is_a_status", commands::commands_crash_is_a_status),
    ("commands_are_killed_and_closed", commands::commands_are_killed_and_closed),
    ("commands_broken_pipe_stops_the_writer", commands::commands_broken_pipe_stops_the_writer),
    ("commands_bad_requests_are_refused", commands::commands_bad_requests_are_refused),
    ("sysutils_ps_lists_components", commands_system::sysutils_ps_lists_components),
    ("sysutils_log_prints_the_last_lines", commands_system::sysutils_log_prints_the_last_lines),
    ("sysutils_log_follow_ends_when_killed", commands_system::sysutils_log_follow_ends_when_killed),
    ("sysutils_log_follow_ends_without_a_reader", commands_system::sysutils_log_follow_ends_without_a_reader),
    ("sysutils_restart_and_stop", commands_system::sysutils_restart_and_stop),
    ("sysutils_uptime_and_free", commands_system::sysutils_uptime_and_free),
    ("http_get_needs_a_network_and_a_url", commands_system::http_get_needs_a_network_and_a_url),
    ("commands_files_mkdir_echo_cat", commands_files::commands_files_mkdir_echo_cat),
    ("commands_files_cp_mv_rm_stat", commands_files::commands_files_cp_mv_rm_stat),
    ("commands_files_ls", commands_files::commands_files_ls),
    ("commands_files_grep", commands_files::commands_files_grep),
    ("commands_files_head_tail_wc_seq", commands_files::commands_files_head_tail_wc_seq),
    ("commands_files_long_lines", commands_files::commands_files_long_lines),
    ("commands_files_errors_and_help", commands_files::commands_files_errors_and_help),
    ("threads_run_in_parallel", parallel::threads_run_in_parallel),
    ("messages_between_threads_all_arrive", parallel::messages_between_threads_all_arrive),
    ("cpu_load_counts_busy_and_idle_time", cpu_load::cpu_load_counts_busy_and_idle_time),
    ("threads_pin_to_each_cpu", pinning::threads_pin_to_each_cpu),
    ("every_busy_cpu_preempts", pinning::every_busy_cpu_preempts),
    ("messages_among_eight_components", ring::messages_among_eight_components),
    ("user_mode_echo_pair", user_mode::user_mode_echo_pair),
    ("user_mode_faults_end_the_component_alone", user_mode::user_mode_faults_end_the_component_alone),
    ("user_mode_bad_syscall_arguments", user_mode::user_mode_bad_syscall_arguments),
    ("user_mode_thread_stacks_are_reused", user_mode::user_mode_thread_stacks_are_reused),
    // Last: the spinner keeps spinning afterwards.
    ("preemption", preemption),
    ("pinned_thread_runs_beside_a_spinner", pinning::pinned_thread_runs_beside_a_spinner),
];

/// Tests this runner does not run when it is itself in user mode
/// (profile `test_user`), and why (none today: every call the tests make
/// works in ring 3). Each is named in the log (`test NAME ... skipped in user mode`)
/// and counted apart from passed and failed.
const NOT_IN_USER_MODE: &[(&str, &str)] = &[];

/// Why test `name` does not run here, if it does not.
fn skipped_here(name: &str) -> Option<&'static str> {
    if !starina::USER_MODE {
        return None;
    }
    NOT_IN_USER_MODE
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, why)| *why)
}

pub fn main(env: Env) {
    let mut cx = Ctx {
        echo: env.echo,
        crasher: env.crasher,
        usercrash: env.usercrash,
        spinner: env.spinner,
        greeter: env.greeter,
        supervisor: env.supervisor,
        hypervisor: Some(env.hypervisor),
        nic: env.nic,
        disk: disk::DiskSlot::Channel(env.disk),
        disk_other: Some(env.disk_other),
        files: starina::fs::Files::new(env.fs)
            .map_err(|e| log::error!("no fs client: {e}"))
            .ok(),
        spawn: env.spawn,
        monitor: env.monitor,
        ring_nodes: env.config.ring_nodes.clamp(1, 64) as u32,
        ring_messages: env.config.ring_messages.clamp(1, 1 << 24) as u32,
        buf: MessageBuffer::new(),
    };
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    let mode = if starina::USER_MODE { "user mode (ring 3)" } else { "the kernel" };
    log::info!("testrunner: runs in {mode}");
    for (name, _) in NOT_IN_USER_MODE {
        if !TESTS.iter().any(|(t, _)| t == name) {
            failed += 1;
            log::error!("testrunner: NOT_IN_USER_MODE names {name}, which is no test");
        }
    }
    for (name, test) in TESTS {
        if let Some(why) = skipped_here(name) {
            skipped += 1;
            log::info!("test {name} ... skipped in user mode: {why}");
            continue;
        }
        match test(&mut cx) {
            Ok(()) => {
                passed += 1;
                log::info!("test {name} ... ok");
            }
            Err(why) => {
                failed += 1;
                log::error!("test {name} ... FAILED: {why}");
            }
        }
    }
    if skipped > 0 {
        log::info!("testrunner: {skipped} skipped in user mode (see above why)");
    }
    log::info!("{} {passed} passed, {failed} failed", markers::TESTRUNNER_SUMMARY);
    let code = if failed == 0 { 0 } else { 1 };
    let err = env.shutdown.power_off(code);
    log::error!("power off failed: {err}");
}
