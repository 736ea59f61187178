//! `starina up`, `status` and `down`: start a background instance
//! ([`crate::instance_server`]), show the ones that are up, stop one
//! (README.md, "A running instance").

use std::io::BufRead;
use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::time::Duration;
use std::time::Instant;

use regex::Regex;

use crate::boot::prepare_linux;
use crate::disk;
use crate::disk::DiskOptions;
use crate::host::Host;
use crate::host::Streams;
use crate::instance;
use crate::instance::fmt_uptime;
use crate::instance::Dir;
use crate::instance::Info;
use crate::instance::Request;
use crate::process::send_sigterm;
use crate::qemu::Machine;
use crate::status::ExitStatus;

/// The options of `starina up`.
#[derive(Clone, Debug)]
pub struct UpOptions {
    pub profile: String,
    pub machine: Machine,
    pub kvm: bool,
    pub build: bool,
    pub kernel: Option<PathBuf>,
    pub disk: DiskOptions,
    /// Seconds until Linux must be ready (default [`UP_TIMEOUT`]).
    pub timeout: Option<f64>,
    pub verbose: bool,
}

/// How long `up` waits for Linux by default.
pub const UP_TIMEOUT: f64 = 600.0;

impl UpOptions {
    pub fn new(profile: &str) -> UpOptions {
        UpOptions {
            profile: profile.into(),
            machine: Machine::Q35,
            kvm: false,
            build: true,
            kernel: None,
            disk: DiskOptions::default(),
            timeout: None,
            verbose: false,
        }
    }
}

/// `up`: builds what is needed, starts the instance's process and waits
/// until Linux is ready in it.
pub fn up(host: &Host, opts: &UpOptions, io: &mut Streams) -> ExitStatus {
    let image = opts.disk.image();
    if let Some(dir) = instance::find(&image) {
        io.say(&already_up(&dir, &image));
        return ExitStatus::Failed;
    }
    let quiet = !opts.verbose;
    let prepared = match prepare_linux(
        host,
        &opts.profile,
        opts.build,
        opts.kernel.as_deref(),
        quiet,
        "up",
        io,
    ) {
        Ok(p) => p,
        Err(status) => return status,
    };
    if let Err(e) = disk::for_profile(host, &prepared, &opts.disk, io) {
        io.say(&e);
        return ExitStatus::NotBooted;
    }
    let dir = Dir(instance::dir_for(&image));
    let mut server = match start_server(host, opts, &prepared.kernel, &image, &dir) {
        Ok(child) => child,
        Err(e) => {
            io.say(&e);
            return ExitStatus::NotBooted;
        }
    };
    io.say(&format!(
        "booting profile {} on {} in the background (disk {})",
        opts.profile,
        opts.machine.name(),
        image.display()
    ));
    wait_ready(host, opts, &dir, &mut server, io)
}

fn already_up(dir: &Dir, image: &Path) -> String {
    let who = match dir.read_info() {
        Some(i) => format!(
            " (pid {}, profile {}, up {})",
            i.pid,
            i.profile,
            fmt_uptime(i.uptime())
        ),
        None => String::new(),
    };
    format!(
        "an instance is already up on disk {}{who}: use it (scripts/starina exec), or stop it first (scripts/starina down{})",
        image.display(),
        disk_arg(image)
    )
}

/// ` --disk PATH` unless `image` is the default disk.
fn disk_arg(image: &Path) -> String {
    if instance::absolute(image) == instance::absolute(&disk::default_path()) {
        String::new()
    } else {
        format!(" --disk {}", image.display())
    }
}

/// The host tool's binary: this one, or (when a test runs the library)
/// the one `cargo build -p starina-host` makes.
fn starina_binary(host: &Host) -> Result<PathBuf, String> {
    let exe =
        std::env::current_exe().map_err(|e| format!("cannot find the starina binary: {e}"))?;
    if exe.file_name().is_some_and(|n| n == "starina") {
        return Ok(exe);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| host.root.join("target"));
    let built = target.join("debug/starina");
    if built.is_file() {
        return Ok(built);
    }
    Err(format!(
        "{} is missing: build the host tool (cargo build -p starina-host)",
        built.display()
    ))
}

/// Starts `starina instance-serve` in its own process group, its messages
/// in the instance's `server.log`.
fn start_server(
    host: &Host,
    opts: &UpOptions,
    kernel: &Path,
    image: &Path,
    dir: &Dir,
) -> Result<Child, String> {
    let exe = starina_binary(host)?;
    std::fs::create_dir_all(&dir.0).map_err(|e| format!("{}: {e}", dir.0.display()))?;
    let log = std::fs::File::create(dir.server_log())
        .map_err(|e| format!("{}: {e}", dir.server_log().display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    let timeout = opts.timeout.unwrap_or(UP_TIMEOUT).to_string();
    let mut cmd = Command::new(exe);
    cmd.arg("instance-serve")
        .arg("--dir")
        .arg(&dir.0)
        .args(["--profile", &opts.profile, "--machine", opts.machine.name()])
        .arg("--kernel")
        .arg(kernel)
        .arg("--disk")
        .arg(instance::absolute(image))
        .args(["--timeout", &timeout])
        .env("STARINA_HTTP_PORT", host.http_port.to_string())
        .envs(host.qemu_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if opts.kvm {
        cmd.arg("--kvm");
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd.spawn()
        .map_err(|e| format!("cannot start the instance's process: {e}"))
}

/// Waits until the instance says Linux is ready, its process ends, the
/// time is up or the user interrupts.
fn wait_ready(
    host: &Host,
    opts: &UpOptions,
    dir: &Dir,
    server: &mut Child,
    io: &mut Streams,
) -> ExitStatus {
    let timeout = opts.timeout.unwrap_or(UP_TIMEOUT);
    let start = Instant::now();
    loop {
        if let Some(info) = dir.read_info().filter(|i| i.state == "ready") {
            io.say(&format!(
                "up in {:.1} s: Linux is ready ({}); pid {}, http://127.0.0.1:{}/",
                start.elapsed().as_secs_f64(),
                info.linux,
                info.pid,
                info.http_port
            ));
            io.say(
                "run commands with scripts/starina exec -- CMD; stop it with scripts/starina down",
            );
            return ExitStatus::Success;
        }
        if let Ok(Some(s)) = server.try_wait() {
            io.say(&format!("the instance did not come up ({s}); its log:"));
            log_tail(&dir.server_log(), io);
            return ExitStatus::NotBooted;
        }
        let stop = host.stop.signal();
        if stop.is_some() || start.elapsed().as_secs_f64() > timeout {
            send_sigterm(server);
            let _ = server.wait();
            return match stop {
                Some(signal) => {
                    io.say("interrupted: the instance stopped");
                    ExitStatus::from_signal(signal)
                }
                None => {
                    io.say(&format!(
                        "Linux was not ready after {timeout} s; the instance stopped"
                    ));
                    log_tail(&dir.server_log(), io);
                    ExitStatus::Timeout
                }
            };
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The last 30 lines of `path`, on stderr.
fn log_tail(path: &Path, io: &mut Streams) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    for line in &lines[lines.len().saturating_sub(30)..] {
        io.err_bytes(format!("  {line}\n").as_bytes());
    }
}

/// `status`: the instances that are up (on `disk` only, if given).
pub fn status(disk: Option<&Path>, io: &mut Streams) -> ExitStatus {
    let dirs = match disk {
        Some(disk) => instance::find(disk).into_iter().collect(),
        None => instance::all(),
    };
    if dirs.is_empty() {
        let on = disk
            .map(|d| format!(" on disk {}", d.display()))
            .unwrap_or_default();
        io.say(&format!(
            "no Starina instance is up{on} (start one: scripts/starina up)"
        ));
        return ExitStatus::Failed;
    }
    for dir in dirs {
        let text = describe(&dir);
        let _ = io.out.write_all(text.as_bytes());
    }
    let _ = io.out.flush();
    ExitStatus::Success
}

/// What `status` prints for one instance.
fn describe(dir: &Dir) -> String {
    let (info, live) = match dir.query() {
        Some((info, live)) => (info, Some(live)),
        None => (dir.read_info().unwrap_or_default(), None),
    };
    let linux = match info.state.as_str() {
        "ready" => format!("ready ({})", info.linux),
        "" => "starting".to_string(),
        state => state.to_string(),
    };
    let components = match components(info.http_port) {
        Some(list) => format!("{list} (from /api/components)"),
        None => format!("{} (the profile's)", info.components.join(", ")),
    };
    let sessions = live.map_or("unknown".to_string(), |n| n.to_string());
    format!(
        "Starina instance (pid {})\n  profile:    {} on {}\n  disk:       {}\n  uptime:     {}\n  Linux:      {linux}\n  sessions:   {sessions} running\n  http:       http://127.0.0.1:{}/\n  components: {components}\n",
        info.pid,
        info.profile,
        info.machine,
        info.disk.display(),
        fmt_uptime(info.uptime()),
        info.http_port,
    )
}

/// `name (state), ...` from the OS's `/api/components`, if it answers.
fn components(port: u16) -> Option<String> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
    write!(
        s,
        "GET /api/components HTTP/1.1\r\nHost: starina\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut body = Vec::new();
    let _ = s.read_to_end(&mut body);
    parse_components(&String::from_utf8_lossy(&body))
}

fn parse_components(response: &str) -> Option<String> {
    let entry =
        Regex::new(r#"\{"name":"([^"]*)"[^}]*?"state":"([^"]*)""#).expect("a valid pattern");
    let list: Vec<String> = entry
        .captures_iter(response)
        .map(|m| match &m[2] {
            "running" => m[1].to_string(),
            state => format!("{} ({state})", &m[1]),
        })
        .collect();
    (!list.is_empty()).then(|| list.join(", "))
}

/// `down`: the instance on `disk` (or the only one up) syncs and stops.
pub fn down(disk: Option<&Path>, io: &mut Streams) -> ExitStatus {
    let dir = match which(disk) {
        Ok(dir) => dir,
        Err((status, msg)) => {
            io.say(&msg);
            return status;
        }
    };
    let info = dir.read_info().unwrap_or_default();
    let stream = match dir.connect(Request::Down) {
        Ok(s) => s,
        Err(e) => {
            io.say(&format!(
                "cannot reach the instance on {}: {e}",
                info.disk.display()
            ));
            return ExitStatus::Failed;
        }
    };
    for line in BufReader::new(stream).lines().map_while(Result::ok) {
        io.say(&line);
    }
    let start = Instant::now();
    while dir.held() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    if dir.held() {
        io.say(&format!("the instance (pid {}) is still running", info.pid));
        return ExitStatus::Failed;
    }
    io.say(&format!("the instance on {} is down", info.disk.display()));
    ExitStatus::Success
}

/// The instance `down` means: the one on `disk`; else the only one up,
/// or the one on the default disk.
fn which(disk: Option<&Path>) -> Result<Dir, (ExitStatus, String)> {
    if let Some(disk) = disk {
        return instance::find(disk).ok_or((
            ExitStatus::Failed,
            format!("no Starina instance is up on disk {}", disk.display()),
        ));
    }
    let mut all = instance::all();
    if all.len() == 1 {
        return Ok(all.remove(0));
    }
    if let Some(dir) = instance::find(&disk::default_path()) {
        return Ok(dir);
    }
    if all.is_empty() {
        return Err((ExitStatus::Failed, "no Starina instance is up".into()));
    }
    let disks: Vec<String> = all
        .iter()
        .filter_map(Dir::read_info)
        .map(|i: Info| i.disk.display().to_string())
        .collect();
    Err((
        ExitStatus::Usage,
        format!(
            "several instances are up: say which with --disk ({})",
            disks.join(", ")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_from_the_api() {
        let response = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n\
            [{\"name\":\"virtio_net\",\"restarts\":0,\"state\":\"running\"},\
            {\"name\":\"linux\",\"state\":\"starting\"}]";
        assert_eq!(
            parse_components(response).as_deref(),
            Some("virtio_net, linux (starting)")
        );
        assert_eq!(parse_components("HTTP/1.1 404 Not Found\r\n\r\n"), None);
    }

    #[test]
    fn nothing_up_is_a_failure() {
        let tmp = crate::exec::TempDir::new("starina-status-test").unwrap();
        let disk = tmp.0.join("none.img");
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        assert_eq!(status(Some(&disk), &mut io), ExitStatus::Failed);
        assert_eq!(down(Some(&disk), &mut io), ExitStatus::Failed);
        let said = String::from_utf8_lossy(&err);
        assert!(said.contains("no Starina instance is up on disk"), "{said}");
    }
}
