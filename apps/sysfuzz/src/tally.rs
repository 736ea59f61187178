//! What the fuzzer did: calls per system call, results per error kind,
//! and what `vcpu_run` returned (exits by kind, errors by kind).
//! Shared by every fuzzing thread (atomics, no lock).

use core::fmt::Write;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use alloc::string::String;
use starina::abi::syscall::SyscallNo;
use starina::abi::vcpu::VmExit;
use starina::Error;

/// The kinds of `VmExit`, in the order of [`exit_index`].
const EXITS: [&str; 13] = [
    "Io",
    "NestedPageFault",
    "Cpuid",
    "Msr",
    "Hlt",
    "Shutdown",
    "Vmmcall",
    "InterruptWindow",
    "HostInterrupt",
    "Xsetbv",
    "Exception",
    "Invalid",
    "Unknown",
];

/// Where an exit of this kind is counted (the names are [`EXITS`]).
fn exit_index(exit: &VmExit) -> usize {
    match exit {
        VmExit::Io { .. } => 0,
        VmExit::NestedPageFault { .. } => 1,
        VmExit::Cpuid { .. } => 2,
        VmExit::Msr { .. } => 3,
        VmExit::Hlt => 4,
        VmExit::Shutdown => 5,
        VmExit::Vmmcall => 6,
        VmExit::InterruptWindow => 7,
        VmExit::HostInterrupt => 8,
        VmExit::Xsetbv { .. } => 9,
        VmExit::Exception { .. } => 10,
        VmExit::Invalid => 11,
        VmExit::Unknown { .. } => 12,
    }
}

/// `name=count` for every non-zero count, space-separated.
fn nonzero<'a>(counts: impl Iterator<Item = (&'a AtomicU64, String)>) -> String {
    let mut out = String::new();
    for (n, name) in counts {
        let n = n.load(Ordering::Relaxed);
        if n > 0 {
            let _ = write!(out, "{}{name}={n}", if out.is_empty() { "" } else { " " });
        }
    }
    out
}

pub struct Tally {
    /// Indexed by `SyscallNo as usize - 1`.
    calls: [AtomicU64; SyscallNo::ALL.len()],
    ok: AtomicU64,
    /// Indexed by `Error as usize - 1`.
    errors: [AtomicU64; Error::ALL.len()],
    /// `vcpu_run`'s exits, indexed by [`exit_index`].
    vcpu_exits: [AtomicU64; EXITS.len()],
    /// `vcpu_run`'s errors, indexed by `Error as usize - 1`.
    vcpu_errors: [AtomicU64; Error::ALL.len()],
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            calls: core::array::from_fn(|_| AtomicU64::new(0)),
            ok: AtomicU64::new(0),
            errors: core::array::from_fn(|_| AtomicU64::new(0)),
            vcpu_exits: core::array::from_fn(|_| AtomicU64::new(0)),
            vcpu_errors: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// Records one `vcpu_run` and what it returned (besides [`Tally::note`]).
    pub fn note_vcpu_run(&self, result: &Result<VmExit, Error>) {
        self.note(SyscallNo::VcpuRun, result);
        match result {
            Ok(exit) => self.vcpu_exits[exit_index(exit)].fetch_add(1, Ordering::Relaxed),
            Err(e) => self.vcpu_errors[e.as_raw() as usize - 1].fetch_add(1, Ordering::Relaxed),
        };
    }

    /// `N calls; exits: Hlt=3 Invalid=12 ...; errors: InvalidHandle=40 ...`.
    pub fn vcpu_runs(&self) -> String {
        let calls = self.calls[SyscallNo::VcpuRun.as_raw() as usize - 1].load(Ordering::Relaxed);
        let exits = nonzero(
            self.vcpu_exits
                .iter()
                .zip(EXITS.iter().map(|e| String::from(*e))),
        );
        let errors = nonzero(
            self.vcpu_errors
                .iter()
                .zip(Error::ALL.iter().map(|e| alloc::format!("{e:?}"))),
        );
        alloc::format!("{calls} calls; exits: {exits}; errors: {errors}")
    }

    /// Records one call and its result.
    pub fn note<T>(&self, call: SyscallNo, result: &Result<T, Error>) {
        self.calls[call.as_raw() as usize - 1].fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(e) => self.errors[e.as_raw() as usize - 1].fetch_add(1, Ordering::Relaxed),
        };
    }

    pub fn total(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    pub fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// `InvalidHandle=12 WrongObjectType=3 ...`, the kinds seen.
    pub fn errors(&self) -> String {
        nonzero(
            self.errors
                .iter()
                .zip(Error::ALL.iter().map(|e| alloc::format!("{e:?}"))),
        )
    }

    /// The calls never made (empty when every one was).
    pub fn never_called(&self) -> String {
        let mut out = String::new();
        for (no, n) in SyscallNo::ALL.iter().zip(&self.calls) {
            if n.load(Ordering::Relaxed) == 0 {
                let _ = write!(
                    out,
                    "{}{}",
                    if out.is_empty() { "" } else { " " },
                    no.name()
                );
            }
        }
        out
    }
}
