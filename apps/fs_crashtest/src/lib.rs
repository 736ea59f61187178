//! The power-cut test's native side (tests/tests/files.rs drives it).
//!
//! Each boot:
//! 1. if `/crash/manifest` exists (a killed earlier boot fsynced it),
//!    checks that every file it lists reads back exactly (contents are a
//!    function of the name), logs `fs_crashtest: verified N files` or what
//!    is wrong;
//! 2. writes a new round into `/crash/round-<R>/`: each file written and
//!    fsynced, then the manifest replaced (written to a new name, fsynced,
//!    renamed over the old one) and fsynced; logs `fs_crashtest: fsynced
//!    N files`;
//! 3. after a check, powers off with its result (0: everything read
//!    back); on a disk with nothing to check, keeps creating, writing,
//!    renaming and removing files, fsyncing some of them, so that QEMU is
//!    killed in the middle of metadata changes, some of them on their way
//!    to the disk.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::fs::ErrorKind;
use starina::fs::Files;
use starina::fs::OpenOptions;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

const MANIFEST: &str = "/crash/manifest";

/// The contents of the file at `path`: its name repeated, a length that
/// varies with it (up to about 40 KiB, so some files need indirect blocks).
fn contents(path: &str) -> Vec<u8> {
    let seed = path
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let len = 1 + (seed % 40_000) as usize;
    path.bytes().cycle().take(len).collect()
}

pub fn main(env: Env) {
    let code = match run(env.fs, env.config.files.clamp(1, 10_000) as usize) {
        Ok(Some(verified)) => {
            log::info!("verified {verified} files");
            0
        }
        Ok(None) => return,
        Err(why) => {
            log::error!("FAILED: {why}");
            1
        }
    };
    let err = env.shutdown.power_off(code);
    log::error!("power off failed: {err}");
}

/// `Some(n)`: checked `n` files of an earlier boot (then power off);
/// `None`: nothing to check (and never returns unless writing fails).
fn run(fs: starina::Channel, files: usize) -> Result<Option<usize>, String> {
    let mut fs = Files::new(fs).map_err(|e| format!("fs client: {e}"))?;
    let verified = verify(&mut fs)?;
    let round = write_round(&mut fs, files)?;
    log::info!("fsynced {files} files (round {round})");
    if verified.is_some() {
        fs.sync().map_err(|e| format!("sync: {e}"))?;
        return Ok(verified);
    }
    scribble(&mut fs)
}

/// Checks the files the manifest lists; `None` if there is no manifest.
fn verify(fs: &mut Files) -> Result<Option<usize>, String> {
    let manifest = match fs.read(MANIFEST) {
        Ok(m) => m,
        Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("read {MANIFEST}: {e}")),
    };
    let manifest =
        String::from_utf8(manifest).map_err(|_| "the manifest is not UTF-8".to_string())?;
    let mut count = 0;
    for path in manifest.lines() {
        let data = fs.read(path).map_err(|e| format!("{path}: {e}"))?;
        if data != contents(path) {
            return Err(format!(
                "{path}: {} bytes read back differ from the {} fsynced",
                data.len(),
                contents(path).len()
            ));
        }
        count += 1;
    }
    Ok(Some(count))
}

/// Writes and fsyncs a round of files and its manifest; returns its number.
fn write_round(fs: &mut Files, files: usize) -> Result<u64, String> {
    let _ = fs.create_dir("/crash", 0o755);
    let round = starina::timer::now_ns() ^ starina::timer::unix_seconds();
    let dir = format!("/crash/round-{round:x}");
    fs.create_dir(&dir, 0o755)
        .map_err(|e| format!("mkdir {dir}: {e}"))?;
    let mut listed = String::new();
    for i in 0..files {
        let path = format!("{dir}/file-{i}");
        fs.write(&path, &contents(&path))
            .map_err(|e| format!("{path}: {e}"))?;
        listed.push_str(&path);
        listed.push('\n');
    }
    let next = format!("{MANIFEST}.new");
    fs.write(&next, listed.as_bytes())
        .map_err(|e| format!("{next}: {e}"))?;
    fs.rename(&next, MANIFEST)
        .map_err(|e| format!("rename {next}: {e}"))?;
    fs.sync().map_err(|e| format!("sync: {e}"))?;
    Ok(round)
}

/// Metadata and data changes, some fsynced, until the machine dies.
fn scribble(fs: &mut Files) -> Result<Option<usize>, String> {
    let _ = fs.create_dir("/scratch", 0o755);
    for i in 0u64.. {
        let path = format!("/scratch/f{}", i % 64);
        let mut file = fs
            .open(&path, OpenOptions::write().create().truncate())
            .map_err(|e| format!("{path}: {e}"))?;
        file.write_all_at(0, &contents(&path))
            .map_err(|e| format!("{path}: {e}"))?;
        drop(file);
        if i % 3 == 0 {
            let _ = fs.rename(&path, &format!("/scratch/r{}", i % 17));
        }
        if i % 5 == 0 {
            let _ = fs.remove_file(&format!("/scratch/r{}", i % 13));
        }
    }
    Ok(None)
}
