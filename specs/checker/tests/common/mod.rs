//! A throwaway workspace in the temp directory for each test.

#![allow(dead_code)]

use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;

use starina_spec::load_all;
use starina_spec::System;

pub const HELLO: &str = r#"
name = "hello"
kind = "app"
description = "Prints a greeting."
isolation = "in-kernel"

[config]
greeting = "hi"
"#;

pub const ECHO: &str = r#"
name = "echo"
kind = "server"
description = "Echoes."
isolation = "in-kernel"
restart = "on-failure"
exports = ["echo"]
"#;

pub const ECHO_CLIENT: &str = r#"
name = "echo_client"
kind = "app"
description = "Sends many echo requests and checks every reply."
isolation = "in-kernel"

[needs]
echo = "echo"

[config]
rounds = 1000
"#;

pub const DEFAULT_PROFILE: &str = r#"components = ["hello", "echo", "echo_client"]"#;

/// A workspace root with `specs/` and `specs/profiles/`, removed on drop.
pub struct Fixture {
    pub root: PathBuf,
}

impl Fixture {
    /// An empty workspace (no specs, no profiles).
    pub fn empty() -> Fixture {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let root = std::env::temp_dir().join(format!(
            "starina-spec-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("specs/profiles")).unwrap();
        Fixture { root }
    }

    /// A valid workspace: hello, echo and echo_client with their crates,
    /// and the default profile starting all three.
    pub fn valid() -> Fixture {
        let fixture = Fixture::empty();
        fixture.component("apps", HELLO);
        fixture.component("servers", ECHO);
        fixture.component("apps", ECHO_CLIENT);
        fixture.write("specs/profiles/default.toml", DEFAULT_PROFILE);
        fixture
    }

    pub fn write(&self, path: &str, text: &str) {
        let path = self.root.join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }

    pub fn remove(&self, path: &str) {
        let path = self.root.join(path);
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    }

    /// Writes `specs/<name>.toml` (the name taken from `spec`) and its
    /// crate skeleton under `dir`.
    pub fn component(&self, dir: &str, spec: &str) {
        let table: toml::Table = toml::from_str(spec).unwrap();
        let name = table["name"].as_str().unwrap();
        self.write(&format!("specs/{name}.toml"), spec);
        self.crate_skeleton(dir, name);
    }

    pub fn crate_skeleton(&self, dir: &str, name: &str) {
        self.write(
            &format!("{dir}/{name}/Cargo.toml"),
            &format!("[package]\nname = \"{name}\"\n"),
        );
        self.write(
            &format!("{dir}/{name}/build.rs"),
            "fn main() {\n    starina_spec::build::component();\n}\n",
        );
    }

    pub fn load(&self) -> System {
        match load_all(&self.root) {
            Ok(system) => system,
            Err(errors) => panic!("unexpected errors: {:#?}", messages(&errors)),
        }
    }

    /// The messages of all errors `load_all` reports (it must fail).
    pub fn errors(&self) -> Vec<String> {
        match load_all(&self.root) {
            Ok(_) => panic!("expected errors, but the specs load"),
            Err(errors) => messages(&errors),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub fn messages(errors: &[starina_spec::SpecError]) -> Vec<String> {
    errors.iter().map(ToString::to_string).collect()
}

/// Asserts that `errors` is exactly `expected` (order included).
#[track_caller]
pub fn assert_errors(errors: Vec<String>, expected: &[&str]) {
    assert_eq!(errors, expected, "\nactual errors:\n{}", errors.join("\n"));
}

/// A kernel manifest with the path dependencies `Fixture::valid` needs.
pub const KERNEL_MANIFEST_OK: &str = r#"[package]
name = "starina-kernel"

[dependencies]
# components (wired by specs)
hello = { path = "../apps/hello" }
echo = { path = "../servers/echo" }
echo_client = { path = "../apps/echo_client" }
"#;
