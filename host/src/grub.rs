//! A GRUB BIOS boot CD for machines without QEMU's `-kernel` (Bochs): the
//! kernel as a Multiboot2 image, the boot file system as its first module,
//! made with `grub-mkrescue` and cached by content in
//! `<cache>/grub-iso/<key>/starina.iso`.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use crate::bootfs::content_key;
use crate::exec::TempDir;
use crate::host::Host;
use crate::process::find_program;

/// Where the files sit on the CD.
const KERNEL: &str = "/boot/starina-kernel";
const BOOTFS: &str = "/boot/bootfs.img";

/// What goes on the CD.
pub struct BootCd<'a> {
    pub kernel: &'a Path,
    pub bootfs: Option<&'a Path>,
    /// The kernel command line, as QEMU's `-append` gets it.
    pub cmdline: &'a str,
}

/// `grub.cfg`: boot the one entry at once.
pub fn grub_cfg(cmdline: &str, bootfs: bool) -> String {
    let module = if bootfs {
        format!("    module2 {BOOTFS} bootfs\n")
    } else {
        String::new()
    };
    format!(
        "set timeout=0\nset default=0\nmenuentry \"Starina\" {{\n    multiboot2 {KERNEL} {cmdline}\n{module}    boot\n}}\n"
    )
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))
}

impl BootCd<'_> {
    /// The CD's path: built now unless the cache has one with the same
    /// kernel, boot file system and `grub.cfg`.
    pub fn build(&self, host: &Host, report: &mut dyn FnMut(&str)) -> Result<PathBuf, String> {
        let cfg = grub_cfg(self.cmdline, self.bootfs.is_some());
        let kernel = read(self.kernel)?;
        let bootfs = match self.bootfs {
            Some(path) => read(path)?,
            None => Vec::new(),
        };
        let key = content_key(&[
            ("grub-iso v1", &[]),
            ("kernel", &kernel),
            ("bootfs", &bootfs),
            ("grub.cfg", cfg.as_bytes()),
        ]);
        let dir = host.cache.join("grub-iso").join(key);
        let iso = dir.join("starina.iso");
        if iso.is_file() {
            return Ok(iso);
        }
        let tree = TempDir::new("starina-iso")
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let write = |name: &str, data: &[u8]| {
            let path = tree.0.join(name.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().expect("a file in a folder"))
                .and_then(|_| std::fs::write(&path, data))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))
        };
        write(KERNEL, &kernel)?;
        if self.bootfs.is_some() {
            write(BOOTFS, &bootfs)?;
        }
        write("/boot/grub/grub.cfg", cfg.as_bytes())?;
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
        // A name of our own, renamed into place: runs at once each make theirs.
        let tmp = dir.join(format!("starina.iso.tmp.{}", std::process::id()));
        mkrescue(&tree.0, &tmp)?;
        std::fs::rename(&tmp, &iso).map_err(|e| format!("cannot write {}: {e}", iso.display()))?;
        report(&format!(
            "starina: made the GRUB boot CD: {}",
            iso.display()
        ));
        Ok(iso)
    }
}

/// The arguments of `grub-mkrescue`: a BIOS CD (only the modules the
/// Multiboot2 entry needs built in; the rest load from the CD).
pub fn mkrescue_args(tree: &Path, out: &Path) -> Vec<String> {
    [
        "--compress=no",
        "--install-modules=multiboot2 normal iso9660 biosdisk",
        "--locales=",
        "--fonts=",
        "--themes=",
        "-o",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        out.to_string_lossy().into_owned(),
        tree.to_string_lossy().into_owned(),
    ])
    .collect()
}

fn mkrescue(tree: &Path, out: &Path) -> Result<(), String> {
    let program = find_program("grub-mkrescue").ok_or(
        "grub-mkrescue not found: run scripts/setup (packages grub-common, grub-pc-bin, xorriso)",
    )?;
    let output = Command::new(program)
        .args(mkrescue_args(tree, out))
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    if output.status.success() && out.is_file() {
        return Ok(());
    }
    let _ = std::fs::remove_file(out);
    Err(format!(
        "grub-mkrescue failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim_end()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cfg_boots_the_kernel_at_once() {
        let cfg = grub_cfg("profile=bench", false);
        assert_eq!(
            cfg,
            "set timeout=0\nset default=0\nmenuentry \"Starina\" {\n    multiboot2 /boot/starina-kernel profile=bench\n    boot\n}\n"
        );
        let cfg = grub_cfg("profile=linux", true);
        assert!(cfg.contains("    multiboot2 /boot/starina-kernel profile=linux\n    module2 /boot/bootfs.img bootfs\n    boot\n"));
    }

    #[test]
    fn mkrescue_makes_a_bios_cd() {
        let a = mkrescue_args(Path::new("/t"), Path::new("/o.iso"));
        assert_eq!(a[a.len() - 3..], ["-o", "/o.iso", "/t"]);
        assert!(a
            .iter()
            .any(|x| x.starts_with("--install-modules=") && x.contains("multiboot2")));
    }
}
