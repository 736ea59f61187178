//! Inodes a client holds (`Hold`/`Release` on its `fs` channel): kept
//! alive like open files, so the FUSE bridge can use every inode the guest
//! kernel knows even after its last name is gone. Let go when the client
//! releases them or its channel closes.

use alloc::collections::BTreeMap;
use alloc::format;

use starina::fs::ErrorKind;
use starina::fs::FsError;
use starina_ext2::Ino;

use crate::errors::error;
use crate::errors::from_ext2;
use crate::paths::Ext2;

/// Inodes one client may hold at once.
pub const MAX_HELD: usize = 1 << 16;

/// One client's held inodes, with how many times each.
#[derive(Default)]
pub struct Held(BTreeMap<Ino, u32>);

impl Held {
    pub fn hold(&mut self, fs: &mut Ext2, ino: Ino) -> Result<(), FsError> {
        if !self.0.contains_key(&ino) && self.0.len() >= MAX_HELD {
            let why = format!("a client may hold at most {MAX_HELD} inodes");
            return Err(error(ErrorKind::Unavailable, why));
        }
        // Only inodes in use: a freed one has nothing to keep.
        let stat = fs
            .stat(ino)
            .map_err(|e| from_ext2(e, &format!("inode {ino}")))?;
        if stat.nlink == 0 {
            return Err(error(
                ErrorKind::NotFound,
                format!("inode {ino} has no name"),
            ));
        }
        fs.retain(ino);
        *self.0.entry(ino).or_insert(0) += 1;
        Ok(())
    }

    pub fn release(&mut self, fs: &mut Ext2, ino: Ino) -> Result<(), FsError> {
        let Some(count) = self.0.get_mut(&ino) else {
            return Err(error(
                ErrorKind::Invalid,
                format!("inode {ino} is not held"),
            ));
        };
        *count -= 1;
        if *count == 0 {
            self.0.remove(&ino);
        }
        fs.release(ino)
            .map_err(|e| from_ext2(e, &format!("inode {ino}")))
    }

    /// The client is gone: everything it held is let go.
    pub fn release_all(self, fs: &mut Ext2) {
        for (ino, count) in self.0 {
            for _ in 0..count {
                if let Err(e) = fs.release(ino) {
                    log::warn!("letting go of inode {ino}: {e}");
                }
            }
        }
    }
}
