//! The repair pass run when a file system that was not cleanly unmounted is mounted
//! read-write: everything reachable from the root is kept, the rest is freed, and link
//! counts, bitmaps and free counts are rebuilt from what was found.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use crate::bytes::get32;
use crate::bytes::put16;
use crate::bytes::put32;
use crate::cache::Phase;
use crate::device::BlockDevice;
use crate::dir::parse_block;
use crate::dir::RawEntry;
use crate::fs::Fs;
use crate::inode::dirent_type;
use crate::inode::Inode;
use crate::inode::DIND;
use crate::inode::FLAGS_UNSUPPORTED;
use crate::inode::IND;
use crate::inode::N_BLOCKS;
use crate::inode::TIND;
use crate::superblock::COMPAT_RESIZE_INODE;
use crate::types::FsError;
use crate::types::Ino;
use crate::types::ROOT_INO;

/// A bit per item, for rebuilding bitmaps.
struct BitSet(Vec<u8>);

impl BitSet {
    fn new(bits: usize) -> BitSet {
        BitSet(vec![0; bits.div_ceil(8)])
    }
    fn get(&self, bit: usize) -> bool {
        self.0[bit / 8] & (1 << (bit % 8)) != 0
    }
    fn set(&mut self, bit: usize) {
        self.0[bit / 8] |= 1 << (bit % 8);
    }
    fn clear(&mut self, bit: usize) {
        self.0[bit / 8] &= !(1 << (bit % 8));
    }
}

/// What the walk found.
struct Walk {
    used_blocks: BitSet,
    /// Inodes reached from the root (bit `ino`).
    reached: BitSet,
    /// Entries naming each inode (subdirectories' ".." included for directories).
    refs: Vec<u32>,
    fixes: u32,
}

impl<D: BlockDevice> Fs<D> {
    pub(crate) fn repair(&mut self) -> Result<(), FsError> {
        let mut walk = Walk {
            used_blocks: BitSet::new(self.sb.blocks_count as usize),
            reached: BitSet::new(self.sb.inodes_count as usize + 1),
            refs: vec![0; self.sb.inodes_count as usize + 1],
            fixes: 0,
        };
        self.mark_group_metadata(&mut walk);
        for ino in 1..self.sb.first_ino {
            if ino != ROOT_INO {
                let inode = self.read_inode(ino)?;
                self.mark_reserved_inode_blocks(&inode, &mut walk)?;
            }
        }
        self.walk_tree(&mut walk)?;
        self.fix_link_counts(&mut walk)?;
        self.clear_unreached_inodes(&mut walk)?;
        self.rebuild_bitmaps(&walk)?;
        log::warn!("ext2: repair done: {} fixes", walk.fixes);
        self.sync()
    }

    /// Superblocks, group descriptor tables, bitmaps and inode tables.
    fn mark_group_metadata(&self, walk: &mut Walk) {
        let sb = &self.sb;
        for block in 0..sb.first_data_block {
            walk.used_blocks.set(block as usize);
        }
        let reserved_gdt = if sb.feature_compat & COMPAT_RESIZE_INODE != 0 {
            u32::from(sb.reserved_gdt_blocks)
        } else {
            0
        };
        for group in 0..sb.group_count() {
            let first = sb.group_first_block(group);
            if sb.has_super_backup(group) {
                let count = (1 + sb.gdt_blocks() + reserved_gdt).min(sb.blocks_in_group(group));
                for block in first..first + count {
                    walk.used_blocks.set(block as usize);
                }
            }
            let gd = &self.groups[group as usize];
            walk.used_blocks.set(gd.block_bitmap as usize);
            walk.used_blocks.set(gd.inode_bitmap as usize);
            for block in gd.inode_table..gd.inode_table + sb.inode_table_blocks() {
                walk.used_blocks.set(block as usize);
            }
        }
    }

    /// Reserved inodes (bad blocks, resize inode) keep their blocks as they are; their
    /// trees may overlap group metadata by design.
    fn mark_reserved_inode_blocks(
        &mut self,
        inode: &Inode,
        walk: &mut Walk,
    ) -> Result<(), FsError> {
        if !inode.has_block_map(self.block_size) {
            return Ok(());
        }
        for (slot, &ptr) in inode.block.iter().enumerate() {
            let depth = match slot {
                IND => 1,
                DIND => 2,
                TIND => 3,
                _ => 0,
            };
            self.mark_tree_loose(ptr, depth, walk)?;
        }
        Ok(())
    }

    fn mark_tree_loose(&mut self, ptr: u32, depth: u32, walk: &mut Walk) -> Result<(), FsError> {
        let Ok(block) = self.check_block(ptr, "reserved inode block") else {
            return Ok(());
        };
        let seen = walk.used_blocks.get(block as usize);
        walk.used_blocks.set(block as usize);
        if depth == 0 || (seen && depth > 1) {
            return Ok(());
        }
        let pointers: Vec<u32> = {
            let raw = self.block(block)?;
            (0..raw.len() / 4)
                .map(|i| get32(raw, 4 * i))
                .filter(|&p| p != 0)
                .collect()
        };
        for child in pointers {
            self.mark_tree_loose(child, depth - 1, walk)?;
        }
        Ok(())
    }

    /// Claims an inode's blocks for it alone: pointers out of range or to blocks already
    /// claimed are cleared, blocks past the end of the file dropped, i_blocks recounted.
    fn claim_blocks(
        &mut self,
        ino: Ino,
        inode: &mut Inode,
        walk: &mut Walk,
    ) -> Result<(), FsError> {
        let before = inode.clone();
        let mut count = 0u64;
        if inode.has_block_map(self.block_size) {
            for slot in 0..N_BLOCKS {
                let depth = match slot {
                    IND => 1,
                    DIND => 2,
                    TIND => 3,
                    _ => 0,
                };
                if !self.claim_pointer(inode.block[slot], walk) {
                    inode.block[slot] = 0;
                    continue;
                }
                count += 1;
                if depth > 0 {
                    count += self.claim_indirect(u64::from(inode.block[slot]), depth, walk)?;
                }
            }
            let keep = self.blocks_to_keep(inode)?;
            let freed = self.truncate_blocks(inode, keep)?;
            for block in &freed {
                walk.used_blocks.clear(*block as usize);
            }
            count -= freed.len() as u64;
            if inode.is_dir() {
                inode.size = keep * u64::from(self.block_size);
            }
        }
        if inode.file_acl != 0 {
            if self.check_block(inode.file_acl, "xattr block").is_ok() {
                walk.used_blocks.set(inode.file_acl as usize);
                count += 1;
            } else {
                inode.file_acl = 0;
            }
        }
        inode.blocks = count * u64::from(self.block_size / 512);
        inode.dtime = 0;
        if inode.block != before.block
            || inode.blocks != before.blocks
            || inode.size != before.size
            || inode.file_acl != before.file_acl
            || before.dtime != 0
        {
            log::warn!(
                "ext2 repair: inode {ino}: block map fixed ({} -> {} sectors)",
                before.blocks,
                inode.blocks
            );
            walk.fixes += 1;
            self.write_inode(ino, inode)?;
        }
        Ok(())
    }

    /// Blocks a file keeps: up to its size; a directory up to its first hole.
    fn blocks_to_keep(&mut self, inode: &Inode) -> Result<u64, FsError> {
        let block_size = u64::from(self.block_size);
        if !inode.is_dir() {
            return Ok(inode.size.div_ceil(block_size));
        }
        let limit = (inode.size / block_size).min(self.max_file_blocks());
        for lblk in 0..limit {
            if self.map_block(inode, lblk)?.is_none() {
                return Ok(lblk);
            }
        }
        Ok(limit)
    }

    /// Claims a pointer if it is in range and unclaimed.
    fn claim_pointer(&self, ptr: u32, walk: &mut Walk) -> bool {
        if ptr == 0 || self.check_block(ptr, "block").is_err() || walk.used_blocks.get(ptr as usize)
        {
            return false;
        }
        walk.used_blocks.set(ptr as usize);
        true
    }

    /// Claims what an indirect block points to; returns how many blocks were claimed.
    fn claim_indirect(&mut self, block: u64, depth: u32, walk: &mut Walk) -> Result<u64, FsError> {
        let pointers: Vec<u32> = {
            let raw = self.block(block)?;
            (0..raw.len() / 4).map(|i| get32(raw, 4 * i)).collect()
        };
        let mut count = 0;
        for (i, &ptr) in pointers.iter().enumerate() {
            if ptr == 0 {
                continue;
            }
            if !self.claim_pointer(ptr, walk) {
                put32(self.block_mut(block, Phase::Data)?, 4 * i, 0);
                continue;
            }
            count += 1;
            if depth > 1 {
                count += self.claim_indirect(u64::from(ptr), depth - 1, walk)?;
            }
        }
        Ok(count)
    }

    /// Walks directories from the root, dropping entries that name nothing valid.
    fn walk_tree(&mut self, walk: &mut Walk) -> Result<(), FsError> {
        let mut root = self.read_inode(ROOT_INO)?;
        if !root.is_dir() || root.links == 0 || root.flags & FLAGS_UNSUPPORTED != 0 {
            return Err(FsError::Corrupt(format!(
                "the root inode is not a directory (mode {:#o})",
                root.mode
            )));
        }
        walk.reached.set(ROOT_INO as usize);
        self.claim_blocks(ROOT_INO, &mut root, walk)?;
        if root.size == 0 {
            return Err(FsError::Corrupt(alloc::string::String::from(
                "the root directory has no blocks",
            )));
        }
        walk.refs[ROOT_INO as usize] += 1;
        let mut queue = VecDeque::from([(ROOT_INO, ROOT_INO)]);
        while let Some((dir, parent)) = queue.pop_front() {
            let inode = self.read_inode(dir)?;
            for block_index in 0..inode.size / u64::from(self.block_size) {
                let block = self.map_block(&inode, block_index)?.ok_or_else(|| {
                    FsError::Corrupt(format!("directory {dir}: hole at block {block_index}"))
                })?;
                self.repair_dir_block(dir, parent, block, block_index == 0, walk, &mut queue)?;
            }
        }
        Ok(())
    }

    fn repair_dir_block(
        &mut self,
        dir: Ino,
        parent: Ino,
        block: u64,
        first: bool,
        walk: &mut Walk,
        queue: &mut VecDeque<(Ino, Ino)>,
    ) -> Result<(), FsError> {
        let entries = match parse_block(self.block(block)?) {
            Ok(entries) if !first || self.has_dot_entries(block, &entries)? => entries,
            result => {
                log::warn!(
                    "ext2 repair: directory {dir}: block {block} rewritten ({:?})",
                    result.err()
                );
                walk.fixes += 1;
                self.reset_dir_block(block, dir, parent, first)?;
                parse_block(self.block(block)?).expect("fresh block parses")
            }
        };
        let skip = if first { 2 } else { 0 };
        if first {
            walk.refs[dir as usize] += 1;
            if get32(self.block(block)?, 0) != dir {
                log::warn!("ext2 repair: directory {dir}: \".\" fixed");
                walk.fixes += 1;
                put32(self.block_mut(block, Phase::Dirs)?, 0, dir);
            }
            if get32(self.block(block)?, entries[1].off) != parent {
                log::warn!("ext2 repair: directory {dir}: \"..\" set to {parent}");
                walk.fixes += 1;
                put32(self.block_mut(block, Phase::Dirs)?, entries[1].off, parent);
            }
        }
        let mut last_kept: Option<RawEntry> = if first { Some(entries[1]) } else { None };
        for entry in entries.iter().skip(skip).filter(|e| e.ino != 0) {
            if self.keep_entry(dir, block, entry, walk, queue)? {
                last_kept = Some(*entry);
                continue;
            }
            walk.fixes += 1;
            let raw = self.block_mut(block, Phase::Dirs)?;
            match last_kept.as_mut() {
                Some(prev) if prev.off + prev.rec_len == entry.off => {
                    prev.rec_len += entry.rec_len;
                    put16(raw, prev.off + 4, prev.rec_len as u16);
                }
                _ => put32(raw, entry.off, 0),
            }
        }
        Ok(())
    }

    fn has_dot_entries(&mut self, block: u64, entries: &[RawEntry]) -> Result<bool, FsError> {
        let raw = self.block(block)?;
        Ok(entries.len() >= 2
            && entries[0].name_len == 1
            && raw[entries[0].off + 8] == b'.'
            && entries[1].name_len == 2
            && &raw[entries[1].off + 8..entries[1].off + 10] == b"..")
    }

    fn reset_dir_block(
        &mut self,
        block: u64,
        dir: Ino,
        parent: Ino,
        first: bool,
    ) -> Result<(), FsError> {
        if first {
            return self.init_dir_block(block, dir, parent);
        }
        let block_size = self.block_size as u16;
        let raw = self.zeroed_block(block, Phase::Dirs)?;
        put16(raw, 4, block_size);
        Ok(())
    }

    /// Whether a directory entry names a valid inode; queues new subdirectories.
    fn keep_entry(
        &mut self,
        dir: Ino,
        block: u64,
        entry: &RawEntry,
        walk: &mut Walk,
        queue: &mut VecDeque<(Ino, Ino)>,
    ) -> Result<bool, FsError> {
        let ino = entry.ino;
        let name_is_dot = {
            let raw = self.block(block)?;
            let name = &raw[entry.off + 8..entry.off + 8 + entry.name_len];
            name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0)
        };
        if name_is_dot || ino > self.sb.inodes_count || ino < self.sb.first_ino {
            log::warn!("ext2 repair: directory {dir}: dropped an entry naming inode {ino}");
            return Ok(false);
        }
        let mut inode = self.read_inode(ino)?;
        let Some(kind) = inode
            .kind()
            .filter(|_| inode.links > 0 && inode.flags & FLAGS_UNSUPPORTED == 0)
        else {
            log::warn!("ext2 repair: directory {dir}: dropped an entry naming unused inode {ino}");
            return Ok(false);
        };
        let first_reach = !walk.reached.get(ino as usize);
        if inode.is_dir() && !first_reach {
            log::warn!("ext2 repair: directory {dir}: dropped a second link to directory {ino}");
            return Ok(false);
        }
        if first_reach {
            walk.reached.set(ino as usize);
            self.claim_blocks(ino, &mut inode, walk)?;
            if inode.is_dir() && inode.size == 0 {
                log::warn!(
                    "ext2 repair: directory {dir}: dropped directory {ino}, which has no blocks"
                );
                walk.reached.clear(ino as usize);
                return Ok(false);
            }
        }
        walk.refs[ino as usize] += 1;
        if inode.is_dir() {
            walk.refs[dir as usize] += 1;
            queue.push_back((ino, dir));
        }
        if entry.file_type != dirent_type(kind) {
            log::warn!("ext2 repair: directory {dir}: entry type of inode {ino} fixed");
            walk.fixes += 1;
            self.block_mut(block, Phase::Dirs)?[entry.off + 7] = dirent_type(kind);
        }
        Ok(true)
    }

    fn fix_link_counts(&mut self, walk: &mut Walk) -> Result<(), FsError> {
        for ino in 1..=self.sb.inodes_count {
            if !walk.reached.get(ino as usize) {
                continue;
            }
            let mut inode = self.read_inode(ino)?;
            // A directory: its entry in the parent, ".", and each subdirectory's "..".
            let links = walk.refs[ino as usize].min(u32::from(u16::MAX)) as u16;
            if inode.links != links {
                log::warn!(
                    "ext2 repair: inode {ino}: link count {} -> {links}",
                    inode.links
                );
                walk.fixes += 1;
                inode.links = links;
                self.write_inode(ino, &inode)?;
            }
        }
        Ok(())
    }

    /// Inodes not reached (orphans of a crash) are marked deleted.
    fn clear_unreached_inodes(&mut self, walk: &mut Walk) -> Result<(), FsError> {
        let dtime = self.deletion_time();
        for ino in self.sb.first_ino..=self.sb.inodes_count {
            if walk.reached.get(ino as usize) {
                continue;
            }
            let mut inode = self.read_inode(ino)?;
            let needs_dtime = inode.mode != 0 && inode.dtime < self.sb.inodes_count;
            if inode.links == 0 && !needs_dtime {
                continue;
            }
            if inode.links > 0 {
                log::warn!("ext2 repair: freed unreachable inode {ino}");
                walk.fixes += 1;
            }
            inode.links = 0;
            inode.dtime = dtime;
            self.write_inode(ino, &inode)?;
        }
        Ok(())
    }

    fn rebuild_bitmaps(&mut self, walk: &Walk) -> Result<(), FsError> {
        let bits_per_block = self.block_size as usize * 8;
        for group in 0..self.sb.group_count() {
            let first = self.sb.group_first_block(group) as usize;
            let in_group = self.sb.blocks_in_group(group) as usize;
            let mut bitmap = BitSet::new(bits_per_block);
            let mut free_blocks = 0u16;
            for bit in 0..bits_per_block {
                if bit >= in_group || walk.used_blocks.get(first + bit) {
                    bitmap.set(bit);
                } else {
                    free_blocks += 1;
                }
            }
            let (inode_bitmap, free_inodes, dirs) = self.group_inode_bitmap(group, walk)?;
            let gd = self.groups[group as usize].clone();
            let (old_blocks, old_inodes) = (
                self.block(u64::from(gd.block_bitmap))?.to_vec(),
                self.block(u64::from(gd.inode_bitmap))?.to_vec(),
            );
            if old_blocks != bitmap.0
                || old_inodes != inode_bitmap.0
                || gd.free_blocks != free_blocks
                || gd.free_inodes != free_inodes
                || gd.used_dirs != dirs
            {
                log::warn!("ext2 repair: group {group}: bitmaps and counts rebuilt");
            }
            self.block_mut(u64::from(gd.block_bitmap), Phase::Meta)?
                .copy_from_slice(&bitmap.0);
            self.block_mut(u64::from(gd.inode_bitmap), Phase::Meta)?
                .copy_from_slice(&inode_bitmap.0);
            let gd = &mut self.groups[group as usize];
            gd.free_blocks = free_blocks;
            gd.free_inodes = free_inodes;
            gd.used_dirs = dirs;
        }
        Ok(())
    }

    /// The rebuilt inode bitmap of a group, its free inodes and directories.
    fn group_inode_bitmap(
        &mut self,
        group: u32,
        walk: &Walk,
    ) -> Result<(BitSet, u16, u16), FsError> {
        let bits_per_block = self.block_size as usize * 8;
        let ipg = self.sb.inodes_per_group as usize;
        let mut bitmap = BitSet::new(bits_per_block);
        let (mut free, mut dirs) = (0u16, 0u16);
        for bit in 0..bits_per_block {
            let ino = group as usize * ipg + bit + 1;
            if bit >= ipg || ino < self.sb.first_ino as usize {
                bitmap.set(bit);
            } else if walk.reached.get(ino) {
                bitmap.set(bit);
                if self.read_inode(ino as Ino)?.is_dir() {
                    dirs += 1;
                }
            } else {
                free += 1;
            }
        }
        if group == 0 && walk.reached.get(ROOT_INO as usize) {
            dirs += 1;
        }
        Ok((bitmap, free, dirs))
    }

    /// A dtime for deleted inodes that e2fsck cannot mistake for an orphan list link.
    pub(crate) fn deletion_time(&self) -> u32 {
        self.now.max(self.sb.inodes_count + 1)
    }
}
