//! `starina exec --emulator bochs`: the command runs in Linux booted under
//! Bochs, through the VMX or the SVM backend. Bochs has no virtio devices,
//! so the host link is the COM2 UART: Bochs connects it, as a TCP client,
//! to a port this process listens on (127.0.0.1 only), and the hostlink
//! driver speaks the same process protocol over it as over QEMU's
//! virtio-console. COM1, the console, goes to a file. At 115200 baud the
//! link carries about 11 KB a second: enough for commands and their
//! output, slow for bulk data.

use std::io::Read;
use std::net::TcpListener;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Instant;

use crate::bochs;
use crate::bochs::BochsConfig;
use crate::boot::prepare_linux;
use crate::exec::Event;
use crate::exec::ExecOptions;
use crate::exec::ExecSession;
use crate::exec::TempDir;
use crate::grub::BootCd;
use crate::host::Host;
use crate::host::Streams;
use crate::link_stream::LinkListener;
use crate::process::tail_file;
use crate::status::ExitStatus;

/// The profile `exec --emulator bochs` boots unless told otherwise.
pub const DEFAULT_PROFILE: &str = "linux_smoke";

/// Boots the profile under Bochs with `cpu`, runs the command, stops Bochs.
pub fn boot_and_exec(
    host: &Host,
    opts: &ExecOptions,
    cpu: bochs::Cpu,
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    let prepared = match prepare_linux(
        host,
        &opts.profile,
        opts.build,
        opts.kernel.as_deref(),
        !opts.verbose,
        "exec",
        io,
    ) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let cmdline = format!("profile={}", opts.profile);
    let cd = BootCd {
        kernel: &prepared.kernel,
        bootfs: prepared.bootfs.as_deref(),
        cmdline: &cmdline,
    };
    let verbose = opts.verbose;
    let mut report = |line: &str| {
        if verbose {
            eprintln!("{line}");
        }
    };
    let setup = cd.build(host, &mut report).and_then(|iso| {
        let tmp = TempDir::new("starina-exec-bochs")
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| format!("cannot listen on 127.0.0.1 for the host link: {e}"))?;
        let port = listener.local_addr().map_err(|e| format!("{e}"))?.port();
        let config = BochsConfig {
            cpu,
            cpus: opts.cpus,
            memory_mib: 1024,
            cdrom: iso,
            serial: tmp.0.join("console.log"),
            log: tmp.0.join("bochs.log"),
            host_link_port: Some(port),
        };
        let files = config.write(&tmp.0)?;
        Ok((tmp, files, LinkListener::Tcp(listener)))
    });
    let (tmp, (rc, script), listener) = match setup {
        Ok(setup) => setup,
        Err(e) => {
            io.say(&e);
            return ExitStatus::NotBooted;
        }
    };
    let mut cmd = match bochs::command(&rc, &script) {
        Ok(cmd) => cmd,
        Err((status, msg)) => {
            io.say(&msg);
            return status;
        }
    };
    if verbose {
        io.say(&format!("running: {cmd:?}"));
    }
    // Our own process group: only we stop Bochs, not the terminal's Ctrl-C.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let stderr = std::fs::File::create(tmp.0.join("stderr.txt"))
        .map(Stdio::from)
        .unwrap_or_else(|_| Stdio::null());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr);
    let start = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => {
            io.say(&format!("cannot start Bochs: {e}"));
            return ExitStatus::NotBooted;
        }
    };
    let (tx, rx) = mpsc::channel();
    let console = tmp.0.join("console.log");
    // With -v the console comes to stderr as it is written.
    let tailing = verbose.then(|| tail_file(console.clone(), tx.clone(), Event::Console));
    let status = ExecSession::new(io, opts, console, "Bochs").attach(
        host,
        &listener,
        &mut child,
        stdin,
        (tx, rx),
        start,
    );
    if let Some(flag) = tailing {
        flag.store(true, Ordering::Relaxed);
    }
    if status == ExitStatus::NotBooted || status == ExitStatus::NoStatus {
        let log = tmp.0.join("bochs.log");
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        for line in bochs::log_problems(&text, 10) {
            io.say(&format!("bochs: {line}"));
        }
    }
    drop(tmp);
    status
}
