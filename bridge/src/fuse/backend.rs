//! What the FUSE server serves: a file system addressed by inode number
//! and (directory inode, one name), shaped on the native `starina::fs`
//! protocol (its `PathArg { base: <dir inode>, path: <name> }` form and
//! `Open` by `inode:<n>`), so the native side is a thin adapter.
//!
//! The types mirror `starina::fs`'s (this crate does not depend on the
//! SDK: the guest agent uses it too). Errors are POSIX errnos.

use alloc::vec::Vec;

/// A POSIX errno (positive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Errno(pub i32);

impl Errno {
    pub const EPERM: Errno = Errno(1);
    pub const ENOENT: Errno = Errno(2);
    pub const EIO: Errno = Errno(5);
    pub const EBADF: Errno = Errno(9);
    pub const EACCES: Errno = Errno(13);
    pub const EEXIST: Errno = Errno(17);
    pub const ENOTDIR: Errno = Errno(20);
    pub const EISDIR: Errno = Errno(21);
    pub const EINVAL: Errno = Errno(22);
    pub const ENFILE: Errno = Errno(23);
    pub const EFBIG: Errno = Errno(27);
    pub const ENOSPC: Errno = Errno(28);
    pub const ENAMETOOLONG: Errno = Errno(36);
    pub const ENOSYS: Errno = Errno(38);
    pub const ENOTEMPTY: Errno = Errno(39);
    pub const EPROTO: Errno = Errno(71);
    pub const EOVERFLOW: Errno = Errno(75);
    pub const EOPNOTSUPP: Errno = Errno(95);
    pub const ESTALE: Errno = Errno(116);
}

/// An inode number of the backend.
pub type Ino = u64;

/// The kind of an inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// What `stat` says of an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attr {
    pub ino: Ino,
    pub kind: Kind,
    /// Permission bits (with setuid, setgid and sticky), without the type.
    pub mode: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte units allocated.
    pub blocks: u64,
    /// Seconds since 1970.
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub kind: Kind,
    pub name: Vec<u8>,
    /// Reading the directory again from this cookie resumes after this
    /// entry (0 starts at the beginning).
    pub cookie: u64,
}

/// What changes in a `set_attr`: `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SetAttr {
    pub mode: Option<u16>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<u64>,
    pub mtime: Option<u64>,
}

/// The file system's figures.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FsStats {
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    pub available_blocks: u64,
    pub inodes: u64,
    pub free_inodes: u64,
    pub name_max: u32,
}

/// How a file is opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenMode {
    pub read: bool,
    pub write: bool,
    /// Writes go at the end whatever their offset.
    pub append: bool,
}

/// A file system by inode. `name`s are one directory entry each, already
/// checked (no '/', not "." or "..", not empty).
pub trait FileBackend {
    /// An open file.
    type File;

    /// The root directory's inode.
    fn root(&self) -> Ino;
    /// The time now, in seconds since 1970 (for `touch`).
    fn now(&mut self) -> u64;

    fn stat(&mut self, ino: Ino) -> Result<Attr, Errno>;
    /// The entry `name` in `dir`, not following a symlink.
    fn lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Attr, Errno>;
    /// Entries of `dir` after `cookie` ("." and ".." included); an empty
    /// batch is the end.
    fn read_dir(&mut self, dir: Ino, cookie: u64) -> Result<Vec<DirEntry>, Errno>;
    /// Creates a file of `kind` (not a directory or symlink).
    fn make_node(&mut self, dir: Ino, name: &[u8], kind: Kind, mode: u16) -> Result<Attr, Errno>;
    fn mkdir(&mut self, dir: Ino, name: &[u8], mode: u16) -> Result<(), Errno>;
    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8]) -> Result<(), Errno>;
    fn read_link(&mut self, ino: Ino) -> Result<Vec<u8>, Errno>;
    /// A new name `name` in `dir` for inode `ino`.
    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<(), Errno>;
    fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<(), Errno>;
    fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<(), Errno>;
    /// Renames, replacing an existing target in one step.
    fn rename(&mut self, dir: Ino, name: &[u8], new_dir: Ino, new_name: &[u8])
        -> Result<(), Errno>;
    fn set_attr(&mut self, ino: Ino, attr: &SetAttr) -> Result<Attr, Errno>;
    fn statfs(&mut self) -> Result<FsStats, Errno>;
    /// Everything written so far is on the disk when this returns.
    fn sync(&mut self) -> Result<(), Errno>;

    /// The kernel knows `ino` now (its first lookup): keep it alive, even
    /// after its last name goes, until [`FileBackend::release`] (FUSE's
    /// lookup count: a file renamed over or removed while Linux still has
    /// it must stay readable through the node id the kernel holds).
    fn hold(&mut self, ino: Ino) -> Result<(), Errno>;
    /// The kernel forgot `ino` (FORGET down to zero, or DESTROY).
    fn release(&mut self, ino: Ino);

    fn open(&mut self, ino: Ino, mode: OpenMode) -> Result<Self::File, Errno>;
    /// Reads `len` bytes at `offset`: fewer only at the end of the file.
    fn read(&mut self, file: &mut Self::File, offset: u64, len: u32) -> Result<Vec<u8>, Errno>;
    /// Writes all of `data` at `offset`.
    fn write(&mut self, file: &mut Self::File, offset: u64, data: &[u8]) -> Result<(), Errno>;
    fn sync_file(&mut self, file: &mut Self::File) -> Result<(), Errno>;
}
