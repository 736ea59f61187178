//! `starina run`: boot a profile under QEMU (or Bochs), stream the serial
//! console, and exit with the OS's own status (README.md, "Booting").

use std::io::Read;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use regex::Regex;

use crate::bochs;
use crate::bochs::BochsConfig;
use crate::boot::prepare;
use crate::boot::Prepared;
use crate::disk;
use crate::disk::DiskOptions;
use crate::exec::TempDir;
use crate::forwards::HostForwards;
use crate::grub::BootCd;
use crate::host::fmt_seconds;
use crate::host::shell_quote;
use crate::host::Host;
use crate::host::Streams;
use crate::markers;
use crate::process::forward_lines;
use crate::process::send_sigterm;
use crate::process::tail_file;
use crate::qemu;
use crate::qemu::HostLink;
use crate::qemu::Machine;
use crate::qemu::QemuConfig;
use crate::status::os_status;
use crate::status::ExitStatus;
use crate::status::QemuEnd;
use crate::status::SIGINT;
use crate::status::SIGPIPE;

/// What runs the OS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulator {
    Qemu,
    /// Bochs on a GRUB CD, with this CPU.
    Bochs(bochs::Cpu),
}

/// The options of `starina run`.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub profile: String,
    pub emulator: Emulator,
    pub machine: Machine,
    /// Seconds.
    pub timeout: Option<f64>,
    pub icount: bool,
    /// The guest's CPUs (`--smp`).
    pub cpus: u8,
    pub kvm: bool,
    /// Run the kernel build first (`--no-build` clears it).
    pub build: bool,
    /// Boot this image instead of the built one (implies no build).
    pub kernel: Option<PathBuf>,
    /// Regular expressions: stop once a console line matched each.
    pub until: Vec<String>,
    pub verbose: bool,
    /// Appended to the QEMU command line.
    pub qemu_args: Vec<String>,
    /// The disk image (profiles with the disk driver).
    pub disk: DiskOptions,
}

impl RunOptions {
    pub fn new(profile: &str) -> RunOptions {
        RunOptions {
            profile: profile.to_string(),
            emulator: Emulator::Qemu,
            machine: Machine::Q35,
            timeout: None,
            icount: false,
            cpus: crate::qemu::DEFAULT_CPUS,
            kvm: false,
            build: true,
            kernel: None,
            until: Vec::new(),
            verbose: false,
            qemu_args: Vec::new(),
            disk: DiskOptions::default(),
        }
    }
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    pub status: ExitStatus,
    /// Each `--until` pattern that matched, and when (from QEMU's start).
    pub matched: Vec<(String, Duration)>,
}

impl RunReport {
    fn status(status: ExitStatus) -> RunReport {
        RunReport {
            status,
            matched: Vec::new(),
        }
    }
}

/// Builds what is needed, boots, and reports (README.md, "Booting").
pub fn run(host: &Host, opts: &RunOptions, io: &mut Streams) -> RunReport {
    let until = match compile_patterns(&opts.until) {
        Ok(until) => until,
        Err(e) => {
            io.say(&e);
            return RunReport::status(ExitStatus::Usage);
        }
    };
    let prepared = match prepare(
        host,
        &opts.profile,
        opts.build,
        opts.kernel.as_deref(),
        false,
        io,
    ) {
        Ok(p) => p,
        Err(status) => return RunReport::status(status),
    };
    if let Emulator::Bochs(cpu) = opts.emulator {
        return run_bochs(host, opts, cpu, &prepared, until, io);
    }
    let disk = match disk::for_profile(host, &prepared, &opts.disk, io) {
        Ok(disk) => disk,
        Err(e) => {
            io.say(&e);
            return RunReport::status(ExitStatus::NotBooted);
        }
    };
    if let Some(dir) = disk.as_deref().and_then(crate::instance::find) {
        let pid = dir.read_info().map(|i| i.pid).unwrap_or(0);
        io.say(&format!(
            "an instance (pid {pid}) is up on this disk: use scripts/starina exec, or stop it first (scripts/starina down)"
        ));
        return RunReport::status(ExitStatus::NotBooted);
    }
    let interactive = host.interactive && opts.until.is_empty();
    // The monitor socket's directory, until QEMU has exited.
    let tmp = match TempDir::new("starina-run") {
        Ok(tmp) => tmp,
        Err(e) => {
            io.say(&format!("cannot make a temporary directory: {e}"));
            return RunReport::status(ExitStatus::NotBooted);
        }
    };
    let monitor = tmp.0.join("monitor.sock");
    let forwards = HostForwards::new(monitor.clone(), host.http_port);
    let config = qemu_config(host, opts, &prepared, disk, monitor);
    let serial = if interactive {
        qemu::serial_stdio()
    } else {
        qemu::serial_to_stdout()
    };
    let args = config.args(&serial);
    let mut cmd = match qemu::command(host, &args) {
        Ok(cmd) => cmd,
        Err((status, msg)) => {
            io.say(&msg);
            return RunReport::status(status);
        }
    };
    if opts.verbose {
        io.say(&format!("running: {} {}", host.qemu, shell_quote(&args)));
    }
    let how_to_stop = if interactive {
        "Ctrl-] x to stop; Ctrl-C goes to the guest"
    } else {
        "Ctrl-C to stop"
    };
    io.say(&format!(
        "booting profile {} on {} ({how_to_stop})",
        opts.profile,
        opts.machine.name()
    ));
    let mut session = Session::new(io, until, interactive, forwards);
    let report = session.boot(host, &mut cmd, opts.timeout);
    drop(tmp);
    report
}

/// `run --emulator bochs`: the GRUB CD, the bochsrc in a temporary
/// directory, and the console from the file Bochs writes COM1 to.
fn run_bochs(
    host: &Host,
    opts: &RunOptions,
    cpu: bochs::Cpu,
    prepared: &Prepared,
    until: Vec<(String, Regex)>,
    io: &mut Streams,
) -> RunReport {
    let cmdline = format!("profile={}", opts.profile);
    let cd = BootCd {
        kernel: &prepared.kernel,
        bootfs: prepared.bootfs.as_deref(),
        cmdline: &cmdline,
    };
    let mut report = |line: &str| {
        let _ = writeln!(io.err, "{line}");
    };
    let setup = cd.build(host, &mut report).and_then(|iso| {
        let tmp = TempDir::new("starina-bochs")
            .map_err(|e| format!("cannot make a temporary directory: {e}"))?;
        let files = BochsFiles::new(&tmp.0);
        let config = BochsConfig {
            cpu,
            cpus: opts.cpus,
            memory_mib: if prepared.bootfs.is_some() { 1024 } else { 512 },
            cdrom: iso,
            serial: files.serial.clone(),
            log: files.log.clone(),
            host_link_port: None,
        };
        let (rc, script) = config.write(&tmp.0)?;
        Ok((tmp, files, rc, script))
    });
    let (tmp, files, rc, script) = match setup {
        Ok(setup) => setup,
        Err(e) => {
            io.say(&e);
            return RunReport::status(ExitStatus::NotBooted);
        }
    };
    let mut cmd = match bochs::command(&rc, &script) {
        Ok(cmd) => cmd,
        Err((status, msg)) => {
            io.say(&msg);
            return RunReport::status(status);
        }
    };
    if opts.verbose {
        io.say(&format!("running: {cmd:?} (bochsrc {})", rc.display()));
    }
    io.say(&format!(
        "booting profile {} under Bochs (cpu {}) (Ctrl-C to stop)",
        opts.profile,
        cpu.model()
    ));
    let forwards = HostForwards::new(tmp.0.join("no-monitor.sock"), host.http_port);
    let mut session = Session::new(io, until, false, forwards);
    session.bochs = Some(files);
    let report = session.boot(host, &mut cmd, opts.timeout);
    drop(tmp);
    report
}

/// The files of a Bochs run: COM1's output, Bochs' log and its stderr.
struct BochsFiles {
    serial: PathBuf,
    log: PathBuf,
    stderr: PathBuf,
}

impl BochsFiles {
    fn new(dir: &Path) -> BochsFiles {
        BochsFiles {
            serial: dir.join("serial.txt"),
            log: dir.join("bochs.log"),
            stderr: dir.join("stderr.txt"),
        }
    }

    /// What Bochs said about a failed boot: its exit message (stderr) and
    /// the log's panics and errors.
    fn problems(&self) -> Vec<String> {
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let exit = stderr
            .lines()
            .skip_while(|l| !l.contains("Bochs is exiting"))
            .take(3)
            .map(str::to_string);
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let logged = bochs::log_problems(&log, 10)
            .into_iter()
            .map(str::to_string);
        exit.chain(logged).collect()
    }
}

/// `--until` patterns, compiled; an error names the bad one.
pub fn compile_patterns(patterns: &[String]) -> Result<Vec<(String, Regex)>, String> {
    patterns
        .iter()
        .map(|p| match Regex::new(p) {
            Ok(rx) => Ok((p.clone(), rx)),
            Err(e) => Err(format!("--until '{p}': {e}")),
        })
        .collect()
}

fn qemu_config(
    host: &Host,
    opts: &RunOptions,
    prepared: &Prepared,
    disk: Option<PathBuf>,
    monitor: PathBuf,
) -> QemuConfig {
    QemuConfig {
        machine: opts.machine,
        profile: opts.profile.clone(),
        kernel: prepared.kernel.clone(),
        kvm: opts.kvm,
        icount: opts.icount,
        cpus: opts.cpus,
        bootfs: prepared.bootfs.clone(),
        nic_port: Some(host.http_port),
        hostlink: if prepared.has("hostlink") {
            HostLink::Null
        } else {
            HostLink::None
        },
        disk,
        monitor: Some(monitor),
        extra: opts.qemu_args.clone(),
    }
}

/// What the reader threads send.
enum Event {
    Serial(Vec<u8>),
    Stderr(String),
}

/// One QEMU run: the console, the `--until` patterns, how it was stopped.
struct Session<'a, 'b> {
    io: &'a mut Streams<'b>,
    interactive: bool,
    until: Vec<(String, Regex)>,
    until_given: bool,
    matched: Vec<(String, Duration)>,
    pending: Vec<u8>,
    serial_bytes: usize,
    stdout_broken: bool,
    timed_out: bool,
    signal: Option<i32>,
    /// The console was quit with Ctrl-] x (interactive runs).
    quit_key: bool,
    error_lines: usize,
    held: Vec<String>,
    stop_sent: Option<Instant>,
    t0: Instant,
    /// Host port forwards for the Linux listeners the console announces.
    forwards: HostForwards,
    /// A Bochs run: the console comes from a file, Bochs' messages from others.
    bochs: Option<BochsFiles>,
    /// The code of the kernel's power off line (machines without isa-debug-exit).
    power_off: Option<u8>,
}

impl<'a, 'b> Session<'a, 'b> {
    fn new(
        io: &'a mut Streams<'b>,
        until: Vec<(String, Regex)>,
        interactive: bool,
        forwards: HostForwards,
    ) -> Self {
        Session {
            io,
            interactive,
            until_given: !until.is_empty(),
            until,
            matched: Vec::new(),
            pending: Vec::new(),
            serial_bytes: 0,
            stdout_broken: false,
            timed_out: false,
            signal: None,
            quit_key: false,
            error_lines: 0,
            held: Vec::new(),
            stop_sent: None,
            t0: Instant::now(),
            forwards,
            bochs: None,
            power_off: None,
        }
    }

    fn boot(&mut self, host: &Host, cmd: &mut Command, timeout: Option<f64>) -> RunReport {
        let _ = self.io.out.flush();
        let saved_tty = self.interactive.then(save_tty).flatten();
        if self.interactive {
            // The console still comes through us (`serial`): the host port
            // forwards follow it.
            cmd.stdin(Stdio::inherit()).stdout(Stdio::piped());
        } else {
            // Our own process group: only we stop QEMU, not the terminal's Ctrl-C.
            std::os::unix::process::CommandExt::process_group(cmd, 0);
            cmd.stdin(Stdio::null()).stdout(Stdio::piped());
        }
        cmd.stderr(Stdio::piped());
        if let Some(files) = &self.bochs {
            // Bochs' stdout is its banner and debugger; its stderr is read
            // only when the boot fails.
            cmd.stdout(Stdio::null());
            match std::fs::File::create(&files.stderr) {
                Ok(file) => cmd.stderr(file),
                Err(_) => cmd.stderr(Stdio::null()),
            };
        }
        self.t0 = Instant::now();
        let mut child = match qemu::spawn(cmd, &host.qemu) {
            Ok(child) => child,
            Err((status, msg)) => {
                self.io.say(&msg);
                return RunReport::status(status);
            }
        };
        let deadline = timeout.map(|t| self.t0 + Duration::from_secs_f64(t));
        self.pump(host, &mut child, deadline);
        let end = match child.wait() {
            Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
                (Some(code), _) => QemuEnd::Exited(code),
                (None, sig) => QemuEnd::Killed(sig.unwrap_or(0)),
            },
            Err(_) => QemuEnd::Killed(0),
        };
        if let Some(tty) = saved_tty {
            restore_tty(&tty);
        }
        let status = self.status(end, timeout);
        RunReport {
            status,
            matched: std::mem::take(&mut self.matched),
        }
    }

    /// Relays QEMU's output until both its streams close (Bochs': until
    /// it exits and its console file is read to the end).
    fn pump(&mut self, host: &Host, child: &mut Child, deadline: Option<Instant>) {
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = child.stdout.take() {
            read_chunks(stdout, tx.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            forward_lines(stderr, tx.clone(), Event::Stderr);
        }
        let exited = self
            .bochs
            .as_ref()
            .map(|files| tail_file(files.serial.clone(), tx.clone(), Event::Serial));
        drop(tx);
        loop {
            if let Some(exited) = &exited {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    exited.store(true, std::sync::atomic::Ordering::Relaxed);
                }
            }
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(Event::Serial(data)) => self.serial(child, &data),
                Ok(Event::Stderr(line)) => self.stderr(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if deadline.is_some_and(|d| Instant::now() >= d) && !self.timed_out {
                self.timed_out = true;
                self.stop(child);
            }
            if self.signal.is_none() {
                if let Some(signal) = host.stop.signal() {
                    self.signal = Some(signal);
                    self.stop(child);
                }
            }
            if self
                .stop_sent
                .is_some_and(|t| t.elapsed() > Duration::from_secs(3))
            {
                let _ = child.kill();
            }
        }
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.check_line(child, &line);
        }
    }

    /// Asks QEMU to stop (SIGTERM; SIGKILL 3 s later).
    fn stop(&mut self, child: &Child) {
        if self.stop_sent.is_none() {
            send_sigterm(child);
            self.stop_sent = Some(Instant::now());
        }
    }

    fn serial(&mut self, child: &Child, data: &[u8]) {
        self.serial_bytes += data.len();
        let written = self.stdout_broken
            || self
                .io
                .out
                .write_all(data)
                .and_then(|_| self.io.out.flush())
                .is_ok();
        if !written {
            // Nobody reads our output any more (e.g. `| head`): stop the OS.
            self.stdout_broken = true;
            self.stop(child);
        }
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            self.check_line(child, &line[..at]);
        }
    }

    fn check_line(&mut self, child: &Child, line: &[u8]) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\r', '\n']);
        if let Some(code) = markers::power_off_code(text) {
            self.power_off = Some(code);
        }
        if self.interactive && text.contains(qemu::QUIT_KEY_LINE) {
            self.quit_key = true;
        }
        if let Some(msg) = self.forwards.line(text) {
            self.io.say(&msg);
        }
        if self.until.is_empty() {
            return;
        }
        let elapsed = self.t0.elapsed();
        let (seen, remaining): (Vec<_>, Vec<_>) = std::mem::take(&mut self.until)
            .into_iter()
            .partition(|(_, rx)| rx.is_match(text));
        self.until = remaining;
        for (pattern, _) in seen {
            self.io.say(&format!(
                "matched '{pattern}' after {} ms",
                elapsed.as_millis()
            ));
            self.matched.push((pattern, elapsed));
        }
        if self.until.is_empty() {
            let emulator = self.emulator();
            self.io
                .say(&format!("all --until patterns seen: stopping {emulator}"));
            self.stop(child);
        }
    }

    fn stderr(&mut self, line: String) {
        if qemu::is_signal_line(&line) {
            // Shown at the end unless it was our own doing (Ctrl-C, timeout).
            self.held.push(line);
            return;
        }
        if qemu::is_error_line(&line) {
            self.error_lines += 1;
        }
        self.io.err_bytes(format!("{line}\n").as_bytes());
    }

    fn until_done(&self) -> bool {
        self.until_given && self.until.is_empty()
    }

    fn status(&mut self, end: QemuEnd, timeout: Option<f64>) -> ExitStatus {
        let ours = self.signal.is_some()
            || self.timed_out
            || self.until_done()
            || self.stdout_broken
            || self.quit_key;
        if !ours {
            for line in std::mem::take(&mut self.held) {
                self.io.err_bytes(format!("{line}\n").as_bytes());
            }
        }
        if let Some(signal) = self.signal {
            if self.interactive {
                self.io.err_bytes(b"\n");
            }
            self.io
                .say(&format!("interrupted: {} stopped", self.emulator()));
            return ExitStatus::from_signal(signal);
        }
        if self.stdout_broken {
            return ExitStatus::from_signal(SIGPIPE);
        }
        if self.quit_key {
            // The person at the console stopped it, as Ctrl-C did before.
            self.io.say("stopped with Ctrl-] x");
            return ExitStatus::from_signal(SIGINT);
        }
        if self.timed_out {
            let secs = fmt_seconds(timeout.unwrap_or_default());
            self.io.say(&format!("timed out after {secs} s"));
            return ExitStatus::Timeout;
        }
        if self.until_done() {
            return ExitStatus::Success;
        }
        self.os_status(end)
    }

    fn os_status(&mut self, end: QemuEnd) -> ExitStatus {
        if self.bochs.is_some() {
            return self.bochs_status(end);
        }
        let failed_to_start = self.error_lines > 0 || (!self.interactive && self.serial_bytes == 0);
        let status = os_status(end, failed_to_start);
        match (end, status) {
            (QemuEnd::Killed(sig), _) => self.io.say(&format!(
                "QEMU was killed by signal {sig} without the OS reporting a status"
            )),
            (_, ExitStatus::NotBooted) => {
                self.io.say("QEMU failed before the OS ran (status 1); see its messages above")
            }
            (QemuEnd::Exited(rc), ExitStatus::NoStatus) => self.io.say(&format!(
                "QEMU exited without the OS reporting a status: the kernel crashed or reset (QEMU status {rc})"
            )),
            (_, code) if !self.until.is_empty() => {
                let missed: Vec<String> = self.until.iter().map(|(p, _)| format!("'{p}'")).collect();
                self.io.say(&format!(
                    "the OS exited (code {code}) before printing: {}",
                    missed.join(", ")
                ));
                return ExitStatus::UntilMissed;
            }
            _ => {}
        }
        status
    }
}

impl Session<'_, '_> {
    fn emulator(&self) -> &'static str {
        if self.bochs.is_some() {
            "Bochs"
        } else {
            "QEMU"
        }
    }

    /// [`Session::os_status`] of a Bochs run: Bochs exits 1 after the
    /// OS's ACPI power off, so the status is the kernel's power off line.
    fn bochs_status(&mut self, end: QemuEnd) -> ExitStatus {
        let status = bochs::os_status(end, self.power_off, self.serial_bytes);
        if self.power_off.is_none() {
            let how = match end {
                QemuEnd::Exited(rc) => format!("exited with status {rc}"),
                QemuEnd::Killed(sig) => format!("was killed by signal {sig}"),
            };
            self.io.say(&format!("Bochs {how} without the OS reporting a status (a crash, a triple fault, or no boot); Bochs said:"));
            for line in self
                .bochs
                .as_ref()
                .map(BochsFiles::problems)
                .unwrap_or_default()
            {
                self.io.say(&format!("  {line}"));
            }
            return status;
        }
        if !self.until.is_empty() {
            let missed: Vec<String> = self.until.iter().map(|(p, _)| format!("'{p}'")).collect();
            self.io.say(&format!(
                "the OS exited (code {status}) before printing: {}",
                missed.join(", ")
            ));
            return ExitStatus::UntilMissed;
        }
        status
    }
}

/// A thread that sends what `stream` delivers, as it comes.
fn read_chunks(mut stream: impl Read + Send + 'static, tx: mpsc::Sender<Event>) {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if tx.send(Event::Serial(buf[..n].to_vec())).is_err() {
                return;
            }
        }
    });
}

/// The terminal's settings (`stty -g`), to restore after an interactive QEMU.
fn save_tty() -> Option<String> {
    let out = Command::new("stty")
        .arg("-g")
        .stdin(Stdio::inherit())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn restore_tty(settings: &str) {
    let _ = Command::new("stty")
        .arg(settings)
        .stdin(Stdio::inherit())
        .status();
}
