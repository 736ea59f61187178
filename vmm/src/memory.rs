//! Guest physical memory as seen by the VMM.
//!
//! Every device model and the boot loader reach guest memory only through the
//! [`GuestMemory`] trait, so the same code runs in host unit tests (over a
//! `Vec<u8>`) and in the kernel (over the slice that backs the guest's RAM).
//!
//! Guest-physical addresses come from the guest and are untrusted: every
//! access is bounds-checked with overflow-safe arithmetic and fails with a
//! [`MemError`] instead of panicking.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

/// A guest-physical address.
pub type Gpa = u64;

/// Why a guest memory access failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemError {
    /// `[gpa, gpa + len)` is not entirely inside guest RAM (or overflows).
    OutOfBounds { gpa: Gpa, len: u64 },
}

impl fmt::Display for MemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemError::OutOfBounds { gpa, len } => write!(
                f,
                "guest memory access [{gpa:#x}, +{len:#x}) is outside guest RAM"
            ),
        }
    }
}

/// Checks that `[gpa, gpa + len)` lies inside `[0, size)` and returns it as a
/// host index range. Never overflows.
pub fn checked_range(gpa: Gpa, len: usize, size: u64) -> Result<core::ops::Range<usize>, MemError> {
    let err = MemError::OutOfBounds {
        gpa,
        len: len as u64,
    };
    let end = gpa.checked_add(len as u64).ok_or(err)?;
    if end > size {
        return Err(err);
    }
    let start = usize::try_from(gpa).map_err(|_| err)?;
    let end = usize::try_from(end).map_err(|_| err)?;
    Ok(start..end)
}

/// Guest RAM, mapped contiguously from guest-physical address 0.
///
/// Only `size`, `read` and `write` are required; the typed little-endian
/// helpers are provided on top. The trait is object safe: device models take
/// `&mut dyn GuestMemory`.
pub trait GuestMemory {
    /// Size of guest RAM in bytes; valid addresses are `[0, size)`.
    fn size(&self) -> u64;

    /// Copies `buf.len()` bytes at `gpa` into `buf`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError>;

    /// Copies `data` into guest memory at `gpa`.
    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), MemError>;

    /// Whether `[gpa, gpa + len)` is entirely inside guest RAM.
    fn contains(&self, gpa: Gpa, len: u64) -> bool {
        gpa.checked_add(len).is_some_and(|end| end <= self.size())
    }

    fn read_u8(&self, gpa: Gpa) -> Result<u8, MemError> {
        let mut b = [0u8; 1];
        self.read(gpa, &mut b)?;
        Ok(b[0])
    }

    fn read_u16(&self, gpa: Gpa) -> Result<u16, MemError> {
        let mut b = [0u8; 2];
        self.read(gpa, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    fn read_u32(&self, gpa: Gpa) -> Result<u32, MemError> {
        let mut b = [0u8; 4];
        self.read(gpa, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn read_u64(&self, gpa: Gpa) -> Result<u64, MemError> {
        let mut b = [0u8; 8];
        self.read(gpa, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn write_u8(&mut self, gpa: Gpa, v: u8) -> Result<(), MemError> {
        self.write(gpa, &[v])
    }

    fn write_u16(&mut self, gpa: Gpa, v: u16) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    fn write_u32(&mut self, gpa: Gpa, v: u32) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    fn write_u64(&mut self, gpa: Gpa, v: u64) -> Result<(), MemError> {
        self.write(gpa, &v.to_le_bytes())
    }

    /// Fills `[gpa, gpa + len)` with zeros (in chunks, without a big buffer).
    fn zero(&mut self, gpa: Gpa, len: u64) -> Result<(), MemError> {
        if !self.contains(gpa, len) {
            return Err(MemError::OutOfBounds { gpa, len });
        }
        let zeros = [0u8; 512];
        let mut done = 0u64;
        while done < len {
            let n = core::cmp::min(len - done, zeros.len() as u64) as usize;
            self.write(gpa + done, &zeros[..n])?;
            done += n as u64;
        }
        Ok(())
    }
}

/// Guest memory over a borrowed byte slice: what the kernel uses for the RAM
/// it has mapped for the guest.
pub struct SliceMemory<'a> {
    bytes: &'a mut [u8],
}

impl<'a> SliceMemory<'a> {
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes }
    }
}

impl GuestMemory for SliceMemory<'_> {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let r = checked_range(gpa, buf.len(), self.size())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let r = checked_range(gpa, data.len(), self.size())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

/// Guest memory owned in a `Vec`: for tests and host tools.
#[derive(Clone)]
pub struct VecMemory {
    bytes: Vec<u8>,
}

impl VecMemory {
    /// `size` bytes of zeroed guest RAM.
    pub fn new(size: usize) -> Self {
        Self {
            bytes: vec![0; size],
        }
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.bytes
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

impl GuestMemory for VecMemory {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), MemError> {
        let r = checked_range(gpa, buf.len(), self.size())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, data: &[u8]) -> Result<(), MemError> {
        let r = checked_range(gpa, data.len(), self.size())?;
        self.bytes[r].copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_write_roundtrip() {
        let mut m = VecMemory::new(4096);
        m.write_u64(8, 0x1122_3344_5566_7788).unwrap();
        assert_eq!(m.read_u64(8).unwrap(), 0x1122_3344_5566_7788);
        assert_eq!(m.read_u8(8).unwrap(), 0x88);
        assert_eq!(m.read_u16(14).unwrap(), 0x1122);
        m.write_u32(4092, 0xdead_beef).unwrap();
        assert_eq!(m.read_u32(4092).unwrap(), 0xdead_beef);
    }

    #[test]
    fn out_of_bounds_is_an_error() {
        let mut m = VecMemory::new(4096);
        assert!(m.read_u32(4093).is_err());
        assert!(m.write_u8(4096, 1).is_err());
        assert!(m.read_u64(u64::MAX).is_err());
        assert!(m.read_u64(u64::MAX - 3).is_err());
        assert!(m.write(u64::MAX, &[]).is_err());
        assert!(m.zero(4000, 200).is_err());
        assert!(!m.contains(u64::MAX, 2));
        // Empty access at the very end is fine.
        assert!(m.read(4096, &mut []).is_ok());
    }

    #[test]
    fn zero_clears() {
        let mut m = VecMemory::new(2048);
        m.as_mut_slice().fill(0xaa);
        m.zero(10, 1500).unwrap();
        assert_eq!(m.read_u8(9).unwrap(), 0xaa);
        assert!(m.as_slice()[10..1510].iter().all(|&b| b == 0));
        assert_eq!(m.read_u8(1510).unwrap(), 0xaa);
    }

    #[test]
    fn slice_memory() {
        let mut backing = [0u8; 64];
        let mut m = SliceMemory::new(&mut backing);
        m.write_u16(62, 0xbeef).unwrap();
        assert!(m.write_u16(63, 1).is_err());
        assert_eq!(backing[62], 0xef);
    }
}
