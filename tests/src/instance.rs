//! A running instance driven through the real `scripts/starina` (`up`,
//! `exec`, `status`, `down`), for the tests that share one boot among many
//! commands.

use std::path::PathBuf;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;
use std::thread;

use crate::repo_root;

/// `scripts/starina ARGS` in its own runtime directory (so that `status`
/// and `down` see only this test's instance) and HTTP port.
#[derive(Clone)]
pub struct Tool {
    pub runtime: PathBuf,
    pub port: u16,
}

impl Tool {
    /// A tool whose instances live in `runtime` (created) and serve HTTP
    /// on a free port.
    pub fn new(runtime: PathBuf) -> Tool {
        std::fs::create_dir_all(&runtime).expect("a runtime directory");
        Tool {
            runtime,
            port: starina_host::host::free_port().expect("a free port"),
        }
    }

    /// Runs the tool and echoes what it did (shown when a test fails).
    pub fn run(&self, args: &[&str]) -> Output {
        let out = Command::new(repo_root().join("scripts/starina"))
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.runtime)
            .env("STARINA_HTTP_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("scripts/starina runs");
        println!(
            "$ scripts/starina {}\n--- status {:?}\n--- stdout:\n{}--- stderr:\n{}",
            args.join(" "),
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr)
        );
        out
    }

    /// `up` on `disk` (a 64 MiB native partition when it is created) with
    /// the prebuilt `kernel`; `linux_root` as `--linux-root` takes it.
    pub fn up(&self, kernel: &str, disk: &str, linux_root: &str) -> Output {
        self.run(&[
            "up",
            "--no-build",
            "--kernel",
            kernel,
            "--disk",
            disk,
            "--disk-size",
            "64M",
            "--linux-root",
            linux_root,
            "--timeout",
            "300",
        ])
    }

    /// `exec --disk DISK -- ARGV`.
    pub fn exec(&self, disk: &str, argv: &[&str]) -> Output {
        let mut args = vec!["exec", "--disk", disk, "--"];
        args.extend_from_slice(argv);
        self.run(&args)
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Stops the instance when an assertion fails (before the disk goes).
pub struct DownOnPanic(pub Tool);

impl Drop for DownOnPanic {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.run(&["down"]);
        }
    }
}

/// Stops the instance whenever it is dropped (a `down` of an instance
/// already down is harmless), so no test leaves one running.
pub struct DownOnDrop(pub Tool);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        self.0.run(&["down"]);
    }
}

/// An instance that is up, on a fresh disk of its own with the Debian root
/// (the image is built first if it is not cached: minutes). It goes down
/// with the value, whether the test passed or not; the disk goes too.
pub struct DebianInstance {
    // Declared first, so it drops (and brings the instance down) before
    // the disk goes.
    _down: DownOnDrop,
    pub tool: Tool,
    /// The disk image's path.
    pub disk: String,
    _dir: crate::TempDisk,
}

impl DebianInstance {
    pub fn up() -> DebianInstance {
        let kernel = crate::kernel();
        let dir = crate::TempDisk::new().expect("a temporary directory");
        let disk = dir.path().to_str().expect("a UTF-8 path").to_string();
        let tool = Tool::new(dir.path().with_file_name("run"));
        let instance = DebianInstance {
            _down: DownOnDrop(tool.clone()),
            tool,
            disk,
            _dir: dir,
        };
        let kernel = kernel.to_str().expect("a UTF-8 path");
        let started = instance.tool.up(kernel, &instance.disk, "debian");
        assert_eq!(started.status.code(), Some(0), "up failed");
        instance
    }
}
