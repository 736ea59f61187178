//! What the kernel must refuse a user-mode driver: each call here must
//! come back with the error named, never map, translate or copy anything
//! it should not, and never fault the kernel.

use alloc::format;
use alloc::string::String;
use core::fmt::Debug;

use starina::abi::syscall::SyscallNo;
use starina::driver::Device;
use starina::driver::DmaBuffer;
use starina::testing::raw_syscall;
use starina::Error;

/// An address in the kernel's half.
const KERNEL_ADDRESS: u64 = 0xffff_8000_0000_0000;
/// Ordinary RAM (1 MiB), no device's.
const RAM_ADDRESS: u64 = 0x10_0000;
/// An address nothing maps in a user process.
const UNMAPPED: u64 = 0x1000;
const PAGE: u64 = 4096;

struct Checks(usize);

impl Checks {
    /// `got` must be the error `want`.
    fn refused<T: Debug>(
        &mut self,
        what: &str,
        got: Result<T, Error>,
        want: Error,
    ) -> Result<(), String> {
        self.0 += 1;
        match got {
            Err(e) if e == want => Ok(()),
            other => Err(format!("{what}: expected {want:?}, got {other:?}")),
        }
    }
}

fn raw(no: SyscallNo, args: [u64; 3]) -> Result<[u64; 5], Error> {
    raw_syscall(no.as_raw(), [args[0], args[1], args[2], 0, 0, 0])
}

/// Runs every check; how many.
pub fn check(device: &Device) -> Result<usize, String> {
    let mut c = Checks(0);
    let dev = u64::from(device.id().0);
    let (base, size) = memory_bar(device)?;
    let regs = device
        .map_mmio(base, size as usize)
        .map_err(|e| format!("mapping its BAR {base:#x} (+{size:#x}): {e}"))? as u64;
    mmio(&mut c, device, dev, base, size)?;
    dma(&mut c, device, dev, regs)?;
    config(&mut c, device, dev)?;
    c.refused(
        "io_read of a PCI device",
        device.io_read(0, 1),
        Error::NotSupported,
    )?;
    let irq = device.interrupt().map_err(|e| format!("interrupt: {e}"))?;
    c.refused(
        "a second interrupt",
        device.interrupt(),
        Error::AlreadyExists,
    )?;
    c.refused(
        "dma_free of an interrupt",
        raw(SyscallNo::DmaFree, [u64::from(irq.id().0), 0, 0]),
        Error::WrongObjectType,
    )?;
    Ok(c.0)
}

fn mmio(c: &mut Checks, device: &Device, dev: u64, base: u64, size: u64) -> Result<(), String> {
    let len = size as usize;
    c.refused(
        "mmio_map of 0 bytes",
        device.map_mmio(base, 0),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map one byte past the BAR",
        device.map_mmio(base, len + 1),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map after the BAR",
        device.map_mmio(base + size, 4096),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map before the BAR",
        device.map_mmio(base - PAGE, 4096),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map of RAM",
        device.map_mmio(RAM_ADDRESS, 4096),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map wrapping around",
        raw(SyscallNo::DeviceMmioMap, [dev, u64::MAX - 15, 32]),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map with a length past 4 GiB",
        raw(SyscallNo::DeviceMmioMap, [dev, base, 1 << 40]),
        Error::InvalidArgument,
    )?;
    c.refused(
        "mmio_map with a handle past 32 bits",
        raw(SyscallNo::DeviceMmioMap, [dev | 1 << 40, base, 4096]),
        Error::InvalidHandle,
    )?;
    c.refused(
        "mmio_map with no such handle",
        raw(SyscallNo::DeviceMmioMap, [0xfff0, base, 4096]),
        Error::InvalidHandle,
    )
}

fn dma(c: &mut Checks, device: &Device, dev: u64, regs: u64) -> Result<(), String> {
    c.refused(
        "dma_alloc of 0 pages",
        DmaBuffer::new(device, 0).map(drop),
        Error::InvalidArgument,
    )?;
    c.refused(
        "dma_alloc of 1025 pages",
        DmaBuffer::new(device, 1025).map(drop),
        Error::InvalidArgument,
    )?;
    c.refused(
        "dma_alloc of 2^64 - 1 pages",
        raw(SyscallNo::DmaAlloc, [dev, u64::MAX, 0]),
        Error::InvalidArgument,
    )?;
    let buf = DmaBuffer::new(device, 2).map_err(|e| format!("dma_alloc: {e}"))?;
    let at = buf.as_slice().as_ptr() as u64;
    let translated = device.dma_address(buf.as_slice());
    c.0 += 1;
    if translated != Ok(buf.paddr()) {
        return Err(format!(
            "dma_translate of its DMA memory: {translated:?}, not {:#x}",
            buf.paddr()
        ));
    }
    let translate = |vaddr: u64, len: u64| raw(SyscallNo::DmaTranslate, [dev, vaddr, len]);
    c.refused(
        "dma_translate of 0 bytes",
        translate(at, 0),
        Error::InvalidArgument,
    )?;
    c.refused(
        "dma_translate of a kernel address",
        translate(KERNEL_ADDRESS, 16),
        Error::NotSupported,
    )?;
    c.refused(
        "dma_translate of an unmapped page",
        translate(UNMAPPED, 16),
        Error::NotSupported,
    )?;
    c.refused(
        "dma_translate of its registers",
        translate(regs, 16),
        Error::NotSupported,
    )?;
    c.refused(
        "dma_translate wrapping around",
        translate(u64::MAX - 7, 16),
        Error::NotSupported,
    )?;
    // The kernel never copies through DMA memory or registers.
    let log = |vaddr: u64| raw(SyscallNo::Log, [3, vaddr, 16]);
    c.refused("a log line from DMA memory", log(at), Error::BadAddress)?;
    c.refused(
        "a log line from its registers",
        log(regs),
        Error::BadAddress,
    )?;
    c.refused(
        "dma_free of the device",
        raw(SyscallNo::DmaFree, [dev, 0, 0]),
        Error::WrongObjectType,
    )?;
    drop(buf);
    // Freed: unmapped at once.
    c.refused(
        "dma_translate of freed DMA memory",
        translate(at, 16),
        Error::NotSupported,
    )
}

fn config(c: &mut Checks, device: &Device, dev: u64) -> Result<(), String> {
    c.refused(
        "pci_config_read at 2",
        device.pci_config_read(2),
        Error::InvalidArgument,
    )?;
    c.refused(
        "pci_config_read at 256",
        device.pci_config_read(256),
        Error::InvalidArgument,
    )?;
    c.refused(
        "pci_config_read at 2^32",
        raw(SyscallNo::DevicePciConfigRead, [dev, 1 << 32, 0]),
        Error::InvalidArgument,
    )?;
    c.refused(
        "pci_config_write of a value past 32 bits",
        raw(SyscallNo::DevicePciConfigWrite, [dev, 0x04, 1 << 32]),
        Error::InvalidArgument,
    )?;
    c.refused(
        "moving a BAR",
        device.pci_config_write(0x10, 0x1234_5670),
        Error::InvalidArgument,
    )?;
    decoding_stays_on(c, device)?;
    c.refused(
        "writing the IDs",
        device.pci_config_write(0x00, 0),
        Error::InvalidArgument,
    )
}

/// The command register's decoding bits are the kernel's: a driver that
/// clears them (virtio-drivers does around BAR sizing) changes only the
/// rest, and its BARs stay mapped for every CPU.
fn decoding_stays_on(c: &mut Checks, device: &Device) -> Result<(), String> {
    const COMMAND: u16 = 0x04;
    const MEMORY_SPACE: u32 = 1 << 1;
    const DECODE: u32 = 0x1 | MEMORY_SPACE;
    c.0 += 1;
    let read = || {
        device
            .pci_config_read(COMMAND)
            .map_err(|e| format!("reading the command register: {e}"))
    };
    let before = read()?;
    device
        .pci_config_write(COMMAND, before & 0xffff & !DECODE)
        .map_err(|e| format!("writing the command register: {e}"))?;
    let after = read()?;
    if after & DECODE != before & DECODE || before & MEMORY_SPACE == 0 {
        return Err(format!(
            "decoding off in the command register: {before:#x} became {after:#x}"
        ));
    }
    Ok(())
}

/// The device's first memory BAR of a page or more: (base, size), by the
/// sizing protocol (all ones written, the mask read, the value restored).
fn memory_bar(device: &Device) -> Result<(u64, u64), String> {
    let read = |o: u16| {
        device
            .pci_config_read(o)
            .map_err(|e| format!("config {o:#x}: {e}"))
    };
    let write = |o: u16, v: u32| {
        device
            .pci_config_write(o, v)
            .map_err(|e| format!("config {o:#x}: {e}"))
    };
    let mut bar = 0u16;
    while bar < 6 {
        let at = 0x10 + bar * 4;
        let low = read(at)?;
        let wide = low & 1 == 0 && (low >> 1) & 3 == 2;
        bar += if wide { 2 } else { 1 };
        if low & 1 != 0 || low & !0xf == 0 {
            continue;
        }
        let high = if wide { read(at + 4)? } else { 0 };
        write(at, u32::MAX)?;
        let mask = read(at)?;
        write(at, low)?;
        let size = u64::from((!(mask & !0xf)).wrapping_add(1));
        let base = u64::from(high) << 32 | u64::from(low & !0xf);
        if size >= PAGE {
            return Ok((base, size));
        }
    }
    Err("no memory BAR of a page or more".into())
}
