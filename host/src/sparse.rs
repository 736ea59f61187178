//! Copying a sparse image into a range of another file without filling
//! its holes: only the source's data extents are read (found by
//! `qemu-img map`, which seeks over holes), and of those only blocks that
//! are not all zeros are written. A 4 GiB root file system with 700 MB in
//! it copies in seconds, and the disk stays sparse.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;
use std::process::Stdio;

use regex::Regex;

use crate::process::find_program;

/// The unit zeros are skipped in.
const BLOCK: usize = 64 << 10;
/// Bytes read at a time.
const CHUNK: usize = 4 << 20;

/// The byte ranges `(start, length)` of `path` that may hold data, in
/// order; the whole file when `qemu-img` is not there to tell.
pub fn data_extents(path: &Path) -> Result<Vec<(u64, u64)>, String> {
    let len = path
        .metadata()
        .map_err(|e| format!("{}: {e}", path.display()))?
        .len();
    let Some(qemu_img) = find_program("qemu-img") else {
        return Ok(vec![(0, len)]);
    };
    let out = Command::new(qemu_img)
        .args(["map", "-f", "raw", "--output=json"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run qemu-img map: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "qemu-img map {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_map(&String::from_utf8_lossy(&out.stdout))
}

/// The data extents of `qemu-img map --output=json`.
fn parse_map(json: &str) -> Result<Vec<(u64, u64)>, String> {
    let entry =
        Regex::new(r#"\{[^}]*"start": *(\d+), *"length": *(\d+)[^}]*"data": *(true|false)"#)
            .expect("a valid pattern");
    let mut extents: Vec<(u64, u64)> = Vec::new();
    for m in entry.captures_iter(json) {
        if &m[3] != "true" {
            continue;
        }
        let number = |i: usize| {
            m[i].parse::<u64>()
                .map_err(|_| format!("qemu-img map: bad number {}", &m[i]))
        };
        let (start, length) = (number(1)?, number(2)?);
        match extents.last_mut() {
            Some((s, l)) if *s + *l == start => *l += length,
            _ => extents.push((start, length)),
        }
    }
    if extents.is_empty() && !json.contains("\"start\"") && !json.trim().starts_with('[') {
        return Err(format!("qemu-img map: unexpected output: {}", json.trim()));
    }
    Ok(extents)
}

/// Copies all of `src` into `dst` at byte `offset`; `dst` must already be
/// zeros there (a new sparse file). Returns the bytes written.
pub fn copy_into(src: &Path, dst: &File, offset: u64) -> Result<u64, String> {
    let extents = data_extents(src)?;
    let file = File::open(src).map_err(|e| format!("{}: {e}", src.display()))?;
    let mut buf = vec![0u8; CHUNK];
    let mut written = 0;
    for (start, length) in extents {
        let mut at = start;
        while at < start + length {
            let want = (start + length - at).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut buf[..want], at)
                .map_err(|e| format!("{}: {e}", src.display()))?;
            written += write_non_zero(dst, &buf[..want], offset + at)?;
            at += want as u64;
        }
    }
    Ok(written)
}

/// Writes the blocks of `data` that are not all zeros at `at` in `dst`.
fn write_non_zero(dst: &File, data: &[u8], at: u64) -> Result<u64, String> {
    let mut written = 0;
    for (i, block) in data.chunks(BLOCK).enumerate() {
        if block.iter().all(|&b| b == 0) {
            continue;
        }
        dst.write_all_at(block, at + (i * BLOCK) as u64)
            .map_err(|e| format!("cannot write the disk: {e}"))?;
        written += block.len() as u64;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::exec::TempDir;

    #[test]
    fn the_map_gives_data_extents_merged() {
        let json = r#"[{ "start": 0, "length": 4096, "depth": 0, "present": true, "zero": false, "data": true, "offset": 0},
{ "start": 4096, "length": 8192, "depth": 0, "present": true, "zero": false, "data": true, "offset": 4096},
{ "start": 12288, "length": 1000000, "depth": 0, "present": true, "zero": true, "data": false, "offset": 12288},
{ "start": 1012288, "length": 512, "depth": 0, "present": true, "zero": false, "data": true, "offset": 1012288}]"#;
        assert_eq!(parse_map(json).unwrap(), [(0, 12288), (1012288, 512)]);
        assert_eq!(parse_map("[]").unwrap(), []);
        assert!(parse_map("qemu-img: oops").is_err());
    }

    /// A sparse source with data at a few places lands at the offset byte
    /// for byte, and the copy stays sparse.
    #[test]
    fn copies_data_and_keeps_holes() {
        let tmp = TempDir::new("starina-sparse-test").unwrap();
        let src_path = tmp.0.join("src.img");
        let src = File::create(&src_path).unwrap();
        src.set_len(256 << 20).unwrap();
        let pieces: [(u64, &[u8]); 3] = [
            (0, b"superblock"),
            (100 << 20, &[7u8; 200_000]),
            ((256 << 20) - 3, b"end"),
        ];
        for (at, data) in pieces {
            src.write_all_at(data, at).unwrap();
        }
        drop(src);
        let dst_path = tmp.0.join("dst.img");
        let dst = File::create(&dst_path).unwrap();
        let offset = 3 << 20;
        dst.set_len(offset + (256 << 20)).unwrap();
        let written = copy_into(&src_path, &dst, offset).unwrap();
        assert!(written < 4 << 20, "wrote {written} bytes");
        let image = std::fs::read(&dst_path).unwrap();
        for (at, data) in pieces {
            let at = (offset + at) as usize;
            assert_eq!(&image[at..at + data.len()], data);
        }
        assert!(image[..offset as usize].iter().all(|&b| b == 0));
        let nonzero = image.iter().filter(|&&b| b != 0).count();
        assert_eq!(nonzero, 10 + 200_000 + 3);
        let allocated = dst_path.metadata().unwrap().blocks() * 512;
        assert!(allocated < 8 << 20, "{allocated} bytes allocated");
    }
}
