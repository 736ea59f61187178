//! Child processes: finding programs, streaming their output line by line,
//! asking them to stop.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;

/// `name` as `execvp` would find it: a path if it has a `/`, else in `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    let executable = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.contains('/') {
        let path = PathBuf::from(name);
        return path.exists().then_some(path);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}

/// Asks `child` to stop with SIGTERM (QEMU then shuts down cleanly and
/// restores the terminal). The standard library only sends SIGKILL.
pub fn send_sigterm(child: &Child) {
    let _ = Command::new("kill")
        .args(["-s", "TERM", &child.id().to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// One line of a child's output.
#[derive(Debug)]
pub enum Line {
    Out(String),
    Err(String),
}

/// Runs `cmd` (stdin from /dev/null), calls `on_line` for each line of its
/// stdout and stderr as they arrive, and returns its exit code (-1 if a
/// signal killed it).
pub fn run_lines(cmd: &mut Command, mut on_line: impl FnMut(Line)) -> std::io::Result<i32> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let (tx, rx) = mpsc::channel();
    let out = child.stdout.take().expect("piped");
    let err = child.stderr.take().expect("piped");
    let readers = [
        forward_lines(out, tx.clone(), Line::Out),
        forward_lines(err, tx, Line::Err),
    ];
    for line in rx {
        on_line(line);
    }
    for reader in readers {
        let _ = reader.join();
    }
    Ok(child.wait()?.code().unwrap_or(-1))
}

/// A thread that sends each line of `stream` (without its newline) to `tx`.
pub fn forward_lines<R: Read + Send + 'static, T: Send + 'static>(
    stream: R,
    tx: mpsc::Sender<T>,
    wrap: fn(String) -> T,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
            let text = String::from_utf8_lossy(&buf);
            let line = text.strip_suffix('\n').unwrap_or(&text).to_string();
            if tx.send(wrap(line)).is_err() {
                return;
            }
            buf.clear();
        }
    })
}

/// A thread that sends what is appended to the file at `path` (Bochs'
/// COM1), as `wrap(bytes)`, as it comes, until the returned flag is set
/// (Bochs exited) and the file is read to its end.
pub fn tail_file<E: Send + 'static>(
    path: PathBuf,
    tx: mpsc::Sender<E>,
    wrap: fn(Vec<u8>) -> E,
) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    let exited = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let done = exited.clone();
    thread::spawn(move || {
        let mut file = None;
        let mut buf = vec![0u8; 65536];
        loop {
            // Bochs makes the file at the first byte out.
            let last = done.load(std::sync::atomic::Ordering::Relaxed);
            if file.is_none() {
                file = std::fs::File::open(&path).ok();
            }
            let n = file.as_mut().map_or(0, |f| f.read(&mut buf).unwrap_or(0));
            if n > 0 {
                if tx.send(wrap(buf[..n].to_vec())).is_err() {
                    return;
                }
            } else if last {
                return;
            } else {
                thread::sleep(std::time::Duration::from_millis(20));
            }
        }
    });
    exited
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs() {
        assert!(find_program("sh").is_some());
        assert!(find_program("/bin/sh").is_some());
        assert!(find_program("no-such-program-here").is_none());
        assert!(find_program("/nonexistent/qemu").is_none());
    }

    #[test]
    fn streams_lines_and_the_status() {
        let mut lines = Vec::new();
        let code = run_lines(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            |l| lines.push(format!("{l:?}")),
        )
        .unwrap();
        assert_eq!(code, 3);
        lines.sort();
        assert_eq!(lines, ["Err(\"err\")", "Out(\"out\")"]);
    }
}
