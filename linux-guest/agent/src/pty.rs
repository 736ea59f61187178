//! Pseudo-terminals for processes spawned with a terminal (the process
//! protocol's "Terminals"): open a pty pair, make the child a session
//! leader with the pty as its controlling terminal, set the window size.
//! The `unsafe` here is the ioctls and the `pre_exec` hook.

use std::fs::File;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::process::Stdio;

use starina_bridge::process::WinSize;

/// The end-of-file character a terminal's line discipline knows (Ctrl-D):
/// what a terminal process gets when the host closes its stdin.
pub const EOF_CHAR: u8 = 0x04;

/// A pty pair: the agent keeps `master`, the child gets `slave`.
pub struct Pty {
    pub master: File,
    pub slave: File,
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Opens a pty pair with the window size `size`.
pub fn open(size: WinSize) -> io::Result<Pty> {
    let open_master = |path: &str| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(path)
    };
    // /dev/ptmx, or the devpts instance's own (where /dev is not devtmpfs).
    let master = open_master("/dev/ptmx").or_else(|_| open_master("/dev/pts/ptmx"))?;
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from a valid pointer.
    check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) })?;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd.
    let fd = check(unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, flags) })?;
    // SAFETY: `fd` was just opened by the kernel and is owned by nobody else.
    let slave = unsafe { File::from_raw_fd(fd) };
    resize(&master, size)?;
    Ok(Pty { master, slave })
}

/// Sets the window size of the terminal whose master (or slave) is `fd`;
/// the kernel sends SIGWINCH to its foreground process group.
pub fn resize(fd: &File, size: WinSize) -> io::Result<()> {
    let ws = libc::winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) }).map(drop)
}

/// Runs `cmd` on the pty's slave: stdin, stdout and stderr are the slave,
/// and the child starts a new session whose controlling terminal it is.
pub fn attach(cmd: &mut Command, pty: &Pty) -> io::Result<()> {
    cmd.stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?));
    // SAFETY: the hook runs in the child between fork and exec and makes
    // only async-signal-safe calls (setsid, ioctl) on fd 0, which std has
    // already made the slave.
    unsafe {
        cmd.pre_exec(|| {
            check(libc::setsid())?;
            check(libc::ioctl(0, libc::TIOCSCTTY, 0)).map(drop)
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_sees_its_terminal_and_size() {
        let pty = open(WinSize::new(33, 101).unwrap()).unwrap();
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "stty size; tty -s && echo tty; cut -d' ' -f6 /proc/$$/stat",
        ]);
        attach(&mut cmd, &pty).unwrap();
        let mut child = cmd.spawn().unwrap();
        let Pty { mut master, slave } = pty;
        drop(slave);
        drop(cmd);
        let mut out = Vec::new();
        // Read until the slave is closed (EIO).
        let _ = io::Read::read_to_end(&mut master, &mut out);
        let status = child.wait().unwrap();
        let out = String::from_utf8_lossy(&out);
        assert!(status.success(), "{out}");
        assert!(out.contains("33 101"), "{out}");
        assert!(out.contains("tty"), "{out}");
        // The child leads its own session.
        let sid = child.id().to_string();
        assert!(out.lines().any(|l| l.trim() == sid), "{out} (pid {sid})");
    }

    #[test]
    fn resize_changes_the_size() {
        let pty = open(WinSize::new(24, 80).unwrap()).unwrap();
        resize(&pty.master, WinSize::new(50, 132).unwrap()).unwrap();
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize to a valid pointer.
        let ret = unsafe { libc::ioctl(pty.slave.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(ret, 0);
        assert_eq!((ws.ws_row, ws.ws_col), (50, 132));
    }
}
