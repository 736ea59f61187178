//! The FUSE server: one request in, one reply out, over a [`FileBackend`].
//!
//! - Node ids: 1 is the root; every other node id is the backend's inode
//!   number. The kernel may use only node ids it was given (by LOOKUP,
//!   CREATE, MKNOD, MKDIR, SYMLINK, LINK, READDIRPLUS); each one's lookup
//!   count is kept, FORGET lowers it, and a node id the server does not
//!   know is ESTALE, so the guest cannot name inodes it never saw.
//! - File handles: a table of at most [`MAX_HANDLES`] (or what
//!   [`FuseServer::set_max_handles`] says) open files and directories;
//!   past it OPEN, OPENDIR and CREATE get ENFILE.
//! - Timeouts: entries and attributes are valid for [`TIMEOUT_S`] (1 s),
//!   so a change made natively shows in Linux within a second; negative
//!   lookups are not cached.
//! - COPY_FILE_RANGE copies here, handle to handle (no round trip through
//!   the guest's page cache), at most [`MAX_COPY`] bytes a request.
//! - Owners and modes pass through as the backend has them: the guest
//!   mounts with `default_permissions` (virtiofs always does), so the guest
//!   kernel checks access. New inodes get the caller's uid and gid (from
//!   the request header) right after they are made.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

use super::backend::Attr;
use super::backend::Errno;
use super::backend::FileBackend;
use super::backend::Ino;
use super::backend::Kind;
use super::backend::OpenMode;
use super::backend::SetAttr;
use super::protocol as p;
use super::protocol::fattr;
use super::protocol::open_flags;
use super::protocol::AttrOut;
use super::protocol::CopyRangeIn;
use super::protocol::InHeader;
use super::protocol::Op;
use super::protocol::SetAttrIn;
use super::protocol::Writer;

/// Entry and attribute validity, in seconds.
pub const TIMEOUT_S: u64 = 1;
/// Open files and directories at once.
pub const MAX_HANDLES: usize = 4096;
/// Node ids known to the kernel at once (each one costs a map entry).
pub const MAX_NODES: usize = 1 << 20;
/// The largest WRITE the kernel may send: 1 MiB, so a file streamed in
/// large blocks costs the guest (its notifications, interrupts and VM
/// exits) one request per MiB, not one per 128 KiB (the kernel's default).
pub const MAX_WRITE: u32 = 1 << 20;
/// The largest READ answered.
pub const MAX_READ: u32 = 1 << 20;
/// The pages a request may span (`init_flags::MAX_PAGES`): a MAX_WRITE.
const MAX_PAGES: u16 = (MAX_WRITE / 4096) as u16;
/// The most one COPY_FILE_RANGE copies (the guest's vCPU waits for the
/// whole copy; the caller loops on a short one).
pub const MAX_COPY: u64 = 4 << 20;
const ROOT_NODEID: u64 = 1;

/// An open file or directory.
enum Handle<F> {
    File { file: F },
    Dir { ino: Ino },
}

/// A FUSE session over a backend.
pub struct FuseServer<B: FileBackend> {
    backend: B,
    initialized: bool,
    /// Node id -> lookup count (the root is not in it).
    nodes: BTreeMap<u64, u64>,
    handles: BTreeMap<u64, Handle<B::File>>,
    max_handles: usize,
    next_fh: u64,
}

type Reply = Result<Vec<u8>, Errno>;

fn kind_bits(kind: Kind) -> u32 {
    use p::mode::*;
    match kind {
        Kind::Regular => S_IFREG,
        Kind::Directory => S_IFDIR,
        Kind::Symlink => S_IFLNK,
        Kind::CharDevice => S_IFCHR,
        Kind::BlockDevice => S_IFBLK,
        Kind::Fifo => S_IFIFO,
        Kind::Socket => S_IFSOCK,
    }
}

/// The DT_* type of a directory entry.
fn dirent_type(kind: Kind) -> u32 {
    kind_bits(kind) >> 12
}

fn attr_out(a: &Attr) -> AttrOut {
    AttrOut {
        ino: a.ino,
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        mode: kind_bits(a.kind) | u32::from(a.mode & 0o7777),
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
    }
}

impl<B: FileBackend> FuseServer<B> {
    pub fn new(backend: B) -> FuseServer<B> {
        FuseServer {
            backend,
            initialized: false,
            nodes: BTreeMap::new(),
            handles: BTreeMap::new(),
            max_handles: MAX_HANDLES,
            next_fh: 1,
        }
    }

    /// Lowers (or raises) the open handle limit from [`MAX_HANDLES`]: a
    /// backend whose open files cost scarce resources sets its own.
    pub fn set_max_handles(&mut self, max: usize) {
        self.max_handles = max;
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Open handles (files and directories).
    pub fn open_handles(&self) -> usize {
        self.handles.len()
    }

    /// Node ids the kernel holds (the root aside).
    pub fn known_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// Handles one request; returns the whole reply, or nothing for
    /// requests without one (FORGET, BATCH_FORGET). `reply_room` bounds
    /// what a READ answers.
    pub fn handle(&mut self, request: &[u8], reply_room: usize) -> Vec<u8> {
        let (header, op) = match p::parse(request) {
            Ok(parsed) => parsed,
            Err(errno) => {
                let unique = p::parse_header(request).map(|h| h.unique).unwrap_or(0);
                return p::error(unique, errno);
            }
        };
        match op {
            Op::Forget { nlookup } => {
                self.forget(header.nodeid, nlookup);
                return Vec::new();
            }
            Op::BatchForget { forgets } => {
                for (nodeid, nlookup) in forgets {
                    self.forget(nodeid, nlookup);
                }
                return Vec::new();
            }
            _ => {}
        }
        let result = if !self.initialized && !matches!(op, Op::Init { .. }) {
            Err(Errno::EIO)
        } else {
            let room = reply_room.saturating_sub(p::OUT_HEADER_LEN);
            self.dispatch(&header, op, room)
        };
        match result {
            Ok(body) => p::reply(header.unique, &body),
            Err(errno) => p::error(header.unique, errno),
        }
    }

    fn dispatch(&mut self, h: &InHeader, op: Op<'_>, room: usize) -> Reply {
        let node = h.nodeid;
        match op {
            Op::Init {
                major,
                max_readahead,
                flags,
                ..
            } => self.init(major, max_readahead, flags),
            Op::Destroy => {
                self.handles.clear();
                for nodeid in core::mem::take(&mut self.nodes).into_keys() {
                    self.backend.release(nodeid);
                }
                self.initialized = false;
                Ok(Vec::new())
            }
            Op::Lookup { name } => {
                let dir = self.ino(node)?;
                let attr = self.backend.lookup(dir, name)?;
                self.entry(&attr)
            }
            Op::GetAttr => {
                let attr = self.backend.stat(self.ino(node)?)?;
                Ok(encode_attr_reply(&attr))
            }
            Op::SetAttr(s) => self.set_attr(node, &s),
            Op::ReadLink => self.backend.read_link(self.ino(node)?),
            Op::Symlink { name, target } => {
                let dir = self.ino(node)?;
                self.backend.symlink(dir, name, target)?;
                self.created(h, dir, name)
            }
            Op::MkNod { name, mode } => self.mknod(h, name, mode),
            Op::MkDir { name, mode } => {
                let dir = self.ino(node)?;
                self.backend.mkdir(dir, name, (mode & 0o7777) as u16)?;
                self.created(h, dir, name)
            }
            Op::Unlink { name } => empty(self.backend.unlink(self.ino(node)?, name)),
            Op::RmDir { name } => empty(self.backend.rmdir(self.ino(node)?, name)),
            Op::Rename {
                name,
                newdir,
                newname,
                flags,
            } => self.rename(node, name, newdir, newname, flags),
            Op::Link { oldnodeid, newname } => {
                let (ino, dir) = (self.ino(oldnodeid)?, self.ino(node)?);
                self.backend.link(ino, dir, newname)?;
                let attr = self.backend.lookup(dir, newname)?;
                self.entry(&attr)
            }
            Op::StatFs => self.statfs(),
            Op::FsyncDir | Op::SyncFs => empty(self.backend.sync()),
            Op::Create { name, flags, mode } => self.create(h, name, flags, mode),
            other => self.dispatch_handle_op(node, other, room),
        }
    }

    /// The ops on open file handles, and what is not supported.
    fn dispatch_handle_op(&mut self, node: u64, op: Op<'_>, room: usize) -> Reply {
        match op {
            Op::Open { flags } => self.open(node, flags),
            Op::OpenDir => self.open_dir(node),
            Op::Read { fh, offset, size } => self.read(fh, offset, size, room),
            Op::ReadDir {
                fh,
                offset,
                size,
                plus,
            } => self.read_dir(fh, offset, (size as usize).min(room), plus),
            Op::Write { fh, offset, data } => self.write(fh, offset, data),
            Op::Release { fh } | Op::ReleaseDir { fh } => match self.handles.remove(&fh) {
                Some(_) => Ok(Vec::new()),
                None => Err(Errno::EBADF),
            },
            Op::Fsync { fh } => {
                let file = file_of(&mut self.handles, fh)?;
                empty(self.backend.sync_file(file))
            }
            // Nothing is buffered here: every WRITE went to the backend.
            Op::Flush => Ok(Vec::new()),
            Op::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => self.fallocate(node, fh, offset, length, mode),
            Op::CopyFileRange(c) => self.copy_file_range(&c),
            // Unsupported ops (FORGETs never get here: they have no reply).
            _ => Err(Errno::ENOSYS),
        }
    }

    fn init(&mut self, major: u32, max_readahead: u32, flags: u32) -> Reply {
        if major != p::KERNEL_VERSION {
            return Err(Errno::EPROTO);
        }
        let wanted = p::init_flags::BIG_WRITES
            | p::init_flags::DO_READDIRPLUS
            | p::init_flags::MAX_PAGES;
        let mut w = Writer::default();
        p::encode_init(&mut w, max_readahead, flags & wanted, MAX_WRITE, MAX_PAGES);
        self.initialized = true;
        Ok(w.0)
    }

    /// The backend inode a node id stands for.
    fn ino(&self, nodeid: u64) -> Result<Ino, Errno> {
        if nodeid == ROOT_NODEID {
            return Ok(self.backend.root());
        }
        if self.nodes.contains_key(&nodeid) {
            Ok(nodeid)
        } else {
            Err(Errno::ESTALE)
        }
    }

    /// The node id of a backend inode, counted as one more lookup.
    fn remember(&mut self, ino: Ino) -> Result<u64, Errno> {
        if ino == self.backend.root() {
            return Ok(ROOT_NODEID);
        }
        if ino == ROOT_NODEID || ino == 0 {
            // Would be taken for the root, or is no node at all.
            return Err(Errno::EIO);
        }
        if !self.nodes.contains_key(&ino) {
            if self.nodes.len() >= MAX_NODES {
                return Err(Errno::ENFILE);
            }
            self.backend.hold(ino)?;
        }
        let count = self.nodes.entry(ino).or_insert(0);
        *count = count.saturating_add(1);
        Ok(ino)
    }

    fn forget(&mut self, nodeid: u64, nlookup: u64) {
        if let Some(count) = self.nodes.get_mut(&nodeid) {
            *count = count.saturating_sub(nlookup);
            if *count == 0 {
                self.nodes.remove(&nodeid);
                self.backend.release(nodeid);
            }
        }
    }

    /// A fuse_entry_out for `attr`, counting the lookup.
    fn entry(&mut self, attr: &Attr) -> Reply {
        let nodeid = self.remember(attr.ino)?;
        let mut w = Writer::default();
        p::encode_entry(&mut w, nodeid, &attr_out(attr), TIMEOUT_S);
        Ok(w.0)
    }

    /// After a create: gives the new entry the caller's owner and answers
    /// its fuse_entry_out.
    fn created(&mut self, h: &InHeader, dir: Ino, name: &[u8]) -> Reply {
        let attr = self.backend.lookup(dir, name)?;
        let attr = self.own(h, attr)?;
        self.entry(&attr)
    }

    fn own(&mut self, h: &InHeader, attr: Attr) -> Result<Attr, Errno> {
        if attr.uid == h.uid && attr.gid == h.gid {
            return Ok(attr);
        }
        let change = SetAttr {
            uid: Some(h.uid),
            gid: Some(h.gid),
            ..SetAttr::default()
        };
        self.backend.set_attr(attr.ino, &change)
    }

    fn mknod(&mut self, h: &InHeader, name: &[u8], mode: u32) -> Reply {
        use p::mode::*;
        let kind = match mode & S_IFMT {
            S_IFREG | 0 => Kind::Regular,
            S_IFCHR => Kind::CharDevice,
            S_IFBLK => Kind::BlockDevice,
            S_IFIFO => Kind::Fifo,
            S_IFSOCK => Kind::Socket,
            _ => return Err(Errno::EINVAL),
        };
        let dir = self.ino(h.nodeid)?;
        let attr = self
            .backend
            .make_node(dir, name, kind, (mode & 0o7777) as u16)?;
        let attr = self.own(h, attr)?;
        self.entry(&attr)
    }

    fn set_attr(&mut self, nodeid: u64, s: &SetAttrIn) -> Reply {
        let ino = self.ino(nodeid)?;
        let mut change = SetAttr::default();
        let has = |bit| s.valid & bit != 0;
        if has(fattr::MODE) {
            change.mode = Some((s.mode & 0o7777) as u16);
        }
        if has(fattr::UID) {
            change.uid = Some(s.uid);
        }
        if has(fattr::GID) {
            change.gid = Some(s.gid);
        }
        if has(fattr::SIZE) {
            change.size = Some(s.size);
        }
        if has(fattr::ATIME_NOW) || has(fattr::MTIME_NOW) {
            let now = self.backend.now();
            change.atime = has(fattr::ATIME_NOW).then_some(now);
            change.mtime = has(fattr::MTIME_NOW).then_some(now);
        }
        if has(fattr::ATIME) && !has(fattr::ATIME_NOW) {
            change.atime = Some(s.atime);
        }
        if has(fattr::MTIME) && !has(fattr::MTIME_NOW) {
            change.mtime = Some(s.mtime);
        }
        if has(fattr::KILL_SUIDGID) && change.mode.is_none() {
            let mode = self.backend.stat(ino)?.mode;
            if mode & 0o6000 != 0 {
                change.mode = Some(mode & !0o6000);
            }
        }
        let attr = self.backend.set_attr(ino, &change)?;
        Ok(encode_attr_reply(&attr))
    }

    fn rename(&mut self, node: u64, name: &[u8], newdir: u64, newname: &[u8], flags: u32) -> Reply {
        let (dir, new_dir) = (self.ino(node)?, self.ino(newdir)?);
        match flags {
            0 => {}
            p::RENAME_NOREPLACE => match self.backend.lookup(new_dir, newname) {
                Ok(_) => return Err(Errno::EEXIST),
                Err(Errno::ENOENT) => {}
                Err(e) => return Err(e),
            },
            // RENAME_EXCHANGE, RENAME_WHITEOUT: the backend has no such step.
            _ => return Err(Errno::EINVAL),
        }
        empty(self.backend.rename(dir, name, new_dir, newname))
    }

    fn new_handle(&mut self, handle: Handle<B::File>) -> u64 {
        let fh = self.next_fh;
        self.next_fh = self.next_fh.wrapping_add(1).max(1);
        self.handles.insert(fh, handle);
        fh
    }

    fn check_handle_room(&self) -> Result<(), Errno> {
        if self.handles.len() >= self.max_handles {
            return Err(Errno::ENFILE);
        }
        Ok(())
    }

    fn open(&mut self, nodeid: u64, flags: u32) -> Reply {
        self.check_handle_room()?;
        let ino = self.ino(nodeid)?;
        let file = self.backend.open(ino, open_mode(flags))?;
        let fh = self.new_handle(Handle::File { file });
        let mut w = Writer::default();
        p::encode_open(&mut w, fh, p::FOPEN_NOFLUSH);
        Ok(w.0)
    }

    fn open_dir(&mut self, nodeid: u64) -> Reply {
        self.check_handle_room()?;
        let ino = self.ino(nodeid)?;
        if self.backend.stat(ino)?.kind != Kind::Directory {
            return Err(Errno::ENOTDIR);
        }
        let fh = self.new_handle(Handle::Dir { ino });
        let mut w = Writer::default();
        p::encode_open(&mut w, fh, 0);
        Ok(w.0)
    }

    fn create(&mut self, h: &InHeader, name: &[u8], flags: u32, mode: u32) -> Reply {
        self.check_handle_room()?;
        let dir = self.ino(h.nodeid)?;
        let perm = (mode & 0o7777) as u16;
        let attr = match self.backend.make_node(dir, name, Kind::Regular, perm) {
            Ok(attr) => self.own(h, attr)?,
            // Made by someone else since the kernel looked: open it.
            Err(Errno::EEXIST) if flags & open_flags::O_EXCL == 0 => {
                self.backend.lookup(dir, name)?
            }
            Err(e) => return Err(e),
        };
        let file = self.backend.open(attr.ino, open_mode(flags))?;
        let mut w = Writer(self.entry(&attr)?);
        let fh = self.new_handle(Handle::File { file });
        p::encode_open(&mut w, fh, p::FOPEN_NOFLUSH);
        Ok(w.0)
    }

    fn read(&mut self, fh: u64, offset: u64, size: u32, room: usize) -> Reply {
        let len = size.min(MAX_READ).min(room as u32);
        let file = file_of(&mut self.handles, fh)?;
        let mut data = self.backend.read(file, offset, len)?;
        data.truncate(len as usize);
        Ok(data)
    }

    fn write(&mut self, fh: u64, offset: u64, data: &[u8]) -> Reply {
        if data.len() > MAX_WRITE as usize {
            return Err(Errno::EINVAL);
        }
        let file = file_of(&mut self.handles, fh)?;
        self.backend.write(file, offset, data)?;
        let mut w = Writer::default();
        w.u32(data.len() as u32).u32(0);
        Ok(w.0)
    }

    fn read_dir(&mut self, fh: u64, cookie: u64, size: usize, plus: bool) -> Reply {
        let dir = match self.handles.get(&fh) {
            Some(Handle::Dir { ino }) => *ino,
            Some(Handle::File { .. }) => return Err(Errno::ENOTDIR),
            None => return Err(Errno::EBADF),
        };
        let entries = self.backend.read_dir(dir, cookie)?;
        let mut w = Writer::default();
        for e in entries {
            let len = p::dirent_len(e.name.len()) + if plus { p::ENTRY_OUT_LEN } else { 0 };
            if w.0.len() + len > size {
                break;
            }
            if plus {
                self.encode_plus_entry(&mut w, dir, &e.name);
            }
            p::encode_dirent(&mut w, e.ino, e.cookie, &e.name, dirent_type(e.kind));
        }
        Ok(w.0)
    }

    /// The fuse_entry_out of a READDIRPLUS entry: "." and "..", and
    /// entries that vanished since, get node id 0 (the kernel makes no
    /// dentry of them and counts no lookup).
    fn encode_plus_entry(&mut self, w: &mut Writer, dir: Ino, name: &[u8]) {
        let entry = if name == b"." || name == b".." {
            None
        } else {
            self.backend
                .lookup(dir, name)
                .ok()
                .and_then(|attr| self.remember(attr.ino).ok().map(|id| (id, attr)))
        };
        match entry {
            Some((nodeid, attr)) => p::encode_entry(w, nodeid, &attr_out(&attr), TIMEOUT_S),
            None => {
                w.bytes(&[0; p::ENTRY_OUT_LEN]);
            }
        }
    }

    fn statfs(&mut self) -> Reply {
        let s = self.backend.statfs()?;
        let mut w = Writer::default();
        p::encode_statfs(
            &mut w,
            &p::StatFsOut {
                blocks: s.blocks,
                bfree: s.free_blocks,
                bavail: s.available_blocks,
                files: s.inodes,
                ffree: s.free_inodes,
                bsize: s.block_size,
                namelen: s.name_max,
            },
        );
        Ok(w.0)
    }

    /// Mode 0 makes `offset..offset + length` allocated: the part past
    /// the end of the file is written with zeros (so its blocks exist and a
    /// later write there cannot fail for want of space), and if that fails
    /// (ENOSPC) the file is cut back to its old size. Holes inside the old
    /// size stay holes (the backend cannot tell them from written zeros).
    /// Other modes are refused.
    fn fallocate(&mut self, node: u64, fh: u64, offset: u64, length: u64, mode: u32) -> Reply {
        if mode != 0 {
            return Err(Errno::EOPNOTSUPP);
        }
        file_of(&mut self.handles, fh)?;
        let ino = self.ino(node)?;
        let end = offset.checked_add(length).ok_or(Errno::EFBIG)?;
        let old_size = self.backend.stat(ino)?.size;
        if end <= old_size {
            return Ok(Vec::new());
        }
        if let Err(e) = self.allocate_past_end(ino, fh, old_size, offset, end) {
            let back = SetAttr {
                size: Some(old_size),
                ..SetAttr::default()
            };
            // The first error is the answer; if the cut fails too, the file
            // keeps some zeros past its old end, still a valid file.
            let _ = self.backend.set_attr(ino, &back);
            return Err(e);
        }
        Ok(Vec::new())
    }

    /// Zeros from `max(offset, old_size)` to `end`; a gap between the old
    /// end and `offset` is a hole (the size is raised over it first, so an
    /// O_APPEND handle writes in the right place too).
    fn allocate_past_end(
        &mut self,
        ino: Ino,
        fh: u64,
        old_size: u64,
        offset: u64,
        end: u64,
    ) -> Result<(), Errno> {
        let mut at = offset.max(old_size);
        if at > old_size {
            let raise = SetAttr {
                size: Some(at),
                ..SetAttr::default()
            };
            self.backend.set_attr(ino, &raise)?;
        }
        let zeros = alloc::vec![0u8; MAX_WRITE as usize];
        while at < end {
            let n = (end - at).min(u64::from(MAX_WRITE)) as usize;
            let file = file_of(&mut self.handles, fh)?;
            self.backend.write(file, at, &zeros[..n])?;
            at += n as u64;
        }
        Ok(())
    }
}

impl<B: FileBackend> FuseServer<B> {
    /// COPY_FILE_RANGE: reads from one handle and writes to the other
    /// here, in [`MAX_READ`] pieces, up to [`MAX_COPY`] bytes; stops short
    /// at the end of the source. An error after some bytes were copied
    /// answers what was copied.
    fn copy_file_range(&mut self, c: &CopyRangeIn) -> Reply {
        if c.flags != 0 {
            return Err(Errno::EINVAL);
        }
        self.ino(c.nodeid_out)?;
        file_of(&mut self.handles, c.fh_in)?;
        file_of(&mut self.handles, c.fh_out)?;
        let total = c.len.min(MAX_COPY);
        let mut done = 0u64;
        while done < total {
            match self.copy_piece(c, done, total - done) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        let mut w = Writer::default();
        w.u32(done as u32).u32(0);
        Ok(w.0)
    }

    /// One piece of a copy, `done` bytes in: the bytes copied (0 at the
    /// end of the source).
    fn copy_piece(&mut self, c: &CopyRangeIn, done: u64, left: u64) -> Result<u64, Errno> {
        let from = c.off_in.checked_add(done).ok_or(Errno::EFBIG)?;
        let to = c.off_out.checked_add(done).ok_or(Errno::EFBIG)?;
        let want = left.min(u64::from(MAX_READ)) as u32;
        let data = self
            .backend
            .read(file_of(&mut self.handles, c.fh_in)?, from, want)?;
        if data.is_empty() {
            return Ok(0);
        }
        let data = &data[..data.len().min(want as usize)];
        to.checked_add(data.len() as u64).ok_or(Errno::EFBIG)?;
        self.backend
            .write(file_of(&mut self.handles, c.fh_out)?, to, data)?;
        Ok(data.len() as u64)
    }
}

fn file_of<F>(handles: &mut BTreeMap<u64, Handle<F>>, fh: u64) -> Result<&mut F, Errno> {
    match handles.get_mut(&fh) {
        Some(Handle::File { file }) => Ok(file),
        Some(Handle::Dir { .. }) => Err(Errno::EISDIR),
        None => Err(Errno::EBADF),
    }
}

fn empty(r: Result<(), Errno>) -> Reply {
    r.map(|()| Vec::new())
}

fn encode_attr_reply(attr: &Attr) -> Vec<u8> {
    let mut w = Writer::default();
    p::encode_attr_out(&mut w, &attr_out(attr), TIMEOUT_S);
    w.0
}

fn open_mode(flags: u32) -> OpenMode {
    let acc = flags & open_flags::O_ACCMODE;
    OpenMode {
        read: acc != open_flags::O_WRONLY,
        write: acc == open_flags::O_WRONLY || acc == open_flags::O_RDWR,
        append: flags & open_flags::O_APPEND != 0,
    }
}
