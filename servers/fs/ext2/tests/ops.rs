//! File and directory operations on images made by mke2fs, cross-checked by e2fsck and debugfs.

mod common;

use common::pattern;
use common::read_all;
use common::Image;
use starina_ext2::FileType;
use starina_ext2::FsError;
use starina_ext2::SetAttr;
use starina_ext2::ROOT_INO;

/// Creates, writes, links, renames and removes on one image; e2fsck and debugfs agree.
fn exercise(block_size: u32, inode_size: u32) {
    let image = Image::new(
        16 * 1024,
        &["-b", &block_size.to_string(), "-I", &inode_size.to_string()],
    );
    let mut fs = image.mount();
    let free_before = fs.statfs().free_blocks;
    let dir = fs.mkdir(ROOT_INO, b"docs", 0o755, 1000, 100).unwrap();
    let file = fs
        .create(dir, b"a.txt", FileType::Regular, 0o644, 1000, 100)
        .unwrap();
    let big = pattern(1, 300 * 1024 + 17);
    assert_eq!(fs.write(file, 0, &big).unwrap(), big.len());
    assert_eq!(read_all(&mut fs, file), big);
    let fast = fs.symlink(ROOT_INO, b"short", b"docs/a.txt", 0, 0).unwrap();
    let long_target = vec![b'x'; 200];
    let slow = fs.symlink(ROOT_INO, b"long", &long_target, 0, 0).unwrap();
    assert_eq!(fs.readlink(fast).unwrap(), b"docs/a.txt");
    assert_eq!(fs.readlink(slow).unwrap(), long_target);
    assert_eq!(fs.resolve(b"/short", true).unwrap(), file);
    assert_eq!(fs.resolve(b"/short", false).unwrap(), fast);
    fs.link(file, ROOT_INO, b"hard").unwrap();
    assert_eq!(fs.stat(file).unwrap().nlink, 2);
    fs.rename(ROOT_INO, b"hard", dir, b"b.txt").unwrap();
    let fifo = fs
        .create(dir, b"pipe", FileType::Fifo, 0o600, 0, 0)
        .unwrap();
    assert_eq!(fs.stat(fifo).unwrap().kind, FileType::Fifo);
    let tmp = fs
        .create(ROOT_INO, b"tmp", FileType::Regular, 0o600, 0, 0)
        .unwrap();
    fs.write(tmp, 0, &pattern(2, 50_000)).unwrap();
    fs.unlink(ROOT_INO, b"tmp").unwrap();
    assert_eq!(fs.stat(tmp), Err(FsError::NotFound));
    let stat = fs.stat(file).unwrap();
    assert_eq!(
        (stat.mode, stat.uid, stat.gid, stat.size),
        (0o644, 1000, 100, big.len() as u64)
    );
    assert!(fs.statfs().free_blocks < free_before);
    image.unmount(fs);
    image.assert_clean();
    assert_eq!(image.debugfs("cat /docs/a.txt"), big);
    assert_eq!(image.debugfs("cat /docs/b.txt"), big);
    let stat = String::from_utf8(image.debugfs("stat /docs/a.txt")).unwrap();
    assert!(stat.contains("Links: 2"), "{stat}");
    assert_eq!(image.debugfs("cat /long"), long_target);
    let short = String::from_utf8(image.debugfs("stat /short")).unwrap();
    assert!(short.contains("Fast link dest: \"docs/a.txt\""), "{short}");
    let mut fs = image.mount();
    assert_eq!(fs.resolve(b"/docs/b.txt", true).unwrap(), file);
    assert_eq!(read_all(&mut fs, file), big);
    image.unmount(fs);
}

#[test]
fn block_size_1024_inode_128() {
    exercise(1024, 128);
}

#[test]
fn block_size_1024_inode_256() {
    exercise(1024, 256);
}

#[test]
fn block_size_2048_inode_256() {
    exercise(2048, 256);
}

#[test]
fn block_size_4096_inode_128() {
    exercise(4096, 128);
}

#[test]
fn block_size_4096_inode_256() {
    exercise(4096, 256);
}

#[test]
fn sparse_file_at_five_gib() {
    let image = Image::new(32 * 1024, &["-b", "4096"]);
    let mut fs = image.mount();
    let file = fs
        .create(ROOT_INO, b"sparse", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    let offset = 5u64 << 30;
    assert_eq!(fs.write(file, offset, b"Z").unwrap(), 1);
    let stat = fs.stat(file).unwrap();
    assert_eq!(stat.size, offset + 1);
    assert!(stat.blocks <= 4 * 8, "{} sectors for one byte", stat.blocks);
    let mut buf = [1u8; 4];
    assert_eq!(fs.read(file, offset - 3, &mut buf).unwrap(), 4);
    assert_eq!(buf, [0, 0, 0, b'Z']);
    assert_eq!(fs.read(file, offset + 1, &mut buf).unwrap(), 0);
    assert_eq!(fs.write(file, offset + 100, b"").unwrap(), 0);
    assert_eq!(
        fs.stat(file).unwrap().size,
        offset + 1,
        "an empty write grew the file"
    );
    image.unmount(fs);
    image.assert_clean();
    let stat = String::from_utf8(image.debugfs("stat /sparse")).unwrap();
    assert!(stat.contains(&format!("Size: {}", offset + 1)), "{stat}");
}

/// Direct, indirect, double and triple indirect blocks; truncation frees all of them.
#[test]
fn indirect_levels_and_truncate() {
    let image = Image::new(8 * 1024, &["-b", "1024"]);
    let mut fs = image.mount();
    let free_before = fs.statfs().free_blocks;
    let file = fs
        .create(ROOT_INO, b"f", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    let data = pattern(3, 400 * 1024);
    fs.write(file, 0, &data).unwrap();
    let triple = (12 + 256 + 65536) * 1024 + 5;
    fs.write(file, triple, b"triple").unwrap();
    let mut buf = [0u8; 6];
    fs.read(file, triple, &mut buf).unwrap();
    assert_eq!(&buf, b"triple");
    let attr = SetAttr {
        size: Some(100 * 1024 + 3),
        ..SetAttr::default()
    };
    assert_eq!(fs.set_attr(file, &attr).unwrap().size, 100 * 1024 + 3);
    assert_eq!(read_all(&mut fs, file), &data[..100 * 1024 + 3]);
    let attr = SetAttr {
        size: Some(200 * 1024),
        ..SetAttr::default()
    };
    fs.set_attr(file, &attr).unwrap();
    let mut tail = vec![1u8; 1024];
    fs.read(file, 100 * 1024 + 3, &mut tail).unwrap();
    assert!(
        tail.iter().all(|&b| b == 0),
        "bytes past a truncation come back"
    );
    fs.sync().unwrap();
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.statfs().free_blocks, free_before);
    image.unmount(fs);
    image.assert_clean();
}

#[test]
fn readdir_resumes_after_cookie() {
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    let dir = fs.mkdir(ROOT_INO, b"d", 0o755, 0, 0).unwrap();
    for i in 0..300 {
        fs.create(
            dir,
            format!("file-{i}").as_bytes(),
            FileType::Regular,
            0o644,
            0,
            0,
        )
        .unwrap();
    }
    for i in (0..300).step_by(3) {
        fs.unlink(dir, format!("file-{i}").as_bytes()).unwrap();
    }
    let mut names = Vec::new();
    let mut cookie = 0;
    loop {
        let batch = fs.readdir(dir, cookie, 7).unwrap();
        let Some(last) = batch.last() else { break };
        cookie = last.cookie;
        names.extend(
            batch
                .into_iter()
                .map(|e| String::from_utf8(e.name).unwrap()),
        );
    }
    let mut expected: Vec<String> = (0..300)
        .filter(|i| i % 3 != 0)
        .map(|i| format!("file-{i}"))
        .collect();
    expected.push(".".into());
    expected.push("..".into());
    expected.sort();
    names.sort();
    assert_eq!(names, expected);
    image.unmount(fs);
    image.assert_clean();
}

#[test]
fn rename_follows_posix() {
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    let a = fs.mkdir(ROOT_INO, b"a", 0o755, 0, 0).unwrap();
    let b = fs.mkdir(ROOT_INO, b"b", 0o755, 0, 0).unwrap();
    let sub = fs.mkdir(a, b"sub", 0o755, 0, 0).unwrap();
    let f = fs.create(a, b"f", FileType::Regular, 0o644, 0, 0).unwrap();
    let g = fs.create(b, b"g", FileType::Regular, 0o644, 0, 0).unwrap();
    assert_eq!(fs.rename(ROOT_INO, b"a", sub, b"x"), Err(FsError::Invalid));
    assert_eq!(fs.rename(ROOT_INO, b"a", a, b"x"), Err(FsError::Invalid));
    assert_eq!(fs.rename(a, b"sub", b, b"g"), Err(FsError::NotDir));
    assert_eq!(fs.rename(a, b"f", ROOT_INO, b"b"), Err(FsError::IsDir));
    assert_eq!(
        fs.rename(ROOT_INO, b"a", ROOT_INO, b"b"),
        Err(FsError::NotEmpty)
    );
    assert_eq!(fs.rename(a, b"f", b, b"."), Err(FsError::InvalidName));
    fs.rename(a, b"f", b, b"g").unwrap();
    assert_eq!(fs.stat(g), Err(FsError::NotFound));
    assert_eq!(fs.lookup(b, b"g").unwrap(), f);
    let empty = fs.mkdir(b, b"empty", 0o755, 0, 0).unwrap();
    assert_eq!(fs.stat(b).unwrap().nlink, 3);
    fs.rename(a, b"sub", b, b"empty").unwrap();
    assert_eq!(fs.stat(empty), Err(FsError::NotFound));
    assert_eq!(fs.lookup(sub, b"..").unwrap(), b);
    assert_eq!(fs.stat(a).unwrap().nlink, 2);
    assert_eq!(fs.stat(b).unwrap().nlink, 3);
    fs.rename(ROOT_INO, b"b", a, b"b2").unwrap();
    assert_eq!(fs.resolve(b"/a/b2/empty/..", false).unwrap(), b);
    assert_eq!(fs.stat(ROOT_INO).unwrap().nlink, 4);
    assert_eq!(fs.rmdir(ROOT_INO, b"a"), Err(FsError::NotEmpty));
    assert_eq!(fs.unlink(a, b"b2"), Err(FsError::IsDir));
    assert_eq!(fs.rmdir(b, b"g"), Err(FsError::NotDir));
    image.unmount(fs);
    image.assert_clean();
}

#[test]
fn names_and_symlink_resolution() {
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    let long = vec![b'n'; 256];
    assert_eq!(
        fs.create(ROOT_INO, &long, FileType::Regular, 0, 0, 0),
        Err(FsError::NameTooLong)
    );
    assert_eq!(
        fs.create(ROOT_INO, b"a/b", FileType::Regular, 0, 0, 0),
        Err(FsError::InvalidName)
    );
    assert_eq!(
        fs.mkdir(ROOT_INO, b"..", 0, 0, 0),
        Err(FsError::InvalidName)
    );
    assert_eq!(
        fs.create(ROOT_INO, b"", FileType::Regular, 0, 0, 0),
        Err(FsError::InvalidName)
    );
    let max = vec![b'm'; 255];
    fs.create(ROOT_INO, &max, FileType::Regular, 0, 0, 0)
        .unwrap();
    assert_eq!(
        fs.create(ROOT_INO, &max, FileType::Regular, 0, 0, 0),
        Err(FsError::Exists)
    );
    let d = fs.mkdir(ROOT_INO, b"d", 0o755, 0, 0).unwrap();
    let t = fs.create(d, b"t", FileType::Regular, 0o644, 0, 0).unwrap();
    fs.symlink(d, b"rel", b"../d/./t", 0, 0).unwrap();
    fs.symlink(ROOT_INO, b"abs", b"/d", 0, 0).unwrap();
    fs.symlink(ROOT_INO, b"loop1", b"loop2", 0, 0).unwrap();
    fs.symlink(ROOT_INO, b"loop2", b"/loop1", 0, 0).unwrap();
    assert_eq!(fs.resolve(b"/abs/rel", true).unwrap(), t);
    assert_eq!(fs.resolve(b"/../../d//t", true).unwrap(), t);
    assert_eq!(fs.resolve(b"/", true).unwrap(), ROOT_INO);
    assert_eq!(fs.resolve(b"/loop1", true), Err(FsError::Loop));
    assert_eq!(fs.resolve(b"/loop1/x", false), Err(FsError::Loop));
    assert_eq!(fs.resolve(b"/d/t/x", false), Err(FsError::NotDir));
    assert_eq!(fs.resolve(b"/nope", false), Err(FsError::NotFound));
    image.unmount(fs);
    image.assert_clean();
}

#[test]
fn full_disk_reports_no_space_and_stays_consistent() {
    let image = Image::new(256, &["-N", "64"]);
    let mut fs = image.mount();
    let file = fs
        .create(ROOT_INO, b"big", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    let chunk = pattern(4, 16 * 1024);
    let mut written = 0u64;
    loop {
        match fs.write(file, written, &chunk) {
            Ok(n) => written += n as u64,
            Err(FsError::NoSpace) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(written > 100 * 1024, "only {written} bytes fit");
    assert_eq!(fs.statfs().free_blocks, 0);
    let mut created = 0;
    let mut result = Ok(());
    for i in 0..100 {
        result = fs
            .mkdir(ROOT_INO, format!("dir{i}").as_bytes(), 0o755, 0, 0)
            .map(|_| ());
        if result.is_err() {
            break;
        }
        created += 1;
    }
    assert_eq!(result, Err(FsError::NoSpace), "after {created} directories");
    image.unmount(fs);
    image.assert_clean();
    let mut fs = image.mount();
    assert_eq!(fs.stat(file).unwrap().size, written);
    fs.unlink(ROOT_INO, b"big").unwrap();
    for i in 0..70 {
        match fs.create(
            ROOT_INO,
            format!("f{i}").as_bytes(),
            FileType::Regular,
            0o644,
            0,
            0,
        ) {
            Ok(_) | Err(FsError::NoSpace) => {}
            Err(e) => panic!("{e}"),
        }
    }
    image.unmount(fs);
    image.assert_clean();
}

#[test]
fn open_unlinked_file_lives_until_release() {
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    let free_before = fs.statfs().free_blocks;
    let file = fs
        .create(ROOT_INO, b"f", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    let data = pattern(5, 40_000);
    fs.write(file, 0, &data).unwrap();
    fs.retain(file);
    fs.unlink(ROOT_INO, b"f").unwrap();
    assert_eq!(fs.lookup(ROOT_INO, b"f"), Err(FsError::NotFound));
    assert_eq!(read_all(&mut fs, file), data);
    fs.write(file, 40_000, b"more").unwrap();
    fs.release(file).unwrap();
    assert_eq!(fs.stat(file), Err(FsError::NotFound));
    fs.sync().unwrap();
    assert_eq!(fs.statfs().free_blocks, free_before);
    let kept = fs
        .create(ROOT_INO, b"g", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    fs.write(kept, 0, &data).unwrap();
    fs.retain(kept);
    fs.unlink(ROOT_INO, b"g").unwrap();
    image.unmount(fs);
    image.assert_clean();
}

#[test]
fn set_attr_changes_mode_owner_and_times() {
    let image = Image::new(4 * 1024, &[]);
    let mut fs = image.mount();
    let file = fs
        .create(ROOT_INO, b"f", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    fs.set_time(1_800_000_000);
    let attr = SetAttr {
        mode: Some(0o4755),
        uid: Some(70000),
        gid: Some(80000),
        atime: Some(5),
        mtime: Some(6),
        size: None,
    };
    let stat = fs.set_attr(file, &attr).unwrap();
    assert_eq!(
        (stat.mode, stat.uid, stat.gid, stat.atime, stat.mtime, stat.ctime),
        (0o4755, 70000, 80000, 5, 6, 1_800_000_000)
    );
    let dir = fs.mkdir(ROOT_INO, b"d", 0o700, 0, 0).unwrap();
    assert_eq!(
        fs.set_attr(
            dir,
            &SetAttr {
                size: Some(0),
                ..SetAttr::default()
            }
        ),
        Err(FsError::IsDir)
    );
    image.unmount(fs);
    image.assert_clean();
    let stat = String::from_utf8(image.debugfs("stat /f")).unwrap();
    assert!(
        stat.contains("User: 70000") && stat.contains("Group: 80000"),
        "{stat}"
    );
    assert!(stat.contains("Mode:  04755"), "{stat}");
}

/// A directory indexed by `e2fsck -D` (htree) loses its index flag when changed.
#[test]
fn htree_directory_is_changed_safely() {
    let image = Image::new(8 * 1024, &[]);
    let mut fs = image.mount();
    let dir = fs.mkdir(ROOT_INO, b"big", 0o755, 0, 0).unwrap();
    for i in 0..400 {
        fs.create(
            dir,
            format!("some-longer-file-name-{i}").as_bytes(),
            FileType::Regular,
            0o644,
            0,
            0,
        )
        .unwrap();
    }
    image.unmount(fs);
    let out = std::process::Command::new("/usr/sbin/e2fsck")
        .arg("-fyD")
        .arg(&image.path)
        .output()
        .unwrap();
    assert!(
        out.status.code().unwrap() <= 1,
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let stat = String::from_utf8(image.debugfs("stat /big")).unwrap();
    assert!(
        stat.contains("Flags: 0x1000"),
        "e2fsck -D did not index: {stat}"
    );
    let mut fs = image.mount();
    for i in 0..400 {
        let name = format!("some-longer-file-name-{i}");
        assert!(fs.lookup(dir, name.as_bytes()).is_ok(), "{name}");
        if i % 2 == 0 {
            fs.unlink(dir, name.as_bytes()).unwrap();
        }
    }
    fs.create(dir, b"new", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    image.unmount(fs);
    image.assert_clean();
    let listing = String::from_utf8(image.debugfs("ls -l /big")).unwrap();
    // A removed entry that starts its block stays as an unused slot
    // (inode 0), which `ls -l` shows: only entries with an inode are live.
    let live = |name: &str| {
        listing.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next().is_some_and(|ino| ino != "0") && words.last() == Some(name)
        })
    };
    assert!(
        live("some-longer-file-name-399") && !live("some-longer-file-name-398"),
        "{listing}"
    );
}

/// Files made by e2fsprogs (`mke2fs -d` from a host directory) read back through the library.
#[test]
fn reads_what_mke2fs_wrote() {
    let root = std::env::temp_dir().join(format!("starina-ext2-src-{}", std::process::id()));
    std::fs::create_dir_all(root.join("a/b/c")).unwrap();
    let big = pattern(11, 3 << 20);
    std::fs::write(root.join("a/big"), &big).unwrap();
    std::fs::write(root.join("a/b/c/small"), b"hello").unwrap();
    std::fs::hard_link(root.join("a/b/c/small"), root.join("hard")).unwrap();
    std::os::unix::fs::symlink("a/b/c/small", root.join("fast")).unwrap();
    let long_target = format!("/a/b/c/../c/{}", "./".repeat(60)) + "small";
    std::os::unix::fs::symlink(&long_target, root.join("slow")).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(40 << 20).unwrap();
    std::os::unix::fs::FileExt::write_at(&sparse, b"end", (40 << 20) - 3).unwrap();
    drop(sparse);
    let root_arg = root.to_str().unwrap().to_string();
    let image = Image::new(16 * 1024, &["-b", "4096", "-d", &root_arg]);
    std::fs::remove_dir_all(&root).unwrap();
    let mut fs = image.mount();
    let big_ino = fs.resolve(b"/a/big", true).unwrap();
    assert_eq!(read_all(&mut fs, big_ino), big);
    let small = fs.resolve(b"/a/b/c/small", true).unwrap();
    assert_eq!(fs.stat(small).unwrap().nlink, 2);
    assert_eq!(fs.resolve(b"/hard", true).unwrap(), small);
    assert_eq!(fs.resolve(b"/fast", true).unwrap(), small);
    let slow = fs.resolve(b"/slow", false).unwrap();
    assert_eq!(fs.readlink(slow).unwrap(), long_target.as_bytes());
    assert_eq!(fs.resolve(b"/slow", true).unwrap(), small);
    let sparse = fs.resolve(b"/sparse", true).unwrap();
    let stat = fs.stat(sparse).unwrap();
    assert_eq!(stat.size, 40 << 20);
    assert!(stat.blocks <= 3 * 8, "{} sectors", stat.blocks);
    let mut tail = [0u8; 6];
    fs.read(sparse, (40 << 20) - 6, &mut tail).unwrap();
    assert_eq!(&tail, b"\0\0\0end");
    fs.unlink(ROOT_INO, b"hard").unwrap();
    fs.write(big_ino, 1 << 20, b"changed").unwrap();
    image.unmount(fs);
    image.assert_clean();
    assert_eq!(
        &image.debugfs("cat /a/big")[(1 << 20)..(1 << 20) + 7],
        b"changed"
    );
}

/// A file with an extended attribute block (set by debugfs): freeing it frees the block.
#[test]
fn xattr_block_is_freed_with_its_file() {
    let image = Image::new(4 * 1024, &["-I", "128"]);
    let mut fs = image.mount();
    let file = fs
        .create(ROOT_INO, b"f", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    fs.write(file, 0, b"data").unwrap();
    image.unmount(fs);
    let out = std::process::Command::new("/usr/sbin/debugfs")
        .args(["-w", "-R", "ea_set /f user.test somevalue"])
        .arg(&image.path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stat = String::from_utf8(image.debugfs("stat /f")).unwrap();
    assert!(!stat.contains("File ACL: 0"), "no xattr block: {stat}");
    let mut fs = image.mount();
    let free_before = fs.statfs().free_blocks;
    assert_eq!(fs.stat(file).unwrap().blocks, 4);
    fs.unlink(ROOT_INO, b"f").unwrap();
    fs.sync().unwrap();
    assert_eq!(fs.statfs().free_blocks, free_before + 2);
    image.unmount(fs);
    image.assert_clean();
}
