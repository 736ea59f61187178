//! The devices the kernel found at boot, and which component drives each.
//!
//! Discovery runs once: PCI enumeration through the configuration ports
//! (q35), probing of the virtio-mmio windows (microvm), and of COM2
//! (`uart`). Startup hands
//! each driver the devices its spec's `[devices]` names; a device is
//! claimed by one device object at a time, and released (and quiesced)
//! when that object goes away.

pub mod pci;
pub mod uart;
pub mod virtio_mmio;

use alloc::sync::Arc;
use alloc::vec::Vec;

use starina::abi::DeviceAddress;
use starina::abi::DeviceInfo;
use starina::spec::DeviceMatch;

use crate::object::device::DeviceObject;
use crate::sync::SpinLock;

/// A range of device memory (a BAR, an MMIO window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub base: u64,
    pub size: u64,
}

impl Region {
    pub fn contains(&self, base: u64, len: u64) -> bool {
        base >= self.base
            && base
                .checked_add(len)
                .is_some_and(|end| end <= self.base.saturating_add(self.size))
    }
}

pub struct Record {
    pub info: DeviceInfo,
    pub regions: Vec<Region>,
    /// PCI only: BAR size masks (see `pci::Function::bar_masks`).
    pub bar_masks: [u32; 6],
    claimed: bool,
}

static DEVICES: SpinLock<Vec<Record>> = SpinLock::new(Vec::new());

/// Finds the machine's devices. `cmdline` may announce virtio-mmio
/// transports (microvm without ACPI).
pub fn discover(cmdline: &str) {
    let mut records = Vec::new();
    let mmio = virtio_mmio::probe();
    // microvm has no PCI host bridge: the configuration ports read all
    // ones, and enumeration finds nothing.
    for f in pci::enumerate() {
        let regions = f.bars.iter().map(|(_, r)| *r).collect();
        records.push(Record {
            info: DeviceInfo {
                address: DeviceAddress::Pci {
                    bus: f.bdf.bus,
                    device: f.bdf.device,
                    function: f.bdf.function,
                    vendor_id: f.vendor,
                    device_id: f.device,
                },
                gsi: f.gsi,
            },
            regions,
            bar_masks: f.bar_masks,
            claimed: false,
        });
    }
    for t in mmio {
        let gsi = virtio_mmio::gsi(cmdline, t.base, t.index, crate::arch::ioapic::count());
        records.push(Record {
            info: DeviceInfo {
                address: DeviceAddress::VirtioMmio {
                    base: t.base,
                    size: virtio_mmio::WINDOW,
                    device_id: t.device_id,
                },
                gsi: Some(gsi),
            },
            regions: alloc::vec![Region {
                base: t.base,
                size: virtio_mmio::WINDOW,
            }],
            bar_masks: [0; 6],
            claimed: false,
        });
    }
    if uart::present(uart::COM2) {
        records.push(Record {
            info: DeviceInfo {
                address: DeviceAddress::Uart {
                    io_base: uart::COM2,
                },
                gsi: Some(uart::COM2_GSI),
            },
            regions: Vec::new(),
            bar_masks: [0; 6],
            claimed: false,
        });
    }
    for r in &records {
        log::info!(
            "device: {}{}",
            starina::driver::describe_address(&r.info.address),
            match r.info.gsi {
                Some(g) => alloc::format!(", GSI {g}"),
                None => alloc::string::String::new(),
            }
        );
    }
    *DEVICES.lock() = records;
}

/// Claims the first unclaimed device that one of `matches` accepts.
pub fn claim(matches: &[DeviceMatch]) -> Option<Arc<DeviceObject>> {
    let mut devices = DEVICES.lock();
    let (index, record) = devices
        .iter_mut()
        .enumerate()
        .find(|(_, r)| !r.claimed && matches.iter().any(|m| m.matches(&r.info.address)))?;
    record.claimed = true;
    let object = DeviceObject::new(index, record.info, record.regions.clone(), record.bar_masks);
    drop(devices);
    Some(object)
}

/// Gives a device back (its object was dropped).
pub fn release(index: usize) {
    if let Some(r) = DEVICES.lock().get_mut(index) {
        r.claimed = false;
    }
}
