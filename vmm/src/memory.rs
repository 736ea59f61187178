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

pub use starina_abi::guest_memory::checked_range;
pub use starina_abi::guest_memory::Gpa;
pub use starina_abi::guest_memory::GuestMemory;
pub use starina_abi::guest_memory::MemError;

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
