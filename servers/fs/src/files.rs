//! Open files: `Open` on the `fs` channel makes a channel per file, and
//! its requests read and write that inode.

use alloc::format;
use alloc::vec;
use alloc::vec::Vec;

use starina::fs::wire;
use starina::fs::wire::FileRequest;
use starina::fs::wire::OpenFlags;
use starina::fs::wire::OpenTarget;
use starina::fs::wire::PathArg;
use starina::fs::ErrorKind;
use starina::fs::FileType;
use starina::fs::FsError;
use starina::fs::SetAttr;
use starina::mainloop::Cx;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;
use starina_ext2 as ext2;

use crate::errors::error;
use crate::errors::from_ext2;
use crate::paths::parent_and_name;
use crate::paths::resolve;
use crate::paths::Ext2;
use crate::requests::set_attr;
use crate::requests::stat;
use crate::server::answer;
use crate::server::malformed;
use crate::server::Server;
use crate::server::Watched;

/// An open file: its inode and what it was opened for.
pub struct OpenFile {
    ino: ext2::Ino,
    read: bool,
    write: bool,
    append: bool,
}

impl Server {
    /// `Open { uri }`: answers `OpenReply` with the file's channel.
    pub fn open(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        call_id: u32,
        uri: &str,
    ) -> Result<(), Error> {
        let opened = self.fs().and_then(|fs| open_file(fs, uri));
        let file = match opened {
            Ok(file) => file,
            Err(e) => return answer(cx, id, call_id, Err(e)),
        };
        let ino = file.ino;
        let channel = Channel::create().and_then(|(ours, theirs)| {
            cx.add_channel(ours, Watched::File(file))?;
            Ok(theirs)
        });
        let theirs = match channel {
            Ok(theirs) => theirs,
            Err(e) => {
                // Out of handles or memory: the open fails, nothing else.
                self.release(ino);
                let why = format!("cannot open more files now: {e}");
                return answer(cx, id, call_id, Err(error(ErrorKind::Unavailable, why)));
            }
        };
        cx.send(
            id,
            Message::OpenReply {
                call_id,
                handle: theirs.into_handle(),
            },
        )
    }

    pub fn file_request(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        file: &mut OpenFile,
        body: &[u8],
    ) -> Result<(), Error> {
        let (call_id, request) = FileRequest::decode(body);
        let (Some(call_id), Some(request)) = (call_id, request) else {
            return malformed(cx, id, call_id);
        };
        let result = self.fs().and_then(|fs| serve(fs, file, request));
        answer(cx, id, call_id, result)
    }

    /// The file's channel closed.
    pub fn close(&mut self, file: OpenFile) {
        self.release(file.ino);
    }

    fn release(&mut self, ino: ext2::Ino) {
        if let Ok(fs) = &mut self.fs {
            if let Err(e) = fs.release(ino) {
                log::warn!("closing inode {ino}: {e}");
            }
        }
    }
}

/// Finds or creates the file `uri` names, checks the open mode against
/// it, truncates if asked, and holds it open.
fn open_file(fs: &mut Ext2, uri: &str) -> Result<OpenFile, FsError> {
    let (target, flags) = OpenFlags::parse(uri).map_err(|why| error(ErrorKind::Invalid, why))?;
    let path = match target {
        OpenTarget::Path(path) => path,
        OpenTarget::Inode(_) => "",
    };
    let arg = PathArg::absolute(path);
    let what = format!("'{uri}'");
    if flags.write && fs.is_read_only() {
        return Err(from_ext2(ext2::FsError::ReadOnly, &what));
    }
    let ino = match target {
        OpenTarget::Inode(_) if flags.create => {
            return Err(error(
                ErrorKind::Invalid,
                format!("{what}: create needs a path"),
            ))
        }
        OpenTarget::Inode(ino) => ino,
        OpenTarget::Path(_) if flags.create => create_or_find(fs, &arg, &flags)?,
        OpenTarget::Path(_) => resolve(fs, &arg, !flags.nofollow)?,
    };
    let kind = stat(fs, ino, &arg)?.kind;
    match kind {
        FileType::Directory if flags.write => {
            return Err(error(
                ErrorKind::IsADirectory,
                format!("{what}: is a directory"),
            ))
        }
        FileType::Symlink => {
            return Err(error(
                ErrorKind::Loop,
                format!("{what}: is a symbolic link (opened with nofollow)"),
            ))
        }
        _ => {}
    }
    if flags.trunc && flags.write && kind == FileType::Regular {
        let size_zero = SetAttr {
            size: Some(0),
            ..SetAttr::default()
        };
        set_attr(fs, ino, &size_zero).map_err(|e| from_ext2(e, &what))?;
    }
    fs.retain(ino);
    Ok(OpenFile {
        ino,
        read: flags.read,
        write: flags.write,
        append: flags.append,
    })
}

/// `create`: the existing file (`Exists` with `excl`), or a new one.
fn create_or_find(
    fs: &mut Ext2,
    arg: &PathArg<'_>,
    flags: &OpenFlags,
) -> Result<ext2::Ino, FsError> {
    let (dir, name) = parent_and_name(fs, arg)?;
    let what = crate::paths::show(arg);
    match fs.lookup(dir, name) {
        Ok(_) if flags.excl => Err(from_ext2(ext2::FsError::Exists, &what)),
        // An existing name: open what it leads to (a symlink is followed).
        Ok(_) => resolve(fs, arg, !flags.nofollow),
        Err(ext2::FsError::NotFound) => fs
            .create(
                dir,
                name,
                ext2::FileType::Regular,
                flags.mode & 0o7777,
                0,
                0,
            )
            .map_err(|e| from_ext2(e, &what)),
        Err(e) => Err(from_ext2(e, &what)),
    }
}

fn serve(fs: &mut Ext2, file: &OpenFile, request: FileRequest<'_>) -> Result<Vec<u8>, FsError> {
    // The file's name in an error only: no string per request.
    let failed = |e| from_ext2(e, &format!("inode {}", file.ino));
    match request {
        FileRequest::Read { offset, len } => {
            if !file.read {
                return Err(error(
                    ErrorKind::PermissionDenied,
                    "the file is not open for reading",
                ));
            }
            let mut buf = vec![0u8; (len as usize).min(wire::READ_MAX)];
            let n = fs.read(file.ino, offset, &mut buf).map_err(failed)?;
            buf.truncate(n);
            Ok(buf)
        }
        FileRequest::Write { offset, data } => {
            if !file.write {
                return Err(error(
                    ErrorKind::PermissionDenied,
                    "the file is not open for writing",
                ));
            }
            let offset = match file.append {
                true => fs.stat(file.ino).map_err(failed)?.size,
                false => offset,
            };
            let n = fs.write(file.ino, offset, data).map_err(failed)?;
            Ok((n as u32).to_le_bytes().to_vec())
        }
        FileRequest::Stat => {
            let s = fs.stat(file.ino).map_err(failed)?;
            Ok(wire::encode_stat(&crate::requests::convert_stat(s)))
        }
        FileRequest::SetLen { size } => {
            if !file.write {
                return Err(error(
                    ErrorKind::PermissionDenied,
                    "the file is not open for writing",
                ));
            }
            let attr = SetAttr {
                size: Some(size),
                ..SetAttr::default()
            };
            set_attr(fs, file.ino, &attr)
                .map(|_| Vec::new())
                .map_err(failed)
        }
        FileRequest::Sync => fs.sync().map(|()| Vec::new()).map_err(failed),
    }
}
