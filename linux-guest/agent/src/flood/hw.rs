//! The flood's raw hardware access: guest-physical pages mapped from
//! /dev/mem and accessed with chosen instruction forms, LDT entries written
//! with modify_ldt(2), segment registers loaded with chosen selectors, and
//! the signal handler that survives the faults those loads raise. Besides
//! `sys.rs`, the only `unsafe` of the agent.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

pub const PAGE: usize = 4096;

/// One guest-physical page mapped from /dev/mem.
pub struct PhysPage {
    ptr: *mut u8,
    pub phys: u64,
}

impl PhysPage {
    /// Maps the page at `phys` (page-aligned) shared, read and write.
    pub fn map(devmem: &File, phys: u64) -> io::Result<PhysPage> {
        let offset = libc::off_t::try_from(phys)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh mapping chosen by the kernel (no address hint), of
        // a device file; nothing of ours is overwritten.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                PAGE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                devmem.as_raw_fd(),
                offset,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(PhysPage {
            ptr: ptr.cast(),
            phys,
        })
    }

    /// A read of `width` bytes (1, 2, 4, 8) at `offset`, by the instruction
    /// form `form` picks: plain MOV, or for 1 and 2 bytes also MOVZX/MOVSX
    /// (the forms the VMM's decoder must emulate). Returns the value read.
    pub fn read(&self, offset: usize, width: u8, form: u8) -> u64 {
        let p = self.at(offset, width);
        let v: u64;
        // SAFETY: `p` lies inside this live mapping, `width` bytes from the
        // end at most (`at`); it is device memory, not a Rust object, so no
        // reference aliases it.
        unsafe {
            match (width, form % 3) {
                (1, 0) => {
                    core::arch::asm!("xor eax, eax", "mov al, [{p}]", p = in(reg) p, out("rax") v)
                }
                (1, 1) => {
                    core::arch::asm!("movzx eax, byte ptr [{p}]", p = in(reg) p, out("rax") v)
                }
                (1, _) => {
                    core::arch::asm!("movsx rax, byte ptr [{p}]", p = in(reg) p, out("rax") v)
                }
                (2, 0) => {
                    core::arch::asm!("xor eax, eax", "mov ax, [{p}]", p = in(reg) p, out("rax") v)
                }
                (2, 1) => {
                    core::arch::asm!("movzx eax, word ptr [{p}]", p = in(reg) p, out("rax") v)
                }
                (2, _) => {
                    core::arch::asm!("movsx rax, word ptr [{p}]", p = in(reg) p, out("rax") v)
                }
                (4, _) => core::arch::asm!("mov eax, [{p}]", p = in(reg) p, out("rax") v),
                _ => core::arch::asm!("mov rax, [{p}]", p = in(reg) p, out("rax") v),
            }
        }
        v
    }

    /// A write of the low `width` bytes (1, 2, 4, 8) of `value` at `offset`
    /// (MOV from a register).
    pub fn write(&self, offset: usize, width: u8, value: u64) {
        let p = self.at(offset, width);
        // SAFETY: as in `read`.
        unsafe {
            match width {
                1 => core::arch::asm!("mov [{p}], al", p = in(reg) p, in("rax") value),
                2 => core::arch::asm!("mov [{p}], ax", p = in(reg) p, in("rax") value),
                4 => core::arch::asm!("mov [{p}], eax", p = in(reg) p, in("rax") value),
                _ => core::arch::asm!("mov [{p}], rax", p = in(reg) p, in("rax") value),
            }
        }
    }

    fn at(&self, offset: usize, width: u8) -> *mut u8 {
        let width = usize::from(width).clamp(1, 8);
        self.ptr.wrapping_add(offset.min(PAGE - width))
    }
}

impl Drop for PhysPage {
    fn drop(&mut self) {
        // SAFETY: `ptr` is this object's own mapping of PAGE bytes, and no
        // reference into it outlives the object.
        unsafe { libc::munmap(self.ptr.cast(), PAGE) };
    }
}

/// `struct user_desc` of modify_ldt(2): the flags word packs seg_32bit (bit
/// 0), contents (1-2), read_exec_only (3), limit_in_pages (4),
/// seg_not_present (5), useable (6) and lm (7).
#[repr(C)]
pub struct UserDesc {
    pub entry_number: u32,
    pub base_addr: u32,
    pub limit: u32,
    pub flags: u32,
}

/// modify_ldt(2) function 0x11: writes one LDT entry (the kernel checks it
/// and refuses some, e.g. code segments that are present and conforming).
pub fn write_ldt_entry(desc: &UserDesc) -> io::Result<()> {
    // SAFETY: the kernel reads `size_of::<UserDesc>()` bytes from `desc`,
    // which is a valid user_desc for the whole call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_modify_ldt,
            0x11,
            desc as *const UserDesc,
            std::mem::size_of::<UserDesc>(),
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// modify_ldt(2) function 0: reads the LDT into `buf`; returns the bytes read.
pub fn read_ldt(buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the kernel writes at most `buf.len()` bytes into `buf`.
    let ret = unsafe { libc::syscall(libc::SYS_modify_ldt, 0, buf.as_mut_ptr(), buf.len()) };
    usize::try_from(ret).map_err(|_| io::Error::last_os_error())
}

/// A data segment register the flood loads: not CS (that would change the
/// code's mode) and not FS (the thread pointer of Rust's thread locals).
#[derive(Clone, Copy, Debug)]
pub enum SegReg {
    Ds,
    Es,
    Gs,
}

/// Faults raised by segment loads and skipped by the handler.
static SEGMENT_FAULTS: AtomicU64 = AtomicU64::new(0);

pub fn segment_faults() -> u64 {
    SEGMENT_FAULTS.load(Ordering::Relaxed)
}

/// Loads `selector` into `reg`. A selector the CPU refuses (#GP, #NP, #SS:
/// SIGSEGV or SIGBUS) is skipped by the handler [`survive_segment_faults`]
/// installs, and counted: the register then keeps its value.
pub fn load_segment(reg: SegReg, selector: u16) {
    // SAFETY: loading DS, ES or GS changes no memory and no register Rust
    // relies on in 64-bit mode (flat segments; FS is untouched). A fault is
    // skipped by the handler, which resumes after this 2-byte instruction
    // (`8e /r` with EAX: no prefix, no REX).
    unsafe {
        match reg {
            SegReg::Ds => core::arch::asm!("mov ds, eax", in("eax") u32::from(selector)),
            SegReg::Es => core::arch::asm!("mov es, eax", in("eax") u32::from(selector)),
            SegReg::Gs => core::arch::asm!("mov gs, eax", in("eax") u32::from(selector)),
        }
    }
}

/// Whether the bytes at `rip` are `mov ds/es/gs, r32` without prefixes:
/// 8e, then ModRM with mod 11 and reg 0 (ES), 3 (DS) or 5 (GS).
fn is_segment_load(code: [u8; 2]) -> bool {
    code[0] == 0x8e && code[1] >> 6 == 0b11 && matches!((code[1] >> 3) & 7, 0 | 3 | 5)
}

extern "C" fn on_fault(
    signal: libc::c_int,
    _info: *mut libc::siginfo_t,
    context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid ucontext_t for an SA_SIGINFO
    // handler. RIP points at the instruction that faulted: for the faults
    // this handler is for, code of this program that the CPU just decoded,
    // so its first 2 bytes are readable. (A fault on instruction fetch
    // faults again here, with the signal blocked: the kernel then kills the
    // program, as without the handler.)
    unsafe {
        let uc = &mut *context.cast::<libc::ucontext_t>();
        let rip = &mut uc.uc_mcontext.gregs[libc::REG_RIP as usize];
        let code = std::ptr::read(*rip as *const [u8; 2]);
        if is_segment_load(code) {
            SEGMENT_FAULTS.fetch_add(1, Ordering::Relaxed);
            *rip += 2;
            return;
        }
        // Any other fault is a real bug: say where, and die of it as usual.
        let line = fault_line(signal, *rip as u64);
        libc::write(2, line.as_ptr().cast(), line.len());
        libc::signal(signal, libc::SIG_DFL);
    }
}

/// `guest-flood: signal NN at rip 0x...` without allocating (for the
/// signal handler).
fn fault_line(signal: i32, rip: u64) -> [u8; 49] {
    let mut line = *b"guest-flood: signal NN at rip 0x0000000000000000\n";
    line[20] = b'0' + (signal / 10 % 10) as u8;
    line[21] = b'0' + (signal % 10) as u8;
    for i in 0..16 {
        line[32 + i] = b"0123456789abcdef"[(rip >> (60 - 4 * i) & 0xf) as usize];
    }
    line
}

/// Installs the SIGSEGV and SIGBUS handler that skips faulting segment
/// loads (and lets any other fault kill the program as usual).
pub fn survive_segment_faults() -> io::Result<()> {
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: sigaction is plain old data; all-zero is a valid value
        // (empty mask, no flags) that the fields below complete.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_fault as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO;
        // SAFETY: `action` is valid for the call; `on_fault` only touches an
        // atomic and the context the kernel passes it.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognizes_only_data_segment_loads() {
        assert!(is_segment_load([0x8e, 0xd8])); // mov ds, eax
        assert!(is_segment_load([0x8e, 0xc1])); // mov es, ecx
        assert!(is_segment_load([0x8e, 0xea])); // mov gs, edx
        assert!(!is_segment_load([0x8e, 0xe0])); // mov fs, eax
        assert!(!is_segment_load([0x8e, 0xd0])); // mov ss, eax
        assert!(!is_segment_load([0x8e, 0x18])); // mov ds, [rax]
        assert!(!is_segment_load([0x8b, 0xd8]));
    }

    #[test]
    fn fault_lines_name_signal_and_rip() {
        let line = fault_line(11, 0x4012_34ab);
        assert_eq!(
            std::str::from_utf8(&line).unwrap(),
            "guest-flood: signal 11 at rip 0x00000000401234ab\n"
        );
    }

    #[test]
    fn a_refused_selector_is_survived_and_counted() {
        survive_segment_faults().unwrap();
        let before = segment_faults();
        // GDT index 0x1ff with RPL 3: beyond any GDT, so #GP.
        load_segment(SegReg::Gs, (0x1ff << 3) | 3);
        load_segment(SegReg::Gs, 0);
        assert_eq!(segment_faults(), before + 1);
    }
}
