//! Images the library must refuse or survive: wrong formats, damaged bytes.

mod common;

use std::collections::HashSet;

use common::pattern;
use common::Image;
use common::MemDevice;
use starina_ext2::FileType;
use starina_ext2::Fs;
use starina_ext2::FsError;
use starina_ext2::MountError;
use starina_ext2::ROOT_INO;

#[test]
fn refuses_what_it_cannot_mount() {
    let image = Image::new(4 * 1024, &[]);
    let mut dev = image.device();
    dev.data[1024 + 56] = 0;
    assert!(matches!(Fs::mount(dev), Err(MountError::BadMagic(_))));

    let ext4 = Image::new(8 * 1024, &["-t", "ext4"]);
    match Fs::mount(ext4.device()) {
        Err(e @ MountError::UnsupportedIncompat(_)) => {
            assert!(e.to_string().contains("extents"), "{e}")
        }
        Err(e) => panic!("ext4 refused for the wrong reason: {e}"),
        Ok(_) => panic!("ext4 mounted"),
    }

    let mut dev = image.device();
    dev.data.truncate(2 * 1024 * 1024);
    let error = Fs::mount(dev)
        .err()
        .expect("a disk smaller than the file system mounted");
    assert!(error.to_string().contains("do not fit"), "{error}");

    let mut dev = image.device();
    dev.data[2048 + 8..2048 + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = Fs::mount(dev)
        .err()
        .expect("an inode table beyond the disk mounted");
    assert!(error.to_string().contains("beyond the disk"), "{error}");

    assert!(matches!(
        Fs::mount(MemDevice::new(vec![0; 1024])),
        Err(MountError::TooSmall)
    ));
}

#[test]
fn read_only_mounts() {
    let ext3 = Image::new(8 * 1024, &["-t", "ext3"]);
    let mut fs = Fs::mount(ext3.device()).unwrap();
    assert!(fs.is_read_only());
    assert_eq!(
        fs.mkdir(ROOT_INO, b"x", 0o755, 0, 0),
        Err(FsError::ReadOnly)
    );
    assert!(fs.lookup(ROOT_INO, b"lost+found").is_ok());

    let image = Image::new(4 * 1024, &[]);
    let mut dev = image.device();
    dev.read_only = true;
    let mut fs = Fs::mount(dev).unwrap();
    assert!(fs.is_read_only());
    assert_eq!(
        fs.create(ROOT_INO, b"f", FileType::Regular, 0, 0, 0),
        Err(FsError::ReadOnly)
    );
    fs.unmount().unwrap();
}

/// Builds a small image with something of every kind in it.
fn populated_image(options: &[&str]) -> Image {
    let image = Image::new(1024, options);
    let mut fs = image.mount();
    let dir = fs.mkdir(ROOT_INO, b"dir", 0o755, 0, 0).unwrap();
    for i in 0..40 {
        let f = fs
            .create(
                dir,
                format!("file{i}").as_bytes(),
                FileType::Regular,
                0o644,
                0,
                0,
            )
            .unwrap();
        fs.write(f, 0, &pattern(i, (i as usize) * 700)).unwrap();
    }
    let big = fs
        .create(ROOT_INO, b"big", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    fs.write(big, 0, &pattern(99, 300 * 1024)).unwrap();
    fs.write(big, 3 << 20, b"far").unwrap();
    fs.symlink(ROOT_INO, b"fast", b"dir/file3", 0, 0).unwrap();
    fs.symlink(dir, b"slow", &[b's'; 100], 0, 0).unwrap();
    fs.link(big, dir, b"biglink").unwrap();
    let sub = fs.mkdir(dir, b"sub", 0o755, 0, 0).unwrap();
    fs.create(sub, b"fifo", FileType::Fifo, 0o644, 0, 0)
        .unwrap();
    image.unmount(fs);
    image.assert_clean();
    image
}

/// Walks everything reachable, reading files and links; errors are fine, panics are not.
fn walk(fs: &mut Fs<MemDevice>) {
    let mut seen = HashSet::new();
    let mut stack = vec![ROOT_INO];
    while let Some(dir) = stack.pop() {
        if !seen.insert(dir) || seen.len() > 500 {
            continue;
        }
        let Ok(entries) = fs.readdir(dir, 0, 1000) else {
            continue;
        };
        for entry in entries {
            let _ = fs.lookup(dir, &entry.name);
            match fs.stat(entry.ino).map(|s| s.kind) {
                Ok(FileType::Directory) => stack.push(entry.ino),
                Ok(FileType::Regular) => {
                    let mut buf = vec![0; 64 * 1024];
                    let _ = fs.read(entry.ino, 0, &mut buf);
                    let _ = fs.read(entry.ino, 3 << 20, &mut buf);
                }
                Ok(FileType::Symlink) => {
                    let _ = fs.readlink(entry.ino);
                }
                _ => {}
            }
        }
    }
    let _ = fs.resolve(b"/dir/sub/../slow", true);
}

/// Changes that touch allocation, directories and truncation on a damaged image.
fn mutate(fs: &mut Fs<MemDevice>) {
    let _ = fs
        .create(ROOT_INO, b"new", FileType::Regular, 0o644, 0, 0)
        .and_then(|f| fs.write(f, 0, &pattern(7, 5000)));
    let _ = fs.mkdir(ROOT_INO, b"newdir", 0o755, 0, 0);
    if let Ok(dir) = fs.lookup(ROOT_INO, b"dir") {
        for i in 0..10 {
            let _ = fs.unlink(dir, format!("file{i}").as_bytes());
        }
        let _ = fs.rename(dir, b"sub", ROOT_INO, b"moved");
        let _ = fs.rmdir(dir, b"sub");
    }
    let _ = fs.unlink(ROOT_INO, b"big");
    let _ = fs.sync();
}

/// Seeded byte flips in the metadata area; mount, walk, change and unmount never panic.
#[test]
fn damaged_images_never_panic() {
    flip_bytes(&["-b", "1024", "-N", "128"], 0x5eed, 300);
    flip_bytes(&["-b", "4096", "-N", "64", "-I", "256"], 0xfeed, 300);
}

fn flip_bytes(options: &[&str], seed: u64, cases: u32) {
    let image = populated_image(options);
    let pristine = std::fs::read(&image.path).unwrap();
    let mut rng = seed;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut mounted = 0;
    for case in 0..cases {
        let mut data = pristine.clone();
        let flips = 1 + next() % 12;
        for _ in 0..flips {
            // Mostly the first 128 KiB (superblock, descriptors, bitmaps, inode table, directories).
            let span = if next() % 4 == 0 {
                data.len()
            } else {
                128 * 1024
            };
            let at = (next() as usize) % span;
            data[at] ^= 1 << (next() % 8);
        }
        if case % 2 == 1 {
            data[1024 + 58] = 0; // not clean: the repair pass runs on the damage
        }
        let Ok(mut fs) = Fs::mount(MemDevice::new(data)) else {
            continue;
        };
        mounted += 1;
        walk(&mut fs);
        mutate(&mut fs);
        walk(&mut fs);
        let _ = fs.unmount();
    }
    assert!(
        mounted > cases / 4,
        "only {mounted} of {cases} damaged images mounted"
    );
}

/// Hand-made lies in one directory block and one inode's block map.
#[test]
fn lies_are_reported_as_corrupt() {
    let image = populated_image(&["-b", "1024", "-N", "128"]);
    let listing = String::from_utf8(image.debugfs("stat /dir")).unwrap();
    let block: usize = listing
        .split("(0):")
        .nth(1)
        .unwrap()
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let mut dev = image.device();
    // "." claims a rec_len past the block end.
    dev.data[block * 1024 + 4..block * 1024 + 6].copy_from_slice(&2000u16.to_le_bytes());
    let mut fs = Fs::mount(dev).unwrap();
    let dir = fs.lookup(ROOT_INO, b"dir").unwrap();
    match fs.lookup(dir, b"file1") {
        Err(FsError::Corrupt(what)) => assert!(what.contains("rec_len"), "{what}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(fs.readdir(dir, 0, 10), Err(FsError::Corrupt(_))));
}
