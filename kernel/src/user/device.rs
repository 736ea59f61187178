//! The device calls of a user-mode driver, where they differ from an
//! in-kernel one's: its device's registers and its DMA memory are mapped
//! into its own address space (not the kernel's), and DMA addresses are
//! looked up in its page tables. The other device calls (PCI
//! configuration, I/O ports, interrupts, `dma_free`) are the kernel's own,
//! reached through `dispatch`.
//!
//! Registers are mapped page by page: a user driver gets the pages of a
//! region only if they hold nothing but its device's registers (a PCI BAR
//! whose pages are its own), never a page it shares with another device
//! (virtio-mmio transports lie 512 bytes apart): `NotSupported` then.

use starina::abi::syscall::SyscallNo;
use starina::abi::user::device_info;
use starina::abi::Error;
use starina::abi::HandleId;
use starina::syscall::KernelApi;

use super::aspace::AddressSpace;
use crate::handle::Object;
use crate::mm::PAGE_SIZE;
use crate::object::device::DeviceObject;
use crate::object::dma::DmaMemory;
use crate::sched;
use crate::syscall::object;
use crate::syscall::rights;
use crate::syscall::KERNEL;

fn aspace() -> Result<&'static AddressSpace, Error> {
    sched::current_process()
        .aspace
        .get()
        .ok_or(Error::NotSupported)
}

/// `DeviceInfo` in four registers (`starina::abi::user::device_info`).
pub fn info(device: HandleId) -> Result<[u64; 4], Error> {
    let device = object::<DeviceObject>(device, rights::DEVICE_INFO)?;
    Ok(device_info::encode(&device.info))
}

/// Maps `len` bytes of `device`'s registers at physical `paddr` into the
/// caller's address space; the address of `paddr` there. `InvalidArgument`
/// for an empty range or one outside the device's regions.
pub fn mmio_map(device: HandleId, paddr: u64, len: u64) -> Result<u64, Error> {
    let device = object::<DeviceObject>(device, rights::DEVICE_MMIO_MAP)?;
    if len == 0 || !device.owns(paddr, len) {
        return Err(Error::InvalidArgument);
    }
    let page = PAGE_SIZE as u64;
    let first = paddr & !(page - 1);
    // `owns` checked `paddr + len` does not wrap.
    let end = (paddr + len)
        .checked_next_multiple_of(page)
        .ok_or(Error::InvalidArgument)?;
    if !device.owns(first, end - first) {
        // The pages hold more than this device's registers.
        return Err(Error::NotSupported);
    }
    crate::syscall::within_budget()?;
    let at = aspace()?.map_mmio(first, (end - first) / page)?;
    Ok(at + (paddr - first))
}

/// `pages` pages of DMA memory for `device`'s driver, mapped into its
/// address space: (handle, physical address, user address).
pub fn dma_alloc(device: HandleId, pages: u64) -> Result<[u64; 3], Error> {
    object::<DeviceObject>(device, rights::DMA_ALLOC)?;
    let pages = usize::try_from(pages).map_err(|_| Error::InvalidArgument)?;
    crate::syscall::within_budget()?;
    let process = sched::current_process();
    let dma = DmaMemory::new(pages, process.account)?;
    // If anything below fails, `dma` drops: unmapped (if mapped) and freed.
    let at = dma.map_into(process)?;
    let paddr = dma.paddr();
    let handle = crate::syscall::insert(Object::Dma(dma), rights::DMA_HANDLE)?;
    Ok([handle.0 as u64, paddr, at])
}

/// The address `device` uses for the caller's `vaddr..vaddr + len`: its
/// own memory or its DMA memory, physically contiguous (`NotSupported`
/// otherwise, as for an in-kernel driver's non-contiguous buffer).
pub fn dma_translate(device: HandleId, vaddr: u64, len: u64) -> Result<u64, Error> {
    object::<DeviceObject>(device, rights::DMA_TRANSLATE)?;
    if len == 0 {
        return Err(Error::InvalidArgument);
    }
    aspace()?
        .device_address(vaddr, len)
        .ok_or(Error::NotSupported)
}

/// The device calls from `dispatch`: `no` with arguments `a`; `None` if
/// `no` is not one.
pub fn call(no: SyscallNo, a: [u64; 4]) -> Option<Result<[u64; 5], Error>> {
    let k = &KERNEL;
    let dev = handle(a[0]);
    let one = |v: u64| [v, 0, 0, 0, 0];
    let unit = |_| [0; 5];
    Some(match no {
        SyscallNo::DeviceInfo => dev.and_then(info).map(|w| [w[0], w[1], w[2], w[3], 0]),
        SyscallNo::DevicePciConfigRead => dev
            .and_then(|d| k.device_pci_config_read(d, narrow(a[1])?))
            .map(|v| one(v.into())),
        SyscallNo::DevicePciConfigWrite => dev
            .and_then(|d| k.device_pci_config_write(d, narrow(a[1])?, narrow(a[2])?))
            .map(unit),
        SyscallNo::DeviceIoRead => dev
            .and_then(|d| k.device_io_read(d, narrow(a[1])?, narrow(a[2])?))
            .map(|v| one(v.into())),
        SyscallNo::DeviceIoWrite => dev
            .and_then(|d| k.device_io_write(d, narrow(a[1])?, narrow(a[2])?, narrow(a[3])?))
            .map(unit),
        SyscallNo::DeviceMmioMap => dev.and_then(|d| mmio_map(d, a[1], a[2])).map(one),
        SyscallNo::InterruptCreate => dev
            .and_then(|d| k.interrupt_create(d))
            .map(|h| one(h.0.into())),
        SyscallNo::InterruptAck => dev.and_then(|h| k.interrupt_ack(h)).map(unit),
        SyscallNo::DmaAlloc => dev
            .and_then(|d| dma_alloc(d, a[1]))
            .map(|[h, p, v]| [h, p, v, 0, 0]),
        SyscallNo::DmaFree => dev.and_then(|h| k.dma_free(h)).map(unit),
        SyscallNo::DmaTranslate => dev.and_then(|d| dma_translate(d, a[1], a[2])).map(one),
        _ => return None,
    })
}

fn handle(raw: u64) -> Result<HandleId, Error> {
    u32::try_from(raw)
        .map(HandleId)
        .map_err(|_| Error::InvalidHandle)
}

/// An argument that must fit a narrower type (an offset, a width, a value).
fn narrow<T: TryFrom<u64>>(raw: u64) -> Result<T, Error> {
    T::try_from(raw).map_err(|_| Error::InvalidArgument)
}
