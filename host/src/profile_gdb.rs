//! `starina profile --sampler gdb`: boots a profile with QEMU's gdbstub,
//! stops the guest every few milliseconds to read its RIP and
//! frame-pointer chain (the kernel is built with frame pointers), and
//! prints the functions that were running (self) and on the stack (total).
//!
//! Under `--icount` the guest's clock counts instructions, so the samples
//! fall where the instructions are; without it, where the time is.

use std::collections::HashMap;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use crate::gdb_remote::GdbRemote;
use crate::host::free_port;
use crate::host::Host;
use crate::host::Streams;
use crate::profile::Boot;
use crate::profile::ProfileOptions;
use crate::profile::Symbols;
use crate::status::ExitStatus;

/// Frames followed per sample.
const MAX_FRAMES: usize = 32;

/// Sample counts per function: where the guest was (self) and every
/// function on its stack (total, once per sample).
#[derive(Default)]
pub struct Tally {
    pub samples: u64,
    pub own: HashMap<String, u64>,
    pub total: HashMap<String, u64>,
}

impl Tally {
    pub fn add(&mut self, symbols: &Symbols, stack: &[u64]) {
        let Some(&rip) = stack.first() else { return };
        self.samples += 1;
        // Outside every function: `label` says where, to the page.
        *self.own.entry(symbols.label(rip)).or_default() += 1;
        let mut seen: Vec<&str> = stack.iter().map(|&a| symbols.name(a)).collect();
        seen.sort_unstable();
        seen.dedup();
        for name in seen {
            *self.total.entry(name.to_string()).or_default() += 1;
        }
    }

    /// The report: the `top` functions by self samples, with their totals.
    pub fn report(&self, top: usize) -> String {
        let mut rows: Vec<(&String, &u64)> = self.own.iter().collect();
        rows.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let pct = |n: u64| 100.0 * n as f64 / self.samples.max(1) as f64;
        let mut out = format!("{} samples\n  self%  total%  function\n", self.samples);
        for (name, &own) in rows.into_iter().take(top) {
            let total = self.total.get(name).copied().unwrap_or(own);
            out.push_str(&format!("{:6.1}  {:6.1}  {name}\n", pct(own), pct(total)));
        }
        out
    }
}

/// RIP, then return addresses along the frame-pointer chain.
fn stack_of(gdb: &mut GdbRemote) -> std::io::Result<Vec<u64>> {
    let at = gdb.where_stopped()?;
    let mut stack = vec![at.rip];
    let mut rbp = at.rbp;
    while stack.len() < MAX_FRAMES && rbp >= 0xffff_8000_0000_0000 && rbp.is_multiple_of(8) {
        let Some(frame) = gdb.read_memory(rbp, 16)? else {
            break;
        };
        let next = u64::from_le_bytes(frame[..8].try_into().unwrap());
        let ret = u64::from_le_bytes(frame[8..].try_into().unwrap());
        stack.push(ret);
        if next <= rbp {
            break;
        }
        rbp = next;
    }
    Ok(stack)
}

/// Samples until `opts.seconds` have passed (or the guest is gone).
fn sample(gdb: &mut GdbRemote, symbols: &Symbols, opts: &ProfileOptions) -> Tally {
    let mut tally = Tally::default();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < opts.seconds {
        thread::sleep(opts.interval);
        let stack = gdb.interrupt().and_then(|()| stack_of(gdb));
        let resumed = gdb.resume();
        match (stack, resumed) {
            (Ok(stack), Ok(())) => tally.add(symbols, &stack),
            _ => break, // QEMU is gone (the OS powered off)
        }
    }
    tally
}

/// Waits for QEMU's gdbstub to accept a connection.
fn connect(port: u16, booted: &thread::JoinHandle<ExitStatus>) -> Option<GdbRemote> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline && !booted.is_finished() {
        if let Ok(gdb) = GdbRemote::connect(port, Duration::from_secs(10)) {
            return Some(gdb);
        }
        thread::sleep(Duration::from_millis(100));
    }
    None
}

pub fn profile(host: &Host, opts: &ProfileOptions, io: &mut Streams) -> ExitStatus {
    let Some(port) = free_port() else {
        io.say("profile: no free port for QEMU's gdbstub");
        return ExitStatus::Failed;
    };
    let mut run = opts.run.clone();
    run.qemu_args
        .extend(["-gdb".to_string(), format!("tcp:127.0.0.1:{port}")]);
    let boot = Boot::start(host, run);
    let Some(mut gdb) = connect(port, &boot.thread) else {
        io.say("profile: QEMU's gdbstub never answered");
        return boot.fail(host);
    };
    let Some(symbols) = crate::profile::symbols(host, opts, io) else {
        let _ = gdb.detach();
        return boot.fail(host);
    };
    // The stub stopped the guest when we connected.
    let _ = gdb.resume();
    if !boot.wait_ready(opts.skip, io) {
        let _ = gdb.detach();
        return boot.fail(host);
    }
    io.say(&format!(
        "profile: sampling {} for {} s every {} ms",
        opts.run.profile,
        opts.seconds,
        opts.interval.as_millis()
    ));
    let tally = sample(&mut gdb, &symbols, opts);
    let _ = gdb.detach();
    boot.stop(host);
    let _ = io.out.write_all(tally.report(opts.top).as_bytes());
    if tally.samples == 0 {
        io.say("profile: no samples (did the OS stop before sampling began?)");
        return ExitStatus::Failed;
    }
    ExitStatus::Success
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::profile::tests::NM;

    #[test]
    fn the_report_ranks_self_samples_and_counts_a_function_once_per_stack() {
        let s = Symbols::parse(NM);
        let mut t = Tally::default();
        // wait, called from switch, called from switch again (recursion).
        t.add(
            &s,
            &[
                0xffff_ffff_8000_1204,
                0xffff_ffff_8000_1004,
                0xffff_ffff_8000_1008,
            ],
        );
        t.add(&s, &[0xffff_ffff_8000_1204]);
        t.add(&s, &[0xffff_ffff_8000_3000, 0xffff_ffff_8000_1210]);
        assert_eq!(t.samples, 3);
        assert_eq!(t.own["starina_kernel::syscall::wait"], 2);
        assert_eq!(t.total["starina_kernel::sched::switch"], 1);
        assert_eq!(t.total["starina_kernel::syscall::wait"], 3);
        let report = t.report(1);
        assert!(report.starts_with("3 samples\n"), "{report}");
        assert!(
            report.contains("  66.7   100.0  starina_kernel::syscall::wait\n"),
            "{report}"
        );
        assert!(!report.contains("memcpy"), "{report}");
        // Outside every function (firmware, say): the page is named.
        t.add(&s, &[0xe_a123]);
        assert_eq!(t.own["? (page 0xea000)"], 1);
    }
}
