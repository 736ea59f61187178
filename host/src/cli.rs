//! The command line of the `starina` binary: what each command accepts
//! (README.md documents the same options) and usage errors (status 2).

use std::path::PathBuf;

use starina_bridge::process::WinSize;
use starina_bridge::process::MAX_TERMINAL_DIM;

use crate::cp::Copy;
use crate::direct::DirectOptions;
use crate::disk;
use crate::disk::DiskOptions;
use crate::disk::LinuxRoot;
use crate::exec::ExecOptions;
use crate::instance_cmd::UpOptions;
use crate::instance_server::ServeOptions;
use crate::profile::ProfileOptions;
use crate::profile::Sampler;
use crate::qemu::Machine;
use crate::qemu::DEFAULT_CPUS;
use crate::qemu::MAX_CPUS;
use crate::bochs;
use crate::run::compile_patterns;
use crate::run::Emulator;
use crate::run::RunOptions;

pub const USAGE: &str = "usage: scripts/starina run [--profile NAME] [--machine q35|microvm] [--timeout SECONDS]
                           [--emulator qemu|bochs] [--cpu intel|amd (bochs)]
                           [--icount] [--smp N (1-8; 2)] [--kvm] [--no-build] [--kernel PATH]
                           [--disk PATH] [--disk-size SIZE (1G)] [--linux-root auto|none|debian|IMAGE]
                           [--until REGEX]... [-v] [-- extra QEMU args]
       scripts/starina exec [--profile NAME] [--machine q35|microvm] [--kvm] [--smp N] [--timeout SECONDS]
                            [--emulator qemu|bochs] [--cpu intel|amd (bochs; profile linux_smoke)]
                            [--env NAME=VALUE]... [--cwd DIR] [--user NAME|UID[:GID]]
                            [-t|--tty] [--size ROWSxCOLS] [--no-build] [--kernel PATH]
                            [--disk PATH] [--disk-size SIZE (1G)] [--linux-root auto|none|debian|IMAGE]
                            [-v] -- CMD [ARGS...]
       scripts/starina shell [the options of exec but -t and the command]   (a login shell on a terminal)
       scripts/starina shell --native [the options of run]   (boots a profile with the native shell
                                 (default) on an interactive console: Ctrl-] x stops it)
       scripts/starina up [--profile NAME (linux)] [--machine q35|microvm] [--kvm] [--timeout SECONDS (600)]
                          [--no-build] [--kernel PATH] [--disk PATH] [--disk-size SIZE (1G)]
                          [--linux-root auto|none|debian|IMAGE] [-v]
       scripts/starina status [--disk PATH]     (exit status 1: none up)
       scripts/starina down [--disk PATH]
       scripts/starina test [--machine q35|microvm]... [--skip linux|host|kernel|in-os|bochs|e2e]...
       scripts/starina bench [--machine q35|microvm] [--kernel PATH] [--no-http | --http-only | --fs-only | --net-only | --root-only | --linux-only | --bochs-only]
                             [--smp N (Starina's CPUs in the --net-only figures)]
       scripts/starina profile [--profile NAME] [--machine q35|microvm] [--icount] [--no-build]
                               [--kernel PATH] [--skip SECONDS after ready] [--seconds SECONDS]
                               [--top N] [--out DIR (insn; target/profile)] [--sampler insn|gdb]
                               [--interval-ms MS (gdb)]
       scripts/starina cp [--disk PATH] SRC DST   (one of them starina:/PATH; Starina down)
       scripts/starina build-kernel [--clippy] [extra cargo args]
       scripts/starina direct --socket PATH [--run CMD]... [--selftest] [--serial-log FILE]
                              [--timeout SECONDS] -- QEMU-COMMAND...   (linux-guest/run-direct.sh)

Exit statuses (docs/CONTRACTS.md): C the OS's (run) or the command's (exec) own status;
0 all --until patterns seen; 2 usage; 123 the OS exited before every --until pattern;
124 --timeout; 125 no status (crash, reset, Starina or Linux stopped); 126 nothing booted;
127 QEMU not found; 128+N signal N (130: Ctrl-C).
--disk: the disk image, created sparse if missing: an MBR, partition 1 the native ext2 file
system (--disk-size big), partition 2 a Linux root (--linux-root: auto gives profiles that run
linux the Debian image of linux-guest/build-rootfs.sh; none; debian; or an ext4 IMAGE path);
default $XDG_DATA_HOME/starina/disk.img (~/.local/share/starina/disk.img).
Environment: STARINA_QEMU (QEMU binary), STARINA_CACHE (~/.cache/starina), STARINA_HTTP_PORT (8080).";

/// A parsed command line.
#[derive(Clone, Debug)]
pub enum Command {
    Help,
    Run(RunOptions),
    Exec(ExecOptions),
    Test(TestOptions),
    Bench(BenchOptions),
    Profile(ProfileOptions),
    BuildKernel {
        clippy: bool,
        cargo_args: Vec<String>,
    },
    Direct(DirectOptions),
    /// `cp`: a copy in or out of the disk image at `disk`.
    Cp {
        disk: PathBuf,
        copy: Copy,
    },
    Up(UpOptions),
    /// `status [--disk PATH]`.
    Status(Option<PathBuf>),
    /// `down [--disk PATH]`.
    Down(Option<PathBuf>),
    /// `instance-serve`: the background process `up` starts (not for users).
    Serve(ServeOptions),
}

/// `starina test`: the stages to run and the machines for the in-OS tests.
#[derive(Clone, Debug)]
pub struct TestOptions {
    pub machines: Vec<Machine>,
    pub skip: Vec<String>,
}

/// `starina bench`.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub machine: Machine,
    pub kernel: Option<PathBuf>,
    pub http: bool,
    /// Only the HTTP figures (no IPC, boot or Linux microVM figures).
    pub http_only: bool,
    /// Only the file figures (Starina's virtio-fs against QEMU's 9p).
    pub fs_only: bool,
    /// Only Linux's network figures (through Starina against direct).
    pub net_only: bool,
    /// `--root-only`: only the Debian root's figures (`bench_root`).
    pub root_only: bool,
    /// `--linux-only`: only the Linux microVM's figures (`bench_linux`:
    /// boot, exec, pipes, native commands).
    pub linux_only: bool,
    /// `--bochs-only`: only the hypervisor backends' figures under Bochs
    /// (`bench_bochs`: VMX and SVM).
    pub bochs_only: bool,
    /// `--smp N`: Starina's CPUs in the Linux network figures
    /// (`bench_net`); the other figures name their own.
    pub cpus: u8,
}

/// The stages `starina test` knows.
pub const STAGES: [&str; 6] = ["linux", "host", "kernel", "in-os", "bochs", "e2e"];

/// Parses the arguments after the program name; an error is a usage message.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let (command, rest) = args
        .split_first()
        .ok_or("give a command: run, exec, up, status, down, test, bench or build-kernel")?;
    let (opts, after) = match rest.iter().position(|a| a == "--") {
        Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
        None => (rest, Vec::new()),
    };
    let mut opts = Options::new(opts);
    if opts.args.iter().any(|a| a == "-h" || a == "--help")
        || command == "-h"
        || command == "--help"
    {
        return Ok(Command::Help);
    }
    match command.as_str() {
        "run" => parse_run(&mut opts, after).map(Command::Run),
        "exec" => parse_exec(&mut opts, after).map(Command::Exec),
        "shell" if opts.flag("--native") => parse_run(&mut opts, after).map(Command::Run),
        "shell" => parse_shell(&mut opts, &after).map(Command::Exec),
        "test" => parse_test(&mut opts, &after).map(Command::Test),
        "bench" => parse_bench(&mut opts, &after).map(Command::Bench),
        "profile" => parse_profile(&mut opts, &after).map(Command::Profile),
        "build-kernel" => {
            let clippy = opts.flag("--clippy");
            let mut cargo_args = std::mem::take(&mut opts.args);
            cargo_args.extend(after);
            Ok(Command::BuildKernel { clippy, cargo_args })
        }
        "direct" => parse_direct(&mut opts, after).map(Command::Direct),
        "cp" => parse_cp(&mut opts, &after),
        "up" => parse_up(&mut opts, &after).map(Command::Up),
        "status" | "down" => {
            let disk = opts.value("--disk")?.map(PathBuf::from);
            no_extra(&after)?;
            opts.finish()?;
            Ok(match command.as_str() {
                "status" => Command::Status(disk),
                _ => Command::Down(disk),
            })
        }
        "instance-serve" => parse_serve(&mut opts).map(Command::Serve),
        other => Err(format!("unknown command '{other}'")),
    }
}

fn parse_run(opts: &mut Options, qemu_args: Vec<String>) -> Result<RunOptions, String> {
    let mut run = RunOptions::new(&opts.profile("default")?);
    run.machine = opts.machine()?;
    run.timeout = opts.timeout()?;
    run.icount = opts.flag("--icount");
    let smp_given = opts.has("--smp");
    run.cpus = opts.cpus()?;
    if run.icount && !smp_given {
        // QEMU counts instructions on one host thread: a second CPU adds
        // no parallelism there, and one keeps instruction counts
        // comparable.
        run.cpus = 1;
    }
    run.kvm = opts.flag("--kvm");
    run.build = !opts.flag("--no-build");
    run.kernel = opts.value("--kernel")?.map(PathBuf::from);
    run.until = opts.values("--until")?;
    run.verbose = opts.flag("-v") | opts.flag("--verbose");
    run.qemu_args = qemu_args;
    run.disk = opts.disk()?;
    run.emulator = opts.emulator()?;
    opts.finish()?;
    compile_patterns(&run.until)?;
    if let Emulator::Bochs(_) = run.emulator {
        bochs_only_options(&run)?;
        if !smp_given {
            run.cpus = 1;
        }
    }
    Ok(run)
}

/// What `run --emulator bochs` cannot do: QEMU's machine types, options
/// and arguments, and a disk (Bochs has no virtio devices).
fn bochs_only_options(run: &RunOptions) -> Result<(), String> {
    let defaults = RunOptions::new(&run.profile);
    let qemu_only = [
        ("--machine", run.machine != defaults.machine),
        ("--icount", run.icount),
        ("--kvm", run.kvm),
        ("--disk", run.disk.path.is_some()),
        ("-- QEMU args", !run.qemu_args.is_empty()),
    ];
    match qemu_only.iter().find(|(_, given)| *given) {
        Some((name, _)) => Err(format!("{name} is for QEMU, not --emulator bochs")),
        None => Ok(()),
    }
}

fn parse_exec(opts: &mut Options, argv: Vec<String>) -> Result<ExecOptions, String> {
    let tty = opts.flag("-t") | opts.flag("--tty");
    let mut exec = parse_exec_options(opts, "exec")?;
    exec.tty = tty;
    if exec.size.is_some() && !tty {
        return Err("exec: --size is for a terminal: add -t".into());
    }
    if argv.is_empty() {
        return Err("exec: give the command after `--`: scripts/starina exec -- uname -a".into());
    }
    exec.argv = argv;
    Ok(exec)
}

/// `shell`: `exec -t` of the guest user's login shell, in their home.
fn parse_shell(opts: &mut Options, after: &[String]) -> Result<ExecOptions, String> {
    let mut exec = parse_exec_options(opts, "shell")?;
    no_extra(after)?;
    exec.tty = true;
    exec.argv = crate::exec::login_shell();
    Ok(exec)
}

/// The options `exec` and `shell` share.
fn parse_exec_options(opts: &mut Options, command: &str) -> Result<ExecOptions, String> {
    let mut exec = ExecOptions::new(&[]);
    exec.bochs = match opts.emulator()? {
        Emulator::Qemu => None,
        Emulator::Bochs(cpu) => Some(cpu),
    };
    exec.profile = match exec.bochs {
        Some(_) => opts.profile(crate::exec_bochs::DEFAULT_PROFILE)?,
        None => opts.profile("linux")?,
    };
    exec.machine = opts.machine()?;
    exec.kvm = opts.flag("--kvm");
    let smp_given = opts.has("--smp");
    exec.cpus = opts.cpus()?;
    exec.timeout = opts.timeout()?;
    for kv in opts.values("--env")? {
        match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => exec.env.push((k.to_string(), v.to_string())),
            _ => return Err(format!("{command}: --env '{kv}': expected NAME=VALUE")),
        }
    }
    exec.cwd = opts.value("--cwd")?;
    exec.user = opts.value("--user")?;
    if exec.user.as_deref() == Some("") {
        return Err(format!(
            "{command}: --user needs a user name, a uid or uid:gid"
        ));
    }
    exec.size = match opts.value("--size")? {
        Some(text) => Some(WinSize::parse(&text).ok_or_else(|| {
            format!("{command}: --size '{text}': expected ROWSxCOLS, each 1 to {MAX_TERMINAL_DIM}")
        })?),
        None => None,
    };
    exec.build = !opts.flag("--no-build");
    exec.kernel = opts.value("--kernel")?.map(PathBuf::from);
    exec.verbose = opts.flag("-v") | opts.flag("--verbose");
    exec.disk = opts.disk()?;
    opts.finish()?;
    if exec.bochs.is_some() {
        // Bochs has no virtio devices: no disk; and no KVM or QEMU machine.
        let qemu_only = [
            ("--machine", exec.machine != Machine::Q35),
            ("--kvm", exec.kvm),
            ("--disk", exec.disk.path.is_some()),
        ];
        if let Some((name, _)) = qemu_only.iter().find(|(_, given)| *given) {
            return Err(format!("{command}: {name} is for QEMU, not --emulator bochs"));
        }
        if !smp_given {
            // Bochs runs one CPU unless told otherwise (it is slow enough).
            exec.cpus = 1;
        }
    }
    Ok(exec)
}

fn parse_up(opts: &mut Options, after: &[String]) -> Result<UpOptions, String> {
    let mut up = UpOptions::new(&opts.profile("linux")?);
    up.machine = opts.machine()?;
    up.kvm = opts.flag("--kvm");
    up.timeout = opts.timeout()?;
    up.build = !opts.flag("--no-build");
    up.kernel = opts.value("--kernel")?.map(PathBuf::from);
    up.verbose = opts.flag("-v") | opts.flag("--verbose");
    up.disk = opts.disk()?;
    no_extra(after)?;
    opts.finish()?;
    Ok(up)
}

fn parse_serve(opts: &mut Options) -> Result<ServeOptions, String> {
    let mut required = |name: &str| {
        opts.value(name)?
            .map(PathBuf::from)
            .ok_or(format!("instance-serve: {name} is required"))
    };
    let (dir, kernel, disk) = (
        required("--dir")?,
        required("--kernel")?,
        required("--disk")?,
    );
    let serve = ServeOptions {
        dir,
        kernel,
        disk,
        profile: opts.profile("linux")?,
        machine: opts.machine()?,
        kvm: opts.flag("--kvm"),
        ready_timeout: opts.timeout()?.unwrap_or(crate::instance_cmd::UP_TIMEOUT),
    };
    opts.finish()?;
    Ok(serve)
}

fn parse_cp(opts: &mut Options, after: &[String]) -> Result<Command, String> {
    let disk = opts
        .value("--disk")?
        .map(PathBuf::from)
        .unwrap_or_else(disk::default_path);
    no_extra(after)?;
    let [src, dst] = std::mem::take(&mut opts.args)
        .try_into()
        .map_err(|args: Vec<String>| {
            format!(
                "cp: give SRC and DST (one of them starina:/PATH); got {}",
                args.join(" ")
            )
        })?;
    let copy = Copy::parse(&src, &dst)?;
    Ok(Command::Cp { disk, copy })
}

fn parse_test(opts: &mut Options, after: &[String]) -> Result<TestOptions, String> {
    let machines = opts.values("--machine")?;
    let machines = if machines.is_empty() {
        vec![Machine::Q35, Machine::Microvm]
    } else {
        machines
            .iter()
            .map(|m| machine(m))
            .collect::<Result<_, _>>()?
    };
    let skip = opts.values("--skip")?;
    if let Some(bad) = skip.iter().find(|s| !STAGES.contains(&s.as_str())) {
        return Err(format!(
            "--skip: invalid choice '{bad}' (choose from {})",
            STAGES.join(", ")
        ));
    }
    no_extra(after)?;
    opts.finish()?;
    Ok(TestOptions { machines, skip })
}

fn parse_bench(opts: &mut Options, after: &[String]) -> Result<BenchOptions, String> {
    let bench = BenchOptions {
        machine: opts.machine()?,
        kernel: opts.value("--kernel")?.map(PathBuf::from),
        http: !opts.flag("--no-http"),
        http_only: opts.flag("--http-only"),
        fs_only: opts.flag("--fs-only"),
        net_only: opts.flag("--net-only"),
        root_only: opts.flag("--root-only"),
        linux_only: opts.flag("--linux-only"),
        bochs_only: opts.flag("--bochs-only"),
        cpus: opts.cpus()?,
    };
    if bench.http_only && !bench.http {
        return Err("--http-only and --no-http exclude each other".into());
    }
    let only = [
        bench.http_only,
        bench.fs_only,
        bench.net_only,
        bench.root_only,
        bench.linux_only,
        bench.bochs_only,
    ];
    if only.iter().filter(|&&o| o).count() > 1 {
        return Err(
            "--http-only, --fs-only, --net-only, --root-only, --linux-only and --bochs-only exclude each other".into(),
        );
    }
    no_extra(after)?;
    opts.finish()?;
    Ok(bench)
}

fn parse_profile(opts: &mut Options, after: &[String]) -> Result<ProfileOptions, String> {
    let mut run = RunOptions::new(&opts.profile("bench")?);
    // One CPU: the samples are of one CPU's instruction stream.
    run.cpus = 1;
    run.machine = opts.machine()?;
    run.icount = opts.flag("--icount");
    run.build = !opts.flag("--no-build");
    run.kernel = opts.value("--kernel")?.map(PathBuf::from);
    let seconds = opts.number("--seconds", 5.0)?;
    let skip = opts.number("--skip", 0.2)?;
    let interval_ms = opts.number("--interval-ms", 10.0)?;
    let top = opts.number("--top", 25.0)? as usize;
    let out_dir = opts.value("--out")?.map(PathBuf::from);
    let sampler = Sampler::parse(&opts.value("--sampler")?.unwrap_or_else(|| "insn".into()))?;
    // QEMU stops on its own if the sampler does not stop it.
    run.timeout = Some(skip + seconds + 300.0);
    no_extra(after)?;
    opts.finish()?;
    Ok(ProfileOptions {
        run,
        sampler,
        out_dir,
        seconds,
        interval: std::time::Duration::from_secs_f64(interval_ms / 1000.0),
        top,
        skip,
    })
}

fn parse_direct(opts: &mut Options, qemu: Vec<String>) -> Result<DirectOptions, String> {
    let direct = DirectOptions {
        socket: opts
            .value("--socket")?
            .ok_or("direct: --socket is required")?
            .into(),
        run: opts.values("--run")?,
        selftest: opts.flag("--selftest"),
        serial_log: opts.value("--serial-log")?.map(PathBuf::from),
        timeout: opts.timeout()?.unwrap_or(120.0),
        qemu,
    };
    opts.finish()?;
    if direct.qemu.is_empty() {
        return Err("direct: missing QEMU command after --".into());
    }
    Ok(direct)
}

fn no_extra(after: &[String]) -> Result<(), String> {
    match after.first() {
        Some(a) => Err(format!("unexpected argument '{a}'")),
        None => Ok(()),
    }
}

fn machine(name: &str) -> Result<Machine, String> {
    Machine::parse(name).ok_or_else(|| {
        format!(
            "--machine: invalid choice '{name}' (choose from {})",
            Machine::NAMES.join(", ")
        )
    })
}

/// Options not yet consumed; each getter takes its own and `finish` rejects the rest.
struct Options {
    args: Vec<String>,
}

impl Options {
    fn new(args: &[String]) -> Options {
        Options {
            args: args.to_vec(),
        }
    }

    fn flag(&mut self, name: &str) -> bool {
        let before = self.args.len();
        self.args.retain(|a| a != name);
        self.args.len() != before
    }

    /// Whether `--name` (with its value) is among the options left.
    fn has(&self, name: &str) -> bool {
        self.args
            .iter()
            .any(|a| a == name || a.strip_prefix(name).is_some_and(|r| r.starts_with('=')))
    }

    /// Every value of `--name VALUE` or `--name=VALUE`, in order.
    fn values(&mut self, name: &str) -> Result<Vec<String>, String> {
        let mut values = Vec::new();
        let mut rest = Vec::new();
        let mut args = std::mem::take(&mut self.args).into_iter();
        while let Some(arg) = args.next() {
            if arg == name {
                values.push(args.next().ok_or_else(|| format!("{name} needs a value"))?);
            } else if let Some(v) = arg.strip_prefix(name).and_then(|r| r.strip_prefix('=')) {
                values.push(v.to_string());
            } else {
                rest.push(arg);
            }
        }
        self.args = rest;
        Ok(values)
    }

    fn value(&mut self, name: &str) -> Result<Option<String>, String> {
        Ok(self.values(name)?.pop())
    }

    fn profile(&mut self, default: &str) -> Result<String, String> {
        let profile = self
            .value("--profile")?
            .unwrap_or_else(|| default.to_string());
        let ok = !profile.is_empty()
            && profile
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(format!(
                "bad profile name '{profile}' (letters, digits, _ . - only)"
            ));
        }
        Ok(profile)
    }

    /// `--emulator qemu|bochs` and, for bochs, `--cpu intel|amd`.
    fn emulator(&mut self) -> Result<Emulator, String> {
        let emulator = self.value("--emulator")?.unwrap_or_else(|| "qemu".into());
        let cpu = self.value("--cpu")?;
        match (emulator.as_str(), cpu) {
            ("qemu", None) => Ok(Emulator::Qemu),
            ("qemu", Some(_)) => Err("--cpu is for --emulator bochs".into()),
            ("bochs", cpu) => {
                let cpu = cpu.unwrap_or_else(|| "intel".into());
                bochs::Cpu::parse(&cpu).map(Emulator::Bochs).ok_or_else(|| {
                    format!(
                        "--cpu: invalid choice '{cpu}' (choose from {})",
                        bochs::Cpu::NAMES.join(", ")
                    )
                })
            }
            (other, _) => Err(format!(
                "--emulator: invalid choice '{other}' (choose from qemu, bochs)"
            )),
        }
    }

    /// `--smp N`: the guest's CPUs, 1 to `qemu::MAX_CPUS`;
    /// `qemu::DEFAULT_CPUS` if not given.
    fn cpus(&mut self) -> Result<u8, String> {
        let Some(text) = self.value("--smp")? else {
            return Ok(DEFAULT_CPUS);
        };
        match text.parse::<u8>() {
            Ok(n) if (1..=MAX_CPUS).contains(&n) => Ok(n),
            _ => Err(format!(
                "--smp: give a number of CPUs from 1 to {MAX_CPUS}: '{text}'"
            )),
        }
    }

    fn machine(&mut self) -> Result<Machine, String> {
        machine(&self.value("--machine")?.unwrap_or_else(|| "q35".into()))
    }

    /// A positive number `--name N`, or `default`.
    fn number(&mut self, name: &str, default: f64) -> Result<f64, String> {
        let Some(text) = self.value(name)? else {
            return Ok(default);
        };
        match text.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
            Ok(_) => Err(format!("{name}: must be > 0: '{text}'")),
            Err(_) => Err(format!("{name}: not a number: '{text}'")),
        }
    }

    /// `--disk PATH` and `--disk-size SIZE`.
    fn disk(&mut self) -> Result<DiskOptions, String> {
        let path = self.value("--disk")?;
        if path.as_deref() == Some("") {
            return Err("--disk: give a path".into());
        }
        let size = match self.value("--disk-size")? {
            Some(text) => disk::parse_size(&text)?,
            None => disk::DEFAULT_SIZE,
        };
        let linux_root = match self.value("--linux-root")? {
            Some(text) => LinuxRoot::parse(&text)?,
            None => LinuxRoot::Auto,
        };
        Ok(DiskOptions {
            path: path.map(PathBuf::from),
            size,
            linux_root,
        })
    }

    fn timeout(&mut self) -> Result<Option<f64>, String> {
        let Some(text) = self.value("--timeout")? else {
            return Ok(None);
        };
        match text.parse::<f64>() {
            Ok(v) if v > 0.0 && v.is_finite() => Ok(Some(v)),
            Ok(_) => Err(format!("--timeout: must be > 0: '{text}'")),
            Err(_) => Err(format!("--timeout: not a number: '{text}'")),
        }
    }

    fn finish(&self) -> Result<(), String> {
        match self.args.first() {
            Some(a) => Err(format!("unrecognized argument '{a}'")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn run_options() {
        let Ok(Command::Run(r)) = parse(&args(&[
            "run",
            "--profile",
            "bench",
            "--machine=microvm",
            "--timeout",
            "2.5",
            "--icount",
            "--kvm",
            "--no-build",
            "--until",
            "a",
            "--until",
            "b+",
            "-v",
            "--",
            "-s",
            "--until",
        ])) else {
            panic!("not a run");
        };
        assert_eq!(
            (r.profile.as_str(), r.machine, r.timeout),
            ("bench", Machine::Microvm, Some(2.5))
        );
        assert!(r.icount && r.kvm && !r.build && r.verbose);
        assert_eq!(r.until, ["a", "b+"]);
        assert_eq!(r.qemu_args, ["-s", "--until"]);
        let Ok(Command::Run(r)) = parse(&args(&["run"])) else {
            panic!()
        };
        assert_eq!(
            (r.profile.as_str(), r.machine, r.build, r.cpus),
            ("default", Machine::Q35, true, DEFAULT_CPUS)
        );
    }

    #[test]
    fn smp_option() {
        let cpus = |argv: &[&str]| match parse(&args(argv)) {
            Ok(Command::Run(r)) => r.cpus,
            _ => panic!("{argv:?} did not parse"),
        };
        assert_eq!(cpus(&["run"]), DEFAULT_CPUS);
        assert_eq!(cpus(&["run", "--icount"]), 1);
        assert_eq!(cpus(&["run", "--icount", "--smp", "2"]), 2);
        for (given, cpus) in [("--smp=1", 1), ("--smp=4", 4), ("--smp=8", 8)] {
            let Ok(Command::Run(r)) = parse(&args(&["run", given, "--icount"])) else {
                panic!("{given} did not parse");
            };
            assert_eq!(r.cpus, cpus);
        }
        for bad in ["0", "9", "-1", "four", ""] {
            let err = parse(&args(&["run", "--smp", bad])).unwrap_err();
            assert!(err.contains("from 1 to 8"), "{bad}: {err}");
        }
        assert!(parse(&args(&["run", "--smp"])).is_err());
        assert!(parse(&args(&["run", "--emulator", "bochs", "--icount"])).is_err());
        let Ok(Command::Run(r)) = parse(&args(&["run", "--emulator", "bochs", "--smp", "2"])) else {
            panic!("bochs --smp 2 did not parse");
        };
        assert_eq!(r.cpus, 2);
        // Bochs runs one CPU unless told otherwise (it is slow enough).
        let Ok(Command::Run(r)) = parse(&args(&["run", "--emulator", "bochs"])) else {
            panic!("bochs did not parse");
        };
        assert_eq!(r.cpus, 1);
        let Ok(Command::Exec(e)) = parse(&args(&["exec", "--emulator", "bochs", "--", "true"])) else {
            panic!("exec bochs did not parse");
        };
        assert_eq!(e.cpus, 1);
    }

    #[test]
    fn emulator_options() {
        let Ok(Command::Run(r)) = parse(&args(&["run"])) else {
            panic!("not a run");
        };
        assert_eq!(r.emulator, Emulator::Qemu);
        let Ok(Command::Run(r)) = parse(&args(&["run", "--emulator", "bochs"])) else {
            panic!("not a run");
        };
        assert_eq!(r.emulator, Emulator::Bochs(bochs::Cpu::Intel));
        let Ok(Command::Run(r)) = parse(&args(&["run", "--emulator=bochs", "--cpu", "amd", "--until", "x"])) else {
            panic!("not a run");
        };
        assert_eq!(r.emulator, Emulator::Bochs(bochs::Cpu::Amd));
        for bad in [
            &["run", "--cpu", "amd"][..],
            &["run", "--emulator", "vbox"],
            &["run", "--emulator", "bochs", "--cpu", "arm"],
            &["run", "--emulator", "bochs", "--machine", "microvm"],
            &["run", "--emulator", "bochs", "--icount"],
            &["run", "--emulator", "bochs", "--", "-s"],
            &["exec", "--emulator", "bochs", "--kvm", "--", "true"],
            &["exec", "--emulator", "bochs", "--disk", "/d.img", "--", "true"],
            &["exec", "--emulator", "bochs", "--machine", "microvm", "--", "true"],
            &["exec", "--cpu", "amd", "--", "true"],
            &["shell", "--emulator", "bochs", "--kvm"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} parsed");
        }
        let Ok(Command::Exec(e)) = parse(&args(&["exec", "--emulator", "bochs", "--cpu", "amd", "--", "true"]))
        else {
            panic!("not an exec");
        };
        assert_eq!((e.bochs, e.profile.as_str()), (Some(bochs::Cpu::Amd), "linux_smoke"));
        let Ok(Command::Exec(e)) = parse(&args(&["exec", "--", "true"])) else {
            panic!("not an exec");
        };
        assert_eq!((e.bochs, e.profile.as_str()), (None, "linux"));
    }

    #[test]
    fn disk_options() {
        let Ok(Command::Run(r)) = parse(&args(&["run", "--disk", "/x.img", "--disk-size", "256M"]))
        else {
            panic!("not a run");
        };
        assert_eq!(r.disk.path.as_deref(), Some(std::path::Path::new("/x.img")));
        assert_eq!(r.disk.size, 256 << 20);
        let Ok(Command::Exec(e)) = parse(&args(&["exec", "--disk-size=2G", "--", "true"])) else {
            panic!("not an exec");
        };
        assert_eq!((e.disk.path, e.disk.size), (None, 2 << 30));
        let Ok(Command::Run(r)) = parse(&args(&["run"])) else {
            panic!()
        };
        assert_eq!(r.disk.linux_root, LinuxRoot::Auto);
        assert_eq!((r.disk.path, r.disk.size), (None, disk::DEFAULT_SIZE));
        let Ok(Command::Run(r)) = parse(&args(&["run", "--linux-root", "none"])) else {
            panic!()
        };
        assert_eq!(r.disk.linux_root, LinuxRoot::None);
        for bad in [
            &["run", "--disk-size", "lots"][..],
            &["run", "--disk"],
            &["run", "--disk="],
            &["run", "--linux-root", "fedora"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exec_options() {
        let Ok(Command::Exec(e)) = parse(&args(&[
            "exec",
            "--env",
            "A=1",
            "--env=B=x=y",
            "--cwd",
            "/tmp",
            "--user",
            "nobody",
            "--",
            "sh",
            "-c",
            "exit 3",
        ])) else {
            panic!("not an exec");
        };
        assert_eq!(
            e.env,
            [("A".into(), "1".into()), ("B".into(), "x=y".into())]
        );
        assert_eq!(
            (e.profile.as_str(), e.cwd.as_deref()),
            ("linux", Some("/tmp"))
        );
        assert_eq!(e.user.as_deref(), Some("nobody"));
        assert_eq!(e.argv, ["sh", "-c", "exit 3"]);
    }

    #[test]
    fn terminal_options() {
        let Ok(Command::Exec(e)) = parse(&args(&["exec", "-t", "--size", "40x100", "--", "vi"]))
        else {
            panic!("not an exec");
        };
        assert!(e.tty);
        assert_eq!(e.size, WinSize::new(40, 100));
        let Ok(Command::Exec(e)) = parse(&args(&["exec", "--", "ls", "-t"])) else {
            panic!("not an exec");
        };
        assert!(!e.tty, "-t after -- is the command's");
        let Ok(Command::Exec(e)) = parse(&args(&["shell", "--user", "starina"])) else {
            panic!("not a shell");
        };
        assert!(e.tty && e.size.is_none());
        assert_eq!(e.user.as_deref(), Some("starina"));
        assert_eq!(e.argv, crate::exec::login_shell());
        // The native shell is the console of a booted profile.
        let Ok(Command::Run(r)) = parse(&args(&["shell", "--native", "--machine", "microvm"])) else {
            panic!("shell --native is a run");
        };
        assert_eq!(r.profile, "default");
        assert!(parse(&args(&["shell", "--native", "--user", "x"])).is_err());
    }

    #[test]
    fn usage_errors() {
        for bad in [
            &["run", "--machine", "pc"][..],
            &["run", "--timeout", "soon"],
            &["run", "--timeout", "0"],
            &["run", "--profile", "a b"],
            &["run", "--until", "("],
            &["run", "--frob"],
            &["run", "--timeout"],
            &["exec", "--"][..],
            &["exec", "--env", "=1", "--", "true"],
            &["exec", "--user=", "--", "true"],
            &["exec", "--user", "--", "true"],
            &["exec", "--size", "24x80", "--", "true"],
            &["exec", "-t", "--size", "0x80", "--", "true"],
            &["exec", "-t", "--size", "24x99999", "--", "true"],
            &["exec", "-t", "--size", "big", "--", "true"],
            &["shell", "--", "bash"],
            &["shell", "--frob"],
            &["test", "--skip", "nothing"],
            &["frobnicate"],
            &[],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn test_and_bench() {
        let Ok(Command::Test(t)) = parse(&args(&["test", "--machine", "q35", "--skip", "e2e"]))
        else {
            panic!()
        };
        assert_eq!(
            (t.machines, t.skip),
            (vec![Machine::Q35], vec!["e2e".to_string()])
        );
        let Ok(Command::Bench(b)) = parse(&args(&["bench", "--no-http"])) else {
            panic!()
        };
        assert!(!b.http && !b.http_only && b.machine == Machine::Q35);
        let Ok(Command::Bench(b)) = parse(&args(&["bench", "--http-only"])) else {
            panic!()
        };
        assert!(b.http && b.http_only);
        assert!(parse(&args(&["bench", "--http-only", "--no-http"])).is_err());
        let Ok(Command::Bench(b)) = parse(&args(&["bench", "--net-only"])) else {
            panic!()
        };
        assert!(b.net_only && !b.fs_only && !b.http_only);
        assert!(parse(&args(&["bench", "--net-only", "--fs-only"])).is_err());
        assert!(parse(&args(&["bench", "--net-only", "--http-only"])).is_err());
        assert!(matches!(
            parse(&args(&["run", "--help"])),
            Ok(Command::Help)
        ));
    }

    #[test]
    fn up_status_and_down() {
        let Ok(Command::Up(u)) = parse(&args(&[
            "up",
            "--disk",
            "/d.img",
            "--linux-root",
            "none",
            "--timeout",
            "30",
        ])) else {
            panic!("not an up");
        };
        assert_eq!(
            (u.profile.as_str(), u.timeout, u.disk.linux_root),
            ("linux", Some(30.0), LinuxRoot::None)
        );
        assert_eq!(u.disk.path, Some(PathBuf::from("/d.img")));
        assert!(matches!(
            parse(&args(&["status"])),
            Ok(Command::Status(None))
        ));
        let Ok(Command::Down(Some(disk))) = parse(&args(&["down", "--disk", "/d.img"])) else {
            panic!("not a down");
        };
        assert_eq!(disk, PathBuf::from("/d.img"));
        for bad in [
            &["up", "--", "x"][..],
            &["status", "extra"],
            &["down", "--frob"],
            &["instance-serve", "--dir", "/x"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn cp_takes_two_paths_and_a_disk() {
        let Ok(Command::Cp { disk, copy }) = parse(&args(&[
            "cp",
            "--disk",
            "/tmp/d.img",
            "a",
            "starina:/www/a",
        ])) else {
            panic!("cp did not parse");
        };
        assert_eq!(disk, PathBuf::from("/tmp/d.img"));
        assert_eq!(
            copy,
            Copy::In {
                from: "a".into(),
                to: "/www/a".into()
            }
        );
        let Ok(Command::Cp { disk, .. }) = parse(&args(&["cp", "starina:/x", "x"])) else {
            panic!("cp did not parse");
        };
        assert_eq!(disk, disk::default_path());
        assert!(parse(&args(&["cp", "a"])).is_err());
        assert!(parse(&args(&["cp", "a", "b", "c"])).is_err());
        assert!(parse(&args(&["cp", "a", "b"])).is_err());
    }
}
