//! The switch from the initramfs to a root disk, done by PID 1 at boot.
//!
//! When the kernel command line has `starina.root=<device>` (the linux
//! server adds `starina.root=/dev/vda` with the Debian root disk), the agent
//! waits for the device node (up to [`DEVICE_WAIT`]), mounts it (ext4, read
//! and write) at [`NEW_ROOT`], checks that it holds a root file system,
//! moves that mount onto `/` and chroots into it. The agent keeps running
//! from memory; the initramfs stays behind, unreachable. Any failure is one
//! `starina-agent: root: ...` console line, and the guest stays on the
//! initramfs.

use std::io;
use std::path::Path;
use std::time::Duration;
use std::time::Instant;

use crate::log;
use crate::sys;

/// Where the root disk is mounted before it becomes `/`.
pub const NEW_ROOT: &str = "/newroot";

/// How long to wait for the device node (virtio devices are probed before
/// init runs, but be lenient, as for the control device).
const DEVICE_WAIT: Duration = Duration::from_secs(5);

/// Where the agent puts a copy of itself on the new root (a tmpfs, so the
/// disk never holds the agent); the Debian image's `/init` links to it, so
/// `/init --fs-probe` and the other modes keep working.
pub const AGENT_COPY: &str = "/run/starina/agent";

/// The command line's `starina.root=<device>` (the first one, if several):
/// `Ok(None)` without one, an error for a value that is not a device path
/// (`/dev/` and then letters, digits, `-`, `_` and `/`).
pub fn device_from_cmdline(cmdline: &str) -> Result<Option<&str>, String> {
    let Some(value) = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("starina.root="))
    else {
        return Ok(None);
    };
    let name = value.strip_prefix("/dev/").unwrap_or("");
    let valid = !name.is_empty()
        && name
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b));
    if valid {
        Ok(Some(value))
    } else {
        Err(format!(
            "bad starina.root={value:?} (want a device path, e.g. /dev/vda)"
        ))
    }
}

/// Why `dir` is not a root file system to switch to: it needs
/// `/etc/passwd` (users, for Spawn's `user`) and `/usr/bin`.
pub fn check_root(dir: &Path) -> Result<(), String> {
    for (path, is_dir) in [("etc/passwd", false), ("usr/bin", true)] {
        let ok = std::fs::metadata(dir.join(path)).is_ok_and(|m| m.is_dir() == is_dir);
        if !ok {
            return Err(format!("it has no /{path}"));
        }
    }
    Ok(())
}

/// Switches root when the command line asks for it. Returns true when `/`
/// is the root disk now.
pub fn switch_if_asked() -> bool {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let device = match device_from_cmdline(&cmdline) {
        Ok(Some(device)) => device,
        Ok(None) => return false,
        Err(e) => {
            log(&format!("root: {e}; staying on the initramfs"));
            return false;
        }
    };
    match switch(device) {
        Ok(()) => {
            log(&format!("root: {device} (ext4) is /"));
            true
        }
        Err(e) => {
            log(&format!("root: {device}: {e}; staying on the initramfs"));
            false
        }
    }
}

fn switch(device: &str) -> Result<(), String> {
    wait_for_block_device(device)?;
    std::fs::create_dir_all(NEW_ROOT).map_err(|e| format!("cannot create {NEW_ROOT}: {e}"))?;
    // Read and write, set-user-ID programs allowed (su, ping): a real root.
    sys::mount_flags(device, NEW_ROOT, "ext4", 0, None)
        .map_err(|e| format!("cannot mount it (ext4) at {NEW_ROOT}: {e}"))?;
    let entered = check_root(Path::new(NEW_ROOT))
        .map_err(|e| format!("not a root file system: {e}"))
        .and_then(|()| enter(NEW_ROOT).map_err(|e| format!("cannot switch root: {e}")));
    if entered.is_err() {
        if let Err(e) = sys::umount(NEW_ROOT) {
            log(&format!("root: cannot unmount {NEW_ROOT}: {e}"));
        }
    }
    entered
}

/// Waits up to [`DEVICE_WAIT`] for `device` to be a block device.
fn wait_for_block_device(device: &str) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let start = Instant::now();
    loop {
        match std::fs::metadata(device) {
            Ok(m) if m.file_type().is_block_device() => return Ok(()),
            Ok(_) => return Err("not a block device".into()),
            Err(e) if start.elapsed() >= DEVICE_WAIT => {
                return Err(format!(
                    "no such device after {} s ({e}); is there a virtio-blk disk?",
                    DEVICE_WAIT.as_secs()
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// Makes the mount at `dir` the root: moved onto `/`, then chroot into it
/// (the initramfs is `rootfs`, which pivot_root cannot leave).
fn enter(dir: &str) -> io::Result<()> {
    std::env::set_current_dir(dir)?;
    sys::move_mount(".", "/")?;
    sys::chroot(".")?;
    std::env::set_current_dir("/")
}

/// Copies the running agent to [`AGENT_COPY`] (after the switch, with /run
/// mounted): the root disk does not hold it.
pub fn copy_agent() {
    use std::os::unix::fs::PermissionsExt;
    let dir = Path::new(AGENT_COPY).parent().unwrap_or(Path::new("/run"));
    let result = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::copy("/proc/self/exe", AGENT_COPY))
        .and_then(|_| std::fs::set_permissions(AGENT_COPY, std::fs::Permissions::from_mode(0o755)));
    if let Err(e) = result {
        log(&format!("root: cannot copy the agent to {AGENT_COPY}: {e}"));
    }
}

/// Where `starina` (native commands from Linux) is on every root: a
/// symlink to the agent. The initramfs has it from its build; on a root
/// disk the agent makes it at boot, unless something else is there.
pub const STARINA_LINK: &str = "/usr/local/bin/starina";

/// Links [`STARINA_LINK`] to [`AGENT_COPY`] on the new root (once: the
/// link stays on the disk, and the copy is made at every boot).
pub fn link_starina() {
    let link = Path::new(STARINA_LINK);
    match std::fs::read_link(link) {
        Ok(target) if target == Path::new(AGENT_COPY) => return,
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        // A file that is not a symlink: the root's own; leave it.
        Err(e) => {
            return log(&format!(
                "root: {STARINA_LINK} is not ours ({e}); left alone"
            ))
        }
    }
    let _ = std::fs::remove_file(link);
    let result = std::fs::create_dir_all(link.parent().unwrap_or(Path::new("/")))
        .and_then(|()| std::os::unix::fs::symlink(AGENT_COPY, link));
    if let Err(e) = result {
        log(&format!(
            "root: cannot link {STARINA_LINK} to the agent: {e}"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_on_the_command_line() {
        let line = "console=ttyS0 quiet starina.root=/dev/vda panic=1\n";
        assert_eq!(device_from_cmdline(line), Ok(Some("/dev/vda")));
        assert_eq!(device_from_cmdline("console=ttyS0 root=/dev/vda"), Ok(None));
        assert_eq!(device_from_cmdline(""), Ok(None));
        assert_eq!(
            device_from_cmdline("starina.root=/dev/vda starina.root=/dev/vdb"),
            Ok(Some("/dev/vda"))
        );
        assert_eq!(
            device_from_cmdline("starina.root=/dev/disk/by-label/root"),
            Ok(Some("/dev/disk/by-label/root"))
        );
    }

    #[test]
    fn bad_root_values_are_errors_naming_them() {
        for bad in [
            "starina.root=",
            "starina.root=vda",
            "starina.root=/dev/",
            "starina.root=/tmp/vda",
            "starina.root=/dev/../etc/passwd",
            "starina.root=/dev//vda",
            "starina.root=/dev/vda;rm",
        ] {
            let err = device_from_cmdline(bad).unwrap_err();
            let value = bad.strip_prefix("starina.root=").unwrap();
            assert!(err.contains(&format!("{value:?}")), "{bad}: {err}");
            assert!(err.contains("/dev/vda"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_root_needs_etc_passwd_and_usr_bin() {
        let dir = std::env::temp_dir().join(format!("starina-root-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
        assert_eq!(check_root(&dir), Err("it has no /etc/passwd".into()));
        std::fs::create_dir_all(dir.join("etc/passwd")).unwrap();
        assert_eq!(check_root(&dir), Err("it has no /etc/passwd".into()));
        std::fs::remove_dir(dir.join("etc/passwd")).unwrap();
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        assert_eq!(check_root(&dir), Ok(()));
        std::fs::remove_dir_all(dir.join("usr")).unwrap();
        assert_eq!(check_root(&dir), Err("it has no /usr/bin".into()));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
