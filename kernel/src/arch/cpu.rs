//! Thin wrappers over privileged x86_64 instructions.

use core::arch::asm;

#[inline(always)]
pub fn outb(port: u16, value: u8) {
    // SAFETY: port I/O has no memory effects visible to Rust; the kernel
    // alone runs at CPL0 and owns the ports it touches.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

#[inline(always)]
pub fn outw(port: u16, value: u16) {
    // SAFETY: as for `outb`.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}

#[inline(always)]
pub fn inb(port: u16) -> u8 {
    let value: u8;
    // SAFETY: as for `outb`.
    unsafe { asm!("in al, dx", out("al") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

#[inline(always)]
pub fn rdtsc() -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: rdtsc only reads the time-stamp counter.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    ((hi as u64) << 32) | lo as u64
}

#[inline(always)]
pub fn rdmsr(msr: u32) -> u64 {
    let lo: u32;
    let hi: u32;
    // SAFETY: the caller names an MSR that exists on every x86_64 CPU we
    // boot on (checked through CPUID where needed).
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    ((hi as u64) << 32) | lo as u64
}

/// Writes an MSR.
///
/// # Safety
/// The MSR and value must be valid and must not break the kernel's own
/// invariants (paging, segments, ...).
#[inline(always)]
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    }
}

/// The hypervisor running this machine, if it is one that hands a guest
/// its RAM zero-filled (QEMU's TCG, KVM: anonymous host memory): its CPUID
/// signature. `None` on bare metal or another hypervisor.
pub fn zero_filling_hypervisor() -> Option<&'static str> {
    const HYPERVISOR_PRESENT: u32 = 1 << 31;
    if cpuid(1, 0)[2] & HYPERVISOR_PRESENT == 0 {
        return None;
    }
    let [_, b, c, d] = cpuid(0x4000_0000, 0);
    let mut signature = [0u8; 12];
    for (chunk, word) in signature.chunks_mut(4).zip([b, c, d]) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    match &signature {
        b"TCGTCGTCGTCG" => Some("QEMU TCG"),
        b"KVMKVMKVM\0\0\0" => Some("KVM"),
        _ => None,
    }
}

#[inline(always)]
pub fn cpuid(leaf: u32, subleaf: u32) -> [u32; 4] {
    let (a, b, c, d): (u32, u32, u32, u32);
    // SAFETY: cpuid is unprivileged and side-effect free; rbx is reserved by
    // LLVM so we move it through another register.
    unsafe {
        asm!("mov {tmp:r}, rbx", "cpuid", "xchg {tmp:r}, rbx",
             tmp = out(reg) b, inout("eax") leaf => a, inout("ecx") subleaf => c, out("edx") d,
             options(nomem, nostack, preserves_flags))
    }
    [a, b, c, d]
}

#[inline(always)]
pub fn interrupts_enabled() -> bool {
    let flags: u64;
    // SAFETY: reads RFLAGS through the stack (push/pop), nothing else.
    unsafe { asm!("pushfq", "pop {}", out(reg) flags, options(nomem, preserves_flags)) }
    flags & (1 << 9) != 0
}

#[inline(always)]
pub fn disable_interrupts() {
    // SAFETY: masking interrupts cannot break memory safety.
    unsafe { asm!("cli", options(nomem, nostack)) }
}

#[inline(always)]
pub fn enable_interrupts() {
    // SAFETY: the IDT is loaded before the first call (boot order).
    unsafe { asm!("sti", options(nomem, nostack)) }
}

/// Enables interrupts and halts until one arrives, atomically (the `sti`
/// shadow covers the `hlt`), so a wake-up cannot slip in between.
#[inline(always)]
pub fn enable_interrupts_and_halt() {
    // SAFETY: as for `enable_interrupts`.
    unsafe { asm!("sti; hlt", options(nomem, nostack)) }
}

pub fn halt_forever() -> ! {
    loop {
        disable_interrupts();
        // SAFETY: hlt with interrupts off parks the CPU.
        unsafe { asm!("hlt", options(nomem, nostack)) }
    }
}

#[inline(always)]
pub fn read_cr2() -> u64 {
    let v: u64;
    // SAFETY: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

#[inline(always)]
pub fn read_cr3() -> u64 {
    let v: u64;
    // SAFETY: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) v, options(nomem, nostack, preserves_flags)) }
    v
}

/// Flushes one page's translation.
#[inline(always)]
pub fn invlpg(vaddr: u64) {
    // SAFETY: invalidating a TLB entry is always safe.
    unsafe { asm!("invlpg [{}]", in(reg) vaddr, options(nostack, preserves_flags)) }
}

#[inline(always)]
pub fn outl(port: u16, value: u32) {
    // SAFETY: as for `outb`.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

#[inline(always)]
pub fn inl(port: u16) -> u32 {
    let value: u32;
    // SAFETY: as for `outb`.
    unsafe { asm!("in eax, dx", out("eax") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}

#[inline(always)]
pub fn inw(port: u16) -> u16 {
    let value: u16;
    // SAFETY: as for `outb`.
    unsafe { asm!("in ax, dx", out("ax") value, in("dx") port, options(nomem, nostack, preserves_flags)) }
    value
}
