//! The mounted file system: mount, inode access, write-back ordering and unmount.

use alloc::collections::BTreeMap;
use alloc::collections::BTreeSet;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use crate::cache::BlockCache;
use crate::cache::Phase;
use crate::cache::PHASES;
use crate::device::BlockDevice;
use crate::device::SECTOR_SIZE;
use crate::dir::DirIndexes;
use crate::inode::Inode;
use crate::inode::FLAGS_UNSUPPORTED;
use crate::superblock::GroupDesc;
use crate::superblock::Superblock;
use crate::superblock::COMPAT_HAS_JOURNAL;
use crate::superblock::GROUP_DESC_SIZE;
use crate::superblock::STATE_CLEAN;
use crate::superblock::STATE_ERRORS;
use crate::superblock::SUPERBLOCK_OFFSET;
use crate::superblock::SUPERBLOCK_SIZE;
use crate::types::FsError;
use crate::types::Ino;
use crate::types::MountError;
use crate::types::StatFs;

/// How much the block cache holds before dirty blocks are written back.
pub const CACHE_BYTES: usize = 4 << 20;

/// An ext2 file system on a block device.
pub struct Fs<D: BlockDevice> {
    pub(crate) dev: D,
    pub(crate) sb: Superblock,
    pub(crate) groups: Vec<GroupDesc>,
    pub(crate) cache: BlockCache,
    pub(crate) read_only: bool,
    pub(crate) now: u32,
    pub(crate) block_size: u32,
    /// Freed since the last sync: reusable only once the inodes that pointed to them are on disk.
    pub(crate) pending_free_blocks: Vec<u32>,
    pub(crate) pending_free_inodes: Vec<(Ino, bool)>,
    /// Open references (`retain`), and the unlinked inodes they keep alive.
    pub(crate) open: BTreeMap<Ino, u32>,
    pub(crate) orphans: BTreeSet<Ino>,
    /// Per group, the inode bitmap position where a free inode is likely first found.
    pub(crate) inode_search_hint: Vec<u32>,
    pub(crate) dirs: DirIndexes,
    /// Where the last read of a file ended: a read that starts there is sequential and
    /// reads ahead ([`crate::device::READ_AHEAD_BYTES`]).
    pub(crate) last_read: Option<(Ino, u64)>,
}

impl<D: BlockDevice> Fs<D> {
    /// Mounts the file system on `dev`: read-only if the device is, or if it uses a
    /// read-only-compatible feature this implementation does not know. A read-write mount
    /// of a file system not cleanly unmounted runs the repair pass first.
    pub fn mount(dev: D) -> Result<Fs<D>, MountError> {
        Self::mount_with_cache(dev, CACHE_BYTES)
    }

    /// Like [`Fs::mount`], with a block cache of `cache_bytes` (at least 16 blocks).
    pub fn mount_with_cache(mut dev: D, cache_bytes: usize) -> Result<Fs<D>, MountError> {
        let disk_bytes = dev.sectors().saturating_mul(SECTOR_SIZE as u64);
        if disk_bytes < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(MountError::TooSmall);
        }
        let mut raw = vec![0u8; SUPERBLOCK_SIZE];
        dev.read(SUPERBLOCK_OFFSET / SECTOR_SIZE as u64, &mut raw)?;
        let sb = Superblock::parse(raw, disk_bytes)?;
        let block_size = sb.block_size;
        let mut read_only = dev.read_only();
        if sb.unknown_ro_compat() != 0 {
            log::warn!(
                "ext2: unknown ro_compat features {:#x}: mounting read-only",
                sb.unknown_ro_compat()
            );
            read_only = true;
        }
        if sb.feature_compat & COMPAT_HAS_JOURNAL != 0 {
            log::warn!(
                "ext2: the file system has a journal (ext3), which is not kept: mounting read-only"
            );
            read_only = true;
        }
        let mut fs = Fs {
            dev,
            sb,
            groups: Vec::new(),
            cache: BlockCache::new(block_size as usize, cache_bytes),
            read_only,
            now: 0,
            block_size,
            pending_free_blocks: Vec::new(),
            pending_free_inodes: Vec::new(),
            open: BTreeMap::new(),
            orphans: BTreeSet::new(),
            inode_search_hint: Vec::new(),
            dirs: DirIndexes::default(),
            last_read: None,
        };
        fs.now = fs.sb.last_write_time();
        fs.load_groups()?;
        fs.inode_search_hint = vec![0; fs.groups.len()];
        let clean = fs.sb.state & STATE_CLEAN != 0 && fs.sb.state & STATE_ERRORS == 0;
        if !clean && fs.read_only {
            log::warn!(
                "ext2: the file system was not cleanly unmounted; mounted read-only without repair"
            );
        }
        if !fs.read_only {
            if !clean {
                log::warn!("ext2: the file system was not cleanly unmounted: repairing");
                fs.repair()
                    .map_err(|e| MountError::Repair(format!("{e}")))?;
            }
            fs.sb.state &= !STATE_CLEAN;
            fs.sb.note_mount(fs.now);
            fs.write_superblock()
                .map_err(|e| MountError::Io(format!("{e}")))?;
            fs.dev.flush()?;
        }
        Ok(fs)
    }

    fn load_groups(&mut self) -> Result<(), MountError> {
        let count = self.sb.group_count();
        let gdt_start = u64::from(self.sb.first_data_block) + 1;
        let per_block = self.block_size as usize / GROUP_DESC_SIZE;
        for group in 0..count {
            let block = gdt_start + u64::from(group) / per_block as u64;
            if block >= u64::from(self.sb.blocks_count) {
                return Err(MountError::BadLayout(format!(
                    "group descriptor of group {group} at block {block}, beyond the disk"
                )));
            }
            let raw = self.cache.get(&mut self.dev, block)?;
            let off = (group as usize % per_block) * GROUP_DESC_SIZE;
            let gd = GroupDesc::parse(&raw[off..off + GROUP_DESC_SIZE]);
            self.check_group(group, &gd)?;
            self.groups.push(gd);
        }
        Ok(())
    }

    fn check_group(&self, group: u32, gd: &GroupDesc) -> Result<(), MountError> {
        let first = self.sb.first_data_block;
        let end = self.sb.blocks_count;
        let in_disk = |b: u32| b >= first && b < end;
        let table_end = u64::from(gd.inode_table) + u64::from(self.sb.inode_table_blocks());
        if !in_disk(gd.block_bitmap)
            || !in_disk(gd.inode_bitmap)
            || !in_disk(gd.inode_table)
            || table_end > u64::from(end)
        {
            return Err(MountError::BadLayout(format!(
                "group {group}: bitmaps at {}/{} or inode table at {} beyond the disk",
                gd.block_bitmap, gd.inode_bitmap, gd.inode_table
            )));
        }
        if u32::from(gd.free_blocks) > self.sb.blocks_in_group(group)
            || u32::from(gd.free_inodes) > self.sb.inodes_per_group
        {
            return Err(MountError::BadLayout(format!(
                "group {group}: free counts larger than the group"
            )));
        }
        Ok(())
    }

    /// The device underneath (for tests that simulate a crash by taking it away).
    pub fn device_mut(&mut self) -> &mut D {
        &mut self.dev
    }

    /// Sets the clock for timestamps (seconds since 1970).
    pub fn set_time(&mut self, unix_seconds: u32) {
        self.now = unix_seconds;
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn check_writable(&self) -> Result<(), FsError> {
        if self.read_only {
            return Err(FsError::ReadOnly);
        }
        Ok(())
    }

    /// Writes dirty blocks back between operations when they fill the cache.
    pub(crate) fn maybe_writeback(&mut self) -> Result<(), FsError> {
        if !self.read_only && self.cache.needs_writeback() {
            self.sync()?;
        }
        Ok(())
    }

    /// Checks a block number read from disk and widens it.
    pub(crate) fn check_block(&self, block: u32, what: &str) -> Result<u64, FsError> {
        if block < self.sb.first_data_block || block >= self.sb.blocks_count {
            return Err(FsError::Corrupt(format!(
                "{what}: block {block} beyond the disk"
            )));
        }
        Ok(u64::from(block))
    }

    pub(crate) fn block(&mut self, block: u64) -> Result<&[u8], FsError> {
        Ok(self.cache.get(&mut self.dev, block)?)
    }

    pub(crate) fn block_mut(&mut self, block: u64, phase: Phase) -> Result<&mut [u8], FsError> {
        Ok(self.cache.get_mut(&mut self.dev, block, phase)?)
    }

    /// A freshly allocated block, zero-filled.
    pub(crate) fn zeroed_block(&mut self, block: u64, phase: Phase) -> Result<&mut [u8], FsError> {
        let data = self.cache.get_new(&mut self.dev, block, phase)?;
        data.fill(0);
        Ok(data)
    }

    fn inode_slot(&self, ino: Ino) -> Result<(u64, usize), FsError> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(FsError::Corrupt(format!("inode number {ino} out of range")));
        }
        let index = ino - 1;
        let group = (index / self.sb.inodes_per_group) as usize;
        let within = u64::from(index % self.sb.inodes_per_group) * u64::from(self.sb.inode_size);
        let block = u64::from(self.groups[group].inode_table) + within / u64::from(self.block_size);
        Ok((block, (within % u64::from(self.block_size)) as usize))
    }

    /// The inode as stored (used or not).
    pub(crate) fn read_inode(&mut self, ino: Ino) -> Result<Inode, FsError> {
        let (block, off) = self.inode_slot(ino)?;
        let raw = self.block(block)?;
        Ok(Inode::decode(&raw[off..off + 128]))
    }

    pub(crate) fn write_inode(&mut self, ino: Ino, inode: &Inode) -> Result<(), FsError> {
        let (block, off) = self.inode_slot(ino)?;
        let raw = self.block_mut(block, Phase::Inodes)?;
        inode.encode(&mut raw[off..off + 128]);
        Ok(())
    }

    /// Clears a newly allocated inode's slot, with a valid `i_extra_isize` in large inodes.
    pub(crate) fn clear_inode_slot(&mut self, ino: Ino) -> Result<(), FsError> {
        let (block, off) = self.inode_slot(ino)?;
        let inode_size = usize::from(self.sb.inode_size);
        let extra = self.extra_isize();
        let raw = self.block_mut(block, Phase::Inodes)?;
        raw[off..off + inode_size].fill(0);
        if inode_size > 128 {
            crate::bytes::put16(raw, off + 128, extra);
        }
        Ok(())
    }

    fn extra_isize(&self) -> u16 {
        let room = self.sb.inode_size.saturating_sub(128);
        let want = if self.sb.want_extra_isize == 0 {
            32
        } else {
            self.sb.want_extra_isize
        };
        if want <= room && want % 4 == 0 {
            want
        } else {
            room.min(32) & !3
        }
    }

    /// An inode a caller may use: linked, or unlinked but still open.
    pub(crate) fn live_inode(&mut self, ino: Ino) -> Result<Inode, FsError> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(FsError::NotFound);
        }
        let inode = self.read_inode(ino)?;
        let alive = inode.links > 0 || self.orphans.contains(&ino);
        if !alive || inode.kind().is_none() {
            return Err(FsError::NotFound);
        }
        if inode.flags & FLAGS_UNSUPPORTED != 0 {
            return Err(FsError::Corrupt(format!(
                "inode {ino} uses extents or inline data (flags {:#x})",
                inode.flags
            )));
        }
        Ok(inode)
    }

    /// Writes every dirty block in crash-safe order, then the superblock, flushing between phases:
    /// data and new blocks, inode tables, directory blocks, then bitmaps and group descriptors.
    /// Sends nothing to the device when nothing changed since the last sync.
    pub fn sync(&mut self) -> Result<(), FsError> {
        let nothing_to_do = !self.cache.is_dirty()
            && self.pending_free_blocks.is_empty()
            && self.pending_free_inodes.is_empty();
        if self.read_only || nothing_to_do {
            return Ok(());
        }
        for phase in [Phase::Data, Phase::Inodes, Phase::Dirs] {
            if self.cache.write_phase(&mut self.dev, phase)? > 0 {
                self.dev.flush()?;
            }
        }
        self.apply_pending_frees()?;
        self.encode_groups()?;
        self.cache.write_phase(&mut self.dev, PHASES[3])?;
        self.write_superblock()?;
        self.dev.flush()?;
        Ok(())
    }

    fn encode_groups(&mut self) -> Result<(), FsError> {
        let gdt_start = u64::from(self.sb.first_data_block) + 1;
        let per_block = self.block_size as usize / GROUP_DESC_SIZE;
        for (chunk_index, chunk) in self.groups.chunks(per_block).enumerate() {
            let chunk = chunk.to_vec();
            let raw =
                self.cache
                    .get_mut(&mut self.dev, gdt_start + chunk_index as u64, Phase::Meta)?;
            for (i, gd) in chunk.iter().enumerate() {
                gd.encode(&mut raw[i * GROUP_DESC_SIZE..(i + 1) * GROUP_DESC_SIZE]);
            }
        }
        Ok(())
    }

    pub(crate) fn write_superblock(&mut self) -> Result<(), FsError> {
        let free_blocks: u32 = self.groups.iter().map(|g| u32::from(g.free_blocks)).sum();
        let free_inodes: u32 = self.groups.iter().map(|g| u32::from(g.free_inodes)).sum();
        let raw = self.sb.encode(free_blocks, free_inodes, self.now);
        self.dev
            .write(SUPERBLOCK_OFFSET / SECTOR_SIZE as u64, raw)?;
        Ok(())
    }

    /// File system totals (blocks freed since the last sync count as free).
    pub fn statfs(&mut self) -> StatFs {
        let free_blocks: u64 = self
            .groups
            .iter()
            .map(|g| u64::from(g.free_blocks))
            .sum::<u64>()
            + self.pending_free_blocks.len() as u64;
        let free_inodes: u64 = self
            .groups
            .iter()
            .map(|g| u64::from(g.free_inodes))
            .sum::<u64>()
            + self.pending_free_inodes.len() as u64;
        StatFs {
            block_size: self.block_size,
            blocks: u64::from(self.sb.blocks_count),
            free_blocks,
            available_blocks: free_blocks.saturating_sub(u64::from(self.sb.r_blocks_count)),
            inodes: u64::from(self.sb.inodes_count),
            free_inodes,
            name_max: 255,
        }
    }

    /// Syncs, marks the file system clean and hands the device back. Unlinked inodes still
    /// open are freed first.
    pub fn unmount(mut self) -> Result<D, FsError> {
        if !self.read_only {
            let orphans: Vec<Ino> = self.orphans.iter().copied().collect();
            for ino in orphans {
                self.orphans.remove(&ino);
                self.free_inode(ino)?;
            }
            self.sync()?;
            self.sb.state |= STATE_CLEAN;
            self.write_superblock()?;
            self.dev.flush()?;
        }
        Ok(self.dev)
    }
}
