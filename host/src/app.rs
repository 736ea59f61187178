//! The `starina` binary: parse the command line, catch signals, run the command.

use std::io::Read;

use crate::cli;
use crate::cli::Command;
use crate::host::catch_signals;
use crate::host::catch_signals_but_hangup;
use crate::host::Host;
use crate::host::Streams;
use crate::kernel;
use crate::kernel::Progress;
use crate::status::ExitStatus;

/// Runs the command `args` names, on the real stdin, stdout and stderr.
pub fn main(args: &[String]) -> ExitStatus {
    let host = Host::from_env();
    // `run` and `exec` stop QEMU themselves on SIGINT, SIGTERM and SIGHUP
    // (and `exec` passes the first Ctrl-C on), `up` stops the instance it
    // was starting, an instance's process goes down cleanly; other
    // commands just end, and their QEMUs with them (`setpriv --pdeathsig`).
    let caught = match args.first().map(String::as_str) {
        Some("run" | "exec" | "shell" | "up") => catch_signals(host.stop.clone()),
        Some("instance-serve") => catch_signals_but_hangup(host.stop.clone()),
        _ => Ok(()),
    };
    if let Err(e) = caught {
        eprintln!("starina: cannot catch signals: {e}");
    }
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let mut io = Streams {
        out: &mut out,
        err: &mut err,
    };
    run_args(&host, args, Box::new(std::io::stdin()), &mut io)
}

/// Parses `args` and runs the command; `stdin` is what `exec` passes on.
pub fn run_args(
    host: &Host,
    args: &[String],
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    match cli::parse(args) {
        Ok(command) => dispatch(host, command, stdin, io),
        Err(e) => {
            let _ = writeln!(io.err, "{}\nstarina: error: {e}", cli::USAGE);
            ExitStatus::Usage
        }
    }
}

/// Runs a parsed command.
pub fn dispatch(
    host: &Host,
    command: Command,
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    match command {
        Command::Help => {
            let _ = writeln!(io.out, "{}", cli::USAGE);
            ExitStatus::Success
        }
        Command::Run(opts) => crate::run::run(host, &opts, io).status,
        Command::Exec(opts) => crate::exec::exec(host, &opts, stdin, io),
        Command::Test(opts) => crate::stages::test(host, &opts),
        Command::Bench(opts) => crate::bench::bench(host, &opts),
        Command::Profile(opts) => crate::profile::profile(host, &opts, io),
        Command::BuildKernel {
            clippy: true,
            cargo_args,
        } => match kernel::clippy(host, &cargo_args) {
            Ok(0) => ExitStatus::Success,
            Ok(_) => ExitStatus::Failed,
            Err(e) => {
                io.say(&format!("cannot run cargo: {e}"));
                ExitStatus::Failed
            }
        },
        Command::BuildKernel {
            clippy: false,
            cargo_args,
        } => build_kernel(host, &cargo_args, io),
        Command::Direct(opts) => crate::direct::direct(&opts),
        Command::Up(opts) => crate::instance_cmd::up(host, &opts, io),
        Command::Status(disk) => crate::instance_cmd::status(disk.as_deref(), io),
        Command::Down(disk) => crate::instance_cmd::down(disk.as_deref(), io),
        Command::Serve(opts) => crate::instance_server::serve(host, &opts),
        Command::Cp { disk, copy } => match copy_on_disk(host, &disk, &copy, io) {
            Ok(()) => ExitStatus::Success,
            Err(e) => {
                io.say(&e);
                ExitStatus::Failed
            }
        },
    }
}

/// `cp`: a copy into a missing image creates it first, as `run` would.
fn copy_on_disk(
    host: &Host,
    disk: &std::path::Path,
    copy: &crate::cp::Copy,
    io: &mut Streams,
) -> Result<(), String> {
    if matches!(copy, crate::cp::Copy::In { .. }) && !disk.exists() {
        // No Linux root: `run` or `up` with a Linux profile would have
        // given it one; a disk made for files only stays small.
        let opts = crate::disk::DiskOptions {
            path: Some(disk.to_path_buf()),
            ..crate::disk::DiskOptions::default()
        };
        crate::disk::prepare(host, &opts, &opts.linux_root, io)?;
    }
    crate::cp::copy(disk, copy)
}

/// `build-kernel`: progress on stderr, the image path on stdout.
fn build_kernel(host: &Host, cargo_args: &[String], io: &mut Streams) -> ExitStatus {
    let mut report = |line: &str| {
        let _ = writeln!(io.err, "{line}");
    };
    match kernel::build(host, cargo_args, Progress::Show, &mut report) {
        Ok(image) => {
            let _ = writeln!(io.out, "{}", image.display());
            ExitStatus::Success
        }
        Err(e) => {
            let _ = writeln!(io.err, "build-kernel: {e}");
            ExitStatus::Failed
        }
    }
}
