//! The native file system, end to end: `starina::fs` through the fs
//! server, ext2 and the virtio-blk driver onto the test disk (a fresh
//! ext2 image the host made for this boot). Each test works in its own
//! directory.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use starina::fs::ErrorKind;
use starina::fs::FileType;
use starina::fs::Files;
use starina::fs::FsError;
use starina::fs::OpenOptions;
use starina::fs::SetAttr;
use starina::Message;

use super::wait_message;
use super::Ctx;
use super::Received;
use super::TestResult;

fn fs(cx: &mut Ctx) -> Result<&mut Files, String> {
    cx.files.as_mut().ok_or_else(|| "no fs client".to_string())
}

/// `r` failed with `kind`.
fn expect_kind<T: core::fmt::Debug>(
    r: Result<T, FsError>,
    kind: ErrorKind,
    what: &str,
) -> TestResult {
    match r {
        Err(e) if e.kind == kind => Ok(()),
        other => Err(format!("{what}: expected {kind:?}, got {other:?}")),
    }
}

fn ok<T>(r: Result<T, FsError>, what: &str) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// A fresh directory for a test.
fn test_dir(files: &mut Files, name: &str) -> Result<String, String> {
    let dir = format!("/{name}");
    ok(files.create_dir(&dir, 0o755), "mkdir")?;
    Ok(dir)
}

pub fn files_write_read_stat(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "rw")?;
    let path = format!("{dir}/a.txt");
    let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    ok(files.write(&path, &data), "write")?;
    let back = ok(files.read(&path), "read")?;
    check!(
        back == data,
        "read back {} bytes, not the {} written",
        back.len(),
        data.len()
    );
    let stat = ok(files.stat(&path), "stat")?;
    check!(
        stat.kind == FileType::Regular && stat.size == data.len() as u64,
        "stat: {stat:?}"
    );
    check!(
        stat.mode == 0o644 && stat.nlink == 1,
        "mode/nlink: {stat:?}"
    );
    check!(
        stat.mtime > 1_600_000_000,
        "mtime {} is not the wall clock",
        stat.mtime
    );
    // Overwrite in the middle, past the end (a hole), then read both.
    let mut file = ok(
        files.open(&path, OpenOptions::write().and_read()),
        "open rw",
    )?;
    ok(file.write_all_at(10, b"MIDDLE"), "write middle")?;
    ok(file.write_all_at(200_000, b"END"), "write past end")?;
    let mut buf = [0u8; 6];
    ok(file.read_at(10, &mut buf), "read middle")?;
    check!(&buf == b"MIDDLE", "middle reads {buf:?}");
    let mut hole = [1u8; 64];
    let n = ok(file.read_at(150_000, &mut hole), "read hole")?;
    check!(
        n == 64 && hole.iter().all(|&b| b == 0),
        "the hole reads {:?}",
        &hole[..n]
    );
    let size = ok(file.stat(), "fstat")?.size;
    check!(size == 200_003, "size after writing past the end: {size}");
    ok(file.set_len(5), "truncate")?;
    let short = ok(files.read(&path), "read truncated")?;
    check!(short == data[..5], "after truncate: {short:?}");
    Ok(())
}

pub fn files_directories(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "dirs")?;
    let count = 300;
    for i in 0..count {
        ok(
            files.write(&format!("{dir}/file-{i:04}"), format!("{i}").as_bytes()),
            "create",
        )?;
    }
    ok(files.create_dir(&format!("{dir}/sub"), 0o700), "mkdir sub")?;
    let entries = ok(files.read_dir(&dir), "read_dir")?;
    let mut names: Vec<String> = entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.name).into_owned())
        .collect();
    names.sort();
    check!(
        names.len() == count + 3,
        "{} entries, expected {}",
        names.len(),
        count + 3
    );
    check!(
        names.iter().any(|n| n == ".") && names.iter().any(|n| n == ".."),
        "no . or .."
    );
    check!(
        names.contains(&"file-0299".to_string()) && names.contains(&"sub".to_string()),
        "entries missing"
    );
    let sub = entries
        .iter()
        .find(|e| e.name == b"sub")
        .ok_or("sub missing")?;
    check!(sub.kind == FileType::Directory, "sub is {:?}", sub.kind);
    let stat = ok(files.stat(&format!("{dir}/sub")), "stat sub")?;
    check!(stat.mode == 0o700 && stat.nlink == 2, "sub: {stat:?}");
    expect_kind(
        files.remove_dir(&dir),
        ErrorKind::NotEmpty,
        "rmdir non-empty",
    )?;
    expect_kind(
        files.remove_file(&format!("{dir}/sub")),
        ErrorKind::IsADirectory,
        "unlink a dir",
    )?;
    expect_kind(
        files.remove_dir(&format!("{dir}/file-0001")),
        ErrorKind::NotADirectory,
        "rmdir a file",
    )?;
    for i in 0..count {
        ok(files.remove_file(&format!("{dir}/file-{i:04}")), "unlink")?;
    }
    ok(files.remove_dir(&format!("{dir}/sub")), "rmdir sub")?;
    ok(files.remove_dir(&dir), "rmdir")?;
    expect_kind(files.stat(&dir), ErrorKind::NotFound, "stat removed dir")
}

pub fn files_rename_replaces(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "rename")?;
    let (a, b) = (format!("{dir}/a"), format!("{dir}/b"));
    ok(files.write(&a, b"new contents"), "write a")?;
    ok(files.write(&b, b"old"), "write b")?;
    let mut reader = ok(files.open(&b, &OpenOptions::read()), "open old b")?;
    ok(files.rename(&a, &b), "rename over b")?;
    check!(
        ok(files.read(&b), "read b")? == b"new contents",
        "b is not the renamed file"
    );
    expect_kind(files.stat(&a), ErrorKind::NotFound, "a after rename")?;
    // The replaced file lives on for whoever had it open.
    let mut buf = [0u8; 3];
    let n = ok(reader.read_at(0, &mut buf), "read the replaced file")?;
    check!(
        &buf[..n] == b"old",
        "the replaced file reads {:?}",
        &buf[..n]
    );
    // A directory cannot move into itself.
    ok(files.create_dir(&format!("{dir}/d"), 0o755), "mkdir d")?;
    expect_kind(
        files.rename(&format!("{dir}/d"), &format!("{dir}/d/e")),
        ErrorKind::Invalid,
        "dir into itself",
    )
}

pub fn files_links_and_attributes(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "links")?;
    let target = format!("{dir}/target");
    ok(files.write(&target, b"through the link"), "write target")?;
    ok(files.symlink("target", &format!("{dir}/sym")), "symlink")?;
    check!(
        ok(files.read_link(&format!("{dir}/sym")), "readlink")? == "target",
        "readlink"
    );
    check!(
        ok(files.read(&format!("{dir}/sym")), "read via symlink")? == b"through the link",
        "symlink read"
    );
    check!(
        ok(files.lstat(&format!("{dir}/sym")), "lstat")?.kind == FileType::Symlink,
        "lstat kind"
    );
    ok(files.hard_link(&target, &format!("{dir}/hard")), "link")?;
    check!(
        ok(files.stat(&target), "stat")?.nlink == 2,
        "nlink after link"
    );
    let attr = SetAttr {
        mode: Some(0o600),
        uid: Some(1000),
        gid: Some(100),
        mtime: Some(1_234_567_890),
        ..SetAttr::default()
    };
    let stat = ok(files.set_attr(&format!("{dir}/hard"), attr), "set_attr")?;
    check!(
        (stat.mode, stat.uid, stat.gid, stat.mtime) == (0o600, 1000, 100, 1_234_567_890),
        "after set_attr: {stat:?}"
    );
    let seen = ok(files.stat(&target), "stat target")?;
    check!(
        seen.mode == 0o600 && seen.uid == 1000,
        "the other name does not see it: {seen:?}"
    );
    // A symlink loop is an error, not a hang.
    ok(
        files.symlink("loop2", &format!("{dir}/loop1")),
        "symlink loop1",
    )?;
    ok(
        files.symlink("loop1", &format!("{dir}/loop2")),
        "symlink loop2",
    )?;
    expect_kind(
        files.stat(&format!("{dir}/loop1")),
        ErrorKind::Loop,
        "stat a symlink loop",
    )
}

pub fn files_unlinked_file_lives_while_open(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "unlinked")?;
    let path = format!("{dir}/f");
    let before = ok(files.statfs(), "statfs")?.free_blocks;
    ok(files.write(&path, &vec![0x5a; 1 << 20]), "write 1 MiB")?;
    let mut file = ok(files.open(&path, &OpenOptions::read()), "open")?;
    ok(files.remove_file(&path), "unlink")?;
    expect_kind(files.stat(&path), ErrorKind::NotFound, "stat unlinked")?;
    let mut buf = [0u8; 4096];
    let n = ok(file.read_at((1 << 20) - 4096, &mut buf), "read unlinked")?;
    check!(
        n == 4096 && buf.iter().all(|&b| b == 0x5a),
        "the open file lost its data"
    );
    drop(file);
    // Its blocks are free once the server has seen the close (a channel
    // event, which may be served after a request on another channel).
    for _ in 0..50 {
        let after = ok(files.statfs(), "statfs")?.free_blocks;
        if after + 4 >= before {
            return Ok(());
        }
        let _ = starina::timer::sleep_ms(20);
    }
    let after = ok(files.statfs(), "statfs")?.free_blocks;
    Err(format!(
        "blocks not freed after close: {before} free before, {after} after"
    ))
}

pub fn files_large_sparse_file(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "sparse")?;
    let path = format!("{dir}/big");
    let mut file = ok(
        files.open(&path, OpenOptions::write().and_read().create()),
        "create",
    )?;
    let far = 5u64 << 30;
    ok(file.write_all_at(far, b"far away"), "write at 5 GiB")?;
    let stat = ok(file.stat(), "stat")?;
    check!(stat.size == far + 8, "size {}", stat.size);
    check!(
        stat.blocks < 64,
        "a sparse 5 GiB file takes {} sectors",
        stat.blocks
    );
    let mut buf = [9u8; 8];
    ok(file.read_at(far, &mut buf), "read far")?;
    check!(&buf == b"far away", "far reads {buf:?}");
    ok(file.read_at(3 << 30, &mut buf), "read the hole")?;
    check!(buf == [0; 8], "the hole reads {buf:?}");
    drop(file);
    ok(files.remove_file(&path), "unlink")
}

pub fn files_errors_are_clear(cx: &mut Ctx) -> TestResult {
    let files = fs(cx)?;
    let dir = test_dir(files, "errors")?;
    expect_kind(
        files.read(&format!("{dir}/missing")),
        ErrorKind::NotFound,
        "open a missing file",
    )?;
    let path = format!("{dir}/once");
    let create_new = || {
        let mut o = OpenOptions::write();
        o.create().exclusive();
        o
    };
    ok(files.open(&path, &create_new()), "create excl").map(drop)?;
    expect_kind(
        files.open(&path, &create_new()),
        ErrorKind::Exists,
        "create excl again",
    )?;
    expect_kind(
        files.open(&dir, &OpenOptions::write()),
        ErrorKind::IsADirectory,
        "open a dir to write",
    )?;
    expect_kind(
        files.create_dir(&dir, 0o755),
        ErrorKind::Exists,
        "mkdir existing",
    )?;
    let long = format!("{dir}/{}", "n".repeat(256));
    expect_kind(
        files.write(&long, b"x"),
        ErrorKind::NameTooLong,
        "a 256-byte name",
    )?;
    expect_kind(
        files.stat(&format!("{path}/below")),
        ErrorKind::NotADirectory,
        "a file as a directory",
    )?;
    let mut read_only = ok(files.open(&path, &OpenOptions::read()), "open read-only")?;
    expect_kind(
        read_only.write_at(0, b"x"),
        ErrorKind::PermissionDenied,
        "write a read-only file",
    )?;
    // Appends go at the end whatever the offset.
    let mut log = ok(
        files.open(&path, OpenOptions::write().append()),
        "open append",
    )?;
    ok(log.write_all_at(0, b"one,"), "append")?;
    ok(log.write_all_at(0, b"two"), "append")?;
    check!(
        ok(files.read(&path), "read")? == b"one,two",
        "appends did not append"
    );
    Ok(())
}

/// Bytes that are not the protocol get a `Malformed` error naming the
/// call (when its id could be read) and the server goes on serving.
pub fn files_malformed_requests(cx: &mut Ctx) -> TestResult {
    let mut buf = core::mem::take(&mut cx.buf);
    let result = malformed_requests(cx, &mut buf);
    cx.buf = buf;
    result
}

fn malformed_requests(cx: &mut Ctx, buf: &mut starina::channel::MessageBuffer) -> TestResult {
    let files = fs(cx)?;
    let garbage: &[&[u8]] = &[
        b"\x01\x07\0\0\0\0\0\0\0\xff\xff/", // stat: a path length past the end
        b"\x63\x08\0\0\0",                  // an unknown op
        b"\x03\x09\0\0\0\0\0\0\0\x01\0/\x01", // mkdir: the mode cut short
    ];
    for (i, body) in garbage.iter().enumerate() {
        let call_id = u32::from_le_bytes([body[1], body[2], body[3], body[4]]);
        files
            .channel()
            .send_data(body)
            .map_err(|e| format!("send: {e}"))?;
        match files.channel().recv_within(buf, 10_000) {
            Ok(Some(Message::Error {
                call_id: id, code, ..
            })) => {
                check!(
                    id == call_id && code == ErrorKind::Malformed as u16,
                    "garbage {i}: error {code} for call {id}"
                );
            }
            other => return Err(format!("garbage {i}: got {other:?}")),
        }
    }
    // Too short to name a call: dropped; an Open with a bad URI: an error.
    files
        .channel()
        .send_data(b"\x01")
        .map_err(|e| format!("send: {e}"))?;
    let open = Message::Open {
        call_id: 77,
        uri: "relative/path",
        handle: None,
    };
    files
        .channel()
        .send(open)
        .map_err(|e| format!("send: {}", e.error))?;
    match wait_message(files.channel(), buf, 10_000) {
        Ok(Received::Other(kind)) => check!(
            kind == starina::message::MessageKind::Error,
            "bad URI: {kind:?}"
        ),
        Ok(_) => return Err("bad URI: not an error".into()),
        Err(e) => return Err(format!("bad URI: {e}")),
    }
    ok(files.statfs(), "the server still serves").map(drop)
}
