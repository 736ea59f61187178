//! The README's "Writing a component" walkthrough is real code: its spec and
//! crate are `specs/greeter.toml` and `servers/greeter`, booted in the test
//! profile (test `readme_greeter`). This keeps the two identical.

use std::fs;

use starina_tests::repo_root;

/// The fenced block that follows `marker` in the README.
fn block_after(readme: &str, marker: &str) -> String {
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README has no {marker:?}"));
    let rest = &readme[start..];
    let open = rest.find("```").expect("a code block follows");
    let body = &rest[open..];
    let body = &body[body.find('\n').unwrap() + 1..];
    let end = body.find("```").expect("the code block ends");
    body[..end].to_string()
}

#[test]
fn the_walkthrough_is_the_greeter_component() {
    let root = repo_root();
    let readme = fs::read_to_string(root.join("README.md")).unwrap();
    for (marker, file) in [
        (
            "### 1. The spec: `specs/greeter.toml`",
            "specs/greeter.toml",
        ),
        ("`Cargo.toml`:", "servers/greeter/Cargo.toml"),
        ("`build.rs` turns the spec", "servers/greeter/build.rs"),
        ("`src/lib.rs`:", "servers/greeter/src/lib.rs"),
    ] {
        let actual = fs::read_to_string(root.join(file)).unwrap();
        assert_eq!(
            block_after(&readme, marker),
            actual,
            "README's block after {marker:?} differs from {file}: update one to match the other"
        );
    }
}
