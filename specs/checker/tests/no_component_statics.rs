//! No component holds `static` mutable state: a `static` whose type is a
//! lock, a cell, a once or an atomic in apps/, servers/ or drivers/ outlives
//! a restart of the component (in-kernel components share statics) and
//! hides state from its handlers. State goes to threads by move
//! (`starina::thread::spawn(move || ...)`) instead.
//!
//! A justified exception carries, on the line above, a comment starting
//! `// static-ok:` that says why.

use std::fs;
use std::path::Path;
use std::path::PathBuf;

/// Type names that make a `static` mutable state.
const MUTABLE: &[&str] = &["Mutex", "RwLock", "Cell", "Once", "Lazy", "Atomic"];

/// The justification marker, on the line above the `static`.
const JUSTIFIED: &str = "// static-ok:";

/// One offending `static`: 1-based line number and the item's first line.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    line: usize,
    text: String,
}

/// The declaration after any visibility, if `line` declares a `static` item.
fn static_item(line: &str) -> Option<&str> {
    let mut rest = line.trim_start();
    if let Some(after) = rest.strip_prefix("pub") {
        rest = after.trim_start();
        if rest.starts_with('(') {
            rest = rest[rest.find(')')? + 1..].trim_start();
        }
    }
    rest.strip_prefix("static ")
}

/// The `static` items of `source` that hold mutable state unjustified.
fn scan_source(source: &str) -> Vec<Finding> {
    let lines: Vec<&str> = source.lines().collect();
    let mut findings = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(decl) = static_item(line) else {
            continue;
        };
        // The type may continue on the next lines, up to `=` or `;`.
        let mut item = String::from(decl);
        let mut next = i + 1;
        while !item.contains('=') && !item.contains(';') && next < lines.len() {
            item.push_str(lines[next]);
            next += 1;
        }
        let ty = item.split('=').next().unwrap_or("");
        let mutable = decl.starts_with("mut ") || MUTABLE.iter().any(|m| ty.contains(m));
        let justified = i > 0 && {
            let above = lines[i - 1].trim_start();
            above.starts_with(JUSTIFIED) && above.len() > JUSTIFIED.len() + 1
        };
        if mutable && !justified {
            findings.push(Finding {
                line: i + 1,
                text: line.trim().to_string(),
            });
        }
    }
    findings
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() && name != "target" {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn components_hold_no_static_mutable_state() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    for dir in ["apps", "servers", "drivers"] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(
        files.len() > 10,
        "found only {} component sources",
        files.len()
    );
    let mut report = String::new();
    for file in &files {
        let source = fs::read_to_string(file).expect("readable source");
        for f in scan_source(&source) {
            let shown = file.strip_prefix(&root).unwrap_or(file);
            report.push_str(&format!("{}:{}: {}\n", shown.display(), f.line, f.text));
        }
    }
    assert!(
        report.is_empty(),
        "components hold static mutable state (pass it to threads by move, or \
         justify it with a `{JUSTIFIED} <why>` comment on the line above):\n{report}"
    );
}

#[test]
fn finds_locks_cells_onces_and_atomics() {
    let source = "\
use core::sync::atomic::AtomicU32;
pub static JOB: spin::Mutex<Option<Job>> = spin::Mutex::new(None);
static COUNT: AtomicU32 = AtomicU32::new(0);
pub(crate) static CACHE: spin::Once<u32> = spin::Once::new();
static mut RAW: u32 = 0;
static SPLIT:
    core::cell::RefCell<u8> = RefCell::new(0);
";
    let lines: Vec<usize> = scan_source(source).iter().map(|f| f.line).collect();
    assert_eq!(lines, [2, 3, 4, 5, 6]);
}

#[test]
fn ignores_constants_references_and_justified_statics() {
    let source = "\
static GREETING: &str = \"hello\";
const LOCK: Mutex<u8> = Mutex::new(0);
fn f(x: &'static Mutex<u8>) {}
// static-ok: the interrupt handler has no other way to reach it
static IRQS: AtomicU64 = AtomicU64::new(0);
// static-ok:
static EMPTY_REASON: AtomicU64 = AtomicU64::new(0);
// a plain comment
static UNJUSTIFIED: AtomicU64 = AtomicU64::new(0);
";
    let found = scan_source(source);
    let lines: Vec<usize> = found.iter().map(|f| f.line).collect();
    assert_eq!(lines, [7, 9], "{found:?}");
    assert_eq!(
        found[1].text,
        "static UNJUSTIFIED: AtomicU64 = AtomicU64::new(0);"
    );
}
