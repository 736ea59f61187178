//! Native paths: an operand is absolute, or relative to the environment
//! variable `PWD` (the root when unset). Resolving removes `.`, `..` and
//! repeated slashes (`..` at the root stays there), as the fs server wants
//! plain absolute paths.

use alloc::string::String;
use alloc::vec::Vec;

/// `path` as a normalized absolute path, relative paths counting from
/// `pwd` (itself counted from the root).
pub fn resolve(pwd: &str, path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if !path.starts_with('/') {
        push(&mut parts, pwd);
    }
    push(&mut parts, path);
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

fn push<'a>(parts: &mut Vec<&'a str>, path: &'a str) {
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

/// The last component of `path` as written (`a/b/` → `b`; `/` → `/`).
pub fn base_name(path: &str) -> &str {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return if path.is_empty() { "" } else { "/" };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed)
}

/// `name` in the (absolute, normalized) directory `dir`.
pub fn join(dir: &str, name: &str) -> String {
    let mut out = String::from(dir);
    if !out.ends_with('/') {
        out.push('/');
    }
    out.push_str(name);
    out
}

/// Whether (normalized) `path` is `dir` or inside it.
pub fn is_within(path: &str, dir: &str) -> bool {
    path == dir || dir == "/" || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_count_from_pwd() {
        assert_eq!(resolve("/home", "a.txt"), "/home/a.txt");
        assert_eq!(resolve("/home/x", "../y/./z/"), "/home/y/z");
        assert_eq!(resolve("/", "."), "/");
        assert_eq!(resolve("/a", "/b//c"), "/b/c");
        assert_eq!(resolve("/", "../../.."), "/");
        assert_eq!(resolve("rel", "x"), "/rel/x");
    }

    #[test]
    fn names_and_joins() {
        assert_eq!(base_name("/a/b.txt"), "b.txt");
        assert_eq!(base_name("a/b/"), "b");
        assert_eq!(base_name("/"), "/");
        assert_eq!(base_name("x"), "x");
        assert_eq!(join("/", "x"), "/x");
        assert_eq!(join("/d", "x"), "/d/x");
    }

    #[test]
    fn within() {
        assert!(is_within("/a/b", "/a"));
        assert!(is_within("/a", "/a"));
        assert!(!is_within("/ab", "/a"));
        assert!(is_within("/x", "/"));
    }
}
