//! Interrupt objects: a device's interrupt line, readable through poll
//! while an interrupt is pending. When the line fires, the kernel masks it
//! and marks the object pending; the driver handles the device (making it
//! lower the line) and acks, which clears pending and unmasks the line.
//! Lines are level-triggered, so nothing is lost between the two.

use alloc::sync::Arc;
use alloc::sync::Weak;
use core::sync::atomic::AtomicBool;
use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

use starina::abi::Error;
use starina::abi::Readiness;

use super::device::DeviceObject;
use super::Listeners;
use super::Pollable;
use crate::arch::ioapic;
use crate::sync::SpinLock;

pub struct Interrupt {
    gsi: u32,
    pending: AtomicBool,
    /// How many times the line fired (for statistics).
    count: AtomicU64,
    listeners: Listeners,
    /// Keeps the device claimed while its interrupt is in use.
    device: Arc<DeviceObject>,
}

const NO_OWNER: Option<Weak<Interrupt>> = None;
/// Which interrupt object owns each GSI.
static OWNERS: SpinLock<[Option<Weak<Interrupt>>; ioapic::MAX_GSI as usize]> =
    SpinLock::new([NO_OWNER; ioapic::MAX_GSI as usize]);

impl Interrupt {
    /// Takes `device`'s interrupt line. One interrupt object per device.
    pub fn new(device: &Arc<DeviceObject>) -> Result<Arc<Interrupt>, Error> {
        let gsi = device.info.gsi.ok_or(Error::NotSupported)?;
        if gsi >= ioapic::MAX_GSI {
            return Err(Error::NotSupported);
        }
        if device.interrupt_taken.swap(true, Ordering::AcqRel) {
            return Err(Error::AlreadyExists);
        }
        let irq = Arc::new(Interrupt {
            gsi,
            pending: AtomicBool::new(false),
            count: AtomicU64::new(0),
            listeners: Listeners::new(),
            device: device.clone(),
        });
        OWNERS.lock()[gsi as usize] = Some(Arc::downgrade(&irq));
        // PCI INTx lines are active-low; virtio-mmio lines active-high.
        let active_low = matches!(device.info.address, starina::abi::DeviceAddress::Pci { .. });
        if !ioapic::route(gsi, active_low) {
            OWNERS.lock()[gsi as usize] = None;
            device.interrupt_taken.store(false, Ordering::Release);
            return Err(Error::NotSupported);
        }
        ioapic::unmask(gsi);
        Ok(irq)
    }

    /// The driver handled the device: clear pending, unmask the line.
    pub fn ack(&self) {
        self.pending.store(false, Ordering::Release);
        ioapic::unmask(self.gsi);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

impl Drop for Interrupt {
    fn drop(&mut self) {
        ioapic::mask(self.gsi);
        let mut owners = OWNERS.lock();
        if owners[self.gsi as usize]
            .as_ref()
            .is_some_and(|w| w.strong_count() == 0)
        {
            owners[self.gsi as usize] = None;
        }
        drop(owners);
        self.device.interrupt_taken.store(false, Ordering::Release);
    }
}

impl Pollable for Interrupt {
    fn readiness(&self) -> Readiness {
        if self.pending.load(Ordering::Acquire) {
            Readiness::READABLE
        } else {
            Readiness::empty()
        }
    }

    fn listeners(&self) -> &Listeners {
        &self.listeners
    }
}

/// The interrupt path for GSI `gsi`: mask the line, mark its owner
/// pending and wake whoever polls it. Returns false if nobody owns it.
pub fn fire(gsi: u32) -> bool {
    ioapic::mask(gsi);
    let owner = OWNERS
        .lock()
        .get(gsi as usize)
        .and_then(|o| o.as_ref())
        .and_then(Weak::upgrade);
    match owner {
        Some(irq) => {
            irq.count.fetch_add(1, Ordering::Relaxed);
            irq.pending.store(true, Ordering::Release);
            irq.listeners.notify();
            true
        }
        None => false,
    }
}
