//! From the PVH or Multiboot2 entry to a running system.

use alloc::string::String;
use alloc::vec::Vec;

use crate::acpi::rsdp::Root;
use crate::arch;
use crate::mm;
use crate::mm::phys_to_virt;
use crate::mm::RamRegion;
use crate::multiboot2;
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
    /// The boot information's own bytes (physical start, end), kept out
    /// of the page allocator.
    info_pages: (u64, u64),
    /// Where ACPI's tables start, if the loader said (and it checked out).
    rsdp: Option<Root>,
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

/// What the loader of `protocol` told us, copied out (into the small
/// bump heap of the very first allocations) before the page allocator
/// knows where RAM is.
fn early_info(info_phys: u64, protocol: u64) -> BootInfo {
    match protocol {
        arch::BOOT_PVH => pvh_info(info_phys),
        arch::BOOT_MULTIBOOT2 => multiboot2_info(info_phys),
        arch::BOOT_MULTIBOOT2_BAD_MAGIC => {
            panic!("entered at the Multiboot2 entry without the Multiboot2 magic in EAX: not booted by a Multiboot2 loader?")
        }
        other => panic!("unknown boot protocol {other} from the boot assembly"),
    }
}

fn pvh_info(start_info_phys: u64) -> BootInfo {
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
    let rsdp = (info.rsdp_paddr != 0).then(|| arch::acpi::rsdp_at(info.rsdp_paddr));
    BootInfo {
        ram,
        cmdline,
        module,
        info_pages: (start_info_phys, start_info_phys + 4096),
        rsdp: checked_rsdp(rsdp, "PVH's rsdp_paddr"),
    }
}

/// The Multiboot2 information structure at `phys`, read whole.
fn multiboot2_info(phys: u64) -> BootInfo {
    let base = phys_to_virt(phys);
    // SAFETY: a Multiboot2 loader put the information structure at this
    // physical address (8-byte aligned, below 4 GiB, so direct-mapped); its
    // first u32 is its total size.
    let total = unsafe { (base as *const u32).read() };
    let len = multiboot2::check_total_size(total)
        .unwrap_or_else(|e| panic!("Multiboot2 information at {phys:#x}: {e}: not booted by a Multiboot2 loader?"));
    // SAFETY: the structure is `len` bytes from `base` (a size checked
    // above); nothing writes it while we read it, before the page
    // allocator exists.
    let bytes = unsafe { core::slice::from_raw_parts(base as *const u8, len) };
    let info = multiboot2::parse(bytes)
        .unwrap_or_else(|e| panic!("Multiboot2 information at {phys:#x} is malformed: {e}"));
    if info.memory.is_empty() {
        panic!("Multiboot2 information at {phys:#x} has no memory map (tag 6): cannot find RAM");
    }
    BootInfo {
        ram: info
            .memory
            .iter()
            .filter(|r| r.kind == multiboot2::MEMORY_AVAILABLE)
            .map(|r| RamRegion {
                base: r.base,
                len: r.len,
            })
            .collect(),
        cmdline: info.cmdline.unwrap_or_default().iter().map(|&b| b as char).collect(),
        module: info.module.filter(|&(base, size)| {
            size > 0 && base.saturating_add(size) <= mm::DIRECT_MAP_SIZE
        }),
        info_pages: (phys, phys + len as u64),
        rsdp: checked_rsdp(info.rsdp.map(crate::acpi::rsdp::parse), "the Multiboot2 ACPI tag"),
    }
}

/// The loader's RSDP, if it gave one that checks out (else logged: the
/// BIOS areas are scanned instead).
fn checked_rsdp(rsdp: Option<Result<Root, crate::acpi::Error>>, from: &str) -> Option<Root> {
    match rsdp? {
        Ok(root) => Some(root),
        Err(e) => {
            log::warn!("acpi: the RSDP from {from} is not valid ({e}): scanning the BIOS areas");
            None
        }
    }
}

/// Finds the CPUs in the MADT and starts the others (they park).
fn start_cpus(info: &BootInfo) {
    let madt = arch::acpi::madt(info.rsdp, crate::percpu::MAX_CPUS);
    if let Some(madt) = &madt {
        arch::acpi::log_madt(madt);
    }
    let module = info.module.map_or((0, 0), |(base, size)| (base, base + size));
    arch::smp::start(madt.as_ref(), &info.ram, &[info.info_pages, module]);
}

fn cmdline_value<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    cmdline
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// Called by the boot assembly in long mode: `info_phys` is the loader's
/// boot information, `protocol` says which (`arch::BOOT_*`).
#[no_mangle]
pub extern "C" fn kernel_entry(info_phys: u64, protocol: u64) -> ! {
    // First: everything that asks for the current thread finds this CPU's
    // slot through GS.
    crate::percpu::install(0);
    arch::clock::start();
    crate::klog::init();
    arch::trap::init();
    crate::user::entry::init_this_cpu();
    arch::xstate::init();

    // Everything up to the end of the kernel image, the boot information
    // and the module stay out of the allocator.
    // SAFETY: taking the address of a linker symbol.
    let kernel_end = mm::virt_to_phys((&raw const __kernel_end) as usize);
    let info = early_info(info_phys, protocol);
    let zero_filler = arch::cpu::zero_filling_hypervisor();
    mm::page::init(
        &info.ram,
        &[
            (0, kernel_end.next_multiple_of(4096)),
            info.info_pages,
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
    // Devices are found (their BARs sized and decoding turned on) before
    // the other CPUs start, so no CPU ever sees the memory map change
    // under its feet (`device::pci::size_bars`).
    crate::device::discover(&info.cmdline);
    start_cpus(&info);
    crate::object::console::start();
    arch::discipline::start();
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
    // (startup just queued the components) and halts otherwise; the other
    // CPUs join in.
    crate::sched::release_application_cpus();
    crate::sched::idle_loop()
}
