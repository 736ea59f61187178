//! Device objects: the right to drive one device. Holding one lets a
//! process read and write the device's PCI configuration (BARs excepted),
//! map its memory regions, take its interrupt and allocate DMA memory.
//! Dropping the last handle quiesces the device (bus mastering off, or a
//! virtio-mmio reset) so it stops writing into memory that is then freed.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::AtomicBool;

use starina::abi::DeviceAddress;
use starina::abi::DeviceInfo;
use starina::abi::Error;

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
            DeviceAddress::VirtioMmio { .. } => Err(Error::NotSupported),
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
            _ => {
                pci::write32(bdf, offset, value);
                Ok(())
            }
        }
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
                let command = pci::read32(bdf, 0x04);
                pci::write32(bdf, 0x04, command & !(1 << 2));
            }
            DeviceAddress::VirtioMmio { base, .. } => {
                // Writing 0 to the status register resets the device.
                let status = crate::mm::phys_to_virt(base + 0x70) as *mut u32;
                // SAFETY: the transport's register window is below 4 GiB
                // (direct-mapped) and 0x70 is its Status register.
                unsafe { status.write_volatile(0) };
            }
        }
        if let Some(gsi) = self.info.gsi {
            crate::arch::ioapic::mask(gsi);
        }
        crate::device::release(self.index);
    }
}
