//! Fuzz inputs shared by the device targets: guest addresses, register
//! offsets and values, ports, device input, all biased towards what the
//! device models compare against.

#![allow(dead_code)] // each target uses part of them

use arbitrary::Arbitrary;
use starina_vmm::cpuid::CpuidResult;
use starina_vmm::virtio::mmio::reg;

/// Guest RAM for the device targets: small, so random addresses hit it.
pub const RAM: usize = 64 << 10;

/// A guest-physical address: usually inside the small RAM, sometimes any.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Addr {
    Ram(u16),
    Any(u64),
}

impl Addr {
    pub fn get(self) -> u64 {
        match self {
            Addr::Ram(a) => a as u64 % RAM as u64,
            Addr::Any(a) => a,
        }
    }
}

/// The transport's registers, so that sequences reach deep states.
pub const REGS: [u64; 25] = [
    reg::MAGIC,
    reg::VERSION,
    reg::DEVICE_ID,
    reg::DEVICE_FEATURES,
    reg::DEVICE_FEATURES_SEL,
    reg::DRIVER_FEATURES,
    reg::DRIVER_FEATURES_SEL,
    reg::QUEUE_SEL,
    reg::QUEUE_NUM_MAX,
    reg::QUEUE_NUM,
    reg::QUEUE_READY,
    reg::QUEUE_NOTIFY,
    reg::INTERRUPT_STATUS,
    reg::INTERRUPT_ACK,
    reg::STATUS,
    reg::QUEUE_DESC_LOW,
    reg::QUEUE_DESC_HIGH,
    reg::QUEUE_DRIVER_LOW,
    reg::QUEUE_DRIVER_HIGH,
    reg::QUEUE_DEVICE_LOW,
    reg::QUEUE_DEVICE_HIGH,
    reg::SHM_SEL,
    reg::CONFIG_GENERATION,
    reg::CONFIG,
    reg::CONFIG + 4,
];

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Offset {
    Reg(u8),
    Any(u16),
}

impl Offset {
    pub fn get(self) -> u64 {
        match self {
            Offset::Reg(i) => REGS[i as usize % REGS.len()],
            Offset::Any(o) => o as u64,
        }
    }
}

/// A register value: usually small (queue numbers, status bits, RAM
/// addresses), sometimes any.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Value {
    Small(u8),
    Ram(u16),
    Any(u32),
}

impl Value {
    pub fn get(self) -> u32 {
        match self {
            Value::Small(v) => v as u32,
            Value::Ram(v) => v as u32 % RAM as u32,
            Value::Any(v) => v,
        }
    }
}

/// The legacy ports the VM claims, and any other.
pub const PORTS: [u16; 28] = [
    0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1, // PIC, ELCR
    0x40, 0x41, 0x42, 0x43, 0x61, // PIT, port B
    0x70, 0x71, // CMOS
    0x60, 0x64, // i8042
    0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, // COM1
    0xcf8, 0xcfc, 0xcff, // PCI config
    0x80, 0x2f8, // POST, nothing
];

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Port {
    Known(u8),
    Any(u16),
}

impl Port {
    pub fn get(self) -> u16 {
        match self {
            Port::Known(i) => PORTS[i as usize % PORTS.len()],
            Port::Any(p) => p,
        }
    }
}

/// Input bytes for a device: a short pattern repeated (inputs built from
/// one `Vec` each would swallow the rest of the fuzz input).
pub fn repeated(bytes: [u8; 8], reps: u8) -> Vec<u8> {
    bytes.repeat(1 + reps as usize)
}

pub fn host_cpuid(_: u32, _: u32) -> CpuidResult {
    CpuidResult {
        eax: 0x8000_0008,
        ebx: 0,
        ecx: 0,
        edx: 0,
    }
}
