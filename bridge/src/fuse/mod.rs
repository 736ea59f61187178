//! The FUSE server behind the VMM's virtio-fs device: Linux mounts the
//! native file system (`mount -t virtiofs starina /mnt/starina`) and its
//! FUSE requests are answered here, over a [`FileBackend`] (the native
//! side adapts `starina::fs` to it).
//!
//! | module | job |
//! |---|---|
//! | `protocol` | FUSE 7.x requests parsed, replies built (explicit LE bytes) |
//! | `backend` | the [`FileBackend`] trait and its types |
//! | `server` | [`FuseServer`]: dispatch, node ids, file handles |
//!
//! Supported: INIT, DESTROY, LOOKUP, FORGET, BATCH_FORGET, GETATTR,
//! SETATTR, READLINK, SYMLINK, MKNOD, MKDIR, UNLINK, RMDIR, RENAME,
//! RENAME2 (flags 0 and NOREPLACE), LINK, OPEN, READ, WRITE, STATFS,
//! RELEASE, FSYNC, FLUSH, OPENDIR, READDIR, READDIRPLUS, RELEASEDIR,
//! FSYNCDIR, SYNCFS (a guest `sync` writes the native file system out),
//! CREATE, FALLOCATE (mode 0). Everything else (ACCESS, LSEEK,
//! xattrs, locks, ioctl, poll, copy_file_range, DAX mappings, ...) is
//! ENOSYS, which the kernel remembers and handles itself.

pub mod backend;
pub mod protocol;
pub mod server;

#[cfg(test)]
mod memfs;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod host_kernel;

pub use backend::FileBackend;
pub use server::FuseServer;
