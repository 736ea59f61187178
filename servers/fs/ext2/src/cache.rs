//! A bounded write-back block cache. Dirty blocks remember which write-back phase they
//! belong to, so `sync` can write them in an order a crash cannot make unrepairable.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::device::IoError;
use crate::device::MAX_REQUEST_BYTES;
use crate::device::SECTOR_SIZE;

/// The order dirty blocks reach the disk in (with a flush after each phase).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// File data, indirect blocks and directory blocks allocated since the last sync:
    /// nothing on disk points to them yet.
    Data,
    /// Inode table blocks.
    Inodes,
    /// Directory blocks that on-disk directories already own.
    Dirs,
    /// Bitmaps and group descriptors (the superblock follows separately).
    Meta,
}

pub const PHASES: [Phase; 4] = [Phase::Data, Phase::Inodes, Phase::Dirs, Phase::Meta];

struct Entry {
    data: Vec<u8>,
    dirty: Option<Phase>,
    stamp: u64,
}

pub struct BlockCache {
    block_size: usize,
    capacity: usize,
    entries: BTreeMap<u64, Entry>,
    /// Clean entries by last use, oldest first: what eviction takes.
    clean_lru: BTreeMap<u64, u64>,
    clock: u64,
    dirty_count: usize,
}

impl BlockCache {
    pub fn new(block_size: usize, capacity_bytes: usize) -> BlockCache {
        BlockCache {
            block_size,
            capacity: (capacity_bytes / block_size).max(16),
            entries: BTreeMap::new(),
            clean_lru: BTreeMap::new(),
            clock: 0,
            dirty_count: 0,
        }
    }

    /// Whether dirty blocks fill the cache: the caller should sync between operations.
    pub fn needs_writeback(&self) -> bool {
        self.dirty_count * 4 >= self.capacity * 3
    }

    fn touch(&mut self, block: u64) {
        self.clock += 1;
        let stamp = self.clock;
        let entry = self
            .entries
            .get_mut(&block)
            .expect("touched block is cached");
        if entry.dirty.is_none() {
            self.clean_lru.remove(&entry.stamp);
            self.clean_lru.insert(stamp, block);
        }
        entry.stamp = stamp;
    }

    fn make_room(&mut self) {
        while self.entries.len() >= self.capacity {
            let Some((_, block)) = self.clean_lru.pop_first() else {
                // Only dirty blocks left: grow until the next sync.
                return;
            };
            self.entries.remove(&block);
        }
    }

    fn load<D: BlockDevice>(&mut self, dev: &mut D, block: u64, read: bool) -> Result<(), IoError> {
        if self.entries.contains_key(&block) {
            self.touch(block);
            return Ok(());
        }
        let mut data = vec![0u8; self.block_size];
        if read {
            let sectors_per_block = (self.block_size / SECTOR_SIZE) as u64;
            dev.read(block * sectors_per_block, &mut data)?;
        }
        self.insert_clean(block, data);
        Ok(())
    }

    /// Keeps `data`, read from the device, as block `block`'s clean bytes (read-ahead);
    /// nothing if the block is cached already (its bytes may be newer).
    pub fn insert_clean(&mut self, block: u64, data: Vec<u8>) {
        if self.entries.contains_key(&block) {
            return;
        }
        self.make_room();
        self.clock += 1;
        self.clean_lru.insert(self.clock, block);
        self.entries.insert(
            block,
            Entry {
                data,
                dirty: None,
                stamp: self.clock,
            },
        );
    }

    /// The block's bytes, read from the device if not cached.
    pub fn get<D: BlockDevice>(&mut self, dev: &mut D, block: u64) -> Result<&[u8], IoError> {
        self.load(dev, block, true)?;
        Ok(&self.entries[&block].data)
    }

    /// The block's bytes to change; marks it dirty for `phase` (an earlier phase wins).
    pub fn get_mut<D: BlockDevice>(
        &mut self,
        dev: &mut D,
        block: u64,
        phase: Phase,
    ) -> Result<&mut [u8], IoError> {
        self.load(dev, block, true)?;
        self.mark_dirty(block, phase);
        Ok(&mut self.entries.get_mut(&block).expect("loaded").data)
    }

    /// A block about to be overwritten whole (or a new one): zero-filled if not cached,
    /// never read from the device.
    pub fn get_new<D: BlockDevice>(
        &mut self,
        dev: &mut D,
        block: u64,
        phase: Phase,
    ) -> Result<&mut [u8], IoError> {
        self.load(dev, block, false)?;
        self.mark_dirty(block, phase);
        Ok(&mut self.entries.get_mut(&block).expect("loaded").data)
    }

    fn mark_dirty(&mut self, block: u64, phase: Phase) {
        let entry = self.entries.get_mut(&block).expect("loaded");
        match entry.dirty {
            None => {
                self.clean_lru.remove(&entry.stamp);
                entry.dirty = Some(phase);
                self.dirty_count += 1;
            }
            Some(old) => entry.dirty = Some(old.min(phase)),
        }
    }

    /// Writes every dirty block of `phase` and marks it clean; runs of consecutive blocks
    /// go out as one request of up to [`MAX_REQUEST_BYTES`]. Returns the blocks written.
    pub fn write_phase<D: BlockDevice>(
        &mut self,
        dev: &mut D,
        phase: Phase,
    ) -> Result<usize, IoError> {
        let dirty: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.dirty == Some(phase))
            .map(|(&b, _)| b)
            .collect();
        let blocks_per_request = (MAX_REQUEST_BYTES / self.block_size).max(1);
        let mut run_start = 0;
        while run_start < dirty.len() {
            let mut run_end = run_start + 1;
            while run_end < dirty.len()
                && run_end - run_start < blocks_per_request
                && dirty[run_end] == dirty[run_end - 1] + 1
            {
                run_end += 1;
            }
            self.write_run(dev, &dirty[run_start..run_end])?;
            run_start = run_end;
        }
        self.make_room();
        Ok(dirty.len())
    }

    /// Writes consecutive dirty blocks in one request, then marks them clean.
    fn write_run<D: BlockDevice>(&mut self, dev: &mut D, run: &[u64]) -> Result<(), IoError> {
        let sectors_per_block = (self.block_size / SECTOR_SIZE) as u64;
        let first = run[0] * sectors_per_block;
        if let [block] = run {
            dev.write(first, &self.entries[block].data)?;
        } else {
            let mut buf = Vec::with_capacity(run.len() * self.block_size);
            for block in run {
                buf.extend_from_slice(&self.entries[block].data);
            }
            dev.write(first, &buf)?;
        }
        for &block in run {
            let entry = self.entries.get_mut(&block).expect("dirty block is cached");
            entry.dirty = None;
            self.clean_lru.insert(entry.stamp, block);
            self.dirty_count -= 1;
        }
        Ok(())
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty_count > 0
    }

    pub fn contains(&self, block: u64) -> bool {
        self.entries.contains_key(&block)
    }

    /// Forgets a block (freed metadata) so stale bytes are not written back later.
    pub fn forget(&mut self, block: u64) {
        if let Some(entry) = self.entries.remove(&block) {
            match entry.dirty {
                Some(_) => self.dirty_count -= 1,
                None => {
                    self.clean_lru.remove(&entry.stamp);
                }
            }
        }
    }
}
