//! `starina profile` (sampler `insn`, the default): boots the profile with
//! the instruction-counting QEMU plugin (host/insn-plugin), zeroes its
//! counts once the kernel is ready (and `--skip` seconds more), lets the
//! guest run `--seconds`, has the plugin write its counts, and names them
//! with the kernel's symbols. Writes under `target/profile/`:
//!
//! - `<profile>-functions.txt`: per function, self and inclusive
//!   instructions and calls (the top ones are printed too);
//! - `<profile>.folded`: the stacks, `caller;callee instructions` a line;
//! - `<profile>.svg`: the flame graph of those stacks;
//! - `<profile>.counts`: the plugin's raw counts (addresses).

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Stdio;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use crate::host::Host;
use crate::host::Streams;
use crate::insn_counts::RawCounts;
use crate::insn_counts::Report;
use crate::profile::Boot;
use crate::profile::ProfileOptions;
use crate::status::ExitStatus;

/// Where the plugin is built (its own target directory: a release build
/// of a small crate, kept apart from the host tool's).
const PLUGIN_TARGET_DIR: &str = "target/plugin";
const PLUGIN_FILE: &str = "release/libstarina_insn_plugin.so";
/// Where the results go, relative to the repository.
pub const OUT_DIR: &str = "target/profile";

/// Builds the plugin; returns the shared object's path.
fn build_plugin(host: &Host) -> Result<PathBuf, String> {
    let out = Command::new("cargo")
        .args(["build", "-q", "--release", "-p", "starina-insn-plugin"])
        .args(["--target-dir", PLUGIN_TARGET_DIR])
        .current_dir(&host.root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building the plugin failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(host.root.join(PLUGIN_TARGET_DIR).join(PLUGIN_FILE))
}

/// The plugin's control socket: one command a line, `ok` or an error back.
struct Control {
    stream: UnixStream,
    replies: BufReader<UnixStream>,
}

impl Control {
    fn connect(path: &Path) -> Result<Control, String> {
        let stream = UnixStream::connect(path)
            .map_err(|e| format!("cannot reach the plugin at {}: {e}", path.display()))?;
        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
        let replies = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        Ok(Control { stream, replies })
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        let mut reply = String::new();
        writeln!(self.stream, "{command}")
            .and_then(|()| self.replies.read_line(&mut reply).map(|_| ()))
            .map_err(|e| format!("plugin command '{command}': {e}"))?;
        match reply.trim() {
            "ok" => Ok(()),
            other => Err(format!("plugin command '{command}': {other}")),
        }
    }
}

/// The files written for one profile.
struct Outputs {
    counts: PathBuf,
    functions: PathBuf,
    folded: PathBuf,
    svg: PathBuf,
}

impl Outputs {
    fn new(dir: &Path, profile: &str) -> Outputs {
        Outputs {
            counts: dir.join(format!("{profile}.counts")),
            functions: dir.join(format!("{profile}-functions.txt")),
            folded: dir.join(format!("{profile}.folded")),
            svg: dir.join(format!("{profile}.svg")),
        }
    }
}

/// A socket path of this process's own (short: Unix sockets allow ~100
/// bytes).
fn control_socket_path() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("starina-profile-{}-{n}.sock", std::process::id()))
}

/// The `-plugin` option for QEMU (whose option syntax cannot quote a comma).
fn plugin_option(plugin: &Path, out: &Path, ctl: &Path) -> Result<String, String> {
    let paths = [plugin, out, ctl].map(|p| p.display().to_string());
    if let Some(p) = paths.iter().find(|p| p.contains(',')) {
        return Err(format!("QEMU cannot take a path with a comma: {p}"));
    }
    Ok(format!(
        "file={},out={},ctl={}",
        paths[0], paths[1], paths[2]
    ))
}

/// Counts for `opts.seconds` once the guest is ready; true if the OS
/// stopped first (the plugin then wrote its counts as QEMU exited).
fn count(boot: &Boot, ctl: &Path, opts: &ProfileOptions, io: &mut Streams) -> Result<bool, String> {
    if boot.thread.is_finished() {
        return Err("the OS stopped before counting began".into());
    }
    let mut control = Control::connect(ctl)?;
    control.send("reset")?;
    io.say(&format!(
        "profile: counting {}'s instructions for {} s",
        opts.run.profile, opts.seconds
    ));
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < opts.seconds {
        if boot.thread.is_finished() {
            return Ok(true);
        }
        thread::sleep(Duration::from_millis(50));
    }
    match control.send("dump") {
        Ok(()) => Ok(false),
        // The OS stopped just as counting ended: QEMU closed the plugin's
        // socket as it exited, and the plugin wrote its counts then.
        Err(_) if stops_soon(boot) => Ok(true),
        Err(e) => Err(e),
    }
}

/// Whether the boot ends within a second (QEMU is exiting).
fn stops_soon(boot: &Boot) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(1) {
        if boot.thread.is_finished() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    false
}

/// Names the raw counts and writes the table, folded stacks and SVG.
fn write_results(
    host: &Host,
    opts: &ProfileOptions,
    files: &Outputs,
    io: &mut Streams,
) -> Result<(), String> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()));
    let raw = RawCounts::parse(&read(&files.counts)?)?;
    if !raw.reset {
        return Err("the OS stopped before counting began".into());
    }
    let symbols = crate::profile::symbols(host, opts, io).ok_or("no symbols")?;
    let report = Report::new(&raw, &symbols);
    let title = format!(
        "{} ({} s after ready + {} s{})",
        opts.run.profile,
        opts.seconds,
        opts.skip,
        if opts.run.icount { ", -icount" } else { "" }
    );
    let write =
        |p: &Path, text: &str| std::fs::write(p, text).map_err(|e| format!("{}: {e}", p.display()));
    write(&files.functions, &report.table(&title, None))?;
    write(&files.folded, &report.folded_text())?;
    let svg = crate::flamegraph::svg(&title, "instructions", &report.stacks());
    write(&files.svg, &svg)?;
    let _ = io
        .out
        .write_all(report.table(&title, Some(opts.top)).as_bytes());
    let _ = io.out.flush();
    for p in [&files.functions, &files.folded, &files.svg] {
        io.say(&format!("profile: wrote {}", p.display()));
    }
    Ok(())
}

pub fn profile(host: &Host, opts: &ProfileOptions, io: &mut Streams) -> ExitStatus {
    if !host.root.join(PLUGIN_TARGET_DIR).join(PLUGIN_FILE).exists() {
        io.say("profile: building the QEMU plugin (cargo build -p starina-insn-plugin)");
    }
    let plugin = match build_plugin(host) {
        Ok(p) => p,
        Err(e) => {
            io.say(&format!("profile: {e}"));
            return ExitStatus::Failed;
        }
    };
    let dir = (opts.out_dir.clone()).unwrap_or_else(|| host.root.join(OUT_DIR));
    // QEMU writes the counts from its own working directory.
    let dir = std::path::absolute(&dir).unwrap_or(dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        io.say(&format!("profile: cannot create {}: {e}", dir.display()));
        return ExitStatus::Failed;
    }
    let files = Outputs::new(&dir, &opts.run.profile);
    let ctl = control_socket_path();
    let _ = std::fs::remove_file(&files.counts);
    let mut run = opts.run.clone();
    match plugin_option(&plugin, &files.counts, &ctl) {
        Ok(option) => run.qemu_args.extend(["-plugin".to_string(), option]),
        Err(e) => {
            io.say(&format!("profile: {e}"));
            return ExitStatus::Usage;
        }
    }
    let boot = Boot::start(host, run);
    if !boot.wait_ready(opts.skip, io) {
        return boot.fail(host);
    }
    let counted = count(&boot, &ctl, opts, io);
    boot.stop(host);
    let _ = std::fs::remove_file(&ctl);
    let result = counted.and_then(|stopped_early| {
        if stopped_early {
            io.say("profile: the OS stopped before the time was up; the counts cover what ran");
        }
        write_results(host, opts, &files, io)
    });
    match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            io.say(&format!("profile: {e}"));
            ExitStatus::Failed
        }
    }
}
