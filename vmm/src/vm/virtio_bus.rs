//! The VM's virtio-mmio windows: where each device sits, its IRQ, and typed
//! access to the device models through the [`DeviceSlot`] that
//! [`Vm::add_virtio`](super::Vm::add_virtio) returned.

use alloc::boxed::Box;
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::any::Any;
use core::fmt;
use core::marker::PhantomData;

use crate::boot::VirtioMmioDevice;
use crate::memory::GuestMemory;
use crate::repeats::Repeats;
use crate::virtio::mmio::MmioError;
use crate::virtio::mmio::MmioTransport;
use crate::virtio::mmio::WINDOW_SIZE;
use crate::virtio::VirtioDevice;

/// First virtio-mmio window: above RAM, below the 4 GiB boundary, where the
/// boot identity map reaches.
pub const VIRTIO_MMIO_BASE: u64 = 0xd000_0000;
/// ISA IRQs for virtio devices: 5, 6, 7, 9, 10, 11, 12, 14, 15 are free
/// (0 PIT, 1 keyboard, 2 cascade, 3/4 serial, 8 RTC, 13 FPU).
pub const VIRTIO_IRQS: [u8; 9] = [5, 6, 7, 9, 10, 11, 12, 14, 15];
pub const VIRTIO_FIRST_IRQ: u8 = VIRTIO_IRQS[0];

/// Names the virtio device of model `D` that
/// [`Vm::add_virtio`](super::Vm::add_virtio) put in a window. Only the VM
/// makes these, so a slot always names a device of type `D` in the VM that
/// returned it.
pub struct DeviceSlot<D> {
    index: usize,
    model: PhantomData<fn() -> D>,
}

impl<D> DeviceSlot<D> {
    /// Which window (0 is at [`VIRTIO_MMIO_BASE`]).
    pub fn index(self) -> usize {
        self.index
    }
}

impl<D> Clone for DeviceSlot<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for DeviceSlot<D> {}

impl<D> PartialEq for DeviceSlot<D> {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index
    }
}

impl<D> Eq for DeviceSlot<D> {}

impl<D> fmt::Debug for DeviceSlot<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceSlot({})", self.index)
    }
}

/// Why a virtio device could not be added or reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotError {
    /// Every virtio IRQ is taken.
    Full,
    /// No window with this index: the slot came from another VM.
    NoSuchSlot { index: usize },
    /// The window holds another device model: the slot came from another VM.
    OtherModel { index: usize },
}

impl fmt::Display for SlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlotError::Full => write!(f, "all {} virtio IRQs are taken", VIRTIO_IRQS.len()),
            SlotError::NoSuchSlot { index } => {
                write!(f, "no virtio window {index} (a slot of another VM)")
            }
            SlotError::OtherModel { index } => write!(
                f,
                "virtio window {index} holds another device model (a slot of another VM)"
            ),
        }
    }
}

/// A device model the bus can hand back by type.
trait SlotDevice: VirtioDevice + Any + Send {}

impl<T: VirtioDevice + Any + Send> SlotDevice for T {}

/// One virtio-mmio window.
struct Window {
    base: u64,
    irq: u8,
    transport: MmioTransport<Box<dyn SlotDevice>>,
}

impl Window {
    fn announce(&self) -> VirtioMmioDevice {
        VirtioMmioDevice {
            base: self.base,
            size: WINDOW_SIZE,
            irq: self.irq as u32,
        }
    }

    fn contains(&self, gpa: u64) -> bool {
        gpa >= self.base && gpa - self.base < WINDOW_SIZE
    }
}

/// The virtio-mmio windows, in the order the devices were added.
pub(super) struct VirtioBus {
    windows: Vec<Window>,
    /// Unclaimed MMIO pages already logged.
    logged_mmio: BTreeSet<u64>,
    /// Accesses a window refused (wrong width, no such register): a guest
    /// can make one per exit, so only a few are logged.
    refused: Repeats,
    /// Accesses to unclaimed pages beyond the logged ones.
    unclaimed: Repeats,
}

/// Unclaimed MMIO pages logged by address.
const MAX_LOGGED_PAGES: usize = 16;

impl VirtioBus {
    pub(super) fn new() -> Self {
        Self {
            windows: Vec::new(),
            logged_mmio: BTreeSet::new(),
            refused: Repeats::new(),
            unclaimed: Repeats::new(),
        }
    }

    pub(super) fn add<D: VirtioDevice + Any + Send>(
        &mut self,
        device: D,
    ) -> Result<DeviceSlot<D>, SlotError> {
        let index = self.windows.len();
        let irq = *VIRTIO_IRQS.get(index).ok_or(SlotError::Full)?;
        let device: Box<dyn SlotDevice> = Box::new(device);
        self.windows.push(Window {
            base: VIRTIO_MMIO_BASE + index as u64 * WINDOW_SIZE,
            irq,
            transport: MmioTransport::new(device),
        });
        Ok(DeviceSlot {
            index,
            model: PhantomData,
        })
    }

    pub(super) fn announcements(&self) -> Vec<VirtioMmioDevice> {
        self.windows.iter().map(Window::announce).collect()
    }

    fn window<D>(&self, slot: DeviceSlot<D>) -> Result<&Window, SlotError> {
        self.windows
            .get(slot.index)
            .ok_or(SlotError::NoSuchSlot { index: slot.index })
    }

    fn window_mut<D>(&mut self, slot: DeviceSlot<D>) -> Result<&mut Window, SlotError> {
        self.windows
            .get_mut(slot.index)
            .ok_or(SlotError::NoSuchSlot { index: slot.index })
    }

    pub(super) fn announcement<D>(
        &self,
        slot: DeviceSlot<D>,
    ) -> Result<VirtioMmioDevice, SlotError> {
        self.window(slot).map(Window::announce)
    }

    pub(super) fn status<D>(&self, slot: DeviceSlot<D>) -> Result<u32, SlotError> {
        self.window(slot).map(|w| w.transport.status())
    }

    pub(super) fn device<D: Any>(&self, slot: DeviceSlot<D>) -> Result<&D, SlotError> {
        let model: &dyn SlotDevice = &**self.window(slot)?.transport.device();
        let any: &dyn Any = model;
        any.downcast_ref::<D>()
            .ok_or(SlotError::OtherModel { index: slot.index })
    }

    pub(super) fn device_mut<D: Any>(&mut self, slot: DeviceSlot<D>) -> Result<&mut D, SlotError> {
        let model: &mut dyn SlotDevice = &mut **self.window_mut(slot)?.transport.device_mut();
        let any: &mut dyn Any = model;
        any.downcast_mut::<D>()
            .ok_or(SlotError::OtherModel { index: slot.index })
    }

    pub(super) fn poll<D>(
        &mut self,
        slot: DeviceSlot<D>,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), SlotError> {
        self.window_mut(slot)?.transport.poll(mem);
        Ok(())
    }

    pub(super) fn poll_all(&mut self, mem: &mut dyn GuestMemory) {
        for w in &mut self.windows {
            w.transport.poll(mem);
        }
    }

    /// Raises every deferred used-buffer interrupt (the guest halted).
    pub(super) fn raise_deferred(&mut self) {
        for w in &mut self.windows {
            w.transport.raise_deferred();
        }
    }

    /// Each window's IRQ and the level of its line.
    pub(super) fn irq_levels(&self) -> impl Iterator<Item = (u8, bool)> + '_ {
        self.windows
            .iter()
            .map(|w| (w.irq, w.transport.irq_level()))
    }

    fn window_at(&mut self, gpa: u64) -> Option<(&mut Window, u64)> {
        let w = self.windows.iter_mut().find(|w| w.contains(gpa))?;
        let offset = gpa - w.base;
        Some((w, offset))
    }

    /// MMIO read of `data.len()` bytes at `gpa` (outside RAM). Unclaimed
    /// addresses read all-ones; bad accesses to a device read zero.
    pub(super) fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        match self.window_at(gpa) {
            Some((w, offset)) => {
                if let Err(e) = w.transport.read(offset, data) {
                    let base = w.base;
                    data.fill(0);
                    self.note_refused(base, e);
                }
            }
            None => {
                self.note_unknown_mmio(gpa);
                data.fill(0xff);
            }
        }
    }

    /// MMIO write at `gpa` (outside RAM). Unclaimed or bad writes are
    /// dropped (and logged).
    pub(super) fn mmio_write(&mut self, gpa: u64, data: &[u8], mem: &mut dyn GuestMemory) {
        match self.window_at(gpa) {
            Some((w, offset)) => {
                if let Err(e) = w.transport.write(offset, data, mem) {
                    let base = w.base;
                    self.note_refused(base, e);
                }
            }
            None => self.note_unknown_mmio(gpa),
        }
    }

    fn note_refused(&mut self, base: u64, e: MmioError) {
        if let Some(n) = self.refused.note() {
            log::warn!(
                "vmm: virtio at {base:#x}: {e} (refused access {n}; only the 2^k-th is logged)"
            );
        }
    }

    /// Logs an access outside every window: once per page for the first
    /// few pages, then the 2^k-th access to any other.
    fn note_unknown_mmio(&mut self, gpa: u64) {
        let page = gpa & !0xfff;
        if self.logged_mmio.contains(&page) {
            return;
        }
        if self.logged_mmio.len() < MAX_LOGGED_PAGES {
            self.logged_mmio.insert(page);
            log::info!("vmm: access to unclaimed MMIO {gpa:#x}");
        } else if let Some(n) = self.unclaimed.note() {
            log::info!(
                "vmm: {n} accesses to unclaimed MMIO beyond the first {MAX_LOGGED_PAGES} pages (latest {gpa:#x}; only the 2^k-th is logged)"
            );
        }
    }
}
