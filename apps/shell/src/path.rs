//! The native path namespace for `cd`, `pwd` and completion: resolving a
//! path against the current directory into a normalized absolute path, and
//! translating between native paths and how Linux sees the native file
//! system (under [`LINUX_MOUNT`]).
//!
//! `~` (alone or as `~/...`) is the native root `/`: the native system has
//! no users and so no home directories. `~user` is an ordinary name.

use alloc::string::String;
use alloc::vec::Vec;

/// Where the Linux guest mounts the native file system.
pub const LINUX_MOUNT: &str = "/mnt/starina";

/// Resolves `path` against the current directory `cwd` (itself taken as
/// absolute: a relative `cwd` counts from `/`), removing `.`, `..` and
/// repeated slashes. `..` at the root stays at the root. The result is
/// absolute and has no trailing slash except for `/` itself.
pub fn resolve(cwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    let rest = if path == "~" {
        ""
    } else if let Some(rest) = path.strip_prefix("~/") {
        rest
    } else if path.starts_with('/') {
        path
    } else {
        push_components(&mut parts, cwd);
        path
    };
    push_components(&mut parts, rest);
    join(&parts)
}

/// Normalizes an absolute path (`resolve` from the root).
pub fn normalize(path: &str) -> String {
    resolve("/", path)
}

/// Applies the components of `path` to the stack of directory names.
fn push_components<'a>(parts: &mut Vec<&'a str>, path: &'a str) {
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name => parts.push(name),
        }
    }
}

fn join(parts: &[&str]) -> String {
    if parts.is_empty() {
        return String::from("/");
    }
    let mut out = String::new();
    for part in parts {
        out.push('/');
        out.push_str(part);
    }
    out
}

/// The native path of a Linux path under [`LINUX_MOUNT`]
/// (`/mnt/starina/www/index.html` is `/www/index.html`), or `None` if the
/// path is relative or (once normalized) outside the mount.
pub fn linux_to_native(linux_path: &str) -> Option<String> {
    if !linux_path.starts_with('/') {
        return None;
    }
    let normalized = normalize(linux_path);
    let rest = normalized.strip_prefix(LINUX_MOUNT)?;
    if rest.is_empty() {
        Some(String::from("/"))
    } else if rest.starts_with('/') {
        Some(String::from(rest))
    } else {
        None
    }
}

/// How Linux sees a native path (`/www` is `/mnt/starina/www`); a relative
/// `native_path` counts from the native root.
pub fn native_to_linux(native_path: &str) -> String {
    let normalized = normalize(native_path);
    let mut out = String::from(LINUX_MOUNT);
    if normalized != "/" {
        out.push_str(&normalized);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_cwd() {
        assert_eq!(resolve("/www", "index.html"), "/www/index.html");
        assert_eq!(resolve("/a/b", "c/d"), "/a/b/c/d");
        assert_eq!(resolve("/", "x"), "/x");
    }

    #[test]
    fn absolute_paths_ignore_cwd() {
        assert_eq!(resolve("/www", "/etc"), "/etc");
        assert_eq!(resolve("/www", "/"), "/");
    }

    #[test]
    fn dot_and_dotdot() {
        assert_eq!(resolve("/a/b", "."), "/a/b");
        assert_eq!(resolve("/a/b", ".."), "/a");
        assert_eq!(resolve("/a/b", "../.."), "/");
        assert_eq!(resolve("/a/b", "./c/./../d"), "/a/b/d");
        assert_eq!(resolve("/a", "../../../.."), "/");
        assert_eq!(resolve("/", ".."), "/");
    }

    #[test]
    fn repeated_and_trailing_slashes() {
        assert_eq!(resolve("/", "//a///b//"), "/a/b");
        assert_eq!(resolve("//x//", "y/"), "/x/y");
        assert_eq!(resolve("/a", ""), "/a");
    }

    #[test]
    fn dots_inside_names_are_names() {
        assert_eq!(resolve("/", "..."), "/...");
        assert_eq!(resolve("/", ".hidden/..x"), "/.hidden/..x");
    }

    #[test]
    fn tilde_is_the_root() {
        assert_eq!(resolve("/www", "~"), "/");
        assert_eq!(resolve("/www", "~/a"), "/a");
        assert_eq!(resolve("/www", "~user"), "/www/~user");
        assert_eq!(resolve("/www", "a/~"), "/www/a/~");
    }

    #[test]
    fn relative_cwd_counts_from_root() {
        assert_eq!(resolve("a/b", "c"), "/a/b/c");
    }

    #[test]
    fn deep_paths_do_not_blow_up() {
        let deep = "a/".repeat(100_000);
        let resolved = resolve("/", &deep);
        assert_eq!(resolved.len(), 200_000);
        assert_eq!(resolve("/", &(deep.clone() + &"../".repeat(100_000))), "/");
    }

    #[test]
    fn linux_paths_translate_to_native() {
        assert_eq!(
            linux_to_native("/mnt/starina/www/index.html").as_deref(),
            Some("/www/index.html")
        );
        assert_eq!(linux_to_native("/mnt/starina").as_deref(), Some("/"));
        assert_eq!(linux_to_native("/mnt/starina/").as_deref(), Some("/"));
        assert_eq!(
            linux_to_native("/mnt/starina//a/./b").as_deref(),
            Some("/a/b")
        );
    }

    #[test]
    fn linux_paths_outside_the_mount_are_not_native() {
        assert_eq!(linux_to_native("/mnt/starinax/a"), None);
        assert_eq!(linux_to_native("/mnt"), None);
        assert_eq!(linux_to_native("/etc/passwd"), None);
        assert_eq!(linux_to_native("/mnt/starina/../x"), None);
        assert_eq!(linux_to_native("mnt/starina/x"), None);
    }

    #[test]
    fn native_paths_translate_to_linux() {
        assert_eq!(native_to_linux("/www"), "/mnt/starina/www");
        assert_eq!(native_to_linux("/"), "/mnt/starina");
        assert_eq!(native_to_linux("/a/../b/"), "/mnt/starina/b");
        assert_eq!(native_to_linux("/.."), "/mnt/starina");
    }

    #[test]
    fn round_trip() {
        for native in ["/", "/www", "/a/b/c.txt"] {
            assert_eq!(
                linux_to_native(&native_to_linux(native)).as_deref(),
                Some(native)
            );
        }
    }
}
