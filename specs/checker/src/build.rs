//! The entry points of build scripts: [`component`] for a component crate,
//! [`kernel`] for the kernel. Both stop the build with the errors' messages
//! when the specs are wrong.

use std::env;
use std::fs;
use std::path::Path;
use std::path::PathBuf;
use std::process;

use crate::check::check_crate;
use crate::check::check_kernel_manifest;
use crate::check::load_all;
use crate::check::read;
use crate::check::spec_path;
use crate::check::PROFILES_DIR;
use crate::check::SPECS_DIR;
use crate::codegen;
use crate::error::Origin;
use crate::error::SpecError;
use crate::parse::parse_component;

/// The generated file a component includes.
pub const ENV_FILE: &str = "starina_env.rs";
/// The generated file the kernel includes.
pub const WIRING_FILE: &str = "starina_wiring.rs";

/// A component crate's build script: checks its spec
/// (`specs/<CARGO_PKG_NAME>.toml`) and writes `$OUT_DIR/starina_env.rs`.
pub fn component() {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let name = env_var("CARGO_PKG_NAME");
    let root = find_root_or_exit(&manifest_dir);
    println!(
        "cargo::rerun-if-changed={}",
        root.join(spec_path(&name)).display()
    );
    match component_env(&root, &name) {
        Ok(code) => write_or_exit(&env_path("OUT_DIR").join(ENV_FILE), &code),
        Err(errors) => fail(&errors),
    }
}

/// The kernel's build script: checks all specs and profiles and the
/// kernel's dependencies on the components, and writes
/// `$OUT_DIR/starina_wiring.rs`.
pub fn kernel() {
    let manifest_dir = env_path("CARGO_MANIFEST_DIR");
    let root = find_root_or_exit(&manifest_dir);
    for path in rerun_paths(&root) {
        println!("cargo::rerun-if-changed={}", path.display());
    }
    println!(
        "cargo::rerun-if-changed={}",
        manifest_dir.join("Cargo.toml").display()
    );
    match kernel_wiring(&root) {
        Ok(code) => write_or_exit(&env_path("OUT_DIR").join(WIRING_FILE), &code),
        Err(errors) => fail(&errors),
    }
}

/// Checks component `name`'s spec under `root` and generates its
/// `starina_env.rs`.
pub fn component_env(root: &Path, name: &str) -> Result<String, Vec<SpecError>> {
    let file = spec_path(name);
    if !root.join(&file).is_file() {
        let hint = if name.contains('-') {
            format!(
                "; component names are snake_case, so name the package '{}'",
                name.replace('-', "_")
            )
        } else {
            String::new()
        };
        return Err(vec![SpecError::other(
            &file,
            format!(
                "component crate '{name}' has no spec: {} does not exist \
                 (every crate in apps/, servers/, drivers/ and commands/ is a component){hint}",
                file.display()
            ),
        )]);
    }
    let component =
        read(root, &file, Origin::Spec).and_then(|text| parse_component(&file, &text))?;
    let errors = check_crate(root, &component);
    if errors.is_empty() {
        Ok(codegen::component_env(&component))
    } else {
        Err(errors)
    }
}

/// Checks everything under `root` (specs, profiles, `kernel/Cargo.toml`)
/// and generates the kernel's `starina_wiring.rs`.
pub fn kernel_wiring(root: &Path) -> Result<String, Vec<SpecError>> {
    let system = load_all(root)?;
    let errors = check_kernel_manifest(root, &system);
    if errors.is_empty() {
        Ok(codegen::wiring(&system))
    } else {
        Err(errors)
    }
}

/// The nearest ancestor of `start` (itself included) that has `specs/`.
pub fn find_root(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|dir| dir.join(SPECS_DIR).is_dir())
        .map(Path::to_path_buf)
}

/// The spec directories and every file in them.
fn rerun_paths(root: &Path) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for dir in [SPECS_DIR, PROFILES_DIR] {
        let dir = root.join(dir);
        if let Ok(entries) = fs::read_dir(&dir) {
            let mut files: Vec<PathBuf> = entries
                .filter_map(|entry| entry.ok())
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
                .collect();
            files.sort();
            paths.extend(files);
        }
        paths.push(dir);
    }
    paths
}

fn find_root_or_exit(manifest_dir: &Path) -> PathBuf {
    find_root(manifest_dir).unwrap_or_else(|| {
        exit_with(&format!(
            "starina-spec: no directory above {} has specs/ (the workspace root)",
            manifest_dir.display()
        ))
    })
}

fn env_var(name: &str) -> String {
    env::var(name).unwrap_or_else(|_| {
        exit_with(&format!(
            "starina-spec: ${name} is not set (run from a build script)"
        ))
    })
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(env_var(name))
}

fn write_or_exit(path: &Path, code: &str) {
    if let Err(e) = fs::write(path, code) {
        exit_with(&format!(
            "starina-spec: cannot write {}: {e}",
            path.display()
        ));
    }
}

/// Reports `errors` (cargo shows each as `error: ...`) and stops the build.
fn fail(errors: &[SpecError]) -> ! {
    for error in errors {
        println!("cargo::error={error}");
    }
    eprintln!(
        "starina-spec: {} error(s) in the specs; see specs/README.md",
        errors.len()
    );
    process::exit(1)
}

fn exit_with(message: &str) -> ! {
    println!("cargo::error={message}");
    process::exit(1)
}
