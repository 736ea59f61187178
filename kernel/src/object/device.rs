//! Device objects: the right to drive one device. Holding one lets a
//! process read and write the device's PCI configuration (BARs excepted),
//! map its memory regions, reach its I/O ports (a UART's), take its
//! interrupt and allocate DMA memory. Dropping the last handle quiesces
//! the device (bus mastering off, a virtio-mmio reset, a UART's interrupts
//! off) so it stops writing into memory that is then freed, or raising a
//! line nobody handles.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;

use starina::abi::DeviceAddress;
use starina::abi::DeviceInfo;
use starina::abi::Error;

use crate::arch::cpu;
use crate::device::pci;
use crate::device::Region;
use crate::sync::SpinLock;

pub struct DeviceObject {
    index: usize,
    pub info: DeviceInfo,
    pub regions: Vec<Region>,
    bar_masks: [u32; 6],
    /// BAR registers the driver wrote all ones to (sizing): reads return
    /// the size mask until it writes the original value back.
    sizing: SpinLock<[bool; 6]>,
    /// Whether an interrupt object exists for it (one at a time).
    pub interrupt_taken: AtomicBool,
}

impl DeviceObject {
    pub fn new(
        index: usize,
        info: DeviceInfo,
        regions: Vec<Region>,
        bar_masks: [u32; 6],
    ) -> Arc<DeviceObject> {
        Arc::new(DeviceObject {
            index,
            info,
            regions,
            bar_masks,
            sizing: SpinLock::new([false; 6]),
            interrupt_taken: AtomicBool::new(false),
        })
    }

    fn bdf(&self) -> Result<pci::Bdf, Error> {
        match self.info.address {
            DeviceAddress::Pci {
                bus,
                device,
                function,
                ..
            } => Ok(pci::Bdf {
                bus,
                device,
                function,
            }),
            DeviceAddress::VirtioMmio { .. } | DeviceAddress::Uart { .. } => {
                Err(Error::NotSupported)
            }
        }
    }

    fn check_offset(offset: u16) -> Result<(), Error> {
        if !offset.is_multiple_of(4) || offset >= 256 {
            return Err(Error::InvalidArgument);
        }
        Ok(())
    }

    fn bar_of(offset: u16) -> Option<usize> {
        (0x10..0x28)
            .contains(&offset)
            .then(|| (offset as usize - 0x10) / 4)
    }

    pub fn config_read(&self, offset: u16) -> Result<u32, Error> {
        let bdf = self.bdf()?;
        Self::check_offset(offset)?;
        if let Some(bar) = Self::bar_of(offset) {
            if self.sizing.lock()[bar] {
                return Ok(self.bar_masks[bar]);
            }
        }
        Ok(pci::read32(bdf, offset))
    }

    pub fn config_write(&self, offset: u16, value: u32) -> Result<(), Error> {
        let bdf = self.bdf()?;
        Self::check_offset(offset)?;
        if let Some(bar) = Self::bar_of(offset) {
            // BARs stay where they are: only the sizing protocol (write all
            // ones, read the mask, write the original back) is emulated.
            let original = pci::read32(bdf, offset);
            let mut sizing = self.sizing.lock();
            if value == u32::MAX {
                sizing[bar] = true;
                return Ok(());
            }
            if value == original {
                sizing[bar] = false;
                return Ok(());
            }
            return Err(Error::InvalidArgument);
        }
        match offset {
            // Vendor/device IDs, class, header type: read-only anyway;
            // bridge or expansion ROM registers: not the driver's.
            0x00 | 0x08 | 0x0c | 0x30 => Err(Error::InvalidArgument),
            pci::COMMAND => {
                // I/O and memory decoding stay as enumeration left them: BARs
                // are sized through the emulation above, so a driver never
                // needs them off, and turning them off and on again while
                // other CPUs use devices changes the machine's memory map
                // under them. QEMU 7.2's TCG then sent another CPU's MMIO
                // write into a virtio MSI-X table and aborted (4 CPUs,
                // virtio-drivers' `bar_info` turning decoding off around its
                // sizing). The rest (bus mastering, INTx off) is the
                // driver's.
                let decode = pci::read32(bdf, pci::COMMAND) & pci::DECODE;
                pci::write32(bdf, pci::COMMAND, (value & !pci::DECODE) | decode);
                Ok(())
            }
            _ => {
                pci::write32(bdf, offset, value);
                Ok(())
            }
        }
    }

    /// The I/O port of a `width`-byte access at `offset` into the device's
    /// ports: `NotSupported` for a device without ports.
    fn io_port(&self, offset: u16, width: u8) -> Result<u16, Error> {
        let DeviceAddress::Uart { io_base } = self.info.address else {
            return Err(Error::NotSupported);
        };
        starina::abi::io_port(io_base, starina::abi::UART_PORTS, offset, width)
    }

    pub fn io_read(&self, offset: u16, width: u8) -> Result<u32, Error> {
        let port = self.io_port(offset, width)?;
        Ok(match width {
            1 => u32::from(cpu::inb(port)),
            2 => u32::from(cpu::inw(port)),
            _ => cpu::inl(port),
        })
    }

    pub fn io_write(&self, offset: u16, width: u8, value: u32) -> Result<(), Error> {
        let port = self.io_port(offset, width)?;
        match width {
            1 => cpu::outb(port, value as u8),
            2 => cpu::outw(port, value as u16),
            _ => cpu::outl(port, value),
        }
        Ok(())
    }

    /// Whether `[base, base + len)` lies inside one of its memory regions.
    pub fn owns(&self, base: u64, len: u64) -> bool {
        self.regions.iter().any(|r| r.contains(base, len))
    }
}

impl Drop for DeviceObject {
    fn drop(&mut self) {
        match self.info.address {
            DeviceAddress::Pci {
                bus,
                device,
                function,
                ..
            } => {
                let bdf = pci::Bdf {
                    bus,
                    device,
                    function,
                };
                // Bus mastering off: no more DMA into memory about to be
                // freed.
                let command = pci::read32(bdf, pci::COMMAND);
                pci::write32(bdf, pci::COMMAND, command & !pci::BUS_MASTER);
            }
            DeviceAddress::VirtioMmio { base, .. } => {
                // Writing 0 to the status register resets the device.
                let status = crate::mm::phys_to_virt(base + 0x70) as *mut u32;
                // SAFETY: the transport's register window is below 4 GiB
                // (direct-mapped) and 0x70 is its Status register.
                unsafe { status.write_volatile(0) };
            }
            DeviceAddress::Uart { io_base } => {
                // No interrupt sources, and OUT2 off: the line stays low.
                cpu::outb(io_base + 1, 0);
                cpu::outb(io_base + 4, 0);
            }
        }
        if let Some(gsi) = self.info.gsi {
            crate::arch::ioapic::mask(gsi);
        }
        crate::device::release(self.index);
    }
}
