//! The driver SDK: devices, interrupts, MMIO and DMA memory.
//!
//! A driver's spec names the devices it drives (`[devices]`); startup hands
//! it one [`Device`] per entry. From a device the driver gets an
//! [`Interrupt`] (readable through poll when the device interrupts) and,
//! with the `virtio` feature, a ready `virtio-drivers` transport
//! ([`virtio::transport`]) and the [`virtio::StarinaHal`] that gives the
//! `virtio-drivers` crate DMA memory and MMIO mappings. A UART's driver
//! gets a 16550 on the device's I/O ports ([`uart::Uart`]).
//!
//! This module is the one place in the SDK with `unsafe` code: drivers
//! themselves stay `#![forbid(unsafe_code)]`.
//!
//! What safe code cannot do here: free DMA memory it does not own (a
//! [`DmaBuffer`] owns its DMA handle; only its drop frees it, and the kernel
//! refuses to close a DMA handle any other way), or translate or map
//! anything without the device's handle ([`Device::dma_address`] takes a
//! buffer the caller borrows; [`Device::map_mmio`] only the device's own
//! regions). What the kernel cannot guarantee without an IOMMU: a device
//! reaches whatever physical address its driver programs into it, so a
//! driver must stop the device using a buffer before dropping it. When a
//! process ends, the kernel quiesces its devices (bus mastering off, or a
//! virtio-mmio reset) before it frees its DMA memory.

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

    /// Maps `len` bytes of this device's memory at physical `paddr` (inside
    /// one of its regions: a BAR or its MMIO window) and returns the virtual
    /// address; reaching it takes `unsafe` code (a transport).
    pub fn map_mmio(&self, paddr: u64, len: usize) -> Result<usize, Error> {
        kernel().device_mmio_map(self.0.id(), paddr, len)
    }

    /// Reads `width` bytes (1, 2 or 4) from its I/O port `offset` (devices
    /// with I/O ports only: a UART).
    pub fn io_read(&self, offset: u16, width: u8) -> Result<u32, Error> {
        kernel().device_io_read(self.0.id(), offset, width)
    }

    /// Writes the low `width` bytes of `value` to its I/O port `offset`.
    pub fn io_write(&self, offset: u16, width: u8, value: u32) -> Result<(), Error> {
        kernel().device_io_write(self.0.id(), offset, width, value)
    }

    /// The address this device uses for `buf`, if `buf` is physically
    /// contiguous (heap memory is; thread stacks are not: `NotSupported`).
    /// The device must stop using it before `buf` goes away.
    pub fn dma_address(&self, buf: &[u8]) -> Result<u64, Error> {
        kernel().dma_translate(self.0.id(), buf.as_ptr() as usize, buf.len())
    }

    /// A short human-readable address: `pci 00:02.0 1af4:1000`,
    /// `virtio-mmio 0xfeb02e00 (device 1)` or `uart 0x2f8`.
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
        DeviceAddress::Uart { io_base } => alloc::format!("uart {io_base:#x}"),
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

/// DMA memory: physically contiguous, zeroed pages for one device, owned
/// by a DMA handle (not transferable, not duplicable). Dropping the buffer
/// frees the pages: nothing else can, so the slices it hands out stay
/// valid while it lives.
#[derive(Debug)]
pub struct DmaBuffer {
    handle: HandleId,
    paddr: u64,
    vaddr: usize,
    pages: usize,
}

impl DmaBuffer {
    /// `pages` zeroed pages for `device`.
    pub fn new(device: &Device, pages: usize) -> Result<DmaBuffer, Error> {
        DmaBuffer::for_device(device.id(), pages)
    }

    /// Like [`DmaBuffer::new`], for the virtio HAL (which knows the device
    /// by handle number only).
    #[cfg_attr(not(feature = "virtio"), allow(dead_code))]
    pub(crate) fn for_device(device: HandleId, pages: usize) -> Result<DmaBuffer, Error> {
        let dma = kernel().dma_alloc(device, pages)?;
        Ok(DmaBuffer {
            handle: dma.handle,
            paddr: dma.paddr,
            vaddr: dma.vaddr,
            pages,
        })
    }

    /// Where this process reaches the pages.
    #[cfg_attr(not(feature = "virtio"), allow(dead_code))]
    pub(crate) fn vaddr(&self) -> usize {
        self.vaddr
    }

    pub fn id(&self) -> HandleId {
        self.handle
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
        // SAFETY: the kernel mapped `pages` pages at `vaddr` and keeps them
        // until this buffer's DMA handle is freed, which only `drop` does
        // (`handle_close` refuses DMA handles). Device writes into them are
        // plain memory writes (coherent DMA).
        unsafe { core::slice::from_raw_parts(self.vaddr as *const u8, self.len()) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as for `as_slice`; `&mut self` makes this the only view.
        unsafe { core::slice::from_raw_parts_mut(self.vaddr as *mut u8, self.len()) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        // Cannot fail: this buffer owns the handle.
        let _ = kernel().dma_free(self.handle);
    }
}

pub const PAGE_SIZE: usize = 4096;

pub mod uart;

#[cfg(feature = "virtio")]
pub mod virtio {
    //! Glue for the `virtio-drivers` crate: its [`Hal`] on Starina's DMA
    //! and MMIO calls, and its transports on Starina devices.

    pub mod blk;
    pub mod net;

    use alloc::collections::BTreeMap;
    use core::ptr::NonNull;
    use core::sync::atomic::AtomicUsize;
    use core::sync::atomic::Ordering;

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
    use super::DmaBuffer;
    use super::PAGE_SIZE;
    use crate::abi::DeviceAddress;
    use crate::abi::Error;
    use crate::abi::HandleId;
    use crate::syscall::kernel;

    /// `virtio-drivers`' hardware abstraction on Starina: DMA pages from
    /// the kernel, MMIO through the device mappings the kernel makes (in
    /// the kernel, or in a user-mode driver's own address space). Buffers
    /// the driver shares are used in place when physically contiguous (heap
    /// memory), and bounced through DMA pages otherwise (stack memory).
    ///
    /// Every call goes through the device [`transport`] opened in the
    /// calling process.
    pub struct StarinaHal;

    /// One process's HAL state: its device, and the DMA buffers handed to
    /// `virtio-drivers` (queues and bounce copies) by physical address.
    struct ProcessHal {
        device: HandleId,
        queues: BTreeMap<u64, DmaBuffer>,
        bounces: BTreeMap<u64, DmaBuffer>,
    }

    /// The HAL state of each driver process. `Hal` methods have no `self`
    /// and in-kernel components share statics, so it is keyed by process id
    /// (never reused). A process that ends leaves its entry behind: its DMA
    /// pages are already freed by the kernel, and the entry is never used
    /// again (a restarted driver is a new process).
    static HAL: spin::Mutex<BTreeMap<u64, ProcessHal>> = spin::Mutex::new(BTreeMap::new());

    /// Bounce buffers shared and not yet unshared, in every process: while
    /// there are none (the usual case: drivers share heap memory), `unshare`
    /// has nothing to look up (a lock, a system call and a map search for
    /// each buffer a device hands back).
    static BOUNCED: AtomicUsize = AtomicUsize::new(0);

    /// Makes `device` the one this process's HAL calls go through.
    fn register(device: HandleId) {
        let mut hal = HAL.lock();
        let state = hal
            .entry(kernel().process_id())
            .or_insert_with(|| ProcessHal {
                device,
                queues: BTreeMap::new(),
                bounces: BTreeMap::new(),
            });
        state.device = device;
    }

    /// The device this process's HAL calls go through.
    fn device() -> HandleId {
        match HAL.lock().get(&kernel().process_id()) {
            Some(state) => state.device,
            // `virtio-drivers` calls the HAL only for a transport, and
            // `transport` registers the device first.
            None => panic!("StarinaHal used before driver::virtio::transport"),
        }
    }

    /// Allocates DMA pages and files them under their physical address.
    fn alloc_into(
        pages: usize,
        pick: fn(&mut ProcessHal) -> &mut BTreeMap<u64, DmaBuffer>,
    ) -> Result<(u64, usize), Error> {
        let buffer = DmaBuffer::for_device(device(), pages)?;
        let (paddr, vaddr) = (buffer.paddr(), buffer.vaddr());
        let mut hal = HAL.lock();
        if let Some(state) = hal.get_mut(&kernel().process_id()) {
            pick(state).insert(paddr, buffer);
        }
        Ok((paddr, vaddr))
    }

    /// Takes back the DMA buffer filed under `paddr` (dropping it frees it).
    fn take(
        paddr: u64,
        pick: fn(&mut ProcessHal) -> &mut BTreeMap<u64, DmaBuffer>,
    ) -> Option<DmaBuffer> {
        let mut hal = HAL.lock();
        hal.get_mut(&kernel().process_id())
            .and_then(|state| pick(state).remove(&paddr))
    }

    fn queues(state: &mut ProcessHal) -> &mut BTreeMap<u64, DmaBuffer> {
        &mut state.queues
    }

    fn bounces(state: &mut ProcessHal) -> &mut BTreeMap<u64, DmaBuffer> {
        &mut state.bounces
    }

    // SAFETY: `dma_alloc` returns zeroed, physically contiguous pages owned
    // by a `DmaBuffer` kept here until `dma_dealloc`; `mmio_phys_to_virt`
    // returns the mapping the kernel made of a region of the process's
    // device (in its own address space for a user-mode driver);
    // `share` returns an address the device can use for the whole buffer
    // until `unshare` (the buffer itself, or a bounce copy).
    unsafe impl Hal for StarinaHal {
        fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
            match alloc_into(pages, queues) {
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

        unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, _pages: usize) -> i32 {
            match take(paddr, queues) {
                Some(buffer) => {
                    drop(buffer);
                    0
                }
                None => -1,
            }
        }

        unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
            match kernel().device_mmio_map(device(), paddr, size) {
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
            if let Ok(paddr) = kernel().dma_translate(device(), vaddr, len.max(1)) {
                return paddr;
            }
            // Not contiguous: bounce through DMA pages.
            let pages = len.div_ceil(PAGE_SIZE).max(1);
            let Ok((paddr, bounce)) = alloc_into(pages, bounces) else {
                // `virtio-drivers` offers no way to fail here.
                panic!("out of DMA memory for a {len}-byte bounce buffer");
            };
            BOUNCED.fetch_add(1, Ordering::AcqRel);
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
            // A process unshares only what it shared: its own bounce (if
            // this was one) is counted, by itself, before this call.
            if BOUNCED.load(Ordering::Acquire) == 0 {
                return; // Shared in place.
            }
            let Some(bounce) = take(paddr, bounces) else {
                return; // Shared in place.
            };
            BOUNCED.fetch_sub(1, Ordering::AcqRel);
            if direction != BufferDirection::DriverToDevice {
                // SAFETY: `bounce` is the bounce buffer `share` allocated for
                // this buffer (same length, we own it until it drops below);
                // `buffer` is valid for writes (the caller's contract).
                unsafe {
                    core::ptr::copy_nonoverlapping(
                        bounce.vaddr() as *const u8,
                        vaddr as *mut u8,
                        len,
                    )
                };
            }
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
                register(device.id());
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
                register(device.id());
                let size = size as usize;
                let vaddr = device.map_mmio(base, size)?;
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
            DeviceAddress::Uart { .. } => Err(TransportError::Kernel(Error::NotSupported)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_kernel::FakeKernel;
    use crate::fake_kernel::Object;

    fn device(fake: &FakeKernel) -> Device {
        Device::from_handle(OwnedHandle::from_raw(fake.add_device()))
    }

    #[test]
    fn dropping_a_dma_buffer_frees_it_once_through_its_handle() {
        let fake = FakeKernel::install();
        let dev = device(fake);
        let mut buf = DmaBuffer::new(&dev, 2).unwrap();
        assert_eq!(buf.len(), 2 * PAGE_SIZE);
        buf.as_mut_slice()[PAGE_SIZE] = 7;
        assert_eq!(buf.as_slice()[PAGE_SIZE], 7);
        let id = buf.id();
        assert!(matches!(fake.object(id), Some(Object::Dma { .. })));
        drop(buf);
        assert_eq!(fake.times_freed(id), 1);
        assert_eq!(fake.object(id), None);
    }

    #[test]
    fn a_forged_owner_cannot_free_dma_memory() {
        let fake = FakeKernel::install();
        let dev = device(fake);
        let buf = DmaBuffer::new(&dev, 1).unwrap();
        let id = buf.id();
        // Safe code can wrap any number in an `OwnedHandle`; closing it
        // does not free the pages the buffer hands out.
        assert_eq!(
            OwnedHandle::from_raw(id).close(),
            Err(Error::WrongObjectType)
        );
        drop(OwnedHandle::from_raw(id));
        assert_eq!(fake.times_freed(id), 0);
        assert_eq!(buf.as_slice().len(), PAGE_SIZE);
        drop(buf);
        assert_eq!(fake.times_freed(id), 1);
    }

    #[test]
    fn dma_memory_needs_a_device_handle() {
        let fake = FakeKernel::install();
        let dev = device(fake);
        let buf = DmaBuffer::new(&dev, 1).unwrap();
        // A DMA handle dressed up as a device is not one.
        let not_a_device =
            core::mem::ManuallyDrop::new(Device::from_handle(OwnedHandle::from_raw(buf.id())));
        assert_eq!(
            DmaBuffer::new(&not_a_device, 1).err(),
            Some(Error::WrongObjectType)
        );
        let gone = core::mem::ManuallyDrop::new(Device::from_handle(OwnedHandle::from_raw(
            HandleId(u32::MAX),
        )));
        assert_eq!(DmaBuffer::new(&gone, 1).err(), Some(Error::InvalidHandle));
        assert_eq!(fake.times_freed(buf.id()), 0);
    }
}
