//! Disk images for the virtio-blk disk of `run` and `exec`: `--disk PATH`
//! or the user's default image (outside the checkout), created sparse and
//! formatted ext2 on first use; and temporary ones for tests.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;

use crate::boot::Prepared;
use crate::exec::TempDir;
use crate::host::Streams;
use crate::process::find_program;

/// The component that drives the disk.
pub const DRIVER: &str = "virtio_blk";
/// `--disk-size` when not given: 1 GiB.
pub const DEFAULT_SIZE: u64 = 1 << 30;
/// The smallest disk `--disk-size` takes (mke2fs needs some room).
pub const MIN_SIZE: u64 = 1 << 20;

/// Which disk a run gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// `--disk PATH`; `None`: the user's default image.
    pub path: Option<PathBuf>,
    /// The size of an image created now (an existing one keeps its own).
    pub size: u64,
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            path: None,
            size: DEFAULT_SIZE,
        }
    }
}

/// The user's default image: `$XDG_DATA_HOME/starina/disk.img`, else
/// `~/.local/share/starina/disk.img`.
pub fn default_path() -> PathBuf {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let data = match (env("XDG_DATA_HOME"), env("HOME")) {
        (Some(xdg), _) => PathBuf::from(xdg),
        (None, Some(home)) => Path::new(&home).join(".local/share"),
        (None, None) => PathBuf::from("/root/.local/share"),
    };
    data.join("starina/disk.img")
}

/// A size such as `256M`, `2G`, `512K` or a byte count, a whole number of
/// 512-byte sectors, at least [`MIN_SIZE`].
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |why: &str| format!("--disk-size '{text}': {why}");
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, ""),
    };
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" => 0,
        "K" | "KIB" => 10,
        "M" | "MIB" => 20,
        "G" | "GIB" => 30,
        "T" | "TIB" => 40,
        _ => return Err(bad("expected a number with K, M, G or T (e.g. 256M, 2G)")),
    };
    let number: u64 = digits
        .parse()
        .map_err(|_| bad("expected a number with K, M, G or T (e.g. 256M, 2G)"))?;
    let bytes = number
        .checked_mul(1 << shift)
        .ok_or_else(|| bad("too large"))?;
    if bytes < MIN_SIZE {
        return Err(bad("too small (at least 1M)"));
    }
    if !bytes.is_multiple_of(512) {
        return Err(bad("not a whole number of 512-byte sectors"));
    }
    Ok(bytes)
}

/// `1G`, `256M`, `1536K`: the largest unit that divides `bytes`.
pub fn format_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    format!("{bytes}")
}

/// The disk of a run of `prepared`'s profile: `None` unless the profile
/// starts the disk driver (so that other profiles never create an image).
pub fn for_profile(
    prepared: &Prepared,
    opts: &DiskOptions,
    io: &mut Streams,
) -> Result<Option<PathBuf>, String> {
    if !prepared.has(DRIVER) {
        return Ok(None);
    }
    prepare(opts, io).map(Some)
}

/// The image `opts` names, created (sparse, ext2) if it does not exist.
pub fn prepare(opts: &DiskOptions, io: &mut Streams) -> Result<PathBuf, String> {
    let path = opts.path.clone().unwrap_or_else(default_path);
    match path.metadata() {
        Ok(m) if m.is_file() => return Ok(path),
        Ok(_) => return Err(format!("disk {}: not a regular file", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("disk {}: {e}", path.display())),
    }
    io.say(&format!(
        "creating disk {} ({}, ext2)",
        path.display(),
        format_size(opts.size)
    ));
    create(&path, opts.size).map_err(|e| format!("cannot create disk {}: {e}", path.display()))?;
    Ok(path)
}

/// Creates a sparse image of `size` bytes at `path` and formats it ext2;
/// on failure nothing is left behind.
pub fn create(path: &Path, size: u64) -> Result<(), String> {
    let mke2fs =
        mke2fs().ok_or("mke2fs not found (install e2fsprogs: scripts/setup does)".to_string())?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let formatted = file
        .set_len(size)
        .map_err(|e| format!("cannot size it: {e}"))
        .and_then(|()| run_mke2fs(&mke2fs, path));
    if formatted.is_err() {
        let _ = std::fs::remove_file(path);
    }
    formatted
}

fn run_mke2fs(mke2fs: &Path, path: &Path) -> Result<(), String> {
    let out = Command::new(mke2fs)
        .args(["-q", "-t", "ext2", "-F"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", mke2fs.display()))?;
    if out.status.success() {
        return Ok(());
    }
    Err(format!(
        "mke2fs failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    ))
}

/// `mke2fs` from PATH, or from the sbin directories a normal user's PATH
/// often lacks.
fn mke2fs() -> Option<PathBuf> {
    find_program("mke2fs").or_else(|| {
        ["/usr/sbin/mke2fs", "/sbin/mke2fs"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
    })
}

/// A disk image of its own for one run (a test), removed on drop. The
/// image is made when a run first needs it ([`prepare`]).
pub struct TempDisk {
    dir: TempDir,
}

impl TempDisk {
    pub fn new() -> std::io::Result<TempDisk> {
        Ok(TempDisk {
            dir: TempDir::new("starina-disk")?,
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.0.join("disk.img")
    }

    /// Options for a run on this disk, `size` bytes when created.
    pub fn options(&self, size: u64) -> DiskOptions {
        DiskOptions {
            path: Some(self.path()),
            size,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M"), Ok(256 << 20));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert_eq!(parse_size("1536K"), Ok(1536 << 10));
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        for bad in [
            "",
            "G",
            "1X",
            "-1G",
            "1.5G",
            "100K",
            "1048577",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(format_size(1 << 30), "1G");
        assert_eq!(format_size(1536 << 10), "1536K");
        assert_eq!(format_size(512), "512");
    }

    #[test]
    fn a_missing_image_is_created_sparse_and_ext2_once() {
        if mke2fs().is_none() {
            eprintln!("skipped: no mke2fs");
            return;
        }
        let disk = TempDisk::new().unwrap();
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        let opts = disk.options(64 << 20);
        let path = prepare(&opts, &mut io).unwrap();
        assert_eq!(path, disk.path());
        // Used again as it is.
        let path = prepare(&opts, &mut io).unwrap();
        let said = String::from_utf8_lossy(&err).to_string();
        assert_eq!(said.matches("creating disk").count(), 1, "{said}");
        assert!(said.contains("(64M, ext2)"), "{said}");
        let meta = path.metadata().unwrap();
        assert_eq!(meta.len(), 64 << 20);
        // Sparse: far fewer blocks than bytes.
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 16 << 20);
        let image = std::fs::read(&path).unwrap();
        assert_eq!(&image[1024 + 56..1024 + 58], &[0x53, 0xef]);
        let dir = disk.dir.0.clone();
        drop(disk);
        assert!(!dir.exists());
    }

    #[test]
    fn an_image_that_cannot_be_made_is_a_clear_error() {
        let mut out = Vec::new();
        let mut err = Vec::new();
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        let opts = DiskOptions {
            path: Some("/proc/starina-no/disk.img".into()),
            size: 1 << 20,
        };
        let e = prepare(&opts, &mut io).unwrap_err();
        assert!(
            e.starts_with("cannot create disk /proc/starina-no/disk.img"),
            "{e}"
        );
        let opts = DiskOptions {
            path: Some("/".into()),
            size: 1 << 20,
        };
        assert!(prepare(&opts, &mut io)
            .unwrap_err()
            .contains("not a regular file"));
    }
}
