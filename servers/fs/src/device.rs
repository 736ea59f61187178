//! The disk as `starina-ext2` sees it: a block device over the virtio-blk
//! driver's channel.

use alloc::format;

use starina::block::Disk;
use starina_ext2::BlockDevice;
use starina_ext2::IoError;

pub struct DiskDevice(pub Disk);

impl BlockDevice for DiskDevice {
    fn sectors(&self) -> u64 {
        self.0.info().sectors
    }

    fn read_only(&self) -> bool {
        self.0.info().read_only
    }

    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        self.0.read(sector, buf).map_err(|e| {
            IoError(format!(
                "reading {} bytes at sector {sector}: {e}",
                buf.len()
            ))
        })
    }

    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        self.0.write(sector, data).map_err(|e| {
            IoError(format!(
                "writing {} bytes at sector {sector}: {e}",
                data.len()
            ))
        })
    }

    fn flush(&mut self) -> Result<(), IoError> {
        self.0
            .flush()
            .map_err(|e| IoError(format!("flushing the disk: {e}")))
    }
}
