//! `starina-guest-agent --fs-probe DIR`: checks the POSIX corners of the
//! file system at DIR (made if missing) that busybox cannot exercise, for
//! /mnt/starina (virtio-fs over the native fs server): shared writable
//! mmap both ways, fcntl and flock locks, O_APPEND, O_EXCL, fallocate,
//! copy_file_range, inode numbers across rename, chmod and a dropped
//! dentry cache, owners and modes, truncate.
//!
//! Each check works in its own directory `DIR/<check>` (removed after) and
//! prints one line,
//! `probe <name> ok` (with a note in parentheses where something is
//! refused in an accepted way) or `probe <name> FAILED: <why>`, then
//! `probe: N passed, M failed`; the exit status is 1 if any failed.
//!
//! The calls std does not wrap (mmap, fcntl locks, flock, fallocate,
//! copy_file_range, fork) are here, each `unsafe` with its reason: the
//! probe is a test program, and keeping them next to their one use says
//! what each check does.

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::io::Read;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;

/// A check's verdict: `Ok(note)` passes (the note, if any, is printed).
type Verdict = Result<Option<String>, String>;
/// One check, given its own empty directory.
type Check = fn(&Path) -> Verdict;

const PAGE: usize = 4096;

/// Runs every check in `dir`; returns the process exit status.
pub fn run(dir: &str) -> i32 {
    let dir = PathBuf::from(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        println!("probe: cannot make {}: {e}", dir.display());
        return 1;
    }
    let checks: [(&str, Check); 17] = [
        ("mmap_write", mmap_write),
        ("mmap_read", mmap_read),
        ("fcntl_lock", fcntl_lock),
        ("flock", flock),
        ("o_append", o_append),
        ("o_excl", o_excl),
        ("fallocate", fallocate),
        ("copy_file_range", copy_file_range),
        ("ino_stable", ino_stable),
        ("chmod_chown", chmod_chown),
        ("truncate", truncate),
        ("unlinked_open", unlinked_open),
        ("times", times),
        ("rename_noreplace", rename_noreplace),
        ("o_direct", o_direct),
        ("large_offset", large_offset),
        ("permissions", permissions),
    ];
    let (mut passed, mut failed) = (0, 0);
    for (name, check) in checks {
        let work = dir.join(name);
        let _ = std::fs::remove_dir_all(&work);
        let verdict = std::fs::create_dir(&work)
            .map_err(|e| format!("mkdir {}: {e}", work.display()))
            .and_then(|()| check(&work));
        let _ = std::fs::remove_dir_all(&work);
        match &verdict {
            Ok(None) => println!("probe {name} ok"),
            Ok(Some(note)) => println!("probe {name} ok ({note})"),
            Err(why) => println!("probe {name} FAILED: {why}"),
        }
        let _ = io::stdout().flush();
        if verdict.is_ok() {
            passed += 1;
        } else {
            failed += 1;
        }
    }
    println!("probe: {passed} passed, {failed} failed");
    i32::from(failed > 0)
}

/// An `io::Error` as a verdict's reason: what was being done, and why not.
fn os(what: &str) -> impl FnOnce(io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// `-1` from a libc call as the errno's `io::Error`.
fn check_ret(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn open_rw(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
}

/// A recognisable pattern of `len` bytes.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// The file's bytes as the server has them: everything is written back
/// and the page cache dropped first, so read(2) asks the server.
fn read_all(path: &Path) -> Result<Vec<u8>, String> {
    forget_cached_pages()?;
    std::fs::read(path).map_err(os("read back"))
}

/// Writes back everything and drops the page cache, dentries and inodes
/// (needs root): what is read next comes from the server.
fn forget_cached_pages() -> Result<(), String> {
    // SAFETY: sync takes no arguments.
    unsafe { libc::sync() };
    std::fs::write("/proc/sys/vm/drop_caches", b"3").map_err(os("drop_caches"))
}

/// Where two byte strings first differ, for a verdict.
fn same(what: &str, got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        return Ok(());
    }
    let at = got.iter().zip(want).position(|(a, b)| a != b);
    Err(match at {
        Some(i) => format!("{what}: byte {i} is {:#x}, not {:#x}", got[i], want[i]),
        None => format!("{what}: {} bytes, not {}", got.len(), want.len()),
    })
}

/// A shared mapping of a file, unmapped on drop.
struct Mapping {
    addr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &File, len: usize, writable: bool) -> io::Result<Mapping> {
        let prot = libc::PROT_READ | if writable { libc::PROT_WRITE } else { 0 };
        // SAFETY: a fresh mapping (no address given) of an open file's
        // first `len` bytes; nothing else refers to that memory yet.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { addr, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: `addr` maps `len` readable bytes for as long as `self`
        // lives; this process alone writes them, through `bytes_mut`.
        unsafe { std::slice::from_raw_parts(self.addr.cast::<u8>(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and the mapping is writable (made so by
        // the only caller); `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.addr.cast::<u8>(), self.len) }
    }

    fn sync(&self) -> io::Result<()> {
        // SAFETY: `addr`/`len` are exactly the mapping made in `new`.
        check_ret(unsafe { libc::msync(self.addr, self.len, libc::MS_SYNC) }).map(drop)
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `addr`/`len` are the mapping made in `new`, and no
        // slice of it outlives `self`.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// Writes through a shared writable mapping, msync, munmap; a new fd's
/// read(2) sees the bytes.
fn mmap_write(dir: &Path) -> Verdict {
    let path = dir.join("f");
    let len = 3 * PAGE;
    let want = pattern(len, 7);
    {
        let file = open_rw(&path).map_err(os("open"))?;
        file.set_len(len as u64).map_err(os("ftruncate"))?;
        let mut map = Mapping::new(&file, len, true).map_err(os("mmap shared rw"))?;
        map.bytes_mut().copy_from_slice(&want);
        map.sync().map_err(os("msync"))?;
    }
    same("read(2) after munmap", &read_all(&path)?, &want)?;
    Ok(None)
}

/// write(2), then a fresh shared mapping reads the same bytes.
fn mmap_read(dir: &Path) -> Verdict {
    let path = dir.join("f");
    let want = pattern(2 * PAGE + 100, 3);
    std::fs::write(&path, &want).map_err(os("write"))?;
    // From the server, not from the pages write(2) left in the cache.
    same("read(2)", &read_all(&path)?, &want)?;
    let file = File::open(&path).map_err(os("open"))?;
    let map = Mapping::new(&file, want.len(), false).map_err(os("mmap shared ro"))?;
    same("through the mapping", map.bytes(), &want)?;
    Ok(None)
}

fn write_lock() -> libc::flock {
    // SAFETY: `flock` is plain data; all zeroes is a valid value.
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = libc::F_WRLCK as libc::c_short;
    lock.l_whence = libc::SEEK_SET as libc::c_short;
    lock.l_start = 0;
    lock.l_len = 0;
    lock
}

/// A child process that holds a lock (taken by `take` on `fd` in the
/// child) until dropped; waited for on drop.
struct LockHolder {
    pid: libc::pid_t,
    /// Closing it tells the child to let go and exit.
    release: Option<File>,
}

impl LockHolder {
    /// Forks; the child runs `take(fd)` (0 or -1), reports its result on
    /// a pipe, and waits for the parent to close the other pipe.
    fn start(fd: libc::c_int, take: fn(libc::c_int) -> libc::c_int) -> io::Result<LockHolder> {
        let (report_r, report_w) = pipe()?;
        let (release_r, release_w) = pipe()?;
        // SAFETY: the probe has one thread; the child below makes only
        // async-signal-safe calls (fcntl/flock, write, read, _exit).
        let pid = check_ret(unsafe { libc::fork() })?;
        if pid == 0 {
            let ok: u8 = if take(fd) == 0 { b'y' } else { b'n' };
            let mut byte = [0u8; 1];
            // SAFETY: one-byte buffers that live across the calls, on fds
            // this child inherited open.
            unsafe {
                libc::write(report_w.as_raw_fd(), [ok].as_ptr().cast(), 1);
                libc::close(release_w.as_raw_fd());
                libc::read(release_r.as_raw_fd(), byte.as_mut_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        drop((report_w, release_r));
        let mut holder = LockHolder {
            pid,
            release: Some(release_w),
        };
        let mut byte = [0u8; 1];
        let mut report = report_r;
        report.read_exact(&mut byte)?;
        if byte[0] != b'y' {
            holder.release = None;
            return Err(io::Error::other("the child could not take the lock"));
        }
        Ok(holder)
    }
}

impl Drop for LockHolder {
    fn drop(&mut self) {
        self.release = None;
        let mut status = 0;
        // SAFETY: waits for this holder's own child; `status` is writable.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check_ret(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    use std::os::fd::FromRawFd;
    // SAFETY: both descriptors are new and owned by nothing else.
    Ok(unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) })
}

fn set_write_lock(fd: libc::c_int) -> libc::c_int {
    let lock = write_lock();
    // SAFETY: `lock` is a valid flock for the whole call.
    unsafe { libc::fcntl(fd, libc::F_SETLK, &lock) }
}

fn flock_exclusive(fd: libc::c_int) -> libc::c_int {
    // SAFETY: no memory is passed.
    unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) }
}

/// A child's F_SETLK write lock makes the parent's F_SETLK fail with
/// EAGAIN or EACCES, and F_GETLK names the child; after the child exits
/// the parent gets the lock.
fn fcntl_lock(dir: &Path) -> Verdict {
    let path = dir.join("f");
    std::fs::write(&path, b"locked").map_err(os("write"))?;
    let file = open_rw(&path).map_err(os("open"))?;
    let fd = file.as_raw_fd();
    let holder = LockHolder::start(fd, set_write_lock).map_err(os("child F_SETLK"))?;
    let mut lock = write_lock();
    // SAFETY: `lock` is a valid flock for the whole call.
    let got = check_ret(unsafe { libc::fcntl(fd, libc::F_SETLK, &lock) });
    match got {
        Ok(_) => return Err("F_SETLK succeeded while the child held the lock".into()),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) => {}
        Err(e) => return Err(format!("F_SETLK: {e}, not EAGAIN/EACCES")),
    }
    // SAFETY: `lock` is a valid, writable flock for the whole call.
    check_ret(unsafe { libc::fcntl(fd, libc::F_GETLK, &mut lock) }).map_err(os("F_GETLK"))?;
    if i32::from(lock.l_type) != libc::F_WRLCK || lock.l_pid != holder.pid {
        return Err(format!(
            "F_GETLK says type {} pid {}, not F_WRLCK pid {}",
            lock.l_type, lock.l_pid, holder.pid
        ));
    }
    drop(holder);
    check_ret(set_write_lock(fd)).map_err(os("F_SETLK after the child exited"))?;
    Ok(None)
}

/// LOCK_EX|LOCK_NB on one open file description makes it fail on another
/// (EWOULDBLOCK), and succeed once the first is closed.
fn flock(dir: &Path) -> Verdict {
    let path = dir.join("f");
    std::fs::write(&path, b"flock").map_err(os("write"))?;
    let a = open_rw(&path).map_err(os("open a"))?;
    let b = open_rw(&path).map_err(os("open b"))?;
    check_ret(flock_exclusive(a.as_raw_fd())).map_err(os("flock a"))?;
    match check_ret(flock_exclusive(b.as_raw_fd())) {
        Ok(_) => return Err("the second LOCK_EX succeeded".into()),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
        Err(e) => return Err(format!("flock b: {e}, not EWOULDBLOCK")),
    }
    drop(a);
    check_ret(flock_exclusive(b.as_raw_fd())).map_err(os("flock b after a closed"))?;
    Ok(None)
}

/// Two O_APPEND fds, writing in turn: every record is there, in order.
fn o_append(dir: &Path) -> Verdict {
    let path = dir.join("f");
    std::fs::write(&path, b"start\n").map_err(os("write"))?;
    let open = || OpenOptions::new().append(true).open(&path);
    let mut a = open().map_err(os("open a"))?;
    let mut b = open().map_err(os("open b"))?;
    let mut want = b"start\n".to_vec();
    for i in 0..20 {
        let (fd, who) = if i % 2 == 0 {
            (&mut a, 'a')
        } else {
            (&mut b, 'b')
        };
        let record = format!("{who}{i:02}\n");
        fd.write_all(record.as_bytes()).map_err(os("append"))?;
        want.extend_from_slice(record.as_bytes());
    }
    drop((a, b));
    same("the file", &read_all(&path)?, &want)?;
    Ok(None)
}

/// O_CREAT|O_EXCL on an existing file is EEXIST, also on the first open
/// after the entry was made elsewhere (no cached dentry: a new name
/// through a hard link).
fn o_excl(dir: &Path) -> Verdict {
    let path = dir.join("f");
    let excl = |p: &Path| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(p)
            .map(drop)
    };
    excl(&path).map_err(os("the first O_EXCL create"))?;
    let expect_eexist = |r: io::Result<()>, what: &str| match r {
        Ok(()) => Err(format!("{what}: O_EXCL on an existing file succeeded")),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(format!("{what}: {e}, not EEXIST")),
    };
    expect_eexist(excl(&path), "again")?;
    let link = dir.join("g");
    std::fs::hard_link(&path, &link).map_err(os("link"))?;
    expect_eexist(excl(&link), "a hard link")?;
    Ok(None)
}

/// fallocate(0) past the end extends the size, reads zeros and
/// allocates the blocks (st_blocks covers them: a later write there
/// cannot fail for want of space); other modes may be EOPNOTSUPP (said in
/// the note).
fn fallocate(dir: &Path) -> Verdict {
    const LEN: u64 = 1 << 20;
    let path = dir.join("f");
    std::fs::write(&path, b"head").map_err(os("write"))?;
    let file = open_rw(&path).map_err(os("open"))?;
    let fd = file.as_raw_fd();
    // SAFETY: no memory is passed.
    check_ret(unsafe { libc::fallocate(fd, 0, 0, LEN as libc::off_t) })
        .map_err(os("fallocate(0)"))?;
    let size = file.metadata().map_err(os("fstat"))?.len();
    if size != LEN {
        return Err(format!(
            "size {size} after fallocate(0, 0, {LEN}), not {LEN}"
        ));
    }
    let mut want = vec![0u8; LEN as usize];
    want[..4].copy_from_slice(b"head");
    same("after fallocate(0)", &read_all(&path)?, &want)?;
    let blocks = std::fs::metadata(&path).map_err(os("stat"))?.blocks();
    if blocks * 512 < LEN {
        return Err(format!(
            "st_blocks {blocks} after fallocate(0) of {LEN} bytes: not allocated"
        ));
    }
    // SAFETY: no memory is passed.
    let keep = check_ret(unsafe {
        libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, 0, 2 * LEN as libc::off_t)
    });
    let note = match keep {
        Ok(_) => {
            let size = file.metadata().map_err(os("fstat"))?.len();
            if size != LEN {
                return Err(format!("FALLOC_FL_KEEP_SIZE changed the size to {size}"));
            }
            None
        }
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {
            Some("mode 0 works; FALLOC_FL_KEEP_SIZE is EOPNOTSUPP".to_string())
        }
        Err(e) => return Err(format!("FALLOC_FL_KEEP_SIZE: {e}, not EOPNOTSUPP")),
    };
    Ok(note)
}

/// copy_file_range of a middle range into another file at an offset: the
/// bytes land there, whoever does the copying.
fn copy_file_range(dir: &Path) -> Verdict {
    let (src_path, dst_path) = (dir.join("src"), dir.join("dst"));
    let src_bytes = pattern(200_000, 11);
    std::fs::write(&src_path, &src_bytes).map_err(os("write src"))?;
    std::fs::write(&dst_path, b"0123456789").map_err(os("write dst"))?;
    let src = File::open(&src_path).map_err(os("open src"))?;
    let dst = open_rw(&dst_path).map_err(os("open dst"))?;
    let (mut off_in, mut off_out): (libc::loff_t, libc::loff_t) = (1000, 5);
    let mut left = 150_000usize;
    while left > 0 {
        // SAFETY: both offsets are valid, writable loff_t for the call.
        let n = unsafe {
            libc::copy_file_range(
                src.as_raw_fd(),
                &mut off_in,
                dst.as_raw_fd(),
                &mut off_out,
                left,
                0,
            )
        };
        match n {
            n if n < 0 => return Err(format!("copy_file_range: {}", io::Error::last_os_error())),
            0 => return Err(format!("copy_file_range stopped {left} bytes short")),
            n => left -= n as usize,
        }
    }
    drop(dst);
    let mut want = b"01234".to_vec();
    want.extend_from_slice(&src_bytes[1000..151_000]);
    same("dst", &read_all(&dst_path)?, &want)?;
    Ok(None)
}

fn ino(path: &Path) -> Result<u64, String> {
    std::fs::symlink_metadata(path)
        .map(|m| m.ino())
        .map_err(os("stat"))
}

/// Asks the kernel to drop its dentries and inodes (needs root): the next
/// stat is a new LOOKUP, not the cache.
fn drop_caches() -> Result<(), String> {
    std::fs::write("/proc/sys/vm/drop_caches", b"2").map_err(os("drop_caches"))
}

/// st_ino stays across a rename (within and across directories), a chmod,
/// a link count change and a dropped dentry cache.
fn ino_stable(dir: &Path) -> Verdict {
    let path = dir.join("f");
    std::fs::write(&path, b"ino").map_err(os("write"))?;
    let first = ino(&path)?;
    let step = |what: &str, now: u64| {
        if now == first {
            Ok(())
        } else {
            Err(format!("st_ino {first} became {now} after {what}"))
        }
    };
    let renamed = dir.join("g");
    std::fs::rename(&path, &renamed).map_err(os("rename"))?;
    step("rename", ino(&renamed)?)?;
    let sub = dir.join("sub");
    std::fs::create_dir(&sub).map_err(os("mkdir"))?;
    let moved = sub.join("h");
    std::fs::rename(&renamed, &moved).map_err(os("rename across directories"))?;
    step("a rename across directories", ino(&moved)?)?;
    std::fs::set_permissions(&moved, std::fs::Permissions::from_mode(0o600))
        .map_err(os("chmod"))?;
    step("chmod", ino(&moved)?)?;
    std::fs::hard_link(&moved, dir.join("l")).map_err(os("link"))?;
    step("link", ino(&dir.join("l"))?)?;
    drop_caches()?;
    step("dropping the dentry cache", ino(&moved)?)?;
    Ok(None)
}

/// chmod and chown round-trip exactly in stat, also after the caches are
/// dropped (read from the server again); chown by root clears setuid.
fn chmod_chown(dir: &Path) -> Verdict {
    let path = dir.join("f");
    std::fs::write(&path, b"owner").map_err(os("write"))?;
    let expect = |mode: u32, uid: u32, gid: u32, when: &str| -> Result<(), String> {
        let m = std::fs::symlink_metadata(&path).map_err(os("stat"))?;
        let got = (m.mode() & 0o7777, m.uid(), m.gid());
        if got != (mode, uid, gid) {
            return Err(format!(
                "{when}: mode {:o} uid {} gid {}, not {mode:o} {uid} {gid}",
                got.0, got.1, got.2
            ));
        }
        Ok(())
    };
    std::os::unix::fs::chown(&path, Some(1234), Some(5678)).map_err(os("chown"))?;
    expect(0o644, 1234, 5678, "after chown")?;
    for mode in [0o640, 0o4755, 0o2710, 0o1777, 0o000] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(os("chmod"))?;
        expect(mode, 1234, 5678, &format!("after chmod {mode:o}"))?;
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o4755))
        .map_err(os("chmod"))?;
    std::os::unix::fs::chown(&path, Some(42), None).map_err(os("chown uid"))?;
    expect(0o755, 42, 5678, "after chown of a setuid file")?;
    drop_caches()?;
    expect(0o755, 42, 5678, "after dropping the caches")?;
    Ok(None)
}

/// ftruncate down cuts the data, up adds zeros; truncate(2) by path too.
fn truncate(dir: &Path) -> Verdict {
    let path = dir.join("f");
    let bytes = pattern(10_000, 5);
    std::fs::write(&path, &bytes).map_err(os("write"))?;
    let file = open_rw(&path).map_err(os("open"))?;
    file.set_len(100).map_err(os("ftruncate down"))?;
    same("after ftruncate to 100", &read_all(&path)?, &bytes[..100])?;
    file.set_len(5000).map_err(os("ftruncate up"))?;
    let mut want = bytes[..100].to_vec();
    want.resize(5000, 0);
    same("after ftruncate to 5000", &read_all(&path)?, &want)?;
    drop(file);
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| "a NUL in the path".to_string())?;
    // SAFETY: `c_path` is a NUL-terminated string for the whole call.
    check_ret(unsafe { libc::truncate(c_path.as_ptr(), 10) }).map_err(os("truncate(2)"))?;
    same("after truncate(2) to 10", &read_all(&path)?, &bytes[..10])?;
    Ok(None)
}

/// A file unlinked while open stays readable and writable through the
/// open fd; its name is gone.
fn unlinked_open(dir: &Path) -> Verdict {
    let path = dir.join("f");
    std::fs::write(&path, b"still here").map_err(os("write"))?;
    let mut file = open_rw(&path).map_err(os("open"))?;
    std::fs::remove_file(&path).map_err(os("unlink"))?;
    if path.exists() {
        return Err("the name is still there after unlink".into());
    }
    drop_caches()?;
    file.write_all(b"STILL").map_err(os("write after unlink"))?;
    let mut got = String::new();
    use std::io::Seek;
    file.seek(io::SeekFrom::Start(0)).map_err(os("seek"))?;
    file.read_to_string(&mut got)
        .map_err(os("read after unlink"))?;
    same("after unlink", got.as_bytes(), b"STILL here")?;
    Ok(None)
}

/// atime and mtime set by utimensat (whole seconds: the disk keeps no
/// more) read back the same from the server.
fn times(dir: &Path) -> Verdict {
    use std::time::Duration;
    use std::time::UNIX_EPOCH;
    let path = dir.join("f");
    std::fs::write(&path, b"times").map_err(os("write"))?;
    let (atime, mtime) = (1_000_000_000u64, 1_700_000_000u64);
    let file = File::options()
        .write(true)
        .open(&path)
        .map_err(os("open"))?;
    let set = std::fs::FileTimes::new()
        .set_accessed(UNIX_EPOCH + Duration::from_secs(atime))
        .set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
    file.set_times(set).map_err(os("futimens"))?;
    drop(file);
    drop_caches()?;
    let m = std::fs::symlink_metadata(&path).map_err(os("stat"))?;
    let got = (m.atime() as u64, m.mtime() as u64);
    if got != (atime, mtime) {
        return Err(format!("atime/mtime {got:?}, not {:?}", (atime, mtime)));
    }
    Ok(None)
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> io::Result<()> {
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes());
    let (Ok(from), Ok(to)) = (c(from), c(to)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: both paths are NUL-terminated strings for the whole call.
    let ret = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            flags,
        )
    };
    check_ret(ret).map(drop)
}

/// renameat2(RENAME_NOREPLACE) onto an existing name is EEXIST and keeps
/// both files; onto a free name it renames. RENAME_EXCHANGE may be
/// EINVAL (said in the note).
fn rename_noreplace(dir: &Path) -> Verdict {
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    std::fs::write(&a, b"a").map_err(os("write a"))?;
    std::fs::write(&b, b"b").map_err(os("write b"))?;
    match renameat2(&a, &b, libc::RENAME_NOREPLACE) {
        Ok(()) => return Err("RENAME_NOREPLACE replaced an existing file".into()),
        Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
        Err(e) => return Err(format!("RENAME_NOREPLACE: {e}, not EEXIST")),
    }
    same("a", &read_all(&a)?, b"a")?;
    same("b", &read_all(&b)?, b"b")?;
    renameat2(&a, &c, libc::RENAME_NOREPLACE).map_err(os("RENAME_NOREPLACE to a new name"))?;
    same("c", &read_all(&c)?, b"a")?;
    match renameat2(&b, &c, libc::RENAME_EXCHANGE) {
        Ok(()) => {
            same("c after RENAME_EXCHANGE", &read_all(&c)?, b"b")?;
            same("b after RENAME_EXCHANGE", &read_all(&b)?, b"a")?;
            Ok(None)
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            same("c after a refused exchange", &read_all(&c)?, b"a")?;
            Ok(Some("RENAME_EXCHANGE is EINVAL".into()))
        }
        Err(e) => Err(format!("RENAME_EXCHANGE: {e}, not EINVAL")),
    }
}

/// A page-aligned buffer of `PAGE` bytes, for O_DIRECT.
#[repr(C, align(4096))]
struct AlignedPage([u8; PAGE]);

/// O_DIRECT writes and reads of aligned pages reach the server.
fn o_direct(dir: &Path) -> Verdict {
    use std::os::unix::fs::FileExt;
    use std::os::unix::fs::OpenOptionsExt;
    let path = dir.join("f");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)
        .map_err(os("open O_DIRECT"))?;
    let mut page = Box::new(AlignedPage([0; PAGE]));
    page.0.copy_from_slice(&pattern(PAGE, 9));
    file.write_all_at(&page.0, PAGE as u64)
        .map_err(os("O_DIRECT write"))?;
    let mut back = Box::new(AlignedPage([0; PAGE]));
    file.read_exact_at(&mut back.0, PAGE as u64)
        .map_err(os("O_DIRECT read"))?;
    same("O_DIRECT read", &back.0, &page.0)?;
    let mut want = vec![0u8; PAGE];
    want.extend_from_slice(&page.0);
    same("read(2)", &read_all(&path)?, &want)?;
    Ok(None)
}

/// Bytes written at 5 GiB (past 32-bit sizes, into ext2's triple
/// indirect blocks) read back; the hole before them reads zeros.
fn large_offset(dir: &Path) -> Verdict {
    use std::os::unix::fs::FileExt;
    const FAR: u64 = 5 << 30;
    let path = dir.join("f");
    let file = open_rw(&path).map_err(os("open"))?;
    file.write_all_at(b"far away", FAR)
        .map_err(os("pwrite at 5 GiB"))?;
    drop(file);
    forget_cached_pages()?;
    let file = File::open(&path).map_err(os("reopen"))?;
    let size = file.metadata().map_err(os("fstat"))?.len();
    if size != FAR + 8 {
        return Err(format!("size {size}, not {}", FAR + 8));
    }
    let mut back = [0u8; 8];
    file.read_exact_at(&mut back, FAR)
        .map_err(os("pread at 5 GiB"))?;
    same("at 5 GiB", &back, b"far away")?;
    let mut hole = [0xffu8; 8];
    file.read_exact_at(&mut hole, 3 << 30)
        .map_err(os("pread at 3 GiB"))?;
    same("the hole at 3 GiB", &hole, &[0; 8])?;
    Ok(None)
}

/// What a child running as uid/gid 1234 gets: opening a root-owned 0600
/// file is EACCES (the guest checks modes: `default_permissions`), and
/// its write to a 04777 file clears the setuid bit.
fn permissions(dir: &Path) -> Verdict {
    let (private, shared) = (dir.join("private"), dir.join("shared"));
    std::fs::write(&private, b"root only").map_err(os("write"))?;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600))
        .map_err(os("chmod 600"))?;
    std::fs::write(&shared, b"anyone").map_err(os("write"))?;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o4777))
        .map_err(os("chmod 4777"))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .map_err(os("chmod dir"))?;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_encoded_bytes());
    let (Ok(private_c), Ok(shared_c)) = (c(&private), c(&shared)) else {
        return Err("a NUL in the path".into());
    };
    // SAFETY: the probe has one thread; the child makes only
    // async-signal-safe calls on strings made before the fork.
    let pid = check_ret(unsafe { libc::fork() }).map_err(os("fork"))?;
    if pid == 0 {
        // SAFETY: both paths are NUL-terminated strings that outlive the
        // calls; the buffer is one byte that lives across the write.
        unsafe {
            if libc::setgid(1234) != 0 || libc::setuid(1234) != 0 {
                libc::_exit(10);
            }
            let fd = libc::open(private_c.as_ptr(), libc::O_RDONLY);
            if fd >= 0 {
                libc::_exit(11);
            }
            if *libc::__errno_location() != libc::EACCES {
                libc::_exit(12);
            }
            let fd = libc::open(shared_c.as_ptr(), libc::O_WRONLY | libc::O_APPEND);
            if fd < 0 {
                libc::_exit(13);
            }
            if libc::write(fd, b"!".as_ptr().cast(), 1) != 1 {
                libc::_exit(14);
            }
            libc::_exit(0);
        }
    }
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is writable.
    check_ret(unsafe { libc::waitpid(pid, &mut status, 0) }).map_err(os("waitpid"))?;
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    match code {
        0 => {}
        10 => return Err("setuid(1234) failed".into()),
        11 => return Err("uid 1234 opened a root-owned 0600 file".into()),
        12 => return Err("uid 1234 opening a 0600 file: not EACCES".into()),
        13 => return Err("uid 1234 could not open a 0777 file for writing".into()),
        14 => return Err("uid 1234 could not write a 0777 file".into()),
        other => return Err(format!("the child ended with {other}")),
    }
    drop_caches()?;
    let mode = std::fs::metadata(&shared).map_err(os("stat"))?.mode() & 0o7777;
    if mode != 0o777 {
        return Err(format!(
            "mode {mode:o} after a write by uid 1234, not 777 (setuid kept?)"
        ));
    }
    same("the shared file", &read_all(&shared)?, b"anyone!")?;
    Ok(None)
}
