//! Loads a user ELF (static, linked at `USER_IMAGE_BASE`) into an address
//! space: each loadable segment on pages of its own with its permissions
//! (writable or executable, never both), bytes past the file's zeroed.

use alloc::format;
use alloc::string::String;

use goblin::elf::program_header::PF_W;
use goblin::elf::program_header::PF_X;
use goblin::elf::program_header::PT_LOAD;
use goblin::elf::Elf;
use starina::abi::user::USER_BASE;
use starina::abi::user::USER_MEMORY_BASE;

use super::aspace::AddressSpace;
use super::aspace::NO_EXECUTE;
use super::aspace::WRITABLE;
use crate::mm::phys_to_virt;
use crate::mm::PAGE_SIZE;

const PAGE: u64 = PAGE_SIZE as u64;

/// Loads `file` into `aspace`; its entry point, or why not.
pub fn load(aspace: &AddressSpace, file: &[u8]) -> Result<u64, String> {
    let elf = Elf::parse(file).map_err(|e| format!("not an ELF file: {e}"))?;
    if !elf.is_64 || elf.header.e_machine != goblin::elf::header::EM_X86_64 {
        return Err("not an x86-64 ELF file".into());
    }
    let mut loaded = 0;
    for ph in elf.program_headers.iter().filter(|ph| ph.p_type == PT_LOAD) {
        load_segment(
            aspace,
            file,
            ph.p_vaddr,
            ph.p_memsz,
            ph.p_offset,
            ph.p_filesz,
            ph.p_flags,
        )?;
        loaded += 1;
    }
    let entry = elf.entry;
    if loaded == 0 || !(USER_BASE..USER_MEMORY_BASE).contains(&entry) {
        return Err(format!(
            "no loadable segments, or entry point {entry:#x} outside the image region"
        ));
    }
    Ok(entry)
}

fn load_segment(
    aspace: &AddressSpace,
    file: &[u8],
    vaddr: u64,
    memsz: u64,
    offset: u64,
    filesz: u64,
    flags: u32,
) -> Result<(), String> {
    let bad =
        || format!("segment at {vaddr:#x} (+{memsz:#x}) is outside the image region or malformed");
    if flags & PF_W != 0 && flags & PF_X != 0 {
        return Err(format!(
            "segment at {vaddr:#x} is both writable and executable (W^X)"
        ));
    }
    let end = vaddr.checked_add(memsz).ok_or_else(bad)?;
    if filesz > memsz || vaddr < USER_BASE || end > USER_MEMORY_BASE {
        return Err(bad());
    }
    let bytes = usize::try_from(offset)
        .ok()
        .and_then(|o| file.get(o..o.checked_add(usize::try_from(filesz).ok()?)?))
        .ok_or_else(bad)?;
    let first = vaddr & !(PAGE - 1);
    let pages = (end.div_ceil(PAGE) * PAGE - first) / PAGE;
    let mut page_flags = 0;
    if flags & PF_W != 0 {
        page_flags |= WRITABLE;
    }
    if flags & PF_X == 0 {
        page_flags |= NO_EXECUTE;
    }
    let frames = aspace
        .map_new(first, pages as usize, page_flags)
        .map_err(|e| format!("segment at {vaddr:#x}: {e} (overlapping segments, or no memory)"))?;
    // Copy the file's bytes page by page through the direct map.
    let mut done = 0usize;
    while done < bytes.len() {
        let at = vaddr + done as u64;
        let frame = frames[((at - first) / PAGE) as usize];
        let in_page = (at % PAGE) as usize;
        let n = (PAGE_SIZE - in_page).min(bytes.len() - done);
        // SAFETY: `frame` is a page just allocated for this space (not
        // yet reachable by any thread of it), direct-mapped; `in_page + n`
        // stays inside it.
        let dst = unsafe {
            core::slice::from_raw_parts_mut((phys_to_virt(frame) + in_page) as *mut u8, n)
        };
        dst.copy_from_slice(&bytes[done..done + n]);
        done += n;
    }
    Ok(())
}
