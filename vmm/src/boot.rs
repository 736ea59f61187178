//! Linux x86 64-bit boot protocol (Documentation/arch/x86/boot.rst).
//!
//! The VMM plays the boot loader: it parses a bzImage, copies its
//! protected-mode kernel into guest RAM, fills the "zero page"
//! (`struct boot_params`) with the setup header, command line, initramfs and
//! an e820 memory map, builds identity page tables and a flat GDT, and
//! returns the vCPU state for the 64-bit entry point. No real-mode setup code
//! and no firmware run: the guest starts directly in long mode.
//!
//! Guest-physical layout below 1 MiB (all inside e820 RAM; Linux copies what
//! it needs out of it early):
//!
//! | address    | what                                       |
//! |------------|--------------------------------------------|
//! | `0x0500`   | GDT (null, null, `__BOOT_CS`, `__BOOT_DS`) |
//! | `0x7000`   | zero page (`boot_params`)                  |
//! | `0x8ff0`   | initial stack pointer (grows down)         |
//! | `0x9000`   | PML4                                       |
//! | `0xa000`   | PDPT                                       |
//! | `0xb000`.. | 4 page directories: 4 GiB with 2 MiB pages |
//! | `0x20000`  | kernel command line                        |
//!
//! The kernel goes at 1 MiB; the initramfs at the highest page-aligned
//! address that is below the kernel's `initrd_addr_max` and above the memory
//! the kernel's decompressor may use (`init_size` past its run address).

use alloc::format;
use alloc::string::String;
use core::fmt;
use core::fmt::Write as _;

use crate::exit::cr;
use crate::exit::DescriptorTable;
use crate::exit::Gpr;
use crate::exit::Segment;
use crate::exit::VcpuState;
use crate::memory::GuestMemory;
use crate::memory::MemError;

/// Where the GDT goes.
pub const GDT_ADDR: u64 = 0x500;
/// Where `struct boot_params` goes.
pub const ZERO_PAGE_ADDR: u64 = 0x7000;
/// Initial RSP (Linux switches to its own stack at once).
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
/// First of [`IDENTITY_MAP_GIB`] page directories.
pub const PD_ADDR: u64 = 0xb000;
/// How much is identity-mapped at entry: all RAM a small VM has, and the
/// 32-bit MMIO window.
pub const IDENTITY_MAP_GIB: u64 = 4;
pub const CMDLINE_ADDR: u64 = 0x20000;
/// Upper bound for the command line we place (the kernel's own limit,
/// `cmdline_size`, is usually 2047 and applies first).
pub const CMDLINE_MAX: usize = 0x10000;
/// Start of the EBDA: conventional RAM in e820 ends here.
pub const EBDA_START: u64 = 0x9fc00;
/// Where the protected-mode kernel is loaded.
pub const KERNEL_LOAD_ADDR: u64 = 0x10_0000;

/// GDT selectors the 64-bit boot protocol requires.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

/// `HdrS`, little-endian, at image offset 0x202.
const HDRS_MAGIC: u32 = 0x5372_6448;
/// Oldest protocol with `xloadflags` (and so a way to know about 64-bit entry).
pub const MIN_PROTOCOL: u16 = 0x020c;
const XLF_KERNEL_64: u16 = 1 << 0;

/// Offsets in both the image and the zero page (the setup header sits at
/// 0x1f1 in each).
mod off {
    pub const SETUP_SECTS: usize = 0x1f1;
    pub const BOOT_FLAG: usize = 0x1fe;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21c;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22c;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    // Zero-page-only fields.
    pub const EXT_RAMDISK_IMAGE: usize = 0x0c0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0c4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0c8;
    pub const E820_ENTRIES: usize = 0x1e8;
    pub const E820_TABLE: usize = 0x2d0;
}

/// `struct boot_params` is one page.
const ZERO_PAGE_SIZE: usize = 4096;
/// Entries that fit in the zero page's e820 table.
pub const E820_MAX_ENTRIES: usize = 128;
/// The setup header never extends past this (it is followed by other
/// zero-page fields); a larger claimed end means a corrupt image.
const SETUP_HEADER_LIMIT: usize = 0x290;

/// Why a kernel could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootError {
    /// No `HdrS` magic / boot flag, or the image is too short to be one.
    NotABzImage,
    /// Boot protocol older than 2.12: no way to learn about 64-bit entry.
    ProtocolTooOld(u16),
    /// The kernel does not have the 64-bit entry point (XLF_KERNEL_64).
    No64BitEntry,
    /// `setup_sects` points past the end of the file.
    Truncated {
        needed: usize,
        actual: usize,
    },
    /// The kernel plus its decompression area does not fit in guest RAM.
    ImageTooLargeForMemory {
        needed: u64,
        available: u64,
    },
    /// The initramfs does not fit between the kernel and the top of RAM (or
    /// `initrd_addr_max`).
    InitrdTooLarge {
        size: u64,
    },
    /// The command line (with the `virtio_mmio.device=` entries) exceeds the
    /// kernel's `cmdline_size`.
    CmdlineTooLong {
        len: usize,
        max: usize,
    },
    /// Guest RAM is too small for the boot structures below 1 MiB.
    MemoryTooSmall,
    /// A virtio-mmio device window overlaps guest RAM.
    MmioOverlapsRam {
        base: u64,
    },
    Memory(MemError),
}

impl From<MemError> for BootError {
    fn from(e: MemError) -> Self {
        BootError::Memory(e)
    }
}

impl fmt::Display for BootError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BootError::NotABzImage => write!(f, "not a bzImage (no HdrS header)"),
            BootError::ProtocolTooOld(v) => write!(
                f,
                "boot protocol {}.{:02} is older than 2.12; use a newer kernel",
                v >> 8,
                v & 0xff
            ),
            BootError::No64BitEntry => {
                write!(
                    f,
                    "kernel has no 64-bit entry point (XLF_KERNEL_64 not set)"
                )
            }
            BootError::Truncated { needed, actual } => {
                write!(f, "bzImage truncated: {actual} bytes, needs {needed}")
            }
            BootError::ImageTooLargeForMemory { needed, available } => write!(
                f,
                "kernel needs RAM up to {needed:#x} but the VM has {available:#x}"
            ),
            BootError::InitrdTooLarge { size } => {
                write!(f, "initramfs of {size} bytes does not fit above the kernel")
            }
            BootError::CmdlineTooLong { len, max } => {
                write!(f, "command line is {len} bytes, the kernel accepts {max}")
            }
            BootError::MemoryTooSmall => write!(f, "guest RAM too small for boot structures"),
            BootError::MmioOverlapsRam { base } => {
                write!(f, "virtio-mmio window at {base:#x} overlaps guest RAM")
            }
            BootError::Memory(e) => write!(f, "{e}"),
        }
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    (le32(b, at) as u64) | ((le32(b, at + 4) as u64) << 32)
}

/// A parsed bzImage, borrowing the file.
#[derive(Debug, Clone)]
pub struct BzImage<'a> {
    image: &'a [u8],
    /// Boot protocol version (e.g. 0x020f for 2.15).
    pub protocol: u16,
    pub setup_sects: u8,
    /// End of the setup header in the image (exclusive).
    header_end: usize,
    pub xloadflags: u16,
    pub relocatable: bool,
    pub kernel_alignment: u32,
    pub pref_address: u64,
    /// Memory the kernel needs from its run address while decompressing.
    pub init_size: u32,
    pub initrd_addr_max: u32,
    pub cmdline_size: u32,
}

impl<'a> BzImage<'a> {
    /// Checks the header and finds the protected-mode kernel. Never panics on
    /// garbage input.
    pub fn parse(image: &'a [u8]) -> Result<Self, BootError> {
        // Must at least hold the header fields we read (through init_size).
        if image.len() < off::INIT_SIZE + 4 {
            return Err(BootError::NotABzImage);
        }
        if le32(image, off::HEADER) != HDRS_MAGIC || le16(image, off::BOOT_FLAG) != 0xaa55 {
            return Err(BootError::NotABzImage);
        }
        let protocol = le16(image, off::VERSION);
        if protocol < MIN_PROTOCOL {
            return Err(BootError::ProtocolTooOld(protocol));
        }
        let xloadflags = le16(image, off::XLOADFLAGS);
        if xloadflags & XLF_KERNEL_64 == 0 {
            return Err(BootError::No64BitEntry);
        }
        // The jump at 0x200 is a short jmp over the header: its offset byte
        // tells where the header ends.
        let header_end = off::HEADER + image[off::JUMP + 1] as usize;
        if !(off::INIT_SIZE + 4..=SETUP_HEADER_LIMIT).contains(&header_end) {
            return Err(BootError::NotABzImage);
        }
        // setup_sects == 0 means 4 for historical reasons.
        let setup_sects = match image[off::SETUP_SECTS] {
            0 => 4,
            n => n,
        };
        let setup_len = (setup_sects as usize + 1) * 512;
        if image.len() <= setup_len {
            return Err(BootError::Truncated {
                needed: setup_len + 1,
                actual: image.len(),
            });
        }
        Ok(Self {
            image,
            protocol,
            setup_sects,
            header_end,
            xloadflags,
            relocatable: image[off::RELOCATABLE_KERNEL] != 0,
            kernel_alignment: le32(image, off::KERNEL_ALIGNMENT),
            pref_address: le64(image, off::PREF_ADDRESS),
            init_size: le32(image, off::INIT_SIZE),
            initrd_addr_max: le32(image, off::INITRD_ADDR_MAX),
            cmdline_size: le32(image, off::CMDLINE_SIZE),
        })
    }

    /// The setup header bytes (image offset 0x1f1 up to the header end).
    pub fn setup_header(&self) -> &'a [u8] {
        &self.image[off::SETUP_SECTS..self.header_end]
    }

    /// The protected-mode kernel: everything after the real-mode setup.
    pub fn kernel(&self) -> &'a [u8] {
        &self.image[(self.setup_sects as usize + 1) * 512..]
    }

    /// End of the memory the kernel may touch while decompressing when
    /// loaded at `load_addr`: the decompressor runs at `load_addr` rounded up
    /// to `kernel_alignment`, but never below `pref_address`
    /// (LOAD_PHYSICAL_ADDR), and uses `init_size` bytes from there.
    pub fn footprint_end(&self, load_addr: u64) -> u64 {
        let align = (self.kernel_alignment as u64).max(1);
        let run = if self.relocatable && align.is_power_of_two() {
            load_addr
                .checked_add(align - 1)
                .map(|a| a & !(align - 1))
                .unwrap_or(u64::MAX)
        } else {
            load_addr
        };
        let run = run.max(self.pref_address);
        let size = (self.init_size as u64).max(self.kernel().len() as u64);
        run.saturating_add(size)
            .max(load_addr.saturating_add(self.kernel().len() as u64))
    }
}

/// A virtio-mmio device announced on the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtioMmioDevice {
    pub base: u64,
    /// Window size; 4 KiB for a normal device.
    pub size: u64,
    pub irq: u32,
}

impl VirtioMmioDevice {
    /// The `virtio_mmio.device=<size>@<base>:<irq>` parameter (Linux's
    /// CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES syntax, size parsed by memparse).
    pub fn cmdline_param(&self) -> String {
        let size = if self.size.is_multiple_of(1024) {
            format!("{}K", self.size / 1024)
        } else {
            format!("{}", self.size)
        };
        format!("virtio_mmio.device={size}@{:#x}:{}", self.base, self.irq)
    }
}

/// e820 memory types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub size: u64,
    pub kind: E820Type,
}

/// What to boot.
#[derive(Debug, Clone, Default)]
pub struct BootConfig<'a> {
    /// Command line without the virtio device entries.
    pub cmdline: &'a str,
    pub initrd: Option<&'a [u8]>,
    pub virtio_devices: &'a [VirtioMmioDevice],
}

/// Where things ended up, and how to start the vCPU.
#[derive(Debug, Clone)]
pub struct BootInfo {
    pub vcpu: VcpuState,
    pub kernel_addr: u64,
    /// (guest address, size)
    pub initrd: Option<(u64, u64)>,
    pub cmdline: String,
    pub e820: alloc::vec::Vec<E820Entry>,
}

/// Builds the full command line: the user's line, then one
/// `virtio_mmio.device=` entry per device.
pub fn build_cmdline(base: &str, devices: &[VirtioMmioDevice]) -> String {
    let mut s = String::from(base.trim());
    for d in devices {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{}", d.cmdline_param());
    }
    s
}

/// The e820 map for a VM with `mem_size` bytes of RAM from address 0:
/// conventional memory up to the EBDA, a reserved hole for the legacy
/// VGA/BIOS area, and RAM from 1 MiB to the end.
pub fn e820_map(mem_size: u64) -> alloc::vec::Vec<E820Entry> {
    alloc::vec![
        E820Entry {
            addr: 0,
            size: EBDA_START,
            kind: E820Type::Ram,
        },
        E820Entry {
            addr: EBDA_START,
            size: KERNEL_LOAD_ADDR - EBDA_START,
            kind: E820Type::Reserved,
        },
        E820Entry {
            addr: KERNEL_LOAD_ADDR,
            size: mem_size.saturating_sub(KERNEL_LOAD_ADDR),
            kind: E820Type::Ram,
        },
    ]
}

/// The state of an application processor that a start-up IPI with
/// `vector` started: real mode at `vector << 12` (CS = `vector << 8`,
/// IP 0), everything else as INIT leaves it.
pub fn ap_start_state(vector: u8) -> VcpuState {
    let data = Segment {
        selector: 0,
        attrib: 0x93, // P, S, read/write, accessed
        limit: 0xffff,
        base: 0,
    };
    VcpuState {
        rip: 0,
        rflags: cr::RFLAGS_RESERVED1,
        cr0: cr::CR0_ET | (1 << 29) | (1 << 30), // NW, CD: the reset value
        cs: Segment {
            selector: u16::from(vector) << 8,
            attrib: 0x9b, // P, S, execute/read, accessed
            limit: 0xffff,
            base: u64::from(vector) << 12,
        },
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            selector: 0,
            attrib: 0x8b, // P, busy TSS
            limit: 0xffff,
            base: 0,
        },
        ldtr: Segment {
            selector: 0,
            attrib: 0x82, // P, LDT
            limit: 0xffff,
            base: 0,
        },
        gdtr: DescriptorTable {
            base: 0,
            limit: 0xffff,
        },
        idtr: DescriptorTable {
            base: 0,
            limit: 0xffff,
        },
        ..Default::default()
    }
}

/// Segment attributes (SVM packed layout, see [`Segment`]).
const CODE64_ATTRIB: u16 = 0xa9b; // G, L, P, S, execute/read accessed
const DATA_ATTRIB: u16 = 0xc93; // G, D/B, P, S, read/write accessed
const TSS_ATTRIB: u16 = 0x08b; // P, busy 64-bit TSS

/// GDT entries matching the attributes above.
const GDT: [u64; 4] = [
    0,
    0,
    0x00af_9b00_0000_ffff, // __BOOT_CS
    0x00cf_9300_0000_ffff, // __BOOT_DS
];

/// Writes identity page tables for the first [`IDENTITY_MAP_GIB`] GiB using
/// 2 MiB pages.
fn write_page_tables(mem: &mut dyn GuestMemory) -> Result<(), BootError> {
    const P_RW: u64 = 0x3;
    const PS: u64 = 0x80;
    mem.zero(PML4_ADDR, 4096)?;
    mem.zero(PDPT_ADDR, 4096)?;
    mem.write_u64(PML4_ADDR, PDPT_ADDR | P_RW)?;
    for gib in 0..IDENTITY_MAP_GIB {
        let pd = PD_ADDR + gib * 4096;
        mem.write_u64(PDPT_ADDR + gib * 8, pd | P_RW)?;
        let mut table = [0u8; 4096];
        for (i, e) in table.chunks_exact_mut(8).enumerate() {
            let addr = (gib << 30) | ((i as u64) << 21);
            e.copy_from_slice(&(addr | P_RW | PS).to_le_bytes());
        }
        mem.write(pd, &table)?;
    }
    Ok(())
}

/// The vCPU state at the 64-bit entry point.
pub fn initial_vcpu_state(entry: u64, zero_page: u64) -> VcpuState {
    let data = Segment {
        selector: BOOT_DS,
        attrib: DATA_ATTRIB,
        limit: 0xffff_ffff,
        base: 0,
    };
    let mut s = VcpuState {
        rip: entry,
        rflags: cr::RFLAGS_RESERVED1, // IF = 0
        cr0: cr::CR0_PE | cr::CR0_ET | cr::CR0_NE | cr::CR0_PG,
        cr3: PML4_ADDR,
        cr4: cr::CR4_PAE,
        efer: cr::EFER_LME | cr::EFER_LMA,
        cs: Segment {
            selector: BOOT_CS,
            attrib: CODE64_ATTRIB,
            limit: 0xffff_ffff,
            base: 0,
        },
        ds: data,
        es: data,
        fs: data,
        gs: data,
        ss: data,
        tr: Segment {
            selector: 0,
            attrib: TSS_ATTRIB,
            limit: 0x67,
            base: 0,
        },
        ldtr: Segment::default(),
        gdtr: DescriptorTable {
            base: GDT_ADDR,
            limit: (GDT.len() * 8 - 1) as u16,
        },
        idtr: DescriptorTable { base: 0, limit: 0 },
        ..Default::default()
    };
    s.set_gpr(Gpr::Rsi, zero_page);
    s.set_gpr(Gpr::Rsp, BOOT_STACK_POINTER);
    s
}

/// Loads `kernel` (and the initramfs) into `mem` and prepares everything the
/// 64-bit boot protocol requires. Returns the initial vCPU state.
pub fn load_linux(
    mem: &mut dyn GuestMemory,
    kernel: &BzImage<'_>,
    config: &BootConfig<'_>,
) -> Result<BootInfo, BootError> {
    let mem_size = mem.size();
    // Identity map + low structures + at least the kernel start.
    if mem_size < 2 * KERNEL_LOAD_ADDR {
        return Err(BootError::MemoryTooSmall);
    }
    for d in config.virtio_devices {
        if d.base < mem_size {
            return Err(BootError::MmioOverlapsRam { base: d.base });
        }
    }

    // Kernel.
    let load_addr = KERNEL_LOAD_ADDR;
    let kernel_end = kernel.footprint_end(load_addr);
    if kernel_end > mem_size {
        return Err(BootError::ImageTooLargeForMemory {
            needed: kernel_end,
            available: mem_size,
        });
    }
    mem.write(load_addr, kernel.kernel())?;

    // Command line.
    let cmdline = build_cmdline(config.cmdline, config.virtio_devices);
    let max = (kernel.cmdline_size as usize).min(CMDLINE_MAX - 1);
    if cmdline.len() > max {
        return Err(BootError::CmdlineTooLong {
            len: cmdline.len(),
            max,
        });
    }
    mem.write(CMDLINE_ADDR, cmdline.as_bytes())?;
    mem.write_u8(CMDLINE_ADDR + cmdline.len() as u64, 0)?;

    // Initramfs: as high as allowed, page aligned, above the kernel.
    let initrd = match config.initrd {
        None => None,
        Some(data) => {
            let size = data.len() as u64;
            // initrd_addr_max is the highest address the initrd may occupy
            // (inclusive); 0 in ancient kernels means 0x37ffffff.
            let max_addr = match kernel.initrd_addr_max {
                0 => 0x37ff_ffff,
                m => m as u64,
            };
            let top = mem_size.min(max_addr.saturating_add(1));
            let addr = top
                .checked_sub(size)
                .map(|a| a & !0xfff)
                .filter(|&a| a >= kernel_end)
                .ok_or(BootError::InitrdTooLarge { size })?;
            mem.write(addr, data)?;
            Some((addr, size))
        }
    };

    // Zero page.
    let mut zp = [0u8; ZERO_PAGE_SIZE];
    let hdr = kernel.setup_header();
    zp[off::SETUP_SECTS..off::SETUP_SECTS + hdr.len()].copy_from_slice(hdr);
    zp[off::TYPE_OF_LOADER] = 0xff; // "undefined" boot loader
    zp[off::CMD_LINE_PTR..off::CMD_LINE_PTR + 4]
        .copy_from_slice(&(CMDLINE_ADDR as u32).to_le_bytes());
    zp[off::EXT_CMD_LINE_PTR..off::EXT_CMD_LINE_PTR + 4]
        .copy_from_slice(&((CMDLINE_ADDR >> 32) as u32).to_le_bytes());
    if let Some((addr, size)) = initrd {
        zp[off::RAMDISK_IMAGE..off::RAMDISK_IMAGE + 4]
            .copy_from_slice(&(addr as u32).to_le_bytes());
        zp[off::RAMDISK_SIZE..off::RAMDISK_SIZE + 4].copy_from_slice(&(size as u32).to_le_bytes());
        zp[off::EXT_RAMDISK_IMAGE..off::EXT_RAMDISK_IMAGE + 4]
            .copy_from_slice(&((addr >> 32) as u32).to_le_bytes());
        zp[off::EXT_RAMDISK_SIZE..off::EXT_RAMDISK_SIZE + 4]
            .copy_from_slice(&((size >> 32) as u32).to_le_bytes());
    }
    let e820 = e820_map(mem_size);
    zp[off::E820_ENTRIES] = e820.len() as u8;
    for (i, e) in e820.iter().enumerate() {
        let at = off::E820_TABLE + i * 20;
        zp[at..at + 8].copy_from_slice(&e.addr.to_le_bytes());
        zp[at + 8..at + 16].copy_from_slice(&e.size.to_le_bytes());
        zp[at + 16..at + 20].copy_from_slice(&(e.kind as u32).to_le_bytes());
    }
    mem.write(ZERO_PAGE_ADDR, &zp)?;

    // GDT and page tables.
    let mut gdt = [0u8; GDT.len() * 8];
    for (i, d) in GDT.iter().enumerate() {
        gdt[i * 8..i * 8 + 8].copy_from_slice(&d.to_le_bytes());
    }
    mem.write(GDT_ADDR, &gdt)?;
    write_page_tables(mem)?;

    Ok(BootInfo {
        vcpu: initial_vcpu_state(load_addr + 0x200, ZERO_PAGE_ADDR),
        kernel_addr: load_addr,
        initrd,
        cmdline,
        e820,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn an_ap_starts_in_real_mode_at_its_vector() {
        let st = ap_start_state(0x9a);
        assert_eq!(st.cs.base + st.rip, 0x9a000);
        assert_eq!(st.cs.selector, 0x9a00);
        assert_eq!(st.cr0 & cr::CR0_PE, 0);
        assert_eq!(st.efer, 0);
        assert!(!st.interrupts_enabled());
    }

    /// A synthetic bzImage: 2 setup sectors + boot sector, then `payload`.
    pub(crate) fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 2u8;
        let mut img = vec![0u8; (setup_sects as usize + 1) * 512];
        img[off::SETUP_SECTS] = setup_sects;
        img[off::BOOT_FLAG..off::BOOT_FLAG + 2].copy_from_slice(&0xaa55u16.to_le_bytes());
        img[off::JUMP] = 0xeb;
        img[off::JUMP + 1] = (0x26c - off::HEADER) as u8;
        img[off::HEADER..off::HEADER + 4].copy_from_slice(b"HdrS");
        img[off::VERSION..off::VERSION + 2].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x211] = 0x01; // loadflags: LOADED_HIGH
        img[off::INITRD_ADDR_MAX..off::INITRD_ADDR_MAX + 4]
            .copy_from_slice(&0x7fff_ffffu32.to_le_bytes());
        img[off::KERNEL_ALIGNMENT..off::KERNEL_ALIGNMENT + 4]
            .copy_from_slice(&0x20_0000u32.to_le_bytes());
        img[off::RELOCATABLE_KERNEL] = 1;
        img[off::XLOADFLAGS..off::XLOADFLAGS + 2].copy_from_slice(&0x3u16.to_le_bytes());
        img[off::CMDLINE_SIZE..off::CMDLINE_SIZE + 4].copy_from_slice(&2047u32.to_le_bytes());
        img[off::PREF_ADDRESS..off::PREF_ADDRESS + 8].copy_from_slice(&0x100_0000u64.to_le_bytes());
        img[off::INIT_SIZE..off::INIT_SIZE + 4].copy_from_slice(&0x40_0000u32.to_le_bytes());
        img.extend_from_slice(payload);
        img
    }

    #[test]
    fn parses_synthetic_image() {
        let img = fake_bzimage(&[0x90; 1000]);
        let k = BzImage::parse(&img).unwrap();
        assert_eq!(k.protocol, 0x020f);
        assert_eq!(k.setup_sects, 2);
        assert_eq!(k.kernel().len(), 1000);
        assert_eq!(k.setup_header().len(), 0x26c - 0x1f1);
        // Runs at pref_address (16 MiB) and needs init_size from there.
        assert_eq!(k.footprint_end(KERNEL_LOAD_ADDR), 0x140_0000);
    }

    #[test]
    fn rejects_bad_images() {
        assert_eq!(BzImage::parse(&[]).unwrap_err(), BootError::NotABzImage);
        assert_eq!(
            BzImage::parse(&[0u8; 4096]).unwrap_err(),
            BootError::NotABzImage
        );
        let good = fake_bzimage(&[1, 2, 3]);

        let mut old = good.clone();
        old[off::VERSION..off::VERSION + 2].copy_from_slice(&0x0206u16.to_le_bytes());
        assert_eq!(
            BzImage::parse(&old).unwrap_err(),
            BootError::ProtocolTooOld(0x0206)
        );

        let mut no64 = good.clone();
        no64[off::XLOADFLAGS] = 0x2;
        assert_eq!(BzImage::parse(&no64).unwrap_err(), BootError::No64BitEntry);

        // setup_sects pointing past the end.
        let mut trunc = good.clone();
        trunc[off::SETUP_SECTS] = 200;
        assert!(matches!(
            BzImage::parse(&trunc).unwrap_err(),
            BootError::Truncated { .. }
        ));

        // Header end beyond any sane setup header.
        let mut badjump = good.clone();
        badjump[off::JUMP + 1] = 0xff;
        assert_eq!(
            BzImage::parse(&badjump).unwrap_err(),
            BootError::NotABzImage
        );

        // Every truncation that cuts into the setup sectors fails cleanly.
        for len in 0..=3 * 512 {
            assert!(BzImage::parse(&good[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..2000 {
            let mut img = fake_bzimage(&[0; 64]);
            // Corrupt a few header bytes at random.
            for _ in 0..8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let at = 0x1f1 + (seed as usize % 0x80);
                img[at] = (seed >> 32) as u8;
            }
            if let Ok(k) = BzImage::parse(&img) {
                let mut mem = VecMemory::new(32 << 20);
                let _ = load_linux(&mut mem, &k, &BootConfig::default());
            }
        }
    }

    #[test]
    fn loads_into_memory() {
        let payload: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let img = fake_bzimage(&payload);
        let k = BzImage::parse(&img).unwrap();
        let mut mem = VecMemory::new(64 << 20);
        let initrd = vec![0x5a; 10_000];
        let devs = [VirtioMmioDevice {
            base: 0xd000_0000,
            size: 0x1000,
            irq: 5,
        }];
        let info = load_linux(
            &mut mem,
            &k,
            &BootConfig {
                cmdline: "console=ttyS0 nolapic",
                initrd: Some(&initrd),
                virtio_devices: &devs,
            },
        )
        .unwrap();

        // Kernel bytes.
        let mut buf = vec![0u8; payload.len()];
        mem.read(KERNEL_LOAD_ADDR, &mut buf).unwrap();
        assert_eq!(buf, payload);

        // vCPU state.
        let s = &info.vcpu;
        assert_eq!(s.rip, KERNEL_LOAD_ADDR + 0x200);
        assert_eq!(s.gpr(Gpr::Rsi), ZERO_PAGE_ADDR);
        assert_eq!(s.rflags & cr::RFLAGS_IF, 0);
        assert!(s.long_mode_paging());
        assert_eq!(s.cs.selector, BOOT_CS);
        assert_eq!(s.ss.selector, BOOT_DS);
        assert!(s.cs.is_long_mode_code());

        // Command line.
        assert_eq!(
            info.cmdline,
            "console=ttyS0 nolapic virtio_mmio.device=4K@0xd0000000:5"
        );
        let mut cl = vec![0u8; info.cmdline.len() + 1];
        mem.read(CMDLINE_ADDR, &mut cl).unwrap();
        assert_eq!(&cl[..info.cmdline.len()], info.cmdline.as_bytes());
        assert_eq!(cl[info.cmdline.len()], 0);

        // Zero page.
        let zp = ZERO_PAGE_ADDR;
        assert_eq!(mem.read_u32(zp + off::HEADER as u64).unwrap(), HDRS_MAGIC);
        assert_eq!(mem.read_u8(zp + off::TYPE_OF_LOADER as u64).unwrap(), 0xff);
        assert_eq!(
            mem.read_u32(zp + off::CMD_LINE_PTR as u64).unwrap() as u64,
            CMDLINE_ADDR
        );
        let (ird_addr, ird_size) = info.initrd.unwrap();
        assert_eq!(ird_addr % 4096, 0);
        assert!(ird_addr >= k.footprint_end(KERNEL_LOAD_ADDR));
        assert!(ird_addr + ird_size <= 64 << 20);
        assert_eq!(
            mem.read_u32(zp + off::RAMDISK_IMAGE as u64).unwrap() as u64,
            ird_addr
        );
        assert_eq!(
            mem.read_u32(zp + off::RAMDISK_SIZE as u64).unwrap() as u64,
            ird_size
        );
        assert_eq!(mem.read_u8(ird_addr).unwrap(), 0x5a);
        assert_eq!(mem.read_u8(zp + off::E820_ENTRIES as u64).unwrap(), 3);
        let last = zp + off::E820_TABLE as u64 + 2 * 20;
        assert_eq!(mem.read_u64(last).unwrap(), KERNEL_LOAD_ADDR);
        assert_eq!(
            mem.read_u64(last + 8).unwrap(),
            (64 << 20) - KERNEL_LOAD_ADDR
        );
        assert_eq!(mem.read_u32(last + 16).unwrap(), 1);
        assert_eq!(mem.read_u8(zp + 0x1ef).unwrap(), 0, "sentinel");

        // Page tables: identity map resolves.
        for gva in [0u64, 0x7000, KERNEL_LOAD_ADDR + 0x200, ird_addr, 0xfff_ffff] {
            assert_eq!(
                crate::decode::walk_guest_page_table(&mem, s.cr3, gva).unwrap(),
                gva
            );
        }
        // GDT.
        assert_eq!(mem.read_u64(GDT_ADDR + 0x10).unwrap(), GDT[2]);
    }

    #[test]
    fn too_small_memory() {
        let img = fake_bzimage(&[0; 100]);
        let k = BzImage::parse(&img).unwrap();
        let mut mem = VecMemory::new(16 << 20); // footprint ends at 20 MiB
        assert!(matches!(
            load_linux(&mut mem, &k, &BootConfig::default()),
            Err(BootError::ImageTooLargeForMemory { .. })
        ));
        let mut tiny = VecMemory::new(4096);
        assert_eq!(
            load_linux(&mut tiny, &k, &BootConfig::default()).unwrap_err(),
            BootError::MemoryTooSmall
        );
    }

    #[test]
    fn initrd_and_cmdline_limits() {
        let img = fake_bzimage(&[0; 100]);
        let k = BzImage::parse(&img).unwrap();
        let mut mem = VecMemory::new(24 << 20);
        let big = vec![0u8; 5 << 20];
        assert_eq!(
            load_linux(
                &mut mem,
                &k,
                &BootConfig {
                    initrd: Some(&big),
                    ..Default::default()
                }
            )
            .unwrap_err(),
            BootError::InitrdTooLarge { size: 5 << 20 }
        );
        let long = "x".repeat(3000);
        assert!(matches!(
            load_linux(
                &mut mem,
                &k,
                &BootConfig {
                    cmdline: &long,
                    ..Default::default()
                }
            ),
            Err(BootError::CmdlineTooLong {
                len: 3000,
                max: 2047
            })
        ));
        let overlap = [VirtioMmioDevice {
            base: 0x10_0000,
            size: 0x1000,
            irq: 5,
        }];
        assert!(matches!(
            load_linux(
                &mut mem,
                &k,
                &BootConfig {
                    virtio_devices: &overlap,
                    ..Default::default()
                }
            ),
            Err(BootError::MmioOverlapsRam { .. })
        ));
    }

    #[test]
    fn cmdline_params() {
        let d = VirtioMmioDevice {
            base: 0xd000_1000,
            size: 0x200,
            irq: 6,
        };
        assert_eq!(d.cmdline_param(), "virtio_mmio.device=512@0xd0001000:6");
        assert_eq!(
            build_cmdline("  ", &[d]),
            "virtio_mmio.device=512@0xd0001000:6"
        );
    }

    /// Parses a real distribution kernel when the host has one.
    #[test]
    fn host_kernel_if_present() {
        let Ok(dir) = std::fs::read_dir("/boot") else {
            return;
        };
        for entry in dir.flatten() {
            let name = entry.file_name();
            if !name.to_string_lossy().starts_with("vmlinuz-") {
                continue;
            }
            let Ok(img) = std::fs::read(entry.path()) else {
                continue;
            };
            let k = BzImage::parse(&img).expect("host bzImage parses");
            assert!(k.protocol >= MIN_PROTOCOL);
            assert!(k.init_size as usize >= k.kernel().len());
            let mut mem = VecMemory::new(512 << 20);
            load_linux(&mut mem, &k, &BootConfig::default()).unwrap();
        }
    }
}
