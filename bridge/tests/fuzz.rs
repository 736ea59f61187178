//! Fuzz targets for the bridge: the process protocol's stream decoder and
//! frame codec, the exec channel's request and event codec, and the stdin
//! window. Budget and replay: `tests/fuzz_driver.rs`.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;
#[path = "../../tests/fuzz_alloc.rs"]
mod fuzz_alloc;

use arbitrary::Arbitrary;
use driver::Bytes;
use driver::Seq;
use starina_bridge::exec::Event;
use starina_bridge::exec::ExecRequest;
use starina_bridge::exec::MESSAGE_MAX;
use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::NativeSpawn;
use starina_bridge::process::Proto;
use starina_bridge::process::Spawn;
use starina_bridge::process::StdinOutbox;
use starina_bridge::process::WinSize;
use starina_bridge::process::HEADER_LEN;
use starina_bridge::process::LEN_PREFIX;
use starina_bridge::process::MAX_DATA_CHUNK;
use starina_bridge::process::MAX_FRAME_LEN;
use starina_bridge::process::STDIN_WINDOW;

/// A decoded frame encodes back to a body that decodes to the same frame.
fn assert_round_trip(frame: &Frame) {
    let bytes = frame.encode().expect("a decoded frame fits the limit");
    assert_eq!(bytes.len(), LEN_PREFIX + frame.encoded_len());
    assert_eq!(Frame::decode_body(&bytes[LEN_PREFIX..]).as_ref(), Ok(frame));
}

#[derive(Arbitrary, Debug)]
struct StreamInput {
    /// A small limit, to reach the too-large path often.
    small_limit: Option<u16>,
    /// Where the stream is cut into pushes.
    cuts: Bytes,
    /// Valid frames mixed in, so that decoding goes past the first header.
    frames: Seq<(Bytes, u8, u32)>,
    stream: Bytes,
}

/// The stream: the raw bytes, with well-formed frame headers spliced in.
fn stream_bytes(input: &StreamInput) -> Vec<u8> {
    let mut out = Vec::new();
    for (payload, ty, id) in input.frames.iter() {
        let len = (HEADER_LEN + payload.len()) as u32;
        out.extend_from_slice(&len.to_le_bytes());
        out.push(*ty);
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(payload);
    }
    out.extend_from_slice(&input.stream);
    out
}

fn check_stream(input: StreamInput) {
    let bytes = stream_bytes(&input);
    let mut decoder = match input.small_limit {
        Some(max) => FrameDecoder::with_max_frame_len(max as usize),
        None => FrameDecoder::new(),
    };
    let mut rest = &bytes[..];
    let mut cuts = input.cuts.iter().cycle();
    let mut fatal = false;
    while !rest.is_empty() {
        let n = (*cuts.next().unwrap_or(&255) as usize + 1).min(rest.len());
        decoder.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(result) = decoder.next() {
            assert!(!fatal, "a frame after a fatal error");
            match result {
                Ok(frame) => assert_round_trip(&frame),
                Err(e) => fatal = e.is_fatal(),
            }
        }
        assert_eq!(decoder.is_broken(), fatal);
        assert!(decoder.pending() <= bytes.len());
    }
}

#[test]
fn fuzz_frame_stream_decoder() {
    driver::run("bridge::frame_stream", 2000, check_stream);
}

fn check_frame_body(body: Bytes) {
    if let Ok(frame) = Frame::decode_body(&body) {
        assert_round_trip(&frame);
    }
}

#[test]
fn fuzz_frame_body_decoder() {
    driver::run("bridge::frame_body", 2000, check_frame_body);
}

/// Every frame, built from arbitrary fields.
#[derive(Arbitrary, Debug)]
enum AnyFrame {
    Spawn(
        u32,
        Seq<Bytes>,
        Seq<(Bytes, Bytes)>,
        Option<Bytes>,
        Option<Bytes>,
        Option<(u16, u16)>,
    ),
    Stdin(u32, Bytes),
    StdinClose(u32),
    Kill(u32, i32),
    Resize(u32, u16, u16),
    Ping(u32),
    Panic,
    Ready(String),
    Started(u32, u32),
    Stdout(u32, Bytes),
    Stderr(u32, Bytes),
    Exited(u32, i32),
    Signaled(u32, i32),
    SpawnFailed(u32, i32, String),
    Pong(u32),
    StdinAck(u32, u32),
    /// UDP when the flag is set, else TCP.
    Listening(bool, u16, bool, String),
    NativeSpawn(u32, Vec<String>, Vec<(String, String)>),
    NativeStdin(u32, Bytes),
    NativeStdinClose(u32),
    NativeKill(u32),
    NativeOutputAck(u32, u32),
    NativeStdout(u32, Bytes),
    NativeStderr(u32, Bytes),
    NativeExited(u32, i32),
    NativeSpawnFailed(u32, i32, String),
    NativeStdinAck(u32, u32),
}

fn bytes_list(list: Seq<Bytes>) -> Vec<Vec<u8>> {
    list.0.into_iter().map(|b| b.0).collect()
}

fn pairs(list: Seq<(Bytes, Bytes)>) -> Vec<(Vec<u8>, Vec<u8>)> {
    list.0.into_iter().map(|(k, v)| (k.0, v.0)).collect()
}

fn frame(f: AnyFrame) -> Frame {
    match f {
        AnyFrame::Spawn(id, argv, env, cwd, user, terminal) => Frame::Spawn(Spawn {
            id,
            argv: bytes_list(argv),
            env: pairs(env),
            cwd: cwd.map(|c| c.0),
            user: user.map(|u| u.0),
            // Only sizes in range encode a frame that decodes.
            terminal: terminal.map(|(r, c)| WinSize::clamped(r.into(), c.into())),
        }),
        AnyFrame::Stdin(id, data) => Frame::Stdin { id, data: data.0 },
        AnyFrame::StdinClose(id) => Frame::StdinClose { id },
        AnyFrame::Kill(id, signal) => Frame::Kill { id, signal },
        AnyFrame::Resize(id, rows, cols) => Frame::Resize {
            id,
            size: WinSize::clamped(rows.into(), cols.into()),
        },
        AnyFrame::Ping(nonce) => Frame::Ping { nonce },
        AnyFrame::Panic => Frame::Panic,
        AnyFrame::Ready(kernel_release) => Frame::Ready { kernel_release },
        AnyFrame::Started(id, pid) => Frame::Started { id, pid },
        AnyFrame::Stdout(id, data) => Frame::Stdout { id, data: data.0 },
        AnyFrame::Stderr(id, data) => Frame::Stderr { id, data: data.0 },
        AnyFrame::Exited(id, code) => Frame::Exited { id, code },
        AnyFrame::Signaled(id, signal) => Frame::Signaled { id, signal },
        AnyFrame::SpawnFailed(id, errno, msg) => Frame::SpawnFailed { id, errno, msg },
        AnyFrame::Pong(nonce) => Frame::Pong { nonce },
        AnyFrame::StdinAck(id, bytes) => Frame::StdinAck { id, bytes },
        AnyFrame::Listening(udp, port, open, process) => Frame::Listening {
            proto: if udp { Proto::Udp } else { Proto::Tcp },
            port,
            open,
            process,
        },
        AnyFrame::NativeSpawn(id, argv, vars) => Frame::NativeSpawn(NativeSpawn { id, argv, vars }),
        AnyFrame::NativeStdin(id, data) => Frame::NativeStdin { id, data: data.0 },
        AnyFrame::NativeStdinClose(id) => Frame::NativeStdinClose { id },
        AnyFrame::NativeKill(id) => Frame::NativeKill { id },
        AnyFrame::NativeOutputAck(id, bytes) => Frame::NativeOutputAck { id, bytes },
        AnyFrame::NativeStdout(id, data) => Frame::NativeStdout { id, data: data.0 },
        AnyFrame::NativeStderr(id, data) => Frame::NativeStderr { id, data: data.0 },
        AnyFrame::NativeExited(id, status) => Frame::NativeExited { id, status },
        AnyFrame::NativeSpawnFailed(id, status, reason) => Frame::NativeSpawnFailed {
            id,
            status,
            reason,
        },
        AnyFrame::NativeStdinAck(id, bytes) => Frame::NativeStdinAck { id, bytes },
    }
}

fn check_encode(f: AnyFrame) {
    let frame = frame(f);
    // Ping and Pong carry their nonce in the id field, Panic has none.
    match frame.encode() {
        Ok(_) => assert_round_trip(&frame),
        Err(_) => assert!(frame.encoded_len() > MAX_FRAME_LEN),
    }
    // Through the stream decoder, in one piece.
    let mut decoder = FrameDecoder::new();
    if let Ok(bytes) = frame.encode() {
        decoder.push(&bytes);
        assert_eq!(decoder.next(), Some(Ok(frame)));
        assert_eq!(decoder.next(), None);
    }
}

#[test]
fn fuzz_frame_encode_decode() {
    driver::run("bridge::frame_codec", 2000, check_encode);
}

fn check_exec_request(data: Bytes) {
    if let Ok(req) = ExecRequest::decode(&data) {
        let bytes = req.encode().expect("a decoded request re-encodes");
        assert_eq!(ExecRequest::decode(&bytes), Ok(req));
    }
}

#[test]
fn fuzz_exec_request_decoder() {
    driver::run("bridge::exec_request", 2000, check_exec_request);
}

type RequestFields = (
    Seq<Bytes>,
    Seq<(Bytes, Bytes)>,
    Option<Bytes>,
    Option<Bytes>,
    Option<(u16, u16)>,
);

fn check_exec_request_encode((argv, env, cwd, user, terminal): RequestFields) {
    let req = ExecRequest {
        argv: bytes_list(argv),
        env: pairs(env),
        cwd: cwd.map(|c| c.0),
        user: user.map(|u| u.0),
        terminal: terminal.map(|(r, c)| WinSize::clamped(r.into(), c.into())),
    };
    // Too large to encode is an error, checked by the codec's own tests.
    if let Ok(bytes) = req.encode() {
        assert!(bytes.len() <= MESSAGE_MAX);
        let decoded = ExecRequest::decode(&bytes);
        match req.check() {
            Ok(()) => assert_eq!(decoded, Ok(req)),
            Err(e) => assert_eq!(decoded, Err(e)),
        }
    }
}

#[test]
fn fuzz_exec_request_encode_decode() {
    driver::run(
        "bridge::exec_request_codec",
        1000,
        check_exec_request_encode,
    );
}

fn check_event(data: Bytes) {
    if let Ok(event) = Event::decode(&data) {
        assert_eq!(event.encode(), data.0, "events have one encoding");
        let _ = (event.is_final(), event.shell_status());
    }
}

#[test]
fn fuzz_exec_event_decoder() {
    driver::run("bridge::exec_event", 2000, check_event);
}

#[derive(Arbitrary, Debug)]
enum StdinOp {
    /// A message (see [`message`]): up to 64 KiB when
    /// the number is odd, else up to 1 KiB (to fill the window in a few
    /// steps, and to stay cheap).
    Push(u16),
    Close,
    /// The agent acknowledges this many of the bytes it has (or any).
    Ack(u32),
    AckAll,
    /// Take frames until none may go.
    Drain,
}

/// A `len`-byte message starting at stream offset `at`: its first byte
/// counts up, the rest repeat it (a fill is fast even unoptimized), so
/// bytes out of order or lost show.
fn message(at: usize, len: usize) -> Vec<u8> {
    let mut data = vec![(at / 7 % 251) as u8; len];
    if let Some(first) = data.first_mut() {
        *first = (at % 253) as u8;
    }
    data
}

/// Stdin through the window: every byte goes out once and in order, no
/// more than the window is ever unacknowledged, and the close goes last.
fn check_stdin(ops: Seq<StdinOp>) {
    let mut outbox = StdinOutbox::new();
    let (mut pushed, mut sent) = (Vec::new(), Vec::new());
    let (mut closed, mut close_sent, mut unacked) = (false, false, 0usize);
    for op in ops.0 {
        match op {
            StdinOp::Push(n) => {
                let len = if n & 1 == 1 { n } else { n % 1024 };
                let data = message(pushed.len(), len as usize);
                outbox.push(&data);
                if !closed {
                    pushed.extend_from_slice(&data);
                }
            }
            StdinOp::Close => {
                outbox.close();
                closed = true;
            }
            StdinOp::Ack(n) => {
                outbox.acked(n);
                unacked = unacked.saturating_sub(n as usize);
            }
            StdinOp::AckAll => {
                outbox.acked(unacked as u32);
                unacked = 0;
            }
            StdinOp::Drain => {
                while let Some(frame) = outbox.next_frame(7) {
                    assert!(!close_sent, "{frame:?} after StdinClose");
                    match frame {
                        Frame::Stdin { id: 7, data } => {
                            assert!(!data.is_empty() && data.len() <= MAX_DATA_CHUNK);
                            unacked += data.len();
                            sent.extend_from_slice(&data);
                        }
                        Frame::StdinClose { id: 7 } => close_sent = true,
                        other => panic!("unexpected {other:?}"),
                    }
                    assert!(unacked <= STDIN_WINDOW, "{unacked} bytes unacknowledged");
                }
            }
        }
        assert_eq!(sent.len() + outbox.pending(), pushed.len());
    }
    assert_eq!(sent, pushed[..sent.len()], "stdin goes out in order");
    if close_sent {
        assert_eq!(sent.len(), pushed.len(), "StdinClose before the data");
    }
}

#[test]
fn fuzz_stdin_window() {
    driver::Target::new("bridge::stdin_window", 500)
        .max_input(1024)
        .run(check_stdin);
}

#[derive(Arbitrary, Debug)]
enum AnyEvent {
    Started(u32),
    Stdout(Bytes),
    Stderr(Bytes),
    Exited(i32),
    Signaled(i32),
}

fn check_event_encode(e: AnyEvent) {
    let event = match &e {
        AnyEvent::Started(pid) => Event::Started { pid: *pid },
        AnyEvent::Stdout(data) => Event::Stdout(data),
        AnyEvent::Stderr(data) => Event::Stderr(data),
        AnyEvent::Exited(code) => Event::Exited(*code),
        AnyEvent::Signaled(signal) => Event::Signaled(*signal),
    };
    let bytes = event.encode();
    assert_eq!(Event::decode(&bytes), Ok(event));
    let _ = (event.is_final(), event.shell_status());
}

#[test]
fn fuzz_exec_event_encode_decode() {
    driver::run("bridge::exec_event_codec", 2000, check_event_encode);
}

/// Found by `fuzz_exec_event_encode_decode`: a Signaled event from the
/// server with a signal near `i32::MAX` overflowed `128 + signal` (a panic
/// with overflow checks, as in the kernel profile).
#[test]
fn regression_signaled_event_with_huge_signal() {
    let event = Event::decode(&[0x12, 0xff, 0xff, 0xff, 0x7f]).expect("a Signaled event");
    assert_eq!(event, Event::Signaled(i32::MAX));
    assert_eq!(event.shell_status(), Some(i32::MAX));
}
