//! The types of the public API: inode numbers, attributes, directory entries and errors.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::device::IoError;

/// An inode number (1-based, as on disk).
pub type Ino = u32;
/// The root directory's inode number.
pub const ROOT_INO: Ino = 2;

/// What an inode is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDev,
    BlockDev,
    Fifo,
    Socket,
}

/// An inode's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    pub kind: FileType,
    /// Permission bits including suid/sgid/sticky, without the type.
    pub mode: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// Space used, in 512-byte units.
    pub blocks: u64,
    pub atime: u32,
    pub mtime: u32,
    pub ctime: u32,
}

/// One directory entry as `readdir` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: FileType,
    pub name: Vec<u8>,
    /// Pass it to `readdir` to resume after this entry.
    pub cookie: u64,
}

/// The attributes `set_attr` changes (`None` leaves one alone).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<u32>,
    pub mtime: Option<u32>,
}

/// File system totals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    /// Free blocks minus the ones reserved for root.
    pub available_blocks: u64,
    pub inodes: u64,
    pub free_inodes: u64,
    pub name_max: u32,
}

/// Why a file system operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FsError {
    NotFound,
    Exists,
    NotDir,
    IsDir,
    NotEmpty,
    NoSpace,
    ReadOnly,
    NameTooLong,
    InvalidName,
    /// The request makes no sense, e.g. moving a directory into itself.
    Invalid,
    TooLarge,
    Loop,
    Io(String),
    /// The on-disk structures are damaged; says what was found.
    Corrupt(String),
}

impl fmt::Display for FsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsError::NotFound => write!(f, "no such file or directory"),
            FsError::Exists => write!(f, "file exists"),
            FsError::NotDir => write!(f, "not a directory"),
            FsError::IsDir => write!(f, "is a directory"),
            FsError::NotEmpty => write!(f, "directory not empty"),
            FsError::NoSpace => write!(f, "no space left on device"),
            FsError::ReadOnly => write!(f, "read-only file system"),
            FsError::NameTooLong => write!(f, "name too long"),
            FsError::InvalidName => write!(f, "invalid name"),
            FsError::Invalid => write!(f, "invalid argument"),
            FsError::TooLarge => write!(f, "file too large"),
            FsError::Loop => write!(f, "too many levels of symbolic links"),
            FsError::Io(e) => write!(f, "I/O error: {e}"),
            FsError::Corrupt(what) => write!(f, "file system corrupt: {what}"),
        }
    }
}

impl From<IoError> for FsError {
    fn from(e: IoError) -> Self {
        FsError::Io(e.0)
    }
}

/// Why `Fs::mount` refused a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountError {
    Io(String),
    /// The disk is too small to hold a superblock.
    TooSmall,
    BadMagic(u16),
    /// An incompatible feature this implementation does not know or support.
    UnsupportedIncompat(String),
    /// The directory entries lack file types (the filetype feature is required).
    NoFileType,
    BadBlockSize(u32),
    BadInodeSize(u16),
    /// Any other inconsistent superblock or group descriptor field; says which.
    BadLayout(String),
    /// The repair pass after an unclean shutdown failed.
    Repair(String),
}

impl fmt::Display for MountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MountError::Io(e) => write!(f, "I/O error: {e}"),
            MountError::TooSmall => write!(f, "the disk is too small for an ext2 superblock"),
            MountError::BadMagic(m) => write!(f, "bad magic {m:#06x} (not ext2)"),
            MountError::UnsupportedIncompat(names) => {
                write!(f, "unsupported incompat feature {names}")
            }
            MountError::NoFileType => {
                write!(
                    f,
                    "the filetype feature is required (directory entries lack types)"
                )
            }
            MountError::BadBlockSize(s) => write!(f, "unsupported block size {s}"),
            MountError::BadInodeSize(s) => write!(f, "unsupported inode size {s}"),
            MountError::BadLayout(what) => write!(f, "bad layout: {what}"),
            MountError::Repair(what) => write!(f, "repair after unclean shutdown failed: {what}"),
        }
    }
}

impl From<IoError> for MountError {
    fn from(e: IoError) -> Self {
        MountError::Io(e.0)
    }
}
