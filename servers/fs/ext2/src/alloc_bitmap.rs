//! Block and inode allocation in the group bitmaps. Freed blocks and inodes wait in a
//! pending list until the next sync has written the inodes that stopped using them.

use alloc::format;

use crate::cache::Phase;
use crate::device::BlockDevice;
use crate::fs::Fs;
use crate::types::FsError;
use crate::types::Ino;

/// The first clear bit in `bitmap[..limit]` at or after `start`, wrapping once.
fn find_clear_bit(bitmap: &[u8], limit: u32, start: u32) -> Option<u32> {
    let start = if start < limit { start } else { 0 };
    let scan = |from: u32, to: u32| -> Option<u32> {
        let mut bit = from;
        while bit < to {
            let byte = bitmap[(bit / 8) as usize];
            if byte == 0xFF && bit.is_multiple_of(8) {
                bit += 8;
                continue;
            }
            if byte & (1 << (bit % 8)) == 0 {
                return Some(bit);
            }
            bit += 1;
        }
        None
    };
    scan(start, limit).or_else(|| scan(0, start))
}

impl<D: BlockDevice> Fs<D> {
    /// Allocates a block, near `goal` if it is free; NoSpace when the disk is full.
    pub(crate) fn alloc_block(&mut self, goal: u64) -> Result<u32, FsError> {
        if let Some(block) = self.try_alloc_block(goal)? {
            return Ok(block);
        }
        if !self.pending_free_blocks.is_empty() {
            self.sync()?;
            if let Some(block) = self.try_alloc_block(goal)? {
                return Ok(block);
            }
        }
        Err(FsError::NoSpace)
    }

    fn try_alloc_block(&mut self, goal: u64) -> Result<Option<u32>, FsError> {
        let sb = &self.sb;
        let goal = if goal >= u64::from(sb.first_data_block) && goal < u64::from(sb.blocks_count) {
            goal as u32
        } else {
            sb.first_data_block
        };
        let groups = sb.group_count();
        let goal_group = (goal - sb.first_data_block) / sb.blocks_per_group;
        for step in 0..groups {
            let group = (goal_group + step) % groups;
            if self.groups[group as usize].free_blocks == 0 {
                continue;
            }
            let start = if step == 0 {
                goal - self.sb.group_first_block(group)
            } else {
                0
            };
            let limit = self.sb.blocks_in_group(group);
            let bitmap_block = u64::from(self.groups[group as usize].block_bitmap);
            let bitmap = self.block_mut(bitmap_block, Phase::Meta)?;
            let Some(bit) = find_clear_bit(bitmap, limit, start) else {
                log::warn!("ext2: group {group} counts free blocks but its bitmap is full");
                continue;
            };
            bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
            self.groups[group as usize].free_blocks -= 1;
            return Ok(Some(self.sb.group_first_block(group) + bit));
        }
        Ok(None)
    }

    /// The first block of the inode's group: where its blocks are allocated by default.
    pub(crate) fn inode_group_start(&self, ino: Ino) -> u64 {
        let group = (ino - 1) / self.sb.inodes_per_group;
        u64::from(self.sb.group_first_block(group))
    }

    /// Frees a block once the next sync has written whatever pointed to it.
    pub(crate) fn free_block(&mut self, block: u32) {
        self.cache.forget(u64::from(block));
        self.pending_free_blocks.push(block);
    }

    /// Allocates an inode: directories go to a group with many free inodes and blocks,
    /// other files near their parent.
    pub(crate) fn alloc_inode(&mut self, parent: Ino, is_dir: bool) -> Result<Ino, FsError> {
        if let Some(ino) = self.try_alloc_inode(parent, is_dir)? {
            return Ok(ino);
        }
        if !self.pending_free_inodes.is_empty() {
            self.sync()?;
            if let Some(ino) = self.try_alloc_inode(parent, is_dir)? {
                return Ok(ino);
            }
        }
        Err(FsError::NoSpace)
    }

    fn preferred_group(&self, parent: Ino, is_dir: bool) -> u32 {
        let parent_group = (parent.saturating_sub(1)) / self.sb.inodes_per_group;
        if !is_dir {
            return parent_group;
        }
        let groups = self.groups.len() as u32;
        let total_free: u32 = self.groups.iter().map(|g| u32::from(g.free_inodes)).sum();
        let average = total_free / groups;
        let mut best = parent_group;
        let mut best_blocks = 0;
        for step in 0..groups {
            let group = (parent_group + step) % groups;
            let gd = &self.groups[group as usize];
            if u32::from(gd.free_inodes) >= average.max(1) && gd.free_blocks > best_blocks {
                best = group;
                best_blocks = gd.free_blocks;
            }
        }
        best
    }

    fn try_alloc_inode(&mut self, parent: Ino, is_dir: bool) -> Result<Option<Ino>, FsError> {
        let groups = self.groups.len() as u32;
        let first = self.preferred_group(parent, is_dir);
        let ipg = self.sb.inodes_per_group;
        for step in 0..groups {
            let group = (first + step) % groups;
            if self.groups[group as usize].free_inodes == 0 {
                continue;
            }
            let bitmap_block = u64::from(self.groups[group as usize].inode_bitmap);
            let reserved = if group == 0 { self.sb.first_ino - 1 } else { 0 };
            let start = self.inode_search_hint[group as usize].max(reserved);
            let bitmap = self.block_mut(bitmap_block, Phase::Meta)?;
            let Some(bit) = find_clear_bit(bitmap, ipg, start).filter(|&b| b >= reserved) else {
                log::warn!("ext2: group {group} counts free inodes but its bitmap is full");
                continue;
            };
            bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
            self.inode_search_hint[group as usize] = bit + 1;
            let gd = &mut self.groups[group as usize];
            gd.free_inodes -= 1;
            if is_dir {
                gd.used_dirs = gd.used_dirs.saturating_add(1);
            }
            return Ok(Some(group * ipg + bit + 1));
        }
        Ok(None)
    }

    /// Returns the pending blocks and inodes to the bitmaps (called by sync after the inodes
    /// and directories that used them are on disk).
    pub(crate) fn apply_pending_frees(&mut self) -> Result<(), FsError> {
        let blocks = core::mem::take(&mut self.pending_free_blocks);
        for block in blocks {
            self.clear_block_bit(block)?;
        }
        let inodes = core::mem::take(&mut self.pending_free_inodes);
        for (ino, is_dir) in inodes {
            self.clear_inode_bit(ino, is_dir)?;
        }
        Ok(())
    }

    fn clear_block_bit(&mut self, block: u32) -> Result<(), FsError> {
        let rel = block - self.sb.first_data_block;
        let group = (rel / self.sb.blocks_per_group) as usize;
        let bit = rel % self.sb.blocks_per_group;
        let bitmap_block = u64::from(self.groups[group].block_bitmap);
        let bitmap = self.block_mut(bitmap_block, Phase::Meta)?;
        let mask = 1u8 << (bit % 8);
        if bitmap[(bit / 8) as usize] & mask == 0 {
            log::warn!("ext2: freeing block {block}, which is already free");
            return Ok(());
        }
        bitmap[(bit / 8) as usize] &= !mask;
        self.groups[group].free_blocks = self.groups[group].free_blocks.saturating_add(1);
        Ok(())
    }

    fn clear_inode_bit(&mut self, ino: Ino, is_dir: bool) -> Result<(), FsError> {
        if ino == 0 || ino > self.sb.inodes_count {
            return Err(FsError::Corrupt(format!(
                "freeing inode {ino} out of range"
            )));
        }
        let group = ((ino - 1) / self.sb.inodes_per_group) as usize;
        let bit = (ino - 1) % self.sb.inodes_per_group;
        let bitmap_block = u64::from(self.groups[group].inode_bitmap);
        let bitmap = self.block_mut(bitmap_block, Phase::Meta)?;
        let mask = 1u8 << (bit % 8);
        if bitmap[(bit / 8) as usize] & mask == 0 {
            log::warn!("ext2: freeing inode {ino}, which is already free");
            return Ok(());
        }
        bitmap[(bit / 8) as usize] &= !mask;
        self.inode_search_hint[group] = self.inode_search_hint[group].min(bit);
        let gd = &mut self.groups[group];
        gd.free_inodes = gd.free_inodes.saturating_add(1);
        if is_dir {
            gd.used_dirs = gd.used_dirs.saturating_sub(1);
        }
        Ok(())
    }
}
