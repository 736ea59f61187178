//! Every pointer and length a user process passes: checked, then copied in
//! or out through the direct map of the pages behind it. The kernel never
//! dereferences a user address: a range outside the user half (a kernel
//! address, a non-canonical one), wrapping past the end, or touching a page
//! not mapped for user mode with the access needed (a guard page, a
//! read-only page written) is [`Error::BadAddress`] before any byte moves.

use alloc::vec::Vec;

use starina::abi::user::USER_BASE;
use starina::abi::user::USER_END;
use starina::abi::Error;

use super::aspace::Access;
use super::aspace::AddressSpace;
use crate::mm::phys_to_virt;
use crate::mm::PAGE_SIZE;

/// Checks that `len` bytes at `ptr` lie inside the user half (an empty
/// range anywhere is fine: nothing is touched).
pub fn check_range(ptr: u64, len: u64) -> Result<(), Error> {
    if len == 0 {
        return Ok(());
    }
    let end = ptr.checked_add(len).ok_or(Error::BadAddress)?;
    if ptr < USER_BASE || end > USER_END {
        return Err(Error::BadAddress);
    }
    Ok(())
}

/// Calls `f(at, offset, chunk length)` for each page-sized piece of the
/// user range `ptr..ptr + len` (checked inside the user half).
fn pieces(
    ptr: u64,
    len: usize,
    mut f: impl FnMut(u64, usize, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    check_range(ptr, len as u64)?;
    let mut done = 0usize;
    while done < len {
        let at = ptr + done as u64;
        let n = (PAGE_SIZE - (at as usize & (PAGE_SIZE - 1))).min(len - done);
        f(at, done, n)?;
        done += n;
    }
    Ok(())
}

/// Checks that every page of the range is mapped for the user with
/// `access` (a range found writable is remembered: pages are only ever
/// added to an address space while it lives).
fn check_pages(aspace: &AddressSpace, ptr: u64, len: usize, access: Access) -> Result<(), Error> {
    let end = ptr.checked_add(len as u64).ok_or(Error::BadAddress)?;
    if len == 0 || aspace.known_writable(&[(ptr, end)]) {
        return check_range(ptr, len as u64);
    }
    pieces(ptr, len, |at, _, _| {
        aspace
            .translate(at, access)
            .map(drop)
            .ok_or(Error::BadAddress)
    })?;
    if access == Access::Write {
        aspace.note_writable(ptr, end);
    }
    Ok(())
}

/// Calls `f(kernel address, offset, chunk length)` for each page-sized
/// piece of the user range, after checking every page of it first (so a
/// bad page moves nothing); the pages found then are there still.
fn each_chunk(
    aspace: &AddressSpace,
    ptr: u64,
    len: usize,
    access: Access,
    mut f: impl FnMut(usize, usize, usize),
) -> Result<(), Error> {
    if len > PAGE_SIZE - (ptr as usize & (PAGE_SIZE - 1)) {
        check_pages(aspace, ptr, len, access)?;
    }
    pieces(ptr, len, |at, offset, n| {
        let phys = aspace.translate(at, access).ok_or(Error::BadAddress)?;
        f(phys_to_virt(phys), offset, n);
        Ok(())
    })
}

/// Copies `out.len()` bytes from user address `ptr` into `out`.
pub fn copy_in(aspace: &AddressSpace, ptr: u64, out: &mut [u8]) -> Result<(), Error> {
    each_chunk(aspace, ptr, out.len(), Access::Read, |virt, offset, n| {
        // SAFETY: `virt` is the direct-map address of `n` bytes of a page
        // mapped for the user (checked by `translate`), owned by its
        // address space, which the caller holds: it stays allocated.
        let src = unsafe { core::slice::from_raw_parts(virt as *const u8, n) };
        out[offset..offset + n].copy_from_slice(src);
    })
}

/// `len` bytes from user address `ptr`, in a new buffer.
pub fn read_vec(aspace: &AddressSpace, ptr: u64, len: u64) -> Result<Vec<u8>, Error> {
    check_range(ptr, len)?;
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize)
        .map_err(|_| Error::OutOfMemory)?;
    buf.resize(len as usize, 0);
    copy_in(aspace, ptr, &mut buf)?;
    Ok(buf)
}

/// Copies `data` to user address `ptr` (pages writable by the user).
pub fn copy_out(aspace: &AddressSpace, ptr: u64, data: &[u8]) -> Result<(), Error> {
    each_chunk(aspace, ptr, data.len(), Access::Write, |virt, offset, n| {
        // SAFETY: as in `copy_in`, for a page mapped writable for the user.
        let dst = unsafe { core::slice::from_raw_parts_mut(virt as *mut u8, n) };
        dst.copy_from_slice(&data[offset..offset + n]);
    })
}

/// Checks that `len` bytes at `ptr` could be written (before a call that
/// would otherwise consume something, e.g. a received message, and only
/// then fail to hand it out).
pub fn check_writable(aspace: &AddressSpace, ptr: u64, len: usize) -> Result<(), Error> {
    check_pages(aspace, ptr, len, Access::Write)
}

/// [`check_writable`] for a receive's two buffers (body and handles), with
/// one look at the ranges already found writable when both were.
pub fn check_writable_pair(
    aspace: &AddressSpace,
    a: (u64, usize),
    b: (u64, usize),
) -> Result<(), Error> {
    let range = |(ptr, len): (u64, usize)| ptr.checked_add(len as u64).map(|end| (ptr, end));
    if let (Some(ra), Some(rb)) = (range(a), range(b)) {
        if aspace.known_writable(&[ra, rb]) {
            return check_range(a.0, a.1 as u64).and(check_range(b.0, b.1 as u64));
        }
    }
    check_writable(aspace, a.0, a.1)?;
    check_writable(aspace, b.0, b.1)
}

/// A `#[repr(C)]` plain-data value from user address `ptr`.
pub fn read_struct<T: Copy + Default>(aspace: &AddressSpace, ptr: u64) -> Result<T, Error> {
    let mut value = T::default();
    // SAFETY: `T` is plain data (Copy, repr(C) argument blocks of integers):
    // any bytes are a valid value; the slice covers exactly `value`.
    let bytes = unsafe {
        core::slice::from_raw_parts_mut(&mut value as *mut T as *mut u8, core::mem::size_of::<T>())
    };
    copy_in(aspace, ptr, bytes)?;
    Ok(value)
}
