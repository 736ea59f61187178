//! The FUSE server against the in-memory backend: each op as the Linux
//! kernel sends it, and malformed requests.

use alloc::vec::Vec;

use super::backend::Errno;
use super::memfs::MemFs;
use super::memfs::ROOT;
use super::protocol::opcode::*;
use super::protocol::*;
use super::server::FuseServer;
use super::server::MAX_COPY;
use super::server::MAX_HANDLES;
use super::server::MAX_WRITE;

const UID: u32 = 1000;
const GID: u32 = 100;
const ROOM: usize = 1 << 20;

struct Client {
    srv: FuseServer<MemFs>,
    unique: u64,
}

fn request(opcode: u32, unique: u64, nodeid: u64, body: &[u8]) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32((IN_HEADER_LEN + body.len()) as u32)
        .u32(opcode)
        .u64(unique)
        .u64(nodeid)
        .u32(UID)
        .u32(GID)
        .u32(42)
        .u16(0)
        .u16(0)
        .bytes(body);
    w.0
}

fn name(n: &[u8]) -> Vec<u8> {
    let mut v = n.to_vec();
    v.push(0);
    v
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// (nodeid, ino, mode, uid, gid, size, nlink) of a fuse_entry_out.
type Entry = (u64, u64, u32, u32, u32, u64, u32);

fn entry(b: &[u8]) -> Entry {
    let a = 40;
    (
        le64(b, 0),
        le64(b, a),
        le32(b, a + 60),
        le32(b, a + 68),
        le32(b, a + 72),
        le64(b, a + 8),
        le32(b, a + 64),
    )
}

fn read_in(fh: u64, offset: u64, size: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(fh).u64(offset).u32(size).bytes(&[0; 20]);
    w.0
}

fn setattr_in(valid: u32, size: u64, mtime: u64, mode: u32, uid: u32, gid: u32) -> Vec<u8> {
    let mut w = Writer::default();
    w.u32(valid)
        .u32(0)
        .u64(0)
        .u64(size)
        .u64(0)
        .u64(0)
        .u64(mtime)
        .u64(0);
    w.u32(0)
        .u32(0)
        .u32(0)
        .u32(mode)
        .u32(0)
        .u32(uid)
        .u32(gid)
        .u32(0);
    w.0
}

impl Client {
    fn new() -> Client {
        let mut c = Client {
            srv: FuseServer::new(MemFs::new()),
            unique: 0,
        };
        let mut w = Writer::default();
        w.u32(7).u32(41).u32(65536).u32(u32::MAX).bytes(&[0; 48]);
        let init = c.call(INIT, 0, &w.0).unwrap();
        assert_eq!(init.len(), 64);
        assert_eq!((le32(&init, 0), le32(&init, 4)), (7, 31));
        c
    }

    /// Sends a request; the reply body, or the errno.
    fn call(&mut self, opcode: u32, nodeid: u64, body: &[u8]) -> Result<Vec<u8>, i32> {
        self.unique += 1;
        let reply = self
            .srv
            .handle(&request(opcode, self.unique, nodeid, body), ROOM);
        check_reply(&reply, self.unique)
    }

    /// Sends a request that has no reply (FORGET).
    fn no_reply(&mut self, opcode: u32, nodeid: u64, body: &[u8]) {
        self.unique += 1;
        let req = request(opcode, self.unique, nodeid, body);
        assert!(self.srv.handle(&req, ROOM).is_empty());
    }

    fn lookup(&mut self, dir: u64, n: &[u8]) -> Result<Entry, i32> {
        self.call(LOOKUP, dir, &name(n)).map(|b| entry(&b))
    }

    fn create(&mut self, dir: u64, n: &[u8], mode: u32) -> (u64, u64) {
        let mut w = Writer::default();
        w.u32(2).u32(mode).u32(0o022).u32(0).bytes(&name(n));
        let b = self.call(CREATE, dir, &w.0).unwrap();
        assert_eq!(b.len(), 128 + 16);
        (entry(&b).0, le64(&b, 128))
    }

    fn open(&mut self, nodeid: u64, flags: u32) -> Result<u64, i32> {
        let mut w = Writer::default();
        w.u32(flags).u32(0);
        self.call(OPEN, nodeid, &w.0).map(|b| le64(&b, 0))
    }

    fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> Result<u32, i32> {
        let mut w = Writer::default();
        w.u64(fh)
            .u64(offset)
            .u32(data.len() as u32)
            .bytes(&[0; 20])
            .bytes(data);
        self.call(WRITE, 0, &w.0).map(|b| le32(&b, 0))
    }

    fn getattr(&mut self, nodeid: u64) -> Result<(u32, u64, u32), i32> {
        let b = self.call(GETATTR, nodeid, &[0; 16])?;
        assert_eq!(b.len(), 104);
        Ok((le32(&b, 16 + 60), le64(&b, 16 + 8), le32(&b, 16 + 64)))
    }

    fn mkdir(&mut self, dir: u64, n: &[u8], mode: u32) -> Result<u64, i32> {
        let mut w = Writer::default();
        w.u32(mode).u32(0o022).bytes(&name(n));
        self.call(MKDIR, dir, &w.0).map(|b| entry(&b).0)
    }

    /// Names in a directory by READDIR (or READDIRPLUS), resuming by
    /// offset until the empty reply.
    fn list(&mut self, dir: u64, plus: bool) -> Vec<Vec<u8>> {
        let fh = le64(&self.call(OPENDIR, dir, &[0; 8]).unwrap(), 0);
        let (op, lead) = if plus {
            (READDIRPLUS, 128)
        } else {
            (READDIR, 0)
        };
        let mut names = Vec::new();
        let mut offset = 0;
        loop {
            let b = self.call(op, dir, &read_in(fh, offset, 4096)).unwrap();
            if b.is_empty() {
                break;
            }
            let mut at = 0;
            while at < b.len() {
                let d = at + lead;
                let len = le32(&b, d + 16) as usize;
                names.push(b[d + 24..d + 24 + len].to_vec());
                offset = le64(&b, d + 8);
                at = d + dirent_len(len);
            }
        }
        self.call(RELEASEDIR, dir, &cat(&[&fh.to_le_bytes(), &[0; 16]]))
            .unwrap();
        names
    }
}

/// Checks the out_header (length, unique) and splits the result.
fn check_reply(reply: &[u8], unique: u64) -> Result<Vec<u8>, i32> {
    assert!(reply.len() >= OUT_HEADER_LEN);
    assert_eq!(le32(reply, 0) as usize, reply.len());
    assert_eq!(le64(reply, 8), unique);
    match le32(reply, 4) as i32 {
        0 => Ok(reply[OUT_HEADER_LEN..].to_vec()),
        e => {
            assert_eq!(reply.len(), OUT_HEADER_LEN);
            Err(-e)
        }
    }
}

#[test]
fn init_first_and_version_checked() {
    let mut srv = FuseServer::new(MemFs::new());
    let r = srv.handle(&request(GETATTR, 1, 1, &[0; 16]), ROOM);
    assert_eq!(check_reply(&r, 1), Err(Errno::EIO.0));
    let mut w = Writer::default();
    w.u32(8).u32(0).u32(0).u32(0);
    let r = srv.handle(&request(INIT, 2, 0, &w.0), ROOM);
    assert_eq!(check_reply(&r, 2), Err(Errno::EPROTO.0));
    // Flags: only those the kernel offered.
    let mut w = Writer::default();
    w.u32(7).u32(41).u32(0).u32(init_flags::BIG_WRITES);
    let r = check_reply(&srv.handle(&request(INIT, 3, 0, &w.0), ROOM), 3).unwrap();
    assert_eq!(le32(&r, 12), init_flags::BIG_WRITES);
}

/// Offered MAX_PAGES, the server takes requests of up to MAX_WRITE: 256
/// pages, and says so.
#[test]
fn init_takes_one_mib_requests_when_offered() {
    let mut srv = FuseServer::new(MemFs::new());
    let mut w = Writer::default();
    let offered = init_flags::BIG_WRITES | init_flags::MAX_PAGES;
    w.u32(7).u32(41).u32(128 * 1024).u32(offered);
    let r = check_reply(&srv.handle(&request(INIT, 1, 0, &w.0), ROOM), 1).unwrap();
    assert_eq!(le32(&r, 12), offered);
    assert_eq!(le32(&r, 20), MAX_WRITE);
    assert_eq!(u16::from_le_bytes([r[28], r[29]]), 256);
}

#[test]
fn root_getattr() {
    let mut c = Client::new();
    let (mode, _, nlink) = c.getattr(1).unwrap();
    assert_eq!(mode, mode::S_IFDIR | 0o755);
    assert_eq!(nlink, 2);
}

#[test]
fn create_write_read_with_caller_owner() {
    let mut c = Client::new();
    let (node, fh) = c.create(1, b"hello.txt", mode::S_IFREG | 0o640);
    let (_, ino, m, uid, gid, _, _) = c.lookup(1, b"hello.txt").unwrap();
    assert_eq!((ino, m, uid, gid), (node, mode::S_IFREG | 0o640, UID, GID));
    assert_eq!(c.write(fh, 0, b"hello, world").unwrap(), 12);
    assert_eq!(c.write(fh, 7, b"fuse!").unwrap(), 5);
    let b = c.call(READ, node, &read_in(fh, 0, 100)).unwrap();
    assert_eq!(b, b"hello, fuse!");
    let b = c.call(READ, node, &read_in(fh, 7, 3)).unwrap();
    assert_eq!(b, b"fus");
    assert_eq!(c.getattr(node).unwrap().1, 12);
    c.call(FLUSH, node, &[0; 24]).unwrap();
    c.call(FSYNC, node, &cat(&[&fh.to_le_bytes(), &[0; 8]]))
        .unwrap();
    assert_eq!(c.srv.backend_mut().syncs, 1);
    // A guest `sync`: the whole file system.
    c.call(SYNCFS, 1, &[0; 8]).unwrap();
    assert_eq!(c.srv.backend_mut().syncs, 2);
    assert_eq!(c.call(SYNCFS, 1, &[0; 3]), Err(Errno::EINVAL.0));
    c.call(RELEASE, node, &cat(&[&fh.to_le_bytes(), &[0; 16]]))
        .unwrap();
    assert_eq!(c.srv.open_handles(), 0);
    // The handle is gone.
    assert_eq!(c.write(fh, 0, b"x"), Err(Errno::EBADF.0));
    // Append mode writes at the end whatever the offset.
    let fh = c
        .open(node, open_flags::O_WRONLY | open_flags::O_APPEND)
        .unwrap();
    c.write(fh, 0, b"++").unwrap();
    assert_eq!(c.srv.backend_mut().data_of(node), b"hello, fuse!++");
    // Read-only handle refuses writes; CREATE O_EXCL of an existing name.
    let ro = c.open(node, 0).unwrap();
    assert_eq!(c.write(ro, 0, b"x"), Err(Errno::EBADF.0));
    let mut w = Writer::default();
    w.u32(2 | open_flags::O_EXCL)
        .u32(0o644)
        .u32(0)
        .u32(0)
        .bytes(&name(b"hello.txt"));
    assert_eq!(c.call(CREATE, 1, &w.0), Err(Errno::EEXIST.0));
}

#[test]
fn directories_links_and_renames() {
    let mut c = Client::new();
    let d = c.mkdir(1, b"d", 0o750).unwrap();
    let (_, _, m, uid, _, _, _) = c.lookup(1, b"d").unwrap();
    assert_eq!((m, uid), (mode::S_IFDIR | 0o750, UID));
    assert_eq!(c.mkdir(1, b"d", 0o750), Err(Errno::EEXIST.0));
    let (f, _) = c.create(d, b"f", 0o644);
    // Symlink: name first, then the target.
    let b = c
        .call(SYMLINK, d, &cat(&[&name(b"s"), &name(b"../f")]))
        .unwrap();
    let s = entry(&b).0;
    assert_eq!(entry(&b).2, mode::S_IFLNK | 0o777);
    assert_eq!(c.call(READLINK, s, &[]).unwrap(), b"../f");
    assert_eq!(c.call(READLINK, f, &[]), Err(Errno::EINVAL.0));
    // Hard link.
    let b = c
        .call(LINK, 1, &cat(&[&f.to_le_bytes(), &name(b"hard")]))
        .unwrap();
    assert_eq!(entry(&b).0, f);
    assert_eq!(entry(&b).6, 2);
    // Rename over an existing file.
    c.create(1, b"victim", 0o644);
    let rename = |from: &[u8], to: &[u8]| cat(&[&d.to_le_bytes(), &name(from), &name(to)]);
    c.call(RENAME, d, &rename(b"f", b"g")).unwrap();
    assert_eq!(c.lookup(d, b"f"), Err(Errno::ENOENT.0));
    assert_eq!(c.lookup(d, b"g").unwrap().1, f);
    let over = cat(&[&1u64.to_le_bytes(), &name(b"hard"), &name(b"victim")]);
    c.call(RENAME, 1, &over).unwrap();
    assert_eq!(c.lookup(1, b"victim").unwrap().1, f);
    // RENAME2: NOREPLACE refuses an existing target; EXCHANGE is refused.
    let r2 = |flags: u32, from: &[u8], to: &[u8]| {
        cat(&[
            &d.to_le_bytes(),
            &flags.to_le_bytes(),
            &[0; 4],
            &name(from),
            &name(to),
        ])
    };
    assert_eq!(c.call(RENAME2, d, &r2(1, b"g", b"s")), Err(Errno::EEXIST.0));
    assert_eq!(c.call(RENAME2, d, &r2(2, b"g", b"s")), Err(Errno::EINVAL.0));
    c.call(RENAME2, d, &r2(1, b"g", b"h")).unwrap();
    // Unlink, rmdir.
    assert_eq!(c.call(RMDIR, 1, &name(b"d")), Err(Errno::ENOTEMPTY.0));
    c.call(UNLINK, d, &name(b"h")).unwrap();
    c.call(UNLINK, d, &name(b"s")).unwrap();
    assert_eq!(c.call(UNLINK, 1, &name(b"d")), Err(Errno::EISDIR.0));
    c.call(RMDIR, 1, &name(b"d")).unwrap();
    assert_eq!(c.lookup(1, b"d"), Err(Errno::ENOENT.0));
}

#[test]
fn mknod_kinds() {
    let mut c = Client::new();
    let mk = |m: u32, n: &[u8]| cat(&[&m.to_le_bytes(), &[0; 12], &name(n)]);
    let b = c
        .call(MKNOD, 1, &mk(mode::S_IFIFO | 0o600, b"fifo"))
        .unwrap();
    assert_eq!(entry(&b).2, mode::S_IFIFO | 0o600);
    assert_eq!(entry(&b).3, UID);
    assert_eq!(
        c.call(MKNOD, 1, &mk(mode::S_IFDIR | 0o600, b"x")),
        Err(Errno::EINVAL.0)
    );
    assert_eq!(
        c.call(MKNOD, 1, &mk(mode::S_IFLNK | 0o600, b"x")),
        Err(Errno::EINVAL.0)
    );
}

#[test]
fn setattr_each_field() {
    let mut c = Client::new();
    let (node, _) = c.create(1, b"f", 0o644);
    let b = c
        .call(
            SETATTR,
            node,
            &setattr_in(fattr::MODE, 0, 0, 0o100600, 0, 0),
        )
        .unwrap();
    assert_eq!(le32(&b, 16 + 60), mode::S_IFREG | 0o600);
    let b = c
        .call(
            SETATTR,
            node,
            &setattr_in(fattr::UID | fattr::GID, 0, 0, 0, 7, 8),
        )
        .unwrap();
    assert_eq!((le32(&b, 16 + 68), le32(&b, 16 + 72)), (7, 8));
    let b = c
        .call(SETATTR, node, &setattr_in(fattr::SIZE, 5000, 0, 0, 0, 0))
        .unwrap();
    assert_eq!(le64(&b, 16 + 8), 5000);
    let b = c
        .call(SETATTR, node, &setattr_in(fattr::MTIME, 0, 1234, 0, 0, 0))
        .unwrap();
    assert_eq!(le64(&b, 16 + 32), 1234);
    c.srv.backend_mut().clock = 99_999;
    let now = fattr::MTIME | fattr::MTIME_NOW | fattr::ATIME | fattr::ATIME_NOW;
    let b = c
        .call(SETATTR, node, &setattr_in(now, 0, 5, 0, 0, 0))
        .unwrap();
    assert_eq!((le64(&b, 16 + 24), le64(&b, 16 + 32)), (99_999, 99_999));
    // KILL_SUIDGID clears setuid/setgid.
    c.call(SETATTR, node, &setattr_in(fattr::MODE, 0, 0, 0o6755, 0, 0))
        .unwrap();
    let b = c
        .call(
            SETATTR,
            node,
            &setattr_in(fattr::SIZE | fattr::KILL_SUIDGID, 1, 0, 0, 0, 0),
        )
        .unwrap();
    assert_eq!(le32(&b, 16 + 60), mode::S_IFREG | 0o755);
}

#[test]
fn readdir_in_batches_and_plus_counts_lookups() {
    let mut c = Client::new();
    for n in [&b"a"[..], b"b", b"c", b"d", b"e"] {
        c.create(1, n, 0o644);
    }
    let mut expected: Vec<Vec<u8>> = [".", "..", "a", "b", "c", "d", "e"]
        .iter()
        .map(|s| s.as_bytes().to_vec())
        .collect();
    assert_eq!(c.list(1, false), expected);
    let before = c.srv.known_nodes();
    assert_eq!(c.list(1, true), expected);
    // Every entry but "." and ".." was counted once more, none is new.
    assert_eq!(c.srv.known_nodes(), before);
    let a = c.lookup(1, b"a").unwrap().0;
    // The backend holds each node the kernel knows, once.
    assert_eq!(c.srv.backend_mut().held.get(&a), Some(&1));
    // a: CREATE, READDIRPLUS, LOOKUP = 3 lookups; forgetting 2 keeps it.
    c.no_reply(FORGET, a, &2u64.to_le_bytes());
    assert!(c.getattr(a).is_ok());
    assert_eq!(c.srv.backend_mut().held.get(&a), Some(&1));
    let batch = cat(&[
        &1u32.to_le_bytes(),
        &[0; 4],
        &a.to_le_bytes(),
        &1u64.to_le_bytes(),
    ]);
    c.no_reply(BATCH_FORGET, 0, &batch);
    assert_eq!(c.getattr(a), Err(Errno::ESTALE.0));
    // Forgotten: let go.
    assert_eq!(c.srv.backend_mut().held.get(&a), None);
    expected.retain(|n| n != b"a");
    c.call(UNLINK, 1, &name(b"a")).unwrap();
    assert_eq!(c.list(1, false), expected);
    // READDIR on a file handle, OPENDIR of a file.
    let b = c.lookup(1, b"b").unwrap().0;
    let fh = c.open(b, 0).unwrap();
    assert_eq!(
        c.call(READDIR, 1, &read_in(fh, 0, 4096)),
        Err(Errno::ENOTDIR.0)
    );
    assert_eq!(c.call(OPENDIR, b, &[0; 8]), Err(Errno::ENOTDIR.0));
}

#[test]
fn readdir_small_buffer_resumes() {
    let mut c = Client::new();
    c.create(1, b"long-name-number-one", 0o644);
    let fh = le64(&c.call(OPENDIR, 1, &[0; 8]).unwrap(), 0);
    // Room for one 32-byte dirent only.
    let b = c.call(READDIR, 1, &read_in(fh, 0, 40)).unwrap();
    assert_eq!(b.len(), 32);
    assert_eq!(le64(&b, 8), 1);
    let b = c.call(READDIR, 1, &read_in(fh, 1, 40)).unwrap();
    assert_eq!(&b[24..26], b"..");
}

#[test]
fn unknown_nodes_are_stale() {
    let mut c = Client::new();
    let (node, _) = c.create(1, b"f", 0o644);
    // The guest guesses inode numbers it was never given.
    for guess in [3, 7, node + 1, 1000, u64::MAX] {
        assert_eq!(c.getattr(guess), Err(Errno::ESTALE.0), "{guess}");
        assert_eq!(c.open(guess, 0), Err(Errno::ESTALE.0));
    }
    // The backend's root inode (2) is not a node id: 1 is.
    assert_eq!(c.lookup(ROOT, b"f"), Err(Errno::ESTALE.0));
}

#[test]
fn handles_are_bounded() {
    let mut c = Client::new();
    let (node, first) = c.create(1, b"f", 0o644);
    let mut fhs = alloc::vec![first];
    while c.srv.open_handles() < MAX_HANDLES {
        fhs.push(c.open(node, 0).unwrap());
    }
    assert_eq!(c.open(node, 0), Err(Errno::ENFILE.0));
    assert_eq!(c.call(OPENDIR, 1, &[0; 8]), Err(Errno::ENFILE.0));
    let mut w = Writer::default();
    w.u32(2).u32(0o644).u32(0).u32(0).bytes(&name(b"g"));
    assert_eq!(c.call(CREATE, 1, &w.0), Err(Errno::ENFILE.0));
    assert_eq!(c.lookup(1, b"g"), Err(Errno::ENOENT.0), "nothing created");
    c.call(RELEASE, node, &cat(&[&fhs[7].to_le_bytes(), &[0; 16]]))
        .unwrap();
    assert!(c.open(node, 0).is_ok());
    c.call(DESTROY, 0, &[]).unwrap();
    assert_eq!(c.srv.open_handles(), 0);
}

#[test]
fn bad_names() {
    let mut c = Client::new();
    for bad in [&b"a/b"[..], b".", b"..", b""] {
        assert_eq!(c.lookup(1, bad), Err(Errno::EINVAL.0));
        assert_eq!(c.mkdir(1, bad, 0o755), Err(Errno::EINVAL.0));
    }
    assert_eq!(c.lookup(1, &[b'x'; 256]), Err(Errno::ENAMETOOLONG.0));
    assert!(c
        .lookup(1, &[b'x'; 255])
        .is_err_and(|e| e == Errno::ENOENT.0));
    // No NUL at the end.
    assert_eq!(c.call(LOOKUP, 1, b"abc"), Err(Errno::EINVAL.0));
    assert_eq!(c.call(UNLINK, 1, b"abc"), Err(Errno::EINVAL.0));
    // Symlink to a new name "..".
    let body = cat(&[&name(b".."), &name(b"x")]);
    assert_eq!(c.call(SYMLINK, 1, &body), Err(Errno::EINVAL.0));
}

#[test]
fn statfs_fallocate_and_the_rest() {
    let mut c = Client::new();
    let b = c.call(STATFS, 1, &[]).unwrap();
    assert_eq!(b.len(), 80);
    assert_eq!((le64(&b, 0), le64(&b, 16), le32(&b, 40)), (100, 40, 1024));
    c.call(FSYNCDIR, 1, &[0; 16]).unwrap();
    let (node, fh) = c.create(1, b"f", 0o644);
    let fa = |mode: u32, offset: u64, len: u64| {
        cat(&[
            &fh.to_le_bytes(),
            &offset.to_le_bytes(),
            &len.to_le_bytes(),
            &mode.to_le_bytes(),
            &[0; 4],
        ])
    };
    c.call(FALLOCATE, node, &fa(0, 100, 4000)).unwrap();
    assert_eq!(c.getattr(node).unwrap().1, 4100);
    assert_eq!(blocks(&mut c, node), 9, "written, not a hole");
    c.call(FALLOCATE, node, &fa(0, 0, 10)).unwrap();
    assert_eq!(c.getattr(node).unwrap().1, 4100, "never shrinks");
    assert_eq!(
        c.call(FALLOCATE, node, &fa(1, 0, 10)),
        Err(Errno::EOPNOTSUPP.0)
    );
    assert_eq!(
        c.call(FALLOCATE, node, &fa(0, u64::MAX, 10)),
        Err(Errno::EFBIG.0)
    );
    for op in [
        ACCESS,
        LSEEK,
        GETXATTR,
        LISTXATTR,
        SETXATTR,
        REMOVEXATTR,
        31,
        39,
        9999,
    ] {
        assert_eq!(c.call(op, 1, &[0; 64]), Err(Errno::ENOSYS.0), "opcode {op}");
    }
}

#[test]
fn read_bounded_by_reply_room() {
    let mut c = Client::new();
    let (node, fh) = c.create(1, b"f", 0o644);
    c.write(fh, 0, &[7; 1000]).unwrap();
    c.unique += 1;
    let reply = c.srv.handle(
        &request(READ, c.unique, node, &read_in(fh, 0, 1000)),
        16 + 300,
    );
    assert_eq!(check_reply(&reply, c.unique).unwrap().len(), 300);
}

#[test]
fn malformed_requests() {
    let mut c = Client::new();
    // Header length lies, both ways.
    let mut r = request(GETATTR, 77, 1, &[0; 16]);
    r[0] = 200;
    assert_eq!(
        check_reply(&c.srv.handle(&r, ROOM), 77),
        Err(Errno::EINVAL.0)
    );
    r[0] = 10;
    assert_eq!(
        check_reply(&c.srv.handle(&r, ROOM), 77),
        Err(Errno::EINVAL.0)
    );
    // Extensions longer than the body.
    let mut r = request(GETATTR, 78, 1, &[0; 16]);
    r[36] = 3;
    assert_eq!(
        check_reply(&c.srv.handle(&r, ROOM), 78),
        Err(Errno::EINVAL.0)
    );
    // WRITE whose size is not the data's.
    let mut w = Writer::default();
    w.u64(1).u64(0).u32(100).bytes(&[0; 20]).bytes(b"short");
    assert_eq!(c.call(WRITE, 1, &w.0), Err(Errno::EINVAL.0));
    // BATCH_FORGET promising more than it holds.
    let b = cat(&[&1000u32.to_le_bytes(), &[0; 4], &[0; 16]]);
    assert_eq!(c.call(BATCH_FORGET, 0, &b), Err(Errno::EINVAL.0));
    // Every op with a truncated fixed part.
    for op in [
        INIT,
        FORGET,
        SETATTR,
        MKNOD,
        MKDIR,
        RENAME,
        RENAME2,
        LINK,
        OPEN,
        READ,
        WRITE,
        RELEASE,
        FSYNC,
        FLUSH,
        OPENDIR,
        READDIR,
        READDIRPLUS,
        RELEASEDIR,
        FSYNCDIR,
        CREATE,
        FALLOCATE,
    ] {
        assert_eq!(c.call(op, 1, &[0; 3]), Err(Errno::EINVAL.0), "opcode {op}");
    }
    // Shorter than a header: an error with unique 0.
    let r = c.srv.handle(&[1, 2, 3], ROOM);
    assert_eq!(check_reply(&r, 0), Err(Errno::EINVAL.0));
}

#[test]
fn random_requests_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut c = Client::new();
    let (node, fh) = c.create(1, b"f", 0o644);
    let ops = [
        LOOKUP,
        FORGET,
        GETATTR,
        SETATTR,
        READLINK,
        SYMLINK,
        MKNOD,
        MKDIR,
        UNLINK,
        RMDIR,
        RENAME,
        LINK,
        OPEN,
        READ,
        WRITE,
        STATFS,
        RELEASE,
        FSYNC,
        FLUSH,
        OPENDIR,
        READDIR,
        RELEASEDIR,
        FSYNCDIR,
        SYNCFS,
        CREATE,
        BATCH_FORGET,
        FALLOCATE,
        READDIRPLUS,
        RENAME2,
        INIT,
        DESTROY,
    ];
    for i in 0..20_000 {
        let op = ops[(next() % ops.len() as u64) as usize];
        let len = (next() % 120) as usize;
        let mut body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Often plausible handles, nodes and names.
        if next() % 2 == 0 && body.len() >= 8 {
            body[..8].copy_from_slice(&[fh, node, 1][(next() % 3) as usize].to_le_bytes());
        }
        if next() % 2 == 0 {
            body.extend_from_slice(b"n\0");
        }
        let nodeid = [1, node, next()][(next() % 3) as usize];
        let mut req = request(op, i, nodeid, &body);
        if next() % 8 == 0 {
            let cut = (next() as usize) % req.len();
            req.truncate(cut);
        }
        let reply = c.srv.handle(&req, (next() % 4096) as usize);
        if !reply.is_empty() {
            assert_eq!(le32(&reply, 0) as usize, reply.len());
        }
        if op == DESTROY || op == INIT {
            c = Client::new();
        }
    }
}

#[test]
fn handle_limit_is_settable() {
    let mut c = Client::new();
    c.srv.set_max_handles(2);
    let (node, _) = c.create(1, b"f", 0o644);
    c.open(node, 0).unwrap();
    assert_eq!(c.open(node, 0), Err(Errno::ENFILE.0));
}

fn copy_in(fh_in: u64, off_in: u64, node_out: u64, fh_out: u64, off_out: u64, len: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(fh_in)
        .u64(off_in)
        .u64(node_out)
        .u64(fh_out)
        .u64(off_out)
        .u64(len)
        .u64(0);
    w.0
}

/// Reads a whole file of `size` bytes by READs of 128 KiB.
fn read_whole(c: &mut Client, node: u64, fh: u64, size: u64) -> Vec<u8> {
    let mut out = Vec::new();
    while (out.len() as u64) < size {
        let b = c
            .call(READ, node, &read_in(fh, out.len() as u64, 128 * 1024))
            .unwrap();
        assert!(!b.is_empty(), "short file");
        out.extend_from_slice(&b);
    }
    out
}

#[test]
fn copy_file_range_copies_between_handles() {
    let mut c = Client::new();
    let (src, src_fh) = c.create(1, b"src", 0o644);
    let (dst, dst_fh) = c.create(1, b"dst", 0o644);
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    for (i, piece) in bytes.chunks(100_000).enumerate() {
        c.write(src_fh, i as u64 * 100_000, piece).unwrap();
    }
    c.write(dst_fh, 0, b"0123456789").unwrap();
    // More than one READ's worth, into the middle of the destination.
    let b = c
        .call(
            COPY_FILE_RANGE,
            src,
            &copy_in(src_fh, 1000, dst, dst_fh, 5, 250_000),
        )
        .unwrap();
    assert_eq!(b.len(), 8);
    assert_eq!(le32(&b, 0), 250_000);
    assert_eq!(c.getattr(dst).unwrap().1, 250_005);
    let got = read_whole(&mut c, dst, dst_fh, 250_005);
    assert_eq!(&got[..5], b"01234");
    assert!(got[5..] == bytes[1000..251_000], "copied bytes differ");
    // Short at the end of the source; nothing past it.
    let b = c
        .call(
            COPY_FILE_RANGE,
            src,
            &copy_in(src_fh, 299_000, dst, dst_fh, 0, 5000),
        )
        .unwrap();
    assert_eq!(le32(&b, 0), 1000);
    let b = c
        .call(
            COPY_FILE_RANGE,
            src,
            &copy_in(src_fh, 400_000, dst, dst_fh, 0, 5000),
        )
        .unwrap();
    assert_eq!(le32(&b, 0), 0);
    // At most MAX_COPY a request (the caller loops).
    let (big, big_fh) = c.create(1, b"big", 0o644);
    let chunk = [9u8; 128 * 1024];
    let mut at = 0;
    while at < MAX_COPY + 4096 {
        c.write(big_fh, at, &chunk).unwrap();
        at += chunk.len() as u64;
    }
    let b = c
        .call(
            COPY_FILE_RANGE,
            big,
            &copy_in(big_fh, 0, dst, dst_fh, 0, u64::MAX),
        )
        .unwrap();
    assert_eq!(u64::from(le32(&b, 0)), MAX_COPY);
}

#[test]
fn copy_file_range_refuses_bad_arguments() {
    let mut c = Client::new();
    let (src, src_fh) = c.create(1, b"src", 0o644);
    let (dst, dst_fh) = c.create(1, b"dst", 0o644);
    c.write(src_fh, 0, b"data").unwrap();
    let mut flagged = copy_in(src_fh, 0, dst, dst_fh, 0, 4);
    flagged[48] = 1;
    assert_eq!(c.call(COPY_FILE_RANGE, src, &flagged), Err(Errno::EINVAL.0));
    let bad_fh = copy_in(src_fh, 0, dst, 999, 0, 4);
    assert_eq!(c.call(COPY_FILE_RANGE, src, &bad_fh), Err(Errno::EBADF.0));
    let bad_node = copy_in(src_fh, 0, 777, dst_fh, 0, 4);
    assert_eq!(
        c.call(COPY_FILE_RANGE, src, &bad_node),
        Err(Errno::ESTALE.0)
    );
    let fh_dir = le64(&c.call(OPENDIR, 1, &[0; 8]).unwrap(), 0);
    let from_dir = copy_in(fh_dir, 0, dst, dst_fh, 0, 4);
    assert_eq!(
        c.call(COPY_FILE_RANGE, src, &from_dir),
        Err(Errno::EISDIR.0)
    );
    let overflow = copy_in(src_fh, 0, dst, dst_fh, u64::MAX - 1, 4);
    assert_eq!(c.call(COPY_FILE_RANGE, src, &overflow), Err(Errno::EFBIG.0));
    assert_eq!(c.call(COPY_FILE_RANGE, src, &[0; 40]), Err(Errno::EINVAL.0));
    assert_eq!(c.getattr(dst).unwrap().1, 0, "nothing was written");
}

/// st_blocks of a node, from GETATTR.
fn blocks(c: &mut Client, node: u64) -> u64 {
    le64(&c.call(GETATTR, node, &[0; 16]).unwrap(), 16 + 16)
}

fn fallocate_in(fh: u64, offset: u64, len: u64) -> Vec<u8> {
    let mut w = Writer::default();
    w.u64(fh).u64(offset).u64(len).u32(0).u32(0);
    w.0
}

#[test]
fn fallocate_allocates_past_the_end_and_undoes_a_failure() {
    let mut c = Client::new();
    let (node, fh) = c.create(1, b"f", 0o644);
    c.write(fh, 0, b"head").unwrap();
    // Past the end: zeros written through the handle, the data kept.
    c.call(FALLOCATE, node, &fallocate_in(fh, 0, 300_000))
        .unwrap();
    assert_eq!(c.getattr(node).unwrap().1, 300_000);
    assert_eq!(blocks(&mut c, node), 300_000u64.div_ceil(512));
    let got = read_whole(&mut c, node, fh, 300_000);
    assert_eq!(&got[..4], b"head");
    assert!(got[4..].iter().all(|&b| b == 0));
    // An offset past the end: the size reaches the range's end.
    let (gap, gap_fh) = c.create(1, b"gap", 0o644);
    c.call(FALLOCATE, gap, &fallocate_in(gap_fh, 1 << 20, 1024))
        .unwrap();
    assert_eq!(c.getattr(gap).unwrap().1, (1 << 20) + 1024);
    // O_APPEND handles land in the same place.
    let app_fh = c.open(gap, 2 | open_flags::O_APPEND).unwrap();
    c.call(FALLOCATE, gap, &fallocate_in(app_fh, 2 << 20, 512))
        .unwrap();
    assert_eq!(c.getattr(gap).unwrap().1, (2 << 20) + 512);
    // Inside the file: nothing to do.
    c.call(FALLOCATE, node, &fallocate_in(fh, 10, 100)).unwrap();
    assert_eq!(c.getattr(node).unwrap().1, 300_000);
    // Past what the backend holds (64 MiB): the error, and the old size.
    let too_far = fallocate_in(fh, 60 << 20, 8 << 20);
    assert_eq!(c.call(FALLOCATE, node, &too_far), Err(Errno::EFBIG.0));
    assert_eq!(c.getattr(node).unwrap().1, 300_000);
    assert_eq!(blocks(&mut c, node), 300_000u64.div_ceil(512));
    // A handle the kernel never opened.
    assert_eq!(
        c.call(FALLOCATE, node, &fallocate_in(999, 0, 1 << 21)),
        Err(Errno::EBADF.0)
    );
}
