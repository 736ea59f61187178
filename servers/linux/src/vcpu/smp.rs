//! What the vCPU threads share: the VM (devices, local APICs, guest
//! memory) behind one lock, each vCPU's handle for kicks, and each
//! thread's wake-up channel.
//!
//! An interrupt message for another vCPU (an IPI, a device interrupt the
//! I/O APIC routes there, its timer) is recorded in the VM under the lock;
//! the thread that caused it then kicks the target: `VcpuControl::Kick`
//! gets it out of guest mode at once, a wake-up message out of its sleep
//! (a halted vCPU). Both are idempotent, so a flood costs at most one
//! message in the target's queue.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::Ordering;

use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::hypervisor::GuestRam;
use starina::hypervisor::Vcpu;
use starina::hypervisor::VcpuControl;
use starina::Error;
use starina_vmm::vm::Vm;

use crate::shared::Shared;

/// The VM and its memory, used under [`Smp::core`]'s lock.
pub struct Core {
    pub vm: Vm,
    pub ram: GuestRam,
}

/// One vCPU thread's wake-up: the flag says a message is on its way.
struct Wake {
    pending: AtomicBool,
    send: Channel,
}

/// Everything the vCPU threads share.
pub struct Smp {
    pub core: spin::Mutex<Core>,
    /// Each vCPU, once its thread made it (for kicks).
    vcpus: spin::Mutex<Vec<Option<Arc<Vcpu>>>>,
    wakes: Vec<Wake>,
}

impl Smp {
    /// The shared state of a VM with `count` vCPUs, and each thread's
    /// end of its wake-up channel (index = vCPU).
    pub fn new(core: Core, count: usize) -> Result<(Arc<Smp>, Vec<Channel>), Error> {
        let mut wakes = Vec::with_capacity(count);
        let mut receivers = Vec::with_capacity(count);
        for _ in 0..count {
            let (send, recv) = Channel::create()?;
            wakes.push(Wake {
                pending: AtomicBool::new(false),
                send,
            });
            receivers.push(recv);
        }
        let smp = Smp {
            core: spin::Mutex::new(core),
            vcpus: spin::Mutex::new((0..count).map(|_| None).collect()),
            wakes,
        };
        Ok((Arc::new(smp), receivers))
    }

    pub fn count(&self) -> usize {
        self.wakes.len()
    }

    /// Records vCPU `index`'s handle, for kicks.
    pub fn set_vcpu(&self, index: usize, vcpu: Arc<Vcpu>) {
        if let Some(slot) = self.vcpus.lock().get_mut(index) {
            *slot = Some(vcpu);
        }
    }

    /// Gets vCPU `index` out of guest mode and out of its sleep.
    pub fn kick(&self, index: usize) {
        let vcpu = self.vcpus.lock().get(index).cloned().flatten();
        if let Some(vcpu) = vcpu {
            let _ = vcpu.control(VcpuControl::Kick);
        }
        if let Some(wake) = self.wakes.get(index) {
            Shared::kick(&wake.pending, &wake.send);
        }
    }

    /// Kicks every vCPU but `me` that an interrupt message reached since
    /// the last call.
    pub fn kick_reached(&self, me: usize) {
        if self.count() == 1 {
            // No one else to kick (the VM's own record of it stays unread).
            return;
        }
        let reached = self.core.lock().vm.take_kicks();
        for cpu in reached.iter().filter(|&c| c != me) {
            self.kick(cpu);
        }
    }

    /// Kicks every vCPU but `me` (the guest stopped).
    pub fn kick_all(&self, me: usize) {
        for cpu in (0..self.count()).filter(|&c| c != me) {
            self.kick(cpu);
        }
    }

    /// Called by vCPU `index`'s thread before it checks for work and
    /// sleeps: clears its wake-up and drains the messages, so a kick from
    /// now on wakes the sleep.
    pub fn clear_wake(&self, index: usize, recv: &Channel, buf: &mut MessageBuffer) {
        if let Some(wake) = self.wakes.get(index) {
            wake.pending.store(false, Ordering::Release);
        }
        while recv.try_recv(buf).is_ok() {}
    }
}
