//! Shared by the host tests: images made by mke2fs, an in-memory block device, and the
//! e2fsprogs cross-checks (`e2fsck -fn`, `debugfs`).
#![allow(dead_code)]

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering;

use starina_ext2::BlockDevice;
use starina_ext2::Fs;
use starina_ext2::IoError;
use starina_ext2::SECTOR_SIZE;

/// A disk image file under the temp directory, removed on drop.
pub struct Image {
    pub path: PathBuf,
}

// static-ok: host test code (not a component): unique image names across test threads.
static NEXT_IMAGE: AtomicU32 = AtomicU32::new(0);

impl Image {
    /// `mke2fs -q -t ext2 -F` on a new file of `size_kib`, with extra options (another `-t` replaces ext2).
    pub fn new(size_kib: u64, options: &[&str]) -> Image {
        let n = NEXT_IMAGE.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("starina-ext2-{}-{n}.img", std::process::id()));
        // Owned from here, so a failing step below still removes the file.
        let image = Image { path };
        let file = std::fs::File::create(&image.path).unwrap();
        file.set_len(size_kib * 1024).unwrap();
        drop(file);
        let fs_type = if options.contains(&"-t") {
            &[][..]
        } else {
            &["-t", "ext2"][..]
        };
        let out = Command::new("/usr/sbin/mke2fs")
            .args(["-q", "-F"])
            .args(fs_type)
            .args(options)
            .arg(&image.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mke2fs failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        image
    }

    pub fn device(&self) -> MemDevice {
        MemDevice::new(std::fs::read(&self.path).unwrap())
    }

    pub fn mount(&self) -> Fs<MemDevice> {
        let mut fs = Fs::mount(self.device()).unwrap_or_else(|e| panic!("mount: {e}"));
        fs.set_time(1_700_000_000);
        fs
    }

    pub fn store(&self, dev: &MemDevice) {
        std::fs::write(&self.path, &dev.data).unwrap();
    }

    /// Unmounts and writes the image back to its file.
    pub fn unmount(&self, fs: Fs<MemDevice>) {
        let dev = fs.unmount().unwrap_or_else(|e| panic!("unmount: {e}"));
        self.store(&dev);
    }

    /// `e2fsck -fn` must find nothing.
    pub fn assert_clean(&self) {
        let out = Command::new("/usr/sbin/e2fsck")
            .arg("-fn")
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck -fn found problems:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn debugfs(&self, request: &str) -> Vec<u8> {
        debugfs(&self.path, request)
    }
}

pub fn debugfs(path: &Path, request: &str) -> Vec<u8> {
    let out = Command::new("/usr/sbin/debugfs")
        .arg("-R")
        .arg(request)
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs {request}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

impl Drop for Image {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A disk in memory; optionally stops accepting writes after a number of them (a crash,
/// which tears the request in flight: its first half of sectors is written).
pub struct MemDevice {
    pub data: Vec<u8>,
    pub read_only: bool,
    pub writes: usize,
    pub reads: usize,
    pub flushes: usize,
    pub writes_allowed: Option<usize>,
}

impl MemDevice {
    pub fn new(data: Vec<u8>) -> MemDevice {
        MemDevice {
            data,
            read_only: false,
            writes: 0,
            reads: 0,
            flushes: 0,
            writes_allowed: None,
        }
    }

    fn range(&self, sector: u64, len: usize) -> Result<std::ops::Range<usize>, IoError> {
        let start = (sector as usize).saturating_mul(SECTOR_SIZE);
        if !len.is_multiple_of(SECTOR_SIZE) || start.saturating_add(len) > self.data.len() {
            return Err(IoError(format!(
                "request of {len} bytes at sector {sector} beyond the disk"
            )));
        }
        Ok(start..start + len)
    }
}

impl BlockDevice for MemDevice {
    fn sectors(&self) -> u64 {
        (self.data.len() / SECTOR_SIZE) as u64
    }
    fn read_only(&self) -> bool {
        self.read_only
    }
    fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), IoError> {
        let range = self.range(sector, buf.len())?;
        self.reads += 1;
        buf.copy_from_slice(&self.data[range]);
        Ok(())
    }
    fn write(&mut self, sector: u64, data: &[u8]) -> Result<(), IoError> {
        let range = self.range(sector, data.len())?;
        if self.read_only {
            return Err(IoError("write to a read-only disk".into()));
        }
        if self.writes_allowed.is_some_and(|n| self.writes >= n) {
            if self.writes_allowed == Some(self.writes) {
                // The request being written when the power went: its first half made it.
                let torn = (data.len() / SECTOR_SIZE / 2) * SECTOR_SIZE;
                self.data[range.start..range.start + torn].copy_from_slice(&data[..torn]);
                self.writes += 1;
            }
            return Err(IoError("the disk is gone (simulated crash)".into()));
        }
        self.writes += 1;
        self.data[range].copy_from_slice(data);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), IoError> {
        self.flushes += 1;
        Ok(())
    }
}

/// Deterministic bytes for file contents.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

pub fn read_all(fs: &mut Fs<MemDevice>, ino: u32) -> Vec<u8> {
    let size = fs.stat(ino).unwrap().size as usize;
    let mut buf = vec![0u8; size];
    assert_eq!(fs.read(ino, 0, &mut buf).unwrap(), size);
    buf
}
