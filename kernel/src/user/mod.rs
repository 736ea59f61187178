//! User mode: components whose spec says `isolation = "user"` run in ring 3
//! in an address space of their own, built from the same crate as a
//! freestanding ELF (`user/<name>` in the boot file system), and reach the
//! kernel with the `syscall` instruction (`starina::abi::user` is the ABI).
//!
//! - [`aspace`]: the page tables (kernel half shared, user half owned);
//! - [`entry`]: `syscall` entry, MSRs, SMEP/SMAP, the switch hook;
//! - [`dispatch`]: call numbers and registers to the kernel's `KernelApi`;
//! - [`uaccess`]: every user pointer checked and copied;
//! - [`stacks`]: extra threads' stacks, reused after their thread ends;
//! - [`elf`]: the loader.
//!
//! A fault in ring 3 (page fault, #GP, #DE, #UD, ...) ends the component
//! alone, as a fault in an in-kernel component's code does
//! (`interrupt::exception`): logged with the address and RIP, its handles
//! closed, its memory freed with its address space, its restart policy
//! applied.

pub mod aspace;
pub mod dispatch;
pub mod elf;
pub mod entry;
pub mod stacks;
pub mod uaccess;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::user::StartBlock;
use starina::abi::user::StartEntry;
use starina::abi::user::START_MAGIC;
use starina::abi::user::USER_STACK_SIZE;
use starina::abi::user::USER_STACK_TOP;
use starina::abi::user::USER_START_BLOCK;
use starina::env::RawEnv;

use aspace::AddressSpace;
use aspace::NO_EXECUTE;
use aspace::WRITABLE;

/// The boot file system's name of component `name`'s user ELF.
pub fn image_name(name: &str) -> String {
    format!("user/{name}")
}

/// Loads component `name`'s ELF into `process` (which must not have an
/// address space yet) and starts its main thread in ring 3 with `env`.
/// Called from a kernel thread of the process. Why not, if it cannot.
pub fn start(
    process: &alloc::sync::Arc<crate::process::Process>,
    env: &RawEnv,
) -> Result<(), String> {
    let file = crate::bootfs::file(&image_name(env.component()))
        .map_err(|e| format!("no user image {}: {e}", image_name(env.component())))?;
    let aspace = AddressSpace::new(process.account).map_err(|e| format!("{e}"))?;
    let aspace = process.aspace.call_once(|| aspace);
    let entry = elf::load(aspace, file)?;
    let stack_pages = (USER_STACK_SIZE / 4096) as usize;
    aspace
        .map_new(
            USER_STACK_TOP - USER_STACK_SIZE,
            stack_pages,
            WRITABLE | NO_EXECUTE,
        )
        .map_err(|e| format!("stack: {e}"))?;
    write_start_block(aspace, env)?;
    // As if called: rsp + 8 is 16-byte aligned at the entry point.
    crate::sched::spawn_user(process, entry, USER_STACK_TOP - 8, USER_START_BLOCK)
        .map_err(|e| format!("main thread: {e}"))?;
    log::info!(
        "user: {} runs in ring 3 (its own address space, entry {entry:#x})",
        env.component()
    );
    Ok(())
}

/// Maps the start block read-only at `USER_START_BLOCK` and fills it.
fn write_start_block(aspace: &AddressSpace, env: &RawEnv) -> Result<(), String> {
    let entries = env.handles();
    let header = core::mem::size_of::<StartBlock>();
    let entry_size = core::mem::size_of::<StartEntry>();
    let mut names = Vec::new();
    let mut table = Vec::new();
    let names_at = header + entries.len() * entry_size;
    let name_offset = names_at as u32;
    names.extend_from_slice(env.component().as_bytes());
    for (name, handle) in entries {
        table.push(StartEntry {
            name_offset: (names_at + names.len()) as u32,
            name_len: name.len() as u32,
            handle: handle.0,
            _pad: 0,
        });
        names.extend_from_slice(name.as_bytes());
    }
    let block = StartBlock {
        magic: START_MAGIC,
        instance: env.instance(),
        count: entries.len() as u32,
        name_offset,
        name_len: env.component().len() as u32,
    };
    let mut bytes = Vec::new();
    bytes.extend_from_slice(plain_bytes(&block));
    table
        .iter()
        .for_each(|e| bytes.extend_from_slice(plain_bytes(e)));
    bytes.extend_from_slice(&names);
    let pages = bytes.len().div_ceil(4096);
    let frames = aspace
        .map_new(USER_START_BLOCK, pages, NO_EXECUTE)
        .map_err(|e| format!("start block: {e}"))?;
    for (frame, chunk) in frames.iter().zip(bytes.chunks(4096)) {
        // SAFETY: a page just allocated for this space, direct-mapped; no
        // thread of the process runs yet.
        let dst = unsafe {
            core::slice::from_raw_parts_mut(crate::mm::phys_to_virt(*frame) as *mut u8, chunk.len())
        };
        dst.copy_from_slice(chunk);
    }
    Ok(())
}

/// The bytes of a `#[repr(C)]` plain-data value without padding holes.
fn plain_bytes<T: Copy>(value: &T) -> &[u8] {
    // SAFETY: `StartBlock` and `StartEntry` are `repr(C)` with only integer
    // fields and no padding (checked below); reading their bytes is fine.
    unsafe {
        core::slice::from_raw_parts(value as *const T as *const u8, core::mem::size_of::<T>())
    }
}

const _: () = assert!(core::mem::size_of::<StartBlock>() == 24);
const _: () = assert!(core::mem::size_of::<StartEntry>() == 16);
