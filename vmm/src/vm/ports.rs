//! Port I/O: which legacy device answers which port, and the VM's `IN` and
//! `OUT`.

use super::Vm;
use crate::iobus::all_ones;
use crate::iobus::IoBus;
use crate::legacy;
use crate::pic;
use crate::pit;
use crate::serial;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortDevice {
    Serial,
    Pic,
    Elcr,
    Pit,
    PortB,
    Cmos,
    I8042,
    Pci,
    Post,
}

/// The platform's port map.
pub(super) fn port_bus() -> IoBus<PortDevice> {
    let mut bus = IoBus::new();
    let routes = [
        (serial::COM1_BASE, 8, PortDevice::Serial),
        (pic::MASTER_CMD, 2, PortDevice::Pic),
        (pic::SLAVE_CMD, 2, PortDevice::Pic),
        (pic::ELCR_MASTER, 2, PortDevice::Elcr),
        (pit::CHANNEL0, 4, PortDevice::Pit),
        (pit::PORT_B, 1, PortDevice::PortB),
        (legacy::CMOS_INDEX, 2, PortDevice::Cmos),
        (legacy::I8042_DATA, 1, PortDevice::I8042),
        (legacy::I8042_CMD, 1, PortDevice::I8042),
        (
            legacy::PCI_CONFIG_BASE,
            legacy::PCI_CONFIG_LEN,
            PortDevice::Pci,
        ),
        (legacy::POST_PORT, 1, PortDevice::Post),
    ];
    for (base, len, dev) in routes {
        // The table above has no overlaps; a failure is a bug caught by tests.
        let _ = bus.insert(base, len, dev);
    }
    bus
}

impl Vm {
    /// Port read of `size` bytes.
    pub fn io_in(&mut self, port: u16, size: u8, now_ns: u64) -> u32 {
        let Some((dev, offset)) = self.ports.lookup(port) else {
            self.ports.note_unknown(port, false, 0);
            return all_ones(size);
        };
        // Byte-wide ISA devices: wider accesses read consecutive ports.
        let byte = match dev {
            PortDevice::Serial => self.serial.read(offset),
            PortDevice::Pic | PortDevice::Elcr => self.pic.read(port),
            PortDevice::Pit | PortDevice::PortB => self.pit.read(port, now_ns),
            PortDevice::Cmos => self.cmos.read(port, now_ns),
            PortDevice::I8042 => self.i8042.read(port),
            // No PCI bus (mechanism #1 absent), no POST card.
            PortDevice::Pci | PortDevice::Post => return all_ones(size),
        };
        byte as u32 | (all_ones(size) & !0xff)
    }

    /// Port write of `size` bytes. Returns `true` if the guest requested a
    /// reset.
    pub fn io_out(&mut self, port: u16, size: u8, value: u32, now_ns: u64) -> bool {
        let Some((dev, offset)) = self.ports.lookup(port) else {
            self.ports.note_unknown(port, true, value);
            return false;
        };
        let _ = size; // byte-wide devices take the low byte
        let v = value as u8;
        match dev {
            PortDevice::Serial => self.serial.write(offset, v),
            PortDevice::Pic | PortDevice::Elcr => self.pic.write(port, v),
            PortDevice::Pit | PortDevice::PortB => self.pit.write(port, v, now_ns),
            PortDevice::Cmos => self.cmos.write(port, v),
            PortDevice::I8042 => self.i8042.write(port, v),
            PortDevice::Pci | PortDevice::Post => {}
        }
        self.i8042.take_reset_request()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::vm;

    #[test]
    fn unknown_ports_and_pci_read_all_ones() {
        let mut vm = vm();
        assert_eq!(vm.io_in(0x2f8, 1, 0), 0xff);
        assert_eq!(vm.io_in(0xcfc, 4, 0), 0xffff_ffff);
        assert_eq!(vm.io_in(0xcf8, 4, 0), 0xffff_ffff);
        assert!(!vm.io_out(0x80, 1, 0x42, 0));
        assert!(!vm.io_out(0x1234, 4, 7, 0));
    }
}
