//! The SDK's raw system-call table (`starina::syscall::raw`, feature
//! `raw-syscalls`) bypasses what its safe types enforce: a component using
//! it can free DMA memory a `DmaBuffer` of its own still hands out. Cargo
//! unifies features, so once the fuzzer enables it every component of the
//! kernel build could call it. This test is what keeps it to the fuzzer.

use std::fs;
use std::path::Path;

/// The one component allowed the raw table.
const ALLOWED: &str = "apps/sysfuzz";

/// Files under `dir` (recursively, skipping `target`) whose text mentions
/// any of `needles`, as paths relative to `root`.
fn mentions(root: &Path, dir: &Path, needles: &[&str], out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if entry.file_name() != "target" {
                mentions(root, &path, needles, out);
            }
            continue;
        }
        let relevant = path.extension().is_some_and(|e| e == "rs")
            || path.file_name().is_some_and(|n| n == "Cargo.toml");
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        if relevant && needles.iter().any(|n| text.contains(n)) {
            let shown = path.strip_prefix(root).unwrap_or(&path);
            out.push(shown.display().to_string());
        }
    }
}

#[test]
fn only_the_syscall_fuzzer_uses_the_raw_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut found = Vec::new();
    for dir in ["apps", "servers", "drivers"] {
        mentions(
            &root,
            &root.join(dir),
            &["raw-syscalls", "syscall::raw"],
            &mut found,
        );
    }
    let outside: Vec<&String> = found.iter().filter(|f| !f.starts_with(ALLOWED)).collect();
    assert!(
        outside.is_empty(),
        "only {ALLOWED} may use starina::syscall::raw (feature raw-syscalls): {outside:?}"
    );
    assert!(
        found.iter().any(|f| f.starts_with(ALLOWED)),
        "{ALLOWED} no longer uses the raw table: drop the feature from the SDK, or this test"
    );
}
