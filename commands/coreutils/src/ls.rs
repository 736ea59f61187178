//! `ls [-l] [-a] [-1] [PATH]...`: a directory's entries sorted by name, one
//! a line (stdout is never a terminal to a command), or a file's name;
//! `-l` adds the type and mode and the size, `-a` shows names starting
//! with a dot (`.` and `..` too).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::command::Buffered;
use starina::command::CommandError;
use starina::fs::FileType;
use starina::fs::Stat;

use crate::args::Spec;
use crate::ctx::fs_error;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::paths;

const SPEC: Spec = Spec {
    flags: "la1",
    valued: "",
    digits: None,
};

/// One name to show, with what `-l` shows of it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: Vec<u8>,
    pub stat: Option<Stat>,
    /// A symlink's target.
    pub target: Option<String>,
}

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "ls [-l] [-a] [-1] [PATH]...",
            "Lists each directory PATH (the current one for none) sorted by name, or names a file; \
             -l adds type, mode and size, -a shows dot files.",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    let (long, all) = (parsed.has('l'), parsed.has('a'));
    let mut operands = parsed.operands.clone();
    if operands.is_empty() {
        operands.push(String::from("."));
    }
    let (mut status, mut files, mut dirs) = (0, Vec::new(), Vec::new());
    for operand in &operands {
        let path = ctx.fs.path(operand);
        match ctx.fs.files()?.stat(&path) {
            Ok(s) if s.kind == FileType::Directory => dirs.push((operand.clone(), path)),
            Ok(_) => files.push(describe(ctx, operand.as_bytes(), &path, long)?),
            Err(e) => status = ctx.fail(operand, fs_error(e))?,
        }
    }
    // As GNU ls: files first, then each directory, both sorted.
    dirs.sort();
    let mut text = format_entries(&mut files, long);
    for (i, (operand, path)) in dirs.iter().enumerate() {
        if operands.len() > 1 {
            let gap = if i == 0 && files.is_empty() { "" } else { "\n" };
            text.extend_from_slice(format!("{gap}{operand}:\n").as_bytes());
        }
        match list_dir(ctx, path, long, all) {
            Ok(mut entries) => text.extend(format_entries(&mut entries, long)),
            Err(e) => status = ctx.fail(operand, e)?,
        }
    }
    let mut out = Buffered::new(&mut ctx.stdout);
    out.write(&text)?;
    out.flush()?;
    Ok(status)
}

/// The entries of directory `path`.
fn list_dir(ctx: &mut Ctx, path: &str, long: bool, all: bool) -> Result<Vec<Entry>, CommandError> {
    let names: Vec<Vec<u8>> = ctx
        .fs
        .files()?
        .read_dir(path)
        .map_err(fs_error)?
        .into_iter()
        .map(|e| e.name)
        .filter(|n| all || !n.starts_with(b"."))
        .collect();
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let child = paths::resolve(path, &String::from_utf8_lossy(&name));
        entries.push(describe(ctx, &name, &child, long)?);
    }
    Ok(entries)
}

/// `name` (at `path`), with its stat and link target for `-l`.
fn describe(ctx: &mut Ctx, name: &[u8], path: &str, long: bool) -> Result<Entry, CommandError> {
    let mut entry = Entry {
        name: name.to_vec(),
        stat: None,
        target: None,
    };
    if long {
        let files = ctx.fs.files()?;
        let stat = files.lstat(path).map_err(fs_error)?;
        if stat.kind == FileType::Symlink {
            entry.target = files.read_link(path).ok();
        }
        entry.stat = Some(stat);
    }
    Ok(entry)
}

/// The listing: sorted by name, one a line; `long`: `-rw-r--r-- 6 name`,
/// sizes right-aligned.
pub fn format_entries(entries: &mut [Entry], long: bool) -> Vec<u8> {
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let width = entries
        .iter()
        .filter_map(|e| e.stat.as_ref())
        .map(|s| format!("{}", s.size).len())
        .max()
        .unwrap_or(1);
    let mut out = Vec::new();
    for e in entries.iter() {
        if let (true, Some(s)) = (long, &e.stat) {
            let size = s.size;
            out.extend_from_slice(
                format!("{} {size:>width$} ", mode_string(s.kind, s.mode)).as_bytes(),
            );
        }
        out.extend_from_slice(&e.name);
        if let (true, Some(target)) = (long, &e.target) {
            out.extend_from_slice(format!(" -> {target}").as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// `drwxr-xr-x`: the type, then read, write and run for owner, group and
/// others (`s`/`t` for setuid, setgid and sticky).
pub fn mode_string(kind: FileType, mode: u16) -> String {
    let mut s = String::new();
    s.push(match kind {
        FileType::Regular => '-',
        FileType::Directory => 'd',
        FileType::Symlink => 'l',
        FileType::CharDevice => 'c',
        FileType::BlockDevice => 'b',
        FileType::Fifo => 'p',
        FileType::Socket => 's',
    });
    let specials = [(0o4000, 's'), (0o2000, 's'), (0o1000, 't')];
    for (who, (special, mark)) in specials.into_iter().enumerate() {
        let bits = (mode >> (6 - 3 * who)) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, false) => 'x',
            (false, false) => '-',
            (true, true) => mark,
            (false, true) => mark.to_ascii_uppercase(),
        });
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(kind: FileType, mode: u16, size: u64) -> Option<Stat> {
        Some(Stat {
            ino: 2,
            kind,
            mode,
            nlink: 1,
            uid: 0,
            gid: 0,
            size,
            blocks: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
        })
    }

    fn entry(name: &str, stat: Option<Stat>, target: Option<&str>) -> Entry {
        Entry {
            name: name.as_bytes().to_vec(),
            stat,
            target: target.map(String::from),
        }
    }

    #[test]
    fn modes_read_like_ls() {
        assert_eq!(mode_string(FileType::Regular, 0o644), "-rw-r--r--");
        assert_eq!(mode_string(FileType::Directory, 0o755), "drwxr-xr-x");
        assert_eq!(mode_string(FileType::Regular, 0o4755), "-rwsr-xr-x");
        assert_eq!(mode_string(FileType::Directory, 0o1777), "drwxrwxrwt");
        assert_eq!(mode_string(FileType::Regular, 0o2640), "-rw-r-S---");
        assert_eq!(mode_string(FileType::Symlink, 0o777), "lrwxrwxrwx");
    }

    #[test]
    fn names_sorted_one_a_line() {
        let mut es = [
            entry("b", None, None),
            entry("a.txt", None, None),
            entry("B", None, None),
        ];
        assert_eq!(format_entries(&mut es, false), b"B\na.txt\nb\n");
    }

    #[test]
    fn long_lines_align_sizes() {
        let mut es = [
            entry("big", stat(FileType::Regular, 0o644, 12345), None),
            entry("d", stat(FileType::Directory, 0o755, 4096), None),
            entry("l", stat(FileType::Symlink, 0o777, 3), Some("big")),
        ];
        let text = String::from_utf8(format_entries(&mut es, true)).unwrap();
        assert_eq!(
            text,
            "-rw-r--r-- 12345 big\ndrwxr-xr-x  4096 d\nlrwxrwxrwx     3 l -> big\n"
        );
    }
}
