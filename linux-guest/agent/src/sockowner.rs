//! Which process owns a socket: the /proc/<pid>/fd links that read
//! `socket:[<inode>]`, and that process's /proc/<pid>/comm.
//!
//! The scan reads every process's descriptors, so it runs only for new
//! listeners, once per poll for all of them, and stops after
//! [`MAX_LINKS`] links (a program with a huge descriptor table must not
//! stall the reports): what it has not found by then is "unknown".

use std::collections::HashMap;
use std::path::Path;

/// The name of a socket whose owner was not found.
pub const UNKNOWN: &str = "unknown";

/// Descriptor links read per scan, at most.
pub const MAX_LINKS: usize = 20_000;

/// The inode in a descriptor link's target `socket:[<inode>]`.
fn socket_inode(target: &str) -> Option<u64> {
    target
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Maps each of `inodes` to the name of a process that has it open, for
/// those found within [`MAX_LINKS`] links. Processes that go away or whose
/// descriptors cannot be read are skipped.
pub fn owners(proc_root: &Path, inodes: &[u64]) -> HashMap<u64, String> {
    let mut found = HashMap::new();
    let Ok(entries) = std::fs::read_dir(proc_root) else {
        return found;
    };
    let mut budget = MAX_LINKS;
    for entry in entries.flatten() {
        if found.len() == inodes.len() || budget == 0 {
            break;
        }
        let name = entry.file_name();
        if !name
            .to_str()
            .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            continue;
        }
        let pid_dir = entry.path();
        let Ok(fds) = std::fs::read_dir(pid_dir.join("fd")) else {
            continue;
        };
        let mut mine = Vec::new();
        for fd in fds.flatten() {
            if budget == 0 {
                break;
            }
            budget -= 1;
            let target = std::fs::read_link(fd.path()).ok();
            let inode = target.as_deref().and_then(|t| socket_inode(t.to_str()?));
            if let Some(inode) = inode.filter(|i| inodes.contains(i) && !found.contains_key(i)) {
                mine.push(inode);
            }
        }
        if mine.is_empty() {
            continue;
        }
        let comm = std::fs::read_to_string(pid_dir.join("comm")).unwrap_or_default();
        let comm = comm.trim_end_matches('\n');
        let comm = if comm.is_empty() { UNKNOWN } else { comm };
        for inode in mine {
            found.insert(inode, comm.to_string());
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn link_targets() {
        assert_eq!(socket_inode("socket:[12345]"), Some(12345));
        assert_eq!(socket_inode("socket:[]"), None);
        assert_eq!(socket_inode("socket:[12x]"), None);
        assert_eq!(socket_inode("pipe:[12345]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    /// A fake /proc: pid 10 (`web`) owns socket 7; pid 11 has no comm.
    #[test]
    fn finds_owners_in_a_fake_proc() {
        let root = std::env::temp_dir().join(format!("agent-sockowner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for (pid, links, comm) in [
            ("10", &["pipe:[5]", "socket:[7]"][..], Some("web\n")),
            ("11", &["socket:[8]"][..], None),
            ("self", &["socket:[9]"][..], Some("not a pid\n")),
        ] {
            let fd = root.join(pid).join("fd");
            std::fs::create_dir_all(&fd).unwrap();
            for (n, target) in links.iter().enumerate() {
                symlink(target, fd.join(n.to_string())).unwrap();
            }
            if let Some(comm) = comm {
                std::fs::write(root.join(pid).join("comm"), comm).unwrap();
            }
        }
        let got = owners(&root, &[7, 8, 9, 404]);
        assert_eq!(got.get(&7).map(String::as_str), Some("web"));
        assert_eq!(got.get(&8).map(String::as_str), Some(UNKNOWN));
        assert_eq!(got.get(&9), None, "only numeric entries are processes");
        assert_eq!(got.get(&404), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
