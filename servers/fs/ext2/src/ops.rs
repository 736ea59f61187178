//! The namespace: lookup, path resolution, creating, linking, removing and renaming.

use alloc::vec::Vec;

use crate::device::BlockDevice;
use crate::fs::Fs;
use crate::inode::mode_bits;
use crate::inode::Inode;
use crate::types::FileType;
use crate::types::FsError;
use crate::types::Ino;
use crate::types::ROOT_INO;

/// Symlinks followed in one resolution before it is a loop.
const MAX_SYMLINKS: usize = 40;
/// The largest link count ext2 stores.
const MAX_LINKS: u16 = 65000;

/// A name usable for lookups: 1..=255 bytes without '/' or NUL.
fn check_name(name: &[u8]) -> Result<(), FsError> {
    if name.len() > 255 {
        return Err(FsError::NameTooLong);
    }
    if name.is_empty() || name.iter().any(|&b| b == b'/' || b == 0) {
        return Err(FsError::InvalidName);
    }
    Ok(())
}

/// A name a new entry may have: also not "." or "..".
fn check_new_name(name: &[u8]) -> Result<(), FsError> {
    check_name(name)?;
    if name == b"." || name == b".." {
        return Err(FsError::InvalidName);
    }
    Ok(())
}

impl<D: BlockDevice> Fs<D> {
    pub fn lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Ino, FsError> {
        check_name(name)?;
        self.maybe_writeback()?;
        let slot = self.find_entry(dir, name)?.ok_or(FsError::NotFound)?;
        Ok(slot.ino)
    }

    /// Resolves an absolute path, following symlinks in every component but the last
    /// (and the last too if `follow`).
    pub fn resolve(&mut self, path: &[u8], follow: bool) -> Result<Ino, FsError> {
        if path.first() != Some(&b'/') {
            return Err(FsError::Invalid);
        }
        // Components still to walk, the next one last.
        let mut pending: Vec<Vec<u8>> = components(path);
        let mut current = ROOT_INO;
        let mut links_followed = 0;
        while let Some(name) = pending.pop() {
            check_name(&name)?;
            let next = match self.find_entry(current, &name)? {
                Some(slot) => slot.ino,
                None => return Err(FsError::NotFound),
            };
            let inode = self.live_inode(next)?;
            let is_last = pending.is_empty();
            if inode.is_symlink() && (!is_last || follow) {
                links_followed += 1;
                if links_followed > MAX_SYMLINKS {
                    return Err(FsError::Loop);
                }
                let target = self.link_target(next, &inode)?;
                if target.first() == Some(&b'/') {
                    current = ROOT_INO;
                }
                pending.extend(components(&target));
                continue;
            }
            current = next;
        }
        Ok(current)
    }

    /// Creates a regular file, device node, fifo or socket.
    pub fn create(
        &mut self,
        dir: Ino,
        name: &[u8],
        kind: FileType,
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Ino, FsError> {
        if matches!(kind, FileType::Directory | FileType::Symlink) {
            return Err(FsError::Invalid);
        }
        self.prepare_new_entry(dir, name)?;
        let (ino, inode) = self.new_inode(dir, kind, mode, uid, gid)?;
        self.write_inode(ino, &inode)?;
        self.link_new_inode(dir, name, ino, kind)
    }

    pub fn mkdir(
        &mut self,
        dir: Ino,
        name: &[u8],
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<Ino, FsError> {
        self.prepare_new_entry(dir, name)?;
        let mut parent = self.dir_inode(dir)?;
        if parent.links >= MAX_LINKS {
            return Err(FsError::TooLarge);
        }
        let (ino, mut inode) = self.new_inode(dir, FileType::Directory, mode, uid, gid)?;
        inode.links = 2;
        let goal = self.inode_group_start(ino);
        let block = match self.map_alloc(&mut inode, 0, goal) {
            Ok((block, _)) => block,
            Err(e) => return self.abandon_new_inode(ino, inode, e),
        };
        self.init_dir_block(block, ino, dir)?;
        inode.size = u64::from(self.block_size);
        self.write_inode(ino, &inode)?;
        self.link_new_inode(dir, name, ino, FileType::Directory)?;
        parent = self.dir_inode(dir)?;
        parent.links += 1;
        self.write_inode(dir, &parent)?;
        Ok(ino)
    }

    pub fn symlink(
        &mut self,
        dir: Ino,
        name: &[u8],
        target: &[u8],
        uid: u32,
        gid: u32,
    ) -> Result<Ino, FsError> {
        if target.is_empty() || target.contains(&0) {
            return Err(FsError::InvalidName);
        }
        if target.len() > (self.block_size as usize).min(4095) {
            return Err(FsError::NameTooLong);
        }
        self.prepare_new_entry(dir, name)?;
        let (ino, mut inode) = self.new_inode(dir, FileType::Symlink, 0o777, uid, gid)?;
        inode.size = target.len() as u64;
        if target.len() < 60 {
            let mut raw = [0u8; 60];
            raw[..target.len()].copy_from_slice(target);
            for (i, b) in inode.block.iter_mut().enumerate() {
                *b = u32::from_le_bytes([
                    raw[4 * i],
                    raw[4 * i + 1],
                    raw[4 * i + 2],
                    raw[4 * i + 3],
                ]);
            }
        } else {
            let goal = self.inode_group_start(ino);
            let block = match self.map_alloc(&mut inode, 0, goal) {
                Ok((block, _)) => block,
                Err(e) => return self.abandon_new_inode(ino, inode, e),
            };
            self.zeroed_block(block, crate::cache::Phase::Data)?[..target.len()]
                .copy_from_slice(target);
        }
        self.write_inode(ino, &inode)?;
        self.link_new_inode(dir, name, ino, FileType::Symlink)
    }

    /// A hard link to a file (not a directory).
    pub fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        self.prepare_new_entry(dir, name)?;
        let mut inode = self.live_inode(ino)?;
        if inode.is_dir() {
            return Err(FsError::IsDir);
        }
        if inode.links == 0 {
            return Err(FsError::NotFound);
        }
        if inode.links >= MAX_LINKS {
            return Err(FsError::TooLarge);
        }
        let kind = inode.kind().expect("live");
        self.add_entry(dir, name, ino, kind)?;
        inode.links += 1;
        inode.ctime = self.now;
        self.write_inode(ino, &inode)
    }

    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        self.check_writable()?;
        check_name(name)?;
        self.maybe_writeback()?;
        let ino = self.find_entry(dir, name)?.ok_or(FsError::NotFound)?.ino;
        let mut inode = self.live_inode(ino)?;
        if inode.is_dir() {
            return Err(FsError::IsDir);
        }
        self.remove_entry(dir, name)?;
        self.drop_link(ino, &mut inode)
    }

    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        self.check_writable()?;
        check_name(name)?;
        if name == b"." {
            return Err(FsError::Invalid);
        }
        if name == b".." {
            return Err(FsError::NotEmpty);
        }
        self.maybe_writeback()?;
        let ino = self.find_entry(dir, name)?.ok_or(FsError::NotFound)?.ino;
        let mut inode = self.live_inode(ino)?;
        if !inode.is_dir() {
            return Err(FsError::NotDir);
        }
        if !self.dir_is_empty(ino)? {
            return Err(FsError::NotEmpty);
        }
        self.remove_entry(dir, name)?;
        self.drop_link(ino, &mut inode)?;
        self.drop_parent_link(dir)
    }

    /// A subdirectory's ".." no longer points at `dir`.
    fn drop_parent_link(&mut self, dir: Ino) -> Result<(), FsError> {
        let mut parent = self.dir_inode(dir)?;
        parent.links = parent.links.saturating_sub(1).max(2);
        parent.ctime = self.now;
        self.write_inode(dir, &parent)
    }

    /// Checks a new entry can be made: writable, valid name, `dir` a directory without it.
    fn prepare_new_entry(&mut self, dir: Ino, name: &[u8]) -> Result<(), FsError> {
        self.check_writable()?;
        check_new_name(name)?;
        self.maybe_writeback()?;
        if self.find_entry(dir, name)?.is_some() {
            return Err(FsError::Exists);
        }
        Ok(())
    }

    fn new_inode(
        &mut self,
        parent: Ino,
        kind: FileType,
        mode: u16,
        uid: u32,
        gid: u32,
    ) -> Result<(Ino, Inode), FsError> {
        let ino = self.alloc_inode(parent, kind == FileType::Directory)?;
        self.clear_inode_slot(ino)?;
        let inode = Inode {
            mode: mode_bits(kind) | (mode & 0o7777),
            uid,
            gid,
            atime: self.now,
            ctime: self.now,
            mtime: self.now,
            links: 1,
            ..Inode::default()
        };
        Ok((ino, inode))
    }

    /// Undoes `new_inode` after a later step failed.
    fn abandon_new_inode<T>(
        &mut self,
        ino: Ino,
        mut inode: Inode,
        error: FsError,
    ) -> Result<T, FsError> {
        inode.links = 0;
        self.write_inode(ino, &inode)?;
        self.free_inode(ino)?;
        Err(error)
    }

    fn link_new_inode(
        &mut self,
        dir: Ino,
        name: &[u8],
        ino: Ino,
        kind: FileType,
    ) -> Result<Ino, FsError> {
        if let Err(e) = self.add_entry(dir, name, ino, kind) {
            let inode = self.read_inode(ino)?;
            return self.abandon_new_inode(ino, inode, e);
        }
        Ok(ino)
    }

    /// Moves or renames an entry, replacing a target as POSIX says.
    pub fn rename(
        &mut self,
        from_dir: Ino,
        from: &[u8],
        to_dir: Ino,
        to: &[u8],
    ) -> Result<(), FsError> {
        self.check_writable()?;
        check_name(from)?;
        if from == b"." || from == b".." {
            return Err(FsError::Invalid);
        }
        check_new_name(to)?;
        self.maybe_writeback()?;
        let ino = self
            .find_entry(from_dir, from)?
            .ok_or(FsError::NotFound)?
            .ino;
        let mut inode = self.live_inode(ino)?;
        let kind = inode.kind().expect("live");
        self.dir_inode(to_dir)?;
        if inode.is_dir() && self.is_same_or_ancestor(ino, to_dir)? {
            return Err(FsError::Invalid);
        }
        let target = self.find_entry(to_dir, to)?.map(|s| s.ino);
        if target == Some(ino) {
            return Ok(());
        }
        let moving_dir = inode.is_dir() && from_dir != to_dir;
        match target {
            Some(target_ino) => {
                let mut target_inode = self.live_inode(target_ino)?;
                self.check_replaceable(&inode, target_ino, &target_inode)?;
                self.retarget_entry(to_dir, to, ino, kind)?;
                self.drop_link(target_ino, &mut target_inode)?;
                if target_inode.is_dir() {
                    self.drop_parent_link(to_dir)?;
                }
            }
            None => {
                if moving_dir && self.dir_inode(to_dir)?.links >= MAX_LINKS {
                    return Err(FsError::TooLarge);
                }
                self.add_entry(to_dir, to, ino, kind)?;
            }
        }
        self.remove_entry(from_dir, from)?;
        if moving_dir {
            self.retarget_entry(ino, b"..", to_dir, FileType::Directory)?;
            self.drop_parent_link(from_dir)?;
            let mut new_parent = self.dir_inode(to_dir)?;
            new_parent.links += 1;
            self.write_inode(to_dir, &new_parent)?;
        }
        inode = self.read_inode(ino)?;
        inode.ctime = self.now;
        self.write_inode(ino, &inode)
    }

    fn check_replaceable(
        &mut self,
        source: &Inode,
        target_ino: Ino,
        target: &Inode,
    ) -> Result<(), FsError> {
        match (source.is_dir(), target.is_dir()) {
            (true, true) if !self.dir_is_empty(target_ino)? => Err(FsError::NotEmpty),
            (true, false) => Err(FsError::NotDir),
            (false, true) => Err(FsError::IsDir),
            _ => Ok(()),
        }
    }

    /// Whether `dir` is `ancestor` or below it (walking ".." up to the root).
    fn is_same_or_ancestor(&mut self, ancestor: Ino, dir: Ino) -> Result<bool, FsError> {
        let mut current = dir;
        for _ in 0..=self.sb.inodes_count {
            if current == ancestor {
                return Ok(true);
            }
            if current == ROOT_INO {
                return Ok(false);
            }
            current = self
                .find_entry(current, b"..")?
                .ok_or_else(|| {
                    FsError::Corrupt(alloc::format!("directory {current} has no \"..\""))
                })?
                .ino;
        }
        Err(FsError::Corrupt(alloc::string::String::from(
            "\"..\" entries form a loop",
        )))
    }
}

/// The components of a path, the first one last (a stack); empty ones and "." dropped.
fn components(path: &[u8]) -> Vec<Vec<u8>> {
    path.split(|&b| b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .rev()
        .map(|c| c.to_vec())
        .collect()
}
