//! Exit statuses: every status the host tool exits with, in one enum
//! (documented in docs/CONTRACTS.md, "Exit statuses").

use std::fmt;

/// What the `starina` binary exits with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitStatus {
    /// 0: everything asked for happened (`--until` patterns seen, all tests
    /// passed, every figure measured).
    Success,
    /// C: the OS powered off with code C through isa-debug-exit (`run`), or
    /// the command exited with C (`exec`, `exit & 0xff`).
    Code(u8),
    /// 1: a test or a figure failed (`test`, `bench`, `build-kernel`).
    Failed,
    /// 2: bad command line.
    Usage,
    /// 123: `--until`: the OS exited before every pattern appeared.
    UntilMissed,
    /// 124: `--timeout` expired.
    Timeout,
    /// 125: QEMU exited without the OS reporting a status (crash, reset,
    /// killed), or Starina/Linux stopped before an `exec` status came back.
    NoStatus,
    /// 126: nothing booted: build failed, image missing, QEMU did not start.
    NotBooted,
    /// 127: the QEMU binary was not found.
    NoQemu,
    /// 128+N: interrupted by signal N (130 for Ctrl-C), or, for `exec`, the
    /// command was killed by signal N.
    Signal(u8),
}

/// SIGINT, SIGPIPE, SIGTERM and SIGHUP numbers on Linux.
pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGPIPE: i32 = 13;
pub const SIGTERM: i32 = 15;

impl ExitStatus {
    /// The process exit code.
    pub fn code(self) -> i32 {
        self.code_const()
    }

    /// [`ExitStatus::code`], usable in constants.
    pub const fn code_const(self) -> i32 {
        match self {
            ExitStatus::Success => 0,
            ExitStatus::Code(c) => c as i32,
            ExitStatus::Failed => 1,
            ExitStatus::Usage => 2,
            ExitStatus::UntilMissed => 123,
            ExitStatus::Timeout => 124,
            ExitStatus::NoStatus => 125,
            ExitStatus::NotBooted => 126,
            ExitStatus::NoQemu => 127,
            ExitStatus::Signal(n) => 128 + n as i32,
        }
    }

    /// 0 is `Success`, 1 `Failed`, anything else as it is.
    pub fn from_code(code: i32) -> ExitStatus {
        match code {
            0 => ExitStatus::Success,
            1 => ExitStatus::Failed,
            c => ExitStatus::Code((c & 0xff) as u8),
        }
    }

    /// The status a shell reports for a process that exited with `code`.
    pub fn from_exit(code: i32) -> ExitStatus {
        ExitStatus::Code((code & 0xff) as u8)
    }

    /// The status a shell reports for a process killed by `signal`.
    pub fn from_signal(signal: i32) -> ExitStatus {
        ExitStatus::Signal(signal.clamp(0, 127) as u8)
    }

    pub fn is_success(self) -> bool {
        self.code() == 0
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code())
    }
}

/// How QEMU ended, as `run` sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QemuEnd {
    /// QEMU exited with this status.
    Exited(i32),
    /// QEMU was killed by this signal.
    Killed(i32),
}

/// What QEMU's end means when nothing else (timeout, signal, `--until`)
/// decided the status. `failed_to_start`: QEMU printed an error, or the OS
/// wrote nothing at all, so status 1 is QEMU's own failure, not the OS's 0.
pub fn os_status(end: QemuEnd, failed_to_start: bool) -> ExitStatus {
    match end {
        QemuEnd::Killed(_) => ExitStatus::NoStatus,
        QemuEnd::Exited(1) if failed_to_start => ExitStatus::NotBooted,
        QemuEnd::Exited(rc) if rc % 2 == 0 => ExitStatus::NoStatus,
        QemuEnd::Exited(rc) => ExitStatus::from_exit(rc >> 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        assert_eq!(ExitStatus::Success.code(), 0);
        assert_eq!(ExitStatus::Usage.code(), 2);
        assert_eq!(ExitStatus::UntilMissed.code(), 123);
        assert_eq!(ExitStatus::Timeout.code(), 124);
        assert_eq!(ExitStatus::NoStatus.code(), 125);
        assert_eq!(ExitStatus::NotBooted.code(), 126);
        assert_eq!(ExitStatus::NoQemu.code(), 127);
        assert_eq!(ExitStatus::Signal(2).code(), 130);
        assert_eq!(ExitStatus::from_signal(15).code(), 143);
        assert_eq!(ExitStatus::from_exit(259).code(), 3);
        assert_eq!(ExitStatus::from_exit(-1).code(), 255);
    }

    #[test]
    fn contracts_list_every_status() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let contracts = std::fs::read_to_string(root.join("docs/CONTRACTS.md")).unwrap();
        let section = &contracts[contracts.find("## Exit statuses").unwrap()..];
        for (status, name) in [
            (ExitStatus::Success, "Success"),
            (ExitStatus::Failed, "Failed"),
            (ExitStatus::Usage, "Usage"),
            (ExitStatus::UntilMissed, "UntilMissed"),
            (ExitStatus::Timeout, "Timeout"),
            (ExitStatus::NoStatus, "NoStatus"),
            (ExitStatus::NotBooted, "NotBooted"),
            (ExitStatus::NoQemu, "NoQemu"),
        ] {
            let row = format!("| {} | `{name}` |", status.code());
            assert!(section.contains(&row), "CONTRACTS.md lacks {row:?}");
        }
    }

    #[test]
    fn qemu_status_mapping() {
        // The OS wrote C: QEMU exits (C << 1) | 1.
        for (rc, want) in [(1, 0), (7, 3), (15, 7), (5, 2)] {
            assert_eq!(os_status(QemuEnd::Exited(rc), false).code(), want);
        }
        assert_eq!(os_status(QemuEnd::Exited(0), false), ExitStatus::NoStatus);
        assert_eq!(os_status(QemuEnd::Exited(2), false), ExitStatus::NoStatus);
        assert_eq!(os_status(QemuEnd::Killed(9), false), ExitStatus::NoStatus);
        assert_eq!(os_status(QemuEnd::Exited(1), true), ExitStatus::NotBooted);
        assert_eq!(os_status(QemuEnd::Exited(3), true).code(), 1);
    }
}
