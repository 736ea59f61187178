//! x86_64 specifics. On the host (unit tests) only the portable facade in
//! [`irq`] and [`time`] exists, backed by plain atomics.

#[cfg(not(test))]
pub mod acpi;
#[cfg(not(test))]
mod acpi_off;
#[cfg(not(test))]
mod ap_trampoline;
#[cfg(not(test))]
pub mod apic;
pub mod asid;
#[cfg(not(test))]
mod boot_asm;
pub mod clock;
#[cfg(not(test))]
pub mod cpu;
#[cfg(not(test))]
pub mod discipline;
#[cfg(not(test))]
pub mod hpet;
#[cfg(not(test))]
pub mod hypervisor;
#[cfg(not(test))]
pub mod ioapic;
pub mod rtc;
#[cfg(not(test))]
pub mod serial;
#[cfg(not(test))]
pub mod smp;
#[cfg(not(test))]
pub mod svm;
#[cfg(not(test))]
pub mod trap;
pub mod vmx;
pub mod xcr0;
#[cfg(not(test))]
pub mod xstate;

#[cfg(not(test))]
pub use boot_asm::boot_pml4_phys;
#[cfg(not(test))]
pub use boot_asm::BOOT_MULTIBOOT2;
#[cfg(not(test))]
pub use boot_asm::BOOT_MULTIBOOT2_BAD_MAGIC;
#[cfg(not(test))]
pub use boot_asm::BOOT_PVH;

/// Interrupt masking around critical sections.
pub mod irq {
    /// Whether this CPU holds a kernel spin lock: in thread context,
    /// interrupts are off exactly while one is held (see `sync`).
    #[cfg(not(test))]
    pub fn holds_locks() -> bool {
        !super::cpu::interrupts_enabled()
    }

    /// Disables interrupts; returns whether they were enabled.
    #[cfg(not(test))]
    pub fn save_and_disable() -> bool {
        let was = super::cpu::interrupts_enabled();
        super::cpu::disable_interrupts();
        was
    }

    #[cfg(not(test))]
    pub fn restore(enabled: bool) {
        if enabled {
            super::cpu::enable_interrupts();
        }
    }

    #[cfg(test)]
    pub fn save_and_disable() -> bool {
        false
    }

    #[cfg(test)]
    pub fn restore(_enabled: bool) {}
}

/// Monotonic time.
pub mod time {
    #[cfg(not(test))]
    pub fn now_ns() -> u64 {
        super::clock::now_ns()
    }

    /// Host tests drive time by hand.
    #[cfg(test)]
    pub static FAKE_NOW: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

    #[cfg(test)]
    pub fn now_ns() -> u64 {
        FAKE_NOW.load(core::sync::atomic::Ordering::Relaxed)
    }
}

/// Writes a value to QEMU's isa-debug-exit port: QEMU exits with status
/// `(code << 1) | 1`. A machine without it (Bochs) goes on: we print the
/// code on the console (the host tool's status) and power off through
/// ACPI; without a way to do that we halt.
#[cfg(not(test))]
pub fn power_off(code: u8) -> ! {
    cpu::disable_interrupts();
    cpu::outb(0xf4, code);
    crate::klog::write_unlocked(format_args!(
        "\n{} {code}\n",
        starina::abi::markers::POWER_OFF
    ));
    serial::drain();
    acpi_off::power_off();
    cpu::halt_forever()
}
