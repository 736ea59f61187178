//! The file system's errors as the protocol's error kinds.

use alloc::format;
use alloc::string::String;

use starina::fs::ErrorKind;
use starina::fs::FsError;
use starina_ext2::FsError as Ext2Error;

/// The protocol error for an ext2 error; `what` names the operation and
/// its path for the text.
pub fn from_ext2(e: Ext2Error, what: &str) -> FsError {
    let (kind, why): (ErrorKind, String) = match e {
        Ext2Error::NotFound => (ErrorKind::NotFound, "no such file or directory".into()),
        Ext2Error::Exists => (ErrorKind::Exists, "it exists".into()),
        Ext2Error::NotDir => (ErrorKind::NotADirectory, "not a directory".into()),
        Ext2Error::IsDir => (ErrorKind::IsADirectory, "is a directory".into()),
        Ext2Error::NotEmpty => (ErrorKind::NotEmpty, "the directory is not empty".into()),
        Ext2Error::NoSpace => (ErrorKind::NoSpace, "no space left on the disk".into()),
        Ext2Error::ReadOnly => (ErrorKind::ReadOnly, "the file system is read-only".into()),
        Ext2Error::NameTooLong => (
            ErrorKind::NameTooLong,
            "a name is longer than 255 bytes".into(),
        ),
        Ext2Error::InvalidName => (ErrorKind::Invalid, "not a valid name".into()),
        Ext2Error::Invalid => (ErrorKind::Invalid, "invalid for this file".into()),
        Ext2Error::TooLarge => (ErrorKind::TooLarge, "the file would be too large".into()),
        Ext2Error::Loop => (ErrorKind::Loop, "too many symbolic links".into()),
        Ext2Error::Io(text) => (ErrorKind::Io, format!("disk I/O failed: {text}")),
        Ext2Error::Corrupt(text) => (ErrorKind::Io, format!("the file system is corrupt: {text}")),
    };
    FsError::new(kind, format!("{what}: {why}"))
}

/// A protocol error with a plain text.
pub fn error(kind: ErrorKind, text: impl Into<String>) -> FsError {
    FsError::new(kind, text)
}
