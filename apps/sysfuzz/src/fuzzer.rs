//! One fuzzing thread: its generator, its handles and the call it makes
//! next. The calls themselves are in `calls` (handles, channels, polls,
//! timers, threads) and `privileged` (VMs, devices, DMA, system calls).

use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::abi::syscall::SyscallNo;
use starina::abi::vcpu::VmExit;
use starina::abi::MESSAGE_DATA_MAX;
use starina::syscall::KernelApi;
use starina::Error;
use starina::HandleId;

use crate::pool::Kind;
use crate::pool::Pool;
use crate::rng::Rng;
use crate::tally::Tally;

/// The `Env` handles the calls use as arguments.
#[derive(Clone, Copy)]
pub struct EnvIds {
    pub supervisor: HandleId,
    pub watch: HandleId,
    pub hypervisor: HandleId,
    /// The NIC, when startup found one (none under Bochs): the driver
    /// calls are made only with it.
    pub nic: Option<HandleId>,
}

/// What every fuzzing thread of the run shares.
pub struct Shared {
    pub tally: Tally,
    /// Where each thread is, for a hang report (see [`Whereabouts`]).
    pub whereabouts: Whereabouts,
    pub env: EnvIds,
    pub guest_ram_bytes: u64,
    /// Random control registers, flags and segments for `vcpu_run`.
    pub wild_vcpu_state: bool,
    /// Real-mode segment caches after reset instead of zeroed ones (which
    /// VMX refuses).
    pub reset_segments: bool,
}

/// Fuzzing threads alive besides the main one. A static rather than a
/// field of [`Shared`]: a thread lowers it as its very last step, after it
/// dropped everything, so the main thread's return (which tears the process
/// down) cannot kill a thread that still holds a reference.
// (A counter in an `Arc` would be the one reference a thread still holds
// after lowering it: a leak if teardown killed the thread there.)
// static-ok: instances never fuzz at once, and each run starts it from 0.
pub static THREADS: AtomicUsize = AtomicUsize::new(0);

/// What each fuzzing thread does now: the step it is in (its roll, 1 to
/// 100) and the last call it finished, so a run whose threads do not end
/// can say where they are.
pub struct Whereabouts {
    next: AtomicUsize,
    /// `step << 16 | last call`, 0 when the slot's thread ended.
    slots: [AtomicUsize; 16],
}

impl Whereabouts {
    pub fn new() -> Whereabouts {
        Whereabouts {
            next: AtomicUsize::new(0),
            slots: core::array::from_fn(|_| AtomicUsize::new(0)),
        }
    }

    /// A free slot (one a live thread holds is never shared while there
    /// are free ones: at most `MAX_THREADS` + 2 threads fuzz at once).
    pub fn claim(&self) -> usize {
        for (i, s) in self.slots.iter().enumerate() {
            if s.compare_exchange(0, 1 << 16, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                return i;
            }
        }
        self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    pub fn set(&self, slot: usize, step: usize, call: usize) {
        self.slots[slot].store(step << 16 | call, Ordering::Relaxed);
    }

    /// `[step 17 after channel_send] ...` for every slot in use (step 100:
    /// the waiter of `unwatch_under_wait`).
    pub fn describe(&self) -> alloc::string::String {
        use core::fmt::Write;
        let mut out = alloc::string::String::new();
        for s in &self.slots {
            let v = s.load(Ordering::Relaxed);
            if v != 0 {
                let call = SyscallNo::from_raw((v & 0xffff) as u16).map_or("none", |c| c.name());
                let _ = write!(out, "[step {} after {call}] ", (v >> 16).saturating_sub(1));
            }
        }
        out
    }
}

/// The most fuzzing threads alive at once besides the main one.
pub const MAX_THREADS: usize = 4;

pub struct Fuzzer {
    pub rng: Rng,
    pub pool: Pool,
    pub shared: Arc<Shared>,
    /// Bytes sent and received: larger than a message may be.
    pub scratch: Vec<u8>,
    /// A spawned thread (it touches only its own handles destructively).
    pub worker: bool,
    /// Its slot in `shared.whereabouts`.
    slot: usize,
    step: usize,
}

/// The table, unchecked (see `starina::syscall::raw`).
pub fn k() -> &'static dyn KernelApi {
    starina::syscall::raw()
}

impl Fuzzer {
    pub fn new(seed: u64, shared: Arc<Shared>, worker: bool) -> Fuzzer {
        let env = shared.env;
        let mut protected = vec![env.supervisor, env.watch, env.hypervisor];
        protected.extend(env.nic);
        let slot = shared.whereabouts.claim();
        Fuzzer {
            rng: Rng::new(seed),
            pool: Pool::new(protected, if worker { 24 } else { 160 }),
            shared,
            scratch: vec![0x5a; MESSAGE_DATA_MAX + 4096],
            worker,
            slot,
            step: 0,
        }
    }

    pub fn env(&self) -> EnvIds {
        self.shared.env
    }

    pub fn note<T>(&self, call: SyscallNo, result: &Result<T, Error>) {
        self.shared.tally.note(call, result);
        let whereabouts = &self.shared.whereabouts;
        whereabouts.set(self.slot, self.step, call.as_raw() as usize);
    }

    /// [`Fuzzer::note`] for `vcpu_run`, whose results are counted by exit
    /// kind as well.
    pub fn note_vcpu_run(&self, result: &Result<VmExit, Error>) {
        self.shared.tally.note_vcpu_run(result);
        let call = SyscallNo::VcpuRun.as_raw() as usize;
        self.shared.whereabouts.set(self.slot, self.step, call);
    }

    /// Whether a call may close, move, re-arm or unwatch a handle it did
    /// not make itself. Only the main thread, and only while no other
    /// fuzzing thread runs: one waiting on its own poll must not lose the
    /// timer that ends its wait.
    pub fn may_interfere(&self) -> bool {
        !self.worker && THREADS.load(Ordering::Acquire) == 0
    }

    /// A number for a call that closes, moves, re-arms or unwatches it.
    pub fn victim(&mut self, kind: Option<Kind>) -> HandleId {
        let own_only = !self.may_interfere();
        self.pool.victim(&mut self.rng, kind, own_only)
    }

    /// Any number, mostly of `kind`.
    pub fn any(&mut self, kind: Option<Kind>) -> HandleId {
        self.pool.any(&mut self.rng, kind)
    }

    /// Keeps a new handle, closing an old one first if it holds too many.
    pub fn keep(&mut self, id: HandleId, kind: Kind) {
        if self.pool.len() >= self.pool.limit {
            if let Some((old, old_kind)) = self.pool.any_live(&mut self.rng) {
                self.release(old, old_kind);
            }
        }
        self.pool.add(id, kind);
    }

    /// Closes (or frees) one of its handles.
    pub fn release(&mut self, id: HandleId, kind: Kind) {
        let result = if kind == Kind::Dma {
            let r = k().dma_free(id);
            self.note(SyscallNo::DmaFree, &r);
            r
        } else {
            let r = k().handle_close(id);
            self.note(SyscallNo::HandleClose, &r);
            r
        };
        // Unknown kinds may be DMA after all: closing refuses those.
        if result == Err(Error::WrongObjectType) {
            let r = k().dma_free(id);
            self.note(SyscallNo::DmaFree, &r);
        }
        self.pool.remove(id);
    }

    /// One random call.
    pub fn step(&mut self) {
        let roll = self.rng.below(100);
        self.step = roll as usize + 1;
        match roll {
            0..=7 => self.handle_close(),
            8..=11 => self.handle_duplicate(),
            12..=16 => self.channel_create(),
            17..=30 => self.channel_send(),
            31..=40 => self.channel_recv(),
            41..=43 => self.poll_create(),
            44..=50 => self.poll_add(),
            51..=53 => self.poll_remove(),
            54..=56 => self.poll_wait(),
            57..=59 => self.timer_create(),
            60..=66 => self.timer_set(),
            67 => self.thread_spawn(),
            68 if self.rng.one_in(2) => self.unwatch_under_wait(),
            68 if self.rng.one_in(2) => self.thread_pin(),
            68 => self.thread_yield(),
            69..=71 => self.cheap_calls(),
            72..=83 => self.privileged_call(),
            84..=91 => self.channel_send(),
            _ => self.channel_recv(),
        }
    }

    /// Its fuzzing is over (it leaves the hang report).
    pub fn finished(&self) {
        self.shared.whereabouts.set(self.slot, 0, 0);
    }

    /// Closes everything it still holds (the end of a spawned thread).
    pub fn close_all(&mut self) {
        for (id, kind) in self.pool.drain() {
            self.release(id, kind);
        }
        self.shared.whereabouts.set(self.slot, 0, 0);
    }
}
