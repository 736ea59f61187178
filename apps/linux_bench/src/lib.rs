//! Benchmarks the Linux microVM from a native component, side by side with
//! native IPC in the same boot (profile `linux_bench`, driven by
//! `scripts/bench-linux`):
//!
//! - `ipc_roundtrip_0b`: a 0-byte channel round trip to the echo server
//!   (as in `apps/bench`), measured once Linux is up and idle;
//! - `exec_true_roundtrip`: `true` through the process API of
//!   `starina_bridge::exec`, from `Open` to the exit status; the median of
//!   `exec_runs` runs after a few untimed ones;
//! - `linux_pipe_roundtrip`: one round trip of the guest's pipe ping-pong
//!   (`/init --pipe-bench N`: two processes, one byte each way), timed by
//!   the guest with CLOCK_MONOTONIC. Without `-icount` the guest cannot
//!   calibrate its TSC under QEMU's emulation and runs on the
//!   `refined-jiffies` clocksource (the ticks of the VMM's PIT, which
//!   follows Starina's clock: 4 ms resolution, hence many round trips);
//!   under `-icount shift=0` its PIT calibration succeeds and it runs on
//!   the TSC, which counts instructions. As a cross-check that does not
//!   trust the guest's clock, `linux_pipe_roundtrip_starina` times the whole
//!   exec with Starina's clock, subtracts the `true` round trip and divides
//!   by N (it also counts the child's spawn and 100 warm-up round trips, so
//!   it reads a little high; with 100,000 round trips the two agreed
//!   within 1% when this was written).
//!
//! - `guest_fork_exec_true`: what `exec_true_roundtrip` is compared with,
//!   `/bin/true` run by the guest itself the way a shell does (fork, exec,
//!   wait: `/init --spawn-bench N`), per run, timed with the guest's
//!   CLOCK_MONOTONIC; `guest_fork_exec_true_tsc` the same with the TSC,
//!   which under `-icount shift=0` counts instructions like Starina's
//!   clock does (the guest sees the host's TSC unchanged), so the two
//!   figures compare in one unit. `guest_tsc_loop_ppm` checks that: the TSC
//!   delta of a loop of a known number of instructions, in parts per
//!   million of that number (1,000,000 when the TSC counts instructions;
//!   a little more from the timer interrupts that land in the loop).
//!
//! Each figure is logged as `bench-raw: <name> <value>` in guest
//! nanoseconds (instructions under `-icount shift=0`); then it powers off
//! with 0, or 1 if anything failed.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;
use starina::abi::markers::BENCH_RAW;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina::Error;
use starina::Message;
use starina_bridge::exec;
use starina_bridge::exec::ExecRequest;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

mod native;

/// Untimed runs of `true` after the first one (which waits for the boot).
const EXEC_WARM_UP: usize = 5;

/// What one exec did.
struct Run {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    status: i32,
    /// From sending `Open` to receiving the exit status.
    ns: u64,
}

struct Bench {
    linux: Channel,
    buf: MessageBuffer,
    poll: Poll,
    timer: Timer,
    timeout_ms: u64,
    next_call: u32,
}

pub fn main(env: Env) {
    let ok = match run(env.linux, &env.echo, &env.spawn, &env.config) {
        Ok(()) => true,
        Err(why) => {
            log::error!("linux_bench failed: {why}");
            false
        }
    };
    let err = env.shutdown.power_off(if ok { 0 } else { 1 });
    log::error!("power off failed: {err}");
}

fn run(
    linux: Channel,
    echo: &Channel,
    spawn: &starina::command::Spawner,
    config: &Config,
) -> Result<(), String> {
    let err = |e: Error| e.to_string();
    let poll = Poll::create().map_err(err)?;
    let timer = Timer::create().map_err(err)?;
    poll.add(linux.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
        .map_err(err)?;
    poll.add(timer.id(), Readiness::READABLE).map_err(err)?;
    let mut b = Bench {
        linux,
        buf: MessageBuffer::new(),
        poll,
        timer,
        timeout_ms: config.timeout_ms.max(1000) as u64,
        next_call: 1,
    };

    // The first exec waits for Linux to boot.
    let first = b.exec(&["true"])?;
    expect_status(&first, 0, "true")?;
    log::info!(
        "Linux is up; {} ns from the first request to its exit",
        first.ns
    );

    // Native IPC while the guest idles.
    let rounds = config.ipc_rounds.max(10) as u64;
    let ipc = ipc_round_trips(echo, rounds / 10)
        .and_then(|_| ipc_round_trips(echo, rounds))
        .map_err(|e| format!("echo round trips: {e}"))?;
    log::info!("{BENCH_RAW} ipc_roundtrip_0b {ipc}");

    for _ in 0..EXEC_WARM_UP {
        expect_status(&b.exec(&["true"])?, 0, "true")?;
    }
    let mut times = Vec::new();
    for _ in 0..config.exec_runs.max(1) {
        let run = b.exec(&["true"])?;
        expect_status(&run, 0, "true")?;
        times.push(run.ns);
    }
    times.sort_unstable();
    let true_ns = times[times.len() / 2];
    log::info!(
        "exec true: min {} median {} max {} ns over {} runs",
        times[0],
        true_ns,
        times[times.len() - 1],
        times.len()
    );
    log::info!("{BENCH_RAW} exec_true_roundtrip {true_ns}");

    let pipe_rounds = config.pipe_rounds.max(1) as u64;
    let arg = format!("{pipe_rounds}");
    let run = b.exec(&["/init", "--pipe-bench", &arg])?;
    expect_status(&run, 0, "/init --pipe-bench")?;
    let out = String::from_utf8_lossy(&run.stdout);
    let (Some(total), Some(per)) = (field(&out, "total_ns="), field(&out, "roundtrip_ns=")) else {
        return Err(format!("unexpected pipe-bench output {:?}", out.trim()));
    };
    log::info!(
        "pipe ping-pong: {pipe_rounds} round trips, {total} ns by the guest's clock, {} ns for the whole exec by Starina's",
        run.ns
    );
    log::info!("{BENCH_RAW} linux_pipe_roundtrip {per}");
    let starina = run.ns.saturating_sub(true_ns) / pipe_rounds;
    log::info!("{BENCH_RAW} linux_pipe_roundtrip_starina {starina}");
    guest_fork_exec(&mut b, config.spawn_rounds.max(1) as u64)?;
    native::command_round_trip(spawn, config.exec_runs.max(1) as usize)?;
    native::pipe_throughput(spawn, &mut b)
}

/// `/init --spawn-bench N`: fork + exec + wait of /bin/true in the guest.
fn guest_fork_exec(b: &mut Bench, rounds: u64) -> Result<(), String> {
    let arg = format!("{rounds}");
    let run = b.exec(&["/init", "--spawn-bench", &arg])?;
    expect_status(&run, 0, "/init --spawn-bench")?;
    let out = String::from_utf8_lossy(&run.stdout);
    let field = |name: &str| field(&out, name);
    let (Some(per_ns), Some(per_tsc), Some(loop_insns), Some(loop_tsc)) = (
        field("per_ns="),
        field("per_tsc="),
        field("loop_instructions="),
        field("loop_tsc="),
    ) else {
        return Err(format!("unexpected spawn-bench output {:?}", out.trim()));
    };
    log::info!(
        "fork+exec+wait of /bin/true in the guest: {rounds} runs, {per_ns} ns each by CLOCK_MONOTONIC, {per_tsc} TSC ticks; a {loop_insns}-instruction loop took {loop_tsc} TSC ticks"
    );
    log::info!("{BENCH_RAW} guest_fork_exec_true {per_ns}");
    log::info!("{BENCH_RAW} guest_fork_exec_true_tsc {per_tsc}");
    let ppm = loop_tsc.saturating_mul(1_000_000) / loop_insns.max(1);
    log::info!("{BENCH_RAW} guest_tsc_loop_ppm {ppm}");
    Ok(())
}

/// The number after `name` in `out` (`name=123`).
fn field(out: &str, name: &str) -> Option<u64> {
    let start = out.find(name)? + name.len();
    let digits: String = out[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

fn expect_status(run: &Run, want: i32, what: &str) -> Result<(), String> {
    if run.status == want {
        return Ok(());
    }
    Err(format!(
        "{what} exited with {} (stdout {:?}, stderr {:?})",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    ))
}

/// `rounds` 0-byte round trips to the echo server; ns per round trip.
fn ipc_round_trips(echo: &Channel, rounds: u64) -> Result<u64, Error> {
    let poll = Poll::create()?;
    poll.add(echo.id(), Readiness::READABLE | Readiness::PEER_CLOSED)?;
    let mut buf = vec![0u8; 16];
    let start = now_ns();
    for _ in 0..rounds {
        echo.send_data(&[])?;
        loop {
            poll.wait()?;
            match echo.recv_raw(&mut buf, &mut []) {
                Ok(info) if info.data_len == 0 => break,
                Ok(_) => return Err(Error::MalformedMessage),
                Err(Error::WouldBlock) => continue,
                Err(e) => return Err(e),
            }
        }
    }
    Ok((now_ns() - start) / rounds.max(1))
}

impl Bench {
    /// Runs `argv` with no stdin; returns its output, exit status and round
    /// trip time.
    fn exec(&mut self, argv: &[&str]) -> Result<Run, String> {
        let err = |e: Error| e.to_string();
        let body = ExecRequest::new(argv).encode().map_err(|e| e.to_string())?;
        let call_id = self.next_call;
        self.next_call += 1;
        self.timer.set_ms(self.timeout_ms).map_err(err)?;
        let start = now_ns();
        self.linux
            .send(Message::Open {
                call_id,
                uri: exec::URI,
                handle: None,
            })
            .map_err(|e| format!("cannot open a process: {}", e.error))?;
        let proc_ = loop {
            if let Some(ch) = self.take_reply(call_id)? {
                break ch;
            }
            self.wait(argv)?;
        };
        proc_.send_data(&body).map_err(err)?;
        proc_
            .send(Message::Close)
            .map_err(|e| e.error.to_string())?;
        self.poll
            .add(proc_.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
            .map_err(err)?;
        let result = self.collect(&proc_, argv, start);
        let _ = self.poll.remove(proc_.id());
        result
    }

    /// Waits for the next event; fails on the timeout.
    fn wait(&self, argv: &[&str]) -> Result<(), String> {
        let (id, _) = self.poll.wait().map_err(|e| e.to_string())?;
        if id == self.timer.id() {
            return Err(format!("{argv:?} timed out"));
        }
        Ok(())
    }

    /// The process channel of `call_id`, if its `OpenReply` has arrived.
    fn take_reply(&mut self, call_id: u32) -> Result<Option<Channel>, String> {
        loop {
            match self.linux.try_recv(&mut self.buf) {
                Ok(Message::OpenReply { call_id: c, handle }) if c == call_id => {
                    return Ok(Some(Channel::from_handle(handle)));
                }
                Ok(Message::Error {
                    call_id: c, text, ..
                }) if c == call_id => return Err(format!("exec refused: {text}")),
                Ok(other) => log::info!("ignoring {:?} from the linux server", other.kind()),
                Err(Error::WouldBlock) => return Ok(None),
                Err(e) => return Err(format!("linux channel: {e}")),
            }
        }
    }

    /// Reads the process's events until its exit status.
    fn collect(&mut self, ch: &Channel, argv: &[&str], start: u64) -> Result<Run, String> {
        let mut run = Run {
            stdout: Vec::new(),
            stderr: Vec::new(),
            status: -1,
            ns: 0,
        };
        loop {
            match ch.try_recv(&mut self.buf) {
                Ok(Message::Data(d)) => match exec::Event::decode(d) {
                    Ok(exec::Event::Stdout(b)) => run.stdout.extend_from_slice(b),
                    Ok(exec::Event::Stderr(b)) => run.stderr.extend_from_slice(b),
                    Ok(exec::Event::Started { .. }) => {}
                    Ok(exec::Event::Exited(c)) => {
                        run.ns = now_ns() - start;
                        run.status = c;
                        return Ok(run);
                    }
                    Ok(exec::Event::Signaled(s)) => {
                        return Err(format!("{argv:?} was killed by signal {s}"))
                    }
                    Err(e) => return Err(format!("bad event: {e}")),
                },
                Ok(Message::Error { text, .. }) => return Err(format!("{argv:?} failed: {text}")),
                Ok(_) => {}
                Err(Error::WouldBlock) => self.wait(argv)?,
                Err(e) => return Err(format!("{argv:?}: process channel: {e}")),
            }
        }
    }
}
