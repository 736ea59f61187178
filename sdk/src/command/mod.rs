//! Commands: components that run on demand (spec `kind = "command"`).
//!
//! Each run is a fresh instance with its own handles: startup gives it an
//! argument vector and an environment ([`Args`]), its spec's needs wired to
//! the running profile's services, and three streams ([`Input`] stdin,
//! [`Output`] stdout and stderr). It ends with an exit status that the
//! starter's [`Job`] receives: what `main` returns ([`CommandReturn`]), 134
//! if it panicked (the panic message goes to its stderr), 139 if it
//! faulted, 137 if it was killed.
//!
//! ```ignore
//! pub fn main(mut env: Env) -> Result<(), CommandError> {
//!     while let Some(line) = env.stdin.read_line()? {
//!         env.stdout.write(&line)?;
//!     }
//!     Ok(())
//! }
//! ```

mod job;
mod request;
mod stream;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

pub use job::Job;
pub use job::Spawner;
pub use job::Stdio;
pub use job::StdioPeer;
pub use request::Request;
pub use request::ITEMS_MAX;
pub use request::REQUEST_MAX;
pub use stream::Buffered;
pub use stream::Input;
pub use stream::IoError;
pub use stream::Output;
pub use stream::LINE_MAX;

/// The status of a command that panicked (as a Unix process that aborts).
pub const STATUS_PANICKED: i32 = 134;
/// The status of a command that faulted (as a Unix process's SIGSEGV).
pub const STATUS_FAULTED: i32 = 139;
/// The status of a command that was killed (as for SIGKILL).
pub const STATUS_KILLED: i32 = 137;
/// The status of a command whose reader went away (as for SIGPIPE).
pub const STATUS_BROKEN_PIPE: i32 = 141;

/// A command's arguments and environment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args {
    /// `argv[0]` is the name the command was called by.
    pub argv: Vec<String>,
    pub vars: Vec<(String, String)>,
}

impl Args {
    /// The name it was called by.
    pub fn name(&self) -> &str {
        self.argv.first().map_or("", String::as_str)
    }

    /// The arguments after the name.
    pub fn rest(&self) -> &[String] {
        self.argv.get(1..).unwrap_or(&[])
    }

    /// The value of environment variable `name`.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `--help` is among the arguments (before a `--`).
    pub fn wants_help(&self) -> bool {
        self.rest()
            .iter()
            .take_while(|a| *a != "--")
            .any(|a| a == "--help")
    }
}

/// Why a command failed: its exit status and what to print on stderr.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    pub status: i32,
    /// Printed on stderr as `<command>: <message>`; none for a broken pipe.
    pub message: Option<String>,
}

impl CommandError {
    /// Status 1 with `message`.
    pub fn new(message: impl fmt::Display) -> CommandError {
        CommandError {
            status: 1,
            message: Some(format!("{message}")),
        }
    }

    /// Status 2 (bad usage) with `message`.
    pub fn usage(message: impl fmt::Display) -> CommandError {
        CommandError {
            status: 2,
            message: Some(format!("{message}")),
        }
    }
}

impl From<IoError> for CommandError {
    fn from(e: IoError) -> CommandError {
        match e {
            IoError::BrokenPipe => CommandError {
                status: STATUS_BROKEN_PIPE,
                message: None,
            },
            other => CommandError::new(other),
        }
    }
}

impl From<crate::fs::FsError> for CommandError {
    fn from(e: crate::fs::FsError) -> CommandError {
        CommandError::new(e.text)
    }
}

/// What a command's `main` may return: `()` (status 0), an `i32` status,
/// or a `Result` whose error is printed on stderr.
pub trait CommandReturn {
    /// The exit status; `stderr` takes an error's message.
    fn status(self, name: &str, stderr: Option<&mut Output>) -> i32;
}

impl CommandReturn for () {
    fn status(self, _: &str, _: Option<&mut Output>) -> i32 {
        0
    }
}

impl CommandReturn for i32 {
    fn status(self, _: &str, _: Option<&mut Output>) -> i32 {
        self
    }
}

impl<T: CommandReturn> CommandReturn for Result<T, CommandError> {
    fn status(self, name: &str, stderr: Option<&mut Output>) -> i32 {
        match self {
            Ok(v) => v.status(name, stderr),
            Err(e) => {
                if let (Some(message), Some(out)) = (e.message, stderr) {
                    // Nowhere to report a failure to report.
                    let _ = out.print(&format!("{name}: {message}\n"));
                }
                e.status
            }
        }
    }
}
