//! ACPI's firmware tables, read from their bytes: the RSDP (where the
//! tables start), the system description tables' common header and the
//! root table's list of tables (RSDT or XSDT), and the MADT (the CPUs and
//! interrupt controllers).
//!
//! Safe and portable, so host tests feed it tables made by hand; every
//! length and checksum is checked, and a table that does not add up is an
//! [`Error`], never a panic. The kernel side (`arch::acpi`) turns physical
//! addresses into byte slices.

#[cfg(test)]
mod fuzz;
pub mod madt;
pub mod rsdp;
pub mod sdt;

use core::fmt;

/// Why a table cannot be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// Fewer bytes than the structure's fixed part (or its own length).
    Short { signature: [u8; 4], len: usize },
    /// Not the signature expected.
    BadSignature { expected: [u8; 4], found: [u8; 4] },
    /// Its bytes do not add up to zero.
    BadChecksum { signature: [u8; 4] },
    /// A length field outside what the structure can be.
    BadLength { signature: [u8; 4], len: u32 },
    /// A MADT entry at this offset of the table whose length is below its
    /// type's size (0 or 1 would never advance) or runs past the table.
    BadEntry { offset: usize, kind: u8, len: u8 },
    /// The root table lists no table with this signature.
    NotListed { signature: [u8; 4] },
    /// A table (or the RSDP) at a physical address the kernel cannot read.
    Unreachable { phys: u64 },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Short { signature, len } => {
                write!(f, "{}: only {len} bytes", Sig(signature))
            }
            Error::BadSignature { expected, found } => {
                write!(
                    f,
                    "expected signature {}, found {}",
                    Sig(expected),
                    Sig(found)
                )
            }
            Error::BadChecksum { signature } => write!(f, "{}: bad checksum", Sig(signature)),
            Error::BadLength { signature, len } => {
                write!(f, "{}: bad length {len}", Sig(signature))
            }
            Error::BadEntry { offset, kind, len } => write!(
                f,
                "MADT entry type {kind} at offset {offset} has a bad length {len}"
            ),
            Error::NotListed { signature } => {
                write!(f, "the root table lists no {}", Sig(signature))
            }
            Error::Unreachable { phys } => {
                write!(f, "a table at {phys:#x}, beyond the direct map")
            }
        }
    }
}

/// A table signature, printed as text where it is printable.
pub struct Sig(pub [u8; 4]);

impl fmt::Display for Sig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for &b in &self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

/// Whether `bytes` add up to zero (mod 256), as every ACPI checksum says.
pub fn checksum_ok(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |sum, &b| sum.wrapping_add(b)) == 0
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

fn sig_at(bytes: &[u8], at: usize) -> [u8; 4] {
    let mut sig = [0; 4];
    if let Some(b) = bytes.get(at..at + 4) {
        sig.copy_from_slice(b);
    }
    sig
}

/// Sets the byte at `at` so that `bytes` add up to zero (host tests build
/// tables with it).
#[cfg(test)]
pub fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = 0u8.wrapping_sub(sum);
}
