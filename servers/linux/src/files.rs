//! Native files for Linux: the FUSE server of `starina_bridge::fuse` over
//! the fs server (the spec's `[needs] fs`), behind the VM's virtio-fs
//! device. The guest mounts it (`starina.share=<tag>:<dir>` on the kernel
//! command line, mounted by the agent).
//!
//! [`NativeFiles`] is the bridge's `FileBackend` over the fs protocol of
//! `starina::fs`, by inode and (directory inode, name) through
//! `starina::fs::Calls` (one poll and timer for the `fs` channel and every
//! open file, so an open file costs one handle): an inode on its own is
//! named `PathArg { base: <inode>, path: "" }` (stat, read_dir,
//! set_attr, read_link, a hard link's target); a FUSE file handle holds
//! the channel of a file opened by `inode:<n>`. At most [`MAX_OPEN_FILES`]
//! are open at once (one handle each, within the server's 1,024).
//!
//! The calls block: the virtio-fs device answers each FUSE request while
//! the guest's vCPU waits in the exit that notified the queue, so a slow
//! fs server stalls the guest (its timer ticks too) for as long as the
//! call takes (at most [`starina::fs::answer::CALL_TIMEOUT_MS`], 60 s). Acceptable for now; an
//! asynchronous device would let the vCPU run on.

use alloc::boxed::Box;
use alloc::format;
use alloc::sync::Arc;

use alloc::vec::Vec;

use starina::fs::wire;
use starina::fs::wire::FileRequest;
use starina::fs::wire::OpenFlags;
use starina::fs::wire::PathArg;
use starina::fs::wire::Request;
use starina::fs::Calls;
use starina::fs::FileType;
use starina::fs::FsError;
use starina::timer::now_ns;
use starina::Channel;
use starina_bridge::fuse::backend::Attr;
use starina_bridge::fuse::backend::DirEntry;
use starina_bridge::fuse::backend::Errno;
use starina_bridge::fuse::backend::FileBackend;
use starina_bridge::fuse::backend::FsStats;
use starina_bridge::fuse::backend::Ino;
use starina_bridge::fuse::backend::Kind;
use starina_bridge::fuse::backend::OpenMode;
use starina_bridge::fuse::backend::SetAttr;
use starina_bridge::fuse::FuseServer;
use starina_vmm::virtio::fs::FsDevice;
use starina_vmm::virtio::fs::FuseHandler;

use crate::fuse_tally::FuseTally;

/// Open files (FUSE file handles) at once: past it, opens get ENFILE.
pub const MAX_OPEN_FILES: usize = 256;

/// The fs server, as the FUSE server's backend.
pub struct NativeFiles {
    calls: Calls,
    root: Ino,
}

/// A file opened on the fs server: its channel (closing it closes the
/// file).
pub struct OpenFile(Channel);

/// The FUSE server as the device's handler (the VMM does not know the
/// bridge), counting what it answers in `tally`.
struct Fuse {
    server: FuseServer<NativeFiles>,
    tally: Arc<spin::Mutex<FuseTally>>,
}

impl FuseHandler for Fuse {
    fn handle(&mut self, request: &[u8], reply_room: usize) -> Vec<u8> {
        let start = now_ns();
        let reply = self.server.handle(request, reply_room);
        // The device hands over whole in_headers only: the opcode is there.
        let opcode = request
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
            .unwrap_or(0);
        self.tally
            .lock()
            .request(opcode, now_ns().saturating_sub(start));
        reply
    }
}

/// The virtio-fs device for the guest, serving the fs server behind
/// `channel` as `tag`; what it answers is counted in `tally`.
pub fn device(
    channel: Channel,
    tag: &str,
    tally: Arc<spin::Mutex<FuseTally>>,
) -> Result<FsDevice, alloc::string::String> {
    let backend = NativeFiles::new(channel).map_err(|e| format!("fs server: {e}"))?;
    let mut server = FuseServer::new(backend);
    server.set_max_handles(MAX_OPEN_FILES);
    let handler = Box::new(Fuse { server, tally });
    FsDevice::new(tag, handler).map_err(|e| format!("virtio-fs tag '{tag}': {e}"))
}

fn errno(e: FsError) -> Errno {
    Errno(e.kind.errno())
}

fn kind(t: FileType) -> Kind {
    match t {
        FileType::Regular => Kind::Regular,
        FileType::Directory => Kind::Directory,
        FileType::Symlink => Kind::Symlink,
        FileType::CharDevice => Kind::CharDevice,
        FileType::BlockDevice => Kind::BlockDevice,
        FileType::Fifo => Kind::Fifo,
        FileType::Socket => Kind::Socket,
    }
}

fn file_type(k: Kind) -> FileType {
    match k {
        Kind::Regular => FileType::Regular,
        Kind::Directory => FileType::Directory,
        Kind::Symlink => FileType::Symlink,
        Kind::CharDevice => FileType::CharDevice,
        Kind::BlockDevice => FileType::BlockDevice,
        Kind::Fifo => FileType::Fifo,
        Kind::Socket => FileType::Socket,
    }
}

fn attr(s: starina::fs::Stat) -> Attr {
    Attr {
        ino: s.ino,
        kind: kind(s.kind),
        mode: s.mode,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        size: s.size,
        blocks: s.blocks,
        atime: s.atime,
        mtime: s.mtime,
        ctime: s.ctime,
    }
}

/// `name` in directory `dir`; the inode itself when `name` is empty.
fn at(dir: Ino, name: &[u8]) -> Result<PathArg<'_>, Errno> {
    let base = u32::try_from(dir).map_err(|_| Errno::EOVERFLOW)?;
    Ok(PathArg { base, path: name })
}

fn decode_stat(body: &[u8]) -> Result<Attr, Errno> {
    wire::decode_stat(body).map(attr).ok_or(Errno::EIO)
}

impl NativeFiles {
    pub fn new(channel: Channel) -> Result<NativeFiles, FsError> {
        let mut calls = Calls::new(channel)?;
        let stat_root = Request::Stat {
            path: PathArg::absolute("/"),
            follow: true,
        };
        let root = calls.call(|id| stat_root.encode(id))?;
        let root = wire::decode_stat(&root)
            .ok_or_else(|| FsError::new(starina::fs::ErrorKind::Malformed, "stat of /"))?
            .ino;
        Ok(NativeFiles { calls, root })
    }

    fn call(&mut self, request: Request<'_>) -> Result<Vec<u8>, Errno> {
        self.calls.call(|id| request.encode(id)).map_err(errno)
    }

    fn call_file(&mut self, file: &OpenFile, request: FileRequest<'_>) -> Result<Vec<u8>, Errno> {
        self.calls
            .call_file(&file.0, |id| request.encode(id))
            .map_err(errno)
    }

    fn done(&mut self, request: Request<'_>) -> Result<(), Errno> {
        self.call(request).map(drop)
    }
}

impl FileBackend for NativeFiles {
    type File = OpenFile;

    fn root(&self) -> Ino {
        self.root
    }

    fn now(&mut self) -> u64 {
        starina::timer::unix_seconds()
    }

    fn stat(&mut self, ino: Ino) -> Result<Attr, Errno> {
        let path = at(ino, b"")?;
        let body = self.call(Request::Stat {
            path,
            follow: false,
        })?;
        decode_stat(&body)
    }

    fn lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Attr, Errno> {
        let path = at(dir, name)?;
        let body = self.call(Request::Stat {
            path,
            follow: false,
        })?;
        decode_stat(&body)
    }

    fn read_dir(&mut self, dir: Ino, cookie: u64) -> Result<Vec<DirEntry>, Errno> {
        let path = at(dir, b"")?;
        let body = self.call(Request::ReadDir { path, cookie })?;
        let entries = wire::decode_dir_entries(&body).ok_or(Errno::EIO)?;
        Ok(entries
            .into_iter()
            .map(|e| DirEntry {
                ino: e.ino,
                kind: kind(e.kind),
                name: e.name,
                cookie: e.cookie,
            })
            .collect())
    }

    fn make_node(&mut self, dir: Ino, name: &[u8], k: Kind, mode: u16) -> Result<Attr, Errno> {
        let path = at(dir, name)?;
        let kind = file_type(k);
        let body = self.call(Request::MakeNode { path, kind, mode })?;
        decode_stat(&body)
    }

    fn mkdir(&mut self, dir: Ino, name: &[u8], mode: u16) -> Result<(), Errno> {
        let path = at(dir, name)?;
        self.done(Request::MakeDir { path, mode })
    }

    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8]) -> Result<(), Errno> {
        let path = at(dir, name)?;
        self.done(Request::Symlink { target, path })
    }

    fn read_link(&mut self, ino: Ino) -> Result<Vec<u8>, Errno> {
        let path = at(ino, b"")?;
        self.call(Request::ReadLink { path })
    }

    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        let (existing, new) = (at(ino, b"")?, at(dir, name)?);
        self.done(Request::Link { existing, new })
    }

    fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        let path = at(dir, name)?;
        self.done(Request::Unlink { path })
    }

    fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        let path = at(dir, name)?;
        self.done(Request::RemoveDir { path })
    }

    fn rename(
        &mut self,
        dir: Ino,
        name: &[u8],
        new_dir: Ino,
        new_name: &[u8],
    ) -> Result<(), Errno> {
        let (from, to) = (at(dir, name)?, at(new_dir, new_name)?);
        self.done(Request::Rename { from, to })
    }

    fn set_attr(&mut self, ino: Ino, change: &SetAttr) -> Result<Attr, Errno> {
        let path = at(ino, b"")?;
        let attr = starina::fs::SetAttr {
            mode: change.mode,
            uid: change.uid,
            gid: change.gid,
            size: change.size,
            atime: change.atime,
            mtime: change.mtime,
        };
        let body = self.call(Request::SetAttr { path, attr })?;
        decode_stat(&body)
    }

    fn statfs(&mut self) -> Result<FsStats, Errno> {
        let body = self.call(Request::StatFs)?;
        let s = wire::decode_statfs(&body).ok_or(Errno::EIO)?;
        Ok(FsStats {
            block_size: s.block_size,
            blocks: s.blocks,
            free_blocks: s.free_blocks,
            available_blocks: s.available_blocks,
            inodes: s.inodes,
            free_inodes: s.free_inodes,
            name_max: s.name_max,
        })
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.done(Request::Sync)
    }

    fn hold(&mut self, ino: Ino) -> Result<(), Errno> {
        let ino = u32::try_from(ino).map_err(|_| Errno::EINVAL)?;
        self.done(Request::Hold { ino })
    }

    fn release(&mut self, ino: Ino) {
        let Ok(ino) = u32::try_from(ino) else {
            return;
        };
        if let Err(e) = self.done(Request::Release { ino }) {
            log::warn!("fs: letting go of inode {ino}: errno {}", e.0);
        }
    }

    fn open(&mut self, ino: Ino, mode: OpenMode) -> Result<OpenFile, Errno> {
        let flags = OpenFlags {
            read: mode.read,
            write: mode.write,
            append: mode.append,
            ..OpenFlags::default()
        };
        let uri = flags.uri(&format!("inode:{ino}"));
        self.calls.open(&uri).map(OpenFile).map_err(errno)
    }

    fn read(&mut self, file: &mut OpenFile, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        // FUSE takes a short read for the end of the file: fill it. Room
        // for all of it at once: growing by doubling cost a few percent of
        // a cold sequential read (copies and the kernel's page allocator).
        let mut out = Vec::with_capacity(len as usize);
        while out.len() < len as usize {
            let want = (len as usize - out.len()).min(wire::READ_MAX) as u32;
            let at = offset + out.len() as u64;
            let data = self.call_file(
                file,
                FileRequest::Read {
                    offset: at,
                    len: want,
                },
            )?;
            if data.is_empty() {
                break;
            }
            if data.len() > want as usize {
                return Err(Errno::EIO);
            }
            out.extend_from_slice(&data);
        }
        Ok(out)
    }

    fn write(&mut self, file: &mut OpenFile, offset: u64, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < data.len() {
            let chunk = &data[done..data.len().min(done + wire::WRITE_MAX)];
            let at = offset + done as u64;
            let body = self.call_file(
                file,
                FileRequest::Write {
                    offset: at,
                    data: chunk,
                },
            )?;
            let mut r = wire::Reader(&body);
            let n = r.u32().and_then(|n| r.end(n)).ok_or(Errno::EIO)? as usize;
            if n == 0 || n > chunk.len() {
                return Err(Errno::EIO);
            }
            done += n;
        }
        Ok(())
    }

    fn sync_file(&mut self, file: &mut OpenFile) -> Result<(), Errno> {
        self.call_file(file, FileRequest::Sync).map(drop)
    }
}
