//! `starina CMD ARGS...`: runs native command CMD from Linux, with this
//! program's stdin, stdout and stderr, and exits with its status. The agent
//! binary is this program when called by the name `starina` (a symlink).
//!
//! It connects to the agent's socket (`native.rs`; `STARINA_NATIVE_SOCKET`
//! overrides the path), sends the request and its stdin, and writes what
//! comes back. Arguments that are paths under the native file system's
//! mount (`/mnt/starina/www/index.html`) are given as the native side
//! names them (`/www/index.html`), and so is the working directory, as
//! `PWD`, when it is under the mount.
//!
//! SIGINT, SIGTERM and SIGHUP kill the command, and this program then dies
//! by the same signal. A stdout that is gone (EPIPE) kills it too, and this
//! program dies by SIGPIPE.

use std::io;
use std::io::Read;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::sync::Mutex;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::NativeSpawn;
use starina_bridge::process::MAX_DATA_CHUNK;

use crate::native::SOCKET;
use crate::sys;

/// Where the native file system is mounted when the command line does not
/// say.
const DEFAULT_MOUNT: &str = "/mnt/starina";
/// The status for a request that never reached a command.
const STATUS_NO_AGENT: i32 = 126;
/// The native status of a killed command (as by SIGKILL).
const STATUS_KILLED: i32 = 137;

pub fn main(args: Vec<std::ffi::OsString>) -> ! {
    let mount = mount_point();
    let request = match request(&args, &mount) {
        Ok(request) => request,
        Err(msg) => fail(2, &msg),
    };
    let path = std::env::var("STARINA_NATIVE_SOCKET").unwrap_or_else(|_| SOCKET.into());
    let stream = UnixStream::connect(&path).unwrap_or_else(|e| {
        fail(
            STATUS_NO_AGENT,
            &format!("cannot reach the agent at {path}: {e}"),
        )
    });
    let writer = match stream.try_clone() {
        Ok(writer) => Arc::new(Mutex::new(writer)),
        Err(e) => fail(
            STATUS_NO_AGENT,
            &format!("cannot use the agent's socket: {e}"),
        ),
    };
    if send(&writer, &Frame::NativeSpawn(request)).is_err() {
        // The agent refused the connection (its reason waits to be read)
        // or is gone (the read says so).
        receive(stream, &writer, &AtomicI32::new(0));
    }
    let caught = Arc::new(AtomicI32::new(0));
    watch_signals(&writer, &caught);
    let w = Arc::clone(&writer);
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || pump_stdin(&w));
    receive(stream, &writer, &caught)
}

/// Prints `starina: msg` and exits with `status`.
fn fail(status: i32, msg: &str) -> ! {
    eprintln!("starina: {msg}");
    std::process::exit(status)
}

fn usage() -> String {
    "usage: starina COMMAND [ARG]...\n\
     Runs native command COMMAND with this program's stdin, stdout and stderr, and exits with its status.\n\
     Paths under /mnt/starina are given as the native side names them."
        .into()
}

/// The mount point of the native file system: `starina.share=<tag>:<dir>`
/// on the kernel command line, as the agent mounts it.
fn mount_point() -> String {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    crate::share_from_cmdline(&cmdline)
        .map_or(DEFAULT_MOUNT, |(_, dir)| dir)
        .trim_end_matches('/')
        .to_string()
}

/// The request for `args` (this program's arguments after its name).
pub fn request(args: &[std::ffi::OsString], mount: &str) -> Result<NativeSpawn, String> {
    let mut argv = Vec::with_capacity(args.len());
    for (i, arg) in args.iter().enumerate() {
        let text = arg
            .to_str()
            .ok_or_else(|| format!("argument {} is not UTF-8", i + 1))?;
        argv.push(translate(text, mount).unwrap_or_else(|| text.to_string()));
    }
    match argv.first().map(String::as_str) {
        None | Some("--help") => return Err(usage()),
        Some(name) if name.starts_with('-') => {
            return Err(format!("'{name}' is not a command\n{}", usage()))
        }
        _ => {}
    }
    let mut vars = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        let cwd = cwd.as_os_str().as_bytes();
        if let Some(native) = std::str::from_utf8(cwd)
            .ok()
            .and_then(|c| translate(c, mount))
        {
            vars.push(("PWD".to_string(), native));
        }
    }
    Ok(NativeSpawn { id: 0, argv, vars })
}

/// `path` as the native side names it, if it is under `mount`.
pub fn translate(path: &str, mount: &str) -> Option<String> {
    let rest = path.strip_prefix(mount)?;
    if rest.is_empty() {
        return Some("/".into());
    }
    rest.starts_with('/').then(|| rest.to_string())
}

fn send(writer: &Mutex<UnixStream>, frame: &Frame) -> io::Result<()> {
    let bytes = frame
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut stream = writer.lock().unwrap_or_else(|e| e.into_inner());
    stream.write_all(&bytes)
}

/// Stdin to the command, then its end.
fn pump_stdin(writer: &Mutex<UnixStream>) {
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    let mut stdin = io::stdin().lock();
    loop {
        let frame = match stdin.read(&mut buf) {
            // A closed or unreadable stdin ends the same way.
            Ok(0) | Err(_) => Frame::NativeStdinClose { id: 0 },
            Ok(n) => Frame::NativeStdin {
                id: 0,
                data: buf[..n].to_vec(),
            },
        };
        let last = matches!(frame, Frame::NativeStdinClose { .. });
        if send(writer, &frame).is_err() || last {
            return;
        }
    }
}

/// SIGINT, SIGTERM and SIGHUP kill the command.
fn watch_signals(writer: &Arc<Mutex<UnixStream>>, caught: &Arc<AtomicI32>) {
    let signals = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];
    let mut pipe = match sys::signal_pipe(&signals) {
        Ok(pipe) => pipe,
        Err(e) => {
            return eprintln!("starina: cannot catch signals ({e}); Ctrl-C ends only this program")
        }
    };
    let (writer, caught) = (Arc::clone(writer), Arc::clone(caught));
    let _ = std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut byte = [0u8; 1];
            while let Ok(1) = pipe.read(&mut byte) {
                caught.store(i32::from(byte[0]), Ordering::Release);
                let _ = send(&writer, &Frame::NativeKill { id: 0 });
            }
        });
}

/// The agent's frames: output to our streams, then the status.
fn receive(mut stream: UnixStream, writer: &Mutex<UnixStream>, caught: &AtomicI32) -> ! {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    let (mut stdout, mut stderr) = (io::stdout().lock(), io::stderr().lock());
    loop {
        while let Some(result) = decoder.next() {
            match result {
                Ok(Frame::NativeStdout { data, .. }) => {
                    if stdout
                        .write_all(&data)
                        .and_then(|()| stdout.flush())
                        .is_err()
                    {
                        // Nobody reads our output: end the command, and die
                        // as a writer to a closed pipe does.
                        let _ = send(writer, &Frame::NativeKill { id: 0 });
                        sys::die_by_signal(libc::SIGPIPE);
                    }
                }
                Ok(Frame::NativeStderr { data, .. }) => {
                    let _ = stderr.write_all(&data);
                }
                Ok(Frame::NativeExited { status, .. }) => exit_with(status, caught),
                Ok(Frame::NativeSpawnFailed { status, reason, .. }) => {
                    let _ = stdout.flush();
                    fail(status, &reason)
                }
                Ok(other) => eprintln!("starina: ignoring {other:?} from the agent"),
                Err(e) if e.is_fatal() => {
                    fail(STATUS_NO_AGENT, &format!("the agent's stream broke: {e}"))
                }
                Err(e) => eprintln!("starina: bad frame from the agent: {e}"),
            }
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                exit_if_caught(caught);
                fail(STATUS_NO_AGENT, "the agent closed the connection");
            }
            Ok(n) => decoder.push(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => fail(STATUS_NO_AGENT, &format!("reading from the agent: {e}")),
        }
    }
}

/// The command ended: exit with its status, or, if a signal of ours
/// killed it, die by that signal.
fn exit_with(status: i32, caught: &AtomicI32) -> ! {
    let _ = io::stdout().flush();
    if status == STATUS_KILLED {
        exit_if_caught(caught);
    }
    std::process::exit(if (0..=255).contains(&status) {
        status
    } else {
        255
    })
}

fn exit_if_caught(caught: &AtomicI32) {
    let signal = caught.load(Ordering::Acquire);
    if signal != 0 {
        sys::die_by_signal(signal);
    }
}

/// Whether argv[0] names this program: `starina`, by its file name.
pub fn is_called(argv0: &Path) -> bool {
    argv0.file_name().is_some_and(|name| name == "starina")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_under_the_mount_are_translated() {
        let m = "/mnt/starina";
        assert_eq!(
            translate("/mnt/starina/www/index.html", m).as_deref(),
            Some("/www/index.html")
        );
        assert_eq!(translate("/mnt/starina", m).as_deref(), Some("/"));
        assert_eq!(translate("/mnt/starina/", m).as_deref(), Some("/"));
        assert_eq!(translate("/mnt/starinax/a", m), None);
        assert_eq!(translate("/tmp/x", m), None);
        assert_eq!(translate("www", m), None);
    }

    #[test]
    fn requests_translate_arguments_and_check_them() {
        let args = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
        let req = request(
            &args(&["cat", "/mnt/starina/a", "-n", "/etc/x"]),
            "/mnt/starina",
        )
        .unwrap();
        assert_eq!(req.argv, ["cat", "/a", "-n", "/etc/x"]);
        assert!(request(&args(&[]), "/mnt/starina")
            .unwrap_err()
            .starts_with("usage"));
        assert!(request(&args(&["--help"]), "/mnt/starina").is_err());
        let bad = std::ffi::OsString::from(std::ffi::OsStr::from_bytes(&[0xff]));
        let err = request(&[std::ffi::OsString::from("echo"), bad], "/m").unwrap_err();
        assert_eq!(err, "argument 2 is not UTF-8");
        assert!(is_called(Path::new("/usr/local/bin/starina")));
        assert!(!is_called(Path::new("/init")));
    }
}
