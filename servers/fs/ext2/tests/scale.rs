//! Large directories and files larger than the block cache.

mod common;

use std::time::Instant;

use common::pattern;
use common::read_all;
use common::Image;
use starina_ext2::FileType;
use starina_ext2::FsError;
use starina_ext2::ROOT_INO;

#[test]
fn hundred_thousand_entries() {
    const N: usize = 100_000;
    let image = Image::new(64 * 1024, &["-N", "110000", "-I", "128"]);
    let mut fs = image.mount();
    let dir = fs.mkdir(ROOT_INO, b"many", 0o755, 0, 0).unwrap();
    let name = |i: usize| format!("entry-{i:06}");
    let start = Instant::now();
    for i in 0..N {
        fs.create(dir, name(i).as_bytes(), FileType::Regular, 0o644, 0, 0)
            .unwrap();
    }
    let created = start.elapsed();
    for i in (0..N).rev() {
        fs.lookup(dir, name(i).as_bytes()).unwrap();
    }
    let looked_up = start.elapsed();
    fs.sync().unwrap();
    let mut count = 0;
    let mut cookie = 0;
    loop {
        let batch = fs.readdir(dir, cookie, 1000).unwrap();
        let Some(last) = batch.last() else { break };
        cookie = last.cookie;
        count += batch.len();
    }
    assert_eq!(count, N + 2);
    let listed = start.elapsed();
    for i in 0..N {
        fs.unlink(dir, name(i).as_bytes()).unwrap();
    }
    let removed = start.elapsed();
    assert_eq!(fs.lookup(dir, name(5).as_bytes()), Err(FsError::NotFound));
    fs.rmdir(ROOT_INO, b"many").unwrap();
    image.unmount(fs);
    eprintln!(
        "{N} entries: create {:.2?}, lookup {:.2?}, readdir {:.2?}, unlink {:.2?}, total {:.2?}",
        created,
        looked_up - created,
        listed - looked_up,
        removed - listed,
        start.elapsed()
    );
    image.assert_clean();
}

/// A file several times the cache: dirty blocks are written back between operations.
#[test]
fn file_larger_than_the_cache() {
    let image = Image::new(64 * 1024, &["-b", "4096"]);
    let mut fs = image.mount();
    let file = fs
        .create(ROOT_INO, b"big", FileType::Regular, 0o644, 0, 0)
        .unwrap();
    let data = pattern(9, 24 << 20);
    for (i, chunk) in data.chunks(1 << 20).enumerate() {
        fs.write(file, (i << 20) as u64, chunk).unwrap();
    }
    assert_eq!(read_all(&mut fs, file), data);
    let writes = fs.device_mut().writes;
    image.unmount(fs);
    image.assert_clean();
    assert_eq!(image.debugfs("cat /big"), data);
    // Write-back and cold reads go out in runs of up to MAX_REQUEST_BYTES, not block by block.
    let blocks = data.len() / 4096;
    assert!(
        writes < blocks / 4,
        "{writes} write requests for {blocks} blocks"
    );
    let mut fs = image.mount();
    let reads_before = fs.device_mut().reads;
    assert_eq!(read_all(&mut fs, file), data);
    let reads = fs.device_mut().reads - reads_before;
    assert!(
        reads < blocks / 8,
        "{reads} read requests for {blocks} blocks"
    );
    eprintln!("{blocks} blocks: {writes} write requests, {reads} cold read requests");
    image.unmount(fs);
    // Streamed in 16 KiB pieces (what the fs protocol carries): sequential reads read
    // ahead, so the device still sees long runs, not one request per piece.
    let mut fs = image.mount();
    let reads_before = fs.device_mut().reads;
    let mut streamed = Vec::with_capacity(data.len());
    let mut piece = vec![0u8; 16 * 1024];
    loop {
        let n = fs.read(file, streamed.len() as u64, &mut piece).unwrap();
        if n == 0 {
            break;
        }
        streamed.extend_from_slice(&piece[..n]);
    }
    assert!(streamed == data, "the streamed file differs");
    let reads = fs.device_mut().reads - reads_before;
    let pieces = data.len() / piece.len();
    assert!(
        reads < pieces / 4,
        "{reads} read requests for {pieces} sequential 16 KiB reads"
    );
    eprintln!("{pieces} sequential 16 KiB reads: {reads} read requests");
}
