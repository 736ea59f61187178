//! The in-OS system-call fuzzer: calls every system call of
//! `starina::syscall::KernelApi` (through the unchecked table,
//! `starina::syscall::raw`) with random arguments from a seeded xorshift
//! generator, for `calls` calls. The kernel must answer each with a result
//! or an error: no panic, no hang, and no leak (its watch, `sysfuzz_watch`,
//! compares the kernel's memory before and after; see there).
//!
//! What is random: handle numbers (handles it owns, of every type, so calls
//! also get the wrong type; numbers just closed or moved, which the kernel
//! may have handed out again; its `Env` handles; small untracked numbers;
//! numbers that cannot be valid), rights and readiness bits (unknown bits
//! included), sizes (0, small, a page, `MESSAGE_DATA_MAX` and one either
//! side, past it), offsets and lengths into guest RAM, PCI configuration
//! space, device memory and DMA translation (its own heap, its stack, 0,
//! the top of the address space), timer deadlines (0 to `u64::MAX`, one
//! timer re-armed up to 200 times in a row), messages that move handles
//! (channel ends carrying queues of their own, nested), polls watching
//! anything, and short-lived threads doing the same concurrently.
//!
//! "Pointers into foreign objects": components run in the kernel's address
//! space and pass Rust slices, which safe Rust keeps in bounds, so the
//! hostile part of an argument is the handle, the size and the offset,
//! never a raw pointer. Foreign objects are reached through handles: the
//! supervisor channel's other end belongs to the kernel's startup (never
//! read: only teardown empties it), and numbers closed a moment ago may
//! name another thread's objects.
//!
//! Privileges: its spec grants the hypervisor (one VM of
//! `guest_ram_mib`) and the NIC (nothing else drives it), so those calls
//! get past their privilege checks. The NIC is optional: where startup
//! finds none (Bochs has no virtio devices; profile `fuzz_vmx`) the driver
//! calls are not made and the rest are, in the same proportions among
//! themselves. Shutdown and monitoring are not granted and must only
//! fail. Never called: `process_exit` (it would end
//! the run, and an exit does not unwind, so the component's own heap
//! allocations would count as a leak), and nothing writes the NIC's PCI
//! command register (bus mastering stays off, so the device cannot write
//! memory).
//!
//! It never blocks for long: `poll_wait` only on a number that is not a
//! poll or on a fresh poll with its own short timer whose handles no other
//! thread can copy or move; calls that could take another thread's timer
//! away (close, move, re-arm, unwatch) touch only the calling thread's own
//! handles while other fuzzing threads run.
//!
//! The count is of system calls made by all its threads together. Count
//! and seed come from the spec's `[config]` (a profile may override
//! them); a build with `STARINA_SYSFUZZ_CALLS` / `STARINA_SYSFUZZ_SEED` set
//! overrides those (`make fuzz`). It logs progress every `progress_every`
//! calls and a summary at the end, with what `vcpu_run` returned (exits
//! and errors by kind: `sysfuzz: vcpu_run: N calls; exits: ...`).
//!
//! Found and fixed with it (each fix in its own commit): timers re-armed
//! in a loop or closed while armed kept their queue entries, and the
//! timer's memory, until each deadline (`object/timer.rs`); a handle moved
//! in a message stayed in the polls that watched it, so a poll moved into
//! the queue of an end it watched kept both for good (`syscall.rs`); a
//! vCPU run could lose V_INTR_MASKING, and a guest with IF=0 then froze
//! the whole OS (`arch/svm.rs`); a thread waiting on a poll whose last
//! entry another thread closed or removed waited for good instead of
//! getting `PollEmpty` (`object/poll.rs`).
//!
//! Instances: each waits for the watch's `go`, fuzzes, waits for its
//! threads, reports `done` and returns (its handles are left to the
//! teardown), and startup starts it again. The first one is a short
//! warm-up (`warmup_calls`, same seed): it grows the kernel's caches that
//! grow once and stay (the scheduler's run queue, the stack allocator's free
//! list, the heap's pages), so they are not counted as a leak. The second
//! one is the run. The third reports `ready` and waits for good, as the
//! second did before its run: the watch's two measurements.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

mod calls;
mod fuzzer;
mod pool;
mod privileged;
mod rng;
mod tally;

use alloc::sync::Arc;
use core::sync::atomic::Ordering;

use starina::abi::Readiness;
use starina::poll::Poll;

use fuzzer::EnvIds;
use fuzzer::Fuzzer;
use fuzzer::Shared;
use fuzzer::THREADS;

/// The summary line's start (after the component's name), which the host
/// test looks for: `sysfuzz: done: N calls in T ms, R calls/s, seed S; ...`.
pub const SUMMARY: &str = "done:";

/// How long the end of a run waits for its threads before it calls them hung.
const THREADS_DEADLINE_NS: u64 = 60_000_000_000;

/// A number from the build environment, if set and valid.
fn build_override(value: Option<&str>, what: &str) -> Option<u64> {
    let v = value?.trim();
    let parsed = match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => v.parse(),
    };
    match parsed {
        Ok(n) => Some(n),
        Err(_) => {
            log::error!("ignoring {what}={v:?}: not a number");
            None
        }
    }
}

/// Where a spawned fuzzing thread starts.
fn thread_main(shared: Arc<Shared>, seed: u64, calls: u64) {
    {
        let mut f = Fuzzer::new(seed, shared, true);
        for _ in 0..calls {
            f.step();
        }
        f.close_all();
    }
    // The last step: everything it held is dropped (see THREADS).
    THREADS.fetch_sub(1, Ordering::AcqRel);
}

/// Where the waiter of `Fuzzer::unwatch_under_wait` starts: waits on
/// `poll`, whose one entry the main thread takes away, then closes it.
fn wait_main(shared: Arc<Shared>, poll: starina::HandleId) {
    let slot = shared.whereabouts.claim();
    shared.whereabouts.set(slot, 101, 0);
    {
        let r = fuzzer::k().poll_wait(poll);
        shared
            .tally
            .note(starina::abi::syscall::SyscallNo::PollWait, &r);
        let r = fuzzer::k().handle_close(poll);
        shared
            .tally
            .note(starina::abi::syscall::SyscallNo::HandleClose, &r);
    }
    shared.whereabouts.set(slot, 0, 0);
    drop(shared);
    THREADS.fetch_sub(1, Ordering::AcqRel);
}

/// Blocks until the watch sends something (or goes away).
fn wait_for_watch(poll: &Poll) -> bool {
    poll.wait().is_ok()
}

fn wait_for_threads() -> bool {
    let start = starina::timer::now_ns();
    while THREADS.load(Ordering::Acquire) > 0 {
        if starina::timer::now_ns() - start > THREADS_DEADLINE_NS {
            return false;
        }
        starina::thread::yield_now();
    }
    true
}

fn run(env: &Env, calls: u64, seed: u64) {
    let shared = Arc::new(Shared {
        tally: tally::Tally::new(),
        whereabouts: fuzzer::Whereabouts::new(),
        env: EnvIds {
            supervisor: env.supervisor.id(),
            watch: env.watch.id(),
            hypervisor: env.hypervisor.id(),
            nic: env.nic.as_ref().map(|nic| nic.id()),
        },
        guest_ram_bytes: (env.config.guest_ram_mib.max(2) as u64) << 20,
        wild_vcpu_state: env.config.wild_vcpu_state,
        reset_segments: env.config.reset_segments,
    });
    let every = (env.config.progress_every.max(1)) as u64;
    let mut f = Fuzzer::new(seed, shared.clone(), false);
    let start = starina::timer::now_ns();
    let mut next_report = every;
    // Every thread's calls count: the main thread stops once they reach
    // `calls` (the threads still running finish their few hundred).
    loop {
        let done = shared.tally.total();
        if done >= calls {
            break;
        }
        if done >= next_report {
            let ms = (starina::timer::now_ns() - start) / 1_000_000;
            log::info!(
                "{done} calls in {ms} ms ({} calls/s)",
                done * 1000 / ms.max(1)
            );
            next_report = done + every;
        }
        f.step();
    }
    f.finished();
    let threads_ended = wait_for_threads();
    drop(f);
    let ms = (starina::timer::now_ns() - start) / 1_000_000;
    let t = &shared.tally;
    let total = t.total();
    log::info!(
        "{SUMMARY} {total} calls in {ms} ms, {} calls/s, seed {seed:#x}; {} ok; errors: {}",
        total * 1000 / ms.max(1),
        t.ok(),
        t.errors()
    );
    log::info!("vcpu_run: {}", t.vcpu_runs());
    let never = t.never_called();
    if !never.is_empty() {
        log::info!("calls not made in this run: {never}");
    }
    if !threads_ended {
        log::error!(
            "fuzzing threads still running after 60 s: hung (seed {seed:#x}); threads at: {}",
            shared.whereabouts.describe()
        );
    }
}

pub fn main(env: Env) {
    // Made before `ready`, so both instances wait with the same objects.
    let Ok(poll) = Poll::create() else {
        log::error!("cannot create a poll");
        return;
    };
    if poll
        .add(env.watch.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
        .is_err()
        || env.watch.send_data(b"ready").is_err()
    {
        log::error!("cannot reach sysfuzz_watch");
        return;
    }
    if !wait_for_watch(&poll) || env.instance > 2 {
        return;
    }
    drop(poll);
    let mut buf = starina::channel::MessageBuffer::new();
    if !matches!(
        env.watch.try_recv(&mut buf),
        Ok(starina::Message::Data(b"go"))
    ) {
        log::error!("expected 'go' from sysfuzz_watch");
        return;
    }
    drop(buf);
    let calls = build_override(
        option_env!("STARINA_SYSFUZZ_CALLS"),
        "STARINA_SYSFUZZ_CALLS",
    )
    .unwrap_or(env.config.calls.max(0) as u64);
    let seed = build_override(option_env!("STARINA_SYSFUZZ_SEED"), "STARINA_SYSFUZZ_SEED")
        .unwrap_or(env.config.seed as u64);
    let (calls, what) = if env.instance == 1 {
        (
            calls.min(env.config.warmup_calls.max(0) as u64),
            "warm-up: ",
        )
    } else {
        (calls, "")
    };
    log::info!("{what}fuzzing {calls} system calls, seed {seed:#x}");
    THREADS.store(0, Ordering::Release);
    run(&env, calls, seed);
    if env.watch.send_data(b"done").is_err() {
        log::error!("cannot report to sysfuzz_watch");
    }
}
