//! An in-memory [`FileBackend`] for the FUSE server's tests. Its root is
//! inode 2 (as on ext2), so node id 1 <-> root mapping is exercised, and
//! it answers directories in small batches, so READDIR resumes by cookie.
//! A file's `blocks` count what was written (up to the furthest byte): a
//! size raised by `set_attr` is a hole, as on a disk.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;

use super::backend::*;

pub const ROOT: Ino = 2;
/// Entries per read_dir batch.
const BATCH: usize = 3;
/// The largest file.
const MAX_SIZE: u64 = 1 << 26;

struct Node {
    attr: Attr,
    data: Vec<u8>,
    entries: BTreeMap<Vec<u8>, Ino>,
    parent: Ino,
}

pub struct MemFs {
    nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    pub clock: u64,
    pub syncs: u32,
    /// Inodes the server holds, and how often (nothing here is freed: this
    /// only records what the server asked).
    pub held: BTreeMap<Ino, u32>,
}

pub struct MemFile {
    ino: Ino,
    mode: OpenMode,
}

impl MemFs {
    pub fn new() -> MemFs {
        let mut fs = MemFs {
            nodes: BTreeMap::new(),
            next_ino: 11,
            clock: 1_000,
            syncs: 0,
            held: BTreeMap::new(),
        };
        fs.insert(ROOT, ROOT, Kind::Directory, 0o755);
        fs
    }

    fn insert(&mut self, ino: Ino, parent: Ino, kind: Kind, mode: u16) {
        let attr = Attr {
            ino,
            kind,
            mode,
            nlink: if kind == Kind::Directory { 2 } else { 1 },
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            atime: self.clock,
            mtime: self.clock,
            ctime: self.clock,
        };
        let node = Node {
            attr,
            data: Vec::new(),
            entries: BTreeMap::new(),
            parent,
        };
        self.nodes.insert(ino, node);
    }

    fn node(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn dir(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        let node = self.node(ino)?;
        if node.attr.kind != Kind::Directory {
            return Err(Errno::ENOTDIR);
        }
        Ok(node)
    }

    fn child(&mut self, dir: Ino, name: &[u8]) -> Result<Ino, Errno> {
        self.dir(dir)?
            .entries
            .get(name)
            .copied()
            .ok_or(Errno::ENOENT)
    }

    /// Makes a new inode named `name` in `dir`.
    fn add(&mut self, dir: Ino, name: &[u8], kind: Kind, mode: u16) -> Result<Ino, Errno> {
        if self.dir(dir)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.insert(ino, dir, kind, mode);
        self.dir(dir)?.entries.insert(name.to_vec(), ino);
        if kind == Kind::Directory {
            self.dir(dir)?.attr.nlink += 1;
        }
        Ok(ino)
    }

    fn drop_link(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.attr.nlink = node.attr.nlink.saturating_sub(1);
        }
    }

    /// The contents of a file, for the tests to check.
    pub fn data_of(&self, ino: Ino) -> &[u8] {
        &self.nodes[&ino].data
    }
}

impl FileBackend for MemFs {
    type File = MemFile;

    fn root(&self) -> Ino {
        ROOT
    }

    fn now(&mut self) -> u64 {
        self.clock
    }

    fn stat(&mut self, ino: Ino) -> Result<Attr, Errno> {
        Ok(self.node(ino)?.attr.clone())
    }

    fn lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Attr, Errno> {
        let ino = self.child(dir, name)?;
        self.stat(ino)
    }

    fn read_dir(&mut self, dir: Ino, cookie: u64) -> Result<Vec<DirEntry>, Errno> {
        let node = self.dir(dir)?;
        let mut all = vec![(b".".to_vec(), dir), (b"..".to_vec(), node.parent)];
        all.extend(node.entries.iter().map(|(n, i)| (n.clone(), *i)));
        let mut out = Vec::new();
        for (i, (name, ino)) in all.into_iter().enumerate().skip(cookie as usize) {
            if out.len() == BATCH {
                break;
            }
            let kind = self.node(ino)?.attr.kind;
            out.push(DirEntry {
                ino,
                kind,
                name,
                cookie: i as u64 + 1,
            });
        }
        Ok(out)
    }

    fn make_node(&mut self, dir: Ino, name: &[u8], kind: Kind, mode: u16) -> Result<Attr, Errno> {
        if matches!(kind, Kind::Directory | Kind::Symlink) {
            return Err(Errno::EINVAL);
        }
        let ino = self.add(dir, name, kind, mode)?;
        self.stat(ino)
    }

    fn mkdir(&mut self, dir: Ino, name: &[u8], mode: u16) -> Result<(), Errno> {
        self.add(dir, name, Kind::Directory, mode).map(drop)
    }

    fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8]) -> Result<(), Errno> {
        let ino = self.add(dir, name, Kind::Symlink, 0o777)?;
        let node = self.node(ino)?;
        node.data = target.to_vec();
        node.attr.size = target.len() as u64;
        Ok(())
    }

    fn read_link(&mut self, ino: Ino) -> Result<Vec<u8>, Errno> {
        let node = self.node(ino)?;
        if node.attr.kind != Kind::Symlink {
            return Err(Errno::EINVAL);
        }
        Ok(node.data.clone())
    }

    fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        if self.node(ino)?.attr.kind == Kind::Directory {
            return Err(Errno::EPERM);
        }
        if self.dir(dir)?.entries.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        self.dir(dir)?.entries.insert(name.to_vec(), ino);
        self.node(ino)?.attr.nlink += 1;
        Ok(())
    }

    fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        let ino = self.child(dir, name)?;
        if self.node(ino)?.attr.kind == Kind::Directory {
            return Err(Errno::EISDIR);
        }
        self.dir(dir)?.entries.remove(name);
        self.drop_link(ino);
        Ok(())
    }

    fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<(), Errno> {
        let ino = self.child(dir, name)?;
        if !self.dir(ino)?.entries.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.dir(dir)?.entries.remove(name);
        self.drop_link(dir);
        Ok(())
    }

    fn rename(
        &mut self,
        dir: Ino,
        name: &[u8],
        new_dir: Ino,
        new_name: &[u8],
    ) -> Result<(), Errno> {
        let ino = self.child(dir, name)?;
        if let Ok(old) = self.child(new_dir, new_name) {
            if old == ino {
                return Ok(());
            }
            match (self.node(ino)?.attr.kind, self.node(old)?.attr.kind) {
                (Kind::Directory, Kind::Directory) => self.rmdir(new_dir, new_name)?,
                (Kind::Directory, _) => return Err(Errno::ENOTDIR),
                (_, Kind::Directory) => return Err(Errno::EISDIR),
                _ => self.unlink(new_dir, new_name)?,
            }
        }
        self.dir(dir)?.entries.remove(name);
        self.dir(new_dir)?.entries.insert(new_name.to_vec(), ino);
        self.node(ino)?.parent = new_dir;
        Ok(())
    }

    fn set_attr(&mut self, ino: Ino, attr: &SetAttr) -> Result<Attr, Errno> {
        let node = self.node(ino)?;
        if let Some(size) = attr.size {
            if node.attr.kind != Kind::Regular {
                return Err(Errno::EINVAL);
            }
            if size > MAX_SIZE {
                return Err(Errno::EFBIG);
            }
            node.data.resize(size as usize, 0);
            node.attr.size = size;
            node.attr.blocks = node.attr.blocks.min(size.div_ceil(512));
        }
        let a = &mut node.attr;
        a.mode = attr.mode.unwrap_or(a.mode);
        a.uid = attr.uid.unwrap_or(a.uid);
        a.gid = attr.gid.unwrap_or(a.gid);
        a.atime = attr.atime.unwrap_or(a.atime);
        a.mtime = attr.mtime.unwrap_or(a.mtime);
        Ok(a.clone())
    }

    fn statfs(&mut self) -> Result<FsStats, Errno> {
        Ok(FsStats {
            block_size: 1024,
            blocks: 100,
            free_blocks: 50,
            available_blocks: 40,
            inodes: 64,
            free_inodes: 64 - self.nodes.len() as u64,
            name_max: 255,
        })
    }

    fn sync(&mut self) -> Result<(), Errno> {
        self.syncs += 1;
        Ok(())
    }

    fn open(&mut self, ino: Ino, mode: OpenMode) -> Result<MemFile, Errno> {
        let kind = self.node(ino)?.attr.kind;
        if kind == Kind::Directory && mode.write {
            return Err(Errno::EISDIR);
        }
        Ok(MemFile { ino, mode })
    }

    fn read(&mut self, file: &mut MemFile, offset: u64, len: u32) -> Result<Vec<u8>, Errno> {
        if !file.mode.read {
            return Err(Errno::EBADF);
        }
        let data = &self.node(file.ino)?.data;
        let start = (offset as usize).min(data.len());
        let end = start.saturating_add(len as usize).min(data.len());
        Ok(data[start..end].to_vec())
    }

    fn write(&mut self, file: &mut MemFile, offset: u64, data: &[u8]) -> Result<(), Errno> {
        if !file.mode.write {
            return Err(Errno::EBADF);
        }
        let node = self.node(file.ino)?;
        let at = if file.mode.append {
            node.data.len()
        } else {
            usize::try_from(offset).map_err(|_| Errno::EFBIG)?
        };
        let end = at.checked_add(data.len()).ok_or(Errno::EFBIG)?;
        if end as u64 > MAX_SIZE {
            return Err(Errno::EFBIG);
        }
        if node.data.len() < end {
            node.data.resize(end, 0);
        }
        node.data[at..end].copy_from_slice(data);
        node.attr.size = node.data.len() as u64;
        node.attr.blocks = node.attr.blocks.max((end as u64).div_ceil(512));
        Ok(())
    }

    fn hold(&mut self, ino: Ino) -> Result<(), Errno> {
        self.node(ino)?;
        *self.held.entry(ino).or_insert(0) += 1;
        Ok(())
    }

    fn release(&mut self, ino: Ino) {
        if let Some(count) = self.held.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                self.held.remove(&ino);
            }
        }
    }

    fn sync_file(&mut self, _file: &mut MemFile) -> Result<(), Errno> {
        self.syncs += 1;
        Ok(())
    }
}
