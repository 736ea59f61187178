//! What the file system runs on.

use alloc::string::String;
use core::fmt;

/// The unit of [`BlockDevice`] addressing.
pub const SECTOR_SIZE: usize = 512;

/// The largest read or write request the file system sends: runs of consecutive blocks
/// (sync's write-back, file reads that miss the cache) are merged up to this size.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How far a sequential read of a file reads on (consecutive blocks on disk, into the cache):
/// a file streamed in small requests costs one device request per this many bytes.
pub const READ_AHEAD_BYTES: usize = 128 * 1024;

/// A disk: the fs server implements it over the virtio-blk driver's channel.
pub trait BlockDevice {
    /// The size of the disk in 512-byte sectors.
    fn sectors(&self) -> u64;
    /// Whether writes are refused (the file system then mounts read-only).
    fn read_only(&self) -> bool;
    /// Reads `buf.len()` bytes (a multiple of 512) starting at `sector`.
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError>;
    /// Writes `data` (a multiple of 512 bytes) starting at `sector`.
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError>;
    /// Everything written before is durable when this returns (virtio-blk flush).
    fn flush(&mut self) -> Result<(), IoError>;
}

/// A failed device request, with the device's own words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoError(pub String);

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "I/O error: {}", self.0)
    }
}
