//! Directories: the linear on-disk entry format, and an in-memory name index per
//! directory (built on first use, kept in step) so large directories stay fast.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use crate::bytes::get16;
use crate::bytes::get32;
use crate::bytes::put16;
use crate::bytes::put32;
use crate::cache::Phase;
use crate::device::BlockDevice;
use crate::fs::Fs;
use crate::inode::dirent_type;
use crate::inode::kind_of_dirent_type;
use crate::inode::Inode;
use crate::inode::FLAG_INDEX;
use crate::types::DirEntry;
use crate::types::FileType;
use crate::types::FsError;
use crate::types::Ino;

const HEADER: usize = 8;
/// Directories whose index is kept at once; the least recently used is dropped beyond it.
const MAX_INDEXED_DIRS: usize = 64;

/// One entry as found in a directory block.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawEntry {
    pub off: usize,
    pub ino: u32,
    pub rec_len: usize,
    pub name_len: usize,
    pub file_type: u8,
}

impl RawEntry {
    /// The bytes this entry needs; the rest of `rec_len` is free for a new entry.
    fn used_len(&self) -> usize {
        if self.ino == 0 {
            0
        } else {
            record_len(self.name_len)
        }
    }
}

pub(crate) fn record_len(name_len: usize) -> usize {
    (HEADER + name_len + 3) & !3
}

/// The entries of one directory block, each checked against the block's bounds.
pub(crate) fn parse_block(block: &[u8]) -> Result<Vec<RawEntry>, &'static str> {
    let mut entries = Vec::new();
    let mut off = 0;
    while off < block.len() {
        if off + HEADER > block.len() {
            return Err("entry header crosses the block end");
        }
        let entry = RawEntry {
            off,
            ino: get32(block, off),
            rec_len: usize::from(get16(block, off + 4)),
            name_len: usize::from(block[off + 6]),
            file_type: block[off + 7],
        };
        if entry.rec_len < HEADER
            || !entry.rec_len.is_multiple_of(4)
            || off + entry.rec_len > block.len()
        {
            return Err("rec_len out of bounds");
        }
        if HEADER + entry.name_len > entry.rec_len || (entry.ino != 0 && entry.name_len == 0) {
            return Err("name_len beyond rec_len");
        }
        entries.push(entry);
        off += entry.rec_len;
    }
    Ok(entries)
}

fn name_of<'a>(block: &'a [u8], e: &RawEntry) -> &'a [u8] {
    &block[e.off + HEADER..e.off + HEADER + e.name_len]
}

/// Writes an entry header and name at `off`.
fn put_entry(block: &mut [u8], off: usize, ino: Ino, rec_len: usize, name: &[u8], kind: FileType) {
    put32(block, off, ino);
    put16(block, off + 4, rec_len as u16);
    block[off + 6] = name.len() as u8;
    block[off + 7] = dirent_type(kind);
    block[off + HEADER..off + HEADER + name.len()].copy_from_slice(name);
}

/// The largest record that fits in the block's free space.
fn largest_gap(entries: &[RawEntry]) -> u16 {
    entries
        .iter()
        .map(|e| (e.rec_len - e.used_len()) as u16)
        .max()
        .unwrap_or(0)
}

/// Where an indexed name lives.
#[derive(Clone, Copy)]
pub(crate) struct Slot {
    pub ino: Ino,
    pub block_index: u32,
    pub off: u16,
}

pub(crate) struct DirIndex {
    names: BTreeMap<Vec<u8>, Slot>,
    /// The largest free record per directory block.
    gaps: Vec<u16>,
    /// Blocks before this one have no room for even the shortest entry.
    search_from: usize,
    stamp: u64,
}

impl DirIndex {
    /// The first block with room for a record of `need` bytes.
    fn block_with_room(&self, need: usize) -> Option<u32> {
        let rest = self.gaps.get(self.search_from..)?;
        let found = rest.iter().position(|&g| usize::from(g) >= need)?;
        Some((self.search_from + found) as u32)
    }

    fn set_gap(&mut self, block_index: u32, gap: u16) {
        let block_index = block_index as usize;
        self.gaps[block_index] = gap;
        if usize::from(gap) >= record_len(1) {
            self.search_from = self.search_from.min(block_index);
        }
        while self
            .gaps
            .get(self.search_from)
            .is_some_and(|&g| usize::from(g) < record_len(1))
        {
            self.search_from += 1;
        }
    }

    fn push_block(&mut self, gap: u16) {
        self.gaps.push(0);
        self.set_gap(self.gaps.len() as u32 - 1, gap);
    }
}

#[derive(Default)]
pub(crate) struct DirIndexes {
    by_dir: BTreeMap<Ino, DirIndex>,
    clock: u64,
}

impl DirIndexes {
    pub fn forget(&mut self, dir: Ino) {
        self.by_dir.remove(&dir);
    }

    fn insert(&mut self, dir: Ino, mut index: DirIndex) {
        if self.by_dir.len() >= MAX_INDEXED_DIRS {
            let oldest = self
                .by_dir
                .iter()
                .min_by_key(|(_, i)| i.stamp)
                .map(|(&d, _)| d);
            if let Some(oldest) = oldest {
                self.by_dir.remove(&oldest);
            }
        }
        self.clock += 1;
        index.stamp = self.clock;
        self.by_dir.insert(dir, index);
    }

    fn get(&mut self, dir: Ino) -> Option<&mut DirIndex> {
        self.clock += 1;
        let clock = self.clock;
        let index = self.by_dir.get_mut(&dir)?;
        index.stamp = clock;
        Some(index)
    }
}

impl<D: BlockDevice> Fs<D> {
    /// A live directory inode, or NotDir.
    pub(crate) fn dir_inode(&mut self, dir: Ino) -> Result<Inode, FsError> {
        let inode = self.live_inode(dir)?;
        if !inode.is_dir() {
            return Err(FsError::NotDir);
        }
        let block_size = u64::from(self.block_size);
        let sectors_for_size = inode.size / 512;
        if inode.size % block_size != 0
            || inode.size > u64::from(u32::MAX)
            || sectors_for_size > inode.blocks
        {
            return Err(FsError::Corrupt(format!(
                "directory {dir} has size {} and {} sectors",
                inode.size, inode.blocks
            )));
        }
        Ok(inode)
    }

    fn dir_block_count(&self, inode: &Inode) -> u32 {
        (inode.size / u64::from(self.block_size)) as u32
    }

    /// Reads directory block `index`, checked; None for a hole.
    fn dir_block(
        &mut self,
        dir: Ino,
        inode: &Inode,
        index: u32,
    ) -> Result<Option<(u64, Vec<RawEntry>)>, FsError> {
        let Some(block) = self.map_block(inode, u64::from(index))? else {
            return Ok(None);
        };
        let entries = parse_block(self.block(block)?)
            .map_err(|what| FsError::Corrupt(format!("directory {dir} block {index}: {what}")))?;
        Ok(Some((block, entries)))
    }

    fn ensure_index(&mut self, dir: Ino, inode: &Inode) -> Result<(), FsError> {
        if self.dirs.get(dir).is_some() {
            return Ok(());
        }
        let count = self.dir_block_count(inode);
        let mut index = DirIndex {
            names: BTreeMap::new(),
            gaps: vec![0; count as usize],
            search_from: 0,
            stamp: 0,
        };
        for block_index in 0..count {
            let Some((block, entries)) = self.dir_block(dir, inode, block_index)? else {
                continue;
            };
            index.set_gap(block_index, largest_gap(&entries));
            let raw = self.block(block)?;
            for e in entries.iter().filter(|e| e.ino != 0) {
                let slot = Slot {
                    ino: e.ino,
                    block_index,
                    off: e.off as u16,
                };
                index.names.entry(name_of(raw, e).to_vec()).or_insert(slot);
            }
        }
        self.dirs.insert(dir, index);
        Ok(())
    }

    /// Finds `name` in directory `dir`.
    pub(crate) fn find_entry(&mut self, dir: Ino, name: &[u8]) -> Result<Option<Slot>, FsError> {
        let inode = self.dir_inode(dir)?;
        self.ensure_index(dir, &inode)?;
        Ok(self.dirs.get(dir).and_then(|i| i.names.get(name).copied()))
    }

    /// Whether the directory holds nothing but "." and "..".
    pub(crate) fn dir_is_empty(&mut self, dir: Ino) -> Result<bool, FsError> {
        let inode = self.dir_inode(dir)?;
        self.ensure_index(dir, &inode)?;
        let index = self.dirs.get(dir).expect("index just built");
        Ok(index
            .names
            .keys()
            .all(|n| n.as_slice() == b"." || n.as_slice() == b".."))
    }

    /// Adds an entry (the caller checked that `name` is absent).
    pub(crate) fn add_entry(
        &mut self,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        kind: FileType,
    ) -> Result<(), FsError> {
        let mut inode = self.dir_inode(dir)?;
        self.ensure_index(dir, &inode)?;
        let need = record_len(name.len());
        let found = self.dirs.get(dir).expect("index").block_with_room(need);
        let block_index = match found {
            Some(i) => i,
            None => self.grow_dir(dir, &mut inode)?,
        };
        let block = self
            .map_block(&inode, u64::from(block_index))?
            .ok_or_else(|| FsError::Corrupt(format!("directory {dir} lost block {block_index}")))?;
        let raw = self.block_mut(block, Phase::Dirs)?;
        let entries =
            parse_block(raw).map_err(|w| FsError::Corrupt(format!("directory {dir}: {w}")))?;
        let target = entries
            .iter()
            .find(|e| e.rec_len - e.used_len() >= need)
            .copied()
            .ok_or_else(|| {
                FsError::Corrupt(format!("directory {dir}: free space index out of step"))
            })?;
        let off = if target.ino == 0 {
            put_entry(raw, target.off, ino, target.rec_len, name, kind);
            target.off
        } else {
            let used = target.used_len();
            put16(raw, target.off + 4, used as u16);
            put_entry(
                raw,
                target.off + used,
                ino,
                target.rec_len - used,
                name,
                kind,
            );
            target.off + used
        };
        let gap = largest_gap(&parse_block(raw).expect("entries just written are valid"));
        let index = self.dirs.get(dir).expect("index");
        index.set_gap(block_index, gap);
        index.names.insert(
            name.to_vec(),
            Slot {
                ino,
                block_index,
                off: off as u16,
            },
        );
        self.touch_dir(dir, &mut inode)
    }

    /// Appends an empty block to the directory; returns its index.
    fn grow_dir(&mut self, dir: Ino, inode: &mut Inode) -> Result<u32, FsError> {
        let block_index = self.dir_block_count(inode);
        if u64::from(block_index) + 1 >= self.max_file_blocks()
            || inode.size + u64::from(self.block_size) > u64::from(u32::MAX)
        {
            return Err(FsError::TooLarge);
        }
        let goal = match block_index {
            0 => 0,
            n => self
                .map_block(inode, u64::from(n - 1))?
                .map_or(0, |b| b + 1),
        };
        let (block, _) = self.map_alloc(inode, u64::from(block_index), goal)?;
        let block_size = self.block_size as usize;
        let raw = self.zeroed_block(block, Phase::Data)?;
        put16(raw, 4, block_size as u16);
        inode.size += block_size as u64;
        self.write_inode(dir, inode)?;
        let index = self.dirs.get(dir).expect("index");
        index.push_block(block_size as u16);
        Ok(block_index)
    }

    /// Directory changed: times updated, any htree index flag cleared (the index would be stale).
    fn touch_dir(&mut self, dir: Ino, inode: &mut Inode) -> Result<(), FsError> {
        inode.mtime = self.now;
        inode.ctime = self.now;
        inode.flags &= !FLAG_INDEX;
        self.write_inode(dir, inode)
    }

    /// Removes the entry `name` (which must exist).
    pub(crate) fn remove_entry(&mut self, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        let mut inode = self.dir_inode(dir)?;
        let slot = self.find_entry(dir, name)?.ok_or(FsError::NotFound)?;
        let block = self
            .map_block(&inode, u64::from(slot.block_index))?
            .ok_or_else(|| {
                FsError::Corrupt(format!("directory {dir} lost block {}", slot.block_index))
            })?;
        let raw = self.block_mut(block, Phase::Dirs)?;
        let entries =
            parse_block(raw).map_err(|w| FsError::Corrupt(format!("directory {dir}: {w}")))?;
        let pos = entries
            .iter()
            .position(|e| e.off == usize::from(slot.off) && e.ino != 0)
            .ok_or_else(|| FsError::Corrupt(format!("directory {dir}: name index out of step")))?;
        if pos == 0 {
            put32(raw, 0, 0);
        } else {
            let prev = entries[pos - 1];
            put16(
                raw,
                prev.off + 4,
                (prev.rec_len + entries[pos].rec_len) as u16,
            );
        }
        let gap = largest_gap(&parse_block(raw).expect("entries just merged are valid"));
        let index = self.dirs.get(dir).expect("index");
        index.set_gap(slot.block_index, gap);
        index.names.remove(name);
        self.touch_dir(dir, &mut inode)
    }

    /// Points the existing entry `name` at another inode (rename over a target, "..").
    pub(crate) fn retarget_entry(
        &mut self,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        kind: FileType,
    ) -> Result<(), FsError> {
        let mut inode = self.dir_inode(dir)?;
        let slot = self.find_entry(dir, name)?.ok_or(FsError::NotFound)?;
        let block = self
            .map_block(&inode, u64::from(slot.block_index))?
            .ok_or_else(|| {
                FsError::Corrupt(format!("directory {dir} lost block {}", slot.block_index))
            })?;
        let raw = self.block_mut(block, Phase::Dirs)?;
        let off = usize::from(slot.off);
        put32(raw, off, ino);
        raw[off + 7] = dirent_type(kind);
        let index = self.dirs.get(dir).expect("index");
        index.names.insert(name.to_vec(), Slot { ino, ..slot });
        self.touch_dir(dir, &mut inode)
    }

    /// Writes the first block of a new directory: "." and "..".
    pub(crate) fn init_dir_block(
        &mut self,
        block: u64,
        dir: Ino,
        parent: Ino,
    ) -> Result<(), FsError> {
        let block_size = self.block_size as usize;
        let raw = self.zeroed_block(block, Phase::Data)?;
        put_entry(raw, 0, dir, 12, b".", FileType::Directory);
        put_entry(raw, 12, parent, block_size - 12, b"..", FileType::Directory);
        Ok(())
    }

    /// Entries after `cookie` (0: from the start), at most `max`.
    pub fn readdir(&mut self, dir: Ino, cookie: u64, max: usize) -> Result<Vec<DirEntry>, FsError> {
        let inode = self.dir_inode(dir)?;
        let block_size = u64::from(self.block_size);
        let mut out = Vec::new();
        let mut block_index = (cookie / block_size) as u32;
        while block_index < self.dir_block_count(&inode) && out.len() < max {
            if let Some((block, entries)) = self.dir_block(dir, &inode, block_index)? {
                let base = u64::from(block_index) * block_size;
                let raw = self.block(block)?;
                for e in entries
                    .iter()
                    .filter(|e| e.ino != 0 && base + e.off as u64 >= cookie)
                {
                    if out.len() == max {
                        break;
                    }
                    let kind = kind_of_dirent_type(e.file_type).ok_or_else(|| {
                        FsError::Corrupt(format!("directory {dir}: entry type {}", e.file_type))
                    })?;
                    let name = name_of(raw, e).to_vec();
                    out.push(DirEntry {
                        ino: e.ino,
                        kind,
                        name,
                        cookie: base + e.off as u64 + 1,
                    });
                }
            }
            block_index += 1;
        }
        Ok(out)
    }
}
