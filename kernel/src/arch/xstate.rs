//! XCR0 and the XSAVE-managed state of guests.
//!
//! The host runs with XCR0 = x87|SSE: no AVX for the kernel or native
//! components, whose FPU state FXSAVE covers whole (see `sched::FxArea`).
//! Guests get their own XCR0 (set by their XSETBV, which SVM intercepts)
//! and their own save area: around each VMRUN, [`enter`] loads the guest's
//! XCR0, x87/SSE state (FXRSTOR, whatever the guest's XCR0) and extended
//! state (XRSTOR of the components its XCR0 enables); [`leave`] saves them
//! back and puts the host's XCR0 back. So one guest's AVX registers never
//! reach another guest, and the host's XCR0 is never the guest's while the
//! host runs.

use core::arch::asm;

use starina::abi::vcpu::xcr0;

use super::cpu::cpuid;
use crate::sched::FxArea;

const CPUID1_ECX_XSAVE: u32 = 1 << 26;
const CR4_OSXSAVE: u64 = 1 << 18;
/// Offset of XSTATE_BV in the XSAVE header.
const XSTATE_BV: usize = 512;
/// x87 and SSE live in the legacy region, switched by FXSAVE/FXRSTOR.
const LEGACY: u64 = xcr0::X87 | xcr0::SSE;

struct Host {
    /// Whether the CPU has XSAVE (and CR4.OSXSAVE is on).
    xsave: bool,
    xcr0: u64,
    /// What guests may enable: switchable, supported, and fitting the area.
    guest_mask: u64,
}

static HOST: spin::Once<Host> = spin::Once::new();

/// Sets the host's XCR0 (x87|SSE) if the CPU has XSAVE. Boot, once.
pub fn init() {
    HOST.call_once(|| {
        if cpuid(1, 0)[2] & CPUID1_ECX_XSAVE == 0 {
            log::info!("xsave: none on this CPU; guests keep XCR0 = x87");
            return Host {
                xsave: false,
                xcr0: xcr0::X87,
                guest_mask: xcr0::X87,
            };
        }
        let leaf = cpuid(0xd, 0);
        let supported = (leaf[3] as u64) << 32 | leaf[0] as u64;
        let host_xcr0 = LEGACY & supported;
        // SAFETY: CR4.OSXSAVE only enables XGETBV/XSETBV/XSAVE; the value
        // written to XCR0 has x87 and SSE, which every XSAVE CPU supports.
        unsafe {
            let cr4: u64;
            asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
            asm!("mov cr4, {}", in(reg) cr4 | CR4_OSXSAVE, options(nomem, nostack, preserves_flags));
            write_xcr0(host_xcr0);
        }
        let guest_mask = fitting(supported & xcr0::SWITCHABLE);
        log::info!(
            "xsave: CPU supports XCR0 {supported:#x}; host XCR0 {host_xcr0:#x}; guests may enable {guest_mask:#x}"
        );
        Host {
            xsave: true,
            xcr0: host_xcr0,
            guest_mask,
        }
    });
}

/// Sets XCR0 on an application CPU as [`init`] set it on the boot CPU
/// (which runs first).
pub fn init_application_cpu() {
    let host = host();
    if !host.xsave {
        return;
    }
    // SAFETY: as in `init`: this CPU is the same model (CPUID said XSAVE),
    // and the value has only x87 and SSE.
    unsafe {
        let cr4: u64;
        asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
        asm!("mov cr4, {}", in(reg) cr4 | CR4_OSXSAVE, options(nomem, nostack, preserves_flags));
        write_xcr0(host.xcr0);
    }
}

fn host() -> &'static Host {
    HOST.get().expect("xstate::init runs at boot")
}

/// The components of `mask` whose standard-format location (CPUID 0xD
/// subleaf i: EAX size, EBX offset) ends inside the save area, made
/// consistent.
fn fitting(mask: u64) -> u64 {
    let mut m = mask;
    for i in 2..64 {
        if m & (1 << i) != 0 {
            let [size, offset, _, _] = cpuid(0xd, i);
            if offset as usize + size as usize > xcr0::AREA_BYTES {
                m &= !(1 << i);
            }
        }
    }
    xcr0::consistent(m)
}

/// The host's XCR0.
pub fn host_xcr0() -> u64 {
    host().xcr0
}

/// The XCR0 bits the kernel can give a guest on this CPU.
pub fn guest_mask() -> u64 {
    host().guest_mask
}

/// The CPU's XCR0 now (x87 when it has no XSAVE).
pub fn read_xcr0() -> u64 {
    if !host().xsave {
        return xcr0::X87;
    }
    let (lo, hi): (u32, u32);
    // SAFETY: CR4.OSXSAVE is set (init); XGETBV with ECX=0 only reads.
    unsafe {
        asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags))
    }
    (hi as u64) << 32 | lo as u64
}

/// # Safety
/// `value` must be a valid XCR0 for this CPU (`xcr0::valid` against
/// `guest_mask`, or the host's), and CR4.OSXSAVE set.
unsafe fn write_xcr0(value: u64) {
    // SAFETY: upheld by the caller.
    unsafe {
        asm!("xsetbv", in("ecx") 0, in("eax") value as u32, in("edx") (value >> 32) as u32,
             options(nomem, nostack, preserves_flags))
    }
}

/// A guest's FPU and vector state in XSAVE standard format: the legacy
/// region (FXSAVE layout), the header, then the extended components.
#[repr(C, align(64))]
pub struct XsaveArea([u8; xcr0::AREA_BYTES]);

impl XsaveArea {
    /// The state after reset: FCW 0x37F, MXCSR 0x1F80, every extended
    /// component in its initial configuration (XSTATE_BV = 0).
    pub fn initial() -> alloc::boxed::Box<XsaveArea> {
        let mut a = alloc::boxed::Box::new(XsaveArea([0; xcr0::AREA_BYTES]));
        a.0[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        a.0[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        a
    }

    /// Forgets the state of components outside `xcr0` (they read as
    /// initial when enabled again), so XRSTOR never meets an XSTATE_BV bit
    /// that XCR0 lacks (#GP).
    pub fn limit_to(&mut self, xcr0: u64) {
        let mut bv = [0u8; 8];
        bv.copy_from_slice(&self.0[XSTATE_BV..XSTATE_BV + 8]);
        let bv = u64::from_le_bytes(bv) & xcr0;
        self.0[XSTATE_BV..XSTATE_BV + 8].copy_from_slice(&bv.to_le_bytes());
    }
}

/// Saves the host's x87/SSE state in `host_fx`, then loads `guest_xcr0`
/// and the guest's state from `area`.
///
/// # Safety
/// Nothing may touch the FPU or run host code that relies on the host's
/// XCR0 until [`leave`] (the caller holds GIF=0); `guest_xcr0` is valid for
/// this CPU (`xcr0::valid` against [`guest_mask`]) and `area`'s XSTATE_BV
/// lies within it (`XsaveArea::limit_to`).
unsafe fn enter(area: &XsaveArea, host_fx: &mut FxArea, guest_xcr0: u64) {
    let extended = guest_xcr0 & !LEGACY;
    // SAFETY: both areas are ours, aligned (16 and 64 bytes) and large
    // enough; the XCR0 value and XSTATE_BV are valid per the contract.
    unsafe {
        asm!("fxsave64 [{}]", in(reg) host_fx as *mut FxArea, options(nostack));
        if guest_xcr0 != host().xcr0 {
            write_xcr0(guest_xcr0);
        }
        asm!("fxrstor64 [{}]", in(reg) area as *const XsaveArea, options(nostack));
        if extended != 0 {
            asm!("xrstor64 [{}]", in(reg) area as *const XsaveArea,
                 in("eax") extended as u32, in("edx") (extended >> 32) as u32, options(nostack));
        }
    }
}

/// After the guest ran: saves its state into `area` and restores the
/// host's XCR0 and x87/SSE state. Returns the XCR0 the guest left, which
/// differs from the one [`enter`] loaded only if the CPU let an XSETBV
/// through without the intercept; only components in `allowed` are saved.
///
/// # Safety
/// Right after the VMRUN that followed [`enter`] with these areas, still
/// with GIF=0.
unsafe fn leave(area: &mut XsaveArea, host_fx: &FxArea, allowed: u64) -> u64 {
    let now = read_xcr0();
    let extended = now & allowed & !LEGACY;
    // SAFETY: as for `enter`; XSAVE's mask lies within the current XCR0,
    // and the host's XCR0 is valid.
    unsafe {
        if extended != 0 {
            asm!("xsave64 [{}]", in(reg) area as *mut XsaveArea,
                 in("eax") extended as u32, in("edx") (extended >> 32) as u32, options(nostack));
        }
        asm!("fxsave64 [{}]", in(reg) area as *mut XsaveArea, options(nostack));
        if now != host().xcr0 {
            write_xcr0(host().xcr0);
        }
        asm!("fxrstor64 [{}]", in(reg) host_fx as *const FxArea, options(nostack));
    }
    now
}

/// A vCPU's x87/SSE/AVX state and XCR0, and where the host's x87/SSE
/// state waits while the guest runs (kept here, not on the stack, so no
/// entry pays for zeroing 512 bytes): what both hypervisor backends
/// switch around a VM entry.
pub struct GuestXstate {
    area: alloc::boxed::Box<XsaveArea>,
    host_fx: alloc::boxed::Box<FxArea>,
    /// The guest's XCR0 (x87 after reset).
    xcr0: u64,
    /// What its XSETBV may enable (the VMM's CPUID leaf 0xD).
    allowed: u64,
}

impl GuestXstate {
    pub fn new() -> GuestXstate {
        GuestXstate {
            area: XsaveArea::initial(),
            host_fx: FxArea::initial(),
            xcr0: xcr0::X87,
            allowed: guest_mask(),
        }
    }

    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    pub fn allowed(&self) -> u64 {
        self.allowed
    }

    /// Sets what the guest's XSETBV may enable; `None` if the kernel
    /// cannot switch that on this CPU.
    pub fn set_allowed(&mut self, mask: u64) -> Option<()> {
        if !crate::arch::xcr0::may_offer(mask, guest_mask()) {
            return None;
        }
        self.allowed = mask;
        self.set_xcr0(crate::arch::xcr0::adopt(self.xcr0, mask));
        Some(())
    }

    /// The guest's XCR0 from now on (an XSETBV the backend accepted).
    pub fn set_xcr0(&mut self, value: u64) {
        self.xcr0 = value;
        self.area.limit_to(value);
    }

    /// [`enter`] with this vCPU's state.
    ///
    /// # Safety
    /// As for [`enter`]: nothing touches the FPU or relies on the host's
    /// XCR0 until [`GuestXstate::leave`].
    pub unsafe fn enter(&mut self) {
        // SAFETY: upheld by the caller; `xcr0` passed the checks of
        // `xcr0` and the area was limited to it (`set_xcr0`).
        unsafe { enter(&self.area, &mut self.host_fx, self.xcr0) }
    }

    /// [`leave`] with this vCPU's state; an XCR0 the CPU let the guest set
    /// without the intercept (QEMU before 8.1 ignores it) is kept within
    /// the rules, so the next entry loads it again.
    ///
    /// # Safety
    /// As for [`leave`].
    pub unsafe fn leave(&mut self) {
        // SAFETY: upheld by the caller.
        let seen = unsafe { leave(&mut self.area, &self.host_fx, self.allowed) };
        if seen != self.xcr0 {
            static WARNED: core::sync::atomic::AtomicBool =
                core::sync::atomic::AtomicBool::new(false);
            if !WARNED.swap(true, core::sync::atomic::Ordering::Relaxed) {
                log::warn!(
                    "hypervisor: the CPU let a guest XSETBV ({seen:#x}) through without the intercept; switching it anyway"
                );
            }
            self.set_xcr0(crate::arch::xcr0::adopt(seen, self.allowed));
        }
    }
}

impl Default for GuestXstate {
    fn default() -> GuestXstate {
        GuestXstate::new()
    }
}
