//! `starina exec`: boot Starina with the host link on a Unix socket, run one
//! command in its Linux through the process protocol (starina_bridge), and
//! exit with the command's status (README.md, "Running Linux programs").
//! When an instance is up on the disk (`starina up`), the command runs
//! there instead ([`crate::attach`]).

use std::io::Read;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::Spawn;
use starina_bridge::process::WinSize;
use starina_bridge::process::MAX_DATA_CHUNK;

use crate::boot::prepare_linux;
use crate::boot::LinkedBoot;
use crate::disk;
use crate::disk::DiskOptions;
use crate::forwards::HostForwards;
use crate::host::fmt_seconds;
use crate::host::shell_quote;
use crate::host::Host;
use crate::host::Streams;
use crate::link_stream::LinkListener;
use crate::link_stream::LinkStream;
use crate::process::forward_lines;
use crate::process::send_sigterm;
use crate::qemu;
use crate::qemu::Machine;
use crate::qemu::QemuConfig;
use crate::status::ExitStatus;
use crate::status::SIGINT;
use crate::terminal;

/// The process id of the one command `exec` runs.
const PROCESS_ID: u32 = 1;

/// The options of `starina exec`.
#[derive(Clone, Debug)]
pub struct ExecOptions {
    /// A profile that starts `linux` and `hostlink` (default `linux`).
    pub profile: String,
    pub machine: Machine,
    pub kvm: bool,
    /// `--smp N`: the machine's CPUs (QEMU's or Bochs').
    pub cpus: u8,
    /// Seconds.
    pub timeout: Option<f64>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// The guest user to run as (`--user`): a name from the guest's
    /// /etc/passwd, a uid or uid:gid; `None` is root.
    pub user: Option<String>,
    pub build: bool,
    pub kernel: Option<PathBuf>,
    pub verbose: bool,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// The disk image (profiles with the disk driver).
    pub disk: DiskOptions,
    /// `-t`: run on a pseudo-terminal (`crate::terminal`).
    pub tty: bool,
    /// `--size ROWSxCOLS`: the terminal's size when stdin is not one.
    pub size: Option<WinSize>,
    /// `--emulator bochs --cpu C`: boot under Bochs (profile `linux_smoke`
    /// by default; the link is COM2), never in a running instance.
    pub bochs: Option<crate::bochs::Cpu>,
}

impl ExecOptions {
    pub fn new(argv: &[&str]) -> ExecOptions {
        ExecOptions {
            profile: "linux".into(),
            machine: Machine::Q35,
            kvm: false,
            cpus: crate::qemu::DEFAULT_CPUS,
            timeout: None,
            env: Vec::new(),
            cwd: None,
            user: None,
            build: true,
            kernel: None,
            verbose: false,
            argv: argv.iter().map(|a| a.to_string()).collect(),
            disk: DiskOptions::default(),
            tty: false,
            size: None,
            bochs: None,
        }
    }

    /// The agent's request for process `id`. With `-t`: a terminal of the
    /// initial size (`--size`, the host terminal's, or 24x80) and `TERM`
    /// from the host unless `--env` sets it.
    pub fn spawn(&self, id: u32) -> Spawn {
        let bytes = |s: &String| s.as_bytes().to_vec();
        let mut env: Vec<(Vec<u8>, Vec<u8>)> =
            self.env.iter().map(|(k, v)| (bytes(k), bytes(v))).collect();
        let terminal = self.tty.then(|| terminal::initial_size(self.size));
        if self.tty && !self.env.iter().any(|(k, _)| k == "TERM") {
            env.push((b"TERM".to_vec(), terminal::term().into_bytes()));
        }
        Spawn {
            id,
            argv: self.argv.iter().map(bytes).collect(),
            env,
            cwd: self.cwd.as_ref().map(bytes),
            user: self.user.as_ref().map(bytes),
            terminal,
        }
    }
}

/// The command `shell` runs: in the user's home (or `/`), the user's login
/// shell from the guest's /etc/passwd, or bash, or `sh` (the initramfs's
/// busybox), with `-l`.
pub fn login_shell() -> Vec<String> {
    const SCRIPT: &str = r#"cd "$HOME" 2>/dev/null || cd /
s=$(awk -F: -v u="$(id -u)" '$3 == u { print $7; exit }' /etc/passwd 2>/dev/null)
case "$s" in */nologin|*/false) s= ;; esac
if [ -z "$s" ] || [ ! -x "$s" ]; then s=$(command -v bash || echo /bin/sh); fi
exec "$s" -l"#;
    ["/bin/sh", "-c", SCRIPT].map(String::from).to_vec()
}

/// What the threads around the session send to it.
pub(crate) enum Event {
    /// Bytes from the host link.
    Link(Vec<u8>),
    /// The host link closed.
    LinkEnd,
    /// A line QEMU wrote on stderr.
    QemuStderr(String),
    /// Serial console bytes, to copy to stderr (`-v`).
    Console(Vec<u8>),
    /// A message for the user (a host port forward).
    Say(String),
}

/// Boots, runs `opts.argv` with `stdin` as its input, and returns its status.
pub fn exec(
    host: &Host,
    opts: &ExecOptions,
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    // An instance up on this disk (`starina up`; without `--disk`, the
    // only one up) runs the command (instances run under QEMU).
    let instance = match opts.bochs {
        Some(_) => None,
        None => crate::instance::for_exec(opts.disk.path.as_deref()),
    };
    if let Some(dir) = instance {
        if opts.verbose {
            io.say(&format!("running in the instance at {}", dir.0.display()));
        }
        return crate::attach::exec(host, &dir, opts, stdin, io);
    }
    if opts.tty && terminal::stdin_is_terminal() {
        // Messages may come while the terminal is raw: lines need CR LF.
        let mut err = terminal::CrLf(&mut *io.err);
        let mut io = Streams {
            out: &mut *io.out,
            err: &mut err,
        };
        return boot(host, opts, stdin, &mut io);
    }
    boot(host, opts, stdin, io)
}

fn boot(
    host: &Host,
    opts: &ExecOptions,
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    match opts.bochs {
        Some(cpu) => crate::exec_bochs::boot_and_exec(host, opts, cpu, stdin, io),
        None => boot_and_exec(host, opts, stdin, io),
    }
}

/// `exec` with nothing up: boots, runs the command, stops QEMU.
fn boot_and_exec(
    host: &Host,
    opts: &ExecOptions,
    stdin: Box<dyn Read + Send>,
    io: &mut Streams,
) -> ExitStatus {
    let quiet = !opts.verbose;
    let prepared = match prepare_linux(
        host,
        &opts.profile,
        opts.build,
        opts.kernel.as_deref(),
        quiet,
        "exec",
        io,
    ) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let disk = match disk::for_profile(host, &prepared, &opts.disk, io) {
        Ok(disk) => disk,
        Err(e) => {
            io.say(&e);
            return ExitStatus::NotBooted;
        }
    };
    let tmp = match TempDir::new("starina-exec") {
        Ok(tmp) => tmp,
        Err(e) => {
            io.say(&format!("cannot make a temporary directory: {e}"));
            return ExitStatus::NotBooted;
        }
    };
    let mut boot = LinkedBoot::new(
        &prepared,
        opts.machine,
        &opts.profile,
        opts.kvm,
        host.http_port,
        &tmp.0,
        disk,
    );
    boot.config.cpus = opts.cpus;
    let mut session = ExecSession::new(io, opts, tmp.0.join("console.log"), "QEMU");
    session.forwards = boot.monitor.map(|m| HostForwards::new(m, host.http_port));
    let status = session.run(host, &boot.config, &boot.hostlink, stdin);
    drop(tmp);
    status
}

/// One command's run, from the emulator's start to the command's end.
pub(crate) struct ExecSession<'a, 'b> {
    io: &'a mut Streams<'b>,
    opts: &'a ExecOptions,
    console_log: PathBuf,
    /// Its name in messages: QEMU or Bochs.
    emulator: &'static str,
    interrupts: usize,
    link: Option<Arc<Mutex<LinkStream>>>,
    /// Given to the console's thread, which follows the console.
    forwards: Option<HostForwards>,
}

impl<'a, 'b> ExecSession<'a, 'b> {
    /// A session whose serial console goes to `console_log`.
    pub(crate) fn new(
        io: &'a mut Streams<'b>,
        opts: &'a ExecOptions,
        console_log: PathBuf,
        emulator: &'static str,
    ) -> ExecSession<'a, 'b> {
        ExecSession {
            io,
            opts,
            console_log,
            emulator,
            interrupts: 0,
            link: None,
            forwards: None,
        }
    }

    fn run(
        &mut self,
        host: &Host,
        config: &QemuConfig,
        socket: &Path,
        stdin: Box<dyn Read + Send>,
    ) -> ExitStatus {
        let listener =
            match UnixListener::bind(socket).and_then(|l| l.set_nonblocking(true).map(|_| l)) {
                Ok(l) => LinkListener::Unix(l),
                Err(e) => {
                    self.io
                        .say(&format!("cannot listen on {}: {e}", socket.display()));
                    return ExitStatus::NotBooted;
                }
            };
        let args = config.args(&qemu::serial_to_stdout());
        let mut cmd = match qemu::command(host, &args) {
            Ok(cmd) => cmd,
            Err((status, msg)) => {
                self.io.say(&msg);
                return status;
            }
        };
        if self.opts.verbose {
            self.io
                .say(&format!("running: {} {}", host.qemu, shell_quote(&args)));
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let start = Instant::now();
        let mut child = match qemu::spawn(&mut cmd, &host.qemu) {
            Ok(child) => child,
            Err((status, msg)) => {
                self.io.say(&msg);
                return status;
            }
        };
        let (tx, rx) = mpsc::channel();
        self.watch_qemu(&mut child, &tx);
        self.attach(host, &listener, &mut child, stdin, (tx, rx), start)
    }

    /// Waits for the emulator started at `start` to connect the host link,
    /// runs the command over it, and stops the emulator.
    pub(crate) fn attach(
        &mut self,
        host: &Host,
        listener: &LinkListener,
        child: &mut Child,
        stdin: Box<dyn Read + Send>,
        (tx, rx): (mpsc::Sender<Event>, mpsc::Receiver<Event>),
        start: Instant,
    ) -> ExitStatus {
        let deadline = self
            .opts
            .timeout
            .map(|t| start + Duration::from_secs_f64(t));
        let status = match self.connect(host, listener, child, &rx, deadline) {
            Ok(stream) => self.serve(host, stream, stdin, child, tx, &rx, deadline),
            Err(status) => status,
        };
        stop_qemu(child);
        status
    }

    /// Copies the serial console to the log (and to stderr with `-v`) and
    /// follows it for host port forwards, and QEMU's stderr to the session.
    fn watch_qemu(&mut self, child: &mut Child, tx: &mpsc::Sender<Event>) {
        let mut console = child.stdout.take().expect("piped stdout");
        let log = std::fs::File::create(&self.console_log);
        let verbose = self.opts.verbose;
        let console_tx = tx.clone();
        let mut lines = self.forwards.take().map(ConsoleLines::new);
        thread::spawn(move || {
            let Ok(mut log) = log else { return };
            let mut buf = vec![0u8; 65536];
            while let Ok(n @ 1..) = console.read(&mut buf) {
                let _ = log.write_all(&buf[..n]);
                if verbose {
                    let _ = console_tx.send(Event::Console(buf[..n].to_vec()));
                }
                if let Some(lines) = &mut lines {
                    lines.push(&buf[..n], &console_tx);
                }
            }
        });
        forward_lines(
            child.stderr.take().expect("piped stderr"),
            tx.clone(),
            Event::QemuStderr,
        );
    }

    /// Waits for the emulator to connect to the host link's socket.
    fn connect(
        &mut self,
        host: &Host,
        listener: &LinkListener,
        child: &mut Child,
        rx: &mpsc::Receiver<Event>,
        deadline: Option<Instant>,
    ) -> Result<LinkStream, ExitStatus> {
        loop {
            if let Ok(stream) = listener.accept() {
                return Ok(stream);
            }
            let events: Vec<Event> = rx.try_iter().collect();
            events.into_iter().for_each(|event| self.show(event));
            thread::sleep(Duration::from_millis(50));
            if let Ok(Some(s)) = child.try_wait() {
                let code = s.code().unwrap_or(-1);
                self.io.say(&format!(
                    "{} exited before connecting the host link (status {code})",
                    self.emulator
                ));
                return Err(ExitStatus::NotBooted);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                self.say_timeout();
                return Err(ExitStatus::Timeout);
            }
            if host.stop.signal().is_some() {
                self.io
                    .say(&format!("interrupted: {} stopped", self.emulator));
                return Err(ExitStatus::from_signal(
                    host.stop.signal().unwrap_or(SIGINT),
                ));
            }
        }
    }

    /// Messages that do not end the session.
    fn show(&mut self, event: Event) {
        match event {
            Event::QemuStderr(line) => self.io.err_bytes(format!("{line}\n").as_bytes()),
            Event::Console(data) => self.io.err_bytes(&data),
            Event::Say(msg) => self.io.say(&msg),
            Event::Link(_) | Event::LinkEnd => {}
        }
    }

    /// With `-v`, the console lines written before the command's end: the
    /// guest wrote them before its last frame, but they come by another
    /// thread and may be behind it in the queue. Waits until the console
    /// has been quiet for 50 ms (at most half a second).
    fn console_rest(&mut self, rx: &mpsc::Receiver<Event>) {
        if !self.opts.verbose {
            return;
        }
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Event::Console(data)) => self.io.err_bytes(&data),
                Ok(_) => {}
                Err(_) => return,
            }
        }
    }

    fn say_timeout(&mut self) {
        let secs = fmt_seconds(self.opts.timeout.unwrap_or_default());
        self.io.say(&format!("timed out after {secs} s"));
    }

    #[allow(clippy::too_many_arguments)]
    fn serve(
        &mut self,
        host: &Host,
        stream: LinkStream,
        stdin: Box<dyn Read + Send>,
        child: &mut Child,
        tx: mpsc::Sender<Event>,
        rx: &mpsc::Receiver<Event>,
        deadline: Option<Instant>,
    ) -> ExitStatus {
        if self.opts.verbose {
            let machine = match self.opts.bochs {
                Some(cpu) => format!("Bochs (cpu {})", cpu.model()),
                None => self.opts.machine.name().to_string(),
            };
            self.io.say(&format!(
                "booting {} on {machine}; running: {}",
                self.opts.profile,
                shell_quote(&self.opts.argv)
            ));
        }
        let reader = match stream.try_clone() {
            Ok(r) => r,
            Err(e) => {
                self.io.say(&format!("host link: {e}"));
                return ExitStatus::NoStatus;
            }
        };
        let link = Arc::new(Mutex::new(stream));
        self.link = Some(link.clone());
        if let Err(e) = send(&link, &Frame::Spawn(self.opts.spawn(PROCESS_ID))) {
            self.io.say(&format!("host link: {e}"));
            return ExitStatus::NoStatus;
        }
        // Raw mode and resizes until this returns (`-t`).
        let _terminal = match self.opts.tty {
            true => match start_terminal(&link, PROCESS_ID) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.io.say(&e);
                    return ExitStatus::NoStatus;
                }
            },
            false => None,
        };
        pump_stdin(stdin, link);
        read_link(reader, tx);
        let mut decoder = FrameDecoder::new();
        let mut seen_signals = 0;
        loop {
            let event = rx.recv_timeout(Duration::from_millis(200));
            let ended = match event {
                Ok(Event::Link(data)) => {
                    decoder.push(&data);
                    if let Some(status) = self.frames(&mut decoder) {
                        self.console_rest(rx);
                        return status;
                    }
                    false
                }
                Ok(Event::LinkEnd) => true,
                Ok(other) => {
                    self.show(other);
                    false
                }
                Err(mpsc::RecvTimeoutError::Timeout) => matches!(child.try_wait(), Ok(Some(_))),
                Err(mpsc::RecvTimeoutError::Disconnected) => true,
            };
            if ended {
                return self.stopped(host, child);
            }
            if deadline.is_some_and(|d| Instant::now() > d) {
                self.say_timeout();
                self.console_tail();
                return ExitStatus::Timeout;
            }
            while host.stop.count() > seen_signals {
                seen_signals += 1;
                self.on_signal(host, child);
            }
        }
    }

    /// The first Ctrl-C goes to the command as SIGINT; anything else stops
    /// QEMU. On a terminal (`-t`) Ctrl-C arrives as a key: a signal to the
    /// CLI stops QEMU.
    fn on_signal(&mut self, host: &Host, child: &mut Child) {
        self.interrupts += 1;
        let first_sigint =
            self.interrupts == 1 && host.stop.signal() == Some(SIGINT) && !self.opts.tty;
        match &self.link {
            Some(link) if first_sigint => {
                let _ = send(
                    link,
                    &Frame::Kill {
                        id: PROCESS_ID,
                        signal: SIGINT,
                    },
                );
            }
            _ => stop_qemu(child),
        }
    }

    /// The link closed (or QEMU exited) before the command's status came.
    fn stopped(&mut self, host: &Host, child: &mut Child) -> ExitStatus {
        if self.interrupts > 0 {
            self.io
                .say(&format!("interrupted: {} stopped", self.emulator));
            return ExitStatus::from_signal(host.stop.signal().unwrap_or(SIGINT));
        }
        let qemu = match child.try_wait() {
            Ok(Some(s)) => s.code().map_or("killed".to_string(), |c| c.to_string()),
            _ => "still running".to_string(),
        };
        self.io.say(&format!(
            "Starina stopped before the command finished ({} status {qemu})",
            self.emulator
        ));
        self.console_tail();
        ExitStatus::NoStatus
    }

    /// Handles the complete frames; the status once the command ended.
    fn frames(&mut self, decoder: &mut FrameDecoder) -> Option<ExitStatus> {
        while let Some(frame) = decoder.next() {
            let frame = match frame {
                Ok(frame) => frame,
                Err(e) => {
                    self.io.say(&format!("host link: {e}"));
                    return Some(ExitStatus::NoStatus);
                }
            };
            if frame.id() != PROCESS_ID {
                continue;
            }
            match frame {
                Frame::Stdout { data, .. } => {
                    let _ = self
                        .io
                        .out
                        .write_all(&data)
                        .and_then(|_| self.io.out.flush());
                }
                Frame::Stderr { data, .. } => self.io.err_bytes(&data),
                Frame::Exited { code, .. } => return Some(ExitStatus::from_exit(code)),
                Frame::Signaled { signal, .. } => return Some(ExitStatus::from_signal(signal)),
                Frame::SpawnFailed { errno, msg, .. } => {
                    self.io
                        .say(&format!("cannot run the command: {msg} (code {errno})"));
                    if self.opts.verbose {
                        self.console_tail();
                    }
                    return Some(ExitStatus::NoStatus);
                }
                _ => {}
            }
        }
        None
    }

    /// The console's last 40 lines, on stderr.
    fn console_tail(&mut self) {
        let Ok(data) = std::fs::read(&self.console_log) else {
            return;
        };
        let text = String::from_utf8_lossy(&data);
        let lines: Vec<&str> = text.lines().collect();
        let tail = &lines[lines.len().saturating_sub(40)..];
        let mut out = format!(
            "--- last {} console lines ({}):\n",
            tail.len(),
            self.console_log.display()
        );
        for line in tail {
            out.push_str(line.trim_end_matches('\r'));
            out.push('\n');
        }
        self.io.err_bytes(out.as_bytes());
    }
}

/// The console cut into lines for [`HostForwards`], whose messages go to
/// the session.
struct ConsoleLines {
    forwards: HostForwards,
    pending: Vec<u8>,
}

impl ConsoleLines {
    fn new(forwards: HostForwards) -> ConsoleLines {
        ConsoleLines {
            forwards,
            pending: Vec::new(),
        }
    }

    fn push(&mut self, data: &[u8], tx: &mpsc::Sender<Event>) {
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            if let Some(msg) = self.forwards.line(&String::from_utf8_lossy(&line)) {
                let _ = tx.send(Event::Say(msg));
            }
        }
    }
}

/// Sends one whole frame.
/// `-t`: the host terminal in raw mode, and its size changes sent to
/// process `id` over `link` as [`Frame::Resize`].
pub fn start_terminal<W: Write + Send + 'static>(
    link: &Arc<Mutex<W>>,
    id: u32,
) -> Result<terminal::Session, String> {
    let link = Arc::clone(link);
    terminal::Session::start(move |size| {
        let _ = send(&link, &Frame::Resize { id, size });
    })
}

fn send<W: Write>(link: &Mutex<W>, frame: &Frame) -> std::io::Result<()> {
    let bytes = frame
        .encode()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let mut stream = link.lock().unwrap_or_else(|e| e.into_inner());
    stream.write_all(&bytes)
}

/// A thread that sends `stdin` to the command, then closes its stdin.
fn pump_stdin(mut stdin: Box<dyn Read + Send>, link: Arc<Mutex<LinkStream>>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; MAX_DATA_CHUNK];
        while let Ok(n @ 1..) = stdin.read(&mut buf) {
            let data = buf[..n].to_vec();
            if send(
                &link,
                &Frame::Stdin {
                    id: PROCESS_ID,
                    data,
                },
            )
            .is_err()
            {
                return;
            }
        }
        let _ = send(&link, &Frame::StdinClose { id: PROCESS_ID });
    });
}

/// A thread that forwards what arrives on the host link.
fn read_link(mut stream: LinkStream, tx: mpsc::Sender<Event>) {
    thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        while let Ok(n @ 1..) = stream.read(&mut buf) {
            if tx.send(Event::Link(buf[..n].to_vec())).is_err() {
                return;
            }
        }
        let _ = tx.send(Event::LinkEnd);
    });
}

/// SIGTERM, then SIGKILL if QEMU is still there 3 s later.
pub fn stop_qemu(child: &mut Child) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    send_sigterm(child);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A fresh directory under the system's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// A new directory `<prefix>.<pid>.<n>.<nanos>` in the temporary
    /// directory: `n` counts this process's directories (the host tool
    /// runs inside test processes, several threads at once, where the pid
    /// and the clock alone collided), and a name some earlier process left
    /// behind (a reused pid) is skipped for the next.
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let mut tries = 0;
        loop {
            let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0);
            let name = format!("{prefix}.{}.{n}.{nanos:08x}", std::process::id());
            let dir = std::env::temp_dir().join(name);
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && tries < 100 => {
                    tries += 1
                }
                Err(e) => return Err(e),
            }
        }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The login shell script on this host: a login shell in $HOME, or in
    /// `/` when $HOME is not there.
    #[test]
    fn login_shell_starts_in_home() {
        let home = std::env::temp_dir().join(format!("starina-home-{}", std::process::id()));
        std::fs::create_dir_all(&home).unwrap();
        let run = |home: &Path| {
            let argv = login_shell();
            let mut child = std::process::Command::new(&argv[0])
                .args(&argv[1..])
                .env("HOME", home)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(b"echo \"at $(pwd)\"; exit 3\n").unwrap();
            drop(stdin);
            let out = child.wait_with_output().unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            )
        };
        let (code, out) = run(&home);
        assert_eq!(code, Some(3));
        assert!(out.ends_with(&format!("at {}\n", home.display())), "{out}");
        let (_, out) = run(&home.join("missing"));
        assert!(out.ends_with("at /\n"), "{out}");
        std::fs::remove_dir_all(&home).unwrap();
    }

    /// Console chunks cut anywhere still make whole lines, and the forwards'
    /// messages reach the session as `Event::Say`.
    #[test]
    fn console_lines_reach_the_forwards() {
        let tmp = TempDir::new("starina-exec-test").unwrap();
        let forwards = HostForwards::new(tmp.0.join("no-monitor.sock"), 8080);
        let mut lines = ConsoleLines::new(forwards);
        let (tx, rx) = mpsc::channel();
        let console = b"[ 1.0] INFO  linux: booted\r\n\
            [ 2.0] INFO  linux: net: forwarding TCP port 8080 to Linux (httpd (pid 9))\r\n\
            [ 3.0] INFO  linux: net: forwarding TCP port 8000 to Linux (p";
        for chunk in console.chunks(7) {
            lines.push(chunk, &tx);
        }
        let said: Vec<String> = rx
            .try_iter()
            .map(|event| match event {
                Event::Say(msg) => msg,
                _ => panic!("only messages are sent"),
            })
            .collect();
        assert_eq!(
            said,
            ["host port 8080 is in use (Starina's httpd): \
              Linux's port 8080 is reachable inside Starina only"]
        );
        // The last line is not whole yet: nothing for port 8000 until it is.
        lines.push(b"ython (pid 10))\n", &tx);
        let Ok(Event::Say(msg)) = rx.try_recv() else {
            panic!("no message for port 8000");
        };
        assert!(msg.starts_with("cannot reach QEMU's monitor"), "{msg}");
    }
}
