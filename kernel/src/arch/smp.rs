//! Brings up the application processors (APs): every CPU the MADT lists
//! besides the boot CPU, up to `percpu::MAX_CPUS` in all. Each gets
//! INIT, then startup IPIs into the real-mode trampoline
//! (`ap_trampoline`), and comes to [`ap_main`] on a kernel stack of its
//! own, where it points its GS base at its per-CPU slot, loads its own GDT
//! and TSS and the shared IDT, enables its local APIC and timer, sets XCR0
//! as the boot CPU did, says it is online and waits for the scheduler
//! (`sched::run_application_cpu`), whose idle thread it then becomes.
//!
//! The boot CPU waits for each AP in turn, for a bounded time: an AP that
//! does not come up is logged, sent INIT again (so it stays out of the
//! trampoline the next AP uses) and skipped.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use super::ap_trampoline;
use super::ap_trampoline::ApStart;
use super::apic;
use super::clock::now_ns;
use super::cpu;
use super::trap::CpuTables;
use crate::acpi::madt::Madt;
use crate::mm::page::FIRST_ALLOCATABLE;
use crate::mm::RamRegion;
use crate::percpu;
use crate::percpu::MAX_CPUS;

/// After INIT, before the first startup IPI (the MP specification's).
const INIT_DELAY_NS: u64 = 10_000_000;
/// Between the two startup IPIs.
const STARTUP_DELAY_NS: u64 = 200_000;
/// How long an AP may take from its startup IPI to online. Generous: QEMU
/// translates the AP's first code as it runs it, on a shared machine.
const ONLINE_TIMEOUT_NS: u64 = 1_000_000_000;
/// The trampoline's page if it is free RAM (the usual choice), else the
/// lowest free page of RAM below 1 MiB.
const PREFERRED_TRAMPOLINE: u64 = 0x8000;
/// The highest APIC id the xAPIC's 8-bit destination reaches (255 is
/// broadcast).
const MAX_XAPIC_ID: u32 = 254;

/// Starts every AP the MADT lists (none without a MADT), then logs the
/// CPUs online. `ram` is the usable RAM; `avoid` ranges hold boot data
/// still in use (the trampoline's page must be neither).
pub fn start(madt: Option<&Madt>, ram: &[RamRegion], avoid: &[(u64, u64)]) {
    let boot_apic_id = apic::id();
    percpu::init_boot_cpu(boot_apic_id);
    let aps = madt
        .map(|m| application_cpus(m, boot_apic_id))
        .unwrap_or_default();
    if !aps.is_empty() {
        match trampoline_page(ram, avoid) {
            Some(page) => start_all(&aps, page),
            None => log::warn!("smp: no free page of RAM below 1 MiB for the APs' trampoline"),
        }
    }
    log_online();
}

/// The APIC ids to start: the MADT's CPUs but the boot CPU, as many as
/// fit in `MAX_CPUS` with it, and only those the xAPIC can address.
fn application_cpus(madt: &Madt, boot_apic_id: u32) -> Vec<u32> {
    if madt.cpus_ignored > 0 {
        log::warn!(
            "smp: the MADT lists {} more CPUs than the {MAX_CPUS} the kernel runs on: ignored",
            madt.cpus_ignored
        );
    }
    let mut aps = Vec::new();
    for &id in madt.cpus.iter().filter(|&&id| id != boot_apic_id) {
        if id > MAX_XAPIC_ID {
            log::warn!("smp: CPU with APIC id {id} needs x2APIC mode: ignored");
        } else if aps.len() + 1 < MAX_CPUS {
            aps.push(id);
        } else {
            log::warn!(
                "smp: CPU with APIC id {id} is past the {MAX_CPUS} the kernel runs on: ignored"
            );
        }
    }
    aps
}

/// A page of RAM below 1 MiB (never the page allocator's) outside `avoid`.
fn trampoline_page(ram: &[RamRegion], avoid: &[(u64, u64)]) -> Option<u64> {
    let usable = |page: u64| {
        let end = page + 4096;
        ram.iter()
            .any(|r| r.base <= page && end <= r.base.saturating_add(r.len))
            && avoid.iter().all(|&(b, e)| end <= b || e <= page)
    };
    let candidates = (1..FIRST_ALLOCATABLE / 4096).map(|i| i * 4096);
    core::iter::once(PREFERRED_TRAMPOLINE)
        .chain(candidates)
        .find(|&page| page < FIRST_ALLOCATABLE && usable(page))
}

fn spin_for(ns: u64) {
    let start = now_ns();
    while now_ns() - start < ns {
        core::hint::spin_loop();
    }
}

/// INIT to every AP at once, one wait, then each AP started in turn.
fn start_all(aps: &[u32], page: u64) {
    for &id in aps {
        if !apic::send_init(id) {
            log::warn!("smp: INIT to APIC id {id} was not sent");
        }
    }
    spin_for(INIT_DELAY_NS);
    let mut index = 1;
    for &id in aps {
        if start_one(index, id, page) {
            index += 1;
        }
    }
}

/// Starts the AP with `apic_id` as CPU `index`; whether it came online.
fn start_one(index: usize, apic_id: u32, page: u64) -> bool {
    let Some(slot) = percpu::cpu(index) else {
        return false;
    };
    let Some(stack_top) = slot.prepare(apic_id) else {
        log::warn!("smp: no memory for the stacks of APIC id {apic_id}: not started");
        return false;
    };
    ap_trampoline::install(
        page,
        &ApStart {
            cr3: super::boot_pml4_phys(),
            stack_top,
            cpu_index: index as u64,
            entry: ap_main,
        },
    );
    let started = now_ns();
    for _ in 0..2 {
        apic::send_startup(apic_id, page);
        spin_for(STARTUP_DELAY_NS);
        if slot.is_online() {
            return true;
        }
    }
    while now_ns() - started < ONLINE_TIMEOUT_NS {
        if slot.is_online() {
            return true;
        }
        core::hint::spin_loop();
    }
    log::warn!(
        "smp: the CPU with APIC id {apic_id} did not come online within {} ms: skipped",
        ONLINE_TIMEOUT_NS / 1_000_000
    );
    // Back to waiting for a startup IPI: out of the trampoline and off
    // the stacks the next AP gets.
    apic::send_init(apic_id);
    false
}

/// `smp: N CPUs online (APIC ids a,b,...)`.
fn log_online() {
    let mut ids = String::new();
    let mut count = 0;
    for cpu in percpu::online() {
        let comma = if count == 0 { "" } else { "," };
        let _ = write!(ids, "{comma}{}", cpu.apic_id());
        count += 1;
    }
    let plural = if count == 1 { "" } else { "s" };
    log::info!("smp: {count} CPU{plural} online (APIC ids {ids})");
}

/// Where an AP comes from the trampoline, on its own kernel stack.
extern "C" fn ap_main(index: u64) -> ! {
    let Some(slot) = percpu::cpu(index as usize) else {
        cpu::halt_forever()
    };
    percpu::install(index as usize);
    // SAFETY: the boot CPU prepared this slot's tables for this CPU alone
    // before starting it and leaves them alone from then on (`percpu`).
    unsafe { CpuTables::load(slot.tables()) };
    crate::user::entry::init_this_cpu();
    apic::init_application_cpu();
    super::xstate::init_application_cpu();
    crate::mm::tlb::flush_here();
    if apic::id() != slot.apic_id() {
        cpu::halt_forever()
    }
    slot.set_online();
    crate::sched::run_application_cpu()
}
