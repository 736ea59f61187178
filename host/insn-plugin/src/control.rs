//! The plugin's state, shared by QEMU's vCPU threads and the control
//! socket's thread, and the socket's commands: `reset` zeroes the counts;
//! `dump` stops counting and writes them to the output file. Each command
//! is a line; each answer a line, `ok` or `error: ...`.

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::MutexGuard;

use crate::shadow::Profile;

pub struct State {
    pub profile: Profile,
    /// After a dump nothing more is counted, so QEMU's exit does not
    /// overwrite the window the host asked for.
    pub frozen: bool,
    pub out: PathBuf,
}

pub static STATE: Mutex<Option<State>> = Mutex::new(None);

pub fn state() -> MutexGuard<'static, Option<State>> {
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Writes the counts to the output file and stops counting (once).
pub fn dump() -> Result<(), String> {
    let mut guard = state();
    let Some(s) = guard.as_mut() else {
        return Err("the plugin is not installed".into());
    };
    if s.frozen {
        return Ok(());
    }
    s.frozen = true;
    let file = std::fs::File::create(&s.out)
        .map_err(|e| format!("cannot create {}: {e}", s.out.display()))?;
    let mut out = std::io::BufWriter::new(file);
    s.profile
        .dump(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write {}: {e}", s.out.display()))
}

fn command(line: &str) -> Result<(), String> {
    match line.trim() {
        "reset" => {
            if let Some(s) = state().as_mut() {
                s.profile.reset();
            }
            Ok(())
        }
        "dump" => dump(),
        other => Err(format!("unknown command '{other}' (reset, dump)")),
    }
}

fn serve(stream: UnixStream) {
    let Ok(mut reply) = stream.try_clone() else {
        return;
    };
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { return };
        let answer = match command(&line) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        if writeln!(reply, "{answer}").is_err() {
            return;
        }
    }
}

/// Listens on `path` (replacing a stale socket) in a thread of its own.
pub fn listen(path: &str) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::thread::Builder::new()
        .name("starina-profile-ctl".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                serve(stream);
            }
        })?;
    Ok(())
}
