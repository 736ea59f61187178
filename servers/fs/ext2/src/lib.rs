//! The ext2 file system: the on-disk format of Starina's native file system server.
//!
//! [`Fs`] mounts an ext2 image made by `mke2fs -t ext2` on a [`BlockDevice`] and serves
//! inode-level operations; the server above it checks permissions and keeps the clock
//! ([`Fs::set_time`]).
//!
//! - Supported: block sizes 1, 2 and 4 KiB; 128- and 256-byte inodes; sparse_super,
//!   large_file, filetype (required), resize_inode, ext_attr (blocks are kept, freed with
//!   their file), dir_index (a changed directory loses its htree flag; lookups use an
//!   in-memory name index per directory instead), flex_bg. Incompatible features it does
//!   not implement (extents, 64bit, journal recovery, ...) refuse the mount by name;
//!   unknown read-only-compatible features and a journal (ext3) mount read-only.
//! - Caching: a write-back block cache of [`CACHE_BYTES`] (clean blocks are evicted
//!   first; when three quarters are dirty the next operation syncs first). File reads
//!   that miss the cache and sync's write-back send runs of consecutive blocks as one
//!   request of up to [`MAX_REQUEST_BYTES`]; a read that starts where the last read of
//!   the same file ended reads ahead, up to [`READ_AHEAD_BYTES`], into the cache.
//! - Durability: [`Fs::sync`] writes data and new blocks, inode tables, directory blocks,
//!   then bitmaps, group descriptors and the superblock, flushing the device after each
//!   phase (up to 4 flushes; nothing at all when nothing is dirty). Blocks and inodes
//!   freed since the last sync are reused only after it. While mounted read-write the
//!   superblock says "not clean"; a mount of a file system that was not cleanly
//!   unmounted runs a repair pass (see `repair.rs`) before anything else.
//! - Open files: [`Fs::retain`] / [`Fs::release`] keep an unlinked inode alive; its blocks
//!   are freed at the last release or at unmount (or by the repair after a crash).
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
pub use device::READ_AHEAD_BYTES;
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
