//! `scripts/starina exec -- sh -c SCRIPT` through the host tool's library,
//! for end-to-end tests that drive a script in Linux from the host (its
//! stdin a pipe the test writes to as it goes).

use std::io::Read;
use std::time::Instant;

use starina_host::exec::ExecOptions;
use starina_host::Streams;

use crate::host_with_env;
use crate::kernel;
use crate::TempDisk;
use crate::TEST_DISK_SIZE;

/// What `exec` returned: exit code, stdout, and stderr (the console log:
/// the runs are verbose).
pub type Outcome = (i32, String, String);

/// Runs `sh -c script` in Starina's Linux (profile `profile`, a fresh
/// disk, the native httpd at the host's `http_port`), with `stdin` as its
/// standard input, for at most `timeout_s` seconds (boot included).
pub fn exec_sh(
    profile: &str,
    script: &str,
    stdin: Box<dyn Read + Send>,
    http_port: u16,
    timeout_s: f64,
) -> Outcome {
    let disk = TempDisk::new().expect("a temporary directory");
    let mut opts = ExecOptions::new(&["sh", "-c", script]);
    opts.profile = profile.into();
    opts.build = false;
    opts.kernel = Some(kernel());
    opts.timeout = Some(timeout_s);
    opts.verbose = true;
    opts.disk.path = Some(disk.path());
    opts.disk.size = TEST_DISK_SIZE;
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut stdout,
        err: &mut stderr,
    };
    let start = Instant::now();
    let port = http_port.to_string();
    let host = host_with_env(&[("STARINA_HTTP_PORT", &port)]);
    let status = starina_host::exec::exec(&host, &opts, stdin, &mut io);
    println!(
        "exec ({:.1} s), exit {}",
        start.elapsed().as_secs_f64(),
        status.code()
    );
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs `argv` in Starina's Linux (profile `linux`) on `disk`, which the
/// test made (the exec creates none), with no input, for at most
/// `timeout_s` seconds; prints what it did (shown when a test fails).
pub fn exec_on_disk(argv: &[&str], disk: &std::path::Path, timeout_s: f64) -> Outcome {
    let start = Instant::now();
    let mut opts = ExecOptions::new(argv);
    opts.build = false;
    opts.kernel = Some(kernel());
    opts.timeout = Some(timeout_s);
    opts.verbose = true;
    opts.disk.path = Some(disk.to_path_buf());
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut stdout,
        err: &mut stderr,
    };
    let input = Box::new(std::io::empty());
    let status = starina_host::exec::exec(&host_with_env(&[]), &opts, input, &mut io);
    let (out, err) = (
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    );
    println!(
        "$ {} ... ({:.1} s), exit {}\n--- stdout:\n{out}\n--- stderr:\n{err}",
        argv[0],
        start.elapsed().as_secs_f64(),
        status.code()
    );
    (status.code(), out, err)
}
