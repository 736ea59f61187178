//! Native files for Linux: the FUSE server of `starina_bridge::fuse` over
//! the fs server (the spec's `[needs] fs`), behind the VM's virtio-fs
//! device. The guest mounts it (`starina.share=<tag>:<dir>` on the kernel
//! command line, mounted by the agent).
//!
//! [`NativeFiles`] is the bridge's `FileBackend` over `starina::fs`: opens
//! by `inode:<n>` through `Files`, reads and writes through the `File` of
//! each FUSE file handle, everything else by (inode, name) through
//! [`FsCalls`]. An inode on its own is named `PathArg { base: <inode>,
//! path: "" }` (stat, set_attr, read_link, and a hard link's target).
//!
//! The calls block: the virtio-fs device answers each FUSE request while
//! the guest's vCPU waits in the exit that notified the queue, so a slow
//! fs server stalls the guest (its timer ticks too) for as long as the
//! call takes (at most the client's 60 s timeout). Acceptable for now; an
//! asynchronous device would let the vCPU run on.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;

use starina::fs::wire::PathArg;
use starina::fs::wire::Request;
use starina::fs::File;
use starina::fs::FileType;
use starina::fs::Files;
use starina::fs::FsError;
use starina::fs::OpenOptions;
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

use crate::fs_calls::FsCalls;

/// The most one read asks the fs server for (its reply's limit).
const READ_CHUNK: usize = starina::fs::wire::READ_MAX;

/// The fs server, as the FUSE server's backend.
pub struct NativeFiles {
    files: Files,
    calls: FsCalls,
    root: Ino,
}

/// The FUSE server as the device's handler (the VMM does not know the
/// bridge).
struct Fuse(FuseServer<NativeFiles>);

impl FuseHandler for Fuse {
    fn handle(&mut self, request: &[u8], reply_room: usize) -> Vec<u8> {
        self.0.handle(request, reply_room)
    }
}

/// The virtio-fs device for the guest, serving the fs server behind
/// `channel` as `tag`.
pub fn device(channel: Channel, tag: &str) -> Result<FsDevice, alloc::string::String> {
    let backend = NativeFiles::new(channel).map_err(|e| format!("fs server: {e}"))?;
    let handler = Box::new(Fuse(FuseServer::new(backend)));
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
    starina::fs::wire::decode_stat(body)
        .map(attr)
        .ok_or(Errno::EIO)
}

impl NativeFiles {
    pub fn new(channel: Channel) -> Result<NativeFiles, FsError> {
        let mut files = Files::new(channel)?;
        let calls = FsCalls::new(files.channel())?;
        let root = files.stat("/")?.ino;
        Ok(NativeFiles { files, calls, root })
    }

    fn call(&mut self, request: Request<'_>) -> Result<Vec<u8>, Errno> {
        self.calls
            .call(self.files.channel(), &request)
            .map_err(errno)
    }

    fn done(&mut self, request: Request<'_>) -> Result<(), Errno> {
        self.call(request).map(drop)
    }
}

impl FileBackend for NativeFiles {
    type File = File;

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
        let entries = starina::fs::wire::decode_dir_entries(&body).ok_or(Errno::EIO)?;
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
        let s = self.files.statfs().map_err(errno)?;
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
        self.files.sync().map_err(errno)
    }

    fn open(&mut self, ino: Ino, mode: OpenMode) -> Result<File, Errno> {
        let mut options = if mode.write {
            OpenOptions::write()
        } else {
            OpenOptions::read()
        };
        if mode.write && mode.read {
            options.and_read();
        }
        if mode.append {
            options.append();
        }
        self.files
            .open(&format!("inode:{ino}"), &options)
            .map_err(errno)
    }

    fn read(&mut self, file: &mut File, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        // FUSE takes a short read for the end of the file: fill it.
        let mut out = alloc::vec![0u8; len as usize];
        let mut done = 0;
        while done < out.len() {
            let end = out.len().min(done + READ_CHUNK);
            let n = file
                .read_at(offset + done as u64, &mut out[done..end])
                .map_err(errno)?;
            if n == 0 {
                break;
            }
            done += n;
        }
        out.truncate(done);
        Ok(out)
    }

    fn write(&mut self, file: &mut File, offset: u64, data: &[u8]) -> Result<(), Errno> {
        file.write_all_at(offset, data).map_err(errno)
    }

    fn sync_file(&mut self, file: &mut File) -> Result<(), Errno> {
        file.sync().map_err(errno)
    }
}
