//! `log [-n N] [-f]`: the kernel log the kernel keeps, its last lines, and
//! following it as it grows.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::command::CommandError;
use starina::command::IoError;
use starina::poll::Poll;
use starina::system::Monitor;
use starina::timer::Timer;

use crate::sys;
use crate::Env;
use crate::Outcome;

/// How often `-f` looks for new lines.
const FOLLOW_PERIOD_MS: u64 = 100;
/// At least the kernel's log ring: a read returns whole lines only, so the
/// buffer must hold the longest.
const READ_MAX: usize = 64 * 1024;

#[derive(Debug, Default, PartialEq, Eq)]
struct Options {
    last: Option<usize>,
    follow: bool,
}

fn parse(args: &[alloc::string::String]) -> Result<Options, CommandError> {
    let mut opts = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-f" => opts.follow = true,
            "-n" => {
                let n = args
                    .next()
                    .ok_or_else(|| CommandError::usage("-n needs a number of lines"))?;
                let n = n.parse().map_err(|_| {
                    CommandError::usage(format!("-n: not a number of lines: '{n}'"))
                })?;
                opts.last = Some(n);
            }
            other => {
                return Err(CommandError::usage(format!(
                    "unknown argument '{other}' (see --help)"
                )))
            }
        }
    }
    Ok(opts)
}

pub fn run(env: &mut Env) -> Outcome {
    let opts = parse(env.args.rest())?;
    let mut buf = vec![0u8; READ_MAX];
    let (text, mut next) = read_from(&env.monitor, 0, &mut buf)?;
    let shown = match opts.last {
        Some(n) => last_lines(&text, n),
        None => &text[..],
    };
    env.stdout.write(shown)?;
    if opts.follow {
        follow(env, &mut buf, &mut next)?;
    }
    Ok(0)
}

/// The log from sequence number `from` to its current end: (text, the
/// sequence number after it).
fn read_from(monitor: &Monitor, from: u64, buf: &mut [u8]) -> Result<(Vec<u8>, u64), CommandError> {
    let mut text = Vec::new();
    let mut next = from;
    loop {
        let (start, len) = monitor
            .read_log(next, buf)
            .map_err(|e| CommandError::new(format!("cannot read the log: {e}")))?;
        if len == 0 {
            return Ok((text, next.max(start)));
        }
        text.extend_from_slice(&buf[..len]);
        next = start + len as u64;
    }
}

/// The last `n` lines of `text` (whole lines, each with its `\n`).
fn last_lines(text: &[u8], n: usize) -> &[u8] {
    if n == 0 {
        return &[];
    }
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let mut seen = 0;
    for (i, &b) in body.iter().enumerate().rev() {
        if b == b'\n' {
            seen += 1;
            if seen == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// Prints new lines every [`FOLLOW_PERIOD_MS`] until killed, or until
/// stdout's reader goes away (a broken pipe, status 141), even while no
/// line comes.
fn follow(env: &mut Env, buf: &mut [u8], next: &mut u64) -> Result<(), CommandError> {
    let poll = Poll::create().map_err(sys("a poll"))?;
    let timer = Timer::create().map_err(sys("a timer"))?;
    poll.add(env.stdout.channel().id(), Readiness::PEER_CLOSED)
        .map_err(sys("watching stdout"))?;
    poll.add(timer.id(), Readiness::READABLE)
        .map_err(sys("watching the timer"))?;
    timer.set_ms(FOLLOW_PERIOD_MS).map_err(sys("the timer"))?;
    loop {
        let (id, ready) = poll.wait().map_err(sys("waiting"))?;
        if id == env.stdout.channel().id() && ready.contains(Readiness::PEER_CLOSED) {
            return Err(IoError::BrokenPipe.into());
        }
        let (text, after) = read_from(&env.monitor, *next, buf)?;
        *next = after;
        if !text.is_empty() {
            env.stdout.write(&text)?;
        }
        timer.set_ms(FOLLOW_PERIOD_MS).map_err(sys("the timer"))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::string::ToString;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn options() {
        assert_eq!(parse(&args(&[])).unwrap(), Options::default());
        let o = parse(&args(&["-n", "5", "-f"])).unwrap();
        assert_eq!(
            o,
            Options {
                last: Some(5),
                follow: true
            }
        );
        assert_eq!(parse(&args(&["-n"])).unwrap_err().status, 2);
        assert_eq!(parse(&args(&["-n", "x"])).unwrap_err().status, 2);
        assert_eq!(parse(&args(&["-x"])).unwrap_err().status, 2);
    }

    #[test]
    fn last_lines_are_whole() {
        let text = b"a\nb\nc\n";
        assert_eq!(last_lines(text, 0), b"");
        assert_eq!(last_lines(text, 1), b"c\n");
        assert_eq!(last_lines(text, 2), b"b\nc\n");
        assert_eq!(last_lines(text, 3), text);
        assert_eq!(last_lines(text, 9), text);
        assert_eq!(last_lines(b"", 2), b"");
    }
}
