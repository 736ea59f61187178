//! The blocking file client: each call sends one request and waits for its
//! answer (at most [`super::calls::CALL_TIMEOUT_MS`]), through
//! [`super::calls::Calls`]. For sequential code (a command, a
//! setup step, a server that serves files one request at a time); the
//! requests and replies are in [`super::wire`] for a main loop that wants
//! to keep going while the fs server works.

use alloc::string::String;
use alloc::vec::Vec;

use super::calls::malformed;
use super::calls::Calls;
use super::wire;
use super::wire::FileRequest;
use super::wire::OpenFlags;
use super::wire::PathArg;
use super::wire::Request;
use super::DirEntry;
use super::ErrorKind;
use super::FsError;
use super::SetAttr;
use super::Stat;
use super::StatFs;
use crate::Channel;

/// A file system, through its server's `fs` channel. Paths are absolute.
pub struct Files {
    calls: Calls,
}

impl Files {
    /// Takes the channel from the spec's `[needs] fs = "fs"`.
    pub fn new(channel: Channel) -> Result<Files, FsError> {
        Ok(Files {
            calls: Calls::new(channel)?,
        })
    }

    /// The channel to the server (for a main loop that watches it, or a
    /// test that speaks the protocol by hand).
    pub fn channel(&self) -> &Channel {
        self.calls.channel()
    }

    /// Opens `path` as `options` say.
    pub fn open(&mut self, path: &str, options: &OpenOptions) -> Result<File, FsError> {
        let channel = self.calls.open(&options.0.uri(path))?;
        Ok(File {
            calls: Calls::new(channel)?,
        })
    }

    /// The whole contents of a file.
    pub fn read(&mut self, path: &str) -> Result<Vec<u8>, FsError> {
        let mut file = self.open(path, &OpenOptions::read())?;
        file.read_to_end()
    }

    /// Creates or replaces a file with `data` (mode 644), synced to disk.
    pub fn write(&mut self, path: &str, data: &[u8]) -> Result<(), FsError> {
        let mut file = self.open(path, OpenOptions::write().create().truncate())?;
        file.write_all_at(0, data)?;
        file.sync()
    }

    fn request(&mut self, req: Request<'_>) -> Result<Vec<u8>, FsError> {
        self.calls.call(|id| req.encode(id))
    }

    fn no_result(&mut self, req: Request<'_>) -> Result<(), FsError> {
        self.request(req).map(drop)
    }

    /// Follows a symlink at the end of `path`.
    pub fn stat(&mut self, path: &str) -> Result<Stat, FsError> {
        let path = PathArg::absolute(path);
        let body = self.request(Request::Stat { path, follow: true })?;
        wire::decode_stat(&body).ok_or_else(|| malformed("stat"))
    }

    /// Does not follow a symlink at the end of `path`.
    pub fn lstat(&mut self, path: &str) -> Result<Stat, FsError> {
        let path = PathArg::absolute(path);
        let body = self.request(Request::Stat {
            path,
            follow: false,
        })?;
        wire::decode_stat(&body).ok_or_else(|| malformed("lstat"))
    }

    /// Every entry of a directory, "." and ".." included.
    pub fn read_dir(&mut self, path: &str) -> Result<Vec<DirEntry>, FsError> {
        let mut all = Vec::new();
        let mut cookie = 0;
        loop {
            let path = PathArg::absolute(path);
            let body = self.request(Request::ReadDir { path, cookie })?;
            let batch = wire::decode_dir_entries(&body).ok_or_else(|| malformed("read_dir"))?;
            match batch.last() {
                Some(last) => cookie = last.cookie,
                None => return Ok(all),
            }
            all.extend(batch);
        }
    }

    pub fn create_dir(&mut self, path: &str, mode: u16) -> Result<(), FsError> {
        self.no_result(Request::MakeDir {
            path: PathArg::absolute(path),
            mode,
        })
    }

    pub fn remove_file(&mut self, path: &str) -> Result<(), FsError> {
        self.no_result(Request::Unlink {
            path: PathArg::absolute(path),
        })
    }

    pub fn remove_dir(&mut self, path: &str) -> Result<(), FsError> {
        self.no_result(Request::RemoveDir {
            path: PathArg::absolute(path),
        })
    }

    /// Renames, replacing an existing `to` in one step.
    pub fn rename(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        let (from, to) = (PathArg::absolute(from), PathArg::absolute(to));
        self.no_result(Request::Rename { from, to })
    }

    pub fn symlink(&mut self, target: &str, path: &str) -> Result<(), FsError> {
        let path = PathArg::absolute(path);
        self.no_result(Request::Symlink {
            target: target.as_bytes(),
            path,
        })
    }

    pub fn read_link(&mut self, path: &str) -> Result<String, FsError> {
        let body = self.request(Request::ReadLink {
            path: PathArg::absolute(path),
        })?;
        String::from_utf8(body)
            .map_err(|_| FsError::new(ErrorKind::Invalid, "the link's target is not UTF-8"))
    }

    pub fn hard_link(&mut self, existing: &str, new: &str) -> Result<(), FsError> {
        let (existing, new) = (PathArg::absolute(existing), PathArg::absolute(new));
        self.no_result(Request::Link { existing, new })
    }

    /// chmod, chown, utimens and truncate in one: what `attr` sets.
    pub fn set_attr(&mut self, path: &str, attr: SetAttr) -> Result<Stat, FsError> {
        let body = self.request(Request::SetAttr {
            path: PathArg::absolute(path),
            attr,
        })?;
        wire::decode_stat(&body).ok_or_else(|| malformed("set_attr"))
    }

    pub fn statfs(&mut self) -> Result<StatFs, FsError> {
        let body = self.request(Request::StatFs)?;
        wire::decode_statfs(&body).ok_or_else(|| malformed("statfs"))
    }

    /// Everything written so far is on the disk when this returns.
    pub fn sync(&mut self) -> Result<(), FsError> {
        self.no_result(Request::Sync)
    }
}

/// How to open a file (builder): `OpenOptions::write().create()`.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions(pub OpenFlags);

impl OpenOptions {
    pub fn read() -> OpenOptions {
        OpenOptions(OpenFlags {
            read: true,
            mode: wire::DEFAULT_FILE_MODE,
            ..OpenFlags::default()
        })
    }
    pub fn write() -> OpenOptions {
        OpenOptions(OpenFlags {
            write: true,
            mode: wire::DEFAULT_FILE_MODE,
            ..OpenFlags::default()
        })
    }
    pub fn and_read(&mut self) -> &mut Self {
        self.0.read = true;
        self
    }
    pub fn create(&mut self) -> &mut Self {
        self.0.create = true;
        self
    }
    /// Fails with `Exists` if the file is there (with `create`).
    pub fn exclusive(&mut self) -> &mut Self {
        self.0.excl = true;
        self
    }
    pub fn truncate(&mut self) -> &mut Self {
        self.0.trunc = true;
        self
    }
    pub fn append(&mut self) -> &mut Self {
        self.0.append = true;
        self.0.write = true;
        self
    }
    pub fn mode(&mut self, mode: u16) -> &mut Self {
        self.0.mode = mode;
        self
    }
}

/// An open file. Dropping it closes it.
pub struct File {
    calls: Calls,
}

impl core::fmt::Debug for File {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("File")
            .field("channel", &self.calls.channel().id())
            .finish()
    }
}

impl File {
    fn request(&mut self, req: FileRequest<'_>) -> Result<Vec<u8>, FsError> {
        self.calls.call(|id| req.encode(id))
    }

    /// Reads up to `buf.len()` bytes at `offset` (at most one message's
    /// worth, [`wire::READ_MAX`]); 0 at the end of the file.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, FsError> {
        let len = buf.len().min(wire::READ_MAX) as u32;
        let data = self.request(FileRequest::Read { offset, len })?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    pub fn read_to_end(&mut self) -> Result<Vec<u8>, FsError> {
        let mut out = Vec::new();
        loop {
            let offset = out.len() as u64;
            let data = self.request(FileRequest::Read {
                offset,
                len: wire::READ_MAX as u32,
            })?;
            if data.is_empty() {
                return Ok(out);
            }
            out.extend_from_slice(&data);
        }
    }

    /// Writes at `offset` (at the end for a file opened with `append`);
    /// returns how many bytes went in (at most [`wire::WRITE_MAX`]).
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<usize, FsError> {
        let data = &data[..data.len().min(wire::WRITE_MAX)];
        let body = self.request(FileRequest::Write { offset, data })?;
        let mut r = wire::Reader(&body);
        let n = r
            .u32()
            .and_then(|n| r.end(n))
            .ok_or_else(|| malformed("write"))?;
        Ok(n as usize)
    }

    /// Writes all of `data` at `offset`.
    pub fn write_all_at(&mut self, offset: u64, data: &[u8]) -> Result<(), FsError> {
        let mut done = 0;
        while done < data.len() {
            let n = self.write_at(offset + done as u64, &data[done..])?;
            if n == 0 {
                return Err(FsError::new(ErrorKind::Io, "the fs server wrote nothing"));
            }
            done += n;
        }
        Ok(())
    }

    pub fn stat(&mut self) -> Result<Stat, FsError> {
        let body = self.request(FileRequest::Stat)?;
        wire::decode_stat(&body).ok_or_else(|| malformed("stat"))
    }

    pub fn set_len(&mut self, size: u64) -> Result<(), FsError> {
        self.request(FileRequest::SetLen { size }).map(drop)
    }

    /// The file's data and metadata are on the disk when this returns.
    pub fn sync(&mut self) -> Result<(), FsError> {
        self.request(FileRequest::Sync).map(drop)
    }
}
