//! The Linux microVM's figures for `starina bench`: the same bzImage and
//! initramfs booted through Starina and directly by QEMU, and the
//! `linux_bench` profile (docs/CONTRACTS.md, "The Linux microVM"). Prints:
//!
//! - `linux_boot_ms_starina`: from the linux server's `booting Linux` to
//!   `linux: guest ready`, host wall time seen on the console (median of RUNS);
//! - `linux_boot_ms_direct`: QEMU booting the same files itself, from its
//!   start to the agent's Ready frame (`starina direct`, median of RUNS);
//! - `linux_boot_ratio`: Starina over direct;
//! - `linux_boot_instructions_starina`: the Starina boot under `-icount`
//!   (guest instructions between the two lines' time stamps);
//! - `vm_overhead_kib`: the kernel's VM structures beyond guest RAM;
//! - from `linux_bench` with and without `--icount`: `exec_true_roundtrip_ms`,
//!   `exec_true_roundtrip_instructions`, `linux_pipe_roundtrip_instructions`
//!   and `ipc_vs_pipe_ratio` (apps/linux_bench says how each is measured).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::time::Instant;

use crate::bench::boot_options;
use crate::bench::capture;
use crate::bench::tail;
use crate::cli::BenchOptions;
use crate::host::Host;
use crate::host::Streams;
use crate::markers;
use crate::qemu::Machine;
use crate::run::run;

/// Console lines with the time each arrived.
#[derive(Default)]
struct TimedLines {
    pending: Vec<u8>,
    lines: Vec<(Instant, String)>,
}

impl Write for TimedLines {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.pending.extend_from_slice(data);
        while let Some(at) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=at).collect();
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            self.lines.push((Instant::now(), text));
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One Starina boot of profile `linux`.
struct StarinaBoot {
    host_ms: f64,
    guest_ns: Option<u64>,
    overhead_kib: Option<u64>,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn bench(host: &Host, opts: &BenchOptions) -> Result<(), String> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3)
        .max(1);
    let mut host = host.clone();
    if std::env::var_os("STARINA_HTTP_PORT").is_none() {
        host.http_port = 18480;
    }
    let (mut starina_ms, mut direct_ms, mut overhead) = (Vec::new(), Vec::new(), None);
    for i in 1..=runs {
        eprintln!("bench-linux: boot {i}/{runs} through Starina");
        let boot = boot_starina(&host, opts, false)?;
        starina_ms.push(boot.host_ms);
        overhead = boot.overhead_kib.or(overhead);
        eprintln!("bench-linux: boot {i}/{runs} directly in QEMU");
        direct_ms.push(boot_direct(&host)?);
    }
    eprintln!("bench-linux: one more boot through Starina under -icount");
    let instructions = boot_starina(&host, opts, true)?.guest_ns;
    eprintln!("bench-linux: profile linux_bench (exec, pipe ping-pong, IPC side by side)");
    let timed = linux_bench(&host, opts, false)?;
    eprintln!("bench-linux: profile linux_bench under -icount");
    let counted = linux_bench(&host, opts, true)?;
    let runs_line =
        format!("bench-linux: runs: starina {starina_ms:.0?} ms, direct {direct_ms:.0?} ms");
    let (s, d) = (median(&mut starina_ms), median(&mut direct_ms));
    println!("bench: linux_boot_ms_starina {s:.0} ms");
    println!("bench: linux_boot_ms_direct {d:.0} ms");
    println!("bench: linux_boot_ratio {:.2}", s / d);
    if let Some(n) = instructions {
        println!("bench: linux_boot_instructions_starina {n}");
    }
    if let Some(kib) = overhead {
        println!("bench: vm_overhead_kib {kib} KiB");
    }
    let missing = print_linux_bench(&timed, &counted);
    eprintln!("{runs_line}");
    if !missing.is_empty() {
        return Err(format!("missing figures: {}", missing.join(", ")));
    }
    Ok(())
}

/// Prints the `linux_bench` figures; the names of those missing.
fn print_linux_bench(
    timed: &BTreeMap<String, u64>,
    counted: &BTreeMap<String, u64>,
) -> Vec<&'static str> {
    let mut missing = Vec::new();
    match timed.get("exec_true_roundtrip") {
        Some(ns) => println!("bench: exec_true_roundtrip_ms {:.2} ms", *ns as f64 / 1e6),
        None => missing.push("exec_true_roundtrip_ms"),
    }
    match counted.get("exec_true_roundtrip") {
        Some(n) => println!("bench: exec_true_roundtrip_instructions {n}"),
        None => missing.push("exec_true_roundtrip_instructions"),
    }
    let pipe = counted.get("linux_pipe_roundtrip");
    match pipe {
        Some(n) => println!("bench: linux_pipe_roundtrip_instructions {n}"),
        None => missing.push("linux_pipe_roundtrip_instructions"),
    }
    match (pipe, counted.get("ipc_roundtrip_0b")) {
        (Some(&pipe), Some(&ipc)) if ipc > 0 => {
            println!("bench: ipc_vs_pipe_ratio {:.2}", pipe as f64 / ipc as f64)
        }
        _ => missing.push("ipc_vs_pipe_ratio"),
    }
    missing
}

fn boot_starina(host: &Host, opts: &BenchOptions, icount: bool) -> Result<StarinaBoot, String> {
    let mut run_opts = boot_options(opts, "linux", Machine::Q35, icount);
    run_opts.until = vec![markers::LINUX_GUEST_READY.to_string()];
    let mut console = TimedLines::default();
    let mut err = std::io::sink();
    run(
        host,
        &run_opts,
        &mut Streams {
            out: &mut console,
            err: &mut err,
        },
    );
    let lines = &console.lines;
    let overhead_kib = lines
        .iter()
        .find_map(|(_, l)| markers::vm_structures_kib(l));
    let start = lines
        .iter()
        .find(|(_, l)| l.contains(markers::LINUX_BOOTING));
    let ready = lines
        .iter()
        .find(|(_, l)| l.contains(markers::LINUX_GUEST_READY));
    let (Some((t0, l0)), Some((t1, l1))) = (start, ready) else {
        return Err("Linux did not come up through Starina (no 'guest ready' line)".into());
    };
    let guest_ns = markers::timestamp_ns(l1)
        .zip(markers::timestamp_ns(l0))
        .map(|(b, a)| b.saturating_sub(a));
    Ok(StarinaBoot {
        host_ms: t1.duration_since(*t0).as_secs_f64() * 1000.0,
        guest_ns,
        overhead_kib,
    })
}

/// One direct boot: host ms from QEMU's start to the agent's Ready.
fn boot_direct(host: &Host) -> Result<f64, String> {
    let out = Command::new(host.root.join("linux-guest/run-direct.sh"))
        .args(["--run", "true"])
        .current_dir(&host.root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run linux-guest/run-direct.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = "boot time: QEMU start -> Ready frame ";
    let secs = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split(' ').next()?.parse::<f64>().ok());
    secs.map(|s| s * 1000.0).ok_or_else(|| {
        let err = String::from_utf8_lossy(&out.stderr);
        format!(
            "direct boot failed:\n{}{}",
            tail(&stdout, 2000),
            tail(&err, 2000)
        )
    })
}

/// One boot of profile `linux_bench`: its `bench-raw:` figures.
fn linux_bench(
    host: &Host,
    opts: &BenchOptions,
    icount: bool,
) -> Result<BTreeMap<String, u64>, String> {
    let c = capture(
        host,
        &boot_options(opts, "linux_bench", Machine::Q35, icount),
    );
    let raw: BTreeMap<String, u64> = c
        .raw_figures("  ")
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
        .collect();
    if !c.report.status.is_success() || raw.is_empty() {
        return Err(format!(
            "profile linux_bench{} failed (exit status {}):\n{}{}",
            if icount { " under -icount" } else { "" },
            c.report.status,
            tail(&c.console, 3000),
            tail(&c.messages, 2000)
        ));
    }
    Ok(raw)
}
