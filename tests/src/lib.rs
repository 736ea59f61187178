//! Helpers for Starina's end-to-end tests.
//!
//! The tests drive the OS the way a developer does, through the host tool's
//! library (crate `starina-host`, the `starina` binary behind
//! `scripts/starina`): they build the kernel once per test binary, boot it
//! with the same options as `scripts/starina run --no-build ...`, then look at
//! what it printed and at the exit status (see `docs/CONTRACTS.md`).
//!
//! Tests that boot anything under the real QEMU are `#[ignore]`d so that plain
//! `cargo test --workspace` stays a quick host-only run; `make test` runs them
//! with `cargo test -p starina-tests -- --ignored --test-threads=1`.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use starina_host::kernel::Progress;
pub mod exec_sh;
pub mod frames;
pub mod http;
pub mod instance;
pub mod pty;
mod linked;
mod live;

pub use linked::LinkedGuest;
pub use live::LiveGuest;
pub use starina_host::shared_text::SharedText;
pub use starina_host::markers;
pub use starina_host::ExitStatus;
pub use starina_host::disk::TempDisk;
use starina_host::Host;
use starina_host::Streams;

/// Exit statuses of `scripts/starina run` besides the OS's own codes.
pub const EXIT_UNTIL_MISSED: i32 = ExitStatus::UntilMissed.code_const();
pub const EXIT_TIMEOUT: i32 = ExitStatus::Timeout.code_const();
pub const EXIT_NO_STATUS: i32 = ExitStatus::NoStatus.code_const();
pub const EXIT_NOT_BOOTED: i32 = ExitStatus::NotBooted.code_const();
pub const EXIT_NO_QEMU: i32 = ExitStatus::NoQemu.code_const();

/// The repository root (the parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
}

/// The host tool's settings for a test: from the environment, never
/// interactive, with `env` applied (`STARINA_QEMU` and `STARINA_HTTP_PORT`
/// as settings, anything else for QEMU's environment).
pub fn host_with_env(env: &[(&str, &str)]) -> Host {
    let mut host = Host::from_env().with_free_http_port();
    for (k, v) in env {
        match *k {
            "STARINA_QEMU" => host.qemu = v.to_string(),
            "STARINA_HTTP_PORT" => host.http_port = v.parse().expect("a port number"),
            _ => host.qemu_env.push((k.to_string(), v.to_string())),
        }
    }
    host
}

/// Builds the kernel (`scripts/build-kernel`'s build), once per test binary,
/// and returns the image path. Panics (failing the test) if the build fails.
pub fn kernel() -> PathBuf {
    static KERNEL: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = KERNEL.get_or_init(|| {
        let mut log = String::new();
        let host = host_with_env(&[]);
        let mut report = |line: &str| {
            log.push_str(line);
            log.push('\n');
        };
        starina_host::kernel::build(&host, &[], Progress::Show, &mut report)
            .map_err(|e| format!("the kernel build failed: {e}\n{log}"))
    });
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// What one `scripts/starina` run did.
#[derive(Debug)]
pub struct Run {
    /// The exit status (always `Some`: kept an `Option` for the assertions).
    pub code: Option<i32>,
    /// The serial console.
    pub stdout: String,
    /// The tool's and QEMU's messages.
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// Fails the test with the whole console log unless the serial output
    /// contains `needle`.
    pub fn assert_console(&self, needle: &str) {
        assert!(
            self.stdout.contains(needle),
            "serial console lacks {needle:?}\n{}",
            self.transcript()
        );
    }

    /// Fails the test with the whole log unless the exit status is `code`.
    pub fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "expected exit status {code}\n{}",
            self.transcript()
        );
    }

    /// Stdout and stderr, for failure messages.
    pub fn transcript(&self) -> String {
        format!(
            "--- exit status: {:?} after {:.1} s\n--- stdout (serial console):\n{}\n--- stderr:\n{}",
            self.code,
            self.elapsed.as_secs_f64(),
            self.stdout,
            self.stderr
        )
    }

    /// Console lines (without `\r`).
    pub fn lines(&self) -> impl Iterator<Item = &str> {
        self.stdout.lines().map(|l| l.trim_end_matches('\r'))
    }
}

/// Runs the host tool as `scripts/starina <args>` would (stdin empty, so
/// never interactive), in this process, with extra environment (see
/// [`host_with_env`]).
pub fn starina_with_env(args: &[&str], env: &[(&str, &str)]) -> Run {
    let start = Instant::now();
    let host = host_with_env(env);
    let disk = TempDisk::new().expect("a temporary directory for the disk");
    let args = with_own_disk(args, &disk);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut out,
        err: &mut err,
    };
    let status = starina_host::app::run_args(&host, &args, Box::new(std::io::empty()), &mut io);
    let run = Run {
        code: Some(status.code()),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
        elapsed: start.elapsed(),
    };
    // Shown by the test harness when the test fails (or with --nocapture).
    println!("$ scripts/starina {}\n{}", args.join(" "), run.transcript());
    drop(disk);
    run
}

/// The size of the disks tests boot with (sparse files).
pub const TEST_DISK_SIZE: u64 = 64 << 20;

/// `args` with `--disk` on `disk` for `run` and `exec` unless they name
/// one (tests never touch the user's default image) or boot Bochs (which
/// has no disk), and `--linux-root none` unless they name a root.
fn with_own_disk(args: &[&str], disk: &TempDisk) -> Vec<String> {
    let mut out: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let boots = matches!(args.first(), Some(&"run") | Some(&"exec"));
    let before_extra = args.iter().position(|a| *a == "--").unwrap_or(args.len());
    let named = args[..before_extra]
        .iter()
        .any(|a| *a == "--disk" || a.starts_with("--disk="));
    let bochs = args[..before_extra]
        .windows(2)
        .any(|w| w == ["--emulator", "bochs"])
        || args[..before_extra].contains(&"--emulator=bochs");
    if boots && !named && !bochs {
        let size = TEST_DISK_SIZE.to_string();
        let disk = disk.path().to_string_lossy().into_owned();
        out.splice(1..1, ["--disk".into(), disk, "--disk-size".into(), size]);
    }
    // No Linux root unless the test asks: boots keep the busybox
    // initramfs (fast, and no Debian image to build).
    let root_named = args[..before_extra]
        .iter()
        .any(|a| *a == "--linux-root" || a.starts_with("--linux-root="));
    if boots && !root_named {
        out.splice(1..1, ["--linux-root".into(), "none".into()]);
    }
    out
}

/// Runs `scripts/starina` with `args`.
pub fn starina(args: &[&str]) -> Run {
    starina_with_env(args, &[])
}

/// Boots the built kernel: `scripts/starina run --no-build --kernel <image>
/// --profile <profile> --machine <machine> --timeout <secs> <extra...>`.
pub fn boot(profile: &str, machine: &str, timeout_secs: u32, extra: &[&str]) -> Run {
    let image = kernel();
    let image = image.to_str().expect("kernel path is UTF-8");
    let timeout = timeout_secs.to_string();
    let mut args = vec![
        "run",
        "--no-build",
        "--kernel",
        image,
        "--profile",
        profile,
        "--machine",
        machine,
        "--timeout",
        &timeout,
    ];
    args.extend_from_slice(extra);
    starina(&args)
}

/// Assembles `tests/fixtures/pvh-stub.S` into a tiny PVH test kernel in
/// `dir` (once per test binary; pass `env!("CARGO_TARGET_TMPDIR")`) and
/// returns its path. See that file for what it does.
pub fn pvh_stub(dir: &str) -> PathBuf {
    static STUB: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let result = STUB.get_or_init(|| {
        let dir = PathBuf::from(dir).join("pvh-stub");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let obj = dir.join("pvh-stub.o");
        let elf = dir.join("pvh-stub");
        let mut cc = Command::new("cc");
        cc.arg("-m32")
            .arg("-c")
            .arg(fixture("pvh-stub.S"))
            .arg("-o")
            .arg(&obj);
        let mut ld = Command::new("ld");
        ld.args(["-m", "elf_i386", "--no-warn-rwx-segments", "-T"])
            .arg(fixture("pvh-stub.ld"))
            .arg("-o")
            .arg(&elf)
            .arg(&obj);
        for mut step in [cc, ld] {
            let status = step
                .status()
                .map_err(|e| format!("cannot run {step:?}: {e}"))?;
            if !status.success() {
                return Err(format!("{step:?} failed: {status}"));
            }
        }
        Ok(elf)
    });
    match result {
        Ok(path) => path.clone(),
        Err(e) => panic!("{e}"),
    }
}
