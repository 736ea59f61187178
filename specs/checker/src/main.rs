//! `starina-spec check [ROOT]`: checks every spec and profile of the
//! workspace at ROOT (default: the nearest directory above the current one
//! that has `specs/`) and, if it exists, the kernel's manifest.

use std::env;
use std::path::PathBuf;
use std::process::ExitCode;

use starina_spec::build::find_root;
use starina_spec::check_kernel_manifest;
use starina_spec::load_all;
use starina_spec::KERNEL_MANIFEST;

const USAGE: &str = "usage: starina-spec check [ROOT]";

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = match args.as_slice() {
        [command] if command == "check" => {
            let cwd = env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
            match find_root(&cwd) {
                Some(root) => root,
                None => {
                    eprintln!("error: no directory above {} has specs/", cwd.display());
                    return ExitCode::FAILURE;
                }
            }
        }
        [command, root] if command == "check" => PathBuf::from(root),
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };

    let errors = match load_all(&root) {
        Ok(system) if root.join(KERNEL_MANIFEST).is_file() => {
            let errors = check_kernel_manifest(&root, &system);
            if errors.is_empty() {
                println!(
                    "specs ok: {} components, {} profiles",
                    system.components.len(),
                    system.profiles.len()
                );
            }
            errors
        }
        Ok(system) => {
            println!(
                "specs ok: {} components, {} profiles ({KERNEL_MANIFEST} not found, not checked)",
                system.components.len(),
                system.profiles.len()
            );
            Vec::new()
        }
        Err(errors) => errors,
    };
    if errors.is_empty() {
        return ExitCode::SUCCESS;
    }
    for error in &errors {
        eprintln!("error: {error}");
    }
    eprintln!("{} error(s)", errors.len());
    ExitCode::FAILURE
}
