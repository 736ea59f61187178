//! `--xsetbv-probe`: what a guest sees of XCR0 (the e2e test
//! `tests/tests/linux.rs` runs it as `/init --xsetbv-probe`).
//!
//! 1. XGETBV: the guest's XCR0 must be what CPUID leaf 0xD offers (Linux
//!    enables every offered user component) and leaf 0xD.0 EBX its size.
//! 2. XSETBV with a garbage value from user mode (CPL 3): the CPU raises
//!    #GP, which Linux turns into SIGSEGV; XCR0 stays as it was.
//! 3. With AVX on: a YMM register keeps its upper half across thousands of
//!    VM exits (CPUID), so the host saves and restores the guest's AVX state.
//!
//! Prints one `key=value` line per fact and a final `xsetbv-probe: ok` (exit
//! 0) or `xsetbv-probe: FAILED: why` (exit 1).

use std::arch::x86_64::__cpuid_count;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

/// EDX:EAX for the user-mode XSETBV: x87 off, reserved bits on.
const GARBAGE: u64 = 0xdead_beef_0000_0006;
/// VM exits the AVX check makes while YMM0 holds its pattern.
const EXITS: u32 = 20_000;

const XCR0_SSE: u64 = 1 << 1;
const XCR0_AVX: u64 = 1 << 2;

static SIGNAL: AtomicI32 = AtomicI32::new(0);
static SI_CODE: AtomicI32 = AtomicI32::new(0);
static FAULT_RIP: AtomicU64 = AtomicU64::new(0);

/// The mode's entry: runs the probe, prints the verdict, exits 1 on failure.
pub fn main() {
    match run() {
        Ok(()) => println!("xsetbv-probe: ok"),
        Err(e) => {
            println!("xsetbv-probe: FAILED: {e}");
            std::process::exit(1);
        }
    }
}

fn run() -> Result<(), String> {
    let xsave = leaf(1, 0).ecx & (1 << 27) != 0;
    println!("osxsave={xsave}");
    if !xsave {
        return Err("CPUID.1:ECX.OSXSAVE is clear: the guest kernel did not enable XSAVE".into());
    }
    let xcr0 = xgetbv();
    let d0 = leaf(0xd, 0);
    let offered = (d0.edx as u64) << 32 | d0.eax as u64;
    println!("xcr0={xcr0:#x}");
    println!(
        "cpuid_d0=eax:{:#x},ebx:{},ecx:{},edx:{:#x}",
        d0.eax, d0.ebx, d0.ecx, d0.edx
    );
    if xcr0 != offered {
        return Err(format!(
            "XCR0 {xcr0:#x} is not what CPUID leaf 0xD offers ({offered:#x})"
        ));
    }
    let size = standard_size(xcr0);
    if d0.ebx != size {
        return Err(format!(
            "CPUID 0xD.0 EBX says {} bytes for XCR0 {xcr0:#x}, its components end at {size}",
            d0.ebx
        ));
    }
    let (signal, si_code) = user_mode_xsetbv()?;
    println!("signal={} si_code={si_code}", signal_name(signal));
    let after = xgetbv();
    println!("xcr0_after={after:#x}");
    if signal != libc::SIGSEGV {
        return Err(format!(
            "XSETBV at CPL 3 raised {} instead of SIGSEGV (#GP)",
            signal_name(signal)
        ));
    }
    if after != xcr0 {
        return Err(format!("XCR0 changed from {xcr0:#x} to {after:#x}"));
    }
    if xcr0 & (XCR0_SSE | XCR0_AVX) == XCR0_SSE | XCR0_AVX {
        // SAFETY: CPUID offers AVX state and XCR0 enables it (checked).
        let kept = unsafe { ymm_survives_exits(EXITS) };
        println!("ymm_upper_kept={kept} exits={EXITS}");
        if !kept {
            return Err("YMM0's upper half changed across VM exits".into());
        }
    }
    Ok(())
}

fn leaf(leaf: u32, sub: u32) -> std::arch::x86_64::CpuidResult {
    __cpuid_count(leaf, sub)
}

/// XSAVE standard-format size for `xcr0`: past the last component's end.
fn standard_size(xcr0: u64) -> u32 {
    (2..64)
        .filter(|i| xcr0 & (1 << i) != 0)
        .map(|i| {
            let c = leaf(0xd, i);
            c.ebx + c.eax
        })
        .fold(576, u32::max)
}

fn xgetbv() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV with ECX=0 reads XCR0; CR4.OSXSAVE is on (checked).
    unsafe {
        std::arch::asm!("xgetbv", in("ecx") 0, out("eax") lo, out("edx") hi,
                        options(nomem, nostack, preserves_flags))
    };
    (hi as u64) << 32 | lo as u64
}

/// Notes the signal and steps over the 3-byte XSETBV.
extern "C" fn on_fault(signal: i32, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    SIGNAL.store(signal, Ordering::SeqCst);
    // SAFETY: the kernel passes a valid siginfo and ucontext to an
    // SA_SIGINFO handler; we change only the saved RIP.
    unsafe {
        SI_CODE.store((*info).si_code, Ordering::SeqCst);
        let uc = &mut *(context as *mut libc::ucontext_t);
        let rip = &mut uc.uc_mcontext.gregs[libc::REG_RIP as usize];
        FAULT_RIP.store(*rip as u64, Ordering::SeqCst);
        *rip += 3;
    }
}

/// Executes XSETBV(0, GARBAGE) in user mode; returns the signal it raised
/// and its si_code.
fn user_mode_xsetbv() -> Result<(i32, i32), String> {
    let handler: extern "C" fn(i32, *mut libc::siginfo_t, *mut libc::c_void) = on_fault;
    let mut old = [std::mem::MaybeUninit::<libc::sigaction>::zeroed(); 2];
    for (i, &sig) in [libc::SIGSEGV, libc::SIGILL].iter().enumerate() {
        // SAFETY: a zeroed sigaction with our handler and SA_SIGINFO is a
        // valid action; `old` receives the previous one.
        let rc = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = handler as usize;
            act.sa_flags = libc::SA_SIGINFO;
            libc::sigaction(sig, &act, old[i].as_mut_ptr())
        };
        if rc != 0 {
            return Err(format!("sigaction: {}", std::io::Error::last_os_error()));
        }
    }
    // SAFETY: XSETBV at CPL 3 faults before it changes anything; the
    // handler resumes after the instruction (0F 01 D1, 3 bytes).
    unsafe {
        std::arch::asm!(
            ".byte 0x0f, 0x01, 0xd1",
            in("ecx") 0,
            in("eax") GARBAGE as u32,
            in("edx") (GARBAGE >> 32) as u32,
            options(nostack)
        )
    };
    for (i, &sig) in [libc::SIGSEGV, libc::SIGILL].iter().enumerate() {
        // SAFETY: restores the action saved above.
        unsafe { libc::sigaction(sig, old[i].as_ptr(), std::ptr::null_mut()) };
    }
    match SIGNAL.load(Ordering::SeqCst) {
        0 => Err("XSETBV at CPL 3 raised no fault".into()),
        signal => Ok((signal, SI_CODE.load(Ordering::SeqCst))),
    }
}

fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGSEGV => "SIGSEGV".into(),
        libc::SIGILL => "SIGILL".into(),
        other => format!("signal {other}"),
    }
}

/// Puts a pattern in YMM0, makes `exits` VM exits (CPUID, which the VMM
/// handles), and reads YMM0 back: whether all 256 bits survived.
#[target_feature(enable = "avx")]
unsafe fn ymm_survives_exits(exits: u32) -> bool {
    let pattern: [u64; 4] = [
        0x0123_4567_89ab_cdef,
        0xfedc_ba98_7654_3210,
        0x5a5a_a5a5_3c3c_c3c3,
        0x0f1e_2d3c_4b5a_6978,
    ];
    let mut out = [0u64; 4];
    // SAFETY: AVX is enabled (caller); both buffers are 32 bytes; RBX is
    // saved around CPUID, which LLVM reserves.
    unsafe {
        std::arch::asm!(
            "vmovdqu ymm0, [{src}]",
            "2:",
            "mov {saved}, rbx",
            "xor eax, eax",
            "xor ecx, ecx",
            "cpuid",
            "mov rbx, {saved}",
            "dec {n:e}",
            "jnz 2b",
            "vmovdqu [{dst}], ymm0",
            src = in(reg) pattern.as_ptr(),
            dst = in(reg) out.as_mut_ptr(),
            n = inout(reg) exits => _,
            saved = out(reg) _,
            out("eax") _,
            out("ecx") _,
            out("edx") _,
            out("ymm0") _,
            options(nostack)
        )
    };
    out == pattern
}
