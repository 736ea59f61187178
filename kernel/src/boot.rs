//! From the PVH entry to a running system.

use alloc::string::String;
use alloc::vec::Vec;

use crate::arch;
use crate::mm;
use crate::mm::phys_to_virt;
use crate::mm::RamRegion;
use crate::process::Process;

/// `hvm_start_info` from the PVH boot protocol (xen/arch-x86/hvm/start_info.h).
#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

const START_INFO_MAGIC: u32 = 0x336e_c578;
const E820_RAM: u32 = 1;

extern "C" {
    static __kernel_end: u8;
}

/// The boot information we keep (copied out before the page allocator may
/// reuse the memory it lives in).
struct BootInfo {
    ram: Vec<RamRegion>,
    cmdline: String,
    /// The first boot module (the bootfs archive): physical base and size.
    module: Option<(u64, u64)>,
}

/// `hvm_modlist_entry`.
#[repr(C)]
#[derive(Clone, Copy)]
struct ModlistEntry {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

fn read_start_info(start_info_phys: u64) -> (StartInfo, [Option<MemmapEntry>; 64], String) {
    let ptr = phys_to_virt(start_info_phys) as *const StartInfo;
    // SAFETY: the PVH loader put `hvm_start_info` at this physical address
    // (below 4 GiB, so direct-mapped); we read it once, by value.
    let info = unsafe { ptr.read() };
    if info.magic != START_INFO_MAGIC {
        panic!("PVH start info has a bad magic {:#x}: not booted through PVH?", info.magic);
    }
    let mut entries = [None; 64];
    if info.version >= 1 && info.memmap_paddr != 0 {
        for (i, slot) in entries.iter_mut().enumerate().take(info.memmap_entries as usize) {
            let p = phys_to_virt(info.memmap_paddr) as *const MemmapEntry;
            // SAFETY: the loader gives `memmap_entries` entries at
            // `memmap_paddr`; we stay within that count.
            *slot = Some(unsafe { p.add(i).read() });
        }
    }
    let mut cmdline = String::new();
    if info.cmdline_paddr != 0 {
        let base = phys_to_virt(info.cmdline_paddr) as *const u8;
        for i in 0..4096 {
            // SAFETY: the command line is a NUL-terminated string at
            // `cmdline_paddr`; we stop at the NUL (or 4 KiB).
            let b = unsafe { base.add(i).read() };
            if b == 0 {
                break;
            }
            cmdline.push(b as char);
        }
    }
    (info, entries, cmdline)
}

/// A small bump heap for the very first allocations (the command line),
/// before the page allocator knows where RAM is.
fn early_info(start_info_phys: u64) -> BootInfo {
    let (info, entries, cmdline) = read_start_info(start_info_phys);
    let module = if info.nr_modules > 0 && info.modlist_paddr != 0 {
        let p = phys_to_virt(info.modlist_paddr) as *const ModlistEntry;
        // SAFETY: the loader put `nr_modules` (> 0) entries at
        // `modlist_paddr`; we read the first.
        let m = unsafe { p.read() };
        (m.size > 0 && m.paddr.saturating_add(m.size) <= mm::DIRECT_MAP_SIZE).then_some((m.paddr, m.size))
    } else {
        None
    };
    let ram: Vec<RamRegion> = entries
        .iter()
        .flatten()
        .filter(|e| e.kind == E820_RAM)
        .map(|e| RamRegion {
            base: e.addr,
            len: e.size,
        })
        .collect();
    BootInfo {
        ram,
        cmdline,
        module,
    }
}

fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

#[no_mangle]
pub extern "C" fn kernel_entry(start_info_phys: u64) -> ! {
    arch::clock::start();
    crate::klog::init();
    arch::trap::init();
    arch::xstate::init();

    // Everything up to the end of the kernel image, and the boot info
    // page, stays out of the allocator.
    // SAFETY: taking the address of a linker symbol.
    let kernel_end = mm::virt_to_phys((&raw const __kernel_end) as usize);
    let info = early_info(start_info_phys);
    let zero_filler = arch::cpu::zero_filling_hypervisor();
    mm::page::init(
        &info.ram,
        &[
            (0, kernel_end.next_multiple_of(4096)),
            (start_info_phys, start_info_phys + 4096),
            info.module.map_or((0, 0), |(base, size)| (base, base + size)),
        ],
        zero_filler.is_some(),
    );
    if let Some(hypervisor) = zero_filler {
        log::info!("RAM comes zero-filled ({hypervisor}): guest RAM skips zeroing pages untouched since boot");
    }
    arch::trap::guard_ist_stacks();
    let (free, total) = mm::page::stats();
    log::info!(
        "Starina booting: {} MiB of RAM ({} MiB free), command line '{}'",
        (total * 4096) >> 20,
        (free * 4096) >> 20,
        info.cmdline
    );

    arch::apic::init();
    arch::rtc::init();
    arch::ioapic::init();
    crate::object::console::start();
    arch::discipline::start();
    crate::device::discover(&info.cmdline);
    crate::bootfs::init(info.module.map(|(base, size)| {
        // SAFETY: the module's pages were kept out of the page allocator
        // above and are never written: a static, read-only byte slice.
        unsafe { core::slice::from_raw_parts(phys_to_virt(base) as *const u8, size as usize) }
    }));
    starina::syscall::register(&crate::syscall::KERNEL);

    let kernel = Process::new("kernel", None, 1);
    crate::sched::init(&kernel);

    let profile_name = cmdline_value(&info.cmdline, "profile").unwrap_or("default");
    match crate::startup::find_profile(profile_name) {
        Some(profile) => crate::startup::start(profile),
        None => {
            log::error!(
                "startup: unknown profile '{}' (known: {})",
                profile_name,
                crate::startup::profile_names()
            );
            arch::power_off(3);
        }
    }
    drop(info);

    crate::interrupt::rearm_timer();
    // This is now the idle thread: it gives the CPU to anything runnable
    // (startup just queued the components) and halts otherwise. Wakes from
    // interrupts switch away from it in the interrupt path.
    loop {
        if crate::sched::others_runnable() {
            crate::sched::yield_current();
        } else {
            arch::cpu::enable_interrupts_and_halt();
        }
    }
}
