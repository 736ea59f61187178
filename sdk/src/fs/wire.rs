//! The fs protocol's bytes: requests, replies and open URIs, encoded and
//! decoded here for both sides. Decoding checks every length and value: a
//! short, long or lying message is `None`, never a panic.

use alloc::string::String;
use alloc::vec::Vec;

use super::DirEntry;
use super::FileType;
use super::SetAttr;
use super::Stat;
use super::StatFs;

/// A path argument: relative to inode `base`, or absolute when `base` is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathArg<'a> {
    pub base: u32,
    pub path: &'a [u8],
}

impl<'a> PathArg<'a> {
    pub fn absolute(path: &'a str) -> PathArg<'a> {
        PathArg {
            base: 0,
            path: path.as_bytes(),
        }
    }
}

/// A request on the `fs` channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Stat {
        path: PathArg<'a>,
        follow: bool,
    },
    ReadDir {
        path: PathArg<'a>,
        cookie: u64,
    },
    MakeDir {
        path: PathArg<'a>,
        mode: u16,
    },
    /// Creates a file of `kind` (not a directory or symlink); fails with
    /// `Exists` if the name is taken. Answers the new inode's stat.
    MakeNode {
        path: PathArg<'a>,
        kind: FileType,
        mode: u16,
    },
    Unlink {
        path: PathArg<'a>,
    },
    RemoveDir {
        path: PathArg<'a>,
    },
    Rename {
        from: PathArg<'a>,
        to: PathArg<'a>,
    },
    Symlink {
        target: &'a [u8],
        path: PathArg<'a>,
    },
    ReadLink {
        path: PathArg<'a>,
    },
    Link {
        existing: PathArg<'a>,
        new: PathArg<'a>,
    },
    SetAttr {
        path: PathArg<'a>,
        attr: SetAttr,
    },
    StatFs,
    Sync,
    /// Keeps inode `ino` alive while this channel holds it, even after its
    /// last name is gone (as an open file does): what a FUSE server needs
    /// for every inode the kernel knows. Held inodes are let go with
    /// `Release` or when the channel closes.
    Hold {
        ino: u32,
    },
    Release {
        ino: u32,
    },
}

/// A request on an open file's channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileRequest<'a> {
    Read {
        offset: u64,
        len: u32,
    },
    /// On a file opened with `append`, `offset` is ignored: the bytes go
    /// at the end.
    Write {
        offset: u64,
        data: &'a [u8],
    },
    Stat,
    SetLen {
        size: u64,
    },
    Sync,
}

/// The most bytes one read reply carries (the message limit, less the
/// reply's call id).
pub const READ_MAX: usize = crate::abi::MESSAGE_DATA_MAX - 4;
/// The most bytes one write request carries.
pub const WRITE_MAX: usize = crate::abi::MESSAGE_DATA_MAX - 16;

/// Appends little-endian fields to a message body.
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn new() -> Writer {
        Writer(Vec::new())
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
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
    /// A `u16` length, then the bytes (longer strings are cut: paths and
    /// names are far shorter than 64 KiB).
    pub fn bytes16(&mut self, v: &[u8]) -> &mut Self {
        let v = &v[..v.len().min(usize::from(u16::MAX))];
        self.u16(v.len() as u16);
        self.0.extend_from_slice(v);
        self
    }
    pub fn path(&mut self, p: &PathArg<'_>) -> &mut Self {
        self.u32(p.base).bytes16(p.path)
    }
    pub fn opt_u64(&mut self, v: Option<u64>) -> &mut Self {
        self.u8(u8::from(v.is_some())).u64(v.unwrap_or(0))
    }
}

impl Default for Writer {
    fn default() -> Self {
        Writer::new()
    }
}

/// Reads little-endian fields; every read checks the length.
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
    }
    pub fn u64(&mut self) -> Option<u64> {
        self.take(8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    pub fn bytes16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
    pub fn path(&mut self) -> Option<PathArg<'a>> {
        Some(PathArg {
            base: self.u32()?,
            path: self.bytes16()?,
        })
    }
    pub fn opt_u64(&mut self) -> Option<Option<u64>> {
        let present = self.u8()?;
        let v = self.u64()?;
        match present {
            0 => Some(None),
            1 => Some(Some(v)),
            _ => None,
        }
    }
    pub fn bool(&mut self) -> Option<bool> {
        match self.u8()? {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    /// The rest of the body.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
    /// `Some(v)` only if nothing is left over.
    pub fn end<T>(&self, v: T) -> Option<T> {
        self.0.is_empty().then_some(v)
    }
}

/// Op bytes of [`Request`].
mod op {
    pub const STAT: u8 = 1;
    pub const READ_DIR: u8 = 2;
    pub const MAKE_DIR: u8 = 3;
    pub const UNLINK: u8 = 4;
    pub const REMOVE_DIR: u8 = 5;
    pub const RENAME: u8 = 6;
    pub const SYMLINK: u8 = 7;
    pub const READ_LINK: u8 = 8;
    pub const LINK: u8 = 9;
    pub const SET_ATTR: u8 = 10;
    pub const STAT_FS: u8 = 11;
    pub const SYNC: u8 = 12;
    pub const MAKE_NODE: u8 = 13;
    pub const HOLD: u8 = 14;
    pub const RELEASE: u8 = 15;
}

/// Op bytes of [`FileRequest`].
mod file_op {
    pub const READ: u8 = 1;
    pub const WRITE: u8 = 2;
    pub const STAT: u8 = 3;
    pub const SET_LEN: u8 = 4;
    pub const SYNC: u8 = 5;
}

impl<'a> Request<'a> {
    pub fn encode(&self, call_id: u32) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            Request::Stat { path, follow } => {
                w.u8(op::STAT).u32(call_id).path(path).u8(u8::from(*follow))
            }
            Request::ReadDir { path, cookie } => {
                w.u8(op::READ_DIR).u32(call_id).path(path).u64(*cookie)
            }
            Request::MakeDir { path, mode } => {
                w.u8(op::MAKE_DIR).u32(call_id).path(path).u16(*mode)
            }
            Request::MakeNode { path, kind, mode } => w
                .u8(op::MAKE_NODE)
                .u32(call_id)
                .path(path)
                .u8(*kind as u8)
                .u16(*mode),
            Request::Unlink { path } => w.u8(op::UNLINK).u32(call_id).path(path),
            Request::RemoveDir { path } => w.u8(op::REMOVE_DIR).u32(call_id).path(path),
            Request::Rename { from, to } => w.u8(op::RENAME).u32(call_id).path(from).path(to),
            Request::Symlink { target, path } => {
                w.u8(op::SYMLINK).u32(call_id).bytes16(target).path(path)
            }
            Request::ReadLink { path } => w.u8(op::READ_LINK).u32(call_id).path(path),
            Request::Link { existing, new } => w.u8(op::LINK).u32(call_id).path(existing).path(new),
            Request::SetAttr { path, attr } => {
                w.u8(op::SET_ATTR).u32(call_id).path(path);
                encode_set_attr(&mut w, attr)
            }
            Request::StatFs => w.u8(op::STAT_FS).u32(call_id),
            Request::Sync => w.u8(op::SYNC).u32(call_id),
            Request::Hold { ino } => w.u8(op::HOLD).u32(call_id).u32(*ino),
            Request::Release { ino } => w.u8(op::RELEASE).u32(call_id).u32(*ino),
        };
        w.0
    }

    /// The call id and the request, or `None` if the body is malformed
    /// (the call id alone is still returned when it could be read, so the
    /// answer can name the call).
    pub fn decode(body: &'a [u8]) -> (Option<u32>, Option<Request<'a>>) {
        let mut r = Reader(body);
        let (Some(op), Some(call_id)) = (r.u8(), r.u32()) else {
            return (None, None);
        };
        let request = match op {
            op::STAT => (|| {
                Some(Request::Stat {
                    path: r.path()?,
                    follow: r.bool()?,
                })
            })(),
            op::READ_DIR => (|| {
                Some(Request::ReadDir {
                    path: r.path()?,
                    cookie: r.u64()?,
                })
            })(),
            op::MAKE_DIR => (|| {
                Some(Request::MakeDir {
                    path: r.path()?,
                    mode: r.u16()?,
                })
            })(),
            op::MAKE_NODE => (|| {
                Some(Request::MakeNode {
                    path: r.path()?,
                    kind: FileType::from_raw(r.u8()?)?,
                    mode: r.u16()?,
                })
            })(),
            op::UNLINK => r.path().map(|path| Request::Unlink { path }),
            op::REMOVE_DIR => r.path().map(|path| Request::RemoveDir { path }),
            op::RENAME => (|| {
                Some(Request::Rename {
                    from: r.path()?,
                    to: r.path()?,
                })
            })(),
            op::SYMLINK => (|| {
                Some(Request::Symlink {
                    target: r.bytes16()?,
                    path: r.path()?,
                })
            })(),
            op::READ_LINK => r.path().map(|path| Request::ReadLink { path }),
            op::LINK => (|| {
                Some(Request::Link {
                    existing: r.path()?,
                    new: r.path()?,
                })
            })(),
            op::SET_ATTR => (|| {
                let path = r.path()?;
                Some(Request::SetAttr {
                    path,
                    attr: decode_set_attr(&mut r)?,
                })
            })(),
            op::STAT_FS => Some(Request::StatFs),
            op::SYNC => Some(Request::Sync),
            op::HOLD => r.u32().map(|ino| Request::Hold { ino }),
            op::RELEASE => r.u32().map(|ino| Request::Release { ino }),
            _ => None,
        };
        (Some(call_id), request.and_then(|req| r.end(req)))
    }
}

fn encode_set_attr<'w>(w: &'w mut Writer, a: &SetAttr) -> &'w mut Writer {
    w.opt_u64(a.mode.map(u64::from))
        .opt_u64(a.uid.map(u64::from))
        .opt_u64(a.gid.map(u64::from))
        .opt_u64(a.size)
        .opt_u64(a.atime)
        .opt_u64(a.mtime)
}

fn decode_set_attr(r: &mut Reader<'_>) -> Option<SetAttr> {
    let narrow16 = |v: Option<u64>| v.map(u16::try_from).transpose().ok();
    let narrow32 = |v: Option<u64>| v.map(u32::try_from).transpose().ok();
    Some(SetAttr {
        mode: narrow16(r.opt_u64()?)?,
        uid: narrow32(r.opt_u64()?)?,
        gid: narrow32(r.opt_u64()?)?,
        size: r.opt_u64()?,
        atime: r.opt_u64()?,
        mtime: r.opt_u64()?,
    })
}

impl<'a> FileRequest<'a> {
    pub fn encode(&self, call_id: u32) -> Vec<u8> {
        let mut w = Writer::new();
        match self {
            FileRequest::Read { offset, len } => {
                w.u8(file_op::READ).u32(call_id).u64(*offset).u32(*len)
            }
            FileRequest::Write { offset, data } => {
                w.u8(file_op::WRITE).u32(call_id).u64(*offset);
                w.0.extend_from_slice(data);
                &mut w
            }
            FileRequest::Stat => w.u8(file_op::STAT).u32(call_id),
            FileRequest::SetLen { size } => w.u8(file_op::SET_LEN).u32(call_id).u64(*size),
            FileRequest::Sync => w.u8(file_op::SYNC).u32(call_id),
        };
        w.0
    }

    /// As [`Request::decode`].
    pub fn decode(body: &'a [u8]) -> (Option<u32>, Option<FileRequest<'a>>) {
        let mut r = Reader(body);
        let (Some(op), Some(call_id)) = (r.u8(), r.u32()) else {
            return (None, None);
        };
        let request = match op {
            file_op::READ => (|| {
                Some(FileRequest::Read {
                    offset: r.u64()?,
                    len: r.u32()?,
                })
            })(),
            file_op::WRITE => r.u64().map(|offset| FileRequest::Write {
                offset,
                data: r.rest(),
            }),
            file_op::STAT => Some(FileRequest::Stat),
            file_op::SET_LEN => r.u64().map(|size| FileRequest::SetLen { size }),
            file_op::SYNC => Some(FileRequest::Sync),
            _ => None,
        };
        (Some(call_id), request.and_then(|req| r.end(req)))
    }
}

/// A successful answer's body: the call id, then the result's bytes.
pub fn reply(call_id: u32, result: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(4 + result.len());
    body.extend_from_slice(&call_id.to_le_bytes());
    body.extend_from_slice(result);
    body
}

/// Splits an answer into its call id and result bytes.
pub fn split_reply(body: &[u8]) -> Option<(u32, &[u8])> {
    let mut r = Reader(body);
    let call_id = r.u32()?;
    Some((call_id, r.rest()))
}

pub fn encode_stat(s: &Stat) -> Vec<u8> {
    let mut w = Writer::new();
    w.u64(s.ino)
        .u8(s.kind as u8)
        .u16(s.mode)
        .u32(s.nlink)
        .u32(s.uid)
        .u32(s.gid);
    w.u64(s.size)
        .u64(s.blocks)
        .u64(s.atime)
        .u64(s.mtime)
        .u64(s.ctime);
    w.0
}

pub fn decode_stat(body: &[u8]) -> Option<Stat> {
    let mut r = Reader(body);
    let stat = Stat {
        ino: r.u64()?,
        kind: FileType::from_raw(r.u8()?)?,
        mode: r.u16()?,
        nlink: r.u32()?,
        uid: r.u32()?,
        gid: r.u32()?,
        size: r.u64()?,
        blocks: r.u64()?,
        atime: r.u64()?,
        mtime: r.u64()?,
        ctime: r.u64()?,
    };
    r.end(stat)
}

pub fn encode_statfs(s: &StatFs) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(s.block_size)
        .u64(s.blocks)
        .u64(s.free_blocks)
        .u64(s.available_blocks);
    w.u64(s.inodes).u64(s.free_inodes).u32(s.name_max);
    w.0
}

pub fn decode_statfs(body: &[u8]) -> Option<StatFs> {
    let mut r = Reader(body);
    let s = StatFs {
        block_size: r.u32()?,
        blocks: r.u64()?,
        free_blocks: r.u64()?,
        available_blocks: r.u64()?,
        inodes: r.u64()?,
        free_inodes: r.u64()?,
        name_max: r.u32()?,
    };
    r.end(s)
}

/// Directory entries as many as fit in one reply: a `u16` count, then per
/// entry `ino: u64, kind: u8, cookie: u64` and the name (`u16` length).
/// The caller stops adding when [`dir_entries_fit`] says no.
pub fn encode_dir_entries(entries: &[DirEntry]) -> Vec<u8> {
    let mut w = Writer::new();
    w.u16(entries.len() as u16);
    for e in entries {
        w.u64(e.ino).u8(e.kind as u8).u64(e.cookie).bytes16(&e.name);
    }
    w.0
}

/// Bytes an entry takes in [`encode_dir_entries`].
pub fn dir_entry_len(e: &DirEntry) -> usize {
    8 + 1 + 8 + 2 + e.name.len()
}

pub fn decode_dir_entries(body: &[u8]) -> Option<Vec<DirEntry>> {
    let mut r = Reader(body);
    let count = r.u16()?;
    let mut entries = Vec::with_capacity(usize::from(count).min(body.len() / 19));
    for _ in 0..count {
        entries.push(DirEntry {
            ino: r.u64()?,
            kind: FileType::from_raw(r.u8()?)?,
            cookie: r.u64()?,
            name: r.bytes16()?.to_vec(),
        });
    }
    r.end(entries)
}

/// What an `Open` URI names: an absolute path, or an inode by number
/// (`inode:<n>`, for the FUSE bridge, which knows inodes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpenTarget<'a> {
    Path(&'a str),
    Inode(u32),
}

/// How a file is opened: the options of an `Open` URI.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenFlags {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub excl: bool,
    pub trunc: bool,
    pub append: bool,
    pub nofollow: bool,
    /// Permission bits for `create`.
    pub mode: u16,
}

/// The mode a created file gets when the URI names none.
pub const DEFAULT_FILE_MODE: u16 = 0o644;

impl OpenFlags {
    /// The URI: the path (or `inode:<n>`), then `?` and the options. The
    /// `?` is always there, so a path that has one of its own still
    /// parses (the last `?` starts the options).
    pub fn uri(&self, path: &str) -> String {
        let mut opts: Vec<String> = Vec::new();
        for (on, name) in [
            (self.read, "read"),
            (self.write, "write"),
            (self.create, "create"),
            (self.excl, "excl"),
            (self.trunc, "trunc"),
            (self.append, "append"),
            (self.nofollow, "nofollow"),
        ] {
            if on {
                opts.push(name.into());
            }
        }
        if self.create {
            opts.push(alloc::format!("mode={:o}", self.mode));
        }
        alloc::format!("{path}?{}", opts.join(","))
    }

    /// Parses an `Open` URI into what it names and the options; `Err`
    /// names what is wrong (an unknown option, a bad mode, a relative
    /// path, a bad inode number).
    pub fn parse(uri: &str) -> Result<(OpenTarget<'_>, OpenFlags), String> {
        let (path, query) = uri.rsplit_once('?').unwrap_or((uri, ""));
        let target = match path.strip_prefix("inode:") {
            Some(n) => match n.parse::<u32>() {
                Ok(ino) if ino > 0 => OpenTarget::Inode(ino),
                _ => return Err(alloc::format!("'{n}' is not an inode number")),
            },
            None if path.starts_with('/') => OpenTarget::Path(path),
            None => return Err(alloc::format!("'{path}' is not an absolute path")),
        };
        let mut f = OpenFlags {
            mode: DEFAULT_FILE_MODE,
            ..OpenFlags::default()
        };
        for opt in query.split(',').filter(|o| !o.is_empty()) {
            match opt {
                "read" => f.read = true,
                "write" => f.write = true,
                "create" => f.create = true,
                "excl" => f.excl = true,
                "trunc" => f.trunc = true,
                "append" => f.append = true,
                "nofollow" => f.nofollow = true,
                _ => match opt.strip_prefix("mode=").map(|m| u16::from_str_radix(m, 8)) {
                    Some(Ok(mode)) if mode <= 0o7777 => f.mode = mode,
                    Some(_) => {
                        return Err(alloc::format!("bad mode in '{opt}' (octal, at most 7777)"))
                    }
                    None => return Err(alloc::format!("unknown open option '{opt}'")),
                },
            }
        }
        if !f.write && !f.append {
            f.read = true;
        }
        if f.append {
            f.write = true;
        }
        Ok((target, f))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let p = PathArg::absolute("/www/index.html");
        let q = PathArg {
            base: 12,
            path: b"a b",
        };
        let requests = [
            Request::Stat {
                path: p,
                follow: true,
            },
            Request::ReadDir {
                path: p,
                cookie: 99,
            },
            Request::MakeNode {
                path: q,
                kind: FileType::Fifo,
                mode: 0o600,
            },
            Request::MakeDir {
                path: q,
                mode: 0o755,
            },
            Request::Unlink { path: p },
            Request::RemoveDir { path: q },
            Request::Rename { from: p, to: q },
            Request::Symlink {
                target: b"../x",
                path: q,
            },
            Request::ReadLink { path: p },
            Request::Link {
                existing: p,
                new: q,
            },
            Request::SetAttr {
                path: p,
                attr: SetAttr {
                    mode: Some(0o600),
                    size: Some(1 << 40),
                    ..SetAttr::default()
                },
            },
            Request::StatFs,
            Request::Sync,
            Request::Hold { ino: 77 },
            Request::Release { ino: 77 },
        ];
        for (i, req) in requests.iter().enumerate() {
            let body = req.encode(i as u32);
            assert_eq!(Request::decode(&body), (Some(i as u32), Some(req.clone())));
            // Every strict prefix is malformed, and so is a trailing byte.
            for cut in 5..body.len() {
                assert_eq!(
                    Request::decode(&body[..cut]).1,
                    None,
                    "{req:?} cut at {cut}"
                );
            }
            let mut long = body.clone();
            long.push(0);
            assert_eq!(Request::decode(&long).1, None, "{req:?} with a byte more");
        }
    }

    #[test]
    fn file_requests_round_trip() {
        let requests = [
            FileRequest::Read {
                offset: 5 << 30,
                len: 4096,
            },
            FileRequest::Write {
                offset: 7,
                data: b"hello",
            },
            FileRequest::Write {
                offset: 7,
                data: b"",
            },
            FileRequest::Stat,
            FileRequest::SetLen { size: 0 },
            FileRequest::Sync,
        ];
        for req in requests {
            let body = req.encode(3);
            assert_eq!(FileRequest::decode(&body), (Some(3), Some(req.clone())));
        }
        assert_eq!(FileRequest::decode(&[9, 1, 0, 0, 0]), (Some(1), None));
        assert_eq!(FileRequest::decode(&[1, 1]), (None, None));
    }

    #[test]
    fn lying_lengths_and_bad_values_are_malformed() {
        // A path length past the end of the body.
        let mut body = Writer::new();
        body.u8(1).u32(5).u32(0).u16(500).u8(b'/');
        assert_eq!(Request::decode(&body.0), (Some(5), None));
        // `follow` must be 0 or 1.
        let mut body = Request::Stat {
            path: PathArg::absolute("/"),
            follow: false,
        }
        .encode(1);
        *body.last_mut().unwrap() = 7;
        assert_eq!(Request::decode(&body).1, None);
        // A mode wider than 16 bits.
        let mut w = Writer::new();
        w.u8(10)
            .u32(1)
            .path(&PathArg::absolute("/"))
            .opt_u64(Some(1 << 20));
        for _ in 0..5 {
            w.opt_u64(None);
        }
        assert_eq!(Request::decode(&w.0).1, None);
    }

    #[test]
    fn random_bodies_never_panic() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 40) as usize;
            let body: Vec<u8> = (0..len).map(|i| (x >> (i % 60)) as u8 % 16).collect();
            let _ = Request::decode(&body);
            let _ = FileRequest::decode(&body);
            let _ = decode_stat(&body);
            let _ = decode_dir_entries(&body);
        }
    }

    #[test]
    fn replies_round_trip() {
        let stat = Stat {
            ino: 12,
            kind: FileType::Symlink,
            mode: 0o777,
            nlink: 1,
            uid: 1000,
            gid: 100,
            size: 5,
            blocks: 0,
            atime: 1,
            mtime: 2,
            ctime: 3,
        };
        assert_eq!(decode_stat(&encode_stat(&stat)), Some(stat));
        let entries = [
            DirEntry {
                ino: 2,
                kind: FileType::Directory,
                name: b".".to_vec(),
                cookie: 1,
            },
            DirEntry {
                ino: 11,
                kind: FileType::Regular,
                name: b"x y".to_vec(),
                cookie: 77,
            },
        ];
        let body = encode_dir_entries(&entries);
        assert_eq!(
            body.len(),
            2 + entries.iter().map(dir_entry_len).sum::<usize>()
        );
        assert_eq!(decode_dir_entries(&body).unwrap(), entries);
        assert_eq!(split_reply(&reply(9, b"ab")), Some((9, &b"ab"[..])));
    }

    #[test]
    fn open_uris() {
        let (path, f) = OpenFlags::parse("/a/b").unwrap();
        assert_eq!(
            (path, f.read, f.write),
            (OpenTarget::Path("/a/b"), true, false)
        );
        let (path, f) = OpenFlags::parse("/a?write,create,excl,mode=600").unwrap();
        assert_eq!(
            (path, f.read, f.write, f.create, f.excl, f.mode),
            (OpenTarget::Path("/a"), false, true, true, true, 0o600)
        );
        let (target, _) = OpenFlags::parse("inode:12?read").unwrap();
        assert_eq!(target, OpenTarget::Inode(12));
        // A path with a `?` of its own: the last one starts the options.
        let flags = OpenFlags {
            read: true,
            ..OpenFlags::default()
        };
        let uri = flags.uri("/what?.txt");
        assert_eq!(
            OpenFlags::parse(&uri).unwrap().0,
            OpenTarget::Path("/what?.txt")
        );
        let (_, f) = OpenFlags::parse("/log?append").unwrap();
        assert!(f.append && f.write);
        let flags = OpenFlags {
            write: true,
            create: true,
            trunc: true,
            mode: 0o640,
            ..OpenFlags::default()
        };
        assert_eq!(OpenFlags::parse(&flags.uri("/x")).unwrap().1, flags);
        for bad in [
            "a/b",
            "/a?frobnicate",
            "/a?mode=99",
            "/a?mode=17777",
            "",
            "inode:0",
            "inode:x?read",
        ] {
            assert!(OpenFlags::parse(bad).is_err(), "{bad}");
        }
    }
}
