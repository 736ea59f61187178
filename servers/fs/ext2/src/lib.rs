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

pub use device::BlockDevice;
pub use device::IoError;
pub use device::MAX_REQUEST_BYTES;
pub use device::SECTOR_SIZE;
pub use fs::Fs;
pub use fs::CACHE_BYTES;
pub use types::DirEntry;
pub use types::FileType;
pub use types::FsError;
pub use types::Ino;
pub use types::MountError;
pub use types::SetAttr;
pub use types::Stat;
pub use types::StatFs;
pub use types::ROOT_INO;
