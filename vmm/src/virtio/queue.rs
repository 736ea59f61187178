//! Split virtqueues (virtio 1.x, section 2.7) over [`GuestMemory`].
//!
//! Everything in the rings is written by the guest and untrusted: ring
//! indices are checked against the queue size, descriptor chains are bounded
//! (a looping chain is an error, not a hang), and every buffer must lie in
//! guest RAM. Any violation is a [`QueueError`], which the transport turns
//! into DEVICE_NEEDS_RESET for that one device.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::memory::GuestMemory;
use crate::memory::MemError;

pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Driver asks not to be interrupted (avail.flags).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// Device asks not to be notified (used.flags).
pub const VIRTQ_USED_F_NO_NOTIFY: u16 = 1;

/// Largest indirect table accepted (the spec bounds it by nothing but RAM).
pub const MAX_INDIRECT_DESCRIPTORS: u32 = 1024;

/// How a queue is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Queue used before it was made ready.
    NotReady,
    /// Size is zero, not a power of two, or above the maximum.
    BadSize(u16),
    /// A ring address is misaligned or the ring is not in guest RAM.
    BadRing {
        which: &'static str,
        addr: u64,
    },
    /// avail.idx moved more than `size` entries ahead of what was consumed.
    AvailIndexJump {
        avail_idx: u16,
        next_avail: u16,
    },
    /// A ring or chain names a descriptor index >= the table size.
    DescriptorIndex(u32),
    /// The chain is longer than the table: it loops.
    ChainTooLong,
    /// A buffer is not entirely in guest RAM.
    BufferOutOfBounds {
        addr: u64,
        len: u32,
    },
    /// Bad indirect table: nested, combined with NEXT, wrong length.
    BadIndirect,
    /// The chain holds more bytes than the device accepts at once.
    ChainTooLarge {
        len: u64,
        max: u64,
    },
    Memory(MemError),
}

impl From<MemError> for QueueError {
    fn from(e: MemError) -> Self {
        QueueError::Memory(e)
    }
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueueError::NotReady => write!(f, "queue is not ready"),
            QueueError::BadSize(s) => write!(f, "bad queue size {s}"),
            QueueError::BadRing { which, addr } => {
                write!(f, "{which} ring at {addr:#x} is misaligned or outside RAM")
            }
            QueueError::AvailIndexJump {
                avail_idx,
                next_avail,
            } => write!(
                f,
                "avail.idx {avail_idx} is too far ahead of consumed {next_avail}"
            ),
            QueueError::DescriptorIndex(i) => write!(f, "descriptor index {i} out of range"),
            QueueError::ChainTooLong => write!(f, "descriptor chain loops"),
            QueueError::BufferOutOfBounds { addr, len } => {
                write!(f, "buffer [{addr:#x}, +{len:#x}) is outside guest RAM")
            }
            QueueError::BadIndirect => write!(f, "malformed indirect descriptor table"),
            QueueError::ChainTooLarge { len, max } => {
                write!(f, "descriptor chain of {len} bytes exceeds {max}")
            }
            QueueError::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// One buffer of a chain, already checked to lie in guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    pub addr: u64,
    pub len: u32,
    /// Device-writable (the driver receives into it).
    pub writable: bool,
}

/// A popped descriptor chain. Return it with [`Virtqueue::add_used`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorChain {
    pub head: u16,
    pub descriptors: Vec<Descriptor>,
}

impl DescriptorChain {
    pub fn readable_len(&self) -> u64 {
        self.descriptors
            .iter()
            .filter(|d| !d.writable)
            .map(|d| d.len as u64)
            .sum()
    }

    pub fn writable_len(&self) -> u64 {
        self.descriptors
            .iter()
            .filter(|d| d.writable)
            .map(|d| d.len as u64)
            .sum()
    }

    /// Appends the device-readable bytes to `out`, refusing chains with
    /// more than `max` of them (a chain may name all of guest RAM, many
    /// times over: never allocate what the guest asks for unchecked).
    pub fn read_into(
        &self,
        mem: &dyn GuestMemory,
        out: &mut Vec<u8>,
        max: usize,
    ) -> Result<(), QueueError> {
        let len = self.readable_len();
        if len > max as u64 {
            return Err(QueueError::ChainTooLarge {
                len,
                max: max as u64,
            });
        }
        for d in self.descriptors.iter().filter(|d| !d.writable) {
            let start = out.len();
            out.resize(start + d.len as usize, 0);
            mem.read(d.addr, &mut out[start..])?;
        }
        Ok(())
    }

    /// Writes `data` into the device-writable buffers in order; returns how
    /// many bytes fit.
    pub fn write_from(&self, mem: &mut dyn GuestMemory, data: &[u8]) -> Result<usize, MemError> {
        let mut done = 0;
        for d in self.descriptors.iter().filter(|d| d.writable) {
            if done == data.len() {
                break;
            }
            let n = (d.len as usize).min(data.len() - done);
            mem.write(d.addr, &data[done..done + n])?;
            done += n;
        }
        Ok(done)
    }
}

/// A split virtqueue's driver-programmed configuration and device-side
/// cursors.
#[derive(Debug, Clone, Default)]
pub struct Virtqueue {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_addr: u64,
    pub avail_addr: u64,
    pub used_addr: u64,
    next_avail: u16,
    /// avail.idx as last read: chains up to it are taken without reading
    /// it again (one guest memory access less per chain).
    seen_avail: u16,
    next_used: u16,
    /// Used entries were added since the transport last looked.
    used_added: bool,
    /// What used.flags says: the driver need not notify.
    no_notify: bool,
}

impl Virtqueue {
    pub fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            ..Default::default()
        }
    }

    /// Back to the reset state (keeps `max_size`).
    pub fn reset(&mut self) {
        *self = Self::new(self.max_size);
    }

    /// Checks the driver's configuration; called when it sets QueueReady.
    pub fn validate(&self, mem: &dyn GuestMemory) -> Result<(), QueueError> {
        let n = self.size as u64;
        if self.size == 0 || !self.size.is_power_of_two() || self.size > self.max_size {
            return Err(QueueError::BadSize(self.size));
        }
        let rings = [
            ("descriptor", self.desc_addr, 16, 16 * n),
            ("available", self.avail_addr, 2, 6 + 2 * n),
            ("used", self.used_addr, 4, 6 + 8 * n),
        ];
        for (which, addr, align, len) in rings {
            if addr % align != 0 || !mem.contains(addr, len) {
                return Err(QueueError::BadRing { which, addr });
            }
        }
        Ok(())
    }

    fn avail_idx(&self, mem: &dyn GuestMemory) -> Result<u16, QueueError> {
        Ok(mem.read_u16(self.avail_addr + 2)?)
    }

    /// Whether the driver has made buffers available that were not popped.
    pub fn has_available(&self, mem: &dyn GuestMemory) -> Result<bool, QueueError> {
        if !self.ready {
            return Ok(false);
        }
        Ok(self.avail_idx(mem)? != self.next_avail)
    }

    /// Takes the next available descriptor chain, if any.
    pub fn pop(&mut self, mem: &dyn GuestMemory) -> Result<Option<DescriptorChain>, QueueError> {
        if !self.ready {
            return Err(QueueError::NotReady);
        }
        let avail_idx = match self.next_avail == self.seen_avail {
            true => self.avail_idx(mem)?,
            false => self.seen_avail,
        };
        let pending = avail_idx.wrapping_sub(self.next_avail);
        if pending == 0 {
            return Ok(None);
        }
        if pending > self.size {
            return Err(QueueError::AvailIndexJump {
                avail_idx,
                next_avail: self.next_avail,
            });
        }
        self.seen_avail = avail_idx;
        let slot = (self.next_avail % self.size) as u64;
        let head = mem.read_u16(self.avail_addr + 4 + 2 * slot)?;
        let descriptors = self.walk_chain(mem, head)?;
        self.next_avail = self.next_avail.wrapping_add(1);
        Ok(Some(DescriptorChain { head, descriptors }))
    }

    /// Puts the last popped chain back (the device could not take it yet).
    pub fn undo_pop(&mut self) {
        self.next_avail = self.next_avail.wrapping_sub(1);
    }

    fn read_desc(
        mem: &dyn GuestMemory,
        table: u64,
        i: u32,
    ) -> Result<(u64, u32, u16, u16), QueueError> {
        let mut raw = [0u8; 16];
        mem.read(table + 16 * i as u64, &mut raw)?;
        Ok(parse_desc(&raw))
    }

    fn walk_chain(&self, mem: &dyn GuestMemory, head: u16) -> Result<Vec<Descriptor>, QueueError> {
        let mut out = Vec::new();
        // (table address, table length, current index)
        let table = self.desc_addr;
        let mut table_len = self.size as u32;
        let mut index = head as u32;
        // An indirect table, read at once (one guest memory access instead
        // of one per descriptor: Linux's ~64 KiB receive buffers are 18).
        let mut indirect: Option<Vec<u8>> = None;
        // Each table can be walked at most once per entry; more means a loop.
        let mut budget = table_len;
        loop {
            if index >= table_len {
                return Err(QueueError::DescriptorIndex(index));
            }
            if budget == 0 {
                return Err(QueueError::ChainTooLong);
            }
            budget -= 1;
            let (addr, len, flags, next) = match &indirect {
                Some(bytes) => parse_desc(&bytes[16 * index as usize..][..16]),
                None => Self::read_desc(mem, table, index)?,
            };
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                let nested = indirect.is_some();
                if nested || flags & VIRTQ_DESC_F_NEXT != 0 || len % 16 != 0 || len == 0 {
                    return Err(QueueError::BadIndirect);
                }
                let entries = len / 16;
                if entries > MAX_INDIRECT_DESCRIPTORS || !mem.contains(addr, len as u64) {
                    return Err(QueueError::BadIndirect);
                }
                let mut bytes = vec![0u8; len as usize];
                mem.read(addr, &mut bytes)?;
                indirect = Some(bytes);
                table_len = entries;
                budget = entries;
                index = 0;
                continue;
            }
            if !mem.contains(addr, len as u64) {
                return Err(QueueError::BufferOutOfBounds { addr, len });
            }
            out.push(Descriptor {
                addr,
                len,
                writable: flags & VIRTQ_DESC_F_WRITE != 0,
            });
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(out);
            }
            index = next as u32;
        }
    }

    /// Returns a chain to the driver with `len` bytes written into it.
    pub fn add_used(
        &mut self,
        mem: &mut dyn GuestMemory,
        head: u16,
        len: u32,
    ) -> Result<(), QueueError> {
        if !self.ready || self.size == 0 {
            return Err(QueueError::NotReady);
        }
        let slot = (self.next_used % self.size) as u64;
        let entry = self.used_addr + 4 + 8 * slot;
        // id and len in one access.
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&u32::from(head).to_le_bytes());
        raw[4..].copy_from_slice(&len.to_le_bytes());
        mem.write(entry, &raw)?;
        self.next_used = self.next_used.wrapping_add(1);
        // The entry must be visible before the index: the kernel's guest
        // memory implementation is expected to order plain writes (x86 TSO).
        mem.write_u16(self.used_addr + 2, self.next_used)?;
        self.used_added = true;
        Ok(())
    }

    /// Tells the driver (used.flags) whether to notify the device of new
    /// buffers: a device that looks at the ring anyway (it has work out
    /// whose completion makes it look) saves the driver's notifications.
    pub fn suppress_notifications(
        &mut self,
        mem: &mut dyn GuestMemory,
        on: bool,
    ) -> Result<(), QueueError> {
        if !self.ready || on == self.no_notify {
            return Ok(());
        }
        let flags = if on { VIRTQ_USED_F_NO_NOTIFY } else { 0 };
        mem.write_u16(self.used_addr, flags)?;
        self.no_notify = on;
        Ok(())
    }

    /// Whether used entries were added since the last call and the driver
    /// wants an interrupt for them.
    pub fn take_interrupt_needed(&mut self, mem: &dyn GuestMemory) -> bool {
        if !core::mem::take(&mut self.used_added) {
            return false;
        }
        match mem.read_u16(self.avail_addr) {
            Ok(flags) => flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0,
            Err(_) => true,
        }
    }
}

/// A descriptor's fields (address, length, flags, next) from its 16 bytes.
fn parse_desc(raw: &[u8]) -> (u64, u32, u16, u16) {
    (
        u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default()),
        u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default()),
        u16::from_le_bytes([raw[12], raw[13]]),
        u16::from_le_bytes([raw[14], raw[15]]),
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::memory::VecMemory;

    pub(crate) const DESC: u64 = 0x1000;
    pub(crate) const AVAIL: u64 = 0x2000;
    pub(crate) const USED: u64 = 0x3000;

    /// A test-side driver for one queue of size 8.
    pub(crate) struct Driver {
        pub avail_idx: u16,
        pub used_seen: u16,
    }

    impl Driver {
        pub(crate) fn new() -> Self {
            Self {
                avail_idx: 0,
                used_seen: 0,
            }
        }

        pub(crate) fn set_desc(
            mem: &mut VecMemory,
            i: u16,
            addr: u64,
            len: u32,
            flags: u16,
            next: u16,
        ) {
            let at = DESC + 16 * i as u64;
            mem.write_u64(at, addr).unwrap();
            mem.write_u32(at + 8, len).unwrap();
            mem.write_u16(at + 12, flags).unwrap();
            mem.write_u16(at + 14, next).unwrap();
        }

        pub(crate) fn publish(&mut self, mem: &mut VecMemory, head: u16) {
            mem.write_u16(AVAIL + 4 + 2 * (self.avail_idx % 8) as u64, head)
                .unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            mem.write_u16(AVAIL + 2, self.avail_idx).unwrap();
        }

        /// Next used entry: (head, len).
        pub(crate) fn used(&mut self, mem: &VecMemory) -> Option<(u32, u32)> {
            let idx = mem.read_u16(USED + 2).unwrap();
            if idx == self.used_seen {
                return None;
            }
            let at = USED + 4 + 8 * (self.used_seen % 8) as u64;
            self.used_seen = self.used_seen.wrapping_add(1);
            Some((mem.read_u32(at).unwrap(), mem.read_u32(at + 4).unwrap()))
        }
    }

    pub(crate) fn ready_queue() -> Virtqueue {
        let mut q = Virtqueue::new(8);
        q.desc_addr = DESC;
        q.avail_addr = AVAIL;
        q.used_addr = USED;
        q.ready = true;
        q
    }

    #[test]
    fn pop_chain_and_use() {
        let mut mem = VecMemory::new(0x10000);
        let mut q = ready_queue();
        q.validate(&mem).unwrap();
        let mut d = Driver::new();
        Driver::set_desc(&mut mem, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 3);
        Driver::set_desc(&mut mem, 3, 0x9000, 16, VIRTQ_DESC_F_WRITE, 0);
        mem.write(0x8000, b"ping").unwrap();
        assert!(q.pop(&mem).unwrap().is_none());
        d.publish(&mut mem, 0);
        assert!(q.has_available(&mem).unwrap());
        let c = q.pop(&mem).unwrap().unwrap();
        assert_eq!(c.head, 0);
        assert_eq!(c.readable_len(), 4);
        assert_eq!(c.writable_len(), 16);
        let mut v = Vec::new();
        c.read_into(&mem, &mut v, 4096).unwrap();
        assert!(matches!(
            c.read_into(&mem, &mut v, 3),
            Err(QueueError::ChainTooLarge { len: 4, max: 3 })
        ));
        assert_eq!(v, b"ping");
        assert_eq!(c.write_from(&mut mem, b"pong!").unwrap(), 5);
        q.add_used(&mut mem, c.head, 5).unwrap();
        assert_eq!(d.used(&mem), Some((0, 5)));
        assert!(q.take_interrupt_needed(&mem));
        assert!(!q.take_interrupt_needed(&mem));
        let mut out = [0u8; 5];
        mem.read(0x9000, &mut out).unwrap();
        assert_eq!(&out, b"pong!");
    }

    #[test]
    fn looping_chain_is_an_error() {
        let mut mem = VecMemory::new(0x10000);
        let mut q = ready_queue();
        let mut d = Driver::new();
        Driver::set_desc(&mut mem, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 1);
        Driver::set_desc(&mut mem, 1, 0x8000, 4, VIRTQ_DESC_F_NEXT, 0);
        d.publish(&mut mem, 0);
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ChainTooLong);
        // Self loop.
        let mut q = ready_queue();
        Driver::set_desc(&mut mem, 0, 0x8000, 4, VIRTQ_DESC_F_NEXT, 0);
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ChainTooLong);
    }

    #[test]
    fn out_of_range_everything() {
        let mut mem = VecMemory::new(0x10000);
        let mut d = Driver::new();
        // Buffer outside RAM.
        let mut q = ready_queue();
        Driver::set_desc(&mut mem, 0, 0xffff_fff0, 0x100, 0, 0);
        d.publish(&mut mem, 0);
        assert!(matches!(
            q.pop(&mem).unwrap_err(),
            QueueError::BufferOutOfBounds { .. }
        ));
        // Overflowing buffer address.
        let mut q = ready_queue();
        Driver::set_desc(&mut mem, 0, u64::MAX - 2, 0x10, 0, 0);
        assert!(matches!(
            q.pop(&mem).unwrap_err(),
            QueueError::BufferOutOfBounds { .. }
        ));
        // Head index out of range.
        let mut q = ready_queue();
        mem.write_u16(AVAIL + 4, 99).unwrap();
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::DescriptorIndex(99));
        // Next index out of range.
        let mut q = ready_queue();
        mem.write_u16(AVAIL + 4, 0).unwrap();
        Driver::set_desc(&mut mem, 0, 0x8000, 1, VIRTQ_DESC_F_NEXT, 8);
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::DescriptorIndex(8));
        // avail.idx jumps by more than the queue size.
        let mut q = ready_queue();
        mem.write_u16(AVAIL + 2, 100).unwrap();
        assert!(matches!(
            q.pop(&mem).unwrap_err(),
            QueueError::AvailIndexJump { .. }
        ));
        // Not ready.
        let mut q = Virtqueue::new(8);
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::NotReady);
        q.size = 0;
        assert_eq!(
            q.add_used(&mut mem, 0, 0).unwrap_err(),
            QueueError::NotReady
        );
    }

    #[test]
    fn validation() {
        let mem = VecMemory::new(0x10000);
        let mut q = ready_queue();
        q.validate(&mem).unwrap();
        q.size = 6;
        assert_eq!(q.validate(&mem).unwrap_err(), QueueError::BadSize(6));
        q.size = 16;
        assert_eq!(q.validate(&mem).unwrap_err(), QueueError::BadSize(16));
        q.size = 8;
        q.used_addr = 0x3002;
        assert!(matches!(
            q.validate(&mem),
            Err(QueueError::BadRing { which: "used", .. })
        ));
        q.used_addr = 0xfff8;
        assert!(matches!(
            q.validate(&mem),
            Err(QueueError::BadRing { which: "used", .. })
        ));
        q.used_addr = USED;
        q.desc_addr = u64::MAX - 15;
        assert!(matches!(
            q.validate(&mem),
            Err(QueueError::BadRing {
                which: "descriptor",
                ..
            })
        ));
    }

    #[test]
    fn indirect_descriptors() {
        let mut mem = VecMemory::new(0x10000);
        let mut q = ready_queue();
        let mut d = Driver::new();
        // Indirect table at 0x5000 with 2 entries.
        let t = 0x5000u64;
        mem.write_u64(t, 0x8000).unwrap();
        mem.write_u32(t + 8, 3).unwrap();
        mem.write_u16(t + 12, VIRTQ_DESC_F_NEXT).unwrap();
        mem.write_u16(t + 14, 1).unwrap();
        mem.write_u64(t + 16, 0x9000).unwrap();
        mem.write_u32(t + 24, 7).unwrap();
        mem.write_u16(t + 28, VIRTQ_DESC_F_WRITE).unwrap();
        Driver::set_desc(&mut mem, 2, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
        d.publish(&mut mem, 2);
        let c = q.pop(&mem).unwrap().unwrap();
        assert_eq!(c.head, 2);
        assert_eq!(c.descriptors.len(), 2);
        assert_eq!((c.readable_len(), c.writable_len()), (3, 7));

        // Looping inside the indirect table.
        mem.write_u16(t + 28, VIRTQ_DESC_F_NEXT).unwrap();
        mem.write_u16(t + 30, 0).unwrap();
        d.publish(&mut mem, 2);
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::ChainTooLong);

        // Bad length, nested indirect, INDIRECT|NEXT.
        for (len, flags) in [
            (31, VIRTQ_DESC_F_INDIRECT),
            (32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT),
        ] {
            let mut q = ready_queue();
            Driver::set_desc(&mut mem, 2, t, len, flags, 0);
            assert_eq!(q.pop(&mem).unwrap_err(), QueueError::BadIndirect);
        }
        let mut q = ready_queue();
        Driver::set_desc(&mut mem, 2, t, 32, VIRTQ_DESC_F_INDIRECT, 0);
        mem.write_u16(t + 12, VIRTQ_DESC_F_INDIRECT).unwrap();
        assert_eq!(q.pop(&mem).unwrap_err(), QueueError::BadIndirect);
    }

    #[test]
    fn no_interrupt_flag() {
        let mut mem = VecMemory::new(0x10000);
        let mut q = ready_queue();
        mem.write_u16(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
        q.add_used(&mut mem, 0, 0).unwrap();
        assert!(!q.take_interrupt_needed(&mem));
    }

    #[test]
    fn random_rings_never_panic() {
        let mut seed = 7u64;
        for _ in 0..300 {
            let mut mem = VecMemory::new(0x10000);
            for chunk in mem.as_mut_slice()[0x1000..0x4000].chunks_exact_mut(8) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Mostly small values so addresses and indices are often valid.
                let v = if seed & 1 == 0 {
                    seed & 0xffff_000f_0007
                } else {
                    seed
                };
                chunk.copy_from_slice(&v.to_le_bytes());
            }
            let mut q = ready_queue();
            for _ in 0..20 {
                match q.pop(&mem) {
                    Ok(Some(c)) => {
                        let mut v = Vec::new();
                        let _ = c.read_into(&mem, &mut v, 1 << 20);
                        let _ = q.add_used(&mut mem, c.head, 0);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
}
