//! `stat [-L] PATH...`: what the file system knows of each path (a
//! symlink itself, or with -L what it points to).

use alloc::format;
use alloc::string::String;

use starina::fs::FileType;
use starina::fs::Stat;

use crate::args::Spec;
use crate::ctx::fs_error;
use crate::ctx::Ctx;
use crate::ctx::Outcome;
use crate::ls::mode_string;

const SPEC: Spec = Spec {
    flags: "L",
    valued: "",
    digits: None,
};

pub fn run(ctx: &mut Ctx, help: bool) -> Outcome {
    if help {
        return ctx.help(
            "stat [-L] PATH...",
            "Shows the type, size, mode, links, owner and times of each PATH (-L: follow a symlink).",
        );
    }
    let parsed = crate::parse(ctx, &SPEC)?;
    if parsed.operands.is_empty() {
        return Err(starina::command::CommandError::usage("missing operand"));
    }
    let mut status = 0;
    for operand in &parsed.operands {
        let path = ctx.fs.path(operand);
        let files = ctx.fs.files()?;
        let found = if parsed.has('L') {
            files.stat(&path)
        } else {
            files.lstat(&path)
        };
        match found {
            Ok(s) => {
                let target = match s.kind {
                    FileType::Symlink => files.read_link(&path).ok(),
                    _ => None,
                };
                ctx.stdout
                    .print(&describe(operand, &s, target.as_deref()))?;
            }
            Err(e) => status = ctx.fail(operand, fs_error(e))?,
        }
    }
    Ok(status)
}

/// The report for one path.
pub fn describe(name: &str, s: &Stat, target: Option<&str>) -> String {
    let link = target.map(|t| format!(" -> {t}")).unwrap_or_default();
    format!(
        "  File: {name}{link}\n  Type: {}\n  Size: {}  Blocks: {}\n  Mode: {:04o} ({})\n Inode: {}  Links: {}\n   Uid: {}  Gid: {}\nAccess: {}\nModify: {}\nChange: {}\n",
        kind_name(s.kind),
        s.size,
        s.blocks,
        s.mode,
        mode_string(s.kind, s.mode),
        s.ino,
        s.nlink,
        s.uid,
        s.gid,
        utc(s.atime),
        utc(s.mtime),
        utc(s.ctime),
    )
}

fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::Regular => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symbolic link",
        FileType::CharDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Fifo => "fifo",
        FileType::Socket => "socket",
    }
}

/// Seconds since 1970 as `YYYY-MM-DD hh:mm:ss UTC`.
pub fn utc(secs: u64) -> String {
    format!("{} UTC", starina::abi::calendar::DateTime::from_unix(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_709_251_199), "2024-02-29 23:59:59 UTC");
        assert_eq!(utc(1_796_227_200), "2026-12-02 16:00:00 UTC");
    }

    #[test]
    fn a_report() {
        let s = Stat {
            ino: 12,
            kind: FileType::Regular,
            mode: 0o644,
            nlink: 1,
            uid: 0,
            gid: 0,
            size: 6,
            blocks: 8,
            atime: 0,
            mtime: 0,
            ctime: 0,
        };
        let text = describe("a.txt", &s, None);
        assert!(text.starts_with("  File: a.txt\n  Type: regular file\n  Size: 6  Blocks: 8\n"));
        assert!(text.contains("Mode: 0644 (-rw-r--r--)"));
        assert!(text.contains("Modify: 1970-01-01 00:00:00 UTC"));
    }
}
