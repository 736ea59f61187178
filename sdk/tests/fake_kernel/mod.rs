//! A kernel for host tests of the SDK: channels, polls and timers in plain
//! memory, behind the same `KernelApi` the real kernel implements. A wait
//! that would block returns `PollEmpty` instead, so a main loop under test
//! runs until nothing is ready and then returns.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::Once;

use starina::abi::ComponentStatus;
use starina::abi::DeviceInfo;
use starina::abi::Error;
use starina::abi::HandleId;
use starina::abi::LogLevel;
use starina::abi::MemoryStats;
use starina::abi::Readiness;
use starina::abi::RecvInfo;
use starina::abi::Rights;
use starina::abi::CHANNEL_QUEUE_MAX;
use starina::syscall::KernelApi;

type Queued = (u8, Vec<u8>, Vec<HandleId>);

enum Object {
    Channel {
        peer: u32,
        /// Messages for this end.
        inbox: VecDeque<Queued>,
    },
    Poll {
        watched: Vec<(HandleId, Readiness)>,
        cursor: usize,
    },
    Timer {
        fired: bool,
    },
}

#[derive(Default)]
struct State {
    next: u32,
    objects: HashMap<u32, Object>,
}

impl State {
    fn insert(&mut self, object: Object) -> u32 {
        self.next += 1;
        self.objects.insert(self.next, object);
        self.next
    }

    fn readiness(&self, id: HandleId) -> Readiness {
        match self.objects.get(&id.0) {
            Some(Object::Channel { peer, inbox }) => {
                let mut r = Readiness::empty();
                if !inbox.is_empty() {
                    r |= Readiness::READABLE;
                }
                match self.objects.get(peer) {
                    Some(Object::Channel { inbox: theirs, .. }) => {
                        if theirs.len() < CHANNEL_QUEUE_MAX {
                            r |= Readiness::WRITABLE;
                        }
                    }
                    _ => r |= Readiness::PEER_CLOSED,
                }
                r
            }
            Some(Object::Timer { fired: true }) => Readiness::READABLE,
            _ => Readiness::empty(),
        }
    }
}

pub struct FakeKernel {
    state: Mutex<State>,
}

static INSTALL: Once = Once::new();

/// Registers the fake as the SDK's kernel (once per test binary).
pub fn install() {
    INSTALL.call_once(|| {
        let fake: &'static FakeKernel = Box::leak(Box::new(FakeKernel {
            state: Mutex::new(State::default()),
        }));
        starina::syscall::register(fake);
    });
}

fn unsupported<T>() -> Result<T, Error> {
    Err(Error::NotSupported)
}

impl KernelApi for FakeKernel {
    fn log(&self, level: LogLevel, args: core::fmt::Arguments<'_>) {
        eprintln!("[fake kernel] {level:?}: {args}");
    }

    fn time_now(&self) -> u64 {
        0
    }

    fn handle_close(&self, handle: HandleId) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        st.objects
            .remove(&handle.0)
            .map(drop)
            .ok_or(Error::InvalidHandle)
    }

    fn handle_duplicate(&self, _: HandleId, _: Rights) -> Result<HandleId, Error> {
        unsupported()
    }

    fn channel_create(&self) -> Result<(HandleId, HandleId), Error> {
        let mut st = self.state.lock().unwrap();
        let a = st.next + 1;
        let b = st.next + 2;
        st.insert(Object::Channel {
            peer: b,
            inbox: VecDeque::new(),
        });
        st.insert(Object::Channel {
            peer: a,
            inbox: VecDeque::new(),
        });
        Ok((HandleId(a), HandleId(b)))
    }

    fn channel_send(
        &self,
        ch: HandleId,
        kind: u8,
        data: &[u8],
        handles: &[HandleId],
    ) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        let peer = match st.objects.get(&ch.0) {
            Some(Object::Channel { peer, .. }) => *peer,
            Some(_) => return Err(Error::WrongObjectType),
            None => return Err(Error::InvalidHandle),
        };
        match st.objects.get_mut(&peer) {
            Some(Object::Channel { inbox, .. }) if inbox.len() >= CHANNEL_QUEUE_MAX => {
                Err(Error::QueueFull)
            }
            Some(Object::Channel { inbox, .. }) => {
                inbox.push_back((kind, data.to_vec(), handles.to_vec()));
                Ok(())
            }
            _ => Err(Error::PeerClosed),
        }
    }

    fn channel_recv(
        &self,
        ch: HandleId,
        data: &mut [u8],
        handles: &mut [HandleId],
    ) -> Result<RecvInfo, Error> {
        let mut st = self.state.lock().unwrap();
        let peer_alive = match st.objects.get(&ch.0) {
            Some(Object::Channel { peer, .. }) => st.objects.contains_key(peer),
            Some(_) => return Err(Error::WrongObjectType),
            None => return Err(Error::InvalidHandle),
        };
        let Some(Object::Channel { inbox, .. }) = st.objects.get_mut(&ch.0) else {
            unreachable!("checked above");
        };
        let Some((kind, body, moved)) = inbox.pop_front() else {
            return Err(if peer_alive {
                Error::WouldBlock
            } else {
                Error::PeerClosed
            });
        };
        data[..body.len()].copy_from_slice(&body);
        handles[..moved.len()].copy_from_slice(&moved);
        Ok(RecvInfo {
            kind,
            data_len: body.len(),
            num_handles: moved.len(),
        })
    }

    fn poll_create(&self) -> Result<HandleId, Error> {
        let mut st = self.state.lock().unwrap();
        Ok(HandleId(st.insert(Object::Poll {
            watched: Vec::new(),
            cursor: 0,
        })))
    }

    fn poll_add(
        &self,
        poll: HandleId,
        target: HandleId,
        interests: Readiness,
    ) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        match st.objects.get_mut(&poll.0) {
            Some(Object::Poll { watched, .. }) => {
                if watched.iter().any(|(id, _)| *id == target) {
                    return Err(Error::AlreadyExists);
                }
                watched.push((target, interests));
                Ok(())
            }
            _ => Err(Error::InvalidHandle),
        }
    }

    fn poll_remove(&self, poll: HandleId, target: HandleId) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        match st.objects.get_mut(&poll.0) {
            Some(Object::Poll { watched, .. }) => {
                let before = watched.len();
                watched.retain(|(id, _)| *id != target);
                if watched.len() == before {
                    Err(Error::NotFound)
                } else {
                    Ok(())
                }
            }
            _ => Err(Error::InvalidHandle),
        }
    }

    /// The next ready entry, round robin; `PollEmpty` when nothing is ready
    /// (where the real kernel would block).
    fn poll_wait(&self, poll: HandleId) -> Result<(HandleId, Readiness), Error> {
        let mut st = self.state.lock().unwrap();
        let Some(Object::Poll { watched, cursor }) = st.objects.get(&poll.0) else {
            return Err(Error::InvalidHandle);
        };
        let n = watched.len();
        let found = (0..n)
            .map(|i| watched[(cursor + i) % n])
            .enumerate()
            .find_map(|(i, (id, interests))| {
                let ready = st.readiness(id) & interests;
                (!ready.is_empty()).then_some((i, id, ready))
            });
        let Some((i, id, ready)) = found else {
            return Err(Error::PollEmpty);
        };
        if let Some(Object::Poll { cursor, .. }) = st.objects.get_mut(&poll.0) {
            *cursor = (*cursor + i + 1) % n;
        }
        if let Some(Object::Timer { fired }) = st.objects.get_mut(&id.0) {
            *fired = false; // reading a timer's readiness disarms it
        }
        Ok((id, ready))
    }

    fn timer_create(&self) -> Result<HandleId, Error> {
        let mut st = self.state.lock().unwrap();
        Ok(HandleId(st.insert(Object::Timer { fired: false })))
    }

    /// Time passes at once: the timer is ready as soon as it is set.
    fn timer_set(&self, timer: HandleId, _after_ns: u64) -> Result<(), Error> {
        let mut st = self.state.lock().unwrap();
        match st.objects.get_mut(&timer.0) {
            Some(Object::Timer { fired }) => {
                *fired = true;
                Ok(())
            }
            _ => Err(Error::InvalidHandle),
        }
    }

    fn thread_spawn(&self, _: starina::syscall::ThreadEntry, _: usize) -> Result<(), Error> {
        unsupported()
    }

    fn thread_yield(&self) {}

    fn process_exit(&self, code: i32) -> ! {
        panic!("process_exit({code})")
    }

    fn vm_create(&self, _: HandleId, _: u64) -> Result<(HandleId, HandleId), Error> {
        unsupported()
    }

    fn guest_ram_read(&self, _: HandleId, _: u64, _: &mut [u8]) -> Result<(), Error> {
        unsupported()
    }

    fn guest_ram_write(&self, _: HandleId, _: u64, _: &[u8]) -> Result<(), Error> {
        unsupported()
    }

    fn vcpu_run(
        &self,
        _: HandleId,
        _: &mut starina_vmm::exit::VcpuState,
        _: starina::hypervisor::Injection,
    ) -> Result<starina_vmm::exit::VmExit, Error> {
        unsupported()
    }

    fn vcpu_control(&self, _: HandleId, _: starina::hypervisor::VcpuControl) -> Result<(), Error> {
        unsupported()
    }

    fn host_cpuid(&self, _: u32, _: u32) -> [u32; 4] {
        [0; 4]
    }

    fn bootfs_file(&self, _: &str) -> Result<&'static [u8], Error> {
        Err(Error::NotFound)
    }

    fn system_shutdown(&self, _: HandleId, _: u8) -> Result<(), Error> {
        unsupported()
    }

    fn device_info(&self, _: HandleId) -> Result<DeviceInfo, Error> {
        unsupported()
    }

    fn device_pci_config_read(&self, _: HandleId, _: u16) -> Result<u32, Error> {
        unsupported()
    }

    fn device_pci_config_write(&self, _: HandleId, _: u16, _: u32) -> Result<(), Error> {
        unsupported()
    }

    fn device_mmio_map(&self, _: u64, _: usize) -> Result<usize, Error> {
        unsupported()
    }

    fn interrupt_create(&self, _: HandleId) -> Result<HandleId, Error> {
        unsupported()
    }

    fn interrupt_ack(&self, _: HandleId) -> Result<(), Error> {
        unsupported()
    }

    fn dma_alloc(&self, _: usize) -> Result<(u64, usize), Error> {
        unsupported()
    }

    fn dma_free(&self, _: u64, _: usize) -> Result<(), Error> {
        unsupported()
    }

    fn dma_translate(&self, _: usize, _: usize) -> Result<u64, Error> {
        unsupported()
    }

    fn system_component_status(&self, _: HandleId, _: usize) -> Result<ComponentStatus, Error> {
        unsupported()
    }

    fn system_log_read(&self, _: HandleId, _: u64, _: &mut [u8]) -> Result<(u64, usize), Error> {
        unsupported()
    }

    fn system_memory_stats(&self, _: HandleId) -> Result<MemoryStats, Error> {
        unsupported()
    }
}
