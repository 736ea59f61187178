//! The process behind `starina up`: detached from the terminal, it owns
//! QEMU and the host link for as long as the instance runs, multiplexes
//! clients onto the link ([`crate::mux`]), answers `status`, and on `down`
//! syncs the guest and stops QEMU. Its files are in its instance directory
//! ([`crate::instance`]); its own messages go to `server.log` there.

use std::io::Read;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Child;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use crate::boot::prepare;
use crate::boot::LinkedBoot;
use crate::boot::Prepared;
use crate::disk;
use crate::forwards::HostForwards;
use crate::host::Host;
use crate::host::Streams;
use crate::instance::now;
use crate::instance::Dir;
use crate::instance::Info;
use crate::instance::Request;
use crate::mux;
use crate::mux::Mux;
use crate::process::send_sigterm;
use crate::qemu;
use crate::qemu::Machine;
use crate::qemu::QemuConfig;
use crate::status::ExitStatus;

/// How long `down` waits for the guest's `sync`.
const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// What `down` runs in the guest: `sync` writes out Linux's own file
/// systems (the Debian root) and, through FUSE SYNCFS, the native one at
/// /mnt/starina (the fs server writes all it holds to the disk).
const SYNC: &str = "sync";
/// How long QEMU gets to flush and exit after SIGTERM before SIGKILL.
const QUIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The options `up` starts the server with (`starina instance-serve`).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub dir: PathBuf,
    pub profile: String,
    pub machine: Machine,
    pub kvm: bool,
    pub kernel: PathBuf,
    pub disk: PathBuf,
    /// Seconds Linux gets to become ready.
    pub ready_timeout: f64,
}

/// Runs the instance until `down`, a signal, or QEMU's end.
pub fn serve(host: &Host, opts: &ServeOptions) -> ExitStatus {
    let dir = Dir(opts.dir.clone());
    let _lock = match dir.lock() {
        Ok(Some(lock)) => lock,
        Ok(None) => {
            eprintln!(
                "starina: an instance is already up on {}",
                opts.disk.display()
            );
            return ExitStatus::Failed;
        }
        Err(e) => {
            eprintln!("starina: {}: {e}", dir.lock_path().display());
            return ExitStatus::NotBooted;
        }
    };
    let (mut out, mut err) = (std::io::stderr(), std::io::stderr());
    let mut io = Streams {
        out: &mut out,
        err: &mut err,
    };
    let prepared = match prepare(
        host,
        &opts.profile,
        false,
        Some(&opts.kernel),
        true,
        &mut io,
    ) {
        Ok(p) => p,
        Err(status) => return status,
    };
    let info = Info {
        pid: std::process::id(),
        profile: opts.profile.clone(),
        machine: opts.machine.name().into(),
        disk: opts.disk.clone(),
        http_port: host.http_port,
        started: now(),
        state: "booting".into(),
        linux: String::new(),
        components: prepared.components.clone(),
    };
    let server = Server {
        dir,
        info: Arc::new(Mutex::new(info)),
    };
    server.publish(|_| {});
    let status = server.run(host, opts, &prepared);
    if status.is_success() {
        let _ = std::fs::remove_dir_all(&server.dir.0);
    } else {
        server.publish(|i| i.state = "failed".into());
    }
    status
}

struct Server {
    dir: Dir,
    info: Arc<Mutex<Info>>,
}

impl Server {
    /// Changes the info and writes it out.
    fn publish(&self, change: impl FnOnce(&mut Info)) {
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut info);
        if let Err(e) = self.dir.write_info(&info) {
            eprintln!("starina: {}: {e}", self.dir.info_path().display());
        }
    }

    fn run(&self, host: &Host, opts: &ServeOptions, prepared: &Prepared) -> ExitStatus {
        let disk = prepared.has(disk::DRIVER).then(|| opts.disk.clone());
        let boot = LinkedBoot::new(
            prepared,
            opts.machine,
            &opts.profile,
            opts.kvm,
            host.http_port,
            &self.dir.0,
            disk,
        );
        let control = self.dir.control();
        let monitor = self.dir.0.join("monitor.sock");
        for socket in [&boot.hostlink, &control, &monitor] {
            let _ = std::fs::remove_file(socket);
        }
        let listener = match UnixListener::bind(&boot.hostlink) {
            Ok(l) => l,
            Err(e) => {
                let at = boot.hostlink.display();
                eprintln!("starina: cannot listen on {at}: {e}");
                return ExitStatus::NotBooted;
            }
        };
        let mut child = match self.start_qemu(host, &boot.config) {
            Ok(child) => child,
            Err(status) => return status,
        };
        let forwards = boot.monitor.map(|m| HostForwards::new(m, host.http_port));
        follow_console(&mut child, self.dir.console_log(), forwards);
        let status = match accept_link(&listener, &mut child) {
            Ok(link) => self.serve_link(host, opts, link, &control, &mut child),
            Err(status) => status,
        };
        stop_qemu(&mut child, QUIT_TIMEOUT);
        status
    }

    fn start_qemu(&self, host: &Host, config: &QemuConfig) -> Result<Child, ExitStatus> {
        let args = config.args(&qemu::serial_to_stdout());
        let mut cmd = qemu::command(host, &args).map_err(|(status, msg)| {
            eprintln!("starina: {msg}");
            status
        })?;
        eprintln!(
            "starina: running: {} {}",
            host.qemu,
            crate::host::shell_quote(&args)
        );
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        qemu::spawn(&mut cmd, &host.qemu).map_err(|(status, msg)| {
            eprintln!("starina: {msg}");
            status
        })
    }

    /// The link is up: clients are served; Linux is checked ready; then
    /// the server waits for `down`, a signal or QEMU's end.
    fn serve_link(
        &self,
        host: &Host,
        opts: &ServeOptions,
        link: UnixStream,
        control: &std::path::Path,
        child: &mut Child,
    ) -> ExitStatus {
        let writer = match link.try_clone() {
            Ok(w) => w,
            Err(e) => {
                eprintln!("starina: host link: {e}");
                return ExitStatus::NoStatus;
            }
        };
        let mux = Mux::new(Box::new(writer));
        let pump = mux.clone();
        thread::spawn(move || mux::pump_link(&pump, link));
        let (down_tx, down_rx) = mpsc::channel();
        if let Err(e) = self.listen(control, &mux, down_tx) {
            eprintln!("starina: cannot listen on {}: {e}", control.display());
            return ExitStatus::NotBooted;
        }
        match self.wait_ready(host, opts, &mux, child) {
            Some(Ok((code, out))) => {
                let linux = match String::from_utf8_lossy(&out).trim() {
                    version if code == 0 && !version.is_empty() => format!("Debian {version} root"),
                    _ => "initramfs".to_string(),
                };
                eprintln!("starina: Linux is ready ({linux})");
                self.publish(|i| {
                    i.state = "ready".into();
                    i.linux = linux;
                });
            }
            Some(Err(e)) => {
                eprintln!("starina: Linux did not become ready: {e}");
                return ExitStatus::NotBooted;
            }
            None => {
                eprintln!("starina: stopped while Linux was booting");
                return ExitStatus::NotBooted;
            }
        }
        loop {
            match down_rx.recv_timeout(Duration::from_millis(200)) {
                Ok(stream) => return self.down(&mux, child, Some(stream)),
                Err(mpsc::RecvTimeoutError::Disconnected) => return ExitStatus::Failed,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if host.stop.signal().is_some() {
                return self.down(&mux, child, None);
            }
            if let Ok(Some(s)) = child.try_wait() {
                eprintln!("starina: QEMU exited ({s}): the instance is down");
                return ExitStatus::NoStatus;
            }
        }
    }

    /// Runs a first command in Linux (which waits for it to boot); `None`
    /// if a signal came first.
    fn wait_ready(
        &self,
        host: &Host,
        opts: &ServeOptions,
        mux: &Arc<Mux>,
        child: &mut Child,
    ) -> Option<Result<(i32, Vec<u8>), String>> {
        let (tx, rx) = mpsc::channel();
        let (mux, timeout) = (mux.clone(), Duration::from_secs_f64(opts.ready_timeout));
        thread::spawn(move || {
            let _ = tx.send(mux.run(&["cat", "/etc/debian_version"], timeout));
        });
        loop {
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(result) => return Some(result),
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if host.stop.signal().is_some() {
                return None;
            }
            if let Ok(Some(s)) = child.try_wait() {
                return Some(Err(format!("QEMU exited ({s})")));
            }
        }
    }

    /// Accepts client connections on `control` (a thread each).
    fn listen(
        &self,
        control: &std::path::Path,
        mux: &Arc<Mux>,
        down: mpsc::Sender<UnixStream>,
    ) -> std::io::Result<()> {
        let listener = UnixListener::bind(control)?;
        let (mux, info) = (mux.clone(), self.info.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (mux, info, down) = (mux.clone(), info.clone(), down.clone());
                thread::spawn(move || client(stream, &mux, &info, &down));
            }
        });
        Ok(())
    }

    /// Syncs the guest, stops QEMU and tells `stream` as it goes.
    fn down(&self, mux: &Mux, child: &mut Child, mut stream: Option<UnixStream>) -> ExitStatus {
        let mut say = |line: &str| {
            eprintln!("starina: {line}");
            if let Some(s) = &mut stream {
                let _ = writeln!(s, "{line}");
            }
        };
        self.publish(|i| i.state = "stopping".into());
        say("syncing the guest's file systems");
        match mux.run(&["sh", "-c", SYNC], SYNC_TIMEOUT) {
            Ok((0, _)) => {}
            Ok((code, _)) => say(&format!("sync in the guest failed (status {code})")),
            Err(e) => say(&format!("sync in the guest failed: {e}")),
        }
        say("stopping QEMU");
        stop_qemu(child, QUIT_TIMEOUT);
        say("down");
        ExitStatus::Success
    }
}

/// One control connection: its first line says what it wants.
fn client(mut stream: UnixStream, mux: &Mux, info: &Mutex<Info>, down: &mpsc::Sender<UnixStream>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(request) = first_line(&mut stream).as_deref().and_then(Request::parse) else {
        let _ = writeln!(stream, "error: expected exec, status or down");
        return;
    };
    let _ = stream.set_read_timeout(None);
    match request {
        Request::Exec => mux::serve_client(mux, stream),
        Request::Status => {
            let text = info.lock().unwrap_or_else(|e| e.into_inner()).encode();
            let _ = writeln!(stream, "{text}live={}", mux.live());
        }
        Request::Down => {
            let _ = down.send(stream);
        }
    }
}

/// The connection's first line, read a byte at a time (frames follow it).
fn first_line(stream: &mut UnixStream) -> Option<String> {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.len() < 64 {
        match stream.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return String::from_utf8(line).ok(),
            Ok(1) => line.push(byte[0]),
            _ => return None,
        }
    }
    None
}

/// Waits (up to a minute) for QEMU to connect the host link.
fn accept_link(listener: &UnixListener, child: &mut Child) -> Result<UnixStream, ExitStatus> {
    let _ = listener.set_nonblocking(true);
    let start = Instant::now();
    loop {
        if let Ok((stream, _)) = listener.accept() {
            let _ = stream.set_nonblocking(false);
            return Ok(stream);
        }
        if let Ok(Some(s)) = child.try_wait() {
            eprintln!("starina: QEMU exited before connecting the host link ({s})");
            return Err(ExitStatus::NotBooted);
        }
        if start.elapsed() > Duration::from_secs(60) {
            eprintln!("starina: QEMU did not connect the host link within 60 s");
            return Err(ExitStatus::NotBooted);
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Copies the console to `log` and follows it for host port forwards.
fn follow_console(child: &mut Child, log: PathBuf, mut forwards: Option<HostForwards>) {
    let Some(mut console) = child.stdout.take() else {
        return;
    };
    thread::spawn(move || {
        let Ok(mut log) = std::fs::File::create(&log) else {
            return;
        };
        let mut buf = vec![0u8; 65536];
        let mut pending = Vec::new();
        while let Ok(n @ 1..) = console.read(&mut buf) {
            let _ = log.write_all(&buf[..n]);
            let Some(forwards) = &mut forwards else {
                continue;
            };
            pending.extend_from_slice(&buf[..n]);
            while let Some(at) = pending.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = pending.drain(..=at).collect();
                if let Some(msg) = forwards.line(&String::from_utf8_lossy(&line)) {
                    eprintln!("starina: {msg}");
                }
            }
        }
    });
}

/// SIGTERM (QEMU flushes its disks and exits), then SIGKILL after `grace`.
fn stop_qemu(child: &mut Child, grace: Duration) {
    if !matches!(child.try_wait(), Ok(None)) {
        return;
    }
    send_sigterm(child);
    let start = Instant::now();
    while start.elapsed() < grace {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "starina: QEMU did not exit {} s after SIGTERM: killed",
        grace.as_secs()
    );
    let _ = child.kill();
    let _ = child.wait();
}
