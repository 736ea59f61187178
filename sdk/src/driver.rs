//! The driver SDK: devices, interrupts, MMIO and DMA memory.
//!
//! A driver's spec names the devices it drives (`[devices]`); startup hands
//! it one [`Device`] per entry. From a device the driver gets an
//! [`Interrupt`] (readable through poll when the device interrupts) and,
//! with the `virtio` feature, a ready `virtio-drivers` transport
//! ([`virtio::transport`]) and the [`virtio::StarinaHal`] that gives the
//! `virtio-drivers` crate DMA memory and MMIO mappings.
//!
//! This module is the one place in the SDK with `unsafe` code: drivers
//! themselves stay `#![forbid(unsafe_code)]`.

use crate::abi::DeviceAddress;
use crate::abi::DeviceInfo;
use crate::abi::Error;
use crate::abi::HandleId;
use crate::handle::OwnedHandle;
use crate::syscall::kernel;

/// A device this component drives (from its spec's `[devices]`).
#[derive(Debug)]
pub struct Device(OwnedHandle);

impl Device {
    pub fn from_handle(handle: OwnedHandle) -> Device {
        Device(handle)
    }

    pub fn id(&self) -> HandleId {
        self.0.id()
    }

    /// Where the device sits and which interrupt line it raises.
    pub fn info(&self) -> Result<DeviceInfo, Error> {
        kernel().device_info(self.0.id())
    }

    /// The device's interrupt: becomes readable (through poll) when the
    /// device interrupts. Handle the device, then [`Interrupt::ack`].
    pub fn interrupt(&self) -> Result<Interrupt, Error> {
        kernel()
            .interrupt_create(self.0.id())
            .map(|h| Interrupt(OwnedHandle::from_raw(h)))
    }

    /// Reads a 32-bit PCI configuration register (PCI devices only).
    pub fn pci_config_read(&self, offset: u16) -> Result<u32, Error> {
        kernel().device_pci_config_read(self.0.id(), offset)
    }

    /// Writes a 32-bit PCI configuration register (PCI devices only).
    pub fn pci_config_write(&self, offset: u16, value: u32) -> Result<(), Error> {
        kernel().device_pci_config_write(self.0.id(), offset, value)
    }

    /// A short human-readable address: `pci 00:02.0 1af4:1000` or
    /// `virtio-mmio 0xfeb02e00 (device 1)`.
    pub fn describe(&self) -> alloc::string::String {
        match self.info() {
            Ok(info) => describe_address(&info.address),
            Err(e) => alloc::format!("(device info unavailable: {e})"),
        }
    }
}

pub fn describe_address(address: &DeviceAddress) -> alloc::string::String {
    match address {
        DeviceAddress::Pci {
            bus,
            device,
            function,
            vendor_id,
            device_id,
        } => {
            alloc::format!("pci {bus:02x}:{device:02x}.{function} {vendor_id:04x}:{device_id:04x}")
        }
        DeviceAddress::VirtioMmio {
            base, device_id, ..
        } => alloc::format!("virtio-mmio {base:#x} (device {device_id})"),
    }
}

/// A device's interrupt line. Readable through poll while an interrupt is
/// pending; the line stays masked until [`Interrupt::ack`].
#[derive(Debug)]
pub struct Interrupt(OwnedHandle);

impl Interrupt {
    pub fn id(&self) -> HandleId {
        self.0.id()
    }

    /// Clears the pending state and unmasks the line. Call it after making
    /// the device lower its interrupt (e.g. reading its status register),
    /// or the interrupt fires again at once.
    pub fn ack(&self) -> Result<(), Error> {
        kernel().interrupt_ack(self.0.id())
    }
}

/// DMA memory: physically contiguous, zeroed pages, freed on drop.
pub struct DmaBuffer {
    paddr: u64,
    vaddr: usize,
    pages: usize,
}

impl DmaBuffer {
    pub fn new(pages: usize) -> Result<DmaBuffer, Error> {
        let (paddr, vaddr) = kernel().dma_alloc(pages)?;
        Ok(DmaBuffer {
            paddr,
            vaddr,
            pages,
        })
    }

    /// The address the device uses.
    pub fn paddr(&self) -> u64 {
        self.paddr
    }

    pub fn len(&self) -> usize {
        self.pages * PAGE_SIZE
    }

    pub fn is_empty(&self) -> bool {
        self.pages == 0
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the kernel mapped `pages` pages at `vaddr` for this
        // process alone and keeps them until `dma_free` (in drop).
        // Device writes into them are plain memory writes (coherent DMA).
        unsafe { core::slice::from_raw_parts(self.vaddr as *const u8, self.len()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes this the only view.
        unsafe { core::slice::from_raw_parts_mut(self.vaddr as *mut u8, self.len()) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        let _ = kernel().dma_free(self.paddr, self.pages);
    }
}

pub const PAGE_SIZE: usize = 4096;

#[cfg(feature = "virtio")]
pub mod virtio {
    //! Glue for the `virtio-drivers` crate: its [`Hal`] on Starina's DMA
    //! and MMIO calls, and its transports on Starina devices.

    use alloc::collections::BTreeMap;
    use core::ptr::NonNull;

    use virtio_drivers::transport::mmio::MmioTransport;
    use virtio_drivers::transport::mmio::VirtIOHeader;
    use virtio_drivers::transport::pci::bus::Command;
    use virtio_drivers::transport::pci::bus::ConfigurationAccess;
    use virtio_drivers::transport::pci::bus::DeviceFunction;
    use virtio_drivers::transport::pci::bus::PciRoot;
    use virtio_drivers::transport::pci::PciTransport;
    use virtio_drivers::transport::SomeTransport;
    use virtio_drivers::BufferDirection;
    use virtio_drivers::Hal;
    use virtio_drivers::PhysAddr;

    use super::Device;
    use super::PAGE_SIZE;
    use crate::abi::DeviceAddress;
    use crate::abi::Error;
    use crate::abi::HandleId;
    use crate::syscall::kernel;

    /// `virtio-drivers`' hardware abstraction on Starina: DMA pages from
    /// the kernel, MMIO through the kernel's device mappings. Buffers the
    /// driver shares are used in place when physically contiguous (heap
    /// memory), and bounced through DMA pages otherwise (stack memory).
    pub struct StarinaHal;

    /// Live bounce buffers: physical address -> virtual address. Physical
    /// addresses are unique system-wide, so one map serves every driver.
    static BOUNCES: spin::Mutex<BTreeMap<u64, usize>> = spin::Mutex::new(BTreeMap::new());

    // SAFETY: `dma_alloc` returns zeroed, physically contiguous pages that
    // stay mapped and owned by this process until `dma_dealloc`;
    // `mmio_phys_to_virt` returns the kernel's mapping of device memory the
    // process holds; `share` returns an address the device can use for the
    // whole buffer until `unshare` (the buffer itself, or a bounce copy).
    unsafe impl Hal for StarinaHal {
        fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
            match kernel().dma_alloc(pages) {
                Ok((paddr, vaddr)) => match NonNull::new(vaddr as *mut u8) {
                    Some(ptr) => (paddr, ptr),
                    None => (0, NonNull::dangling()),
                },
                Err(e) => {
                    log::warn!("DMA allocation of {pages} pages failed: {e}");
                    // `virtio-drivers` reads paddr 0 as failure.
                    (0, NonNull::dangling())
                }
            }
        }

        unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
            match kernel().dma_free(paddr, pages) {
                Ok(()) => 0,
                Err(_) => -1,
            }
        }

        unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
            match kernel().device_mmio_map(paddr, size) {
                Ok(vaddr) => match NonNull::new(vaddr as *mut u8) {
                    Some(ptr) => ptr,
                    None => panic!("MMIO {paddr:#x}: mapped at address 0"),
                },
                // The transport asks only for regions of the device we
                // hold (validated when it was opened); anything else is a
                // driver bug.
                Err(e) => panic!("MMIO {paddr:#x} (+{size:#x}) cannot be mapped: {e}"),
            }
        }

        unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
            let vaddr = buffer.as_ptr() as *mut u8 as usize;
            let len = buffer.len();
            if let Ok(paddr) = kernel().dma_translate(vaddr, len.max(1)) {
                return paddr;
            }
            // Not contiguous: bounce through DMA pages.
            let pages = len.div_ceil(PAGE_SIZE).max(1);
            let Ok((paddr, bounce)) = kernel().dma_alloc(pages) else {
                // `virtio-drivers` offers no way to fail here.
                panic!("out of DMA memory for a {len}-byte bounce buffer");
            };
            BOUNCES.lock().insert(paddr, bounce);
            if direction != BufferDirection::DeviceToDriver {
                // SAFETY: `buffer` is valid for reads of `len` bytes (the
                // caller's contract) and `bounce` holds `pages` pages we
                // just allocated; they do not overlap.
                unsafe {
                    core::ptr::copy_nonoverlapping(vaddr as *const u8, bounce as *mut u8, len)
                };
            }
            paddr
        }

        unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
            let vaddr = buffer.as_ptr() as *mut u8 as usize;
            let len = buffer.len();
            if kernel().dma_translate(vaddr, len.max(1)) == Ok(paddr) {
                return; // Shared in place.
            }
            let pages = len.div_ceil(PAGE_SIZE).max(1);
            let bounce = BOUNCES.lock().remove(&paddr);
            if direction != BufferDirection::DriverToDevice {
                match bounce {
                    Some(bounce) => {
                        // SAFETY: `bounce` is the bounce buffer `share`
                        // allocated for this buffer (same length); `buffer`
                        // is valid for writes (the caller's contract).
                        unsafe {
                            core::ptr::copy_nonoverlapping(
                                bounce as *const u8,
                                vaddr as *mut u8,
                                len,
                            )
                        };
                    }
                    None => log::error!("unshare: no bounce buffer at {paddr:#x}"),
                }
            }
            let _ = kernel().dma_free(paddr, pages);
        }
    }

    /// What opening a virtio transport can fail with.
    #[derive(Debug)]
    pub enum TransportError {
        /// A system call failed.
        Kernel(Error),
        /// The device is not a virtio device `virtio-drivers` accepts.
        Pci(virtio_drivers::transport::pci::VirtioPciError),
        Mmio(virtio_drivers::transport::mmio::MmioError),
    }

    impl core::fmt::Display for TransportError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            match self {
                TransportError::Kernel(e) => write!(f, "{e}"),
                TransportError::Pci(e) => write!(f, "virtio-pci: {e}"),
                TransportError::Mmio(e) => write!(f, "virtio-mmio: {e}"),
            }
        }
    }

    impl From<Error> for TransportError {
        fn from(e: Error) -> Self {
            TransportError::Kernel(e)
        }
    }

    /// PCI configuration access to one device, through the kernel (which
    /// checks that the function is the device's).
    struct DeviceConfig {
        device: HandleId,
    }

    impl ConfigurationAccess for DeviceConfig {
        fn read_word(&self, _df: DeviceFunction, register_offset: u8) -> u32 {
            kernel()
                .device_pci_config_read(self.device, register_offset as u16)
                .unwrap_or(u32::MAX)
        }

        fn write_word(&mut self, _df: DeviceFunction, register_offset: u8, data: u32) {
            if let Err(e) =
                kernel().device_pci_config_write(self.device, register_offset as u16, data)
            {
                log::warn!("PCI config write at {register_offset:#x} refused: {e}");
            }
        }

        unsafe fn unsafe_clone(&self) -> Self {
            DeviceConfig {
                device: self.device,
            }
        }
    }

    /// Opens the virtio transport of `device` (PCI or MMIO, whichever it
    /// is), enabling its memory decoding and bus mastering on PCI.
    pub fn transport(device: &Device) -> Result<SomeTransport<'static>, TransportError> {
        match device.info()?.address {
            DeviceAddress::Pci {
                bus,
                device: dev,
                function,
                ..
            } => {
                let df = DeviceFunction {
                    bus,
                    device: dev,
                    function,
                };
                let mut root = PciRoot::new(DeviceConfig {
                    device: device.id(),
                });
                let (_, command) = root.get_status_command(df);
                root.set_command(df, command | Command::MEMORY_SPACE | Command::BUS_MASTER);
                let pci = PciTransport::new::<StarinaHal, _>(&mut root, df)
                    .map_err(TransportError::Pci)?;
                Ok(SomeTransport::Pci(pci))
            }
            DeviceAddress::VirtioMmio { base, size, .. } => {
                let size = size as usize;
                let vaddr = kernel().device_mmio_map(base, size)?;
                let header =
                    NonNull::new(vaddr as *mut VirtIOHeader).ok_or(Error::InvalidArgument)?;
                // SAFETY: the kernel mapped the device's whole register
                // window (`size` bytes, header and config space) for this
                // process, for as long as it holds the device (the rest of
                // its life: device handles cannot be transferred).
                let mmio =
                    unsafe { MmioTransport::new(header, size) }.map_err(TransportError::Mmio)?;
                Ok(SomeTransport::Mmio(mmio))
            }
        }
    }
}
