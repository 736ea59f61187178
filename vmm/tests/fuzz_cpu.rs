//! Fuzz targets for what the guest's CPU state reaches in the VMM: the MMIO
//! instruction decoder, the guest page walk and instruction fetch, and the
//! MSR and CPUID policies. Budget and replay: `tests/fuzz_driver.rs`.

#[path = "../../tests/fuzz_driver.rs"]
mod driver;
#[path = "../../tests/fuzz_alloc.rs"]
mod fuzz_alloc;

use arbitrary::Arbitrary;
use driver::Bytes;
use driver::Seq;
use starina_vmm::cpuid::CpuidPolicy;
use starina_vmm::cpuid::CpuidResult;
use starina_vmm::cpuid::Paravirt;
use starina_vmm::decode;
use starina_vmm::decode::MmioOp;
use starina_vmm::decode::MAX_INSN_LEN;
use starina_vmm::exit::cr;
use starina_vmm::exit::xcr0;
use starina_vmm::exit::VcpuState;
use starina_vmm::memory::GuestMemory;
use starina_vmm::memory::VecMemory;
use starina_vmm::msr;
use starina_vmm::msr::MsrState;

/// Register values, RIP and the segment bases the decoder's helpers read.
#[derive(Arbitrary, Debug)]
struct Regs {
    gprs: [u64; 16],
    rip: u64,
    fs_base: u64,
    gs_base: u64,
}

impl Regs {
    fn state(&self) -> VcpuState {
        let mut st = VcpuState {
            gprs: self.gprs,
            rip: self.rip,
            ..Default::default()
        };
        st.fs.base = self.fs_base;
        st.gs.base = self.gs_base;
        st
    }
}

/// Prefixes, a REX byte and the opcodes the decoder knows, so that most
/// cases get past the first bytes.
const PREFIXES: [u8; 12] = [
    0x66, 0x67, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65, 0xf0, 0xf2, 0xf3, 0x48,
];
const OPCODES: [&[u8]; 16] = [
    &[0x88],
    &[0x89],
    &[0x8a],
    &[0x8b],
    &[0xc6],
    &[0xc7],
    &[0xa0],
    &[0xa1],
    &[0xa2],
    &[0xa3],
    &[0x0f, 0xb6],
    &[0x0f, 0xb7],
    &[0x0f, 0xbe],
    &[0x0f, 0xbf],
    &[0x0f],
    &[],
];

#[derive(Arbitrary, Debug)]
struct DecodeInput {
    regs: Regs,
    load_value: u64,
    /// Indexes into PREFIXES (REX: 0x40 | the low nibble of the index).
    prefixes: [Option<u8>; 4],
    opcode: u8,
    /// ModRM, SIB, displacement, immediate, or anything.
    rest: Bytes,
}

fn insn_bytes(input: &DecodeInput) -> Vec<u8> {
    let mut out = Vec::new();
    for p in input.prefixes.iter().flatten() {
        out.push(match PREFIXES[*p as usize % PREFIXES.len()] {
            0x48 => 0x40 | (p & 0xf),
            byte => byte,
        });
    }
    out.extend_from_slice(OPCODES[input.opcode as usize % OPCODES.len()]);
    out.extend_from_slice(&input.rest);
    out
}

fn check_decode(input: DecodeInput) {
    let bytes = insn_bytes(&input);
    let bytes = &bytes[..bytes.len().min(24)];
    let Ok(insn) = decode::decode(bytes) else {
        return;
    };
    let len = insn.len as usize;
    assert!(
        (1..=MAX_INSN_LEN).contains(&len) && len <= bytes.len(),
        "{insn:?}"
    );
    assert!(matches!(insn.size, 1 | 2 | 4 | 8), "{insn:?}");
    // The instruction's own bytes decode to the same instruction.
    assert_eq!(decode::decode(&bytes[..len]), Ok(insn));
    let mut st = input.regs.state();
    let _ = insn.effective_address(&st);
    if let Some(v) = insn.store_value(&st) {
        assert!(
            insn.size == 8 || v >> (insn.size as u32 * 8) == 0,
            "{insn:?}: {v:#x}"
        );
    }
    let before = st.gprs;
    insn.complete_load(&mut st, input.load_value);
    let changed = (0..16).filter(|&i| st.gprs[i] != before[i]).count();
    match insn.op {
        MmioOp::Load { .. } => assert!(changed <= 1, "{insn:?} changed {changed} registers"),
        MmioOp::Store(_) => assert_eq!(changed, 0, "{insn:?}: a store changed registers"),
    }
}

#[test]
fn fuzz_instruction_decoder() {
    driver::run("vmm::decode", 2000, check_decode);
}

/// Guest RAM holding page-table entries at chosen places.
#[derive(Arbitrary, Debug)]
struct WalkInput {
    /// (8-byte slot in a 64 KiB RAM, entry value). Entries pointing into
    /// the RAM are made likely by masking some of them.
    entries: Seq<(u16, u64, bool)>,
    cr0_pg: bool,
    lma: bool,
    la57: bool,
    cr3: u64,
    gva: u64,
    rip: u64,
    cs_base: u64,
    cs_long: bool,
}

const WALK_RAM: usize = 64 << 10;

fn walk_ram(entries: &[(u16, u64, bool)]) -> VecMemory {
    let mut mem = VecMemory::new(WALK_RAM);
    for &(slot, entry, near) in entries {
        let entry = if near { entry & 0xf0ff } else { entry };
        let gpa = (slot as u64 * 8) % WALK_RAM as u64;
        mem.write_u64(gpa, entry).expect("slot inside RAM");
    }
    mem
}

fn check_walk(input: WalkInput) {
    let mem = walk_ram(&input.entries);
    let cr3 = input.cr3 & 0xf000;
    for levels in [4, 5] {
        if let Ok(gpa) = decode::walk_guest_page_table_levels(&mem, cr3, input.gva, levels) {
            assert_eq!(
                gpa & 0xfff,
                input.gva & 0xfff,
                "the page offset survives the walk"
            );
        }
    }
    let mut st = VcpuState {
        rip: input.rip,
        cr3,
        ..Default::default()
    };
    st.cr0 = if input.cr0_pg { cr::CR0_PG } else { 0 };
    st.efer = if input.lma { cr::EFER_LMA } else { 0 };
    st.cr4 = if input.la57 { cr::CR4_LA57 } else { 0 };
    st.cs.base = input.cs_base;
    st.cs.attrib = if input.cs_long { 1 << 9 } else { 0 };
    let _ = decode::translate(&mem, &st, input.gva);
    let mut buf = [0u8; MAX_INSN_LEN];
    if let Ok(n) = decode::fetch_instruction(&mem, &st, &mut buf) {
        assert!((1..=MAX_INSN_LEN).contains(&n), "fetched {n} bytes");
    }
}

#[test]
fn fuzz_guest_page_walk() {
    driver::run("vmm::page_walk", 1000, check_walk);
}

/// MSR indexes the policy knows, and any other.
const MSRS: [u32; 12] = [
    msr::MSR_IA32_TSC,
    msr::MSR_IA32_PLATFORM_ID,
    msr::MSR_IA32_APIC_BASE,
    msr::MSR_IA32_FEATURE_CONTROL,
    msr::MSR_IA32_BIOS_SIGN_ID,
    msr::MSR_IA32_MISC_ENABLE,
    msr::MSR_IA32_PAT,
    msr::MSR_EFER,
    msr::MSR_TSC_AUX,
    msr::MSR_AMD64_HWCR,
    msr::MSR_KVM_WALL_CLOCK_NEW,
    msr::MSR_KVM_SYSTEM_TIME_NEW,
];

#[derive(Arbitrary, Debug)]
enum MsrOp {
    Read {
        known: Option<u8>,
        index: u32,
        host_tsc: u64,
    },
    Write {
        known: Option<u8>,
        index: u32,
        value: u64,
        host_tsc: u64,
    },
}

fn msr_index(known: Option<u8>, index: u32) -> u32 {
    known.map_or(index, |k| MSRS[k as usize % MSRS.len()])
}

fn check_msrs((kvm_clock, ops): (bool, Seq<MsrOp>)) {
    let mut msrs = MsrState {
        kvm_clock,
        ..Default::default()
    };
    for op in ops.0 {
        match op {
            MsrOp::Read {
                known,
                index,
                host_tsc,
            } => {
                let _ = msrs.read(msr_index(known, index), host_tsc);
            }
            MsrOp::Write {
                known,
                index,
                value,
                host_tsc,
            } => {
                let index = msr_index(known, index);
                let written = msrs.write(index, value, host_tsc).is_ok();
                if written && index == msr::MSR_IA32_PAT {
                    assert_eq!(msrs.read(index, host_tsc), Ok(value), "PAT reads back");
                }
                if written && index == msr::MSR_IA32_TSC {
                    assert_eq!(msrs.read(index, host_tsc), Ok(value), "TSC reads back");
                }
            }
        }
    }
}

#[test]
fn fuzz_msr_policy() {
    driver::run("vmm::msr", 2000, check_msrs);
}

#[derive(Arbitrary, Debug)]
struct CpuidInput {
    lapic: bool,
    x2apic: bool,
    kvm: Option<u32>,
    tsc_khz: Option<u32>,
    /// The host's answers: mixed from this seed, or all ones.
    host_seed: Option<u64>,
    /// The guest's XCR0 (the kernel only reports valid ones, but the
    /// policy must not trust that).
    xcr0: u64,
    queries: Seq<(u32, u32, u64)>,
}

fn host_answer(seed: Option<u64>, leaf: u32, subleaf: u32) -> CpuidResult {
    let Some(seed) = seed else {
        return CpuidResult {
            eax: u32::MAX,
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
        };
    };
    let mix = |k: u64| {
        let z =
            (seed ^ ((leaf as u64) << 32 | subleaf as u64) ^ k).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (z ^ (z >> 29)) as u32
    };
    CpuidResult {
        eax: mix(1),
        ebx: mix(2),
        ecx: mix(3),
        edx: mix(4),
    }
}

/// Leaves worth hitting: basic, hypervisor and extended ranges.
fn cpuid_leaf(raw: u32) -> u32 {
    match raw >> 30 {
        0 => raw & 0x1f,
        1 => 0x4000_0000 | (raw & 0x1f),
        2 => 0x8000_0000 | (raw & 0x1f),
        _ => raw,
    }
}

fn check_cpuid(input: CpuidInput) {
    let policy = CpuidPolicy {
        lapic: input.lapic,
        x2apic: input.x2apic,
        paravirt: input
            .kvm
            .map_or(Paravirt::None, |features| Paravirt::Kvm { features }),
        tsc_khz: input.tsc_khz,
    };
    let host = |leaf, subleaf| host_answer(input.host_seed, leaf, subleaf);
    for &(raw_leaf, subleaf, cr4) in input.queries.iter() {
        let leaf = cpuid_leaf(raw_leaf);
        let r = policy.cpuid(leaf, subleaf, cr4, input.xcr0, &host);
        if leaf == 1 && r != CpuidResult::default() {
            assert_eq!(r.ecx & (1 << 5), 0, "VMX is never shown");
            assert_ne!(r.ecx & (1 << 31), 0, "the hypervisor bit is always shown");
        }
        if leaf == 0x8000_0001 {
            assert_eq!(r.ecx & (1 << 2), 0, "SVM is never shown");
        }
        check_xsave_agrees(&policy, leaf, subleaf, r, &host);
    }
}

/// What CPUID says about XSAVE matches the mask the kernel is given.
fn check_xsave_agrees(
    policy: &CpuidPolicy,
    leaf: u32,
    subleaf: u32,
    r: CpuidResult,
    host: &dyn Fn(u32, u32) -> CpuidResult,
) {
    let mask = policy.xcr0_mask(host);
    assert_eq!(
        xcr0::consistent(mask),
        mask,
        "mask {mask:#x} is a valid XCR0"
    );
    assert_eq!(
        mask & !xcr0::SWITCHABLE,
        0,
        "mask {mask:#x} beyond what the kernel switches"
    );
    if leaf == 0xd && subleaf == 0 && r != CpuidResult::default() {
        assert_eq!(
            (r.edx as u64) << 32 | r.eax as u64,
            mask,
            "leaf 0xD.0 offers the mask"
        );
        assert!(r.ebx <= r.ecx, "size for XCR0 within the maximum");
    }
    if leaf == 0xd && subleaf == 1 {
        assert_eq!(r.eax & (1 << 3), 0, "no XSAVES");
        assert_eq!((r.ecx, r.edx), (0, 0), "no supervisor states");
    }
    if leaf == 0xd && (2..64).contains(&subleaf) && mask & (1 << subleaf) == 0 {
        assert_eq!(r, CpuidResult::default(), "component {subleaf} not offered");
    }
    if leaf == 1 && r.ecx & (1 << 28) != 0 {
        assert_ne!(mask & xcr0::AVX, 0, "AVX shown but not enabled by XSETBV");
    }
    if leaf == 7 && subleaf == 0 && r.ebx & (1 << 16) != 0 {
        assert_eq!(
            mask & xcr0::AVX512,
            xcr0::AVX512,
            "AVX-512 shown but not enabled"
        );
    }
}

#[test]
fn fuzz_cpuid_policy() {
    driver::run("vmm::cpuid", 1000, check_cpuid);
}
