//! The host fuzz driver shared by every crate's fuzz targets (each includes
//! this file with `#[path = ".../tests/fuzz_driver.rs"] mod driver;`).
//!
//! A target is a closure over a value built with `arbitrary` from random
//! bytes. The driver runs it for a budget, catches panics, and checks that
//! one case did not allocate more than a bound (a decoder that sizes a
//! buffer from an untrusted length shows up here, not as an OOM later;
//! measured where the test also includes `tests/fuzz_alloc.rs`).
//! A failing case prints its input in hex: paste it into a `#[test]` that
//! calls [`replay`] to keep it as a regression input.
//!
//! Budget (environment):
//! - `STARINA_FUZZ_CASES=N`: N cases per target (default: the target's own
//!   small count, what `make test` runs);
//! - `STARINA_FUZZ_SECONDS=S`: run each target for S seconds instead;
//! - `STARINA_FUZZ_SEED=X`: the random seed (default: fixed per target, so
//!   `make test` is reproducible).
//!
//! Every target prints `fuzz NAME: N cases, S s, R cases/s, seed X, peak
//! alloc B bytes` on stderr (`cargo test -- --nocapture` shows it).

#![allow(dead_code)] // each crate uses part of the driver

extern crate std;

use std::cell::Cell;
use std::env;
use std::eprintln;
use std::fmt::Debug;
use std::fmt::Write as _;
use std::format;
use std::panic;
use std::string::String;
use std::time::Duration;
use std::time::Instant;
use std::vec::Vec;

use arbitrary::Arbitrary;
use arbitrary::Unstructured;

/// The most one case may have allocated at once beyond what was live when it
/// started, unless the target says otherwise ([`Target::max_alloc`]). Checked
/// where the test includes `tests/fuzz_alloc.rs` (see [`note_alloc`]).
pub const DEFAULT_MAX_ALLOC: usize = 64 << 20;

std::thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

/// Counts `delta` bytes allocated (negative: freed) on this thread: what the
/// counting allocator in `tests/fuzz_alloc.rs` calls. Crates that forbid
/// unsafe code cannot install it; their targets report a peak of 0.
pub fn note_alloc(delta: isize) {
    // `try_with`: allocations during thread teardown are not counted.
    let _ = LIVE.try_with(|live| {
        let now = live.get().wrapping_add(delta);
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

/// Starts counting a case: returns the bytes live now.
fn alloc_baseline() -> isize {
    let live = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(live));
    live
}

/// The most the case allocated at once above `baseline`.
fn alloc_peak_since(baseline: isize) -> usize {
    (PEAK.with(Cell::get) - baseline).max(0) as usize
}

/// splitmix64: small, fast, and good enough to make fuzz input.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Input bytes: mostly short, sometimes up to `max_len`, and sometimes
    /// drawn from a small alphabet so that equal bytes (and the values that
    /// decoders compare against) come up often.
    fn input(&mut self, max_len: usize) -> Vec<u8> {
        let len = match self.next() % 4 {
            0 => self.next() as usize % 16.min(max_len + 1),
            1 | 2 => self.next() as usize % 256.min(max_len + 1),
            _ => self.next() as usize % (max_len + 1),
        };
        // Boundary bytes make boundary integers (0, -1, i32::MAX, 0x80..).
        let alphabet: Option<[u8; 4]> = self.next().is_multiple_of(3).then(|| {
            let r = self.next().to_le_bytes();
            let edge = [0x7f, 0x80, 0x01, r[2]][r[3] as usize % 4];
            [0, 0xff, edge, r[0]]
        });
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            let word = self.next().to_le_bytes();
            for b in word {
                out.push(match alphabet {
                    Some(a) => a[b as usize % 4],
                    None => b,
                });
            }
        }
        out.truncate(len);
        out
    }
}

/// A sequence for fuzz input. `arbitrary`'s own `Vec` reads a "one more?"
/// flag before each element, which suits coverage-guided fuzzers but gives
/// random input sequences of one or two elements. `Seq` reads its length
/// from the end of the input instead (and takes all that is left when it
/// is last), so sequences of operations run long.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Seq<T>(pub Vec<T>);

impl<'a, T: Arbitrary<'a>> Arbitrary<'a> for Seq<T> {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = u.arbitrary_len::<T>()?;
        (0..len)
            .map(|_| T::arbitrary(u))
            .collect::<Result<_, _>>()
            .map(Seq)
    }

    fn arbitrary_take_rest(mut u: Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut out = Vec::new();
        while !u.is_empty() {
            out.push(T::arbitrary(&mut u)?);
        }
        Ok(Seq(out))
    }
}

impl<T> std::ops::Deref for Seq<T> {
    type Target = Vec<T>;

    fn deref(&self) -> &Vec<T> {
        &self.0
    }
}

/// Bytes for fuzz input: a length from the end of the input, then that
/// many bytes (all that is left when last). See [`Seq`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bytes(pub Vec<u8>);

impl<'a> Arbitrary<'a> for Bytes {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let len = u.arbitrary_len::<u8>()?;
        Ok(Bytes(u.bytes(len)?.to_vec()))
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Bytes(u.take_rest().to_vec()))
    }
}

impl Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "b\"{}\"", self.0.escape_ascii())
    }
}

impl std::ops::Deref for Bytes {
    type Target = Vec<u8>;

    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

/// One fuzz target's name and limits.
pub struct Target {
    name: &'static str,
    default_cases: u64,
    max_input: usize,
    max_alloc: usize,
}

impl Target {
    /// A target that runs `default_cases` cases when no budget is set.
    pub fn new(name: &'static str, default_cases: u64) -> Self {
        Target {
            name,
            default_cases,
            max_input: 4096,
            max_alloc: DEFAULT_MAX_ALLOC,
        }
    }

    /// The longest raw input (default 4096 bytes).
    pub fn max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }

    /// The most one case may allocate at once.
    pub fn max_alloc(mut self, bytes: usize) -> Self {
        self.max_alloc = bytes;
        self
    }

    /// Runs `check` on values built from random bytes for the budget.
    /// Panics (failing the test) on the first case that panics or allocates
    /// more than the bound, after printing its input.
    pub fn run<T, F>(self, mut check: F)
    where
        T: for<'a> Arbitrary<'a> + Debug,
        F: FnMut(T),
    {
        let seed = env_u64("STARINA_FUZZ_SEED").unwrap_or_else(|| name_seed(self.name));
        let seconds = env_u64("STARINA_FUZZ_SECONDS");
        let cases = env_u64("STARINA_FUZZ_CASES").unwrap_or(match seconds {
            Some(_) => u64::MAX,
            None => self.default_cases,
        });
        let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
        let mut rng = Rng(seed);
        let start = Instant::now();
        let (mut done, mut max_peak) = (0u64, 0usize);
        while done < cases && deadline.is_none_or(|d| done % 64 != 0 || Instant::now() < d) {
            let bytes = rng.input(self.max_input);
            let peak = self.run_one(&bytes, &mut check, Some((seed, done)));
            max_peak = max_peak.max(peak);
            done += 1;
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!(
            "fuzz {}: {} cases, {:.2} s, {:.0} cases/s, seed {:#x}, peak alloc {} bytes",
            self.name,
            done,
            secs,
            done as f64 / secs.max(1e-9),
            seed,
            max_peak
        );
    }

    /// Runs one case; returns the most it allocated at once.
    fn run_one<T, F>(&self, bytes: &[u8], check: &mut F, origin: Option<(u64, u64)>) -> usize
    where
        T: for<'a> Arbitrary<'a> + Debug,
        F: FnMut(T),
    {
        let baseline = alloc_baseline();
        let outcome = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            if let Ok(value) = T::arbitrary_take_rest(Unstructured::new(bytes)) {
                check(value);
            }
        }));
        let peak = alloc_peak_since(baseline);
        let failure = match outcome {
            Err(_) => Some(String::from("panicked (message above)")),
            Ok(()) if peak > self.max_alloc => Some(format!(
                "allocated {peak} bytes at once (bound {})",
                self.max_alloc
            )),
            Ok(()) => None,
        };
        if let Some(why) = failure {
            let value = T::arbitrary_take_rest(Unstructured::new(bytes));
            let at = origin.map_or(String::new(), |(seed, n)| {
                format!(" (seed {seed:#x}, case {n})")
            });
            panic!(
                "fuzz {}: case {why}{at}\ninput: {value:?}\nbytes: \"{}\"",
                self.name,
                hex(bytes)
            );
        }
        peak
    }

    /// Runs `check` on the value built from `hex_bytes` (a failing case's
    /// `bytes:` line): what a regression test calls.
    pub fn replay<T, F>(self, hex_bytes: &str, mut check: F)
    where
        T: for<'a> Arbitrary<'a> + Debug,
        F: FnMut(T),
    {
        let bytes = unhex(hex_bytes);
        let _ = self.run_one(&bytes, &mut check, None);
    }
}

/// Runs `check` for the budget with the default limits.
pub fn run<T, F>(name: &'static str, default_cases: u64, check: F)
where
    T: for<'a> Arbitrary<'a> + Debug,
    F: FnMut(T),
{
    Target::new(name, default_cases).run(check)
}

fn env_u64(name: &str) -> Option<u64> {
    let text = env::var(name).ok()?;
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    match parsed {
        Ok(v) => Some(v),
        Err(_) => panic!("{name}={text:?} is not a number"),
    }
}

/// A fixed seed per target (FNV-1a of its name).
fn name_seed(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn unhex(text: &str) -> Vec<u8> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    digits
        .chunks(2)
        .map(|pair| {
            let s = std::str::from_utf8(pair).expect("hex digits");
            u8::from_str_radix(s, 16).expect("hex digits")
        })
        .collect()
}
