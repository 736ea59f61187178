//! Files: the native file API (`starina::fs`) and the protocol the fs
//! server speaks, on the fixed message kinds (no IDL). One place documents
//! it; [`wire`] encodes and decodes it; [`Files`] and [`File`] are the
//! blocking client a component uses.
//!
//! ## On the `fs` channel (a component's `[needs] fs = "fs"`)
//!
//! - `Open { call_id, uri }` opens a file: the URI is an absolute path
//!   (or `inode:<n>`), then `?` and comma-separated options (the last `?`
//!   starts them, so a path may hold one of its own): `read`
//!   (the default when none of `read`/`write` is given), `write`,
//!   `create`, `excl`, `trunc`, `append`, `nofollow`, `mode=644` (octal,
//!   for `create`). The answer is `OpenReply` with a channel to the open
//!   file, or `Error`. Directories open too (for `stat` and `sync`), but
//!   only read-only.
//! - every other request is a `Data` message: an op byte, a `call_id:
//!   u32`, then the op's fields ([`wire::Request`]); the answer is `Data`
//!   starting with the same `call_id` followed by the result, or `Error
//!   { call_id, code, text }` with a code from [`ErrorKind`].
//!
//! ## On an open file's channel
//!
//! `Data` requests ([`wire::FileRequest`]: read, write, stat, set length,
//! sync), answered the same way. Closing the channel closes the file; an
//! unlinked file lives on until its last channel closes.
//!
//! Integers are little-endian. A path argument is a `base: u32` (0: the
//! path is absolute; otherwise an inode number it is relative to) and a
//! `u16`-length-prefixed byte string. Times are seconds since 1970.

pub mod calls;
mod client;
pub mod wire;

pub use calls::Calls;
pub use client::File;
pub use client::Files;
pub use client::OpenOptions;

use alloc::string::String;
use alloc::vec::Vec;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileType {
    Regular = 1,
    Directory = 2,
    Symlink = 3,
    CharDevice = 4,
    BlockDevice = 5,
    Fifo = 6,
    Socket = 7,
}

impl FileType {
    pub fn from_raw(raw: u8) -> Option<FileType> {
        Some(match raw {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::Symlink,
            4 => FileType::CharDevice,
            5 => FileType::BlockDevice,
            6 => FileType::Fifo,
            7 => FileType::Socket,
            _ => return None,
        })
    }
}

/// What `stat` says of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub kind: FileType,
    /// Permission bits (with setuid, setgid and sticky), without the type.
    pub mode: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte units allocated.
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: FileType,
    pub name: Vec<u8>,
    /// Reading the directory again from this cookie resumes after this entry.
    pub cookie: u64,
}

/// What changes in a `set_attr`: `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<u64>,
    pub mtime: Option<u64>,
}

/// The file system's figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    /// Free blocks an unprivileged writer may use.
    pub available_blocks: u64,
    pub inodes: u64,
    pub free_inodes: u64,
    pub name_max: u32,
}

/// Why a file operation failed: the code an `Error` message carries.
/// Codes 1..=7 are the system-wide ones of [`crate::message::codes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorKind {
    Invalid = 1,
    NotFound = 2,
    PermissionDenied = 3,
    Unavailable = 4,
    Internal = 5,
    TimedOut = 6,
    Exists = 20,
    NotADirectory = 21,
    IsADirectory = 22,
    NotEmpty = 23,
    NoSpace = 24,
    ReadOnly = 25,
    NameTooLong = 26,
    TooLarge = 27,
    Loop = 28,
    Io = 29,
    /// A message the other side could not decode.
    Malformed = 30,
}

impl ErrorKind {
    /// The kind of a received code; codes this SDK does not know are `Internal`.
    pub fn from_code(code: u16) -> ErrorKind {
        use ErrorKind::*;
        [
            Invalid,
            NotFound,
            PermissionDenied,
            Unavailable,
            Internal,
            TimedOut,
            Exists,
            NotADirectory,
            IsADirectory,
            NotEmpty,
            NoSpace,
            ReadOnly,
            NameTooLong,
            TooLarge,
            Loop,
            Io,
            Malformed,
        ]
        .into_iter()
        .find(|k| *k as u16 == code)
        .unwrap_or(Internal)
    }

    /// The POSIX errno with the same meaning (for the FUSE bridge).
    pub fn errno(self) -> i32 {
        match self {
            ErrorKind::Invalid | ErrorKind::Malformed => 22, // EINVAL
            ErrorKind::NotFound => 2,                        // ENOENT
            ErrorKind::PermissionDenied => 13,               // EACCES
            ErrorKind::Unavailable => 11,                    // EAGAIN
            ErrorKind::Internal | ErrorKind::Io => 5,        // EIO
            ErrorKind::TimedOut => 110,                      // ETIMEDOUT
            ErrorKind::Exists => 17,                         // EEXIST
            ErrorKind::NotADirectory => 20,                  // ENOTDIR
            ErrorKind::IsADirectory => 21,                   // EISDIR
            ErrorKind::NotEmpty => 39,                       // ENOTEMPTY
            ErrorKind::NoSpace => 28,                        // ENOSPC
            ErrorKind::ReadOnly => 30,                       // EROFS
            ErrorKind::NameTooLong => 36,                    // ENAMETOOLONG
            ErrorKind::TooLarge => 27,                       // EFBIG
            ErrorKind::Loop => 40,                           // ELOOP
        }
    }
}

/// A failed file operation: what kind of failure, and the server's words.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FsError {
    pub kind: ErrorKind,
    pub text: String,
}

impl FsError {
    pub fn new(kind: ErrorKind, text: impl Into<String>) -> FsError {
        FsError {
            kind,
            text: text.into(),
        }
    }
}

impl core::fmt::Display for FsError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({:?})", self.text, self.kind)
    }
}
