//! `udp [-w SECONDS] [-n COUNT] HOST PORT [MESSAGE...]`: one UDP datagram
//! through the TCP/IP server (spec need `net`, optional), and the answers.
//! The datagram is the words of MESSAGE joined by spaces, or, without
//! them, all of stdin. Each datagram that comes back is written to stdout
//! as it is, until COUNT came (default 1; 0 sends and ends) or SECONDS
//! (default 2) pass without one. A HOST of `localhost`, `127.0.0.1` or
//! `linux` is this machine: a UDP port a native component listens on, or
//! one the linux server forwards from Linux.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::channel::MessageBuffer;
use starina::channel::OpenError;
use starina::command::CommandError;
use starina::command::Output;
use starina::datagram::PAYLOAD_MAX;
use starina::Channel;
use starina::Error;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

const HELP: &str = "usage: udp [-w SECONDS] [-n COUNT] HOST PORT [MESSAGE...]\n\
Sends one UDP datagram to HOST:PORT through the TCP/IP server: the words of\n\
MESSAGE joined by spaces, or all of stdin without them. Then writes each\n\
datagram that comes back to stdout, as it is.\n  \
-w SECONDS  how long to wait for each answer (default 2)\n  \
-n COUNT    answers to wait for (default 1; 0: send only)\n\
HOST is a DNS name, an IPv4 address, or this machine: localhost, 127.0.0.1,\n\
or linux (a UDP port Linux listens on, forwarded by the linux server).\n\
Status 0: COUNT answers came. Status 1: none within SECONDS, no network in\n\
the profile, nothing listening on a port of this machine, or a refusal.\n\
Status 2: bad usage.\n";

/// How long tcpip may take to answer the open (a name is resolved first).
const OPEN_WAIT_MS: u64 = 10_000;

#[derive(Debug, PartialEq, Eq)]
struct Options {
    wait_ms: u64,
    count: u32,
    host: String,
    port: u16,
    /// The datagram, or `None` for stdin.
    message: Option<String>,
}

fn number<T: core::str::FromStr>(option: &str, value: Option<&String>) -> Result<T, CommandError> {
    let value = value.ok_or_else(|| CommandError::usage(format!("{option} needs a number")))?;
    value
        .parse()
        .map_err(|_| CommandError::usage(format!("{option}: not a number: '{value}'")))
}

fn parse_args(args: &[String]) -> Result<Options, CommandError> {
    let (mut wait_s, mut count) = (2u64, 1u32);
    let mut words = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if words.len() >= 2 {
            // After HOST and PORT, every word is the message's.
            words.push(args[i].clone());
            i += 1;
            continue;
        }
        match args[i].as_str() {
            "-w" => {
                wait_s = number("-w", args.get(i + 1))?;
                i += 1;
            }
            "-n" => {
                count = number("-n", args.get(i + 1))?;
                i += 1;
            }
            "--" => {
                words.extend(args[i + 1..].iter().cloned());
                break;
            }
            a if a.starts_with('-') && a.len() > 1 => {
                return Err(CommandError::usage(format!(
                    "unknown option '{a}' (see --help)"
                )))
            }
            a => words.push(String::from(a)),
        }
        i += 1;
    }
    if words.len() < 2 {
        return Err(CommandError::usage(
            "usage: udp [-w SECONDS] [-n COUNT] HOST PORT [MESSAGE...]",
        ));
    }
    let port = match words[1].parse::<u16>() {
        Ok(p) if p != 0 => p,
        _ => return Err(CommandError::usage(format!("not a port: '{}'", words[1]))),
    };
    let message = (words.len() > 2).then(|| words[2..].join(" "));
    Ok(Options {
        wait_ms: wait_s.saturating_mul(1000),
        count,
        host: words[0].clone(),
        port,
        message,
    })
}

pub fn main(mut env: Env) -> Result<i32, CommandError> {
    if env.args.wants_help() {
        env.stdout.print(HELP)?;
        return Ok(0);
    }
    let opts = parse_args(env.args.rest())?;
    let tcpip = env
        .net
        .take()
        .ok_or_else(|| CommandError::new("no network (the profile runs no tcpip)"))?;
    let datagram = match &opts.message {
        Some(words) => words.clone().into_bytes(),
        None => env
            .stdin
            .read_to_end(PAYLOAD_MAX + 1)
            .map_err(|e| CommandError::new(format!("reading stdin: {e}")))?,
    };
    if datagram.len() > PAYLOAD_MAX {
        return Err(CommandError::new(format!(
            "a datagram holds at most {PAYLOAD_MAX} bytes here"
        )));
    }
    let flow = open(&tcpip, &opts)?;
    flow.send_data(&datagram)
        .map_err(|e| CommandError::new(format!("sending: {e}")))?;
    answers(&flow, &opts, &mut env.stdout)?;
    Ok(0)
}

/// Asks tcpip for a UDP channel to HOST:PORT.
fn open(tcpip: &Channel, opts: &Options) -> Result<Channel, CommandError> {
    let target = format!("{}:{}", opts.host, opts.port);
    tcpip
        .open_within(&format!("udp:{target}"), OPEN_WAIT_MS)
        .map_err(|e| match e {
            OpenError::TimedOut => CommandError::new(format!(
                "{target}: no answer from tcpip within {} s",
                OPEN_WAIT_MS / 1000
            )),
            OpenError::Kernel(Error::PeerClosed) => {
                CommandError::new("the TCP/IP server went away")
            }
            OpenError::Unexpected(kind) => {
                CommandError::new(format!("tcpip answered {kind:?} to a UDP open"))
            }
            e => CommandError::new(format!("{target}: {e}")),
        })
}

/// Writes up to `count` answers to `out`, each waited for `wait_ms`.
fn answers(flow: &Channel, opts: &Options, out: &mut Output) -> Result<(), CommandError> {
    let mut buf = MessageBuffer::new();
    for got in 0..opts.count {
        match flow.recv_within(&mut buf, opts.wait_ms) {
            Ok(Some(Message::Data(datagram))) => out.write(datagram)?,
            Ok(Some(other)) => {
                return Err(CommandError::new(format!(
                    "unexpected {:?} on the UDP channel",
                    other.kind()
                )))
            }
            Ok(None) => {
                return Err(CommandError::new(format!(
                    "{} of {} answers within {} s",
                    got,
                    opts.count,
                    opts.wait_ms / 1000
                )))
            }
            Err(Error::PeerClosed) => return Err(CommandError::new("the TCP/IP server went away")),
            Err(e) => return Err(CommandError::new(format!("receiving: {e}"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let o = parse_args(&args(&["-w", "5", "linux", "5353", "hello", "there"])).unwrap();
        assert_eq!(
            o,
            Options {
                wait_ms: 5000,
                count: 1,
                host: "linux".to_string(),
                port: 5353,
                message: Some("hello there".to_string()),
            }
        );
        let o = parse_args(&args(&["-n", "0", "10.0.2.2", "9"])).unwrap();
        assert_eq!((o.count, o.message), (0, None));
        // After HOST and PORT, words that look like options are the message.
        let o = parse_args(&args(&["h", "1", "-n", "x"])).unwrap();
        assert_eq!(o.message.as_deref(), Some("-n x"));
        let o = parse_args(&args(&["--", "h", "1", "-w"])).unwrap();
        assert_eq!(o.message.as_deref(), Some("-w"));
        for bad in [
            &[][..],
            &["host"],
            &["host", "0"],
            &["host", "65536"],
            &["host", "port"],
            &["-w"],
            &["-w", "x", "h", "1"],
            &["-x", "h", "1"],
        ] {
            assert_eq!(parse_args(&args(bad)).unwrap_err().status, 2, "{bad:?}");
        }
    }
}
