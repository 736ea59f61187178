//! What the main thread and the vCPU thread share: byte queues in both
//! directions, the VM's status, and the flags that say who must wake whom.
//!
//! The threads wake each other through a channel pair (one end each, both
//! in a poll): a zero-length `Data` message means "look at the shared
//! state". The `*_kick` flags keep that to one message in flight per
//! direction.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicUsize;
use core::sync::atomic::Ordering;

use starina::channel::Channel;

/// Guest output the main thread has not delivered yet (in `from_guest`
/// and in client backlogs), above which the vCPU thread leaves further
/// output in the virtio-console (the guest then blocks: backpressure).
pub const OUTPUT_HIGH_WATER: usize = 1 << 20;
/// Input for the guest (`to_guest`) above which the main thread stops
/// reading stdin from clients until the guest has taken some.
pub const INPUT_HIGH_WATER: usize = 256 * 1024;
/// Frames waiting in either network queue, above which the side that
/// fills it holds back (the guest's frames stay in its virtio-net ring,
/// the NAT's in smoltcp): backpressure, not loss.
pub const NET_QUEUE_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The vCPU thread is setting up or running the guest.
    Running,
    /// There is no VM and restarting would not help (no hardware
    /// virtualization, boot files missing): requests get an error.
    Unavailable(String),
    /// The guest died (panic, power-off, triple fault, VMM error): the
    /// component ends with a failure code and its restart policy applies.
    Crashed(String),
}

pub struct Inner {
    /// Encoded process-protocol frames for the guest agent.
    pub to_guest: Vec<u8>,
    /// Raw bytes from the guest agent, not yet decoded.
    pub from_guest: Vec<u8>,
    /// Frames the guest sent on its virtio-net, for the NAT.
    pub net_from_guest: Vec<Vec<u8>>,
    /// Frames from the NAT for the guest.
    pub net_to_guest: VecDeque<Vec<u8>>,
    pub status: Status,
}

pub struct Shared {
    pub inner: spin::Mutex<Inner>,
    /// The vCPU thread must look at `inner` (input arrived, or output room
    /// was made). Cleared by the vCPU thread.
    pub vcpu_kick: AtomicBool,
    /// The main thread must look at `inner`. Cleared by the main thread.
    pub main_kick: AtomicBool,
    /// Guest output bytes waiting in the main thread's client backlogs.
    pub client_backlog: AtomicUsize,
    /// The vCPU thread left output in the console because the main thread
    /// was behind; the main thread kicks it once it has caught up.
    pub output_paused: AtomicBool,
    /// The main thread stopped reading stdin because `to_guest` was full;
    /// the vCPU thread kicks it once the guest has taken enough.
    pub input_paused: AtomicBool,
    /// A guest process ended: the vCPU thread logs the VM exits since its
    /// last such report (what a workload cost in exits).
    pub exit_report: AtomicBool,
    /// The NAT left frames for the guest because `net_to_guest` was full;
    /// the vCPU thread kicks it once the guest has taken some.
    pub net_paused: AtomicBool,
    /// The guest's virtio-net driver took checksum offload: the NAT's
    /// frames for it need no checksums.
    pub net_checksum_offload: AtomicBool,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            inner: spin::Mutex::new(Inner {
                to_guest: Vec::new(),
                from_guest: Vec::new(),
                net_from_guest: Vec::new(),
                net_to_guest: VecDeque::new(),
                status: Status::Running,
            }),
            vcpu_kick: AtomicBool::new(false),
            main_kick: AtomicBool::new(false),
            client_backlog: AtomicUsize::new(0),
            output_paused: AtomicBool::new(false),
            input_paused: AtomicBool::new(false),
            exit_report: AtomicBool::new(false),
            net_paused: AtomicBool::new(false),
            net_checksum_offload: AtomicBool::new(false),
        }
    }

    /// Sets the flag and, if it was clear, sends a wake-up on `wake`.
    pub fn kick(flag: &AtomicBool, wake: &Channel) {
        if !flag.swap(true, Ordering::AcqRel) {
            // A full queue already holds a wake-up; a closed peer means the
            // other thread is gone. Neither needs more.
            let _ = wake.send_data(&[]);
        }
    }

    /// Records why the VM stopped (the first reason wins).
    pub fn stop(&self, status: Status) {
        let mut inner = self.inner.lock();
        if inner.status == Status::Running {
            inner.status = status;
        }
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}
