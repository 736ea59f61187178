//! The few Linux calls std does not offer. All of the agent's `unsafe` is here,
//! but for the hostile-guest flood's raw hardware access (`flood/hw.rs`) and
//! the file-system probe's calls (`fsprobe.rs`: mmap, locks, fallocate, ...)
//! and the network interface ioctls (`netif.rs`) and the terminal ioctls
//! (`pty.rs`).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::FromRawFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::AtomicI32;
use std::sync::atomic::Ordering;

fn cstring(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `mount(2)` with `MS_NOSUID`: the pseudo file systems and the share.
pub fn mount(source: &str, target: &str, fstype: &str, data: Option<&str>) -> io::Result<()> {
    mount_flags(source, target, fstype, libc::MS_NOSUID, data)
}

/// `mount(2)` with `flags` (`MS_*`).
pub fn mount_flags(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = cstring(source)?;
    let target = cstring(target)?;
    let fstype = cstring(fstype)?;
    let data = data.map(cstring).transpose()?;
    let data_ptr = data
        .as_ref()
        .map_or(std::ptr::null(), |d| d.as_ptr().cast::<libc::c_void>());
    // SAFETY: every pointer is either null (data) or a NUL-terminated string
    // that outlives the call; mount does not keep them.
    let ret = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            flags,
            data_ptr,
        )
    };
    check(ret).map(drop)
}

/// `mount(2)` with `MS_MOVE`: moves the mount at `from` (and everything
/// under it) to `to`.
pub fn move_mount(from: &str, to: &str) -> io::Result<()> {
    let from = cstring(from)?;
    let to = cstring(to)?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call;
    // MS_MOVE ignores the type and data pointers, which are null.
    let ret = unsafe {
        libc::mount(
            from.as_ptr(),
            to.as_ptr(),
            std::ptr::null(),
            libc::MS_MOVE,
            std::ptr::null(),
        )
    };
    check(ret).map(drop)
}

/// `umount2(2)` with no flags.
pub fn umount(target: &str) -> io::Result<()> {
    let target = cstring(target)?;
    // SAFETY: `target` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target.as_ptr(), 0) }).map(drop)
}

/// `chroot(2)`.
pub fn chroot(dir: &str) -> io::Result<()> {
    let dir = cstring(dir)?;
    // SAFETY: `dir` is a NUL-terminated string that outlives the call.
    check(unsafe { libc::chroot(dir.as_ptr()) }).map(drop)
}

/// `sync(2)`: writes every dirty buffer out (the root disk before the VM
/// goes down).
pub fn sync() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Waits until some child has terminated and returns its pid, leaving it a
/// zombie (`WNOWAIT`) so that the pid cannot be reused before [`reap`].
/// Fails with `ECHILD` when there are no children.
pub fn wait_any_child() -> io::Result<u32> {
    loop {
        // SAFETY: siginfo_t is plain old data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid, writable siginfo_t for the whole call.
        let ret = unsafe { libc::waitid(libc::P_ALL, 0, &mut info, libc::WEXITED | libc::WNOWAIT) };
        match check(ret) {
            // SAFETY: waitid succeeded with WEXITED, so the kernel filled in
            // the SIGCHLD fields of `info`, which si_pid reads.
            Ok(_) => return Ok(unsafe { info.si_pid() } as u32),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Collects the exit status of a terminated child, if it has one.
pub fn reap(pid: u32) -> io::Result<Option<ExitStatus>> {
    let mut status: libc::c_int = 0;
    // SAFETY: `status` is a valid, writable int for the whole call.
    let ret = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
    match check(ret)? {
        0 => Ok(None),
        _ => Ok(Some(ExitStatus::from_raw(status))),
    }
}

/// `kill(2)`.
pub fn kill(pid: u32, signal: i32) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::from_raw_os_error(libc::ESRCH))?;
    // SAFETY: kill takes plain integers; the caller makes sure `pid` is a live
    // (possibly zombie) child, so it names the intended process.
    check(unsafe { libc::kill(pid, signal) }).map(drop)
}

/// `reboot(2)` with `RB_AUTOBOOT` (restart) or `RB_POWER_OFF`: ends the
/// machine at once (PID 1 only). Returns only on failure. The caller
/// syncs first ([`sync`]).
pub fn reboot(command: libc::c_int) -> io::Result<()> {
    // SAFETY: reboot takes a plain integer command and touches no memory of
    // ours; the caller has synced the disks.
    check(unsafe { libc::reboot(command) }).map(drop)
}

/// Where [`on_signal`] writes the number of each signal it catches: the
/// write end of the pipe [`signal_pipe`] makes.
static SIGNAL_PIPE: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let byte = signal as u8;
    let fd = SIGNAL_PIPE.load(Ordering::Relaxed);
    // SAFETY: write is async-signal-safe; `byte` lives across the call and
    // `fd` is the pipe's write end, never closed (or -1: EBADF, harmless).
    unsafe { libc::write(fd, std::ptr::addr_of!(byte).cast::<libc::c_void>(), 1) };
}

/// Catches `signals`: each one caught becomes a byte (its number) to read
/// from the returned pipe. For PID 1, whom the kernel sends no signal it
/// has no handler for. Programs the agent starts get default handlers back
/// at exec.
pub fn signal_pipe(signals: &[libc::c_int]) -> io::Result<File> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid, writable array of two ints.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    SIGNAL_PIPE.store(fds[1], Ordering::Relaxed);
    for &signal in signals {
        // SAFETY: sigaction is plain old data; all-zero is a valid value
        // (an empty mask, no flags) before the handler is set.
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: `action` is a valid sigaction whose handler only makes an
        // async-signal-safe call; the old action is not wanted (null).
        check(unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) })?;
    }
    // SAFETY: fds[0] is the read end pipe2 just opened, owned by nobody else.
    Ok(unsafe { File::from_raw_fd(fds[0]) })
}

/// Ends this process by `signal`'s default action, as if it had never
/// been caught or ignored (so its parent sees the signal, e.g. SIGPIPE or
/// SIGINT); exit status 128 + `signal` should the signal not end it.
pub fn die_by_signal(signal: libc::c_int) -> ! {
    // SAFETY: setting a default disposition and raising a signal touch no
    // memory of ours.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
    std::process::exit(128 + signal)
}

/// `mount(2)` with `MS_REMOUNT | MS_RDONLY` of `/`: makes the root file
/// system clean before the machine ends.
pub fn remount_root_read_only() -> io::Result<()> {
    mount_flags(
        "none",
        "/",
        "none",
        libc::MS_REMOUNT | libc::MS_RDONLY,
        None,
    )
}

/// `kill(2)` of every process but PID 1 and ourselves (`kill(-1, ...)`).
pub fn kill_all_processes(signal: i32) -> io::Result<()> {
    // SAFETY: kill takes plain integers and touches no memory of ours.
    check(unsafe { libc::kill(-1, signal) }).map(drop)
}

/// Puts a terminal into raw mode: no echo, no line editing, no CR/LF
/// translation, no signals, 8-bit clean. The control channel is a tty
/// (`/dev/hvc0`) carrying binary frames.
pub fn make_raw(tty: &impl AsRawFd) -> io::Result<()> {
    let fd = tty.as_raw_fd();
    // SAFETY: termios is plain old data; all-zero is a valid value.
    let mut t: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor and `t` a valid, writable termios.
    check(unsafe { libc::tcgetattr(fd, &mut t) })?;
    // SAFETY: `t` is a valid termios filled in by tcgetattr.
    unsafe { libc::cfmakeraw(&mut t) };
    t.c_cc[libc::VMIN] = 1;
    t.c_cc[libc::VTIME] = 0;
    // SAFETY: `fd` is an open descriptor and `t` a valid termios.
    check(unsafe { libc::tcsetattr(fd, libc::TCSANOW, &t) }).map(drop)
}

/// `iopl(2)`: level 3 lets this process use `in`/`out` on every port
/// (root only). For `--flood` (`flood.rs`).
pub fn allow_port_io() -> io::Result<()> {
    // SAFETY: iopl takes a plain integer and touches no memory of ours.
    check(unsafe { libc::iopl(3) }).map(drop)
}

/// One port access of `width` bytes (1, 2 or 4; anything else is 4): a
/// write of `value`, or a read (returned). Needs [`allow_port_io`] first.
pub fn port_io(port: u16, width: u8, write: Option<u32>) -> u32 {
    // SAFETY: after iopl(3) port I/O from user mode is allowed (without it
    // the instruction raises SIGSEGV, a clean crash). It touches no memory
    // of ours; what it does to a device is the point of the caller (a guest
    // program hammering the VMM's emulated ports).
    unsafe {
        match (width, write) {
            (1, Some(v)) => core::arch::asm!("out dx, al", in("dx") port, in("al") v as u8),
            (2, Some(v)) => core::arch::asm!("out dx, ax", in("dx") port, in("ax") v as u16),
            (_, Some(v)) => core::arch::asm!("out dx, eax", in("dx") port, in("eax") v),
            (1, None) => {
                let v: u8;
                core::arch::asm!("in al, dx", in("dx") port, out("al") v);
                return v as u32;
            }
            (2, None) => {
                let v: u16;
                core::arch::asm!("in ax, dx", in("dx") port, out("ax") v);
                return v as u32;
            }
            (_, None) => {
                let v: u32;
                core::arch::asm!("in eax, dx", in("dx") port, out("eax") v);
                return v;
            }
        }
    }
    0
}

/// The time-stamp counter. Under QEMU's `-icount shift=0` it reads the
/// virtual clock in ns, one per instruction executed (by the whole machine:
/// under Starina that includes the host kernel and the VMM, whose TSC the
/// guest sees unchanged); `make bench` counts with it.
pub fn tsc() -> u64 {
    // SAFETY: rdtsc reads a counter and touches no memory (CR4.TSD is clear
    // in Linux, so user mode may use it).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Runs a loop of exactly `2 * iterations` instructions (`dec`, `jnz`), for
/// checking that the TSC counts instructions under `-icount`.
pub fn counted_loop(iterations: u64) {
    if iterations == 0 {
        return;
    }
    // SAFETY: the loop only counts a register down to zero; no memory, no
    // stack.
    unsafe {
        core::arch::asm!(
            "2:",
            "dec {n}",
            "jnz 2b",
            n = inout(reg) iterations => _,
            options(nomem, nostack),
        );
    }
}

/// The path and argv of a program, as C strings ready for `execv`.
pub struct ExecArgs {
    path: CString,
    argv: Vec<CString>,
}

impl ExecArgs {
    pub fn new(path: &str, argv: &[&str]) -> io::Result<ExecArgs> {
        Ok(ExecArgs {
            path: cstring(path)?,
            argv: argv.iter().map(|a| cstring(a)).collect::<io::Result<_>>()?,
        })
    }
}

/// `fork(2)`, `execv(2)` of `program` in the child, `waitpid(2)` for it:
/// the classic way a Unix shell runs a command. Returns its exit status.
pub fn fork_exec_wait(program: &ExecArgs) -> io::Result<ExitStatus> {
    // Built before fork: the child may only make async-signal-safe calls.
    let mut argv: Vec<*const libc::c_char> = program.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    // SAFETY: fork takes no arguments. The child below only calls execv and
    // _exit (async-signal-safe) on memory prepared before the fork.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        // SAFETY: `path` and every `argv` entry are NUL-terminated strings
        // that live until exec replaces the process; `argv` ends with null.
        unsafe {
            libc::execv(program.path.as_ptr(), argv.as_ptr());
            libc::_exit(127);
        }
    }
    let mut status: libc::c_int = 0;
    loop {
        // SAFETY: `status` is a valid, writable int for the whole call.
        match check(unsafe { libc::waitpid(pid, &mut status, 0) }) {
            Ok(_) => return Ok(ExitStatus::from_raw(status)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Runs the calling thread at real-time priority `priority` (SCHED_FIFO,
/// 1 to 99): it runs whenever it can, before every normal thread.
pub fn set_realtime(priority: i32) -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0
    // is the calling thread.
    check(unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) }).map(drop)
}
