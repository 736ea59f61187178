//! FUSE 7.x messages (linux/include/uapi/linux/fuse.h), parsed and built
//! by explicit little-endian byte code.
//!
//! [`parse`] turns one request (in_header and body) into an [`InHeader`]
//! and an [`Op`]; every length is checked, and a short or lying request is
//! an errno (EINVAL), never a panic. Names are checked here too: a name
//! with '/', an empty one, ".", ".." or one over [`NAME_MAX`] is refused,
//! so the server never asks the backend for anything but one plain name
//! in a directory. The `encode_*` functions build reply bodies; [`reply`]
//! and [`error`] add the out_header.

use alloc::vec::Vec;

use super::backend::Errno;

pub const IN_HEADER_LEN: usize = 40;
pub const OUT_HEADER_LEN: usize = 16;
/// Longest name in a directory.
pub const NAME_MAX: usize = 255;

/// The protocol version this server speaks.
pub const KERNEL_VERSION: u32 = 7;
pub const KERNEL_MINOR_VERSION: u32 = 31;

/// Opcodes.
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const DESTROY: u32 = 38;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SYNCFS: u32 = 50;
}

/// INIT flags this server uses.
pub mod init_flags {
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const DO_READDIRPLUS: u32 = 1 << 13;
    /// `max_pages` in the reply bounds a request's pages (default 32).
    pub const MAX_PAGES: u32 = 1 << 22;
}

/// SETATTR `valid` bits.
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// File type bits of a mode (S_IFMT and friends).
pub mod mode {
    pub const S_IFMT: u32 = 0o170000;
    pub const S_IFSOCK: u32 = 0o140000;
    pub const S_IFLNK: u32 = 0o120000;
    pub const S_IFREG: u32 = 0o100000;
    pub const S_IFBLK: u32 = 0o060000;
    pub const S_IFDIR: u32 = 0o040000;
    pub const S_IFCHR: u32 = 0o020000;
    pub const S_IFIFO: u32 = 0o010000;
}

/// open(2) flags the server looks at.
pub mod open_flags {
    pub const O_ACCMODE: u32 = 3;
    pub const O_WRONLY: u32 = 1;
    pub const O_RDWR: u32 = 2;
    pub const O_EXCL: u32 = 0o200;
    pub const O_APPEND: u32 = 0o2000;
}

pub const RENAME_NOREPLACE: u32 = 1;

/// The request header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InHeader {
    pub len: u32,
    pub opcode: u32,
    pub unique: u64,
    pub nodeid: u64,
    pub uid: u32,
    pub gid: u32,
    pub pid: u32,
    pub total_extlen: u16,
}

/// What SETATTR asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetAttrIn {
    pub valid: u32,
    pub size: u64,
    pub atime: u64,
    pub mtime: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// One request's operation and its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op<'a> {
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u32,
    },
    Destroy,
    Lookup {
        name: &'a [u8],
    },
    Forget {
        nlookup: u64,
    },
    /// (nodeid, nlookup) pairs.
    BatchForget {
        forgets: Vec<(u64, u64)>,
    },
    GetAttr,
    SetAttr(SetAttrIn),
    ReadLink,
    Symlink {
        name: &'a [u8],
        target: &'a [u8],
    },
    MkNod {
        name: &'a [u8],
        mode: u32,
    },
    MkDir {
        name: &'a [u8],
        mode: u32,
    },
    Unlink {
        name: &'a [u8],
    },
    RmDir {
        name: &'a [u8],
    },
    Rename {
        name: &'a [u8],
        newdir: u64,
        newname: &'a [u8],
        flags: u32,
    },
    Link {
        oldnodeid: u64,
        newname: &'a [u8],
    },
    Open {
        flags: u32,
    },
    OpenDir,
    Read {
        fh: u64,
        offset: u64,
        size: u32,
    },
    ReadDir {
        fh: u64,
        offset: u64,
        size: u32,
        plus: bool,
    },
    Write {
        fh: u64,
        offset: u64,
        data: &'a [u8],
    },
    StatFs,
    Release {
        fh: u64,
    },
    ReleaseDir {
        fh: u64,
    },
    Fsync {
        fh: u64,
    },
    FsyncDir,
    /// `sync(2)` or `syncfs(2)` in the guest: the whole file system.
    SyncFs,
    Flush,
    Create {
        name: &'a [u8],
        flags: u32,
        mode: u32,
    },
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    CopyFileRange(CopyRangeIn),
    /// Anything this server does not implement: answered ENOSYS.
    Unsupported(u32),
}

/// What COPY_FILE_RANGE asks for: `len` bytes from `fh_in` at `off_in`
/// to `fh_out` (of node `nodeid_out`) at `off_out`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CopyRangeIn {
    pub fh_in: u64,
    pub off_in: u64,
    pub nodeid_out: u64,
    pub fh_out: u64,
    pub off_out: u64,
    pub len: u64,
    pub flags: u64,
}

/// Reads little-endian fields; every read checks the length.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Errno> {
        if self.0.len() < n {
            return Err(Errno::EINVAL);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self) -> Result<u16, Errno> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, Errno> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, Errno> {
        let lo = u64::from(self.u32()?);
        let hi = u64::from(self.u32()?);
        Ok(lo | hi << 32)
    }
    fn skip(&mut self, n: usize) -> Result<(), Errno> {
        self.take(n).map(drop)
    }
    /// A NUL-terminated name for one directory entry.
    fn name(&mut self) -> Result<&'a [u8], Errno> {
        let end = self.0.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
        let name = self.take(end)?;
        self.skip(1)?;
        check_name(name)?;
        Ok(name)
    }
    /// A NUL-terminated byte string (a symlink's target).
    fn c_string(&mut self) -> Result<&'a [u8], Errno> {
        let end = self.0.iter().position(|&b| b == 0).ok_or(Errno::EINVAL)?;
        let s = self.take(end)?;
        self.skip(1)?;
        Ok(s)
    }
    fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
}

/// A name of one entry in a directory: not empty, no '/', not "." or
/// "..", at most [`NAME_MAX`] bytes.
pub fn check_name(name: &[u8]) -> Result<(), Errno> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(Errno::EINVAL);
    }
    if name.len() > NAME_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(())
}

/// Reads the in_header alone (for the unique of a request whose body is
/// bad).
pub fn parse_header(request: &[u8]) -> Result<InHeader, Errno> {
    let mut r = Reader(request);
    let h = InHeader {
        len: r.u32()?,
        opcode: r.u32()?,
        unique: r.u64()?,
        nodeid: r.u64()?,
        uid: r.u32()?,
        gid: r.u32()?,
        pid: r.u32()?,
        total_extlen: r.u16()?,
    };
    Ok(h)
}

/// Parses one whole request. The header's `len` must be the request's
/// length; extensions (`total_extlen`, in 8-byte units) are cut off the
/// body and ignored.
pub fn parse(request: &[u8]) -> Result<(InHeader, Op<'_>), Errno> {
    let header = parse_header(request)?;
    if header.len as usize != request.len() {
        return Err(Errno::EINVAL);
    }
    let ext = usize::from(header.total_extlen) * 8;
    let body_len = request
        .len()
        .checked_sub(IN_HEADER_LEN + ext)
        .ok_or(Errno::EINVAL)?;
    let body = &request[IN_HEADER_LEN..IN_HEADER_LEN + body_len];
    let op = parse_op(header.opcode, &mut Reader(body))?;
    Ok((header, op))
}

fn parse_op<'a>(opcode: u32, r: &mut Reader<'a>) -> Result<Op<'a>, Errno> {
    use opcode::*;
    let op = match opcode {
        INIT => Op::Init {
            major: r.u32()?,
            minor: r.u32()?,
            max_readahead: r.u32()?,
            flags: r.u32()?,
        },
        DESTROY => Op::Destroy,
        LOOKUP => Op::Lookup { name: r.name()? },
        FORGET => Op::Forget { nlookup: r.u64()? },
        BATCH_FORGET => parse_batch_forget(r)?,
        GETATTR => Op::GetAttr,
        SETATTR => parse_setattr(r)?,
        READLINK => Op::ReadLink,
        SYMLINK => Op::Symlink {
            name: r.name()?,
            target: r.c_string()?,
        },
        MKNOD => {
            let mode = r.u32()?;
            r.skip(12)?; // rdev, umask, padding
            Op::MkNod {
                name: r.name()?,
                mode,
            }
        }
        MKDIR => {
            let mode = r.u32()?;
            r.skip(4)?; // umask
            Op::MkDir {
                name: r.name()?,
                mode,
            }
        }
        UNLINK => Op::Unlink { name: r.name()? },
        RMDIR => Op::RmDir { name: r.name()? },
        RENAME | RENAME2 => {
            let newdir = r.u64()?;
            let flags = if opcode == RENAME2 {
                let flags = r.u32()?;
                r.skip(4)?;
                flags
            } else {
                0
            };
            Op::Rename {
                newdir,
                flags,
                name: r.name()?,
                newname: r.name()?,
            }
        }
        LINK => Op::Link {
            oldnodeid: r.u64()?,
            newname: r.name()?,
        },
        _ => return parse_handle_op(opcode, r),
    };
    Ok(op)
}

/// Ops on open files and the file system as a whole.
fn parse_handle_op<'a>(opcode: u32, r: &mut Reader<'a>) -> Result<Op<'a>, Errno> {
    use opcode::*;
    let op = match opcode {
        OPEN => Op::Open {
            flags: (r.u32()?, r.skip(4)?).0,
        },
        OPENDIR => (r.skip(8)?, Op::OpenDir).1,
        READ | READDIR | READDIRPLUS => {
            let (fh, offset, size) = (r.u64()?, r.u64()?, r.u32()?);
            r.skip(20)?; // read_flags, lock_owner, flags, padding
            match opcode {
                READ => Op::Read { fh, offset, size },
                _ => Op::ReadDir {
                    fh,
                    offset,
                    size,
                    plus: opcode == READDIRPLUS,
                },
            }
        }
        WRITE => {
            let (fh, offset, size) = (r.u64()?, r.u64()?, r.u32()?);
            r.skip(20)?; // write_flags, lock_owner, flags, padding
            let data = r.rest();
            if data.len() != size as usize {
                return Err(Errno::EINVAL);
            }
            Op::Write { fh, offset, data }
        }
        STATFS => Op::StatFs,
        RELEASE | RELEASEDIR => {
            let fh = r.u64()?;
            r.skip(16)?; // flags, release_flags, lock_owner
            match opcode {
                RELEASE => Op::Release { fh },
                _ => Op::ReleaseDir { fh },
            }
        }
        FSYNC => Op::Fsync {
            fh: (r.u64()?, r.skip(8)?).0,
        },
        FSYNCDIR => (r.skip(16)?, Op::FsyncDir).1,
        SYNCFS => (r.skip(8)?, Op::SyncFs).1,
        FLUSH => (r.skip(24)?, Op::Flush).1,
        CREATE => {
            let (flags, mode) = (r.u32()?, r.u32()?);
            r.skip(8)?; // umask, open_flags
            Op::Create {
                name: r.name()?,
                flags,
                mode,
            }
        }
        FALLOCATE => Op::Fallocate {
            fh: r.u64()?,
            offset: r.u64()?,
            length: r.u64()?,
            mode: (r.u32()?, r.skip(4)?).0,
        },
        COPY_FILE_RANGE => Op::CopyFileRange(CopyRangeIn {
            fh_in: r.u64()?,
            off_in: r.u64()?,
            nodeid_out: r.u64()?,
            fh_out: r.u64()?,
            off_out: r.u64()?,
            len: r.u64()?,
            flags: r.u64()?,
        }),
        other => Op::Unsupported(other),
    };
    Ok(op)
}

fn parse_batch_forget<'a>(r: &mut Reader<'a>) -> Result<Op<'a>, Errno> {
    let count = r.u32()? as usize;
    r.skip(4)?;
    // Each entry is 16 bytes: the count may not promise more than is there.
    if count > r.0.len() / 16 {
        return Err(Errno::EINVAL);
    }
    let mut forgets = Vec::with_capacity(count);
    for _ in 0..count {
        forgets.push((r.u64()?, r.u64()?));
    }
    Ok(Op::BatchForget { forgets })
}

fn parse_setattr<'a>(r: &mut Reader<'a>) -> Result<Op<'a>, Errno> {
    let valid = r.u32()?;
    r.skip(12)?; // padding, fh
    let size = r.u64()?;
    r.skip(8)?; // lock_owner
    let (atime, mtime) = (r.u64()?, r.u64()?);
    r.skip(8 + 12)?; // ctime, atimensec, mtimensec, ctimensec
    let mode = r.u32()?;
    r.skip(4)?;
    let (uid, gid) = (r.u32()?, r.u32()?);
    r.skip(4)?;
    Ok(Op::SetAttr(SetAttrIn {
        valid,
        size,
        atime,
        mtime,
        mode,
        uid,
        gid,
    }))
}

/// Appends little-endian fields.
#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
    /// Zero bytes up to a multiple of 8.
    pub fn pad8(&mut self) -> &mut Self {
        while !self.0.len().is_multiple_of(8) {
            self.0.push(0);
        }
        self
    }
}

/// A successful reply: out_header and `body`.
pub fn reply(unique: u64, body: &[u8]) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(OUT_HEADER_LEN + body.len()));
    w.u32((OUT_HEADER_LEN + body.len()) as u32)
        .u32(0)
        .u64(unique)
        .bytes(body);
    w.0
}

/// An error reply: out_header with `-errno`.
pub fn error(unique: u64, errno: Errno) -> Vec<u8> {
    let mut w = Writer(Vec::with_capacity(OUT_HEADER_LEN));
    w.u32(OUT_HEADER_LEN as u32)
        .u32((-errno.0) as u32)
        .u64(unique);
    w.0
}

/// What fuse_attr carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttrOut {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    /// Type and permission bits.
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Block size reported in attributes.
pub const ATTR_BLKSIZE: u32 = 4096;

/// fuse_attr (88 bytes).
pub fn encode_attr(w: &mut Writer, a: &AttrOut) {
    w.u64(a.ino)
        .u64(a.size)
        .u64(a.blocks)
        .u64(a.atime)
        .u64(a.mtime)
        .u64(a.ctime)
        .u32(0)
        .u32(0)
        .u32(0) // atimensec, mtimensec, ctimensec
        .u32(a.mode)
        .u32(a.nlink)
        .u32(a.uid)
        .u32(a.gid)
        .u32(0) // rdev
        .u32(ATTR_BLKSIZE)
        .u32(0); // flags
}

/// fuse_entry_out (128 bytes); `timeout_s` for both the entry and its
/// attributes.
pub fn encode_entry(w: &mut Writer, nodeid: u64, a: &AttrOut, timeout_s: u64) {
    w.u64(nodeid)
        .u64(0) // generation
        .u64(timeout_s)
        .u64(timeout_s)
        .u32(0)
        .u32(0);
    encode_attr(w, a);
}

/// fuse_attr_out (104 bytes).
pub fn encode_attr_out(w: &mut Writer, a: &AttrOut, timeout_s: u64) {
    w.u64(timeout_s).u32(0).u32(0);
    encode_attr(w, a);
}

/// FOPEN_NOFLUSH: the kernel sends no FLUSH when a file is closed (the
/// server has nothing to do for one: writes are already with the fs
/// server, and fsync is asked for on its own).
pub const FOPEN_NOFLUSH: u32 = 1 << 5;

/// fuse_open_out (16 bytes).
pub fn encode_open(w: &mut Writer, fh: u64, open_flags: u32) {
    w.u64(fh).u32(open_flags).u32(0);
}

/// fuse_dirent: ino, the cookie after this entry, the name, the type
/// (DT_*), padded to 8 bytes.
pub fn encode_dirent(w: &mut Writer, ino: u64, cookie: u64, name: &[u8], dtype: u32) {
    w.u64(ino)
        .u64(cookie)
        .u32(name.len() as u32)
        .u32(dtype)
        .bytes(name)
        .pad8();
}

/// Size of a fuse_dirent for a name of `len` bytes.
pub fn dirent_len(len: usize) -> usize {
    (24 + len).div_ceil(8) * 8
}

/// Size of fuse_entry_out, which leads a fuse_direntplus.
pub const ENTRY_OUT_LEN: usize = 128;

/// fuse_kstatfs (80 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFsOut {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
}

pub fn encode_statfs(w: &mut Writer, s: &StatFsOut) {
    w.u64(s.blocks)
        .u64(s.bfree)
        .u64(s.bavail)
        .u64(s.files)
        .u64(s.ffree)
        .u32(s.bsize)
        .u32(s.namelen)
        .u32(s.bsize) // frsize
        .u32(0)
        .bytes(&[0; 24]);
}

/// fuse_init_out (64 bytes).
pub fn encode_init(w: &mut Writer, max_readahead: u32, flags: u32, max_write: u32, max_pages: u16) {
    w.u32(KERNEL_VERSION)
        .u32(KERNEL_MINOR_VERSION)
        .u32(max_readahead)
        .u32(flags)
        .u16(16) // max_background
        .u16(12) // congestion_threshold
        .u32(max_write)
        .u32(1_000_000_000) // time_gran: whole seconds
        .u16(max_pages) // with init_flags::MAX_PAGES
        .u16(0) // map_alignment
        .u32(0) // flags2
        .bytes(&[0; 28]);
}
