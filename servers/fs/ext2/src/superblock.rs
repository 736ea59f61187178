//! The superblock and group descriptors: parsing, validation and the feature sets.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::bytes::get16;
use crate::bytes::get32;
use crate::bytes::put16;
use crate::bytes::put32;
use crate::types::MountError;

pub const SUPERBLOCK_OFFSET: u64 = 1024;
pub const SUPERBLOCK_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;

pub const STATE_CLEAN: u16 = 1;
pub const STATE_ERRORS: u16 = 2;

pub const COMPAT_HAS_JOURNAL: u32 = 0x4;

pub const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const INCOMPAT_NAMES: &[(u32, &str)] = &[
    (0x1, "compression"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extents"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];
/// Incompat features this implementation reads and writes correctly.
const INCOMPAT_SUPPORTED: u32 = INCOMPAT_FILETYPE | INCOMPAT_FLEX_BG;

pub const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;
/// Read-only-compatible features writes keep valid (btree_dir is unused by Linux).
const RO_COMPAT_SUPPORTED: u32 = RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE | 0x4;

pub const COMPAT_RESIZE_INODE: u32 = 0x10;

/// The fields of the superblock this implementation uses, plus the raw bytes it writes back.
#[derive(Clone)]
pub struct Superblock {
    pub raw: Vec<u8>,
    pub inodes_count: u32,
    pub blocks_count: u32,
    pub r_blocks_count: u32,
    pub first_data_block: u32,
    pub block_size: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub state: u16,
    pub first_ino: u32,
    pub inode_size: u16,
    pub feature_compat: u32,
    pub feature_incompat: u32,
    pub feature_ro_compat: u32,
    pub reserved_gdt_blocks: u16,
    pub want_extra_isize: u16,
}

impl Superblock {
    /// Parses and validates the superblock against a disk of `disk_bytes`.
    pub fn parse(raw: Vec<u8>, disk_bytes: u64) -> Result<Superblock, MountError> {
        let magic = get16(&raw, 56);
        if magic != MAGIC {
            return Err(MountError::BadMagic(magic));
        }
        let log_block_size = get32(&raw, 24);
        if log_block_size > 2 {
            return Err(MountError::BadBlockSize(
                1024u32.saturating_mul(1u32.checked_shl(log_block_size).unwrap_or(0)),
            ));
        }
        let block_size = 1024u32 << log_block_size;
        let rev_level = get32(&raw, 76);
        let (first_ino, inode_size) = if rev_level == 0 {
            (11, 128)
        } else {
            (get32(&raw, 84), get16(&raw, 88))
        };
        let sb = Superblock {
            inodes_count: get32(&raw, 0),
            blocks_count: get32(&raw, 4),
            r_blocks_count: get32(&raw, 8),
            first_data_block: get32(&raw, 20),
            block_size,
            blocks_per_group: get32(&raw, 32),
            inodes_per_group: get32(&raw, 40),
            state: get16(&raw, 58),
            first_ino,
            inode_size,
            feature_compat: if rev_level == 0 { 0 } else { get32(&raw, 92) },
            feature_incompat: if rev_level == 0 { 0 } else { get32(&raw, 96) },
            feature_ro_compat: if rev_level == 0 { 0 } else { get32(&raw, 100) },
            reserved_gdt_blocks: get16(&raw, 206),
            want_extra_isize: get16(&raw, 0x15E),
            raw,
        };
        sb.check_features()?;
        sb.check_geometry(disk_bytes)?;
        Ok(sb)
    }

    fn check_features(&self) -> Result<(), MountError> {
        let unknown = self.feature_incompat & !INCOMPAT_SUPPORTED;
        if unknown != 0 {
            return Err(MountError::UnsupportedIncompat(incompat_names(unknown)));
        }
        if self.feature_incompat & INCOMPAT_FILETYPE == 0 {
            return Err(MountError::NoFileType);
        }
        Ok(())
    }

    fn check_geometry(&self, disk_bytes: u64) -> Result<(), MountError> {
        let bad = |what: String| Err(MountError::BadLayout(what));
        let is = self.inode_size;
        if is < 128 || is > self.block_size as u16 / 2 || !is.is_power_of_two() {
            return Err(MountError::BadInodeSize(is));
        }
        if self.first_data_block != u32::from(self.block_size == 1024) {
            return bad(format!(
                "first data block {} with block size {}",
                self.first_data_block, self.block_size
            ));
        }
        if self.blocks_per_group == 0 || self.blocks_per_group > self.block_size * 8 {
            return bad(format!("{} blocks per group", self.blocks_per_group));
        }
        let inodes_per_block = self.block_size / u32::from(is);
        if self.inodes_per_group == 0
            || self.inodes_per_group > self.block_size * 8
            || !self.inodes_per_group.is_multiple_of(inodes_per_block)
        {
            return bad(format!("{} inodes per group", self.inodes_per_group));
        }
        if self.blocks_count <= self.first_data_block + 1 {
            return bad(format!("{} blocks", self.blocks_count));
        }
        if u64::from(self.blocks_count) * u64::from(self.block_size) > disk_bytes {
            return bad(format!(
                "{} blocks of {} bytes do not fit the {disk_bytes}-byte disk",
                self.blocks_count, self.block_size
            ));
        }
        if u64::from(self.inodes_count)
            != u64::from(self.inodes_per_group) * u64::from(self.group_count())
        {
            return bad(format!(
                "{} inodes in {} groups",
                self.inodes_count,
                self.group_count()
            ));
        }
        if self.first_ino <= crate::types::ROOT_INO || self.first_ino >= self.inodes_count {
            return bad(format!("first inode {}", self.first_ino));
        }
        if self.r_blocks_count > self.blocks_count {
            return bad(format!("{} reserved blocks", self.r_blocks_count));
        }
        Ok(())
    }

    pub fn group_count(&self) -> u32 {
        (self.blocks_count - self.first_data_block).div_ceil(self.blocks_per_group)
    }

    /// Blocks holding the group descriptor table.
    pub fn gdt_blocks(&self) -> u32 {
        (self.group_count() * GROUP_DESC_SIZE as u32).div_ceil(self.block_size)
    }

    pub fn inode_table_blocks(&self) -> u32 {
        self.inodes_per_group * u32::from(self.inode_size) / self.block_size
    }

    /// Whether `group` holds a superblock and group descriptor copy.
    pub fn has_super_backup(&self, group: u32) -> bool {
        if group <= 1 || self.feature_ro_compat & RO_COMPAT_SPARSE_SUPER == 0 {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| is_power_of(group, base))
    }

    pub fn group_first_block(&self, group: u32) -> u32 {
        self.first_data_block + group * self.blocks_per_group
    }

    /// Blocks in `group` (the last one may be short).
    pub fn blocks_in_group(&self, group: u32) -> u32 {
        let first = self.group_first_block(group);
        (self.blocks_count - first).min(self.blocks_per_group)
    }

    /// Unknown read-only-compatible features: writing could break them.
    pub fn unknown_ro_compat(&self) -> u32 {
        self.feature_ro_compat & !RO_COMPAT_SUPPORTED
    }

    /// The bytes written back, with the given state and free counts.
    pub fn encode(&mut self, free_blocks: u32, free_inodes: u32, wtime: u32) -> &[u8] {
        put32(&mut self.raw, 12, free_blocks);
        put32(&mut self.raw, 16, free_inodes);
        put32(&mut self.raw, 48, wtime);
        put16(&mut self.raw, 58, self.state);
        put32(&mut self.raw, 100, self.feature_ro_compat);
        &self.raw
    }

    pub fn note_mount(&mut self, now: u32) {
        put32(&mut self.raw, 44, now);
        let count = get16(&self.raw, 52).wrapping_add(1);
        put16(&mut self.raw, 52, count);
    }

    pub fn last_write_time(&self) -> u32 {
        get32(&self.raw, 48)
    }
}

fn is_power_of(mut n: u32, base: u32) -> bool {
    while n.is_multiple_of(base) {
        n /= base;
    }
    n == 1
}

fn incompat_names(bits: u32) -> String {
    let mut names = Vec::new();
    for bit in 0..32 {
        let flag = 1u32 << bit;
        if bits & flag == 0 {
            continue;
        }
        match INCOMPAT_NAMES.iter().find(|(f, _)| *f == flag) {
            Some((_, name)) => names.push(String::from(*name)),
            None => names.push(format!("{flag:#x}")),
        }
    }
    names.join(", ")
}

pub const GROUP_DESC_SIZE: usize = 32;

/// One block group descriptor.
#[derive(Clone, Debug)]
pub struct GroupDesc {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u16,
    pub free_inodes: u16,
    pub used_dirs: u16,
}

impl GroupDesc {
    pub fn parse(raw: &[u8]) -> GroupDesc {
        GroupDesc {
            block_bitmap: get32(raw, 0),
            inode_bitmap: get32(raw, 4),
            inode_table: get32(raw, 8),
            free_blocks: get16(raw, 12),
            free_inodes: get16(raw, 14),
            used_dirs: get16(raw, 16),
        }
    }

    /// Writes the fields this implementation changes (the rest of `raw` is kept).
    pub fn encode(&self, raw: &mut [u8]) {
        put16(raw, 12, self.free_blocks);
        put16(raw, 14, self.free_inodes);
        put16(raw, 16, self.used_dirs);
    }
}
