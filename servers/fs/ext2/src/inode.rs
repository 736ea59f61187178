//! The on-disk inode: the fields this implementation uses, decoded from and encoded into
//! the first 128 bytes (plus `i_extra_isize` of larger inodes); other bytes are kept.

use crate::bytes::get16;
use crate::bytes::get32;
use crate::bytes::put16;
use crate::bytes::put32;
use crate::types::FileType;

pub const N_DIRECT: usize = 12;
pub const IND: usize = 12;
pub const DIND: usize = 13;
pub const TIND: usize = 14;
pub const N_BLOCKS: usize = 15;

pub const S_IFMT: u16 = 0xF000;
const S_IFSOCK: u16 = 0xC000;
const S_IFLNK: u16 = 0xA000;
const S_IFREG: u16 = 0x8000;
const S_IFBLK: u16 = 0x6000;
const S_IFDIR: u16 = 0x4000;
const S_IFCHR: u16 = 0x2000;
const S_IFIFO: u16 = 0x1000;

/// Inode flag: the directory has an htree index (we clear it when changing the directory).
pub const FLAG_INDEX: u32 = 0x1000;
/// Inode flags this implementation cannot read: extents, inline data.
pub const FLAGS_UNSUPPORTED: u32 = 0x80000 | 0x1000_0000;

#[derive(Clone, Debug, Default)]
pub struct Inode {
    pub mode: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: u32,
    pub ctime: u32,
    pub mtime: u32,
    pub dtime: u32,
    pub links: u16,
    /// In 512-byte units.
    pub blocks: u64,
    pub flags: u32,
    pub block: [u32; N_BLOCKS],
    pub file_acl: u32,
}

impl Inode {
    pub fn decode(raw: &[u8]) -> Inode {
        let mut block = [0u32; N_BLOCKS];
        for (i, b) in block.iter_mut().enumerate() {
            *b = get32(raw, 40 + 4 * i);
        }
        let mode = get16(raw, 0);
        let size_high = if mode & S_IFMT == S_IFREG {
            get32(raw, 108)
        } else {
            0
        };
        Inode {
            mode,
            uid: u32::from(get16(raw, 2)) | u32::from(get16(raw, 120)) << 16,
            gid: u32::from(get16(raw, 24)) | u32::from(get16(raw, 122)) << 16,
            size: u64::from(get32(raw, 4)) | u64::from(size_high) << 32,
            atime: get32(raw, 8),
            ctime: get32(raw, 12),
            mtime: get32(raw, 16),
            dtime: get32(raw, 20),
            links: get16(raw, 26),
            blocks: u64::from(get32(raw, 28)) | u64::from(get16(raw, 116)) << 32,
            flags: get32(raw, 32),
            block,
            file_acl: get32(raw, 104),
        }
    }

    /// Writes the fields into `raw` (the inode's slot in its table block).
    pub fn encode(&self, raw: &mut [u8]) {
        put16(raw, 0, self.mode);
        put16(raw, 2, self.uid as u16);
        put16(raw, 120, (self.uid >> 16) as u16);
        put16(raw, 24, self.gid as u16);
        put16(raw, 122, (self.gid >> 16) as u16);
        put32(raw, 4, self.size as u32);
        put32(
            raw,
            108,
            if self.is_regular() {
                (self.size >> 32) as u32
            } else {
                0
            },
        );
        put32(raw, 8, self.atime);
        put32(raw, 12, self.ctime);
        put32(raw, 16, self.mtime);
        put32(raw, 20, self.dtime);
        put16(raw, 26, self.links);
        put32(raw, 28, self.blocks as u32);
        put16(raw, 116, (self.blocks >> 32) as u16);
        put32(raw, 32, self.flags);
        for (i, b) in self.block.iter().enumerate() {
            put32(raw, 40 + 4 * i, *b);
        }
        put32(raw, 104, self.file_acl);
    }

    pub fn kind(&self) -> Option<FileType> {
        file_type_of_mode(self.mode)
    }

    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }

    pub fn is_regular(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }

    pub fn is_symlink(&self) -> bool {
        self.mode & S_IFMT == S_IFLNK
    }

    /// Whether `block` holds block pointers (regular files, directories, slow symlinks).
    pub fn has_block_map(&self, block_size: u32) -> bool {
        match self.kind() {
            Some(FileType::Regular) | Some(FileType::Directory) => true,
            Some(FileType::Symlink) => !self.is_fast_symlink(block_size),
            _ => false,
        }
    }

    /// A symlink whose target lives in `block` itself: it owns no data blocks.
    pub fn is_fast_symlink(&self, block_size: u32) -> bool {
        let acl_sectors = if self.file_acl != 0 {
            u64::from(block_size / 512)
        } else {
            0
        };
        self.is_symlink() && self.blocks.saturating_sub(acl_sectors) == 0 && self.size < 60
    }
}

pub fn mode_bits(kind: FileType) -> u16 {
    match kind {
        FileType::Regular => S_IFREG,
        FileType::Directory => S_IFDIR,
        FileType::Symlink => S_IFLNK,
        FileType::CharDev => S_IFCHR,
        FileType::BlockDev => S_IFBLK,
        FileType::Fifo => S_IFIFO,
        FileType::Socket => S_IFSOCK,
    }
}

pub fn file_type_of_mode(mode: u16) -> Option<FileType> {
    Some(match mode & S_IFMT {
        S_IFREG => FileType::Regular,
        S_IFDIR => FileType::Directory,
        S_IFLNK => FileType::Symlink,
        S_IFCHR => FileType::CharDev,
        S_IFBLK => FileType::BlockDev,
        S_IFIFO => FileType::Fifo,
        S_IFSOCK => FileType::Socket,
        _ => return None,
    })
}

/// The file type code in a directory entry (filetype feature).
pub fn dirent_type(kind: FileType) -> u8 {
    match kind {
        FileType::Regular => 1,
        FileType::Directory => 2,
        FileType::CharDev => 3,
        FileType::BlockDev => 4,
        FileType::Fifo => 5,
        FileType::Socket => 6,
        FileType::Symlink => 7,
    }
}

pub fn kind_of_dirent_type(code: u8) -> Option<FileType> {
    Some(match code {
        1 => FileType::Regular,
        2 => FileType::Directory,
        3 => FileType::CharDev,
        4 => FileType::BlockDev,
        5 => FileType::Fifo,
        6 => FileType::Socket,
        7 => FileType::Symlink,
        _ => return None,
    })
}
