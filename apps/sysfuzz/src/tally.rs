//! What the fuzzer did: calls per system call, results per error kind.
//! Shared by every fuzzing thread (atomics, no lock).

use core::fmt::Write;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use alloc::string::String;
use starina::abi::syscall::SyscallNo;
use starina::Error;

pub struct Tally {
    /// Indexed by `SyscallNo as usize - 1`.
    calls: [AtomicU64; SyscallNo::ALL.len()],
    ok: AtomicU64,
    /// Indexed by `Error as usize - 1`.
    errors: [AtomicU64; Error::ALL.len()],
}

impl Tally {
    pub fn new() -> Tally {
        Tally {
            calls: core::array::from_fn(|_| AtomicU64::new(0)),
            ok: AtomicU64::new(0),
            errors: core::array::from_fn(|_| AtomicU64::new(0)),
        }
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
        let mut out = String::new();
        for (e, n) in Error::ALL.iter().zip(&self.errors) {
            let n = n.load(Ordering::Relaxed);
            if n > 0 {
                let _ = write!(out, "{}{e:?}={n}", if out.is_empty() { "" } else { " " });
            }
        }
        out
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
