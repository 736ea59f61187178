//! Building (and linting) the kernel image: the one place for its cargo
//! invocation and RUSTFLAGS (docs/CONTRACTS.md, "Building the kernel").

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use crate::host::Host;
use crate::host::KERNEL_IMAGE;
use crate::process::run_lines;
use crate::process::Line;

/// The kernel's code generation flags.
pub const RUSTFLAGS: &str = "-C relocation-model=static -C code-model=kernel -C no-redzone=yes -C target-cpu=x86-64 -C force-frame-pointers=yes";
/// The variable cargo reads them from (only the kernel's target gets them).
pub const RUSTFLAGS_VAR: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";
/// The target, profile and target directory of the kernel image.
pub const CARGO_ARGS: [&str; 8] = [
    "-p",
    "starina-kernel",
    "--profile",
    "kernel",
    "--target",
    "x86_64-unknown-linux-gnu",
    "--target-dir",
    "target/kernel",
];

/// `cargo <verb> <the kernel's args> <extra>` with the kernel's RUSTFLAGS.
pub fn cargo(host: &Host, verb: &str, extra: &[String]) -> Command {
    let mut cmd = Command::new("cargo");
    cmd.arg(verb)
        .args(CARGO_ARGS)
        .args(extra)
        .env(RUSTFLAGS_VAR, RUSTFLAGS)
        .current_dir(&host.root);
    cmd
}

/// How much of the build's output to show.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Everything, as it comes.
    Show,
    /// Only if the build takes more than 2 s (a real build) or fails.
    WhenSlow,
}

/// Builds the kernel image; build output goes to `report` line by line
/// (as `progress` says). Returns the image path, or why not.
pub fn build(
    host: &Host,
    extra: &[String],
    progress: Progress,
    report: &mut dyn FnMut(&str),
) -> Result<PathBuf, String> {
    let mut args = vec!["--bin".to_string(), "starina-kernel".to_string()];
    args.extend_from_slice(extra);
    if progress == Progress::Show {
        report("==> building kernel (profile kernel)");
    }
    let code = run_shown(
        &mut cargo(host, "build", &args),
        progress,
        report,
        &mut |_| {},
    )
    .map_err(|e| format!("cannot run cargo: {e}"))?;
    if code != 0 {
        return Err(format!("kernel build failed (cargo exit status {code})"));
    }
    let image = host.root.join(KERNEL_IMAGE);
    if !image.is_file() {
        return Err(format!(
            "cargo succeeded but {} does not exist",
            image.display()
        ));
    }
    if progress == Progress::Show {
        report(&format!("==> kernel image: {KERNEL_IMAGE}"));
    }
    Ok(image)
}

/// Runs `cmd`, passing its stderr lines (progress) to `report` as `progress`
/// says and its stdout lines to `on_stdout`; its exit code.
pub fn run_shown(
    cmd: &mut Command,
    progress: Progress,
    report: &mut dyn FnMut(&str),
    on_stdout: &mut dyn FnMut(&str),
) -> std::io::Result<i32> {
    let start = Instant::now();
    let mut held = Vec::new();
    let mut showing = progress == Progress::Show;
    let code = run_lines(cmd, |line| {
        let text = match line {
            Line::Out(text) => return on_stdout(&text),
            Line::Err(text) => text,
        };
        if !showing && start.elapsed().as_secs() >= 2 {
            showing = true;
            held.drain(..).for_each(|l: String| report(&l));
        }
        if showing {
            report(&text);
        } else {
            held.push(text);
        }
    })?;
    if code != 0 {
        held.iter().for_each(|l| report(l));
    }
    Ok(code)
}

/// `cargo clippy` on the kernel as it is built, `-D warnings`.
pub fn clippy(host: &Host, extra: &[String]) -> std::io::Result<i32> {
    let mut args = extra.to_vec();
    args.extend(["--".to_string(), "-D".to_string(), "warnings".to_string()]);
    Ok(cargo(host, "clippy", &args).status()?.code().unwrap_or(-1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contracts_document_these_flags() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let contracts = std::fs::read_to_string(root.join("docs/CONTRACTS.md")).unwrap();
        assert!(contracts.contains(&format!("{RUSTFLAGS_VAR}=\"{RUSTFLAGS}\"")));
        assert!(contracts.contains(&format!("cargo build {}", CARGO_ARGS.join(" "))));
    }
}
