//! Crash consistency: the disk stops taking writes after N of them during a workload;
//! the next mount repairs, fsynced files read back intact, and e2fsck finds nothing.

mod common;

use common::pattern;
use common::read_all;
use common::Image;
use common::MemDevice;
use starina_ext2::FileType;
use starina_ext2::Fs;
use starina_ext2::FsError;
use starina_ext2::SetAttr;
use starina_ext2::ROOT_INO;

const ROUNDS: u64 = 8;

/// The append-only /keep/log after `records` appends.
fn log_contents(records: u64) -> Vec<u8> {
    (0..records).flat_map(|r| pattern(500 + r, 1500)).collect()
}

fn keep_contents(k: u64) -> Vec<u8> {
    pattern(100 + k, 3000 + (k as usize) * 9000)
}

/// Creates one file per round under /keep and syncs it, churning /scratch in between.
/// Returns how many /keep files a completed sync made durable before the first error.
fn workload(fs: &mut Fs<MemDevice>, durable: &mut u64) -> Result<(), FsError> {
    let keep = fs.mkdir(ROOT_INO, b"keep", 0o755, 0, 0)?;
    let scratch = fs.mkdir(ROOT_INO, b"scratch", 0o755, 0, 0)?;
    let log = fs.create(keep, b"log", FileType::Regular, 0o644, 0, 0)?;
    fs.sync()?;
    for k in 0..ROUNDS {
        let size = fs.stat(log)?.size;
        fs.write(log, size, &pattern(500 + k, 1500))?;
        let name = format!("k{k}");
        let f = fs.create(keep, name.as_bytes(), FileType::Regular, 0o644, 0, 0)?;
        fs.write(f, 0, &keep_contents(k))?;
        churn(fs, scratch, k)?;
        fs.sync()?;
        *durable = k + 1;
        churn(fs, scratch, k + 100)?;
    }
    Ok(())
}

fn churn(fs: &mut Fs<MemDevice>, scratch: u32, k: u64) -> Result<(), FsError> {
    let a = fs.create(
        scratch,
        format!("a{k}").as_bytes(),
        FileType::Regular,
        0o644,
        0,
        0,
    )?;
    fs.write(a, 0, &pattern(k, 20_000))?;
    let d = fs.mkdir(scratch, format!("d{k}").as_bytes(), 0o755, 0, 0)?;
    fs.create(d, b"inner", FileType::Regular, 0o644, 0, 0)?;
    fs.rename(scratch, format!("a{k}").as_bytes(), d, b"moved")?;
    if k > 0 {
        let prev = format!("d{}", k - 1);
        if let Ok(p) = fs.lookup(scratch, prev.as_bytes()) {
            fs.rename(scratch, prev.as_bytes(), d, b"sub")?;
            fs.unlink(p, b"inner")?;
            let moved = fs.lookup(p, b"moved")?;
            fs.set_attr(
                moved,
                &SetAttr {
                    size: Some(777),
                    ..SetAttr::default()
                },
            )?;
        }
    }
    let open = fs.create(
        scratch,
        format!("o{k}").as_bytes(),
        FileType::Regular,
        0o644,
        0,
        0,
    )?;
    fs.write(open, 0, &pattern(k + 7, 5000))?;
    fs.retain(open);
    fs.unlink(scratch, format!("o{k}").as_bytes())?;
    Ok(())
}

/// Runs the workload on a fresh copy of `pristine` with `writes_allowed`; returns the disk.
fn run(pristine: &[u8], cache_bytes: usize, writes_allowed: Option<usize>) -> (MemDevice, u64) {
    let mut dev = MemDevice::new(pristine.to_vec());
    dev.writes_allowed = writes_allowed;
    let mut durable = 0;
    match Fs::mount_with_cache(dev, cache_bytes) {
        Ok(mut fs) => {
            fs.set_time(1_700_000_000);
            let _ = workload(&mut fs, &mut durable);
            // The machine dies: the Fs is dropped without unmount; take what reached the disk.
            let dev = crash(fs);
            (dev, durable)
        }
        Err(_) => (MemDevice::new(pristine.to_vec()), 0),
    }
}

/// Hands back the device as it is, without writing anything more.
fn crash(mut fs: Fs<MemDevice>) -> MemDevice {
    std::mem::replace(fs.device_mut(), MemDevice::new(Vec::new()))
}

fn check_after_crash(image: &Image, dev: MemDevice, durable: u64, n: usize) {
    let mut fs = Fs::mount(MemDevice::new(dev.data))
        .unwrap_or_else(|e| panic!("crash after {n} writes: mount: {e}"));
    for k in 0..ROUNDS {
        let path = format!("/keep/k{k}");
        let ino = match fs.resolve(path.as_bytes(), true) {
            Ok(ino) => ino,
            Err(FsError::NotFound) if k >= durable => continue,
            Err(e) => panic!("crash after {n} writes: {path}: {e}"),
        };
        // Written in the same sync as its inode: all there, never garbage, even if not yet durable.
        assert!(
            read_all(&mut fs, ino) == keep_contents(k),
            "crash after {n} writes: {path} differs (durable: {})",
            k < durable
        );
    }
    if let Ok(log) = fs.resolve(b"/keep/log", true) {
        // Whole appends only, and at least the durable ones: appended data is never garbage.
        let contents = read_all(&mut fs, log);
        let records = contents.len() as u64 / 1500;
        assert!(
            records >= durable && contents == log_contents(records),
            "crash after {n} writes: /keep/log has {} bytes, {durable} appends durable",
            contents.len()
        );
    } else {
        assert_eq!(durable, 0, "crash after {n} writes: /keep/log lost");
    }
    image.unmount(fs);
    let out = std::process::Command::new("/usr/sbin/e2fsck")
        .arg("-fn")
        .arg(&image.path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "crash after {n} writes: e2fsck -fn:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn crash_at_any_write_is_repaired() {
    crash_everywhere(starina_ext2::CACHE_BYTES);
}

/// With a 16-block cache most operations start by writing back what the last ones dirtied.
#[test]
fn crash_during_cache_pressure_writeback_is_repaired() {
    crash_everywhere(16 * 1024);
}

fn crash_everywhere(cache_bytes: usize) {
    let image = Image::new(4 * 1024, &["-b", "1024"]);
    let pristine = std::fs::read(&image.path).unwrap();
    let (full, durable) = run(&pristine, cache_bytes, None);
    assert_eq!(durable, ROUNDS);
    let total = full.writes;
    assert!(total > 100, "the workload wrote only {total} times");
    check_after_crash(&image, full, ROUNDS, total);
    let step = (total / 150).max(1);
    let mut cases = 0;
    for n in (0..total).step_by(step).chain([1, 2, 3, total - 1]) {
        let (dev, durable) = run(&pristine, cache_bytes, Some(n));
        check_after_crash(&image, dev, durable, n);
        cases += 1;
    }
    eprintln!("{cases} crash points over {total} writes checked");
}

/// The superblock says "not clean" while mounted read-write and "clean" after unmount.
#[test]
fn superblock_state_tracks_the_mount() {
    const STATE: usize = 1024 + 58;
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    assert_eq!(
        fs.device_mut().data[STATE],
        0,
        "mounted read-write but marked clean"
    );
    fs.create(ROOT_INO, b"f", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    fs.sync().unwrap();
    assert_eq!(
        fs.device_mut().data[STATE],
        0,
        "synced but still mounted: not clean"
    );
    let (writes, flushes) = (fs.device_mut().writes, fs.device_mut().flushes);
    fs.sync().unwrap();
    let idle = (
        fs.device_mut().writes - writes,
        fs.device_mut().flushes - flushes,
    );
    assert_eq!(idle, (0, 0), "a sync with nothing to write sent requests");
    let dev = fs.unmount().unwrap();
    assert_eq!(dev.data[STATE], 1);
    let mut dev = image.device();
    dev.read_only = true;
    let fs = Fs::mount(dev).unwrap();
    assert_eq!(
        fs.unmount().unwrap().data[STATE],
        1,
        "a read-only mount changed the state"
    );
}

/// An unlinked file still open at a crash is freed by the next mount.
#[test]
fn orphan_of_a_crash_is_freed() {
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    let free_before = fs.statfs().free_blocks;
    let f = fs
        .create(ROOT_INO, b"f", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    fs.write(f, 0, &pattern(1, 100_000)).unwrap();
    fs.retain(f);
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.sync().unwrap();
    let dev = crash(fs);
    image.store(&dev);
    let fsck = std::process::Command::new("/usr/sbin/e2fsck")
        .arg("-fn")
        .arg(&image.path)
        .output()
        .unwrap();
    assert!(
        !fsck.status.success(),
        "the crashed image should need repair"
    );
    let mut fs = Fs::mount(dev).unwrap();
    assert_eq!(fs.statfs().free_blocks, free_before);
    image.unmount(fs);
    image.assert_clean();
}
