//! File contents and attributes: read, write, truncate, stat, and freeing inodes.

use alloc::format;
use alloc::vec::Vec;

use crate::bytes::get32;
use crate::cache::Phase;
use crate::device::BlockDevice;
use crate::device::MAX_REQUEST_BYTES;
use crate::device::READ_AHEAD_BYTES;
use crate::device::SECTOR_SIZE;
use crate::fs::Fs;
use crate::inode::Inode;
use crate::superblock::RO_COMPAT_LARGE_FILE;
use crate::types::FileType;
use crate::types::FsError;
use crate::types::Ino;
use crate::types::SetAttr;
use crate::types::Stat;

/// Blocks written between checks for cache write-back within one large write.
const WRITE_CHUNK_BLOCKS: u64 = 256;
const EA_MAGIC: u32 = 0xEA02_0000;

impl<D: BlockDevice> Fs<D> {
    pub fn stat(&mut self, ino: Ino) -> Result<Stat, FsError> {
        let inode = self.live_inode(ino)?;
        Ok(self.stat_of(ino, &inode))
    }

    pub(crate) fn stat_of(&self, ino: Ino, inode: &Inode) -> Stat {
        Stat {
            ino,
            kind: inode.kind().expect("live inodes have a type"),
            mode: inode.mode & 0o7777,
            nlink: u32::from(inode.links),
            uid: inode.uid,
            gid: inode.gid,
            size: inode.size,
            blocks: inode.blocks,
            atime: inode.atime,
            mtime: inode.mtime,
            ctime: inode.ctime,
        }
    }

    /// The largest file size the block map (and i_blocks) can describe.
    fn max_file_size(&self) -> u64 {
        (self.max_file_blocks() * u64::from(self.block_size)).min(1 << 41)
    }

    fn regular_inode(&mut self, ino: Ino) -> Result<Inode, FsError> {
        let inode = self.live_inode(ino)?;
        match inode.kind() {
            Some(FileType::Regular) => Ok(inode),
            Some(FileType::Directory) => Err(FsError::IsDir),
            _ => Err(FsError::Invalid),
        }
    }

    /// Reads from `offset`; holes read as zeros; 0 at the end of the file. A read that
    /// starts where the last one of this file ended reads ahead.
    pub fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        self.maybe_writeback()?;
        let inode = self.regular_inode(ino)?;
        let sequential = self.last_read == Some((ino, offset));
        let n = self.read_file_data(&inode, offset, buf, sequential)?;
        self.last_read = Some((ino, offset + n as u64));
        Ok(n)
    }

    pub(crate) fn read_inode_data(
        &mut self,
        inode: &Inode,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, FsError> {
        self.read_file_data(inode, offset, buf, false)
    }

    fn read_file_data(
        &mut self,
        inode: &Inode,
        offset: u64,
        buf: &mut [u8],
        ahead: bool,
    ) -> Result<usize, FsError> {
        if offset >= inode.size {
            return Ok(0);
        }
        let len = (inode.size - offset).min(buf.len() as u64) as usize;
        let block_size = u64::from(self.block_size);
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let within = (pos % block_size) as usize;
            let mut n = (block_size as usize - within).min(len - done);
            let lblk = pos / block_size;
            match self.map_block(inode, lblk)? {
                Some(block) if n == block_size as usize && !self.cache.contains(block) => {
                    n = self.read_uncached_run(inode, lblk, block, &mut buf[done..len], ahead)?;
                }
                Some(block) => {
                    buf[done..done + n].copy_from_slice(&self.block(block)?[within..within + n])
                }
                None => buf[done..done + n].fill(0),
            }
            done += n;
        }
        Ok(len)
    }

    /// Reads whole blocks that are consecutive on disk and not cached straight into `buf`
    /// (one request, bypassing the cache); returns the bytes read. With `ahead`, the run
    /// goes on past `buf` (to [`READ_AHEAD_BYTES`], within the file) and what `buf` has
    /// no room for is kept in the cache for the reads that follow.
    fn read_uncached_run(
        &mut self,
        inode: &Inode,
        lblk: u64,
        block: u64,
        buf: &mut [u8],
        ahead: bool,
    ) -> Result<usize, FsError> {
        let block_size = self.block_size as usize;
        let wanted = (buf.len() / block_size)
            .min(MAX_REQUEST_BYTES / block_size)
            .max(1);
        let file_blocks = inode.size.div_ceil(block_size as u64);
        let max_blocks = match ahead {
            true => wanted
                .max(READ_AHEAD_BYTES / block_size)
                .min(file_blocks.saturating_sub(lblk).max(1) as usize),
            false => wanted,
        };
        let mut count = 1;
        while count < max_blocks {
            let next = block + count as u64;
            if self.map_block(inode, lblk + count as u64)? != Some(next)
                || self.cache.contains(next)
            {
                break;
            }
            count += 1;
        }
        let sectors_per_block = (block_size / SECTOR_SIZE) as u64;
        if count <= wanted {
            self.dev
                .read(block * sectors_per_block, &mut buf[..count * block_size])?;
            return Ok(count * block_size);
        }
        let mut run = alloc::vec![0u8; count * block_size];
        self.dev.read(block * sectors_per_block, &mut run)?;
        let given = wanted * block_size;
        buf[..given].copy_from_slice(&run[..given]);
        for (i, data) in run[given..].chunks(block_size).enumerate() {
            let ahead_block = block + (wanted + i) as u64;
            self.cache.insert_clean(ahead_block, data.to_vec());
        }
        Ok(given)
    }

    /// Writes at `offset`, extending the file; gaps stay holes. A write cut short by a full
    /// disk returns what was written (NoSpace if nothing was).
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        self.check_writable()?;
        self.maybe_writeback()?;
        let mut inode = self.regular_inode(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset
            .checked_add(data.len() as u64)
            .ok_or(FsError::TooLarge)?;
        if end > self.max_file_size() {
            return Err(FsError::TooLarge);
        }
        let block_size = u64::from(self.block_size);
        let mut done = 0usize;
        let mut result = Ok(());
        let mut blocks_in_chunk = 0;
        while done < data.len() {
            let pos = offset + done as u64;
            let within = (pos % block_size) as usize;
            let n = (block_size as usize - within).min(data.len() - done);
            if let Err(e) = self.write_block_part(
                ino,
                &mut inode,
                pos / block_size,
                within,
                &data[done..done + n],
            ) {
                result = Err(e);
                break;
            }
            done += n;
            blocks_in_chunk += 1;
            if blocks_in_chunk == WRITE_CHUNK_BLOCKS && done < data.len() {
                blocks_in_chunk = 0;
                self.finish_write(ino, &mut inode, offset + done as u64)?;
                self.maybe_writeback()?;
            }
        }
        self.finish_write(ino, &mut inode, offset + done as u64)?;
        match result {
            Err(FsError::NoSpace) if done > 0 => Ok(done),
            Err(e) => Err(e),
            Ok(()) => Ok(done),
        }
    }

    fn write_block_part(
        &mut self,
        ino: Ino,
        inode: &mut Inode,
        lblk: u64,
        within: usize,
        bytes: &[u8],
    ) -> Result<(), FsError> {
        let previous = match lblk {
            0 => None,
            n => self.map_block(inode, n - 1)?,
        };
        let goal = previous.map_or_else(|| self.inode_group_start(ino), |b| b + 1);
        let (block, new) = self.map_alloc(inode, lblk, goal)?;
        let whole = bytes.len() == self.block_size as usize;
        let raw = if new {
            self.zeroed_block(block, Phase::Data)?
        } else if whole {
            self.cache.get_new(&mut self.dev, block, Phase::Data)?
        } else {
            self.block_mut(block, Phase::Data)?
        };
        raw[within..within + bytes.len()].copy_from_slice(bytes);
        Ok(())
    }

    fn finish_write(&mut self, ino: Ino, inode: &mut Inode, end: u64) -> Result<(), FsError> {
        if end > inode.size {
            inode.size = end;
            self.note_large_file(end);
        }
        inode.mtime = self.now;
        inode.ctime = self.now;
        self.write_inode(ino, inode)
    }

    /// Sizes of 2 GiB and more need the large_file feature flag.
    fn note_large_file(&mut self, size: u64) {
        if size >= 1 << 31 && self.sb.feature_ro_compat & RO_COMPAT_LARGE_FILE == 0 {
            self.sb.feature_ro_compat |= RO_COMPAT_LARGE_FILE;
        }
    }

    /// chmod, chown, utimens and truncate; ctime becomes now.
    pub fn set_attr(&mut self, ino: Ino, attr: &SetAttr) -> Result<Stat, FsError> {
        self.check_writable()?;
        self.maybe_writeback()?;
        let mut inode = self.live_inode(ino)?;
        if let Some(size) = attr.size {
            match inode.kind() {
                Some(FileType::Regular) => {}
                Some(FileType::Directory) => return Err(FsError::IsDir),
                _ => return Err(FsError::Invalid),
            }
            if size > self.max_file_size() {
                return Err(FsError::TooLarge);
            }
            self.truncate(ino, &mut inode, size)?;
            inode.mtime = self.now;
        }
        if let Some(mode) = attr.mode {
            inode.mode = (inode.mode & crate::inode::S_IFMT) | (mode & 0o7777);
        }
        if let Some(uid) = attr.uid {
            inode.uid = uid;
        }
        if let Some(gid) = attr.gid {
            inode.gid = gid;
        }
        if let Some(atime) = attr.atime {
            inode.atime = atime;
        }
        if let Some(mtime) = attr.mtime {
            inode.mtime = mtime;
        }
        inode.ctime = self.now;
        self.write_inode(ino, &inode)?;
        Ok(self.stat_of(ino, &inode))
    }

    /// Sets the size: shrinking frees the blocks beyond it and zeroes the tail of the
    /// last block (so growing again reads zeros); growing leaves a hole.
    fn truncate(&mut self, ino: Ino, inode: &mut Inode, size: u64) -> Result<(), FsError> {
        let block_size = u64::from(self.block_size);
        if size < inode.size {
            let keep = size.div_ceil(block_size);
            let freed = self.truncate_blocks(inode, keep)?;
            if !size.is_multiple_of(block_size) {
                if let Some(block) = self.map_block(inode, size / block_size)? {
                    self.block_mut(block, Phase::Data)?[(size % block_size) as usize..].fill(0);
                }
            }
            inode.size = size;
            self.write_inode(ino, inode)?;
            for block in freed {
                self.free_block(block);
            }
        } else {
            inode.size = size;
            self.note_large_file(size);
        }
        Ok(())
    }

    /// Drops one link; the inode is freed when none are left and nobody has it open.
    pub(crate) fn drop_link(&mut self, ino: Ino, inode: &mut Inode) -> Result<(), FsError> {
        inode.links = inode.links.saturating_sub(1);
        inode.ctime = self.now;
        if inode.is_dir() && inode.links <= 1 {
            inode.links = 0;
        }
        if inode.links > 0 {
            return self.write_inode(ino, inode);
        }
        if self.open.contains_key(&ino) {
            inode.dtime = self.deletion_time();
            self.orphans.insert(ino);
            return self.write_inode(ino, inode);
        }
        self.write_inode(ino, inode)?;
        self.free_inode(ino)
    }

    /// Frees an unlinked inode: its blocks, its extended attribute block reference, itself.
    pub(crate) fn free_inode(&mut self, ino: Ino) -> Result<(), FsError> {
        let mut inode = self.read_inode(ino)?;
        let is_dir = inode.is_dir();
        let mut freed = Vec::new();
        if inode.has_block_map(self.block_size) {
            freed = self.truncate_blocks(&mut inode, 0)?;
        }
        if inode.file_acl != 0 {
            if let Some(block) = self.release_ea_block(inode.file_acl)? {
                freed.push(block);
            }
            inode.file_acl = 0;
        }
        inode.links = 0;
        inode.size = 0;
        inode.blocks = 0;
        inode.dtime = self.deletion_time();
        self.write_inode(ino, &inode)?;
        for block in freed {
            self.free_block(block);
        }
        if is_dir {
            self.dirs.forget(ino);
        }
        self.pending_free_inodes.push((ino, is_dir));
        Ok(())
    }

    /// Drops a reference to a shared extended attribute block; returns it if it is now unused.
    fn release_ea_block(&mut self, ptr: u32) -> Result<Option<u32>, FsError> {
        let Ok(block) = self.check_block(ptr, "xattr block") else {
            log::warn!("ext2: dropping an out-of-range xattr block {ptr}");
            return Ok(None);
        };
        let raw = self.block_mut(block, Phase::Data)?;
        if get32(raw, 0) != EA_MAGIC {
            log::warn!("ext2: xattr block {ptr} has a bad magic; not freed");
            return Ok(None);
        }
        let refs = get32(raw, 4).saturating_sub(1);
        crate::bytes::put32(raw, 4, refs);
        Ok(if refs == 0 { Some(ptr) } else { None })
    }

    /// Keeps an inode alive while unlinked (an open file).
    pub fn retain(&mut self, ino: Ino) {
        *self.open.entry(ino).or_insert(0) += 1;
    }

    /// Drops an open reference; frees the inode if it was the last one and it is unlinked.
    pub fn release(&mut self, ino: Ino) -> Result<(), FsError> {
        let Some(count) = self.open.get_mut(&ino) else {
            return Err(FsError::Invalid);
        };
        *count -= 1;
        if *count > 0 {
            return Ok(());
        }
        self.open.remove(&ino);
        if self.orphans.remove(&ino) {
            self.check_writable()?;
            self.free_inode(ino)?;
        }
        Ok(())
    }

    pub fn readlink(&mut self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let inode = self.live_inode(ino)?;
        if !inode.is_symlink() {
            return Err(FsError::Invalid);
        }
        self.link_target(ino, &inode)
    }

    pub(crate) fn link_target(&mut self, ino: Ino, inode: &Inode) -> Result<Vec<u8>, FsError> {
        if inode.size > u64::from(self.block_size) {
            return Err(FsError::Corrupt(format!(
                "symlink {ino} of {} bytes",
                inode.size
            )));
        }
        if inode.is_fast_symlink(self.block_size) {
            let mut raw = [0u8; 60];
            for (i, b) in inode.block.iter().enumerate() {
                raw[4 * i..4 * i + 4].copy_from_slice(&b.to_le_bytes());
            }
            return Ok(raw[..inode.size as usize].to_vec());
        }
        let mut target = alloc::vec![0u8; inode.size as usize];
        let n = self.read_inode_data(inode, 0, &mut target)?;
        target.truncate(n);
        Ok(target)
    }
}
