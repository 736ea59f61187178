//! Instruction fetch and decode for MMIO emulation.
//!
//! QEMU's SVM has no decode assists: on a nested page fault in an MMIO window
//! the VMM only learns the guest-physical address. It must fetch the faulting
//! instruction itself (walking the guest's page tables from CR3), decode it to
//! learn the access width, direction and register, emulate the access and
//! advance RIP by the instruction length.
//!
//! Only the MOV forms Linux's `readb/w/l/q` and `writeb/w/l/q` (and the
//! compiler around them) produce are decoded; anything else is a
//! [`DecodeError`], never a panic: the bytes are guest-controlled.

use core::fmt;

use crate::exit::cr;
use crate::exit::VcpuState;
use crate::memory::GuestMemory;
use crate::memory::MemError;

/// Longest legal x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// Why a guest virtual address could not be translated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalkError {
    /// A paging-structure entry at `level` (5..=1, 1 = PTE) is not present.
    NotPresent { level: u8 },
    /// A reserved bit is set (PS at PML4/PML5 level).
    Reserved { level: u8 },
    /// The address is not canonical for the paging mode.
    NonCanonical,
    /// 32-bit (legacy or PAE) paging is not supported: the VMM boots Linux
    /// straight into long mode.
    UnsupportedPagingMode,
    /// A paging structure lies outside guest RAM.
    Memory(MemError),
}

impl From<MemError> for WalkError {
    fn from(e: MemError) -> Self {
        WalkError::Memory(e)
    }
}

const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PRESENT: u64 = 1;
const PAGE_SIZE_BIT: u64 = 1 << 7;

/// Translates `gva` through 4-level page tables rooted at `cr3`, including
/// 2 MiB and 1 GiB pages. Access rights are not checked: the hardware already
/// did that before raising the nested page fault.
pub fn walk_guest_page_table(mem: &dyn GuestMemory, cr3: u64, gva: u64) -> Result<u64, WalkError> {
    walk_guest_page_table_levels(mem, cr3, gva, 4)
}

/// Like [`walk_guest_page_table`] with 4 or 5 levels (CR4.LA57).
pub fn walk_guest_page_table_levels(
    mem: &dyn GuestMemory,
    cr3: u64,
    gva: u64,
    levels: u8,
) -> Result<u64, WalkError> {
    let va_bits = 12 + 9 * levels as u32;
    // Canonical: bits above va_bits-1 are copies of bit va_bits-1.
    let shift = 64 - va_bits;
    if (((gva << shift) as i64) >> shift) as u64 != gva {
        return Err(WalkError::NonCanonical);
    }
    let mut table = cr3 & ADDR_MASK;
    for level in (1..=levels).rev() {
        let index = (gva >> (12 + 9 * (level as u32 - 1))) & 0x1ff;
        let entry = mem.read_u64(table + index * 8)?;
        if entry & PRESENT == 0 {
            return Err(WalkError::NotPresent { level });
        }
        if entry & PAGE_SIZE_BIT != 0 && level > 1 {
            if level > 3 {
                return Err(WalkError::Reserved { level });
            }
            let page_bits = 12 + 9 * (level as u32 - 1);
            let page_mask = (1u64 << page_bits) - 1;
            return Ok((entry & ADDR_MASK & !page_mask) | (gva & page_mask));
        }
        table = entry & ADDR_MASK;
    }
    Ok(table | (gva & 0xfff))
}

/// Translates a guest linear address in the vCPU's current paging mode.
pub fn translate(mem: &dyn GuestMemory, state: &VcpuState, gva: u64) -> Result<u64, WalkError> {
    if state.cr0 & cr::CR0_PG == 0 {
        return Ok(gva & 0xffff_ffff);
    }
    if state.efer & cr::EFER_LMA == 0 {
        return Err(WalkError::UnsupportedPagingMode);
    }
    let levels = if state.cr4 & cr::CR4_LA57 != 0 { 5 } else { 4 };
    walk_guest_page_table_levels(mem, state.cr3, gva, levels)
}

/// Fetches up to 15 instruction bytes at CS:RIP into `buf`, following the
/// guest page tables page by page. Returns how many bytes were readable
/// (fewer than 15 when the next page is unmapped, which is fine if the
/// instruction is shorter); an error only if not even the first byte is.
pub fn fetch_instruction(
    mem: &dyn GuestMemory,
    state: &VcpuState,
    buf: &mut [u8; MAX_INSN_LEN],
) -> Result<usize, WalkError> {
    let long64 = state.efer & cr::EFER_LMA != 0 && state.cs.is_long_mode_code();
    let mut linear = if long64 {
        state.rip
    } else {
        state.cs.base.wrapping_add(state.rip)
    };
    let mut done = 0;
    while done < MAX_INSN_LEN {
        let gpa = match translate(mem, state, linear) {
            Ok(gpa) => gpa,
            Err(e) if done == 0 => return Err(e),
            Err(_) => break,
        };
        let in_page = 4096 - (linear & 0xfff) as usize;
        let n = in_page.min(MAX_INSN_LEN - done);
        match mem.read(gpa, &mut buf[done..done + n]) {
            Ok(()) => {}
            Err(e) if done == 0 => return Err(e.into()),
            Err(_) => break,
        }
        done += n;
        linear = linear.wrapping_add(n as u64);
    }
    Ok(done)
}

/// Why an instruction could not be decoded for MMIO emulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The bytes end before the instruction does.
    Truncated,
    /// More than 15 bytes.
    TooLong,
    /// Not one of the MOV forms the VMM emulates (first opcode byte, and the
    /// second for 0x0f escapes).
    UnsupportedOpcode { opcode: u8, opcode2: Option<u8> },
    /// A prefix that changes the meaning of the instruction (REP on 0x0f…).
    UnsupportedPrefix(u8),
    /// ModRM names a register, not memory: cannot have faulted on MMIO.
    NoMemoryOperand,
    /// ModRM.reg must be 0 for C6/C7.
    InvalidModRm,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => write!(f, "instruction truncated"),
            DecodeError::TooLong => write!(f, "instruction longer than 15 bytes"),
            DecodeError::UnsupportedOpcode {
                opcode,
                opcode2: None,
            } => {
                write!(f, "unsupported MMIO instruction opcode {opcode:#04x}")
            }
            DecodeError::UnsupportedOpcode {
                opcode,
                opcode2: Some(o2),
            } => write!(
                f,
                "unsupported MMIO instruction opcode {opcode:#04x} {o2:#04x}"
            ),
            DecodeError::UnsupportedPrefix(p) => write!(f, "unsupported prefix {p:#04x}"),
            DecodeError::NoMemoryOperand => write!(f, "instruction has no memory operand"),
            DecodeError::InvalidModRm => write!(f, "invalid ModRM.reg for opcode"),
        }
    }
}

/// A general-purpose register operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegOperand {
    /// 0..=15, as [`crate::exit::Gpr`].
    pub index: u8,
    /// AH/CH/DH/BH: bits 8..=15 of register `index` (0..=3). Only for byte
    /// operands without a REX prefix.
    pub high_byte: bool,
}

/// Where a store's value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Reg(RegOperand),
    /// Already sign-extended to the access size.
    Imm(u64),
}

/// How a loaded value reaches the destination register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extend {
    /// Plain MOV: access size == register size.
    None,
    /// MOVZX.
    Zero,
    /// MOVSX.
    Sign,
}

/// What the instruction does with memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmioOp {
    /// Guest writes memory.
    Store(Source),
    /// Guest reads memory into a register of `reg_size` bytes.
    Load {
        reg: RegOperand,
        reg_size: u8,
        extend: Extend,
    },
}

/// The memory operand, for computing the effective address (a consistency
/// check against the faulting address, or emulation without a fault GPA).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemOperand {
    pub base: Option<u8>,
    pub index: Option<u8>,
    pub scale: u8,
    pub disp: i64,
    pub rip_relative: bool,
    /// Absolute 64-bit address (MOV moffs).
    pub absolute: Option<u64>,
    /// FS (0x64) or GS (0x65) override: their bases still apply in long mode.
    pub segment: Option<u8>,
}

/// A decoded MMIO instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MmioInsn {
    /// Instruction length: add to RIP after emulation.
    pub len: u8,
    /// Memory access width in bytes: 1, 2, 4 or 8.
    pub size: u8,
    pub op: MmioOp,
    pub mem: MemOperand,
}

fn size_mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        n => (1u64 << (n as u32 * 8)) - 1,
    }
}

impl MmioInsn {
    /// Whether the guest writes memory.
    pub fn is_write(&self) -> bool {
        matches!(self.op, MmioOp::Store(_))
    }

    /// For a store: the value written, masked to the access size.
    pub fn store_value(&self, state: &VcpuState) -> Option<u64> {
        let v = match self.op {
            MmioOp::Store(Source::Imm(v)) => v,
            MmioOp::Store(Source::Reg(r)) => read_reg(state, r),
            MmioOp::Load { .. } => return None,
        };
        Some(v & size_mask(self.size))
    }

    /// For a load: puts `value` (read from the device, `size` bytes) into the
    /// destination register with x86 semantics: 8/16-bit writes merge,
    /// 32-bit writes zero the upper half, 64-bit writes replace. Does
    /// nothing for a store.
    pub fn complete_load(&self, state: &mut VcpuState, value: u64) {
        let MmioOp::Load {
            reg,
            reg_size,
            extend,
        } = self.op
        else {
            return;
        };
        let raw = value & size_mask(self.size);
        let v = match extend {
            Extend::Sign => {
                let shift = 64 - self.size as u32 * 8;
                (((raw << shift) as i64) >> shift) as u64
            }
            Extend::None | Extend::Zero => raw,
        };
        let slot = &mut state.gprs[reg.index as usize & 15];
        *slot = match (reg_size, reg.high_byte) {
            (1, true) => (*slot & !0xff00) | ((v & 0xff) << 8),
            (1, false) => (*slot & !0xff) | (v & 0xff),
            (2, _) => (*slot & !0xffff) | (v & 0xffff),
            (4, _) => v & 0xffff_ffff,
            _ => v,
        };
    }

    /// The effective linear address of the memory operand, given the vCPU
    /// state *before* the instruction (RIP pointing at it).
    pub fn effective_address(&self, state: &VcpuState) -> u64 {
        let m = &self.mem;
        if let Some(a) = m.absolute {
            return a;
        }
        let mut ea = m.disp as u64;
        if m.rip_relative {
            ea = ea.wrapping_add(state.rip.wrapping_add(self.len as u64));
        }
        if let Some(b) = m.base {
            ea = ea.wrapping_add(state.gprs[b as usize & 15]);
        }
        if let Some(i) = m.index {
            ea = ea.wrapping_add(state.gprs[i as usize & 15].wrapping_mul(m.scale as u64));
        }
        match m.segment {
            Some(0x64) => ea.wrapping_add(state.fs.base),
            Some(0x65) => ea.wrapping_add(state.gs.base),
            _ => ea,
        }
    }
}

fn read_reg(state: &VcpuState, r: RegOperand) -> u64 {
    let v = state.gprs[r.index as usize & 15];
    if r.high_byte {
        v >> 8
    } else {
        v
    }
}

/// A cursor over instruction bytes that fails instead of indexing past the
/// end or past 15 bytes.
struct Bytes<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Bytes<'_> {
    fn next(&mut self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::TooLong);
        }
        let v = *self.b.get(self.pos).ok_or(DecodeError::Truncated)?;
        self.pos += 1;
        Ok(v)
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        if self.pos >= MAX_INSN_LEN {
            return Err(DecodeError::TooLong);
        }
        self.b.get(self.pos).copied().ok_or(DecodeError::Truncated)
    }

    fn le(&mut self, n: usize) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for i in 0..n {
            v |= (self.next()? as u64) << (8 * i);
        }
        Ok(v)
    }
}

fn sign_extend(v: u64, bytes: usize) -> i64 {
    let shift = 64 - 8 * bytes as u32;
    ((v << shift) as i64) >> shift
}

/// Decodes one instruction in 64-bit mode.
pub fn decode(bytes: &[u8]) -> Result<MmioInsn, DecodeError> {
    let mut c = Bytes { b: bytes, pos: 0 };
    let mut opsize16 = false;
    let mut addr32 = false;
    let mut rep: Option<u8> = None;
    let mut segment = None;
    // Legacy prefixes, in any order.
    loop {
        match c.peek()? {
            0x66 => opsize16 = true,
            0x67 => addr32 = true,
            p @ (0x2e | 0x36 | 0x3e | 0x26) => {
                let _ = p; // ignored in 64-bit mode
            }
            p @ (0x64 | 0x65) => segment = Some(p),
            0xf0 => {}
            p @ (0xf2 | 0xf3) => rep = Some(p),
            _ => break,
        }
        c.next()?;
    }
    // REX must come last, right before the opcode.
    let mut rex = 0u8;
    if (0x40..=0x4f).contains(&c.peek()?) {
        rex = c.next()?;
    }
    let rex_w = rex & 8 != 0;
    let rex_r = (rex >> 2) & 1;
    let rex_x = (rex >> 1) & 1;
    let rex_b = rex & 1;
    let osize: u8 = if rex_w {
        8
    } else if opsize16 {
        2
    } else {
        4
    };

    let opcode = c.next()?;
    // (op kind, access size, has ModRM)
    enum Form {
        StoreReg,
        LoadReg { reg_size: u8, extend: Extend },
        StoreImm { imm_bytes: usize },
        Moffs { load: bool },
    }
    let (form, size) = match opcode {
        0x88 => (Form::StoreReg, 1),
        0x89 => (Form::StoreReg, osize),
        0x8a => (
            Form::LoadReg {
                reg_size: 1,
                extend: Extend::None,
            },
            1,
        ),
        0x8b => (
            Form::LoadReg {
                reg_size: osize,
                extend: Extend::None,
            },
            osize,
        ),
        0xc6 => (Form::StoreImm { imm_bytes: 1 }, 1),
        0xc7 => (
            Form::StoreImm {
                imm_bytes: if osize == 2 { 2 } else { 4 },
            },
            osize,
        ),
        0xa0 => (Form::Moffs { load: true }, 1),
        0xa1 => (Form::Moffs { load: true }, osize),
        0xa2 => (Form::Moffs { load: false }, 1),
        0xa3 => (Form::Moffs { load: false }, osize),
        0x0f => {
            let op2 = c.next()?;
            if let Some(p) = rep {
                return Err(DecodeError::UnsupportedPrefix(p));
            }
            let (size, extend) = match op2 {
                0xb6 => (1, Extend::Zero),
                0xb7 => (2, Extend::Zero),
                0xbe => (1, Extend::Sign),
                0xbf => (2, Extend::Sign),
                _ => {
                    return Err(DecodeError::UnsupportedOpcode {
                        opcode,
                        opcode2: Some(op2),
                    })
                }
            };
            (
                Form::LoadReg {
                    reg_size: osize,
                    extend,
                },
                size,
            )
        }
        _ => {
            return Err(DecodeError::UnsupportedOpcode {
                opcode,
                opcode2: None,
            })
        }
    };

    // A byte register without any REX prefix: 4..=7 mean AH, CH, DH, BH.
    let byte_reg = |index: u8, is_byte: bool| RegOperand {
        index: if is_byte && rex == 0 && (4..8).contains(&index) {
            index - 4
        } else {
            index
        },
        high_byte: is_byte && rex == 0 && (4..8).contains(&index),
    };

    if let Form::Moffs { load } = form {
        let addr = c.le(if addr32 { 4 } else { 8 })?;
        let rax = byte_reg(0, size == 1);
        let op = if load {
            MmioOp::Load {
                reg: rax,
                reg_size: size,
                extend: Extend::None,
            }
        } else {
            MmioOp::Store(Source::Reg(rax))
        };
        return Ok(MmioInsn {
            len: c.pos as u8,
            size,
            op,
            mem: MemOperand {
                absolute: Some(addr),
                segment,
                ..Default::default()
            },
        });
    }

    // ModRM (+ SIB + displacement).
    let modrm = c.next()?;
    let md = modrm >> 6;
    let reg = ((modrm >> 3) & 7) | (rex_r << 3);
    let rm = modrm & 7;
    if md == 3 {
        return Err(DecodeError::NoMemoryOperand);
    }
    let mut mem = MemOperand {
        segment,
        scale: 1,
        ..Default::default()
    };
    let mut disp_bytes = match md {
        1 => 1,
        2 => 4,
        _ => 0,
    };
    if rm == 4 {
        let sib = c.next()?;
        let scale = 1u8 << (sib >> 6);
        let index = ((sib >> 3) & 7) | (rex_x << 3);
        let base = sib & 7;
        if index != 4 {
            mem.index = Some(index);
            mem.scale = scale;
        }
        if base == 5 && md == 0 {
            disp_bytes = 4;
        } else {
            mem.base = Some(base | (rex_b << 3));
        }
    } else if rm == 5 && md == 0 {
        mem.rip_relative = true;
        disp_bytes = 4;
    } else {
        mem.base = Some(rm | (rex_b << 3));
    }
    if disp_bytes > 0 {
        mem.disp = sign_extend(c.le(disp_bytes)?, disp_bytes);
    }

    let op = match form {
        Form::StoreReg => MmioOp::Store(Source::Reg(byte_reg(reg, size == 1))),
        Form::LoadReg { reg_size, extend } => MmioOp::Load {
            reg: byte_reg(reg, reg_size == 1),
            reg_size,
            extend,
        },
        Form::StoreImm { imm_bytes } => {
            if reg & 7 != 0 {
                return Err(DecodeError::InvalidModRm);
            }
            let imm = sign_extend(c.le(imm_bytes)?, imm_bytes) as u64;
            MmioOp::Store(Source::Imm(imm & size_mask(size)))
        }
        // Handled above; kept total so no input can reach a panic.
        Form::Moffs { .. } => {
            return Err(DecodeError::UnsupportedOpcode {
                opcode,
                opcode2: None,
            })
        }
    };
    Ok(MmioInsn {
        len: c.pos as u8,
        size,
        op,
        mem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Gpr;
    use crate::memory::VecMemory;

    fn reg(index: u8) -> RegOperand {
        RegOperand {
            index,
            high_byte: false,
        }
    }

    #[test]
    fn mov_store_reg32() {
        // mov %eax,(%rdx)
        let i = decode(&[0x89, 0x02]).unwrap();
        assert_eq!(i.len, 2);
        assert_eq!(i.size, 4);
        assert_eq!(i.op, MmioOp::Store(Source::Reg(reg(0))));
        assert_eq!(i.mem.base, Some(2));
    }

    #[test]
    fn mov_load_reg32_disp8() {
        // mov 0x70(%rbx),%eax  (readl in virtio_mmio)
        let i = decode(&[0x8b, 0x43, 0x70]).unwrap();
        assert_eq!(i.len, 3);
        assert_eq!(i.size, 4);
        assert_eq!(
            i.op,
            MmioOp::Load {
                reg: reg(0),
                reg_size: 4,
                extend: Extend::None
            }
        );
        let mut s = VcpuState::default();
        s.set_gpr(Gpr::Rbx, 0xd000_0000);
        s.set_gpr(Gpr::Rax, 0xffff_ffff_ffff_ffff);
        assert_eq!(i.effective_address(&s), 0xd000_0070);
        i.complete_load(&mut s, 0x1234_5678);
        assert_eq!(s.gpr(Gpr::Rax), 0x1234_5678, "32-bit load zero-extends");
    }

    #[test]
    fn rex_forms() {
        // mov %r9,0x8(%r12)  REX.WRB 89 /r with SIB (r12 needs SIB)
        let i = decode(&[0x4d, 0x89, 0x4c, 0x24, 0x08]).unwrap();
        assert_eq!(i.len, 5);
        assert_eq!(i.size, 8);
        assert_eq!(i.op, MmioOp::Store(Source::Reg(reg(9))));
        assert_eq!(i.mem.base, Some(12));
        assert_eq!(i.mem.index, None);
        assert_eq!(i.mem.disp, 8);
        // mov (%r8),%r10d  REX.RB 8B
        let i = decode(&[0x45, 0x8b, 0x10]).unwrap();
        assert_eq!(
            i.op,
            MmioOp::Load {
                reg: reg(10),
                reg_size: 4,
                extend: Extend::None
            }
        );
        assert_eq!(i.mem.base, Some(8));
    }

    #[test]
    fn byte_and_word_forms() {
        // mov %al,(%rdi)
        let i = decode(&[0x88, 0x07]).unwrap();
        assert_eq!((i.size, i.len), (1, 2));
        // mov %ah,(%rdi): high byte without REX
        let i = decode(&[0x88, 0x27]).unwrap();
        assert_eq!(
            i.op,
            MmioOp::Store(Source::Reg(RegOperand {
                index: 0,
                high_byte: true
            }))
        );
        let mut s = VcpuState::default();
        s.set_gpr(Gpr::Rax, 0xab12);
        assert_eq!(i.store_value(&s), Some(0xab));
        // mov %spl,(%rdi): with REX, 4 is SPL
        let i = decode(&[0x40, 0x88, 0x27]).unwrap();
        assert_eq!(i.op, MmioOp::Store(Source::Reg(reg(4))));
        // mov %ax,(%rdi)
        let i = decode(&[0x66, 0x89, 0x07]).unwrap();
        assert_eq!((i.size, i.len), (2, 3));
        // mov (%rsi),%cl merges into RCX
        let i = decode(&[0x8a, 0x0e]).unwrap();
        s.set_gpr(Gpr::Rcx, 0x1111_2222_3333_4444);
        i.complete_load(&mut s, 0xff);
        assert_eq!(s.gpr(Gpr::Rcx), 0x1111_2222_3333_44ff);
        // mov (%rsi),%dh
        let i = decode(&[0x8a, 0x36]).unwrap();
        s.set_gpr(Gpr::Rdx, 0x1234);
        i.complete_load(&mut s, 0xcd);
        assert_eq!(s.gpr(Gpr::Rdx), 0xcd34);
        // mov (%rsi),%dx merges 16 bits
        let i = decode(&[0x66, 0x8b, 0x16]).unwrap();
        s.set_gpr(Gpr::Rdx, 0xffff_ffff_ffff_ffff);
        i.complete_load(&mut s, 0x1234_5678);
        assert_eq!(s.gpr(Gpr::Rdx), 0xffff_ffff_ffff_5678);
    }

    #[test]
    fn immediates() {
        // movl $0x1,0x50(%rax)
        let i = decode(&[0xc7, 0x40, 0x50, 1, 0, 0, 0]).unwrap();
        assert_eq!((i.size, i.len), (4, 7));
        assert_eq!(i.op, MmioOp::Store(Source::Imm(1)));
        // movq $-1,(%rax): imm32 sign-extended to 64 bits
        let i = decode(&[0x48, 0xc7, 0x00, 0xff, 0xff, 0xff, 0xff]).unwrap();
        assert_eq!(i.size, 8);
        assert_eq!(i.op, MmioOp::Store(Source::Imm(u64::MAX)));
        // movw $0x1234,(%rax)
        let i = decode(&[0x66, 0xc7, 0x00, 0x34, 0x12]).unwrap();
        assert_eq!((i.size, i.len), (2, 5));
        assert_eq!(i.op, MmioOp::Store(Source::Imm(0x1234)));
        // movb $0x80,(%rax)
        let i = decode(&[0xc6, 0x00, 0x80]).unwrap();
        assert_eq!(i.op, MmioOp::Store(Source::Imm(0x80)));
        let s = VcpuState::default();
        assert_eq!(i.store_value(&s), Some(0x80));
        // C7 with reg != 0 is not a MOV.
        assert_eq!(
            decode(&[0xc7, 0x48, 0x50, 1, 0, 0, 0]).unwrap_err(),
            DecodeError::InvalidModRm
        );
    }

    #[test]
    fn movzx_movsx() {
        // movzbl (%rdi),%eax
        let i = decode(&[0x0f, 0xb6, 0x07]).unwrap();
        assert_eq!((i.size, i.len), (1, 3));
        let mut s = VcpuState::default();
        s.set_gpr(Gpr::Rax, u64::MAX);
        i.complete_load(&mut s, 0x1ff);
        assert_eq!(s.gpr(Gpr::Rax), 0xff);
        // movzwl 0x4(%rdi),%r11d
        let i = decode(&[0x44, 0x0f, 0xb7, 0x5f, 0x04]).unwrap();
        assert_eq!((i.size, i.len), (2, 5));
        assert_eq!(
            i.op,
            MmioOp::Load {
                reg: reg(11),
                reg_size: 4,
                extend: Extend::Zero
            }
        );
        // movsbq (%rdi),%rax
        let i = decode(&[0x48, 0x0f, 0xbe, 0x07]).unwrap();
        i.complete_load(&mut s, 0x80);
        assert_eq!(s.gpr(Gpr::Rax), 0xffff_ffff_ffff_ff80);
    }

    #[test]
    fn addressing_modes() {
        // mov 0x12345678(%rip),%eax
        let i = decode(&[0x8b, 0x05, 0x78, 0x56, 0x34, 0x12]).unwrap();
        assert_eq!(i.len, 6);
        assert!(i.mem.rip_relative);
        let mut s = VcpuState {
            rip: 0x1000,
            ..Default::default()
        };
        assert_eq!(i.effective_address(&s), 0x1000 + 6 + 0x1234_5678);
        // mov %eax,-0x10(%rbx,%rcx,8)  disp8 negative
        let i = decode(&[0x89, 0x44, 0xcb, 0xf0]).unwrap();
        assert_eq!(i.len, 4);
        s.set_gpr(Gpr::Rbx, 0x1000);
        s.set_gpr(Gpr::Rcx, 2);
        assert_eq!(i.effective_address(&s), 0x1000 + 16 - 0x10);
        // mov %eax,0x10000000(,%rcx,4): SIB without base, disp32
        let i = decode(&[0x89, 0x04, 0x8d, 0, 0, 0, 0x10]).unwrap();
        assert_eq!(i.len, 7);
        assert_eq!(i.mem.base, None);
        assert_eq!(i.effective_address(&s), 0x1000_0008);
        // mov %eax,0x100(%rbp): disp32 form
        let i = decode(&[0x89, 0x85, 0, 1, 0, 0]).unwrap();
        assert_eq!(i.len, 6);
        assert_eq!(i.mem.base, Some(5));
        // mov %eax,%gs:0x8(%rax)
        let i = decode(&[0x65, 0x89, 0x40, 0x08]).unwrap();
        s.gs.base = 0x10_0000;
        s.set_gpr(Gpr::Rax, 0);
        assert_eq!(i.effective_address(&s), 0x10_0008);
        // movabs 0xd0000000,%eax
        let i = decode(&[0xa1, 0, 0, 0, 0xd0, 0, 0, 0, 0]).unwrap();
        assert_eq!((i.len, i.size), (9, 4));
        assert_eq!(i.effective_address(&s), 0xd000_0000);
    }

    #[test]
    fn rejects() {
        assert_eq!(decode(&[]).unwrap_err(), DecodeError::Truncated);
        assert_eq!(decode(&[0x89]).unwrap_err(), DecodeError::Truncated);
        assert_eq!(
            decode(&[0x8b, 0x05, 0x78]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(
            decode(&[0x89, 0xc0]).unwrap_err(),
            DecodeError::NoMemoryOperand
        );
        assert!(matches!(
            decode(&[0xa5]).unwrap_err(),
            DecodeError::UnsupportedOpcode { opcode: 0xa5, .. }
        ));
        assert_eq!(
            decode(&[0xf3, 0x0f, 0xb6, 0x07]).unwrap_err(),
            DecodeError::UnsupportedPrefix(0xf3)
        );
        assert_eq!(decode(&[0x66; 20]).unwrap_err(), DecodeError::TooLong);
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut s = VcpuState::default();
        let mut ok = 0;
        for _ in 0..200_000 {
            let mut b = [0u8; 16];
            for x in b.iter_mut() {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                *x = seed as u8;
            }
            // Bias towards interesting opcodes.
            if seed & 1 == 0 {
                b[(seed >> 8) as usize % 3] =
                    [0x88, 0x89, 0x8a, 0x8b, 0xc6, 0xc7, 0x0f, 0x48][(seed >> 16) as usize % 8];
            }
            let len = (seed >> 24) as usize % 17;
            if let Ok(i) = decode(&b[..len]) {
                ok += 1;
                assert!(i.len as usize <= len && i.len as usize <= MAX_INSN_LEN);
                assert!(matches!(i.size, 1 | 2 | 4 | 8));
                let _ = i.effective_address(&s);
                let _ = i.store_value(&s);
                i.complete_load(&mut s, seed);
            }
        }
        assert!(ok > 1000, "the biased generator should hit valid forms");
    }

    fn paged_memory() -> VecMemory {
        // PML4 at 0x1000, PDPT 0x2000, PD 0x3000, PT 0x4000.
        let mut m = VecMemory::new(16 << 20);
        m.write_u64(0x1000, 0x2000 | 3).unwrap();
        // PDPT[1]: 1 GiB page at physical 0 (gva 1G..2G -> 0..1G).
        m.write_u64(0x2000, 0x3000 | 3).unwrap();
        m.write_u64(0x2008, 0x83).unwrap();
        // PD[0] -> PT, PD[1]: 2 MiB page at 0x40_0000.
        m.write_u64(0x3000, 0x4000 | 3).unwrap();
        m.write_u64(0x3008, 0x40_0000 | 0x83).unwrap();
        // PT[5]: gva 0x5000 -> 0x9000.
        m.write_u64(0x4000 + 5 * 8, 0x9000 | 3).unwrap();
        m
    }

    #[test]
    fn page_walk() {
        let m = paged_memory();
        assert_eq!(walk_guest_page_table(&m, 0x1000, 0x5123).unwrap(), 0x9123);
        assert_eq!(
            walk_guest_page_table(&m, 0x1000, 0x20_0000 + 0x1234).unwrap(),
            0x40_1234
        );
        assert_eq!(
            walk_guest_page_table(&m, 0x1000, (1 << 30) + 0x12_3456).unwrap(),
            0x12_3456
        );
        assert_eq!(
            walk_guest_page_table(&m, 0x1000, 0x6000).unwrap_err(),
            WalkError::NotPresent { level: 1 }
        );
        assert_eq!(
            walk_guest_page_table(&m, 0x1000, 0x8000_0000_0000).unwrap_err(),
            WalkError::NonCanonical
        );
        assert_eq!(
            walk_guest_page_table(&m, 0x1000, 0xffff_8000_0000_0000).unwrap_err(),
            WalkError::NotPresent { level: 4 }
        );
        // CR3 outside guest memory.
        assert!(matches!(
            walk_guest_page_table(&m, 0xffff_f000, 0).unwrap_err(),
            WalkError::Memory(_)
        ));
    }

    #[test]
    fn page_walk_garbage_tables_never_panic() {
        let mut m = VecMemory::new(1 << 20);
        let mut seed = 42u64;
        for chunk in m.as_mut_slice().chunks_exact_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Keep addresses mostly inside memory so walks go deep.
            chunk.copy_from_slice(&((seed & 0xf_ffff) | (seed & 0x81)).to_le_bytes());
        }
        for i in 0..10_000u64 {
            let gva = i.wrapping_mul(0x9e37_79b9_7f4a_7c15);
            let _ = walk_guest_page_table(&m, i * 8, gva);
            let _ = walk_guest_page_table_levels(&m, i * 8, gva, 5);
        }
    }

    #[test]
    fn fetch_across_pages() {
        let mut m = paged_memory();
        // PT[6]: gva 0x6000 -> 0xb000; instruction straddles 0x5ffe.
        m.write_u64(0x4000 + 6 * 8, 0xb000 | 3).unwrap();
        m.write(0x9ffe, &[0x8b, 0x05]).unwrap();
        m.write(0xb000, &[0x78, 0x56, 0x34, 0x12]).unwrap();
        let s = VcpuState {
            rip: 0x5ffe,
            cr0: cr::CR0_PE | cr::CR0_PG,
            cr3: 0x1000,
            cr4: cr::CR4_PAE,
            efer: cr::EFER_LME | cr::EFER_LMA,
            ..Default::default()
        };
        let mut buf = [0u8; MAX_INSN_LEN];
        let n = fetch_instruction(&m, &s, &mut buf).unwrap();
        assert_eq!(n, 15);
        let i = decode(&buf[..n]).unwrap();
        assert_eq!(i.len, 6);
        // Next page unmapped: a short fetch is still fine.
        let s2 = VcpuState {
            rip: 0x4ff0,
            ..s.clone()
        };
        m.write_u64(0x4000 + 4 * 8, 0xc000 | 3).unwrap();
        let n = fetch_instruction(&m, &s2, &mut buf).unwrap();
        assert_eq!(n, 15);
        let s3 = VcpuState { rip: 0x6ffc, ..s };
        let n = fetch_instruction(&m, &s3, &mut buf).unwrap();
        assert_eq!(n, 4, "page at 0x7000 is not mapped");
    }
}
