//! `starina bench` (`make bench`): boot time and IPC figures, then the HTTP
//! figures ([`crate::bench_http`]), the Linux microVM's
//! ([`crate::bench_linux`]), the file figures ([`crate::bench_fs`]) and
//! Linux's network ([`crate::bench_net`]). Prints the raw `bench-raw:` lines it used, then
//! one `bench: <figure> <value>` line per figure; fails if one is missing.
//!
//! - the `bench` profile under `--icount` (guest instructions) and without
//!   it (guest nanoseconds): `ipc_roundtrip_{0b,1k}_{instructions,ns}`;
//! - the `default` profile 3 times until `starina: ready` (host wall time,
//!   the median: `boot_ready_ms`) and under `--icount` (the ready line's
//!   TSC: `boot_ready_instructions`, and on 4 CPUs
//!   `boot_ready_instructions_smp4`);
//! - what several CPUs bring ([`crate::bench_smp`]).

use std::collections::BTreeMap;
use std::io::Write;

use crate::cli::BenchOptions;
use crate::host::Host;
use crate::host::Streams;
use crate::kernel;
use crate::kernel::Progress;
use crate::markers;
use crate::qemu::Machine;
use crate::run::run;
use crate::run::RunOptions;
use crate::run::RunReport;
use crate::status::ExitStatus;

/// Per-boot limit, seconds.
pub const TIMEOUT: f64 = 600.0;
const BOOT_RUNS: usize = 3;

/// The figures, by name, as printed.
pub type Figures = BTreeMap<String, String>;

pub fn header(text: &str) {
    println!("==> {text}");
    let _ = std::io::stdout().flush();
}

/// The last `n` bytes of `s` (or a little less, at a character boundary).
pub fn tail(s: &str, n: usize) -> &str {
    let mut at = s.len().saturating_sub(n);
    while !s.is_char_boundary(at) {
        at += 1;
    }
    &s[at..]
}

/// What a captured run printed.
pub struct Captured {
    pub report: RunReport,
    pub console: String,
    pub messages: String,
}

impl Captured {
    /// Tells what went wrong, with everything the run printed.
    pub fn show_failure(&self, what: &str) {
        eprintln!(
            "bench: {what} failed (exit status {}); its output:",
            self.report.status
        );
        eprint!("{}{}", self.console, self.messages);
    }

    /// The `bench-raw:` figures, each line also printed.
    pub fn raw_figures(&self, indent: &str) -> BTreeMap<String, String> {
        let mut raw = BTreeMap::new();
        for line in self.console.lines() {
            if let Some((name, value)) = markers::bench_raw(line) {
                println!("{indent}{}{name} {value}", markers::BENCH_RAW);
                raw.insert(name.to_string(), value.to_string());
            }
        }
        raw
    }
}

/// Boots with `opts` (never building), capturing the console and messages.
pub fn capture(host: &Host, opts: &RunOptions) -> Captured {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let report = run(
        host,
        opts,
        &mut Streams {
            out: &mut out,
            err: &mut err,
        },
    );
    Captured {
        report,
        console: String::from_utf8_lossy(&out).into_owned(),
        messages: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// The disk image every bench boot uses (profiles with the disk driver):
/// one of its own, never the user's; removed when the bench ends.
pub fn bench_disk() -> crate::disk::DiskOptions {
    let dir = std::env::temp_dir().join(format!("starina-bench-{}", std::process::id()));
    crate::disk::DiskOptions {
        path: Some(dir.join("disk.img")),
        size: 256 << 20,
        ..crate::disk::DiskOptions::default()
    }
}

/// Run options for `profile` on the kernel being measured.
pub fn boot_options(
    opts: &BenchOptions,
    profile: &str,
    machine: Machine,
    icount: bool,
) -> RunOptions {
    let mut run = RunOptions::new(profile);
    run.machine = machine;
    run.build = false;
    run.kernel = opts.kernel.clone();
    run.timeout = Some(TIMEOUT);
    run.icount = icount;
    // One CPU, as these figures' baselines were measured (`bench_smp`
    // measures several; the network figures take `--smp`).
    run.cpus = 1;
    run.disk = bench_disk();
    run
}

pub fn bench(host: &Host, opts: &BenchOptions) -> ExitStatus {
    let status = bench_figures(host, opts);
    if let Some(dir) = bench_disk()
        .path
        .as_deref()
        .and_then(std::path::Path::parent)
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    status
}

fn bench_figures(host: &Host, opts: &BenchOptions) -> ExitStatus {
    let host = host.batch();
    let mut opts = opts.clone();
    if let Some(k) = &opts.kernel {
        opts.kernel = Some(std::path::absolute(k).unwrap_or_else(|_| k.clone()));
    } else {
        header("kernel: scripts/build-kernel");
        let mut report = |line: &str| eprintln!("{line}");
        if kernel::build(&host, &[], Progress::Show, &mut report).is_err() {
            eprintln!("bench: the kernel did not build");
            return ExitStatus::Failed;
        }
    }
    if opts.fs_only {
        return fs_figures(&host, &opts);
    }
    if opts.net_only {
        return net_figures(&host, &opts);
    }
    if opts.root_only {
        return root_figures(&host, &opts);
    }
    if opts.bochs_only {
        return bochs_figures(&host);
    }
    if opts.linux_only {
        let linux = crate::bench_linux::bench(&host, &opts);
        return match linux.and_then(|()| crate::bench_smp_linux::bench(&host, &opts)) {
            Ok(()) => ExitStatus::Success,
            Err(e) => {
                eprintln!("bench-linux: {e}");
                ExitStatus::Failed
            }
        };
    }
    let (mut figures, mut order) = if opts.http_only {
        (Figures::new(), Vec::new())
    } else {
        let mut figures = ipc_figures(&host, &opts);
        figures.extend(boot_figures(&host, &opts));
        figures.extend(crate::bench_smp::figures(&host, &opts));
        let mut order: Vec<&str> = vec![
            "boot_ready_ms",
            "boot_ready_instructions",
            "boot_ready_instructions_smp4",
            "ipc_roundtrip_0b_instructions",
            "ipc_roundtrip_0b_instructions_cross_cpu",
            "ipc_roundtrip_1k_instructions",
            "ipc_roundtrip_0b_instructions_user",
            "ipc_roundtrip_1k_instructions_user",
            "ipc_roundtrip_0b_instructions_user_kernel",
            "ipc_roundtrip_1k_instructions_user_kernel",
            "ipc_roundtrip_0b_ns",
            "ipc_roundtrip_1k_ns",
        ];
        order.extend(crate::bench_smp::ORDER);
        (figures, order)
    };
    if opts.http {
        figures.extend(crate::bench_http::figures(&host, &opts));
        order.extend(crate::bench_http::ORDER);
        figures.extend(crate::bench_http_user::figures(&host, &opts));
        order.extend(crate::bench_http_user::ORDER);
    }
    header(&format!(
        "results (machine {}; HTTP on microvm)",
        opts.machine.name()
    ));
    for name in &order {
        if let Some(value) = figures.get(*name) {
            println!("bench: {name} {value}");
        }
    }
    let missing: Vec<&str> = order
        .into_iter()
        .filter(|n| !figures.contains_key(*n))
        .collect();
    if !missing.is_empty() {
        eprintln!("bench: missing figures: {}", missing.join(", "));
        return ExitStatus::Failed;
    }
    if opts.http_only {
        return ExitStatus::Success;
    }
    header("Linux microVM: scripts/starina bench (Linux figures)");
    if let Err(e) = crate::bench_linux::bench(&host, &opts) {
        eprintln!("bench-linux: {e}");
        eprintln!("bench: the Linux microVM figures failed");
        return ExitStatus::Failed;
    }
    header("Linux on two vCPUs: smp_linux_speedup");
    if let Err(e) = crate::bench_smp_linux::bench(&host, &opts) {
        eprintln!("bench-smp-linux: {e}");
        eprintln!("bench: the Linux SMP figure failed");
        return ExitStatus::Failed;
    }
    let fs = fs_figures(&host, &opts);
    let net = net_figures(&host, &opts);
    let root = root_figures(&host, &opts);
    let bochs = bochs_figures(&host);
    if fs.is_success() && net.is_success() && root.is_success() && bochs.is_success() {
        ExitStatus::Success
    } else {
        ExitStatus::Failed
    }
}

/// The hypervisor backends under Bochs: VMX and SVM (`bench_bochs`).
fn bochs_figures(host: &Host) -> ExitStatus {
    header("hypervisor backends under Bochs: scripts/starina bench --bochs-only");
    match crate::bench_bochs::figures(host) {
        Ok(figures) => {
            for (name, value) in &figures {
                println!("bench: {name} {value}");
            }
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("bench-bochs: {e}");
            ExitStatus::Failed
        }
    }
}

/// Files: Starina's /mnt/starina against QEMU's 9p (`bench_fs`).
fn fs_figures(host: &Host, opts: &BenchOptions) -> ExitStatus {
    header(&format!(
        "files: /mnt/starina (virtio-fs) against virtio-9p, {} interleaved boots of each",
        crate::bench_fs::RUNS
    ));
    match crate::bench_fs::figures(host, opts) {
        Ok(figures) => {
            for (name, value) in figures {
                println!("bench: {name} {value}");
            }
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("bench-fs: {e}");
            eprintln!("bench: the file figures failed");
            ExitStatus::Failed
        }
    }
}

/// The Debian root through Starina against direct (`bench_root`).
fn root_figures(host: &Host, opts: &BenchOptions) -> ExitStatus {
    header(&format!(
        "Debian root: through Starina against booted directly, {} interleaved runs of each",
        crate::bench_root::RUNS
    ));
    match crate::bench_root::figures(host, opts) {
        Ok(figures) => {
            for (name, value) in figures {
                println!("bench: {name} {value}");
            }
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("bench-root: {e}");
            eprintln!("bench: the Debian root figures failed");
            ExitStatus::Failed
        }
    }
}

/// Linux's network through Starina against direct (`bench_net`).
fn net_figures(host: &Host, opts: &BenchOptions) -> ExitStatus {
    header(&format!(
        "network: Linux through Starina against Linux booted directly, {} interleaved boots of each",
        crate::bench_net::runs().unwrap_or(crate::bench_net::RUNS)
    ));
    match crate::bench_net::figures(host, opts) {
        Ok(figures) => {
            for (name, value) in figures {
                println!("bench: {name} {value}");
            }
            ExitStatus::Success
        }
        Err(e) => {
            eprintln!("bench-net: {e}");
            eprintln!("bench: the network figures failed");
            ExitStatus::Failed
        }
    }
}

/// The `bench` profile with and without `--icount`.
fn ipc_figures(host: &Host, opts: &BenchOptions) -> Figures {
    let mut raw = Vec::new();
    for icount in [true, false] {
        let what = format!(
            "bench profile{}",
            if icount { " with --icount" } else { "" }
        );
        header(&what);
        let c = capture(host, &boot_options(opts, "bench", opts.machine, icount));
        let figures = c.raw_figures("");
        if !c.report.status.is_success() || figures.is_empty() {
            c.show_failure(&what);
        }
        raw.push(figures);
    }
    let mut figures = Figures::new();
    for name in ["ipc_roundtrip_0b", "ipc_roundtrip_1k"] {
        for (suffix, values) in [("_instructions", &raw[0]), ("_ns", &raw[1])] {
            if let Some(v) = values.get(name) {
                figures.insert(format!("{name}{suffix}"), v.clone());
            }
        }
    }
    figures.extend(user_ipc_figures(host, opts));
    figures
}

/// The same round trips from user mode, under `--icount`: both ends in
/// ring 3 (`bench_user`: `ipc_roundtrip_0b_instructions_user`) and a
/// user-mode client of the in-kernel echo (`bench_user_kernel`:
/// `..._user_kernel`).
fn user_ipc_figures(host: &Host, opts: &BenchOptions) -> Figures {
    let mut figures = Figures::new();
    for (profile, suffix) in [("bench_user", "_user"), ("bench_user_kernel", "_user_kernel")] {
        let what = format!("{profile} profile with --icount");
        header(&what);
        let c = capture(host, &boot_options(opts, profile, opts.machine, true));
        let raw = c.raw_figures("");
        if !c.report.status.is_success() || raw.is_empty() {
            c.show_failure(&what);
        }
        for name in ["ipc_roundtrip_0b", "ipc_roundtrip_1k"] {
            if let Some(v) = raw.get(name) {
                figures.insert(format!("{name}_instructions{suffix}"), v.clone());
            }
        }
    }
    figures
}

/// Boots the default profile to `starina: ready`.
fn boot_figures(host: &Host, opts: &BenchOptions) -> Figures {
    header(&format!(
        "boot to ready: default profile, {BOOT_RUNS} runs (wall time) and with --icount on 1 and 4 CPUs"
    ));
    let mut walls = Vec::new();
    for i in 1..=BOOT_RUNS {
        let (ms, _) = boot_to_ready(host, opts, false);
        let shown = ms.map_or("?".to_string(), |ms| ms.to_string());
        println!("boot {i}: {shown} ms to '{}'", markers::READY);
        walls.extend(ms);
    }
    let mut figures = Figures::new();
    if walls.len() == BOOT_RUNS {
        walls.sort_unstable();
        figures.insert("boot_ready_ms".into(), walls[BOOT_RUNS / 2].to_string());
    }
    for (cpus, name) in [
        (1, "boot_ready_instructions"),
        (4, "boot_ready_instructions_smp4"),
    ] {
        let (_, tsc) = boot_to_ready_on(host, opts, true, cpus);
        let shown = tsc.map_or("?".to_string(), |t| t.to_string());
        println!("boot with --icount on {cpus} CPU(s): ready at tsc={shown}");
        if let Some(tsc) = tsc {
            figures.insert(name.into(), tsc.to_string());
        }
    }
    figures
}

/// (ms until the ready line, its TSC).
fn boot_to_ready(host: &Host, opts: &BenchOptions, icount: bool) -> (Option<u128>, Option<u64>) {
    boot_to_ready_on(host, opts, icount, 1)
}

/// [`boot_to_ready`] on `cpus` CPUs.
fn boot_to_ready_on(
    host: &Host,
    opts: &BenchOptions,
    icount: bool,
    cpus: u8,
) -> (Option<u128>, Option<u64>) {
    let mut run = boot_options(opts, "default", opts.machine, icount);
    run.cpus = cpus;
    run.until = vec![markers::READY.to_string()];
    let c = capture(host, &run);
    let ms = c.report.matched.first().map(|(_, after)| after.as_millis());
    let tsc = c.console.lines().find_map(markers::ready_tsc);
    if !c.report.status.is_success() || ms.is_none() {
        let what = format!(
            "default profile boot{}",
            if icount { " with --icount" } else { "" }
        );
        c.show_failure(&what);
    }
    (ms, tsc)
}
