//! Fuzz targets for the spec checker: arbitrary TOML text, the workspace's
//! real specs with fields replaced, added or removed, and whole fixture
//! workspaces through `load_all` and the kernel's wiring. Checking never
//! panics, a refused spec has at least one error, and generated code holds
//! no raw control character but the line break (rustc refuses a bare CR in
//! a doc comment). Budget and replay: `tests/fuzz_driver.rs` at the top.

#[path = "../../../tests/fuzz_driver.rs"]
mod driver;
#[path = "../../../tests/fuzz_alloc.rs"]
mod fuzz_alloc;

mod common;

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::path::PathBuf;

use arbitrary::Arbitrary;
use common::Fixture;
use driver::Bytes;
use driver::Seq;
use starina_spec::codegen;
use starina_spec::load_all;
use starina_spec::parse_component;
use starina_spec::parse_profile;

fn assert_clean_code(code: &str) {
    if let Some(c) = code.chars().find(|&c| c.is_control() && c != '\n') {
        panic!("generated code holds {c:?}:\n{code}");
    }
}

/// Parses `text` as a component spec and a profile.
fn check_text(file: &Path, text: &str) {
    match parse_component(file, text) {
        Ok(component) => assert_clean_code(&codegen::component_env(&component)),
        Err(errors) => assert!(!errors.is_empty(), "refused without an error"),
    }
    let profile = Path::new("specs/profiles/fuzz.toml");
    if let Err(errors) = parse_profile(profile, text) {
        assert!(!errors.is_empty(), "refused without an error");
    }
    for line in codegen::doc_lines(text) {
        assert_clean_code(&line);
        assert!(!line.contains('\n'));
    }
}

#[test]
fn fuzz_spec_toml_text() {
    driver::run("spec::toml_text", 500, |text: Bytes| {
        check_text(
            Path::new("specs/fuzz.toml"),
            &String::from_utf8_lossy(&text),
        );
    });
}

/// A TOML value to put in a field.
#[derive(Arbitrary, Debug)]
enum Value {
    /// A basic string, escaped (control characters included).
    Str(String),
    /// A word the checker knows (kinds, policies, names, privileges).
    Word(u8),
    Int(i64),
    SmallInt(u8),
    Bool(bool),
    Float(f64),
    Array(Seq<Value>),
    Table(Seq<(u8, Value)>),
}

const WORDS: [&str; 16] = [
    "server",
    "app",
    "driver",
    "in-kernel",
    "on-failure",
    "always",
    "never",
    "echo",
    "hello",
    "hypervisor",
    "virtio-net",
    "net",
    "tcpip",
    "linux",
    "",
    "Echo",
];

fn key(k: u8) -> &'static str {
    const KEYS: [&str; 22] = [
        "name",
        "kind",
        "description",
        "isolation",
        "restart",
        "max_restarts",
        "exports",
        "privileges",
        "needs",
        "config",
        "devices",
        "components",
        "kind",
        "echo",
        "memory_mib",
        "rounds",
        "greeting",
        "nic",
        "allow_test_panic",
        "x-unknown",
        "service",
        "optional",
    ];
    KEYS[k as usize % KEYS.len()]
}

fn render(v: &Value, depth: usize, out: &mut String) {
    match v {
        Value::Str(s) => {
            out.push('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        Value::Word(w) => {
            let _ = write!(out, "\"{}\"", WORDS[*w as usize % WORDS.len()]);
        }
        Value::Int(i) => {
            let _ = write!(out, "{i}");
        }
        Value::SmallInt(i) => {
            let _ = write!(out, "{i}");
        }
        Value::Bool(b) => {
            let _ = write!(out, "{b}");
        }
        Value::Float(f) if f.is_finite() => {
            let _ = write!(out, "{f:?}");
        }
        Value::Float(_) => out.push_str("nan"),
        Value::Array(items) if depth < 3 => {
            out.push('[');
            for item in items.iter().take(8) {
                render(item, depth + 1, out);
                out.push_str(", ");
            }
            out.push(']');
        }
        Value::Table(fields) if depth < 3 => {
            out.push('{');
            for (i, (k, v)) in fields.iter().take(8).enumerate() {
                let _ = write!(out, "{}{} = ", if i > 0 { ", " } else { " " }, key(*k));
                render(v, depth + 1, out);
            }
            out.push_str(" }");
        }
        Value::Array(_) | Value::Table(_) => out.push_str("[]"),
    }
}

/// A change to a spec's lines.
#[derive(Arbitrary, Debug)]
enum Edit {
    /// Line `at` (mod the count) gets `value` after its `=`.
    Replace {
        at: u16,
        value: Value,
    },
    Remove {
        at: u16,
    },
    Insert {
        at: u16,
        key: u8,
        value: Value,
    },
    /// A table header, e.g. `[config]`.
    Header {
        at: u16,
        key: u8,
    },
}

fn apply(lines: &mut Vec<String>, edit: &Edit) {
    let at = |i: u16, len: usize| i as usize % len.max(1);
    match edit {
        Edit::Replace { at: i, value } => {
            let i = at(*i, lines.len());
            if let Some((k, _)) = lines.get(i).and_then(|l| l.split_once(" = ")) {
                let mut line = format!("{k} = ");
                render(value, 0, &mut line);
                lines[i] = line;
            }
        }
        Edit::Remove { at: i } if !lines.is_empty() => {
            let i = at(*i, lines.len());
            lines.remove(i);
        }
        Edit::Remove { .. } => {}
        Edit::Insert {
            at: i,
            key: k,
            value,
        } => {
            let mut line = format!("{} = ", key(*k));
            render(value, 0, &mut line);
            lines.insert(at(*i, lines.len() + 1), line);
        }
        Edit::Header { at: i, key: k } => {
            lines.insert(at(*i, lines.len() + 1), format!("[{}]", key(*k)));
        }
    }
}

/// The workspace's own component specs: (file, text).
fn real_specs() -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut specs: Vec<(PathBuf, String)> = fs::read_dir(&dir)
        .expect("specs/ is readable")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| {
            let text = fs::read_to_string(&p).expect("a spec is text");
            (Path::new("specs").join(p.file_name().unwrap()), text)
        })
        .collect();
    specs.sort();
    assert!(specs.len() > 5, "found the workspace's specs");
    specs
}

#[test]
fn fuzz_spec_fields() {
    let specs = real_specs();
    driver::run("spec::fields", 500, |(which, edits): (u8, Seq<Edit>)| {
        let (file, text) = &specs[which as usize % specs.len()];
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        for edit in edits.iter() {
            apply(&mut lines, edit);
        }
        check_text(file, &lines.join("\n"));
    });
}

/// Fixture workspaces (hello, echo, echo_client, a default profile) with
/// edited specs, through `load_all` and, when they load, the wiring.
fn check_workspace((which, edits): (u8, Seq<Edit>)) {
    let fixture = Fixture::valid();
    let (file, text) = match which % 4 {
        0 => ("specs/hello.toml", common::HELLO),
        1 => ("specs/echo.toml", common::ECHO),
        2 => ("specs/echo_client.toml", common::ECHO_CLIENT),
        _ => ("specs/profiles/default.toml", common::DEFAULT_PROFILE),
    };
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for edit in edits.iter() {
        apply(&mut lines, edit);
    }
    fixture.write(file, &lines.join("\n"));
    match load_all(&fixture.root) {
        Ok(system) => {
            assert_clean_code(&codegen::wiring(&system));
            for component in &system.components {
                assert_clean_code(&codegen::component_env(component));
            }
        }
        Err(errors) => assert!(!errors.is_empty(), "refused without an error"),
    }
}

#[test]
fn fuzz_spec_workspace() {
    driver::Target::new("spec::workspace", 128)
        .max_input(512)
        .run(check_workspace);
}
