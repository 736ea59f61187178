//! The Debian root's figures for `starina bench` (`--root-only` runs only
//! these): the same kernel and the same root image (`linux-guest/
//! build-rootfs.sh`) booted through Starina (partition 2 of a Starina disk,
//! served by its own virtio-blk driver) and directly by QEMU (`run-direct.sh
//! --root`, QEMU's virtio-blk on a raw copy). Prints:
//!
//! - `linux_root_boot_ms_{starina,direct}` and `linux_root_boot_ratio`:
//!   boot to the agent's ready, host wall time, medians of [`RUNS`]
//!   interleaved boots (spans as in `bench_linux`: Starina's from `booting
//!   Linux`, direct's from QEMU's start);
//! - `linux_root_boot_instructions_{starina,direct}` and
//!   `linux_root_boot_instructions_ratio`: one boot of each under `-icount`;
//! - `linux_root_disk_{write,read}_mbps_{starina,direct}`, and
//!   `linux_root_disk_mbps_{starina,direct}` and `linux_root_disk_ratio`
//!   (the lower of write and read): 256 MiB written (`dd conv=fsync`) and
//!   read back with the guest's caches dropped, in a file on the root, as
//!   `dd` reports them; medians of [`RUNS`] interleaved boots;
//! - `exec_attach_true_ms_{p50,p99}`: 50 `scripts/starina exec -- true`
//!   against a running instance (`up`), host wall time of the whole
//!   command (the wrapper's cargo check of the host tool included), and
//!   `exec_cold_true_ms`: `exec -- true` with no instance up (it boots one
//!   for the command), median of 3.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::process::Output;
use std::process::Stdio;
use std::time::Instant;

use crate::bench::Figures;
use crate::bench_linux::boot_direct;
use crate::bench_linux::boot_starina;
use crate::bench_linux::median;
use crate::cli::BenchOptions;
use crate::disk::DiskOptions;
use crate::disk::LinuxRoot;
use crate::exec::TempDir;
use crate::host::Host;
use crate::host::Streams;

/// Interleaved runs of each side for the wall-time figures.
pub const RUNS: usize = 5;
/// `exec -- true` against a running instance.
const ATTACH_RUNS: usize = 50;
/// `exec -- true` booting an instance each time.
const COLD_RUNS: usize = 3;

/// What each side runs for the disk figures: write, drop caches, read.
const DISK_SCRIPT: &str = "dd if=/dev/zero of=/root/bench.bin bs=1M count=256 conv=fsync 2>&1 | tail -1; \
     sync; echo 3 > /proc/sys/vm/drop_caches; \
     dd if=/root/bench.bin of=/dev/null bs=1M 2>&1 | tail -1; rm -f /root/bench.bin";

pub fn figures(host: &Host, opts: &BenchOptions) -> Result<Figures, String> {
    let mut host = host.clone();
    if std::env::var_os("STARINA_HTTP_PORT").is_none() {
        host.http_port = crate::host::free_port().ok_or("no free port for HTTP")?;
    }
    let host = &host;
    let image = debian_image(host)?;
    let tmp = TempDir::new("starina-bench-root").map_err(|e| format!("temporary directory: {e}"))?;
    let result = measure(host, opts, &image, &tmp.0);
    let _ = std::fs::remove_dir_all(&tmp.0);
    result
}

/// The Debian root image (`linux-guest/build-rootfs.sh`, cached after the
/// first build; its progress on stderr).
pub(crate) fn debian_image(host: &Host) -> Result<PathBuf, String> {
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    crate::disk::build_rootfs(
        host,
        &mut Streams {
            out: &mut out,
            err: &mut err,
        },
    )
}

fn measure(host: &Host, opts: &BenchOptions, image: &Path, dir: &Path) -> Result<Figures, String> {
    let disk = DiskOptions {
        path: Some(dir.join("disk.img")),
        size: 64 << 20,
        linux_root: LinuxRoot::Image(image.to_path_buf()),
    };
    let mut figures = Figures::new();
    let (mut boot_s, mut boot_d) = (Vec::new(), Vec::new());
    let (mut disk_s, mut disk_d) = (Vec::new(), Vec::new());
    for i in 1..=RUNS {
        eprintln!("bench-root: run {i}/{RUNS} through Starina (boot, then 256 MiB on the root)");
        boot_s.push(boot_starina(host, opts, Some(&disk), false)?.host_ms);
        disk_s.push(disk_rates(&starina_exec(host, opts, &disk, DISK_SCRIPT)?)?);
        eprintln!("bench-root: run {i}/{RUNS} directly in QEMU");
        boot_d.push(boot_direct(host, Some(image), false)?.host_ms);
        disk_d.push(disk_rates(&direct_run(host, image, DISK_SCRIPT)?)?);
    }
    eprintln!("bench-root: one boot of each under -icount");
    let counted_s = boot_starina(host, opts, Some(&disk), true)?.instructions;
    let counted_d = boot_direct(host, Some(image), true)?.instructions;
    eprintln!("bench-root: runs (interleaved): boot starina {boot_s:.0?} ms, direct {boot_d:.0?} ms");
    eprintln!("bench-root: runs (interleaved): disk (write, read MB/s) starina {disk_s:.0?}, direct {disk_d:.0?}");
    let (s, d) = (median(&mut boot_s), median(&mut boot_d));
    figures.insert("linux_root_boot_ms_starina".into(), format!("{s:.0} ms"));
    figures.insert("linux_root_boot_ms_direct".into(), format!("{d:.0} ms"));
    figures.insert("linux_root_boot_ratio".into(), format!("{:.2}", s / d));
    if let (Some(s), Some(d)) = (counted_s, counted_d.filter(|&d| d > 0)) {
        figures.insert("linux_root_boot_instructions_starina".into(), s.to_string());
        figures.insert("linux_root_boot_instructions_direct".into(), d.to_string());
        let ratio = s as f64 / d as f64;
        figures.insert("linux_root_boot_instructions_ratio".into(), format!("{ratio:.3}"));
    }
    insert_disk(&mut figures, &mut disk_s, &mut disk_d);
    insert_exec(&mut figures, host, opts, &disk)?;
    Ok(figures)
}

/// The disk figures from each side's (write, read) MB/s per run.
fn insert_disk(figures: &mut Figures, s: &mut [(f64, f64)], d: &mut [(f64, f64)]) {
    let side = |runs: &mut [(f64, f64)]| {
        let mut w: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let mut r: Vec<f64> = runs.iter().map(|r| r.1).collect();
        (median(&mut w), median(&mut r))
    };
    let ((sw, sr), (dw, dr)) = (side(s), side(d));
    for (name, v) in [
        ("linux_root_disk_write_mbps_starina", sw),
        ("linux_root_disk_read_mbps_starina", sr),
        ("linux_root_disk_write_mbps_direct", dw),
        ("linux_root_disk_read_mbps_direct", dr),
        ("linux_root_disk_mbps_starina", sw.min(sr)),
        ("linux_root_disk_mbps_direct", dw.min(dr)),
    ] {
        figures.insert(name.into(), format!("{v:.1} MB/s"));
    }
    let ratio = (sw / dw).min(sr / dr);
    figures.insert("linux_root_disk_ratio".into(), format!("{ratio:.2}"));
}

/// `exec -- true` against a running instance, and without one.
fn insert_exec(
    figures: &mut Figures,
    host: &Host,
    opts: &BenchOptions,
    disk: &DiskOptions,
) -> Result<(), String> {
    let disk_path = disk.path.clone().expect("the bench's disk has a path");
    let disk_arg = disk_path.to_string_lossy().into_owned();
    let mut cold = Vec::new();
    for i in 1..=COLD_RUNS {
        eprintln!("bench-root: exec -- true with no instance up ({i}/{COLD_RUNS})");
        cold.push(timed(|| tool(host, opts, &["exec", "--disk", &disk_arg, "--", "true"]))?);
    }
    eprintln!("bench-root: up, then {ATTACH_RUNS} x exec -- true");
    let up = tool(host, opts, &["up", "--disk", &disk_arg, "--timeout", "300"])?;
    let attach = (|| {
        expect_success("up", &up)?;
        (0..ATTACH_RUNS)
            .map(|_| timed(|| tool(host, opts, &["exec", "--disk", &disk_arg, "--", "true"])))
            .collect::<Result<Vec<f64>, String>>()
    })();
    let down = tool(host, opts, &["down"]);
    let mut attach = attach?;
    expect_success("down", &down?)?;
    attach.sort_by(f64::total_cmp);
    let p99 = attach[(attach.len() * 99 / 100).min(attach.len() - 1)];
    figures.insert("exec_attach_true_ms_p50".into(), format!("{:.0} ms", median(&mut attach)));
    figures.insert("exec_attach_true_ms_p99".into(), format!("{p99:.0} ms"));
    figures.insert("exec_cold_true_ms".into(), format!("{:.0} ms", median(&mut cold)));
    Ok(())
}

/// Runs `f` (a tool command that must succeed); its wall time in ms.
fn timed(f: impl FnOnce() -> Result<Output, String>) -> Result<f64, String> {
    let t0 = Instant::now();
    let out = f()?;
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    expect_success("exec -- true", &out)?;
    Ok(ms)
}

fn expect_success(what: &str, out: &Output) -> Result<(), String> {
    match out.status.success() {
        true => Ok(()),
        false => Err(format!(
            "{what} failed ({}):\n{}",
            out.status,
            crate::bench::tail(&String::from_utf8_lossy(&out.stderr), 2000)
        )),
    }
}

/// `scripts/starina ARGS`, as a user runs it (its cargo check of the host
/// tool included in the times), on the kernel being measured, with its
/// instances in a runtime directory of the bench's own.
fn tool(host: &Host, opts: &BenchOptions, args: &[&str]) -> Result<Output, String> {
    let mut command = Command::new(host.root.join("scripts/starina"));
    command.arg(args[0]);
    if matches!(args[0], "up" | "exec") {
        command.arg("--no-build");
        if let Some(kernel) = &opts.kernel {
            command.arg("--kernel").arg(kernel);
        }
    }
    command
        .args(&args[1..])
        .env("XDG_RUNTIME_DIR", runtime_dir())
        .env("STARINA_HTTP_PORT", host.http_port.to_string())
        .current_dir(&host.root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run scripts/starina: {e}"))
}

fn runtime_dir() -> PathBuf {
    std::env::temp_dir().join(format!("starina-bench-root-run-{}", std::process::id()))
}

/// `script` in Linux through Starina (a boot for the command); its output.
fn starina_exec(
    host: &Host,
    opts: &BenchOptions,
    disk: &DiskOptions,
    script: &str,
) -> Result<String, String> {
    let disk_arg = disk.path.as_ref().expect("a path").to_string_lossy().into_owned();
    let out = tool(host, opts, &["exec", "--disk", &disk_arg, "--", "sh", "-c", script])?;
    expect_success("the disk script through Starina", &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `script` in Linux booted directly into a copy of `image`; its output.
fn direct_run(host: &Host, image: &Path, script: &str) -> Result<String, String> {
    let out = Command::new(host.root.join("linux-guest/run-direct.sh"))
        .arg("--root")
        .arg(image)
        .arg("--run")
        .arg(format!("sh -c '{script}'"))
        .current_dir(&host.root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run linux-guest/run-direct.sh: {e}"))?;
    expect_success("the disk script booted directly", &out)?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// (write, read) MB/s from the two `dd` summaries in `output`.
fn disk_rates(output: &str) -> Result<(f64, f64), String> {
    let rates: Vec<f64> = output.lines().filter_map(dd_rate).collect();
    match rates[..] {
        [write, read] => Ok((write, read)),
        _ => Err(format!("expected two dd summaries in:\n{output}")),
    }
}

/// MB/s (10^6 bytes) from `N bytes (...) copied, S s, ...`.
fn dd_rate(line: &str) -> Option<f64> {
    let bytes: f64 = line.split(" bytes").next()?.trim().parse().ok()?;
    let after = line.split("copied, ").nth(1)?;
    let secs: f64 = after.split(" s").next()?.trim().parse().ok()?;
    (secs > 0.0).then(|| bytes / secs / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dd_summaries() {
        let out = "$ sh -c '...'\n\
                   268435456 bytes (268 MB, 256 MiB) copied, 2.5 s, 107 MB/s\n\
                   268435456 bytes (268 MB, 256 MiB) copied, 1.25 s, 215 MB/s\n";
        let (w, r) = disk_rates(out).unwrap();
        assert!((w - 107.374).abs() < 0.01 && (r - 214.748).abs() < 0.01, "{w} {r}");
        assert!(disk_rates("268435456 bytes copied, 2 s\n").is_err());
        assert_eq!(dd_rate("dd: error writing"), None);
        assert_eq!(dd_rate("0 bytes copied, 0 s, 0 kB/s"), None);
    }
}
