//! The host side of `exec -t` and `shell`: the host terminal in raw mode
//! while the command runs (restored when the guard drops, on every way
//! out), its window size at the start and on every SIGWINCH.
//!
//! The terminal is driven with `stty` on the CLI's own stdin, so the host
//! crate needs no `unsafe` (termios and TIOCGWINSZ are C calls). When stdin
//! is not a terminal nothing changes mode, and the size is `--size` or
//! [`DEFAULT_SIZE`].

use std::io::IsTerminal;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::thread;

use signal_hook::consts::SIGWINCH;
use signal_hook::iterator::Handle;
use signal_hook::iterator::Signals;
use starina_bridge::process::WinSize;

/// The size of a terminal that cannot be asked (stdin is not a terminal).
pub const DEFAULT_SIZE: WinSize = WinSize { rows: 24, cols: 80 };
/// `TERM` for the guest when the host has none.
pub const DEFAULT_TERM: &str = "xterm-256color";

/// Whether the CLI's stdin is a terminal.
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// `stty ARGS` on the CLI's stdin; its output, if it succeeded.
fn stty(args: &[&str]) -> Option<String> {
    let out = Command::new("stty")
        .args(args)
        .stdin(Stdio::inherit())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Parses `stty size` output (`ROWS COLS`); absurd sizes are clamped, and a
/// terminal that reports 0x0 (a pty nobody sized) counts as unknown.
pub fn parse_stty_size(text: &str) -> Option<WinSize> {
    let mut words = text.split_whitespace();
    let rows: u32 = words.next()?.parse().ok()?;
    let cols: u32 = words.next()?.parse().ok()?;
    if words.next().is_some() || rows == 0 || cols == 0 {
        return None;
    }
    Some(WinSize::clamped(rows, cols))
}

/// The host terminal's size, if stdin is a terminal that knows it.
pub fn host_size() -> Option<WinSize> {
    if !stdin_is_terminal() {
        return None;
    }
    parse_stty_size(&stty(&["size"])?)
}

/// The size to start with: `--size`, else the host terminal's, else
/// [`DEFAULT_SIZE`].
pub fn initial_size(given: Option<WinSize>) -> WinSize {
    given.or_else(host_size).unwrap_or(DEFAULT_SIZE)
}

/// `TERM` for the guest: the host's, or [`DEFAULT_TERM`].
pub fn term() -> String {
    std::env::var("TERM")
        .ok()
        .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_graphic()))
        .unwrap_or_else(|| DEFAULT_TERM.to_string())
}

/// The host terminal in raw mode, no echo; dropping it restores the
/// settings it had.
pub struct RawMode {
    saved: String,
}

impl RawMode {
    /// Raw mode on stdin, if stdin is a terminal (`None` otherwise, or if
    /// `stty` cannot save or change its settings).
    pub fn enter() -> Option<RawMode> {
        if !stdin_is_terminal() {
            return None;
        }
        let saved = stty(&["-g"])?;
        stty(&["raw", "-echo"])?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        if stty(&[&self.saved]).is_none() {
            // Last resort: the usual cooked settings.
            let _ = stty(&["sane"]);
        }
    }
}

/// Calls `on_resize` with the host terminal's new size on every SIGWINCH,
/// from a thread of its own, until dropped.
pub struct ResizeWatch {
    handle: Handle,
}

impl ResizeWatch {
    pub fn start(mut on_resize: impl FnMut(WinSize) + Send + 'static) -> std::io::Result<Self> {
        let mut signals = Signals::new([SIGWINCH])?;
        let handle = signals.handle();
        thread::Builder::new()
            .name("sigwinch".into())
            .spawn(move || {
                for _ in signals.forever() {
                    if let Some(size) = host_size() {
                        on_resize(size);
                    }
                }
            })?;
        Ok(ResizeWatch { handle })
    }
}

impl Drop for ResizeWatch {
    fn drop(&mut self) {
        self.handle.close();
    }
}

/// What a terminal session holds while the command runs: raw mode (if
/// stdin is a terminal) and the resize watch. Drop it before printing
/// anything for the user, so that lines end where they should.
pub struct Session {
    // Dropped in this order: stop following resizes, then restore.
    _watch: Option<ResizeWatch>,
    _raw: Option<RawMode>,
}

impl Session {
    /// Whether the host terminal is in raw mode (then lines written to it
    /// need a carriage return: see [`CrLf`]).
    pub fn is_raw(&self) -> bool {
        self._raw.is_some()
    }

    /// Puts the host terminal in raw mode and follows its size through
    /// `on_resize`. Fails only if the signal cannot be watched.
    pub fn start(on_resize: impl FnMut(WinSize) + Send + 'static) -> Result<Session, String> {
        let watch = match stdin_is_terminal() {
            true => Some(
                ResizeWatch::start(on_resize)
                    .map_err(|e| format!("cannot watch the window size: {e}"))?,
            ),
            false => None,
        };
        Ok(Session {
            _watch: watch,
            _raw: RawMode::enter(),
        })
    }
}

/// A writer that ends lines with CR LF, for messages to a terminal in raw
/// mode (which moves down a line on LF without going back to column 0).
pub struct CrLf<W: Write>(pub W);

impl<W: Write> Write for CrLf<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.0.write_all(b"\r\n")?;
            }
            self.0.write_all(line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stty_sizes() {
        assert_eq!(parse_stty_size("24 80\n"), WinSize::new(24, 80));
        assert_eq!(parse_stty_size("50 132"), WinSize::new(50, 132));
        assert_eq!(parse_stty_size("0 0"), None);
        assert_eq!(parse_stty_size("24"), None);
        assert_eq!(parse_stty_size("24 80 1"), None);
        assert_eq!(parse_stty_size("a b"), None);
        assert_eq!(parse_stty_size("99999 5"), WinSize::new(4096, 5));
    }

    #[test]
    fn crlf_lines() {
        let mut out = CrLf(Vec::new());
        write!(out, "starina: one\ntwo\n").unwrap();
        assert_eq!(out.0, b"starina: one\r\ntwo\r\n");
    }

    #[test]
    fn the_initial_size_prefers_the_option() {
        let given = WinSize::new(10, 20);
        assert_eq!(initial_size(given), given.unwrap());
    }
}
