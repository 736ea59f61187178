//! The calls every component can make: handles, channels, polls, timers,
//! threads, and the cheap ones (log, time, process id, CPUID, boot files).

use alloc::boxed::Box;
use alloc::string::String;
use core::sync::atomic::Ordering;

use starina::abi::syscall::SyscallNo;
use starina::abi::LogLevel;
use starina::abi::Readiness;
use starina::abi::Rights;
use starina::abi::MESSAGE_DATA_MAX;
use starina::abi::MESSAGE_HANDLES_MAX;
use starina::Error;
use starina::HandleId;

use crate::fuzzer::k;
use crate::fuzzer::Fuzzer;
use crate::fuzzer::MAX_THREADS;
use crate::fuzzer::THREADS;
use crate::pool::Kind;
use crate::pool::Pool;

/// Rights for the poll and timer of a bounded wait: no one can copy or
/// move them, so no other thread can consume the timer's expiry.
const WAIT_RIGHTS: Rights = Rights::READ.union(Rights::WRITE).union(Rights::POLL);

/// Longest a bounded wait's timer runs (ns).
const WAIT_MAX_NS: u64 = 2_000_000;

impl Fuzzer {
    fn rights(&mut self) -> Rights {
        match self.rng.below(4) {
            0 => Rights::from_bits_retain(self.rng.next() as u32),
            _ => Rights::from_bits_truncate(self.rng.next() as u32),
        }
    }

    fn interests(&mut self) -> Readiness {
        match self.rng.below(4) {
            0 => Readiness::from_bits_retain(self.rng.next() as u32),
            _ => Readiness::from_bits_truncate(self.rng.next() as u32),
        }
    }

    pub fn handle_close(&mut self) {
        let id = self.victim(None);
        let r = k().handle_close(id);
        self.note(SyscallNo::HandleClose, &r);
        if r.is_ok() {
            self.pool.remove(id);
        }
    }

    pub fn handle_duplicate(&mut self) {
        // Never a copy of the watch's channel: what reaches the checker
        // (its handle table grows with handles sent to it) would count
        // in the leak check against the kernel.
        let env = self.env();
        let id = match self.any(None) {
            id if id == env.watch => env.supervisor,
            id => id,
        };
        let rights = self.rights();
        let r = k().handle_duplicate(id, rights);
        self.note(SyscallNo::HandleDuplicate, &r);
        if let Ok(copy) = r {
            let kind = self.pool.kind_of(id).unwrap_or(Kind::Unknown);
            self.keep(copy, kind);
        }
    }

    pub fn channel_create(&mut self) {
        let r = k().channel_create();
        self.note(SyscallNo::ChannelCreate, &r);
        if let Ok((a, b)) = r {
            self.keep(a, Kind::Channel);
            self.keep(b, Kind::Channel);
        }
    }

    /// A channel to send on or receive from: never the watch's (the
    /// fuzzer's one link to its checker), sometimes the supervisor channel
    /// (startup's end, never read: a foreign queue that only teardown
    /// empties).
    fn some_channel(&mut self) -> HandleId {
        let env = self.env();
        let ch = self.any(Some(Kind::Channel));
        if ch == env.watch || self.rng.one_in(40) {
            env.supervisor
        } else {
            ch
        }
    }

    pub fn channel_send(&mut self) {
        let ch = self.some_channel();
        let kind = self.rng.next() as u8;
        let len = if self.rng.one_in(8) {
            self.rng.size(MESSAGE_DATA_MAX, self.scratch.len())
        } else {
            self.rng.below(256) as usize
        };
        let mut moved = [HandleId(0); MESSAGE_HANDLES_MAX + 1];
        let count = match self.rng.below(8) {
            0..=3 => 0,
            4..=6 => 1 + self.rng.below(MESSAGE_HANDLES_MAX as u64) as usize,
            _ => MESSAGE_HANDLES_MAX + 1,
        };
        for slot in &mut moved[..count] {
            *slot = self.victim(None);
        }
        let r = k().channel_send(ch, kind, &self.scratch[..len], &moved[..count]);
        self.note(SyscallNo::ChannelSend, &r);
        if r.is_ok() {
            for &id in &moved[..count] {
                self.pool.remove(id);
            }
        }
    }

    pub fn channel_recv(&mut self) {
        let ch = self.some_channel();
        let len = self.rng.size(MESSAGE_DATA_MAX, self.scratch.len());
        let mut handles = [HandleId(0); MESSAGE_HANDLES_MAX + 1];
        let room = self.rng.below(handles.len() as u64 + 1) as usize;
        let r = k().channel_recv(ch, &mut self.scratch[..len], &mut handles[..room]);
        self.note(SyscallNo::ChannelRecv, &r);
        if let Ok(info) = r {
            for &h in &handles[..info.num_handles.min(room)] {
                self.keep(h, Kind::Unknown);
            }
        }
    }

    pub fn poll_create(&mut self) {
        let r = k().poll_create();
        self.note(SyscallNo::PollCreate, &r);
        if let Ok(p) = r {
            self.keep(p, Kind::Poll);
        }
    }

    /// Something to watch: its own handles, or (while it may interfere) any.
    fn watch_target(&mut self) -> HandleId {
        let env = self.env();
        match (self.rng.below(10), env.nic) {
            (0, Some(nic)) => self
                .rng
                .pick(&[env.supervisor, env.watch, nic, env.hypervisor]),
            (0, None) => self.rng.pick(&[env.supervisor, env.watch, env.hypervisor]),
            _ => self.victim(None),
        }
    }

    pub fn poll_add(&mut self) {
        // Its own polls only while other threads run: an entry added to
        // another thread's poll can keep that thread waiting for good (on
        // a channel that never becomes ready).
        let poll = self.victim(Some(Kind::Poll));
        let target = self.watch_target();
        let interests = self.interests();
        let r = k().poll_add(poll, target, interests);
        self.note(SyscallNo::PollAdd, &r);
    }

    pub fn poll_remove(&mut self) {
        let poll = self.victim(Some(Kind::Poll));
        let target = self.any(None);
        let r = k().poll_remove(poll, target);
        self.note(SyscallNo::PollRemove, &r);
    }

    /// Waits only where a wait cannot last: on a number that is not a
    /// poll, or on a fresh poll with a short timer of its own.
    pub fn poll_wait(&mut self) {
        if self.rng.one_in(3) {
            let id = match self.pool.any_live(&mut self.rng) {
                Some((h, kind)) if kind != Kind::Poll && kind != Kind::Unknown => h,
                _ => Pool::invalid(&mut self.rng),
            };
            if self.rng.one_in(2) {
                let r = k().poll_wait(id);
                self.note(SyscallNo::PollWait, &r);
            } else {
                let r = k().poll_wait_recv(id, &mut self.scratch[..16], &mut []);
                self.note(SyscallNo::PollWaitRecv, &r);
            }
            return;
        }
        self.bounded_wait();
    }

    /// `poll_wait_recv` on `poll` into buffers of random sizes (too small
    /// ones included), alone or after a send in the same call (of bytes of
    /// the fuzzer's, or of a random range of the receive buffer, bad ones
    /// included); handles it received are kept.
    fn wait_recv(&mut self, poll: HandleId) {
        let len = self.rng.size(MESSAGE_DATA_MAX, self.scratch.len());
        let mut handles = [HandleId(0); MESSAGE_HANDLES_MAX + 1];
        let room = self.rng.below(handles.len() as u64 + 1) as usize;
        let r = match self.rng.below(3) {
            0 => {
                let r = k().poll_wait_recv(poll, &mut self.scratch[..len], &mut handles[..room]);
                self.note(SyscallNo::PollWaitRecv, &r);
                r
            }
            1 => {
                let ch = self.some_channel();
                let data = [0x5a; 64];
                let sent = &data[..self.rng.below(65) as usize];
                let r = k().channel_send_poll_wait_recv(
                    ch,
                    self.rng.below(256) as u8,
                    sent,
                    &[],
                    poll,
                    &mut self.scratch[..len],
                    &mut handles[..room],
                );
                self.note(SyscallNo::ChannelSendPollWaitRecv, &r);
                r.and_then(|waited| waited)
            }
            _ => {
                let ch = self.some_channel();
                let start = self.rng.size(MESSAGE_DATA_MAX, usize::MAX);
                let end = self.rng.size(MESSAGE_DATA_MAX, usize::MAX);
                let r = k().channel_send_received_poll_wait_recv(
                    ch,
                    self.rng.below(256) as u8,
                    start..end,
                    poll,
                    &mut self.scratch[..len],
                    &mut handles[..room],
                );
                self.note(SyscallNo::ChannelSendReceivedPollWaitRecv, &r);
                r.and_then(|waited| waited)
            }
        };
        if let Ok(event) = r {
            if let Some(Ok(info)) = event.received {
                for &h in &handles[..info.num_handles.min(room)] {
                    self.keep(h, Kind::Unknown);
                }
            }
        }
    }

    /// A handle to a new object made by `create`, with [`WAIT_RIGHTS`]
    /// only (the full-rights original is closed).
    fn private_handle(
        &mut self,
        create: fn() -> Result<HandleId, Error>,
        no: SyscallNo,
    ) -> Option<HandleId> {
        let r = create();
        self.note(no, &r);
        let full = r.ok()?;
        let r = k().handle_duplicate(full, WAIT_RIGHTS);
        self.note(SyscallNo::HandleDuplicate, &r);
        let closed = k().handle_close(full);
        self.note(SyscallNo::HandleClose, &closed);
        r.ok()
    }

    fn bounded_wait(&mut self) {
        let Some(poll) = self.private_handle(|| k().poll_create(), SyscallNo::PollCreate) else {
            return;
        };
        if let Some(timer) = self.private_handle(|| k().timer_create(), SyscallNo::TimerCreate) {
            let r = k().poll_add(poll, timer, Readiness::READABLE);
            self.note(SyscallNo::PollAdd, &r);
            for _ in 0..self.rng.below(4) {
                let target = self
                    .pool
                    .any_live(&mut self.rng)
                    .map_or(HandleId(0), |(h, _)| h);
                let interests = self.interests();
                let r = k().poll_add(poll, target, interests);
                self.note(SyscallNo::PollAdd, &r);
            }
            let after = self.rng.below(WAIT_MAX_NS);
            let set = k().timer_set(timer, after);
            self.note(SyscallNo::TimerSet, &set);
            if set.is_ok() && self.rng.one_in(2) {
                let r = k().poll_wait(poll);
                self.note(SyscallNo::PollWait, &r);
            } else if set.is_ok() {
                self.wait_recv(poll);
            }
            let r = k().handle_close(timer);
            self.note(SyscallNo::HandleClose, &r);
        }
        let r = k().handle_close(poll);
        self.note(SyscallNo::HandleClose, &r);
    }

    pub fn timer_create(&mut self) {
        let r = k().timer_create();
        self.note(SyscallNo::TimerCreate, &r);
        if let Ok(t) = r {
            self.keep(t, Kind::Timer);
        }
    }

    fn delay(&mut self) -> u64 {
        match self.rng.below(8) {
            0 => 0,
            1 => 1,
            2 => self.rng.below(1_000_000),
            3 => self.rng.below(1_000_000_000),
            4 => u64::MAX,
            5 => u64::MAX - self.rng.below(1 << 40),
            6 => 1 << 63,
            _ => self.rng.next(),
        }
    }

    /// Arms a timer; now and then re-arms the same one many times over.
    pub fn timer_set(&mut self) {
        let timer = self.victim(Some(Kind::Timer));
        let times = if self.rng.one_in(10) {
            1 + self.rng.below(200)
        } else {
            1
        };
        for _ in 0..times {
            let after = self.delay();
            let r = k().timer_set(timer, after);
            self.note(SyscallNo::TimerSet, &r);
        }
    }

    /// Starts a short-lived fuzzing thread (at most [`MAX_THREADS`] at once).
    pub fn thread_spawn(&mut self) {
        if THREADS.fetch_add(1, Ordering::AcqRel) >= MAX_THREADS {
            THREADS.fetch_sub(1, Ordering::AcqRel);
            self.thread_yield();
            return;
        }
        let shared = self.shared.clone();
        let seed = self.rng.next();
        let calls = 20 + self.rng.below(300);
        let r = k().thread_spawn(Box::new(move || crate::thread_main(shared, seed, calls)));
        self.note(SyscallNo::ThreadSpawn, &r);
        if r.is_err() {
            // The closure was dropped unrun.
            THREADS.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Another thread waits on a poll whose one entry this thread then
    /// takes away (closes it, or removes it from the poll): the waiter must
    /// get `PollEmpty`, not wait for good. Both handles are this call's
    /// own, in no thread's pool: nothing else touches them.
    pub fn unwatch_under_wait(&mut self) {
        if THREADS.load(Ordering::Acquire) >= MAX_THREADS {
            return self.thread_yield();
        }
        let Some(poll) = self.private_handle(|| k().poll_create(), SyscallNo::PollCreate) else {
            return;
        };
        let r = k().timer_create();
        self.note(SyscallNo::TimerCreate, &r);
        let Ok(timer) = r else {
            let r = k().handle_close(poll);
            return self.note(SyscallNo::HandleClose, &r);
        };
        let r = k().poll_add(poll, timer, Readiness::READABLE);
        self.note(SyscallNo::PollAdd, &r);
        THREADS.fetch_add(1, Ordering::AcqRel);
        let shared = self.shared.clone();
        let r = k().thread_spawn(Box::new(move || crate::wait_main(shared, poll)));
        self.note(SyscallNo::ThreadSpawn, &r);
        if r.is_err() {
            THREADS.fetch_sub(1, Ordering::AcqRel);
        }
        for _ in 0..self.rng.below(4) {
            self.thread_yield();
        }
        let r = if self.rng.one_in(2) {
            let r = k().poll_remove(poll, timer);
            self.note(SyscallNo::PollRemove, &r);
            k().handle_close(timer)
        } else {
            k().handle_close(timer)
        };
        self.note(SyscallNo::HandleClose, &r);
        // The waiter closes the poll once its wait ends.
    }

    pub fn thread_yield(&mut self) {
        k().thread_yield();
        self.note::<()>(SyscallNo::ThreadYield, &Ok(()));
    }

    /// Pins the calling thread to a CPU that may not exist, or frees it.
    pub fn thread_pin(&mut self) {
        let cpu = match self.rng.below(4) {
            0 => None,
            1 => Some(usize::MAX),
            _ => Some(self.rng.below(10) as usize),
        };
        let r = k().thread_pin(cpu);
        self.note(SyscallNo::ThreadPin, &r);
    }

    /// Calls that take no handle.
    pub fn cheap_calls(&mut self) {
        match self.rng.below(5) {
            0 => {
                if self.rng.one_in(200) {
                    let level = self.rng.pick(&[
                        LogLevel::Error,
                        LogLevel::Warn,
                        LogLevel::Info,
                        LogLevel::Debug,
                        LogLevel::Trace,
                    ]);
                    let n = self.rng.next();
                    k().log(level, format_args!("a fuzzed log line ({n:#x})"));
                    self.note::<()>(SyscallNo::Log, &Ok(()));
                }
            }
            1 => {
                let _ = k().time_now();
                self.note::<()>(SyscallNo::TimeNow, &Ok(()));
                let _ = k().time_unix();
                self.note::<()>(SyscallNo::TimeUnix, &Ok(()));
                let _ = k().host_clock();
                self.note::<()>(SyscallNo::HostClock, &Ok(()));
            }
            2 => {
                let _ = k().process_id();
                self.note::<()>(SyscallNo::ProcessId, &Ok(()));
            }
            3 => {
                let leaf = self
                    .rng
                    .pick(&[0, 1, 7, 0xd, 0x4000_0000, 0x8000_0000, 0x8000_000a]);
                let leaf = if self.rng.one_in(3) {
                    self.rng.next() as u32
                } else {
                    leaf
                };
                let _ = k().host_cpuid(leaf, self.rng.next() as u32);
                self.note::<()>(SyscallNo::HostCpuid, &Ok(()));
            }
            _ => self.bootfs_file(),
        }
    }

    fn bootfs_file(&mut self) {
        let mut name = String::new();
        match self.rng.below(4) {
            0 => {}
            1 => name.push_str(
                self.rng
                    .pick(&["linux", "bzImage", "initramfs.cpio", "/", ".."]),
            ),
            _ => {
                for _ in 0..self.rng.size(16, 600) {
                    name.push(char::from(32 + self.rng.below(95) as u8));
                }
            }
        }
        let r = k().bootfs_file(&name);
        self.note(SyscallNo::BootfsFile, &r);
    }
}
