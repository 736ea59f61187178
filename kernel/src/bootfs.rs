//! The boot file system: one archive the boot loader passes as the PVH
//! module (`-initrd` under QEMU), built by `scripts/starina`.
//!
//! Format (little endian): magic `STARBOOT`; u32 entry count; per entry a
//! u16 name length, the name (UTF-8), a u32 data offset from the start of
//! the archive and a u32 size. The kernel reserves the archive's pages for
//! good, so files are handed out as `&'static [u8]` without copying.

use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Error;

const MAGIC: &[u8; 8] = b"STARBOOT";

static FILES: spin::Once<Vec<(String, &'static [u8])>> = spin::Once::new();

/// Why an archive was rejected.
#[derive(Debug, PartialEq, Eq)]
pub enum BootfsError {
    BadMagic,
    Truncated(&'static str),
    BadName,
    OutOfRange { name: String },
}

/// Parses an archive; every entry must lie inside it.
pub fn parse(archive: &'static [u8]) -> Result<Vec<(String, &'static [u8])>, BootfsError> {
    fn take<'a>(buf: &mut &'a [u8], n: usize, what: &'static str) -> Result<&'a [u8], BootfsError> {
        if buf.len() < n {
            return Err(BootfsError::Truncated(what));
        }
        let (head, rest) = buf.split_at(n);
        *buf = rest;
        Ok(head)
    }
    let mut cur = archive;
    if take(&mut cur, 8, "magic")? != MAGIC {
        return Err(BootfsError::BadMagic);
    }
    let count = u32::from_le_bytes(take(&mut cur, 4, "entry count")?.try_into().unwrap());
    let mut files = Vec::new();
    for _ in 0..count.min(1024) {
        let name_len = u16::from_le_bytes(take(&mut cur, 2, "name length")?.try_into().unwrap());
        let name = core::str::from_utf8(take(&mut cur, name_len as usize, "name")?)
            .map_err(|_| BootfsError::BadName)?;
        let offset = u32::from_le_bytes(take(&mut cur, 4, "offset")?.try_into().unwrap()) as usize;
        let size = u32::from_le_bytes(take(&mut cur, 4, "size")?.try_into().unwrap()) as usize;
        let data = offset
            .checked_add(size)
            .and_then(|end| archive.get(offset..end))
            .ok_or_else(|| BootfsError::OutOfRange {
                name: String::from(name),
            })?;
        files.push((String::from(name), data));
    }
    Ok(files)
}

/// Takes the archive the boot loader passed (if any).
pub fn init(archive: Option<&'static [u8]>) {
    let files = match archive {
        None => Vec::new(),
        Some(a) => match parse(a) {
            Ok(files) => {
                for (name, data) in &files {
                    log::info!("bootfs: {name} ({} KiB)", data.len() / 1024);
                }
                files
            }
            Err(e) => {
                log::error!("bootfs: ignoring the boot module: {e:?}");
                Vec::new()
            }
        },
    };
    FILES.call_once(|| files);
}

pub fn file(name: &str) -> Result<&'static [u8], Error> {
    FILES
        .get()
        .and_then(|files| files.iter().find(|(n, _)| n == name))
        .map(|(_, data)| *data)
        .ok_or(Error::NotFound)
}
