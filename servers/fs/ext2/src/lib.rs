//! The ext2 file system: the on-disk format of Starina's native file system server.
//!
//! [`Fs`] mounts an ext2 image made by `mke2fs -t ext2` on a [`BlockDevice`] and serves
//! inode-level operations (the server above it checks permissions). Metadata goes through
//! a bounded write-back block cache; `sync` writes it in an order that the repair pass run
//! at the next mount can always make consistent after a crash.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

mod alloc_bitmap;
mod bmap;
mod bytes;
mod cache;
mod device;
mod dir;
mod file;
mod fs;
mod inode;
mod ops;
mod repair;
mod superblock;
mod types;

pub use device::{BlockDevice, IoError, SECTOR_SIZE};
pub use fs::{Fs, CACHE_BYTES};
pub use types::{DirEntry, FileType, FsError, Ino, MountError, SetAttr, Stat, StatFs, ROOT_INO};
