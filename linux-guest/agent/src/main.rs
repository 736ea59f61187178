//! The Starina guest agent: PID 1 of the Linux microVM.
//!
//! As PID 1 it switches root to the disk the kernel command line names
//! with `starina.root=/dev/vda` (`root.rs`; a failure is logged and the
//! guest stays on the initramfs), mounts /proc, /sys, /dev, /dev/pts,
//! /dev/shm, /tmp and /run, mounts the native file system when the kernel
//! command line has `starina.share=<tag>:<dir>` (virtio-fs; a failed mount is logged, not
//! fatal), brings the network up (`net.rs`: always `lo`; the first Ethernet
//! interface when the command line has `starina.net=<ip>/<prefix>,<gateway>`,
//! with a default route and /etc/resolv.conf naming the gateway; a bad or
//! missing value is logged, not fatal), sets a base environment, opens the
//! control channel `/dev/hvc0` (a virtio-console port) and serves the
//! process protocol of `starina_bridge::process` on it, reaping every zombie
//! on the way. With a network it also reports, as `Listening` frames, the
//! TCP and UDP ports guest programs listen on (`listeners.rs`), so that the
//! host can forward them. It prints `starina-agent: ready (Linux <release>)
//! tsc=<TSC>` on /dev/console when ready. Busybox's `reboot`, `halt` and
//! `poweroff` (signals to PID 1) sync the disks and end the VM
//! (`shutdown.rs`).
//!
//! It also serves native commands to Linux programs on
//! `/run/starina/native.sock` (`native.rs`), and called by the name
//! `starina` (the symlink `/usr/local/bin/starina`) it is the program that
//! asks for them: `starina CMD ARGS...` (`native_client.rs`).
//!
//! Other modes, for tests and debugging:
//! - `starina-guest-agent --stdio [--listeners] [--native-socket PATH]`:
//!   serve on stdin/stdout (no mounts), so the protocol and the process
//!   handling can be tested on the host; `--listeners` reports the host's
//!   own listeners on wildcard and loopback addresses, as the guest does
//!   its; `--native-socket` serves native commands on PATH.
//! - `starina-guest-agent --device PATH`: serve on a tty or other device.
//! - `starina-guest-agent --pipe-bench N`: a pipe ping-pong of N round trips
//!   between two processes, timed by the guest (`pipebench.rs`; `make
//!   bench` runs it as `/init --pipe-bench N`).
//! - `starina-guest-agent --spawn-bench N [PROGRAM]`: N runs of PROGRAM
//!   (`/bin/true`) by fork + exec + wait, timed by the guest
//!   (`spawnbench.rs`; `make bench` runs it as `/init --spawn-bench N`).
//! - `starina-guest-agent --flood SECONDS [SEED]`: a hostile guest program
//!   that makes the vCPU exit to the VMM as fast as it can (`flood.rs`; the
//!   reliability test runs it as `/init --flood N`).
//! - `starina-guest-agent --fs-probe DIR`: checks mmap, locks, O_APPEND,
//!   O_EXCL, fallocate, copy_file_range, inode numbers, owners and modes
//!   in DIR, one `probe <name> ok|FAILED` line each (`fsprobe.rs`; the
//!   linux_files e2e test runs it on /mnt/starina).
//! - `starina-guest-agent --net-probe HOST UDP_PORT TCP_PORT`: UDP echo,
//!   TCP half-close and a refused connect against the linux_net e2e
//!   test's servers (`netprobe.rs`); `--net-flood HOST` floods the NAT's
//!   flow tables; `--udp-echo PORT` is a UDP echo server (the forward
//!   test's).

mod flood;
mod fsprobe;
mod listeners;
mod native;
mod native_client;
mod net;
mod netif;
mod netprobe;
mod pipebench;
mod pty;
mod root;
mod server;
mod shutdown;
mod sockowner;
mod spawnbench;
mod stdin;
mod sys;
mod users;
mod xsetbv_probe;

use std::fs::File;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;
use std::time::Duration;
use std::time::Instant;

use server::PanicAction;

const CONTROL_DEVICE: &str = "/dev/hvc0";
const BASE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Where log lines go: /dev/console as PID 1, stderr otherwise.
static CONSOLE: OnceLock<Option<File>> = OnceLock::new();

/// Writes one line to the console, prefixed with `starina-agent: `.
pub fn log(msg: &str) {
    let line = format!("starina-agent: {msg}\n");
    match CONSOLE.get() {
        Some(Some(console)) => {
            let mut console: &File = console;
            let _ = console.write_all(line.as_bytes());
        }
        _ => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    // Called as `starina` (a symlink): a Linux program running a native
    // command.
    let mut args_os = std::env::args_os();
    let argv0 = args_os.next().unwrap_or_default();
    if std::process::id() != 1 && native_client::is_called(std::path::Path::new(&argv0)) {
        native_client::main(args_os.collect());
    }
    // As PID 1, arguments are kernel command line words the kernel did not
    // recognise (e.g. `nomodule`): not for us.
    if std::process::id() == 1 {
        run_as_init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match args.as_slice() {
        ["--stdio", rest @ ..] if stdio_options(rest).is_some() => {
            let _ = CONSOLE.set(None);
            let (listen, socket) = stdio_options(rest).unwrap_or_default();
            let watch = listen.then(|| listeners::Watch {
                guest: None,
                proc_root: "/proc".into(),
            });
            let result = server::serve(
                std::io::stdin(),
                std::io::stdout(),
                kernel_release(),
                PanicAction::Exit,
                watch,
                socket.map(std::path::Path::new),
            );
            if let Err(e) = result {
                log(&format!("control stream failed: {e}"));
                std::process::exit(1);
            }
        }
        ["--device", path] => {
            let _ = CONSOLE.set(None);
            let (input, output) = open_control(path).unwrap_or_else(|e| {
                log(&format!("cannot open {path}: {e}"));
                std::process::exit(1);
            });
            let release = kernel_release();
            if let Err(e) = server::serve(input, output, release, PanicAction::Exit, None, None) {
                log(&format!("control stream failed: {e}"));
                std::process::exit(1);
            }
        }
        ["--pipe-bench", rounds] => {
            let Ok(rounds) = rounds.parse::<u64>() else {
                eprintln!("starina-guest-agent: --pipe-bench wants a number of round trips");
                std::process::exit(2);
            };
            if let Err(e) = pipebench::run(rounds) {
                eprintln!("starina-guest-agent: pipe bench failed: {e}");
                std::process::exit(1);
            }
        }
        ["--spawn-bench", rounds, rest @ ..] if rest.len() <= 1 => {
            let Ok(rounds) = rounds.parse::<u64>() else {
                eprintln!("starina-guest-agent: --spawn-bench wants a number of runs");
                std::process::exit(2);
            };
            let program = rest.first().copied().unwrap_or("/bin/true");
            if let Err(e) = spawnbench::run(rounds, program) {
                eprintln!("starina-guest-agent: spawn bench failed: {e}");
                std::process::exit(1);
            }
        }
        ["--flood", seconds, rest @ ..] if rest.len() <= 1 => {
            let seconds = seconds.parse::<u64>();
            let seed = rest.first().map_or(Ok(0x5eed), |s| s.parse::<u64>());
            let (Ok(seconds), Ok(seed)) = (seconds, seed) else {
                eprintln!(
                    "starina-guest-agent: --flood wants SECONDS and an optional numeric SEED"
                );
                std::process::exit(2);
            };
            if let Err(e) = flood::run(seconds, seed) {
                eprintln!("starina-guest-agent: flood failed: {e}");
                std::process::exit(1);
            }
        }
        ["--fs-probe", dir] => std::process::exit(fsprobe::run(dir)),
        ["--net-probe", host, udp, tcp] => std::process::exit(netprobe::run(host, udp, tcp)),
        ["--net-flood", host] => std::process::exit(netprobe::flood(host)),
        ["--udp-echo", port] => std::process::exit(netprobe::echo_server(port)),
        ["--xsetbv-probe"] => xsetbv_probe::main(),
        ["--pipe-echo"] => {
            if let Err(e) = pipebench::echo() {
                eprintln!("starina-guest-agent: pipe echo failed: {e}");
                std::process::exit(1);
            }
        }
        _ => {
            eprintln!(
                "usage: starina-guest-agent            (as PID 1 in the Starina microVM)\n\
                 \x20      starina-guest-agent --stdio [--listeners] [--native-socket PATH]   (serve the protocol on stdin/stdout)\n\
                 \x20      starina COMMAND [ARG]...   (called `starina`: run a native command)\n\
                 \x20      starina-guest-agent --device PATH\n\
                 \x20      starina-guest-agent --pipe-bench N   (N pipe round trips, timed)\n\
                 \x20      starina-guest-agent --spawn-bench N [PROGRAM]   (N fork+exec+wait, timed)\n\
                 \x20      starina-guest-agent --flood SECONDS [SEED]   (VM exits as fast as it can)\n\
                 \x20      starina-guest-agent --fs-probe DIR   (POSIX corners of the fs at DIR)\n\
                 \x20      starina-guest-agent --net-probe HOST UDP_PORT TCP_PORT   (UDP echo, half-close, refused)\n\
                 \x20      starina-guest-agent --net-flood HOST   (1,000 UDP flows, 300 refused connects)\n\
                 \x20      starina-guest-agent --udp-echo PORT   (a UDP echo server)"
            );
            std::process::exit(2);
        }
    }
}

/// `--stdio`'s options: `--listeners`, `--native-socket PATH` (serve
/// native commands there); `None` if malformed.
fn stdio_options<'a>(mut rest: &[&'a str]) -> Option<(bool, Option<&'a str>)> {
    let (mut listen, mut socket) = (false, None);
    loop {
        match rest {
            [] => return Some((listen, socket)),
            ["--listeners", more @ ..] => (listen, rest) = (true, more),
            ["--native-socket", path, more @ ..] => (socket, rest) = (Some(*path), more),
            _ => return None,
        }
    }
}

/// Opens a control device for reading and writing, in raw mode if a tty.
fn open_control(path: &str) -> std::io::Result<(File, File)> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY)
        .open(path)?;
    // Not a tty (a pipe, a virtio-serial port): nothing to set.
    let _ = sys::make_raw(&file);
    let output = file.try_clone()?;
    Ok((file, output))
}

fn run_as_init() -> ! {
    mount_basics();
    let _ = CONSOLE.set(OpenOptions::new().write(true).open("/dev/console").ok());
    if root::switch_if_asked() {
        // The same mounts in the new root (the initramfs's stay behind it).
        mount_basics();
        root::copy_agent();
        root::link_starina();
    }
    mount_share();
    shutdown::watch_signals();
    let guest_address = net::configure();
    // Set before any thread exists; children inherit it.
    std::env::set_var("PATH", BASE_PATH);
    std::env::set_var("HOME", "/root");
    std::env::set_var("TERM", "linux");
    let _ = std::env::set_current_dir("/");

    let release = kernel_release();
    // virtio devices are probed before init runs, but be lenient.
    let start = Instant::now();
    let (input, output) = loop {
        match open_control(CONTROL_DEVICE) {
            Ok(pair) => break pair,
            Err(e) if start.elapsed() < Duration::from_secs(5) => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                // PID 1 must not exit (that panics the kernel); serve nothing
                // but keep reaping, and say why on the console.
                log(&format!(
                    "cannot open {CONTROL_DEVICE}: {e}; is there a virtconsole device?"
                ));
                loop {
                    let _ = sys::wait_any_child();
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    };
    // The TSC at ready: the end of `make bench`'s boot count (under
    // `-icount shift=0`, guest instructions since power-on; see
    // host/src/bench_linux.rs).
    log(&format!("ready (Linux {release}) tsc={}", sys::tsc()));
    let watch = guest_address.map(|guest| listeners::Watch {
        guest: Some(guest),
        proc_root: "/proc".into(),
    });
    let native = Some(std::path::Path::new(native::SOCKET));
    let result = server::serve(input, output, release, PanicAction::CrashKernel, watch, native);
    if let Err(e) = result {
        // The link is one byte stream for the VM's life, and its frame
        // boundaries are lost: the only fresh link is a fresh VM, which the
        // linux server boots when this one goes away.
        log(&format!("{e}; restarting the guest for a fresh link"));
        restart_guest();
    }
    // A tty does not report end of file; anything else is unexpected.
    log("control stream ended; idling");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

/// Ends the VM so that the host starts a new one: a reboot, or else a
/// kernel crash (both end this VM for the linux server). The root disk is
/// synced first.
fn restart_guest() -> ! {
    sys::sync();
    if let Err(e) = sys::reboot(libc::RB_AUTOBOOT) {
        log(&format!("reboot: {e}; crashing the kernel instead"));
    }
    server::crash_kernel()
}

/// The kernel command line's `starina.share=<tag>:<dir>`: the virtio-fs
/// tag to mount and where.
fn share_from_cmdline(cmdline: &str) -> Option<(&str, &str)> {
    let value = cmdline
        .split_whitespace()
        .find_map(|word| word.strip_prefix("starina.share="))?;
    let (tag, dir) = value.split_once(':')?;
    (!tag.is_empty() && dir.starts_with('/')).then_some((tag, dir))
}

/// Mounts the native file system (virtio-fs) where the command line says.
fn mount_share() {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let Some((tag, dir)) = share_from_cmdline(&cmdline) else {
        return;
    };
    let result = std::fs::create_dir_all(dir).and_then(|()| sys::mount(tag, dir, "virtiofs", None));
    match result {
        Ok(()) => log(&format!("mounted virtio-fs '{tag}' at {dir}")),
        Err(e) => log(&format!("cannot mount virtio-fs '{tag}' at {dir}: {e}")),
    }
}

fn mount_basics() {
    let mounts: [(&str, &str, &str, Option<&str>); 7] = [
        ("proc", "/proc", "proc", None),
        ("sysfs", "/sys", "sysfs", None),
        ("devtmpfs", "/dev", "devtmpfs", Some("mode=0755")),
        ("devpts", "/dev/pts", "devpts", Some("ptmxmode=0666")),
        ("tmpfs", "/dev/shm", "tmpfs", Some("mode=1777")),
        ("tmpfs", "/tmp", "tmpfs", Some("mode=1777")),
        ("tmpfs", "/run", "tmpfs", Some("mode=0755")),
    ];
    for (source, target, fstype, data) in mounts {
        let _ = std::fs::create_dir_all(target);
        match sys::mount(source, target, fstype, data) {
            Ok(()) => {}
            // Already mounted (e.g. CONFIG_DEVTMPFS_MOUNT with a root disk).
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            // No console yet: this goes to the kernel's initial console, if any.
            Err(e) => eprintln!("starina-agent: mount {target} ({fstype}): {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::share_from_cmdline;

    #[test]
    fn share_on_the_command_line() {
        let line = "console=ttyS0 quiet starina.share=starina:/mnt/starina panic=1\n";
        assert_eq!(share_from_cmdline(line), Some(("starina", "/mnt/starina")));
        assert_eq!(share_from_cmdline("console=ttyS0"), None);
        assert_eq!(share_from_cmdline("starina.share=starina"), None);
        assert_eq!(share_from_cmdline("starina.share=:/mnt"), None);
        assert_eq!(share_from_cmdline("starina.share=tag:relative"), None);
    }
}
