//! The Linux microVM's figures for `starina bench`: the same bzImage and
//! initramfs booted through Starina and directly by QEMU, and the
//! `linux_bench` profile (docs/CONTRACTS.md, "The Linux microVM"). Prints:
//!
//! - `linux_boot_ms_starina`: from the linux server's `booting Linux` to
//!   `linux: guest ready`, host wall time seen on the console (median of
//!   RUNS, default 5, interleaved with the direct boots);
//! - `linux_boot_ms_direct`: QEMU booting the same files itself, from its
//!   start to the agent's Ready frame (`starina direct`, median of RUNS);
//! - `linux_boot_ratio`: Starina over direct (wall time: it swings between
//!   runs, so the runs and their spread go to stderr);
//! - `linux_boot_instructions_{starina,direct}` and
//!   `linux_boot_instructions_ratio`: one boot of each under `-icount
//!   shift=0`, counted in guest instructions (see [`boot_instructions`]);
//! - `vm_overhead_kib`: the kernel's VM structures beyond guest RAM;
//! - from `linux_bench` with and without `--icount`: `exec_true_roundtrip_ms`,
//!   `exec_true_roundtrip_instructions`, `linux_pipe_roundtrip_instructions`,
//!   `ipc_vs_pipe_ratio`, `guest_fork_exec_true_instructions` and
//!   `exec_true_vs_guest_fork_ratio` (apps/linux_bench says how each is
//!   measured), and `guest_tsc_loop_ppm`, the check that the guest's TSC
//!   counts instructions there.
//!
//! # The boot count
//!
//! Under `-icount shift=0` QEMU's virtual clock advances one nanosecond
//! per instruction executed (and, while every CPU halts, by the time until
//! the next timer), and the TSC reads that clock. The guest agent prints
//! its TSC in its ready line (`starina-agent: ready (Linux ...) tsc=N`), so
//! both boots end at the same guest event, read by the same instruction:
//!
//! - direct: the guest's power-on is QEMU's (TSC 0), so the count is N: the
//!   microvm firmware, Linux and the agent up to its ready line (QEMU puts
//!   the kernel and initramfs in memory before the clock starts);
//! - Starina: the guest's TSC is the host's (no offset), and its power-on
//!   is the linux server's `booting Linux` line, once the kernel and
//!   initramfs are in guest memory. That line's time stamp is Starina's
//!   clock (ns since the kernel started), which `starina: ready (tsc=T)`
//!   ties to the TSC: the TSC at `booting Linux` is T plus the time
//!   between the two lines (1 GHz under icount), and the count is N minus
//!   it. It includes everything the machine ran meanwhile: the guest, the
//!   host kernel, the VMM, the other components.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;
use std::process::Stdio;
use std::time::Instant;

use crate::bench::boot_options;
use crate::bench::capture;
use crate::bench::tail;
use crate::cli::BenchOptions;
use crate::disk::DiskOptions;
use crate::exec::TempDir;
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
pub(crate) struct StarinaBoot {
    pub host_ms: f64,
    /// Guest instructions under icount (see the module docs).
    pub instructions: Option<u64>,
    overhead_kib: Option<u64>,
}

/// One direct boot.
pub(crate) struct DirectBoot {
    pub host_ms: f64,
    /// Under icount: the guest's TSC at the agent's ready line.
    pub instructions: Option<u64>,
}

pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

pub fn bench(host: &Host, opts: &BenchOptions) -> Result<(), String> {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
        .max(1);
    let mut host = host.clone();
    if std::env::var_os("STARINA_HTTP_PORT").is_none() {
        host.http_port = 18480;
    }
    let (mut starina_ms, mut direct_ms, mut overhead) = (Vec::new(), Vec::new(), None);
    for i in 1..=runs {
        eprintln!("bench-linux: boot {i}/{runs} through Starina");
        let boot = boot_starina(&host, opts, None, false)?;
        starina_ms.push(boot.host_ms);
        overhead = boot.overhead_kib.or(overhead);
        eprintln!("bench-linux: boot {i}/{runs} directly in QEMU");
        direct_ms.push(boot_direct(&host, None, false)?.host_ms);
    }
    eprintln!("bench-linux: one more boot of each under -icount");
    let counted_starina = boot_starina(&host, opts, None, true)?.instructions;
    let counted_direct = boot_direct(&host, None, true)?.instructions;
    eprintln!(
        "bench-linux: profile linux_bench (exec, pipe ping-pong, fork+exec, IPC side by side)"
    );
    let timed = linux_bench(&host, opts, false)?;
    eprintln!("bench-linux: profile linux_bench under -icount");
    let counted = linux_bench(&host, opts, true)?;
    let runs_line = format!(
        "bench-linux: runs (interleaved): starina {starina_ms:.0?} ms, direct {direct_ms:.0?} ms"
    );
    let spread = |v: &[f64]| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        format!("{lo:.0}..{hi:.0} ms")
    };
    let spreads = format!(
        "bench-linux: spread: starina {}, direct {}",
        spread(&starina_ms),
        spread(&direct_ms)
    );
    let (s, d) = (median(&mut starina_ms), median(&mut direct_ms));
    println!("bench: linux_boot_ms_starina {s:.0} ms");
    println!("bench: linux_boot_ms_direct {d:.0} ms");
    println!("bench: linux_boot_ratio {:.2}", s / d);
    let mut missing = Vec::new();
    match (counted_starina, counted_direct) {
        (Some(s), Some(d)) if d > 0 => {
            println!("bench: linux_boot_instructions_starina {s}");
            println!("bench: linux_boot_instructions_direct {d}");
            println!(
                "bench: linux_boot_instructions_ratio {:.3}",
                s as f64 / d as f64
            );
        }
        _ => missing.push("linux_boot_instructions_ratio"),
    }
    if let Some(kib) = overhead {
        println!("bench: vm_overhead_kib {kib} KiB");
    }
    missing.extend(print_linux_bench(&timed, &counted));
    eprintln!("{runs_line}");
    eprintln!("{spreads}");
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
    // Both in guest instructions under icount: Starina's clock and the
    // guest's TSC read the same virtual clock.
    let fork = counted.get("guest_fork_exec_true_tsc");
    match fork {
        Some(n) => println!("bench: guest_fork_exec_true_instructions {n}"),
        None => missing.push("guest_fork_exec_true_instructions"),
    }
    match (counted.get("exec_true_roundtrip"), fork) {
        (Some(&exec), Some(&fork)) if fork > 0 => println!(
            "bench: exec_true_vs_guest_fork_ratio {:.2}",
            exec as f64 / fork as f64
        ),
        _ => missing.push("exec_true_vs_guest_fork_ratio"),
    }
    missing.extend(print_native_commands(timed, counted, fork));
    match counted.get("guest_tsc_loop_ppm") {
        Some(ppm) => println!("bench: guest_tsc_loop_ppm {ppm}"),
        None => missing.push("guest_tsc_loop_ppm"),
    }
    missing
}

/// The native command figures (issue 13); the names of those missing.
fn print_native_commands(
    timed: &BTreeMap<String, u64>,
    counted: &BTreeMap<String, u64>,
    guest_fork: Option<&u64>,
) -> Vec<&'static str> {
    let mut missing = Vec::new();
    let native = counted.get("native_cmd_roundtrip");
    match native {
        Some(n) => println!("bench: native_cmd_roundtrip_instructions {n}"),
        None => missing.push("native_cmd_roundtrip_instructions"),
    }
    // Linux over native, both in guest instructions of the same boot.
    match (guest_fork, native) {
        (Some(&fork), Some(&native)) if native > 0 => println!(
            "bench: native_vs_linux_spawn_ratio {:.2}",
            fork as f64 / native as f64
        ),
        _ => missing.push("native_vs_linux_spawn_ratio"),
    }
    // Wall time (the run without -icount): 64 MiB through cat | wc -c.
    for (raw, name) in [
        ("native_pipe_64mib", "pipe_throughput_mbps_native"),
        ("linux_pipe_64mib", "pipe_throughput_mbps_linux"),
    ] {
        match timed.get(raw) {
            Some(&ns) if ns > 0 => println!(
                "bench: {name} {:.1} MB/s",
                (64u64 << 20) as f64 / (ns as f64 / 1e9) / 1e6
            ),
            _ => missing.push(name),
        }
    }
    missing
}

/// One boot of profile `linux` to the guest's ready line, on the bench's
/// disk or on `disk` (e.g. one with a Linux root).
pub(crate) fn boot_starina(
    host: &Host,
    opts: &BenchOptions,
    disk: Option<&DiskOptions>,
    icount: bool,
) -> Result<StarinaBoot, String> {
    let mut run_opts = boot_options(opts, "linux", Machine::Q35, icount);
    if let Some(disk) = disk {
        run_opts.disk = disk.clone();
    }
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
    let (Some((t0, _)), Some((t1, _))) = (start, ready) else {
        return Err("Linux did not come up through Starina (no 'guest ready' line)".into());
    };
    let text: Vec<&str> = lines.iter().map(|(_, l)| l.as_str()).collect();
    Ok(StarinaBoot {
        host_ms: t1.duration_since(*t0).as_secs_f64() * 1000.0,
        instructions: if icount {
            boot_instructions(&text, ICOUNT_TSC_MHZ)
        } else {
            None
        },
        overhead_kib,
    })
}

/// Under `-icount shift=0` the TSC ticks once per nanosecond.
const ICOUNT_TSC_MHZ: u64 = 1000;

/// The Starina boot's guest instructions from its console lines (see the
/// module docs): the agent's TSC at ready minus the TSC at `booting Linux`,
/// on a machine whose TSC ticks `tsc_mhz` times a microsecond, once per
/// instruction (QEMU's icount, Bochs).
pub(crate) fn boot_instructions(lines: &[&str], tsc_mhz: u64) -> Option<u64> {
    let (ready_tsc, ready_ns) = lines
        .iter()
        .find_map(|l| Some((markers::ready_tsc(l)?, markers::timestamp_ns(l)?)))?;
    let booting_ns = lines
        .iter()
        .find(|l| l.contains(markers::LINUX_BOOTING))
        .and_then(|l| markers::timestamp_ns(l))?;
    let agent_tsc = lines.iter().find_map(|l| agent_ready_tsc(l))?;
    let booting_tsc = ready_tsc.checked_add(booting_ns.checked_sub(ready_ns)? * tsc_mhz / 1000)?;
    agent_tsc.checked_sub(booting_tsc)
}

/// `... starina-agent: ready (Linux <release>) tsc=<n>` -> n.
fn agent_ready_tsc(line: &str) -> Option<u64> {
    let rest = &line[line.find(markers::AGENT_READY)?..];
    let digits = &rest[rest.find(" tsc=")? + " tsc=".len()..];
    let end = digits
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(digits.len());
    digits[..end].parse().ok()
}

/// One direct boot (into the root image `root`, if given): host ms from
/// QEMU's start to the agent's Ready; under icount also the agent's TSC at
/// ready, from the serial console.
pub(crate) fn boot_direct(
    host: &Host,
    root: Option<&std::path::Path>,
    icount: bool,
) -> Result<DirectBoot, String> {
    let tmp =
        TempDir::new("starina-bench-direct").map_err(|e| format!("temporary directory: {e}"))?;
    let serial = tmp.0.join("serial.log");
    let mut command = Command::new(host.root.join("linux-guest/run-direct.sh"));
    if let Some(root) = root {
        command.arg("--root").arg(root);
    }
    command
        .args(["--run", "true", "--serial-log"])
        .arg(&serial)
        .current_dir(&host.root)
        .stdin(Stdio::null());
    if icount {
        command.env("QEMU_EXTRA", "-icount shift=0");
    }
    let out = command
        .output()
        .map_err(|e| format!("cannot run linux-guest/run-direct.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let prefix = "boot time: QEMU start -> Ready frame ";
    let secs = stdout
        .lines()
        .find_map(|l| l.strip_prefix(prefix))
        .and_then(|rest| rest.split(' ').next()?.parse::<f64>().ok());
    let console = std::fs::read_to_string(&serial).unwrap_or_default();
    let tsc = console.lines().find_map(agent_ready_tsc);
    match (secs, tsc.is_some() || !icount) {
        (Some(s), true) => Ok(DirectBoot {
            host_ms: s * 1000.0,
            instructions: tsc.filter(|_| icount),
        }),
        _ => {
            let err = String::from_utf8_lossy(&out.stderr);
            Err(format!(
                "direct boot{} failed:\n{}{}{}",
                if icount { " under -icount" } else { "" },
                tail(&stdout, 2000),
                tail(&err, 2000),
                tail(&console, 2000)
            ))
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starina_boot_instructions_from_the_console() {
        let lines = [
            "[   0.002644] INFO  kernel: starina: ready (tsc=21716393) profile 'linux'",
            "[   0.038198] INFO  linux: booting Linux: 256 MiB RAM, kernel 2149 KiB",
            "[   0.136237] INFO  linux: [guest] starina-agent: ready (Linux 6.12.117) tsc=155722031",
            "[   0.136690] INFO  linux: guest ready: Linux 6.12.117",
        ];
        // TSC at `booting Linux`: 21716393 + (38198000 - 2644000).
        assert_eq!(
            boot_instructions(&lines, ICOUNT_TSC_MHZ),
            Some(155722031 - 57270393)
        );
        assert_eq!(boot_instructions(&lines[1..], ICOUNT_TSC_MHZ), None);
        assert_eq!(
            boot_instructions(&[lines[0], lines[1], lines[3]], ICOUNT_TSC_MHZ),
            None
        );
    }

    #[test]
    fn agent_ready_line() {
        let line = "starina-agent: ready (Linux 6.12.117) tsc=75983507";
        assert_eq!(agent_ready_tsc(line), Some(75983507));
        assert_eq!(
            agent_ready_tsc("starina-agent: ready (Linux 6.12.117)"),
            None
        );
        assert_eq!(agent_ready_tsc("something else tsc=5"), None);
    }
}
