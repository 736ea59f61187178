//! One node of a message ring, for the stress test of many components on
//! several CPUs (the test runner's `messages_among_eight_components`).
//!
//! `msgring NODE NODES COUNT [WINDOW [CPU]]`: the starter wires NODES
//! instances into a ring, each one's stdout the next one's stdin. Each
//! node (on CPU CPU only, if given) sends COUNT messages of its own (16
//! bytes: its number, a sequence number, a payload made from both, a
//! checksum of the three), at most WINDOW (8) of them on their way at
//! once, and forwards every other node's message to the next node; its
//! own come back after a full lap. Every message a node receives must
//! carry its sender's next sequence number (a channel keeps order, so a
//! ring does) and a right checksum. Once it has seen COUNT messages from
//! every node, it writes its counts to stderr as `node N sent S returned
//! R forwarded F sum X` (X: the wrapping sum of every checksum it saw, the
//! same at every node) and ends with 0; any error ends it with 1 and the
//! reason on stderr.
//!
//! No send can find a full queue while NODES * WINDOW messages fit in one
//! channel's queue (checked): the ring holds no more than that.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::abi::CHANNEL_QUEUE_MAX;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::command::CommandError;
use starina::poll::Poll;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

const MESSAGE_LEN: usize = 16;

/// A node's part of the ring.
struct Ring {
    node: u32,
    nodes: u32,
    count: u32,
    window: u32,
    /// The next sequence number expected from each node.
    next: Vec<u32>,
    sent: u32,
    returned: u32,
    forwarded: u64,
    sum: u32,
}

/// The payload and checksum of message `seq` of node `origin` (mixing
/// constants from SplitMix64's finalizer, folded to 32 bits).
fn mix(x: u64) -> u32 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) as u32
}

/// Message `seq` of node `origin`.
pub fn message(origin: u32, seq: u32) -> [u8; MESSAGE_LEN] {
    let payload = mix(u64::from(origin) << 32 | u64::from(seq));
    let check = checksum(origin, seq, payload);
    let mut m = [0u8; MESSAGE_LEN];
    for (i, v) in [origin, seq, payload, check].into_iter().enumerate() {
        m[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
    }
    m
}

fn checksum(origin: u32, seq: u32, payload: u32) -> u32 {
    mix(u64::from(origin ^ payload.rotate_left(7)) << 32 | u64::from(seq ^ 0x5bd1_e995))
}

/// The `sum` every node of a ring of `nodes` nodes sending `count` each
/// reports.
pub fn expected_sum(nodes: u32, count: u32) -> u32 {
    let mut sum = 0u32;
    for origin in 0..nodes {
        for seq in 0..count {
            let m = message(origin, seq);
            sum = sum.wrapping_add(u32::from_le_bytes([m[12], m[13], m[14], m[15]]));
        }
    }
    sum
}

/// (origin, seq, checksum) of a received message, if it is well formed.
fn parse(m: &[u8]) -> Result<(u32, u32, u32), String> {
    if m.len() != MESSAGE_LEN {
        return Err(format!("a message of {} bytes", m.len()));
    }
    let word = |i: usize| u32::from_le_bytes([m[i * 4], m[i * 4 + 1], m[i * 4 + 2], m[i * 4 + 3]]);
    let (origin, seq, payload, check) = (word(0), word(1), word(2), word(3));
    if check != checksum(origin, seq, payload)
        || payload != mix(u64::from(origin) << 32 | u64::from(seq))
    {
        return Err(format!("a bad checksum on message {seq} of node {origin}"));
    }
    Ok((origin, seq, check))
}

impl Ring {
    fn done(&self) -> bool {
        self.next.iter().all(|&n| n == self.count)
    }

    /// Takes a received message: checks it; returns whether to forward it.
    fn receive(&mut self, m: &[u8]) -> Result<bool, String> {
        let (origin, seq, check) = parse(m)?;
        let Some(next) = self.next.get_mut(origin as usize) else {
            return Err(format!("a message from node {origin} of {}", self.nodes));
        };
        if seq != *next || seq >= self.count {
            return Err(format!(
                "message {seq} of node {origin} where {next} was due"
            ));
        }
        *next += 1;
        self.sum = self.sum.wrapping_add(check);
        if origin == self.node {
            self.returned += 1;
            return Ok(false);
        }
        self.forwarded += 1;
        Ok(true)
    }

    /// Its own next message, if the window and the count allow one.
    fn own(&mut self) -> Option<[u8; MESSAGE_LEN]> {
        let out = self.sent - self.returned;
        if self.sent == self.count || out >= self.window {
            return None;
        }
        self.sent += 1;
        Some(message(self.node, self.sent - 1))
    }

    /// Runs the node until it has seen every message.
    fn run(&mut self, input: &Channel, output: &Channel) -> Result<(), String> {
        let poll = Poll::create().map_err(|e| format!("poll: {e}"))?;
        poll.add(input.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(|e| format!("poll: {e}"))?;
        let mut buf = MessageBuffer::new();
        let mut outgoing: Vec<[u8; MESSAGE_LEN]> = Vec::new();
        outgoing.extend(core::iter::from_fn(|| self.own()));
        while !self.done() {
            // All but the last go alone; the last with the wait.
            let last = outgoing.pop();
            for m in outgoing.drain(..) {
                output.send_data(&m).map_err(|e| format!("send: {e}"))?;
            }
            let event = match last {
                Some(m) => poll.send_data_wait_recv(output, &m, &mut buf),
                None => Ok(poll.wait_recv(&mut buf)),
            };
            let event = event
                .map_err(|e| format!("send: {e}"))?
                .map_err(|e| format!("wait: {e}"))?;
            match event.received {
                Some(Ok(info)) => {
                    let data = buf.data(&info);
                    if self.receive(data)? {
                        let mut m = [0u8; MESSAGE_LEN];
                        m.copy_from_slice(data);
                        outgoing.push(m);
                    }
                    outgoing.extend(core::iter::from_fn(|| self.own()));
                }
                Some(Err(starina::Error::WouldBlock)) => {}
                Some(Err(starina::Error::PeerClosed)) => {
                    return Err("the node before ended early".into())
                }
                None if event.ready.contains(Readiness::PEER_CLOSED) => {
                    return Err("the node before ended early".into())
                }
                None => {}
                Some(Err(e)) => return Err(format!("receive: {e}")),
            }
        }
        Ok(())
    }
}

fn number(args: &[String], i: usize, what: &str) -> Result<u32, CommandError> {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| CommandError::usage(format!("{what} must be a number")))
}

pub fn main(mut env: Env) -> Result<i32, CommandError> {
    let args = env.args.rest().to_vec();
    if env.args.wants_help() || args.len() < 3 {
        env.stdout
            .print("usage: msgring NODE NODES COUNT [WINDOW]\n")?;
        return Ok(if env.args.wants_help() { 0 } else { 2 });
    }
    let node = number(&args, 0, "NODE")?;
    let nodes = number(&args, 1, "NODES")?;
    let count = number(&args, 2, "COUNT")?;
    let window = match args.get(3) {
        Some(_) => number(&args, 3, "WINDOW")?,
        None => 8,
    };
    let fits = u64::from(nodes) * u64::from(window) <= CHANNEL_QUEUE_MAX as u64;
    if node >= nodes || window == 0 || !fits {
        return Err(CommandError::usage(format!(
            "NODE below NODES, WINDOW at least 1, NODES * WINDOW at most {CHANNEL_QUEUE_MAX}"
        )));
    }
    if args.get(4).is_some() {
        let cpu = number(&args, 4, "CPU")?;
        starina::thread::pin_to_cpu(cpu as usize)
            .map_err(|e| CommandError::new(format!("cannot run on CPU {cpu}: {e}")))?;
    }
    let mut ring = Ring {
        node,
        nodes,
        count,
        window,
        next: vec![0; nodes as usize],
        sent: 0,
        returned: 0,
        forwarded: 0,
        sum: 0,
    };
    let result = ring.run(env.stdin.channel(), env.stdout.channel());
    let report = match &result {
        Ok(()) => format!(
            "node {node} sent {} returned {} forwarded {} sum {}\n",
            ring.sent, ring.returned, ring.forwarded, ring.sum
        ),
        Err(why) => format!("node {node} failed: {why}\n"),
    };
    env.stderr.print(&report)?;
    Ok(if result.is_ok() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_check_out_and_damage_is_seen() {
        let m = message(3, 41);
        assert_eq!(parse(&m).map(|(o, s, _)| (o, s)), Ok((3, 41)));
        for byte in 0..MESSAGE_LEN {
            let mut bad = m;
            bad[byte] ^= 0x10;
            assert!(parse(&bad).is_err(), "byte {byte}");
        }
        assert!(parse(&m[..15]).is_err());
    }

    #[test]
    fn a_node_wants_each_senders_messages_in_order() {
        let mut ring = Ring {
            node: 1,
            nodes: 2,
            count: 2,
            window: 1,
            next: vec![0; 2],
            sent: 0,
            returned: 0,
            forwarded: 0,
            sum: 0,
        };
        let own = ring.own().unwrap();
        assert_eq!(ring.own(), None, "the window is one");
        assert_eq!(ring.receive(&message(0, 0)), Ok(true));
        assert!(ring.receive(&message(0, 0)).is_err(), "a duplicate");
        assert!(ring.receive(&message(5, 0)).is_err(), "no such node");
        assert_eq!(ring.receive(&own), Ok(false));
        assert_eq!(ring.own(), Some(message(1, 1)));
        assert_eq!(ring.receive(&message(0, 1)), Ok(true));
        assert!(ring.receive(&message(0, 2)).is_err(), "past the count");
        assert_eq!(ring.receive(&message(1, 1)), Ok(false));
        assert!(ring.done());
        assert_eq!((ring.sent, ring.returned, ring.forwarded), (2, 2, 2));
        assert_eq!(ring.sum, expected_sum(2, 2));
    }
}
