//! Naming rules: what a component, service, env field or config name may
//! look like, and "did you mean" suggestions for near misses.

/// Words Rust reserves; none of them can name a field or a crate.
const RUST_KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Crate names the kernel already links (or Rust itself provides): a
/// component of that name would clash with them in the kernel.
pub const RESERVED_COMPONENT_NAMES: &[&str] = &[
    "alloc",
    "bitflags",
    "core",
    "hashbrown",
    "log",
    "smoltcp",
    "virtio_drivers",
    "proc_macro",
    "spin",
    "starina",
    "starina_kernel",
    "starina_spec",
    "std",
    "test",
];

/// `Env` fields the generator always (or for a privilege) emits, so a
/// `[needs]` entry cannot use them.
pub const RESERVED_ENV_FIELDS: &[&str] = &[
    "supervisor", "shutdown", "monitor", "hypervisor", "spawn", "control", "console", "config",
    "instance", "args", "stdin", "stdout", "stderr",
];

/// Checks that `s` is snake_case: a lowercase letter, then lowercase
/// letters and digits, words joined by single underscores. Returns why not.
pub fn check_snake_case(s: &str) -> Result<(), String> {
    let well_formed = s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.split('_').all(|word| {
            !word.is_empty()
                && word
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        });
    if well_formed {
        Ok(())
    } else {
        Err(format!(
            "'{s}' is not snake_case (lowercase letters and digits, words joined by single \
             underscores, starting with a letter)"
        ))
    }
}

/// Checks that `s` is snake_case and can be used as a Rust identifier.
pub fn check_identifier(s: &str) -> Result<(), String> {
    check_snake_case(s)?;
    if RUST_KEYWORDS.contains(&s) {
        return Err(format!("'{s}' is a Rust keyword"));
    }
    Ok(())
}

/// The candidate closest to `word`, if it is close enough to be a likely typo.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|c| (edit_distance(word, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `" (did you mean 'x'?)"`, or nothing.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    match suggest(word, candidates) {
        Some(c) => format!(" (did you mean '{c}'?)"),
        None => String::new(),
    }
}

/// Levenshtein distance, counting `-` and `_` as the same character.
fn edit_distance(a: &str, b: &str) -> usize {
    let norm = |c: char| {
        if c == '-' {
            '_'
        } else {
            c.to_ascii_lowercase()
        }
    };
    let a: Vec<char> = a.chars().map(norm).collect();
    let b: Vec<char> = b.chars().map(norm).collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != cb);
            cur.push(substitute.min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case() {
        for ok in ["echo", "echo_client", "a1", "net2_driver"] {
            assert_eq!(check_snake_case(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Echo",
            "echo-client",
            "_echo",
            "echo_",
            "echo__client",
            "1echo",
            "é",
        ] {
            assert!(check_snake_case(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn identifiers_exclude_keywords() {
        assert_eq!(
            check_identifier("type"),
            Err("'type' is a Rust keyword".to_string())
        );
        assert_eq!(check_identifier("types"), Ok(()));
    }

    #[test]
    fn suggestions() {
        let fields = ["name", "needs", "exports", "restart"];
        assert_eq!(suggest("need", fields), Some("needs"));
        assert_eq!(suggest("export", fields), Some("exports"));
        assert_eq!(suggest("bogus", fields), None);
        assert_eq!(
            suggest("on_failure", ["never", "on-failure", "always"]),
            Some("on-failure")
        );
    }
}
