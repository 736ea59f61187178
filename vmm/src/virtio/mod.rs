//! virtio over MMIO: the transport, split virtqueues and device models.
//!
//! A device model implements [`VirtioDevice`]: identity, features, config
//! space and a `process` step that consumes and fills its queues. The
//! [`mmio::MmioTransport`] owns one device and its queues and implements the
//! virtio-mmio v2 register file the guest sees. Devices never touch guest
//! memory except through the queues' checked accessors.

pub mod blk;
pub mod console;
pub mod fs;
pub mod mmio;
pub mod net;
pub mod queue;

use alloc::boxed::Box;
use core::fmt;

use crate::memory::GuestMemory;
use crate::memory::MemError;
use queue::QueueError;
use queue::Virtqueue;

/// Device IDs (virtio 1.x, section 5).
pub const DEVICE_ID_NET: u32 = 1;
pub const DEVICE_ID_BLOCK: u32 = 2;
pub const DEVICE_ID_CONSOLE: u32 = 3;
pub const DEVICE_ID_VSOCK: u32 = 19;
pub const DEVICE_ID_FS: u32 = 26;

/// Feature bits every device has.
pub const VIRTIO_F_INDIRECT_DESC: u64 = 1 << 28;
/// Mandatory for virtio-mmio version 2: Linux refuses a v2 device without it.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

/// Device status bits.
pub mod status {
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 0x40;
    pub const FAILED: u32 = 0x80;
}

/// Why a device stopped: the guest driver broke the protocol. The transport
/// marks the device DEVICE_NEEDS_RESET; other devices and the VM go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceError {
    Queue {
        queue: u16,
        error: QueueError,
    },
    Memory(MemError),
    /// Device-specific protocol violation.
    Protocol(&'static str),
}

impl From<MemError> for DeviceError {
    fn from(e: MemError) -> Self {
        DeviceError::Memory(e)
    }
}

impl fmt::Display for DeviceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceError::Queue { queue, error } => write!(f, "queue {queue}: {error}"),
            DeviceError::Memory(e) => write!(f, "{e}"),
            DeviceError::Protocol(s) => write!(f, "{s}"),
        }
    }
}

/// Attaches the queue number to a queue error.
pub fn on_queue<T>(queue: u16, r: Result<T, QueueError>) -> Result<T, DeviceError> {
    r.map_err(|error| DeviceError::Queue { queue, error })
}

/// A virtio device model, independent of the transport.
pub trait VirtioDevice {
    fn device_id(&self) -> u32;

    /// Device feature bits. The transport adds [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;

    fn num_queues(&self) -> u16;

    /// Largest size the driver may give queue `index`.
    fn queue_max_size(&self, _index: u16) -> u16 {
        256
    }

    /// Size of the device-specific config space.
    fn config_len(&self) -> usize {
        0
    }

    /// Reads config bytes; the transport has checked that the range lies
    /// within `config_len()`.
    fn read_config(&self, _offset: usize, data: &mut [u8]) {
        data.fill(0);
    }

    /// Writes config bytes (range checked like `read_config`).
    fn write_config(&mut self, _offset: usize, _data: &[u8]) {}

    /// The driver set DRIVER_OK with these negotiated features.
    fn activate(&mut self, _features: u64) {}

    /// Whether buffers returned on queue `index` may wait for their
    /// used-buffer interrupt: for queues whose completions nobody waits on
    /// (virtio-fs's FORGETs), so that they cost the guest no interrupt of
    /// their own. The transport raises such an interrupt with the next
    /// one another queue needs, when the guest halts
    /// ([`mmio::MmioTransport::raise_deferred`]), or after
    /// [`mmio::MAX_DEFERRED`] such returns.
    fn interrupt_may_wait(&self, _index: u16) -> bool {
        false
    }

    /// The driver wrote 0 to Status: drop all state tied to the rings.
    fn reset(&mut self);

    /// Makes progress on the queues: after a notification of queue
    /// `notified`, or with `None` when host-side work may be pending (input
    /// arrived). Only called while the device is live (DRIVER_OK).
    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        notified: Option<u16>,
    ) -> Result<(), DeviceError>;
}

impl<T: VirtioDevice + ?Sized> VirtioDevice for Box<T> {
    fn device_id(&self) -> u32 {
        (**self).device_id()
    }
    fn features(&self) -> u64 {
        (**self).features()
    }
    fn num_queues(&self) -> u16 {
        (**self).num_queues()
    }
    fn queue_max_size(&self, index: u16) -> u16 {
        (**self).queue_max_size(index)
    }
    fn config_len(&self) -> usize {
        (**self).config_len()
    }
    fn read_config(&self, offset: usize, data: &mut [u8]) {
        (**self).read_config(offset, data)
    }
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        (**self).write_config(offset, data)
    }
    fn activate(&mut self, features: u64) {
        (**self).activate(features)
    }
    fn interrupt_may_wait(&self, index: u16) -> bool {
        (**self).interrupt_may_wait(index)
    }
    fn reset(&mut self) {
        (**self).reset()
    }
    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        notified: Option<u16>,
    ) -> Result<(), DeviceError> {
        (**self).process(queues, mem, notified)
    }
}
