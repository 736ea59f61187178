//! An OS booted in the background (a thread running the host tool's `run`),
//! with its console collected, for tests that act while it runs: HTTP
//! through the forwarded port, QEMU monitor commands. Dropping it stops
//! QEMU as a Ctrl-C would.

use std::path::Path;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use starina_host::disk::DiskOptions;
use starina_host::host::Stop;
use starina_host::qemu::Machine;
use starina_host::run::run;
use starina_host::run::RunOptions;
use starina_host::status::SIGTERM;
use starina_host::ExitStatus;
use starina_host::Streams;

use crate::host_with_env;
use crate::kernel;
use crate::SharedText;
use crate::TempDisk;
use crate::TEST_DISK_SIZE;

pub struct LiveGuest {
    stop: Arc<Stop>,
    runner: Option<thread::JoinHandle<ExitStatus>>,
    console: SharedText,
    /// The guest's own disk, removed after QEMU stopped (fields drop after
    /// `drop`).
    _disk: Option<TempDisk>,
}

impl LiveGuest {
    /// Boots the built kernel with `profile` on `machine`, the guest's port
    /// 80 forwarded to `http_port`, and `qemu_args` appended to QEMU's
    /// command line. Returns at once; see [`LiveGuest::wait_console`].
    pub fn boot(profile: &str, machine: &str, http_port: u16, qemu_args: &[&str]) -> LiveGuest {
        let disk = TempDisk::new().expect("a temporary directory for the disk");
        let mut guest = LiveGuest::boot_on(&disk.path(), profile, machine, http_port, qemu_args);
        guest._disk = Some(disk);
        guest
    }

    /// [`LiveGuest::boot`] on the disk image `disk`, which the caller keeps
    /// (made beforehand, say with files copied in, or kept for the next
    /// boot; created empty if it is not there yet).
    pub fn boot_on(
        disk: &Path,
        profile: &str,
        machine: &str,
        http_port: u16,
        qemu_args: &[&str],
    ) -> LiveGuest {
        LiveGuest::boot_on_cpus(disk, profile, machine, http_port, qemu_args, 1)
    }

    /// [`LiveGuest::boot_on`] with `cpus` CPUs (`scripts/starina run
    /// --smp`).
    pub fn boot_on_cpus(
        disk: &Path,
        profile: &str,
        machine: &str,
        http_port: u16,
        qemu_args: &[&str],
        cpus: u8,
    ) -> LiveGuest {
        let image: PathBuf = kernel();
        let mut host = host_with_env(&[]);
        host.http_port = http_port;
        let stop = host.stop.clone();
        let mut opts = RunOptions::new(profile);
        opts.build = false;
        opts.kernel = Some(image);
        opts.machine = Machine::parse(machine).expect("a machine type");
        opts.cpus = cpus;
        opts.timeout = Some(600.0);
        opts.disk = DiskOptions {
            path: Some(disk.to_path_buf()),
            size: TEST_DISK_SIZE,
            ..DiskOptions::default()
        };
        opts.qemu_args = qemu_args.iter().map(|a| a.to_string()).collect();
        let console = SharedText::new();
        let mut out = console.clone();
        let runner = thread::spawn(move || {
            let mut err = std::io::stderr();
            let mut io = Streams {
                out: &mut out,
                err: &mut err,
            };
            run(&host, &opts, &mut io).status
        });
        LiveGuest {
            stop,
            runner: Some(runner),
            console,
            _disk: None,
        }
    }

    /// Everything the serial console printed so far.
    pub fn console(&self) -> String {
        self.console.text()
    }

    /// Waits until the console shows `needle`; fails the test (with the
    /// console) after `timeout`.
    pub fn wait_console(&self, needle: &str, timeout: Duration) {
        assert!(
            self.console.wait_for(needle, timeout),
            "no {needle:?} on the console within {timeout:?}\n{}",
            self.console()
        );
    }

    /// Whether the run has ended (the OS powered off or QEMU stopped).
    pub fn has_ended(&self) -> bool {
        self.runner.as_ref().is_none_or(|r| r.is_finished())
    }

    /// Waits for the OS to power off by itself and returns the status.
    pub fn wait_exit(mut self) -> ExitStatus {
        let runner = self.runner.take().expect("the runner is there until now");
        runner.join().expect("the runner thread")
    }
}

/// How much of the console a failing test shows.
const CONSOLE_TAIL_LINES: usize = 150;

impl Drop for LiveGuest {
    fn drop(&mut self) {
        // A test failing while the guest runs: show what the guest said
        // last, so the failure can be understood from the test's output.
        if thread::panicking() {
            eprintln!(
                "--- the guest's console, last {CONSOLE_TAIL_LINES} lines ---\n{}\n--- end of console ---",
                self.console.tail(CONSOLE_TAIL_LINES)
            );
        }
        // As a Ctrl-C would: the run stops QEMU and returns.
        self.stop.request(SIGTERM);
        if let Some(runner) = self.runner.take() {
            let _ = runner.join();
        }
    }
}
