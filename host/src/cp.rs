//! `starina cp SRC DST`: files and directory trees in and out of the
//! native file system's disk image while Starina is down, through
//! e2fsprogs' `debugfs` (the image's partition 1 is ext2, see servers/fs
//! and [`crate::disk`]). One side is
//! `starina:/PATH`, the other a host path. Like `cp -r`: a directory is
//! copied whole, and a copy into an existing directory lands inside it
//! under its own name. Modes come from the host file (`debugfs write`
//! takes them), owners are root's; symlinks are copied as symlinks.
//!
//! An image in use by a running QEMU is refused (QEMU holds a write lock
//! on it, which `qemu-img info` reports): copying into a running instance
//! is not supported yet.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

/// The prefix of a path inside Starina.
pub const PREFIX: &str = "starina:";

/// Which way a copy goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Copy {
    /// Host `from` into Starina's `to`.
    In { from: PathBuf, to: String },
    /// Starina's `from` out to host `to`.
    Out { from: String, to: PathBuf },
}

impl Copy {
    /// From the command line's SRC and DST: exactly one is `starina:/...`.
    pub fn parse(src: &str, dst: &str) -> Result<Copy, String> {
        let inside = |s: &str| s.strip_prefix(PREFIX).map(str::to_string);
        let copy = match (inside(src), inside(dst)) {
            (None, Some(to)) => Copy::In {
                from: PathBuf::from(src),
                to,
            },
            (Some(from), None) => Copy::Out {
                from,
                to: PathBuf::from(dst),
            },
            _ => return Err(format!("cp: exactly one of SRC and DST is {PREFIX}/PATH")),
        };
        let path = match &copy {
            Copy::In { to, .. } => to,
            Copy::Out { from, .. } => from,
        };
        if !path.starts_with('/') {
            return Err(format!(
                "cp: '{PREFIX}{path}': give an absolute path, {PREFIX}/PATH"
            ));
        }
        if let Some(bad) = path.split('/').find(|s| *s == "." || *s == "..") {
            return Err(format!("cp: '{PREFIX}{path}': no '{bad}' in Starina paths"));
        }
        Ok(copy)
    }
}

/// A path as a `debugfs` argument: double-quoted. Names `debugfs` cannot
/// take (a quote, a newline) are refused.
fn quote(path: &str) -> Result<String, String> {
    if path.contains(['"', '\n', '\r']) {
        return Err(format!(
            "cp: '{path}': names with quotes or newlines cannot be copied"
        ));
    }
    Ok(format!("\"{path}\""))
}

/// Runs `debugfs` with `commands` on `disk`; its error lines are an error.
fn debugfs(disk: &Path, write: bool, commands: &str) -> Result<String, String> {
    let mut cmd = Command::new("debugfs");
    if write {
        cmd.arg("-w");
    }
    let out = cmd
        .arg("-f")
        .arg("-")
        .arg(crate::disk::ext2_target(disk).map_err(|e| format!("cp: {e}"))?)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .map(|mut s| s.write_all(commands.as_bytes()));
            child.wait_with_output()
        })
        .map_err(|e| format!("cp: cannot run debugfs (e2fsprogs; make setup installs it): {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    // debugfs echoes each command to stdout and prints its banner and its
    // complaints on stderr; it exits 0 either way.
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    if !out.status.success() || !errors.is_empty() {
        return Err(format!(
            "cp: debugfs on {}: {}",
            disk.display(),
            errors.join("; ")
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What `path` is inside the image: `Some(true)` a directory, `Some(false)`
/// something else, `None` nothing.
fn kind_in_image(disk: &Path, path: &str) -> Result<Option<bool>, String> {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("stat {}", quote(path)?))
        .arg(crate::disk::ext2_target(disk).map_err(|e| format!("cp: {e}"))?)
        .output()
        .map_err(|e| format!("cp: cannot run debugfs: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.contains("Type:") {
        return Ok(None);
    }
    Ok(Some(stdout.contains("Type: directory")))
}

/// Refuses an image a running QEMU has open for writing.
fn check_not_in_use(disk: &Path) -> Result<(), String> {
    let out = Command::new("qemu-img")
        .args(["info", "-f", "raw"])
        .arg(disk)
        .output()
        .map_err(|e| {
            format!("cp: cannot run qemu-img (qemu-utils; make setup installs it): {e}")
        })?;
    if out.status.success() {
        return Ok(());
    }
    let why = String::from_utf8_lossy(&out.stderr);
    if why.contains("lock") {
        return Err(format!(
            "cp: {} is in use by a running Starina; stop it first (scripts/starina down for an instance; copying into a running instance is not supported yet)",
            disk.display()
        ));
    }
    Err(format!("cp: {}: {}", disk.display(), why.trim()))
}

/// Copies as `copy` says, on the disk image `disk`.
pub fn copy(disk: &Path, copy: &Copy) -> Result<(), String> {
    if !disk.exists() {
        return Err(format!("cp: no disk image at {}", disk.display()));
    }
    check_not_in_use(disk)?;
    match copy {
        Copy::In { from, to } => copy_in(disk, from, to),
        Copy::Out { from, to } => copy_out(disk, from, to),
    }
}

fn file_name(path: &Path) -> Result<String, String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| format!("cp: '{}' has no usable name", path.display()))
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn copy_in(disk: &Path, from: &Path, to: &str) -> Result<(), String> {
    let meta =
        std::fs::symlink_metadata(from).map_err(|e| format!("cp: {}: {e}", from.display()))?;
    let target = match kind_in_image(disk, to)? {
        Some(true) => join(to, &file_name(from)?),
        Some(false) if meta.is_dir() => {
            return Err(format!("cp: {PREFIX}{to} exists and is not a directory"))
        }
        Some(false) => {
            // Replacing a file: remove it first (debugfs write will not).
            debugfs(disk, true, &format!("rm {}\n", quote(to)?))?;
            to.to_string()
        }
        None => to.to_string(),
    };
    let parent = match target.rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((dir, _)) => dir.to_string(),
    };
    if kind_in_image(disk, &parent)? != Some(true) {
        return Err(format!(
            "cp: {PREFIX}{parent} is not a directory in {}",
            disk.display()
        ));
    }
    let mut script = String::new();
    add_tree(&mut script, from, &target)?;
    debugfs(disk, true, &script).map(drop)
}

/// The `debugfs` commands that create `host` (a file, symlink or a whole
/// directory) at `target` in the image.
fn add_tree(script: &mut String, host: &Path, target: &str) -> Result<(), String> {
    let meta =
        std::fs::symlink_metadata(host).map_err(|e| format!("cp: {}: {e}", host.display()))?;
    let (dir, name) = target.rsplit_once('/').unwrap_or(("", target));
    let dir = if dir.is_empty() { "/" } else { dir };
    script.push_str(&format!("cd {}\n", quote(dir)?));
    if meta.file_type().is_symlink() {
        let link = std::fs::read_link(host).map_err(|e| format!("cp: {}: {e}", host.display()))?;
        let link = link
            .to_str()
            .ok_or_else(|| format!("cp: {}: target not UTF-8", host.display()))?;
        script.push_str(&format!("symlink {} {}\n", quote(name)?, quote(link)?));
    } else if meta.is_dir() {
        script.push_str(&format!("mkdir {}\n", quote(name)?));
        let mut entries: Vec<_> = std::fs::read_dir(host)
            .map_err(|e| format!("cp: {}: {e}", host.display()))?
            .collect::<Result<_, _>>()
            .map_err(|e| format!("cp: {}: {e}", host.display()))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            add_tree(
                script,
                &entry.path(),
                &join(target, &file_name(&entry.path())?),
            )?;
        }
    } else if meta.is_file() {
        let host = host
            .to_str()
            .ok_or_else(|| format!("cp: {}: path not UTF-8", host.display()))?;
        script.push_str(&format!("write {} {}\n", quote(host)?, quote(name)?));
    } else {
        return Err(format!(
            "cp: {}: only files, directories and symlinks are copied",
            host.display()
        ));
    }
    Ok(())
}

fn copy_out(disk: &Path, from: &str, to: &Path) -> Result<(), String> {
    let is_dir = kind_in_image(disk, from)?
        .ok_or_else(|| format!("cp: {PREFIX}{from}: no such file or directory"))?;
    let to_str = |p: &Path| {
        p.to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("cp: {}: path not UTF-8", p.display()))
    };
    let name = from
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .unwrap_or("root");
    if is_dir {
        if to.is_dir() {
            // Into an existing directory, under its own name.
            return debugfs(
                disk,
                false,
                &format!("rdump {} {}\n", quote(from)?, quote(&to_str(to)?)?),
            )
            .map(drop);
        }
        // rdump makes the directory inside another one under its own
        // name: dump into a scratch directory beside `to`, then rename.
        let parent = to
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let scratch = parent.join(format!(".starina-cp-{}", std::process::id()));
        std::fs::create_dir(&scratch).map_err(|e| format!("cp: {}: {e}", scratch.display()))?;
        let dumped = debugfs(
            disk,
            false,
            &format!("rdump {} {}\n", quote(from)?, quote(&to_str(&scratch)?)?),
        )
        .and_then(|_| {
            std::fs::rename(scratch.join(name), to)
                .map_err(|e| format!("cp: {}: {e}", to.display()))
        });
        let _ = std::fs::remove_dir_all(&scratch);
        return dumped;
    }
    let dest = if to.is_dir() {
        to.join(from.rsplit('/').next().unwrap_or(from))
    } else {
        to.to_path_buf()
    };
    debugfs(
        disk,
        false,
        &format!("dump -p {} {}\n", quote(from)?, quote(&to_str(&dest)?)?),
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_side_is_inside() {
        assert_eq!(
            Copy::parse("a.txt", "starina:/www/a.txt"),
            Ok(Copy::In {
                from: "a.txt".into(),
                to: "/www/a.txt".into()
            })
        );
        assert_eq!(
            Copy::parse("starina:/www", "out"),
            Ok(Copy::Out {
                from: "/www".into(),
                to: "out".into()
            })
        );
        for (src, dst) in [
            ("a", "b"),
            ("starina:/a", "starina:/b"),
            ("a", "starina:www"),
            ("a", "starina:/a/../b"),
        ] {
            assert!(Copy::parse(src, dst).is_err(), "{src} {dst}");
        }
    }

    #[test]
    fn quotes_what_debugfs_can_take() {
        assert_eq!(quote("/a b/c").unwrap(), "\"/a b/c\"");
        assert!(quote("/a\"b").is_err());
        assert!(quote("/a\nb").is_err());
    }

    /// A fresh disk (16 MiB of ext2 in partition 1) in a new temporary
    /// directory.
    fn image(name: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!("starina-cp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("disk.img");
        crate::disk::create(&disk, 16 << 20, None).expect("mke2fs (e2fsprogs) runs");
        (dir, disk)
    }

    fn fsck_clean(disk: &Path) {
        let out = Command::new("e2fsck")
            .arg("-fn")
            .arg(crate::disk::ext2_target(disk).unwrap())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "e2fsck: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn trees_go_in_and_come_out_the_same() {
        let (dir, disk) = image("tree");
        let tree = dir.join("www");
        std::fs::create_dir_all(tree.join("sub dir")).unwrap();
        std::fs::write(tree.join("index.html"), b"<h1>hi</h1>").unwrap();
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(tree.join("sub dir/big.bin"), &big).unwrap();
        std::os::unix::fs::symlink("index.html", tree.join("link")).unwrap();
        let copy_in = Copy::parse(tree.to_str().unwrap(), "starina:/").unwrap();
        copy(&disk, &copy_in).unwrap();
        // Into an existing directory: under its own name; over a file: replaced.
        let note = dir.join("note.txt");
        std::fs::write(&note, b"v1").unwrap();
        copy(
            &disk,
            &Copy::parse(note.to_str().unwrap(), "starina:/www/note.txt").unwrap(),
        )
        .unwrap();
        std::fs::write(&note, b"v2, longer").unwrap();
        copy(
            &disk,
            &Copy::parse(note.to_str().unwrap(), "starina:/www/note.txt").unwrap(),
        )
        .unwrap();
        fsck_clean(&disk);

        let out = dir.join("out");
        copy(
            &disk,
            &Copy::parse("starina:/www", out.to_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(
            std::fs::read(out.join("index.html")).unwrap(),
            b"<h1>hi</h1>"
        );
        assert_eq!(std::fs::read(out.join("sub dir/big.bin")).unwrap(), big);
        assert_eq!(
            std::fs::read_link(out.join("link")).unwrap(),
            Path::new("index.html")
        );
        assert_eq!(std::fs::read(out.join("note.txt")).unwrap(), b"v2, longer");
        let one = dir.join("one.html");
        copy(
            &disk,
            &Copy::parse("starina:/www/index.html", one.to_str().unwrap()).unwrap(),
        )
        .unwrap();
        assert_eq!(std::fs::read(&one).unwrap(), b"<h1>hi</h1>");

        let missing = copy(
            &disk,
            &Copy::parse("starina:/nope", out.to_str().unwrap()).unwrap(),
        );
        assert!(
            missing.unwrap_err().contains("no such file"),
            "a missing source is named"
        );
        let no_parent = copy(
            &disk,
            &Copy::parse(note.to_str().unwrap(), "starina:/no/such/dir").unwrap(),
        );
        assert!(no_parent.unwrap_err().contains("not a directory"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
