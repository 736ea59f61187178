//! Requests on the `fs` channel: metadata and directories by path.

use alloc::vec::Vec;

use starina::fs::wire;
use starina::fs::wire::PathArg;
use starina::fs::wire::Request;
use starina::fs::DirEntry;
use starina::fs::ErrorKind;
use starina::fs::FileType;
use starina::fs::FsError;
use starina::fs::SetAttr;
use starina::fs::Stat;
use starina::fs::StatFs;
use starina::mainloop::Cx;
use starina::Error;
use starina::HandleId;
use starina_ext2 as ext2;

use crate::errors::error;
use crate::errors::from_ext2;
use crate::held::Held;
use crate::paths::parent_and_name;
use crate::paths::resolve;
use crate::paths::show;
use crate::paths::Ext2;
use crate::server::answer;
use crate::server::malformed;
use crate::server::Server;
use crate::server::Watched;

/// Directory entries asked of the file system per `ReadDir` request (as
/// many as fit in the reply are sent).
const READ_DIR_BATCH: usize = 512;

impl Server {
    pub fn request(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        held: &mut Held,
        body: &[u8],
    ) -> Result<(), Error> {
        let (call_id, request) = Request::decode(body);
        let (Some(call_id), Some(request)) = (call_id, request) else {
            return malformed(cx, id, call_id);
        };
        let result = self.fs().and_then(|fs| match request {
            Request::Hold { ino } => held.hold(fs, ino).map(|()| Vec::new()),
            Request::Release { ino } => held.release(fs, ino).map(|()| Vec::new()),
            other => serve(fs, other),
        });
        answer(cx, id, call_id, result)
    }
}

fn serve(fs: &mut Ext2, request: Request<'_>) -> Result<Vec<u8>, FsError> {
    let none = |r: Result<(), ext2::FsError>, arg: &PathArg<'_>| {
        r.map(|()| Vec::new()).map_err(|e| from_ext2(e, &show(arg)))
    };
    match request {
        Request::Stat { path, follow } => {
            let ino = resolve(fs, &path, follow)?;
            stat(fs, ino, &path).map(|s| wire::encode_stat(&s))
        }
        Request::ReadDir { path, cookie } => read_dir(fs, &path, cookie),
        Request::MakeDir { path, mode } => {
            let (dir, name) = parent_and_name(fs, &path)?;
            let made = fs.mkdir(dir, name, mode & 0o7777, 0, 0).map(drop);
            none(made, &path)
        }
        Request::MakeNode { path, kind, mode } => {
            let kind = match kind {
                FileType::Directory | FileType::Symlink => {
                    return Err(error(
                        ErrorKind::Invalid,
                        "make_node makes files, not directories or symlinks",
                    ))
                }
                other => ext2_kind(other),
            };
            let (dir, name) = parent_and_name(fs, &path)?;
            let ino = fs
                .create(dir, name, kind, mode & 0o7777, 0, 0)
                .map_err(|e| from_ext2(e, &show(&path)))?;
            stat(fs, ino, &path).map(|s| wire::encode_stat(&s))
        }
        Request::Unlink { path } => {
            let (dir, name) = parent_and_name(fs, &path)?;
            none(fs.unlink(dir, name), &path)
        }
        Request::RemoveDir { path } => {
            let (dir, name) = parent_and_name(fs, &path)?;
            none(fs.rmdir(dir, name), &path)
        }
        Request::Rename { from, to } => {
            let (from_dir, from_name) = parent_and_name(fs, &from)?;
            let (to_dir, to_name) = parent_and_name(fs, &to)?;
            none(fs.rename(from_dir, from_name, to_dir, to_name), &from)
        }
        Request::Symlink { target, path } => {
            let (dir, name) = parent_and_name(fs, &path)?;
            none(fs.symlink(dir, name, target, 0, 0).map(drop), &path)
        }
        Request::ReadLink { path } => {
            let ino = resolve(fs, &path, false)?;
            fs.readlink(ino).map_err(|e| from_ext2(e, &show(&path)))
        }
        Request::Link { existing, new } => {
            let ino = resolve(fs, &existing, false)?;
            let (dir, name) = parent_and_name(fs, &new)?;
            none(fs.link(ino, dir, name), &new)
        }
        Request::SetAttr { path, attr } => {
            let ino = resolve(fs, &path, true)?;
            let stat = set_attr(fs, ino, &attr).map_err(|e| from_ext2(e, &show(&path)))?;
            Ok(wire::encode_stat(&stat))
        }
        Request::StatFs => Ok(wire::encode_statfs(&statfs(fs))),
        Request::Sync => fs
            .sync()
            .map(|()| Vec::new())
            .map_err(|e| from_ext2(e, "sync")),
        // Served with the client's state, before this.
        Request::Hold { .. } | Request::Release { .. } => Err(error(
            ErrorKind::Internal,
            "hold and release belong to a client",
        )),
    }
}

/// What `stat` answers for `ino`.
pub fn stat(fs: &mut Ext2, ino: ext2::Ino, arg: &PathArg<'_>) -> Result<Stat, FsError> {
    fs.stat(ino)
        .map(convert_stat)
        .map_err(|e| from_ext2(e, &show(arg)))
}

pub fn convert_stat(s: ext2::Stat) -> Stat {
    Stat {
        ino: u64::from(s.ino),
        kind: convert_kind(s.kind),
        mode: s.mode,
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        size: s.size,
        blocks: s.blocks,
        atime: u64::from(s.atime),
        mtime: u64::from(s.mtime),
        ctime: u64::from(s.ctime),
    }
}

fn convert_kind(kind: ext2::FileType) -> starina::fs::FileType {
    use starina::fs::FileType as F;
    match kind {
        ext2::FileType::Regular => F::Regular,
        ext2::FileType::Directory => F::Directory,
        ext2::FileType::Symlink => F::Symlink,
        ext2::FileType::CharDev => F::CharDevice,
        ext2::FileType::BlockDev => F::BlockDevice,
        ext2::FileType::Fifo => F::Fifo,
        ext2::FileType::Socket => F::Socket,
    }
}

fn ext2_kind(kind: FileType) -> ext2::FileType {
    match kind {
        FileType::Regular => ext2::FileType::Regular,
        FileType::Directory => ext2::FileType::Directory,
        FileType::Symlink => ext2::FileType::Symlink,
        FileType::CharDevice => ext2::FileType::CharDev,
        FileType::BlockDevice => ext2::FileType::BlockDev,
        FileType::Fifo => ext2::FileType::Fifo,
        FileType::Socket => ext2::FileType::Socket,
    }
}

/// Applies `attr`; times past 2106 do not fit ext2's 32 bits and are `Invalid`.
pub fn set_attr(fs: &mut Ext2, ino: ext2::Ino, attr: &SetAttr) -> Result<Stat, ext2::FsError> {
    let time = |t: Option<u64>| {
        t.map(|t| u32::try_from(t).map_err(|_| ext2::FsError::Invalid))
            .transpose()
    };
    let attr = ext2::SetAttr {
        mode: attr.mode.map(|m| m & 0o7777),
        uid: attr.uid,
        gid: attr.gid,
        size: attr.size,
        atime: time(attr.atime)?,
        mtime: time(attr.mtime)?,
    };
    fs.set_attr(ino, &attr).map(convert_stat)
}

fn statfs(fs: &mut Ext2) -> StatFs {
    let s = fs.statfs();
    StatFs {
        block_size: s.block_size,
        blocks: s.blocks,
        free_blocks: s.free_blocks,
        available_blocks: s.available_blocks,
        inodes: s.inodes,
        free_inodes: s.free_inodes,
        name_max: s.name_max,
    }
}

/// The entries after `cookie` that fit in one reply.
fn read_dir(fs: &mut Ext2, path: &PathArg<'_>, cookie: u64) -> Result<Vec<u8>, FsError> {
    let dir = resolve(fs, path, true)?;
    let found = fs
        .readdir(dir, cookie, READ_DIR_BATCH)
        .map_err(|e| from_ext2(e, &show(path)))?;
    let mut room = wire::READ_MAX - 2;
    let mut entries = Vec::new();
    for e in found {
        let entry = DirEntry {
            ino: u64::from(e.ino),
            kind: convert_kind(e.kind),
            name: e.name,
            cookie: e.cookie,
        };
        let len = wire::dir_entry_len(&entry);
        if len > room {
            break;
        }
        room -= len;
        entries.push(entry);
    }
    Ok(wire::encode_dir_entries(&entries))
}
