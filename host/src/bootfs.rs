//! The boot file system (docs/CONTRACTS.md, "The boot file system"): the
//! Linux guest's kernel and initramfs packed into one archive that QEMU
//! passes as `-initrd`.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use crate::host::Host;
use crate::kernel::run_shown;
use crate::kernel::Progress;

const MAGIC: &[u8; 8] = b"STARBOOT";
const ALIGN: usize = 4096;

fn align_up(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The archive: magic, u32 count, then per entry u16 name length, name,
/// u32 offset, u32 size; file data 4096-aligned.
pub fn pack(files: &[(&str, &[u8])]) -> Result<Vec<u8>, String> {
    let mut header = MAGIC.to_vec();
    header.extend_from_slice(&(files.len() as u32).to_le_bytes());
    let table_len: usize = files.iter().map(|(n, _)| 2 + n.len() + 8).sum();
    let mut offset = align_up(header.len() + table_len);
    let mut layout = Vec::new();
    for (name, data) in files {
        let too_big = || "bootfs archive larger than 4 GiB".to_string();
        header.extend_from_slice(&(name.len() as u16).to_le_bytes());
        header.extend_from_slice(name.as_bytes());
        header.extend_from_slice(&u32::try_from(offset).map_err(|_| too_big())?.to_le_bytes());
        header.extend_from_slice(&(data.len() as u32).to_le_bytes());
        layout.push((offset, *data));
        offset = align_up(offset + data.len());
        u32::try_from(offset).map_err(|_| too_big())?;
    }
    let mut out = header;
    for (at, data) in layout {
        out.resize(at, 0);
        out.extend_from_slice(data);
    }
    Ok(out)
}

/// FNV-1a over the names, lengths and contents: the archive's cache key.
pub(crate) fn content_key(files: &[(&str, &[u8])]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(b"bootfs v2\0");
    for (name, data) in files {
        eat(name.as_bytes());
        eat(&(data.len() as u64).to_le_bytes());
        eat(data);
    }
    format!("{h:016x}")
}

/// Runs `linux-guest/<script>` and returns the path it prints last.
pub fn linux_artifact(
    host: &Host,
    script: &str,
    progress: Progress,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    let path = host.root.join("linux-guest").join(script);
    let mut last = String::new();
    let on_stdout = &mut |line: &str| last = line.trim().to_string();
    let code = run_shown(&mut Command::new(&path), progress, report, on_stdout)
        .map_err(|e| format!("cannot run {}: {e}", path.display()))?;
    if code != 0 || !Path::new(&last).is_file() {
        return Err(format!("linux-guest/{script} failed (status {code})"));
    }
    Ok(PathBuf::from(last))
}

/// Builds (or reuses) the Linux guest's files (if `linux`) and packs them
/// with `extra` files (name in the archive, path: the user-mode images);
/// the archive's path, cached by content in `<cache>/bootfs/<key>/bootfs.img`.
pub fn build(
    host: &Host,
    linux: bool,
    extra: &[(String, PathBuf)],
    progress: Progress,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    let read = |p: &Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
    let mut owned: Vec<(String, Vec<u8>)> = Vec::new();
    if linux {
        let kernel = linux_artifact(host, "build-kernel.sh", progress, report)?;
        let initramfs = linux_artifact(host, "build-initramfs.sh", progress, report)?;
        owned.push(("linux/bzImage".into(), read(&kernel)?));
        owned.push(("linux/initramfs.cpio".into(), read(&initramfs)?));
    }
    for (name, path) in extra {
        owned.push((name.clone(), read(path)?));
    }
    let files: Vec<(&str, &[u8])> = owned.iter().map(|(n, d)| (n.as_str(), d.as_slice())).collect();
    let dir = host.cache.join("bootfs").join(content_key(&files));
    let out = dir.join("bootfs.img");
    if !out.is_file() {
        let archive = pack(&files)?;
        // A name of our own: runs that pack the same files at once (the
        // tests do) each write their copy and rename it into place.
        static PACKS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = PACKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = dir.join(format!("bootfs.img.tmp.{}.{n}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .and_then(|_| std::fs::write(&tmp, &archive))
            .and_then(|_| std::fs::rename(&tmp, &out))
            .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
        report(&format!(
            "starina: packed the boot file system: {} ({} KiB)",
            out.display(),
            archive.len() / 1024
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let a = pack(&[("a", b"xyz"), ("bb", b"")]).unwrap();
        assert_eq!(&a[..8], MAGIC);
        assert_eq!(u32::from_le_bytes(a[8..12].try_into().unwrap()), 2);
        // Entry 1: len 1, "a", offset 4096, size 3.
        assert_eq!(&a[12..15], &[1, 0, b'a']);
        assert_eq!(u32::from_le_bytes(a[15..19].try_into().unwrap()), 4096);
        assert_eq!(u32::from_le_bytes(a[19..23].try_into().unwrap()), 3);
        // Entry 2 starts at the next 4096 boundary after the first file.
        assert_eq!(u32::from_le_bytes(a[27..31].try_into().unwrap()), 8192);
        assert_eq!(&a[4096..4099], b"xyz");
        assert_eq!(a.len(), 8192);
        assert_ne!(content_key(&[("a", b"1")]), content_key(&[("a", b"2")]));
    }
}
