//! Threads on several CPUs: CPU-bound threads run side by side, and
//! messages between threads that may run on different CPUs all arrive,
//! in order. On one CPU both pass too (the figures then say so).

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::Error;

use super::wait_message;
use super::Ctx;
use super::Received;
use super::TestResult;

/// Work for one thread: about 100 ms of emulated CPU here (TCG).
const SPIN_ROUNDS: u64 = 40_000_000;

/// A CPU-bound loop the compiler cannot fold.
pub(crate) fn spin(seed: u64) -> u64 {
    let mut x = seed | 1;
    for _ in 0..SPIN_ROUNDS {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    core::hint::black_box(x)
}

/// Starts `n` spinning threads at once; the wall time until all are done.
pub(crate) fn spin_threads(n: usize) -> Result<u64, String> {
    let (done_tx, done_rx) = Channel::create().map_err(|e| e.to_string())?;
    let start = now_ns();
    for i in 0..n {
        let tx = Channel::from_handle(
            done_tx
                .handle()
                .duplicate(starina::abi::Rights::DEFAULT)
                .map_err(|e| e.to_string())?,
        );
        starina::thread::spawn(move || {
            let x = spin(i as u64 + 1);
            let _ = tx.send_data(&x.to_le_bytes());
        })
        .map_err(|e| e.to_string())?;
    }
    let mut buf = MessageBuffer::new();
    for _ in 0..n {
        match wait_message(&done_rx, &mut buf, 60_000).map_err(|e| e.to_string())? {
            Received::Data(_) => {}
            _ => return Err("a spinning thread sent something else".into()),
        }
    }
    Ok(now_ns() - start)
}

/// Rounds of [`threads_run_in_parallel`]: each times one thread, then two.
/// The host's load slows the emulated CPUs unevenly, so each side keeps
/// its fastest round: load only ever adds time.
const PARALLEL_ROUNDS: usize = 3;

/// Two CPU-bound threads started together against one alone: the ratio
/// is about 2 on one CPU and about 1 when they run in parallel. The
/// figure is logged (`parallel_ratio`, two-thread time over twice the
/// one-thread time: about 1.0 on one CPU, 0.5 on two); the host's check
/// for several CPUs reads it.
pub fn threads_run_in_parallel(_cx: &mut Ctx) -> TestResult {
    let (mut one, mut two) = (u64::MAX, u64::MAX);
    for _ in 0..PARALLEL_ROUNDS {
        one = one.min(spin_threads(1)?);
        two = two.min(spin_threads(2)?);
    }
    let ratio_milli = two * 1000 / (2 * one).max(1);
    log::info!(
        "parallel_ratio {}.{:03} (two threads {} ms, one {} ms, fastest of {PARALLEL_ROUNDS})",
        ratio_milli / 1000,
        ratio_milli % 1000,
        two / 1_000_000,
        one / 1_000_000
    );
    // Any CPU count: the pair never takes much more than twice one.
    check!(
        ratio_milli < 1_500,
        "two threads took {two} ns, one {one} ns"
    );
    Ok(())
}

const STRESS_CLIENTS: usize = 4;
const STRESS_ROUNDS: u32 = 400;

/// One client: `STRESS_ROUNDS` requests `[client, seq]`, each answered
/// with the same bytes before the next.
fn stress_client(ch: Channel, client: u8) -> Result<(), Error> {
    let poll = Poll::create()?;
    poll.add(ch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)?;
    let mut buf = MessageBuffer::new();
    for seq in 0..STRESS_ROUNDS {
        let mut req = [0u8; 5];
        req[0] = client;
        req[1..].copy_from_slice(&seq.to_le_bytes());
        let event = poll.send_data_wait_recv(&ch, &req, &mut buf)??;
        let info = match event.received {
            Some(Ok(info)) => info,
            Some(Err(e)) => return Err(e),
            None => return Err(Error::PeerClosed),
        };
        if buf.data(&info) != req {
            return Err(Error::MalformedMessage);
        }
    }
    Ok(())
}

/// The server: answers every client, checking each one's sequence; sends
/// the count per client on `report` once every client closed.
fn stress_server(clients: Vec<Channel>, report: Channel) -> Result<(), Error> {
    let poll = Poll::create()?;
    for ch in &clients {
        poll.add(ch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)?;
    }
    let mut next = [0u32; STRESS_CLIENTS];
    let mut open = clients.len();
    let mut buf = MessageBuffer::new();
    while open > 0 {
        let event = poll.wait_recv(&mut buf)?;
        let Some(i) = clients.iter().position(|c| c.id() == event.id) else {
            continue;
        };
        match event.received {
            Some(Ok(info)) => {
                let data = buf.data(&info);
                let seq = u32::from_le_bytes([data[1], data[2], data[3], data[4]]);
                if data.len() != 5 || data[0] as usize != i || seq != next[i] {
                    return Err(Error::MalformedMessage);
                }
                next[i] += 1;
                let reply: Vec<u8> = data.to_vec();
                clients[i].send_data(&reply)?;
            }
            Some(Err(Error::WouldBlock)) => {}
            Some(Err(Error::PeerClosed)) => {
                poll.remove(clients[i].id())?;
                open -= 1;
            }
            Some(Err(e)) => return Err(e),
            None if event.ready.contains(Readiness::PEER_CLOSED) => {
                poll.remove(clients[i].id())?;
                open -= 1;
            }
            None => {}
        }
    }
    let counts: Vec<String> = next.iter().map(|n| n.to_string()).collect();
    report.send_data(counts.join(" ").as_bytes())
}

/// Four client threads each make 400 round trips with one server thread
/// (five threads, spread over whatever CPUs there are): every request
/// arrives once, in its client's order, and every answer comes back.
pub fn messages_between_threads_all_arrive(_cx: &mut Ctx) -> TestResult {
    let (report_tx, report_rx) = Channel::create().map_err(|e| e.to_string())?;
    let mut server_ends = Vec::new();
    for client in 0..STRESS_CLIENTS {
        let (a, b) = Channel::create().map_err(|e| e.to_string())?;
        server_ends.push(a);
        starina::thread::spawn(move || {
            if let Err(e) = stress_client(b, client as u8) {
                log::error!("stress client {client} failed: {e:?}");
            }
        })
        .map_err(|e| e.to_string())?;
    }
    starina::thread::spawn(move || {
        if let Err(e) = stress_server(server_ends, report_tx) {
            log::error!("stress server failed: {e:?}");
        }
    })
    .map_err(|e| e.to_string())?;
    let want = format!("{STRESS_ROUNDS} {STRESS_ROUNDS} {STRESS_ROUNDS} {STRESS_ROUNDS}");
    let mut buf = MessageBuffer::new();
    match wait_message(&report_rx, &mut buf, 120_000).map_err(|e| e.to_string())? {
        Received::Data(d) => check!(
            d == want.as_bytes(),
            "counts {:?}, want {want}",
            String::from_utf8_lossy(&d)
        ),
        _ => return Err("the server sent something else".into()),
    }
    Ok(())
}
