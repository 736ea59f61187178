//! Shutdown on request from inside the guest: PID 1's signals, as busybox's
//! `reboot` (SIGTERM), `halt` (SIGUSR1) and `poweroff` (SIGUSR2) send them,
//! or `kill -TERM 1`. The agent syncs, stops every process (SIGTERM, then
//! SIGKILL a second later), syncs again, remounts `/` read-only (a clean
//! root disk) and restarts or powers off the machine. Either ends the VM
//! for the linux server (without ACPI, Linux's power-off ends in PID 1's
//! exit, a panic, and `panic=1`'s reboot).

use std::io::Read;
use std::time::Duration;

use crate::log;
use crate::sys;

/// How long processes get between SIGTERM and SIGKILL.
const GRACE: Duration = Duration::from_secs(1);

/// What a signal to PID 1 asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Reboot,
    PowerOff,
}

/// The request a signal to PID 1 makes, busybox's convention.
pub fn request_for(signal: i32) -> Option<Request> {
    match signal {
        libc::SIGTERM => Some(Request::Reboot),
        libc::SIGUSR1 | libc::SIGUSR2 => Some(Request::PowerOff),
        _ => None,
    }
}

/// Starts the thread that waits for a shutdown signal (PID 1 only).
pub fn watch_signals() {
    let pipe = match sys::signal_pipe(&[libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2]) {
        Ok(pipe) => pipe,
        Err(e) => {
            log(&format!(
                "shutdown: cannot catch signals: {e}; reboot/poweroff will not work"
            ));
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("shutdown".into())
        .spawn(move || wait_and_shut_down(pipe));
    if let Err(e) = spawned {
        log(&format!("shutdown: cannot start its thread: {e}"));
    }
}

fn wait_and_shut_down(mut pipe: std::fs::File) {
    let mut byte = [0u8];
    loop {
        match pipe.read(&mut byte) {
            Ok(1) => {
                if let Some(request) = request_for(i32::from(byte[0])) {
                    shut_down(request);
                }
            }
            Ok(_) => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log(&format!("shutdown: signal pipe: {e}"));
                return;
            }
        }
    }
}

fn shut_down(request: Request) {
    log(&format!(
        "shutdown: {request:?} requested; syncing, stopping processes"
    ));
    // Synced first: what was written is on the disk even if the host ends
    // the VM during the grace period.
    sys::sync();
    let _ = sys::kill_all_processes(libc::SIGTERM);
    std::thread::sleep(GRACE);
    let _ = sys::kill_all_processes(libc::SIGKILL);
    sys::sync();
    if let Err(e) = sys::remount_root_read_only() {
        log(&format!(
            "shutdown: cannot remount / read-only: {e} (synced anyway)"
        ));
    }
    let command = match request {
        Request::Reboot => libc::RB_AUTOBOOT,
        Request::PowerOff => libc::RB_POWER_OFF,
    };
    if let Err(e) = sys::reboot(command) {
        log(&format!("shutdown: reboot(2): {e}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busybox_signals() {
        assert_eq!(request_for(libc::SIGTERM), Some(Request::Reboot));
        assert_eq!(request_for(libc::SIGUSR1), Some(Request::PowerOff));
        assert_eq!(request_for(libc::SIGUSR2), Some(Request::PowerOff));
        assert_eq!(request_for(libc::SIGHUP), None);
    }
}
