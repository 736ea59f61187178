//! The block map: logical file blocks to disk blocks through direct, indirect, double and
//! triple indirect pointers; allocation along the path and truncation that frees it.

use alloc::format;
use alloc::vec::Vec;

use crate::bytes::get32;
use crate::bytes::put32;
use crate::cache::Phase;
use crate::device::BlockDevice;
use crate::fs::Fs;
use crate::inode::Inode;
use crate::inode::DIND;
use crate::inode::IND;
use crate::inode::N_DIRECT;
use crate::inode::TIND;
use crate::types::FsError;

/// Where a logical block's pointer lives: the slot in `i_block`, then indexes in
/// each indirect level.
struct Path {
    root: usize,
    indexes: [u32; 3],
    depth: usize,
}

impl<D: BlockDevice> Fs<D> {
    pub(crate) fn ptrs_per_block(&self) -> u64 {
        u64::from(self.block_size / 4)
    }

    /// Logical blocks addressable through the map.
    pub(crate) fn max_file_blocks(&self) -> u64 {
        let p = self.ptrs_per_block();
        N_DIRECT as u64 + p + p * p + p * p * p
    }

    fn path(&self, lblk: u64) -> Option<Path> {
        let p = self.ptrs_per_block();
        let mut rest = lblk;
        if rest < N_DIRECT as u64 {
            return Some(Path {
                root: rest as usize,
                indexes: [0; 3],
                depth: 0,
            });
        }
        rest -= N_DIRECT as u64;
        if rest < p {
            return Some(Path {
                root: IND,
                indexes: [rest as u32, 0, 0],
                depth: 1,
            });
        }
        rest -= p;
        if rest < p * p {
            return Some(Path {
                root: DIND,
                indexes: [(rest / p) as u32, (rest % p) as u32, 0],
                depth: 2,
            });
        }
        rest -= p * p;
        if rest < p * p * p {
            let idx = [
                (rest / (p * p)) as u32,
                ((rest / p) % p) as u32,
                (rest % p) as u32,
            ];
            return Some(Path {
                root: TIND,
                indexes: idx,
                depth: 3,
            });
        }
        None
    }

    /// The disk block holding logical block `lblk`, or None for a hole.
    pub(crate) fn map_block(&mut self, inode: &Inode, lblk: u64) -> Result<Option<u64>, FsError> {
        let Some(path) = self.path(lblk) else {
            return Ok(None);
        };
        let mut ptr = inode.block[path.root];
        for level in 0..path.depth {
            if ptr == 0 {
                return Ok(None);
            }
            let block = self.check_block(ptr, "indirect block")?;
            let raw = self.block(block)?;
            ptr = get32(raw, 4 * path.indexes[level] as usize);
        }
        if ptr == 0 {
            return Ok(None);
        }
        Ok(Some(self.check_block(ptr, "data block")?))
    }

    /// The disk block for `lblk`, allocated (with any missing indirect blocks) near `goal`
    /// if it is a hole; the bool says it is new (the caller fills it).
    pub(crate) fn map_alloc(
        &mut self,
        inode: &mut Inode,
        lblk: u64,
        goal: u64,
    ) -> Result<(u64, bool), FsError> {
        let path = self.path(lblk).ok_or(FsError::TooLarge)?;
        let sectors = u64::from(self.block_size / 512);
        if inode.block[path.root] == 0 {
            let block = self.alloc_block(goal)?;
            inode.block[path.root] = block;
            inode.blocks += sectors;
            if path.depth == 0 {
                return Ok((u64::from(block), true));
            }
            self.zeroed_block(u64::from(block), Phase::Data)?;
        }
        let mut parent = self.check_block(inode.block[path.root], "block pointer")?;
        for level in 0..path.depth {
            let slot = 4 * path.indexes[level] as usize;
            let ptr = get32(self.block(parent)?, slot);
            let is_leaf = level + 1 == path.depth;
            if ptr != 0 {
                parent = self.check_block(ptr, "block pointer")?;
                if is_leaf {
                    return Ok((parent, false));
                }
                continue;
            }
            let block = self.alloc_block(parent + 1)?;
            inode.blocks += sectors;
            put32(self.block_mut(parent, Phase::Data)?, slot, block);
            if is_leaf {
                return Ok((u64::from(block), true));
            }
            self.zeroed_block(u64::from(block), Phase::Data)?;
            parent = u64::from(block);
        }
        Ok((parent, false))
    }

    /// Frees every block at logical index `keep` and beyond, including indirect blocks left
    /// empty. The caller writes the inode; the freed blocks are returned to pend after that.
    pub(crate) fn truncate_blocks(
        &mut self,
        inode: &mut Inode,
        keep: u64,
    ) -> Result<Vec<u32>, FsError> {
        let mut freed = Vec::new();
        for slot in 0..N_DIRECT {
            if slot as u64 >= keep && inode.block[slot] != 0 {
                self.check_block(inode.block[slot], "data block")?;
                freed.push(inode.block[slot]);
                inode.block[slot] = 0;
            }
        }
        let p = self.ptrs_per_block();
        let mut first = N_DIRECT as u64;
        for (slot, depth) in [(IND, 1u32), (DIND, 2), (TIND, 3)] {
            let span = p.pow(depth);
            if inode.block[slot] != 0 && first + span > keep {
                let keep_within = keep.saturating_sub(first);
                if self.truncate_tree(inode.block[slot], depth, keep_within, &mut freed)? {
                    freed.push(inode.block[slot]);
                    inode.block[slot] = 0;
                }
            }
            first += span;
        }
        let sectors = u64::from(self.block_size / 512);
        inode.blocks = inode.blocks.saturating_sub(freed.len() as u64 * sectors);
        Ok(freed)
    }

    /// Truncates the subtree under indirect block `ptr` (`depth` levels) to its first
    /// `keep` blocks; true if it is empty afterwards (the caller frees `ptr`).
    fn truncate_tree(
        &mut self,
        ptr: u32,
        depth: u32,
        keep: u64,
        freed: &mut Vec<u32>,
    ) -> Result<bool, FsError> {
        let block = self.check_block(ptr, "indirect block")?;
        let p = self.ptrs_per_block();
        let child_span = p.pow(depth - 1);
        let pointers: Vec<u32> = {
            let raw = self.block(block)?;
            (0..p as usize).map(|i| get32(raw, 4 * i)).collect()
        };
        let mut empty = true;
        for (i, &child) in pointers.iter().enumerate() {
            if child == 0 {
                continue;
            }
            let child_first = i as u64 * child_span;
            if child_first + child_span <= keep {
                empty = false;
                continue;
            }
            let child_empty = if depth == 1 {
                self.check_block(child, "data block")?;
                true
            } else {
                self.truncate_tree(child, depth - 1, keep.saturating_sub(child_first), freed)?
            };
            if child_empty {
                freed.push(child);
                put32(self.block_mut(block, Phase::Data)?, 4 * i, 0);
            } else {
                empty = false;
            }
        }
        if freed.len() > self.sb.blocks_count as usize {
            return Err(FsError::Corrupt(format!(
                "indirect block {ptr} maps blocks more than once"
            )));
        }
        Ok(empty)
    }
}
