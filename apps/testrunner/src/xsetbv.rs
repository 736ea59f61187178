//! A guest's XSETBV sets the guest's XCR0, never the host's, and a bad
//! value faults in the guest (#GP) without changing anything.

use alloc::format;
use alloc::string::ToString;

use starina::abi::vcpu::cr;
use starina::abi::vcpu::xcr0;
use starina::abi::vcpu::VcpuState;
use starina::abi::vcpu::VmExit;
use starina::hypervisor::host_cpuid;
use starina::hypervisor::Injection;

use super::real_mode_state;
use super::Ctx;
use super::TestResult;

/// Real mode, CR4.OSXSAVE on: `xsetbv(0, x87|SSE|AVX)`, `xgetbv`,
/// `out 0x80, al`, then `xsetbv(0, 0xdeadbeef)` (reserved bits: #GP) and
/// `hlt`. The #GP handler (vector 13, at 0x3000) does `out 0x80, 13; hlt`.
const GUEST: &[u8] = &[
    0x66, 0xb9, 0x00, 0x00, 0x00, 0x00, // mov ecx, 0
    0x66, 0xb8, 0x07, 0x00, 0x00, 0x00, // mov eax, 7
    0x66, 0x31, 0xd2, // xor edx, edx
    0x0f, 0x01, 0xd1, // xsetbv
    0x66, 0x31, 0xc0, // xor eax, eax
    0x0f, 0x01, 0xd0, // xgetbv
    0xe6, 0x80, // out 0x80, al
    0x66, 0xb8, 0xef, 0xbe, 0xad, 0xde, // mov eax, 0xdeadbeef
    0x0f, 0x01, 0xd1, // xsetbv
    0xf4, // hlt
];
const GP_HANDLER: &[u8] = &[0xb0, 0x0d, 0xe6, 0x80, 0xf4];
const GUEST_XCR0: u64 = xcr0::X87 | xcr0::SSE | xcr0::AVX;

/// The host's XSAVE area size for its current XCR0 (CPUID 0xD.0 EBX): it
/// grows if a guest's XCR0 stays loaded in the host.
fn host_xsave_size() -> u32 {
    host_cpuid(0xd, 0)[1]
}

pub(super) fn guest_xsetbv_stays_in_the_guest(cx: &mut Ctx) -> TestResult {
    let has_avx_state = host_cpuid(0, 0)[0] >= 0xd
        && host_cpuid(1, 0)[2] & (1 << 26) != 0
        && host_cpuid(0xd, 0)[0] as u64 & GUEST_XCR0 == GUEST_XCR0;
    if !has_avx_state {
        log::info!(
            "guest_xsetbv_stays_in_the_guest: no XSAVE with AVX on this CPU; nothing to test"
        );
        return Ok(());
    }
    let hv = cx.hypervisor.as_ref().ok_or("no hypervisor privilege")?;
    let (ram, vcpu) = hv
        .create_vm(2 << 20)
        .map_err(|e| format!("create_vm: {e}"))?;
    ram.write_bytes(0x1000, GUEST).map_err(|e| e.to_string())?;
    ram.write_bytes(0x3000, GP_HANDLER)
        .map_err(|e| e.to_string())?;
    // Real-mode interrupt vector table: vector 13 -> 0000:3000.
    ram.write_bytes(13 * 4, &[0x00, 0x30, 0x00, 0x00])
        .map_err(|e| e.to_string())?;
    let mut state = real_mode_state(0x1000);
    state.cr4 |= cr::CR4_OSXSAVE;
    let host_size = host_xsave_size();
    // Skips host interrupts and the kernel's XSETBV reports (CPUs that
    // honor the intercept report one per XSETBV; QEMU before 8.1 none).
    let run = |state: &mut VcpuState| loop {
        match vcpu.run(state, Injection::None) {
            Ok(VmExit::HostInterrupt) | Ok(VmExit::Xsetbv { .. }) => continue,
            other => return other,
        }
    };
    match run(&mut state).map_err(|e| e.to_string())? {
        VmExit::Io {
            port: 0x80,
            value,
            next_rip,
            ..
        } => {
            check!(
                value as u64 & 0xff == GUEST_XCR0,
                "the guest's XGETBV read {value:#x}, wanted {GUEST_XCR0:#x}"
            );
            state.rip = next_rip;
        }
        other => {
            return Err(format!(
                "expected OUT 0x80 after XSETBV, got {other:?} at rip {:#x}",
                state.rip
            ))
        }
    }
    check!(
        state.xcr0 == GUEST_XCR0,
        "the kernel reports guest XCR0 {:#x}",
        state.xcr0
    );
    let size = host_xsave_size();
    check!(size == host_size, "the host's XSAVE size went from {host_size} to {size}: the guest's XCR0 leaked into the host");
    match run(&mut state).map_err(|e| e.to_string())? {
        VmExit::Io {
            port: 0x80, value, ..
        } if value & 0xff == 13 => {}
        other => {
            return Err(format!(
                "expected the #GP handler's OUT 0x80, 13, got {other:?} at rip {:#x}",
                state.rip
            ))
        }
    }
    check!(
        state.xcr0 == GUEST_XCR0,
        "a refused XSETBV changed the guest's XCR0 to {:#x}",
        state.xcr0
    );
    check!(
        host_xsave_size() == host_size,
        "the host's XCR0 changed after a refused XSETBV"
    );
    Ok(())
}
