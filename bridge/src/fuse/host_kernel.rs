//! The FUSE server under a real Linux kernel: the in-memory backend
//! mounted through the host's /dev/fuse, used with `std::fs`. Checks the
//! message layouts against the kernel that parses them (the guest's
//! virtiofs speaks the same FUSE). Needs root, /dev/fuse and `mount`:
//! `cargo test -p starina-bridge -- --ignored`.

use std::fs;
use std::fs::File;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::thread::JoinHandle;

use super::memfs::MemFs;
use super::server::FuseServer;

/// A mount served by a thread; unmounted when dropped.
struct Mount {
    dir: PathBuf,
    server: Option<JoinHandle<u64>>,
}

impl Mount {
    fn new() -> Mount {
        let dir = std::env::temp_dir().join(format!("starina-fuse-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fuse = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/fuse")
            .expect("/dev/fuse (this test needs root)");
        // `mount` gets the device as its stdin: fd=0 is that open file.
        let options = "fd=0,rootmode=40000,user_id=0,group_id=0,default_permissions,allow_other";
        let status = Command::new("mount")
            .args(["-t", "fuse", "-o", options, "starina-test"])
            .arg(&dir)
            .stdin(Stdio::from(fuse.try_clone().unwrap()))
            .status()
            .unwrap();
        assert!(status.success(), "mount failed");
        let server = std::thread::spawn(move || serve(fuse));
        Mount {
            dir,
            server: Some(server),
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        if let Some(server) = self.server.take() {
            let _ = server.join();
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// Answers the kernel until the mount goes away; returns how many
/// requests failed with an errno other than ENOENT/ENOSYS.
fn serve(mut fuse: File) -> u64 {
    let mut server = FuseServer::new(MemFs::new());
    let mut buf = vec![0u8; 1 << 21];
    let mut odd_errors = 0;
    while let Ok(n) = fuse.read(&mut buf) {
        let reply = server.handle(&buf[..n], 1 << 20);
        if reply.is_empty() {
            continue;
        }
        let errno = -i32::from_le_bytes(reply[4..8].try_into().unwrap());
        if errno != 0 && errno != 2 && errno != 38 {
            odd_errors += 1;
        }
        fuse.write_all(&reply).expect("the kernel refused a reply");
    }
    odd_errors
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().mode()
}

#[test]
#[ignore = "mounts through /dev/fuse: needs root"]
fn files_through_the_kernel() {
    let m = Mount::new();
    let d = m.dir.join("d");
    fs::create_dir(&d).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o750)).unwrap();
    assert_eq!(mode(&d), 0o040750);
    let f = d.join("f");
    fs::write(&f, b"hello").unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"hello");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(mode(&f), 0o100600);
    std::os::unix::fs::symlink("f", d.join("s")).unwrap();
    assert_eq!(fs::read_link(d.join("s")).unwrap(), Path::new("f"));
    assert_eq!(fs::read(d.join("s")).unwrap(), b"hello");
    fs::hard_link(&f, d.join("h")).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().nlink(), 2);
    fs::write(d.join("n"), b"new").unwrap();
    fs::rename(d.join("n"), &f).unwrap();
    assert_eq!(fs::read(&f).unwrap(), b"new");
    assert_eq!(fs::read(d.join("h")).unwrap(), b"hello");
    fs::remove_file(d.join("h")).unwrap();
    fs::remove_file(d.join("s")).unwrap();
    // 1 MiB in odd-sized writes, read back whole.
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    let mut out = File::create(d.join("big")).unwrap();
    for chunk in big.chunks(10_000) {
        out.write_all(chunk).unwrap();
    }
    drop(out);
    assert_eq!(fs::read(d.join("big")).unwrap(), big);
    let file = fs::OpenOptions::new()
        .write(true)
        .open(d.join("big"))
        .unwrap();
    file.set_len(10).unwrap();
    drop(file);
    assert_eq!(fs::metadata(d.join("big")).unwrap().len(), 10);
    let mut names: Vec<_> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["big", "f"]);
    assert!(fs::remove_dir(&d).is_err(), "not empty");
    fs::remove_file(d.join("big")).unwrap();
    fs::remove_file(&f).unwrap();
    fs::remove_dir(&d).unwrap();
    let mut m = m;
    let _ = Command::new("umount").arg(&m.dir).status();
    let odd_errors = m.server.take().unwrap().join().unwrap();
    assert_eq!(odd_errors, 1, "only the rmdir of a full directory fails");
}
