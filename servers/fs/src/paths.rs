//! Path arguments to inodes: an absolute path, or one name in the
//! directory `base` (the form the FUSE bridge uses: it knows inodes).

use alloc::format;
use alloc::string::String;

use starina::fs::wire::PathArg;
use starina::fs::ErrorKind;
use starina::fs::FsError;
use starina_ext2::Fs;
use starina_ext2::Ino;

use crate::device::DiskDevice;
use crate::errors::error;
use crate::errors::from_ext2;

pub type Ext2 = Fs<DiskDevice>;

/// The path, for messages.
pub fn show(arg: &PathArg<'_>) -> String {
    let text = String::from_utf8_lossy(arg.path);
    match arg.base {
        0 => format!("'{text}'"),
        base => format!("'{text}' in inode {base}"),
    }
}

fn single_name<'a>(arg: &PathArg<'a>) -> Result<&'a [u8], FsError> {
    if arg.path.contains(&b'/') {
        return Err(error(
            ErrorKind::Invalid,
            format!(
                "{}: a name relative to an inode is one component",
                show(arg)
            ),
        ));
    }
    Ok(arg.path)
}

/// The inode `arg` names; `follow`: a symlink at the end is followed.
pub fn resolve(fs: &mut Ext2, arg: &PathArg<'_>, follow: bool) -> Result<Ino, FsError> {
    let found = match arg.base {
        0 => fs.resolve(arg.path, follow),
        base => match single_name(arg)? {
            b"" => Ok(base),
            name => fs.lookup(base, name),
        },
    };
    found.map_err(|e| from_ext2(e, &show(arg)))
}

/// The directory an entry is in and the entry's name: for creating,
/// removing and renaming. Trailing slashes are dropped (`/a/b/` is `b` in
/// `/a`); the root itself has no parent (`Invalid`).
pub fn parent_and_name<'a>(fs: &mut Ext2, arg: &PathArg<'a>) -> Result<(Ino, &'a [u8]), FsError> {
    if arg.base != 0 {
        let name = single_name(arg)?;
        if name.is_empty() {
            return Err(error(ErrorKind::Invalid, format!("{}: no name", show(arg))));
        }
        return Ok((arg.base, name));
    }
    let mut path = arg.path;
    while path.len() > 1 && path.ends_with(b"/") {
        path = &path[..path.len() - 1];
    }
    if !path.starts_with(b"/") {
        return Err(error(
            ErrorKind::Invalid,
            format!("{}: not an absolute path", show(arg)),
        ));
    }
    let split = path.iter().rposition(|&b| b == b'/').unwrap_or(0);
    let (dir, name) = (&path[..split.max(1)], &path[split + 1..]);
    if name.is_empty() {
        return Err(error(
            ErrorKind::Invalid,
            format!("{}: the root has no parent", show(arg)),
        ));
    }
    let parent = fs
        .resolve(dir, true)
        .map_err(|e| from_ext2(e, &show(arg)))?;
    Ok((parent, name))
}
