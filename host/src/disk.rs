//! Disk images for the virtio-blk disk of `run`, `exec` and `up`: `--disk
//! PATH` or the user's default image (outside the checkout), created sparse
//! on first use; and temporary ones for tests.
//!
//! Layout (docs/CONTRACTS.md, "Disk layout"; [`crate::mbr`]): an MBR;
//! partition 1 the native ext2 file system of `--disk-size`; partition 2,
//! when the disk has a Linux root, the Debian image of
//! `linux-guest/build-rootfs.sh` copied in ([`crate::sparse`]). A disk made
//! before partitions (no MBR) is a whole-disk ext2 without a Linux root.

use std::ffi::OsString;
use std::fs::File;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;

use crate::boot::Prepared;
use crate::exec::TempDir;
use crate::host::Host;
use crate::host::Streams;
use crate::mbr;
use crate::mbr::Partition;
use crate::process::find_program;
use crate::process::run_lines;
use crate::process::Line;

/// The component that drives the disk.
pub const DRIVER: &str = "virtio_blk";
/// `--disk-size` when not given: 1 GiB.
pub const DEFAULT_SIZE: u64 = 1 << 30;
/// The smallest disk `--disk-size` takes (mke2fs needs some room).
pub const MIN_SIZE: u64 = 1 << 20;
/// The script that builds the Debian root image (prints its path).
pub const ROOTFS_SCRIPT: &str = "linux-guest/build-rootfs.sh";

/// Whether a disk created now gets a Linux root (`--linux-root`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinuxRoot {
    /// `auto` (the command line's default): Debian if the profile runs
    /// `linux`, else none.
    Auto,
    /// `none`: the native file system only (tests' disks).
    None,
    /// `debian`: the image `linux-guest/build-rootfs.sh` builds.
    Debian,
    /// A path (with a `/`): this raw ext4 image.
    Image(PathBuf),
}

impl LinuxRoot {
    pub fn parse(text: &str) -> Result<LinuxRoot, String> {
        match text {
            "auto" => Ok(LinuxRoot::Auto),
            "none" => Ok(LinuxRoot::None),
            "debian" => Ok(LinuxRoot::Debian),
            path if path.contains('/') => Ok(LinuxRoot::Image(path.into())),
            other => Err(format!(
                "--linux-root '{other}': expected auto, none, debian or a path to an ext4 image"
            )),
        }
    }

    /// `Auto` decided for a profile that does (or does not) run `linux`.
    pub fn resolve(&self, runs_linux: bool) -> LinuxRoot {
        match self {
            LinuxRoot::Auto if runs_linux => LinuxRoot::Debian,
            LinuxRoot::Auto => LinuxRoot::None,
            other => other.clone(),
        }
    }
}

/// Which disk a run gets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskOptions {
    /// `--disk PATH`; `None`: the user's default image.
    pub path: Option<PathBuf>,
    /// The size of the native file system of an image created now (an
    /// existing one keeps its own).
    pub size: u64,
    /// Whether an image created now gets a Linux root. Library callers
    /// (tests) default to none; the command line to `Auto`.
    pub linux_root: LinuxRoot,
}

impl Default for DiskOptions {
    fn default() -> DiskOptions {
        DiskOptions {
            path: None,
            size: DEFAULT_SIZE,
            linux_root: LinuxRoot::None,
        }
    }
}

impl DiskOptions {
    /// The image these options name.
    pub fn image(&self) -> PathBuf {
        self.path.clone().unwrap_or_else(default_path)
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
    host: &Host,
    prepared: &Prepared,
    opts: &DiskOptions,
    io: &mut Streams,
) -> Result<Option<PathBuf>, String> {
    if !prepared.has(DRIVER) {
        return Ok(None);
    }
    let root = opts.linux_root.resolve(prepared.has("linux"));
    let path = prepare(host, opts, &root, io)?;
    if prepared.has("linux") && whole_disk_ext2(&path) && first_notice(&path) {
        io.say(&no_root_note(&path));
    }
    Ok(Some(path))
}

/// Whether `path` is a disk made before partitions: no MBR, an ext2
/// superblock at byte 1024.
fn whole_disk_ext2(path: &Path) -> bool {
    let mut head = [0u8; 2048];
    let read = File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head));
    read.is_ok()
        && mbr::decode(&head[..512]).is_none()
        && head[1024 + 56..1024 + 58] == [0x53, 0xef]
}

/// Whether the note about an old disk has not been given for `path` yet
/// (a marker under `$XDG_STATE_HOME/starina/noted`, else
/// `~/.local/state/starina/noted`, says it was).
fn first_notice(path: &Path) -> bool {
    let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let state = match (env("XDG_STATE_HOME"), env("HOME")) {
        (Some(state), _) => PathBuf::from(state),
        (None, Some(home)) => Path::new(&home).join(".local/state"),
        (None, None) => return true,
    };
    let marker = state
        .join("starina/noted")
        .join(crate::instance::disk_key(path));
    if marker.exists() {
        return false;
    }
    let _ = marker
        .parent()
        .map(std::fs::create_dir_all)
        .and_then(|_| std::fs::write(&marker, b"no Linux root: noted\n").ok());
    true
}

/// What a disk without a Linux root means for Linux, and how to get one.
pub fn no_root_note(path: &Path) -> String {
    format!(
        "disk {} has no Linux root (a whole-disk file system, made before disks had \
         partitions): Linux runs from its initramfs only. For a Debian root, move the \
         image aside (scripts/starina cp copies files out of it) and boot again: a new \
         disk gets one (said once per disk)",
        path.display()
    )
}

/// The image `opts` names, created with `root` as its Linux root if it does
/// not exist.
pub fn prepare(
    host: &Host,
    opts: &DiskOptions,
    root: &LinuxRoot,
    io: &mut Streams,
) -> Result<PathBuf, String> {
    let path = opts.image();
    match path.metadata() {
        Ok(m) if m.is_file() => return Ok(path),
        Ok(_) => return Err(format!("disk {}: not a regular file", path.display())),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(format!("disk {}: {e}", path.display())),
    }
    let image = match root {
        LinuxRoot::Auto | LinuxRoot::None => None,
        LinuxRoot::Debian => Some(build_rootfs(host, io)?),
        LinuxRoot::Image(image) => Some(image.clone()),
    };
    let with_root = match &image {
        Some(image) => format!(", Linux root {}", image.display()),
        None => ", no Linux root".to_string(),
    };
    io.say(&format!(
        "creating disk {} ({} ext2{with_root})",
        path.display(),
        format_size(opts.size)
    ));
    create(&path, opts.size, image.as_deref())
        .map_err(|e| format!("cannot create disk {}: {e}", path.display()))?;
    Ok(path)
}

/// Runs `linux-guest/build-rootfs.sh` (its progress on our stderr) and
/// returns the image it printed.
pub fn build_rootfs(host: &Host, io: &mut Streams) -> Result<PathBuf, String> {
    let script = host.root.join(ROOTFS_SCRIPT);
    if !script.is_file() {
        return Err(format!(
            "{} is missing: cannot build the Debian root (give --linux-root none)",
            script.display()
        ));
    }
    io.say("the Debian root image: linux-guest/build-rootfs.sh (minutes the first time, then cached)");
    let mut printed = Vec::new();
    let code = run_lines(
        Command::new(&script).current_dir(&host.root),
        |line| match line {
            Line::Out(text) => printed.push(text),
            Line::Err(text) => io.err_bytes(format!("{text}\n").as_bytes()),
        },
    )
    .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if code != 0 {
        return Err(format!("{ROOTFS_SCRIPT} failed (status {code})"));
    }
    let image = printed
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| PathBuf::from(l.trim()))
        .ok_or(format!("{ROOTFS_SCRIPT} printed no image path"))?;
    if !image.is_file() {
        return Err(format!(
            "{ROOTFS_SCRIPT}: {} is not a file",
            image.display()
        ));
    }
    Ok(image)
}

/// Creates a sparse image at `path`: an MBR, partition 1 an ext2 file
/// system of `size` bytes, partition 2 (if given) a copy of the raw ext4
/// image `root`. On failure nothing is left behind.
pub fn create(path: &Path, size: u64, root: Option<&Path>) -> Result<(), String> {
    let mke2fs =
        mke2fs().ok_or("mke2fs not found (install e2fsprogs: scripts/setup does)".to_string())?;
    let parts = layout(size, root)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| e.to_string())?;
    let made = fill(&mut file, path, &mke2fs, &parts, root);
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// The partitions of a disk with `size` bytes of ext2 and `root`'s image.
fn layout(size: u64, root: Option<&Path>) -> Result<Vec<Partition>, String> {
    if !size.is_multiple_of(1024) {
        return Err(format!("{size} bytes is not a whole number of KiB"));
    }
    let native = Partition {
        kind: mbr::TYPE_NATIVE,
        start: mbr::ALIGN,
        size,
    };
    let mut parts = vec![native];
    if let Some(root) = root {
        let len = root
            .metadata()
            .map_err(|e| format!("Linux root image {}: {e}", root.display()))?
            .len();
        if len == 0 {
            return Err(format!("Linux root image {} is empty", root.display()));
        }
        parts.push(Partition {
            kind: mbr::TYPE_LINUX,
            start: mbr::align_up(native.end()),
            size: mbr::align_up(len),
        });
    }
    Ok(parts)
}

fn fill(
    file: &mut File,
    path: &Path,
    mke2fs: &Path,
    parts: &[Partition],
    root: Option<&Path>,
) -> Result<(), String> {
    let end = parts.iter().map(Partition::end).max().unwrap_or(0);
    file.set_len(end)
        .map_err(|e| format!("cannot size it: {e}"))?;
    run_mke2fs(mke2fs, path, &parts[0])?;
    // After mke2fs, which clears what it finds before its file system.
    mbr::write(file, parts)?;
    if let (Some(root), Some(part)) = (root, parts.get(1)) {
        crate::sparse::copy_into(root, file, part.start)?;
    }
    file.sync_all()
        .map_err(|e| format!("cannot write it out: {e}"))
}

fn run_mke2fs(mke2fs: &Path, path: &Path, part: &Partition) -> Result<(), String> {
    let out = Command::new(mke2fs)
        .args(["-q", "-t", "ext2", "-F", "-E"])
        .arg(format!("offset={}", part.start))
        .arg(path)
        .arg(format!("{}k", part.size / 1024))
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

/// Where the native file system starts in the image at `path`: partition
/// 1's offset, or 0 on a whole-disk file system (no MBR).
pub fn ext2_offset(path: &Path) -> Result<u64, String> {
    match mbr::read(path)? {
        None => Ok(0),
        Some(table) => match table.first() {
            Some(Some(p)) if p.kind == mbr::TYPE_NATIVE => Ok(p.start),
            _ => Err(format!(
                "disk {}: partition 1 is not Starina's file system (type 0xda)",
                path.display()
            )),
        },
    }
}

/// The native file system of `path` as e2fsprogs (`debugfs`, `e2fsck`)
/// opens it: `PATH?offset=N` on a partitioned disk.
pub fn ext2_target(path: &Path) -> Result<OsString, String> {
    let mut target = path.as_os_str().to_owned();
    match ext2_offset(path)? {
        0 => {}
        offset => target.push(format!("?offset={offset}")),
    }
    Ok(target)
}

/// Whether the image at `path` has a Linux root partition.
pub fn has_linux_root(path: &Path) -> Result<bool, String> {
    Ok(mbr::read(path)?.is_some_and(|t| {
        t.get(1)
            .copied()
            .flatten()
            .is_some_and(|p| p.kind == mbr::TYPE_LINUX)
    }))
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

    /// Options for a run on this disk, `size` bytes of ext2 and no Linux
    /// root when created.
    pub fn options(&self, size: u64) -> DiskOptions {
        DiskOptions {
            path: Some(self.path()),
            size,
            linux_root: LinuxRoot::None,
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

    fn streams<'a>(out: &'a mut Vec<u8>, err: &'a mut Vec<u8>) -> Streams<'a> {
        Streams { out, err }
    }

    fn fsck(target: &OsString) -> String {
        let e2fsck = mke2fs().unwrap().with_file_name("e2fsck");
        let out = Command::new(e2fsck)
            .arg("-fn")
            .arg(target)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck -fn {target:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn a_missing_image_is_created_sparse_and_partitioned_once() {
        if mke2fs().is_none() {
            eprintln!("skipped: no mke2fs");
            return;
        }
        let host = Host::from_env();
        let disk = TempDisk::new().unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = streams(&mut out, &mut err);
        let opts = disk.options(64 << 20);
        let path = prepare(&host, &opts, &LinuxRoot::None, &mut io).unwrap();
        assert_eq!(path, disk.path());
        // Used again as it is.
        let path = prepare(&host, &opts, &LinuxRoot::None, &mut io).unwrap();
        let said = String::from_utf8_lossy(&err).to_string();
        assert_eq!(said.matches("creating disk").count(), 1, "{said}");
        assert!(said.contains("(64M ext2, no Linux root)"), "{said}");
        let meta = path.metadata().unwrap();
        assert_eq!(meta.len(), (1 << 20) + (64 << 20));
        // Sparse: far fewer blocks than bytes.
        assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 16 << 20);
        let image = std::fs::read(&path).unwrap();
        assert_eq!(&image[510..512], &[0x55, 0xaa]);
        let sb = (1 << 20) + 1024;
        assert_eq!(&image[sb + 56..sb + 58], &[0x53, 0xef]);
        assert_eq!(ext2_offset(&path), Ok(1 << 20));
        assert!(!has_linux_root(&path).unwrap());
        assert!(!whole_disk_ext2(&path));
        fsck(&ext2_target(&path).unwrap());
        let dir = disk.dir.0.clone();
        drop(disk);
        assert!(!dir.exists());
    }

    /// A root image lands in partition 2, 1 MiB aligned, byte for byte,
    /// and both file systems check clean.
    #[test]
    fn a_linux_root_is_partition_2() {
        let Some(mke2fs) = mke2fs() else {
            eprintln!("skipped: no mke2fs");
            return;
        };
        let tmp = TempDir::new("starina-disk-root").unwrap();
        let tree = tmp.0.join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/debian_version"), "12.9\n").unwrap();
        let root = tmp.0.join("rootfs.ext4");
        let made = Command::new(&mke2fs)
            .args(["-q", "-t", "ext4", "-d"])
            .arg(&tree)
            .arg(&root)
            .arg("48M")
            .output()
            .unwrap();
        assert!(made.status.success(), "{made:?}");
        let path = tmp.0.join("disk.img");
        let size = (16 << 20) + (512 << 10);
        create(&path, size, Some(&root)).unwrap();
        let table = mbr::read(&path).unwrap().unwrap();
        let p2 = table[1].unwrap();
        assert_eq!((p2.kind, p2.start, p2.size), (0x83, 18 << 20, 48 << 20));
        assert_eq!(path.metadata().unwrap().len(), p2.end());
        assert!(has_linux_root(&path).unwrap());
        let image = std::fs::read(&path).unwrap();
        let copied = &image[p2.start as usize..p2.end() as usize];
        assert!(copied == std::fs::read(&root).unwrap().as_slice());
        fsck(&ext2_target(&path).unwrap());
        let mut p2_target = path.as_os_str().to_owned();
        p2_target.push(format!("?offset={}", p2.start));
        fsck(&p2_target);
        let debugfs = mke2fs.with_file_name("debugfs");
        let cat = Command::new(debugfs)
            .args(["-R", "cat /etc/debian_version"])
            .arg(&p2_target)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&cat.stdout), "12.9\n");
    }

    /// A disk made before partitions is used as it is, and the tool says
    /// what that means for Linux.
    #[test]
    fn a_whole_disk_image_is_the_old_layout() {
        let Some(mke2fs) = mke2fs() else {
            eprintln!("skipped: no mke2fs");
            return;
        };
        let tmp = TempDir::new("starina-disk-old").unwrap();
        let path = tmp.0.join("old.img");
        let made = Command::new(&mke2fs)
            .args(["-q", "-t", "ext2"])
            .arg(&path)
            .arg("8M")
            .output()
            .unwrap();
        assert!(made.status.success());
        assert_eq!(ext2_offset(&path), Ok(0));
        assert!(whole_disk_ext2(&path));
        assert_eq!(ext2_target(&path).unwrap(), path.as_os_str());
        assert!(!has_linux_root(&path).unwrap());
        assert!(no_root_note(&path).contains("has no Linux root"));
        let host = Host::from_env();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let opts = DiskOptions {
            path: Some(path.clone()),
            ..DiskOptions::default()
        };
        let got = prepare(
            &host,
            &opts,
            &LinuxRoot::Debian,
            &mut streams(&mut out, &mut err),
        );
        assert_eq!(got, Ok(path));
        assert!(err.is_empty());
    }

    #[test]
    fn linux_root_choices() {
        assert_eq!(LinuxRoot::parse("none"), Ok(LinuxRoot::None));
        assert_eq!(LinuxRoot::parse("debian"), Ok(LinuxRoot::Debian));
        assert_eq!(
            LinuxRoot::parse("./r.ext4"),
            Ok(LinuxRoot::Image("./r.ext4".into()))
        );
        assert!(LinuxRoot::parse("ubuntu").is_err());
        assert_eq!(LinuxRoot::Auto.resolve(true), LinuxRoot::Debian);
        assert_eq!(LinuxRoot::Auto.resolve(false), LinuxRoot::None);
        assert_eq!(LinuxRoot::None.resolve(true), LinuxRoot::None);
    }

    #[test]
    fn an_image_that_cannot_be_made_is_a_clear_error() {
        let host = Host::from_env();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = streams(&mut out, &mut err);
        let opts = DiskOptions {
            path: Some("/proc/starina-no/disk.img".into()),
            size: 1 << 20,
            linux_root: LinuxRoot::None,
        };
        let e = prepare(&host, &opts, &LinuxRoot::None, &mut io).unwrap_err();
        assert!(
            e.starts_with("cannot create disk /proc/starina-no/disk.img"),
            "{e}"
        );
        let opts = DiskOptions {
            path: Some("/".into()),
            ..opts
        };
        assert!(prepare(&host, &opts, &LinuxRoot::None, &mut io)
            .unwrap_err()
            .contains("not a regular file"));
        let missing = LinuxRoot::Image("/nonexistent/root.ext4".into());
        let opts = DiskOptions {
            path: Some(std::env::temp_dir().join("starina-no-root.img")),
            ..opts
        };
        let e = prepare(&host, &opts, &missing, &mut io).unwrap_err();
        assert!(e.contains("Linux root image /nonexistent/root.ext4"), "{e}");
        assert!(!opts.image().exists());
    }
}
