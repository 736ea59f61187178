//! The Multiboot2 boot information (what GRUB's `multiboot2` hands the
//! kernel), read from its bytes: the command line (tag 1), the first
//! module (tag 3, the bootfs archive), the memory map (tag 6) and the
//! loader's copy of ACPI's RSDP (tags 14 and 15).
//!
//! Safe and portable, so host tests feed it structures made by hand;
//! `boot` makes the byte slice from the physical address in EBX.

use alloc::vec::Vec;
use core::fmt;

const TAG_END: u32 = 0;
const TAG_CMDLINE: u32 = 1;
const TAG_MODULE: u32 = 3;
const TAG_MEMORY_MAP: u32 = 6;
const TAG_ACPI_OLD_RSDP: u32 = 14;
const TAG_ACPI_NEW_RSDP: u32 = 15;
/// The fixed part: `total_size`, `reserved`.
const FIXED: usize = 8;
/// A tag's header: `type`, `size`.
const TAG_HEADER: usize = 8;
/// A memory map entry: base (u64), length (u64), type (u32), reserved (u32).
const MEMORY_ENTRY_MIN: usize = 24;

/// A memory map entry's type for usable RAM.
pub const MEMORY_AVAILABLE: u32 = 1;
/// The largest information structure we accept (GRUB's are a few KiB).
pub const TOTAL_SIZE_MAX: u32 = 1 << 20;

/// A range of the machine's physical memory, as the memory map says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    pub base: u64,
    pub len: u64,
    pub kind: u32,
}

/// What the kernel takes from the structure.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Info<'a> {
    /// Without its NUL.
    pub cmdline: Option<&'a [u8]>,
    /// The first module: physical base and size.
    pub module: Option<(u64, u64)>,
    /// Empty without a memory map tag.
    pub memory: Vec<MemoryRegion>,
    /// The loader's copy of the RSDP: the ACPI 2.0 one (tag 15) if given,
    /// else the ACPI 1.0 one (tag 14); checked by `acpi::rsdp`.
    pub rsdp: Option<&'a [u8]>,
}

/// Why the structure cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// `total_size` is below the fixed part and the end tag, above
    /// [`TOTAL_SIZE_MAX`], or beyond the bytes given.
    BadTotalSize(u32),
    /// The tag at this offset does not fit in `total_size`.
    TagOverruns { kind: u32, offset: usize },
    /// No end tag (type 0) before `total_size`.
    NoEndTag,
    /// A module whose end is before its start.
    BadModule { start: u32, end: u32 },
    /// A memory map whose `entry_size` is too small.
    BadMemoryEntrySize(u32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::BadTotalSize(size) => write!(f, "bad total size {size}"),
            Error::TagOverruns { kind, offset } => {
                write!(f, "tag type {kind} at offset {offset} runs past the end")
            }
            Error::NoEndTag => write!(f, "no end tag"),
            Error::BadModule { start, end } => {
                write!(f, "module 1 ends ({end:#x}) before it starts ({start:#x})")
            }
            Error::BadMemoryEntrySize(size) => {
                write!(
                    f,
                    "memory map entries of {size} bytes (at least {MEMORY_ENTRY_MIN})"
                )
            }
        }
    }
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

/// Checks `total_size` (the structure's first u32) before the structure
/// is read whole.
pub fn check_total_size(total: u32) -> Result<usize, Error> {
    if (FIXED + TAG_HEADER) as u32 <= total && total <= TOTAL_SIZE_MAX {
        Ok(total as usize)
    } else {
        Err(Error::BadTotalSize(total))
    }
}

/// Reads the structure in `bytes` (at least its `total_size`).
pub fn parse(bytes: &[u8]) -> Result<Info<'_>, Error> {
    let total = u32_at(bytes, 0).ok_or(Error::BadTotalSize(0))?;
    let total = check_total_size(total)?;
    let bytes = bytes
        .get(..total)
        .ok_or(Error::BadTotalSize(total as u32))?;
    let mut info = Info::default();
    let mut offset = FIXED;
    while offset + TAG_HEADER <= total {
        let kind = u32_at(bytes, offset).unwrap_or(TAG_END);
        let size = u32_at(bytes, offset + 4).unwrap_or(0) as usize;
        let body = (size >= TAG_HEADER)
            .then(|| bytes.get(offset + TAG_HEADER..offset + size))
            .flatten()
            .ok_or(Error::TagOverruns { kind, offset })?;
        match kind {
            TAG_END => return Ok(info),
            TAG_CMDLINE => info.cmdline = Some(until_nul(body)),
            TAG_MODULE if info.module.is_none() => info.module = Some(module(body)?),
            TAG_MEMORY_MAP => info.memory = memory_map(body)?,
            TAG_ACPI_NEW_RSDP => info.rsdp = Some(body),
            TAG_ACPI_OLD_RSDP if info.rsdp.is_none() => info.rsdp = Some(body),
            _ => {}
        }
        offset += size.next_multiple_of(8);
    }
    Err(Error::NoEndTag)
}

fn until_nul(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// A module tag's body: `mod_start`, `mod_end` (exclusive), its string.
fn module(body: &[u8]) -> Result<(u64, u64), Error> {
    let (start, end) = (u32_at(body, 0).unwrap_or(0), u32_at(body, 4).unwrap_or(0));
    if end < start {
        return Err(Error::BadModule { start, end });
    }
    Ok((start as u64, (end - start) as u64))
}

/// A memory map tag's body: `entry_size`, `entry_version`, the entries.
fn memory_map(body: &[u8]) -> Result<Vec<MemoryRegion>, Error> {
    let entry_size = u32_at(body, 0).unwrap_or(0);
    if (entry_size as usize) < MEMORY_ENTRY_MIN {
        return Err(Error::BadMemoryEntrySize(entry_size));
    }
    let entries = body.get(8..).unwrap_or_default();
    Ok(entries
        .chunks_exact(entry_size as usize)
        .filter_map(|e| {
            Some(MemoryRegion {
                base: u64_at(e, 0)?,
                len: u64_at(e, 8)?,
                kind: u32_at(e, 16)?,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A structure from (type, body) tags; the end tag is added.
    fn build(tags: &[(u32, Vec<u8>)]) -> Vec<u8> {
        let mut out = vec![0u8; FIXED];
        for (kind, body) in tags.iter().chain([(TAG_END, Vec::new())].iter()) {
            out.extend_from_slice(&kind.to_le_bytes());
            out.extend_from_slice(&((TAG_HEADER + body.len()) as u32).to_le_bytes());
            out.extend_from_slice(body);
            out.resize(out.len().next_multiple_of(8), 0);
        }
        let total = out.len() as u32;
        out[..4].copy_from_slice(&total.to_le_bytes());
        out
    }

    fn module_body(start: u32, end: u32) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&start.to_le_bytes());
        b.extend_from_slice(&end.to_le_bytes());
        b.extend_from_slice(b"bootfs\0");
        b
    }

    fn memory_body(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&24u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for &(base, len, kind) in entries {
            b.extend_from_slice(&base.to_le_bytes());
            b.extend_from_slice(&len.to_le_bytes());
            b.extend_from_slice(&kind.to_le_bytes());
            b.extend_from_slice(&0u32.to_le_bytes());
        }
        b
    }

    #[test]
    fn reads_cmdline_first_module_and_memory_map() {
        let bytes = build(&[
            (TAG_CMDLINE, b"profile=hello\0".to_vec()),
            (2, b"GRUB 2.06\0".to_vec()),
            (TAG_MODULE, module_body(0x20_0000, 0x20_3000)),
            (TAG_MODULE, module_body(0x30_0000, 0x30_1000)),
            (
                TAG_MEMORY_MAP,
                memory_body(&[
                    (0, 0x9fc00, 1),
                    (0x10_0000, 0x1ff0_0000, 1),
                    (0xfffc_0000, 0x4_0000, 2),
                ]),
            ),
        ]);
        let info = parse(&bytes).unwrap();
        assert_eq!(info.cmdline, Some(&b"profile=hello"[..]));
        assert_eq!(info.module, Some((0x20_0000, 0x3000)), "the first module");
        assert_eq!(info.memory.len(), 3);
        assert_eq!(
            info.memory[1],
            MemoryRegion {
                base: 0x10_0000,
                len: 0x1ff0_0000,
                kind: MEMORY_AVAILABLE
            }
        );
    }

    #[test]
    fn prefers_the_acpi_2_rsdp() {
        let old = build(&[(TAG_ACPI_OLD_RSDP, b"RSD PTR v1".to_vec())]);
        assert_eq!(parse(&old).unwrap().rsdp, Some(&b"RSD PTR v1"[..]));
        let both = build(&[
            (TAG_ACPI_NEW_RSDP, b"RSD PTR v2".to_vec()),
            (TAG_ACPI_OLD_RSDP, b"RSD PTR v1".to_vec()),
        ]);
        assert_eq!(parse(&both).unwrap().rsdp, Some(&b"RSD PTR v2"[..]));
    }

    #[test]
    fn missing_tags_are_none() {
        let bytes = build(&[]);
        assert_eq!(parse(&bytes), Ok(Info::default()));
    }

    #[test]
    fn refuses_malformed_structures() {
        let good = build(&[(TAG_CMDLINE, b"x\0".to_vec())]);
        let mut short = good.clone();
        short[..4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(parse(&short), Err(Error::BadTotalSize(8)));
        assert_eq!(
            parse(&good[..good.len() - 1]),
            Err(Error::BadTotalSize(good.len() as u32))
        );
        let mut overrun = good.clone();
        overrun[12..16].copy_from_slice(&4096u32.to_le_bytes());
        assert_eq!(
            parse(&overrun),
            Err(Error::TagOverruns {
                kind: TAG_CMDLINE,
                offset: 8
            })
        );
        let mut no_end = good.clone();
        let end_at = no_end.len() - 8;
        no_end[end_at..end_at + 4].copy_from_slice(&99u32.to_le_bytes());
        assert_eq!(parse(&no_end), Err(Error::NoEndTag));
        let backwards = build(&[(TAG_MODULE, module_body(0x3000, 0x2000))]);
        assert_eq!(
            parse(&backwards),
            Err(Error::BadModule {
                start: 0x3000,
                end: 0x2000
            })
        );
        let mut tiny_entries = memory_body(&[]);
        tiny_entries[..4].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(
            parse(&build(&[(TAG_MEMORY_MAP, tiny_entries)])),
            Err(Error::BadMemoryEntrySize(8))
        );
        assert!(check_total_size(TOTAL_SIZE_MAX + 1).is_err());
    }
}
