//! `make bench`'s file figures: the same commands inside Linux on Starina's
//! `/mnt/starina` (virtio-fs, the linux server's FUSE bridge, the fs
//! server, ext2 on virtio-blk) and on QEMU's virtio-9p export of a host
//! directory (`-virtfs local`, `security_model=mapped-xattr`, msize
//! 512 KiB) into the same kernel booted directly by the same QEMU
//! (`linux-guest/run-direct.sh`). [`RUNS`] boots of each, interleaved;
//! each figure is the median (the runs and their spread go to stderr):
//!
//! - `fs_seq_write_mbps_{starina,9p}`: 64 MiB by `dd bs=1M conv=fsync`;
//! - `fs_seq_read_mbps_{starina,9p}`: the file read back by `dd bs=1M`
//!   after `drop_caches` (cold);
//! - `fs_seq_ratio`: the lower of the two Starina/9p ratios;
//! - `fs_meta_ops_per_s_{starina,9p}`: 2,000 files created (shell
//!   redirections), stat'ed (`ls -l`) and unlinked (`rm`), 6,000 operations
//!   over their time; `fs_meta_ratio` is Starina's over 9p's;
//! - `fs_git_status_ms_{starina,9p}` and `fs_git_status_ratio`: `git
//!   status` in a 2,000-file repository, on the Debian root
//!   ([`crate::bench_fs_git`], its boots interleaved with these);
//! - `fs_native_ops_per_s`: the same metadata loop from a native component
//!   (`apps/fs_bench`) straight to the fs server, median of [`RUNS`] boots.
//!
//! Time inside the guest is `/proc/uptime` (10 ms steps; each phase takes
//! seconds). Both sides run under QEMU's software CPU, so the figures
//! compare the two file paths, not this machine's disk.

use std::path::Path;
use std::process::Command;
use std::process::Stdio;

use crate::bench_fs_git::GitSides;
use crate::cli::BenchOptions;
use crate::disk::DiskOptions;
use crate::exec::ExecOptions;
use crate::exec::TempDir;
use crate::host::Host;
use crate::host::Streams;

/// Boots of each side.
pub const RUNS: usize = 5;
/// The figures, in print order.
pub const ORDER: [&str; 12] = [
    "fs_seq_write_mbps_starina",
    "fs_seq_write_mbps_9p",
    "fs_seq_read_mbps_starina",
    "fs_seq_read_mbps_9p",
    "fs_seq_ratio",
    "fs_meta_ops_per_s_starina",
    "fs_meta_ops_per_s_9p",
    "fs_meta_ratio",
    "fs_git_status_ms_starina",
    "fs_git_status_ms_9p",
    "fs_git_status_ratio",
    "fs_native_ops_per_s",
];

/// The disk Starina's side runs on (sparse): room for the 64 MiB file.
const DISK_SIZE: u64 = 512 << 20;

/// The commands, run as `sh -c SCRIPT` in a directory of the file system
/// under test (`$1`); prints `fsbench: <name> <seconds>` per phase. No
/// single quotes: it travels inside them to the direct boot.
const SCRIPT: &str = r#"
set -e
now() { cut -d" " -f1 /proc/uptime; }
D=$1/fsbench
rm -rf $D
mkdir -p $D
sync
t0=$(now)
dd if=/dev/zero of=$D/big bs=1M count=64 conv=fsync 2>/dev/null
t1=$(now)
sync
echo 3 > /proc/sys/vm/drop_caches
t2=$(now)
dd if=$D/big of=/dev/null bs=1M 2>/dev/null
t3=$(now)
rm $D/big
mkdir $D/m
t4=$(now)
i=0
while [ $i -lt 2000 ]; do : > $D/m/f$i; i=$((i+1)); done
ls -l $D/m > /dev/null
rm -r $D/m
t5=$(now)
echo "fsbench: write_s $(echo "$t1 $t0" | awk "{print \$1-\$2}")"
echo "fsbench: read_s $(echo "$t3 $t2" | awk "{print \$1-\$2}")"
echo "fsbench: meta_s $(echo "$t5 $t4" | awk "{print \$1-\$2}")"
"#;

/// One run's phases, seconds.
#[derive(Clone, Copy, Debug, Default)]
struct Phases {
    write_s: f64,
    read_s: f64,
    meta_s: f64,
}

impl Phases {
    fn parse(output: &str) -> Option<Phases> {
        let value = |name: &str| {
            output.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("fsbench: ")?
                    .strip_prefix(name)?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        let p = Phases {
            write_s: value("write_s")?,
            read_s: value("read_s")?,
            meta_s: value("meta_s")?,
        };
        (p.write_s > 0.0 && p.read_s > 0.0 && p.meta_s > 0.0).then_some(p)
    }

    fn write_mbps(&self) -> f64 {
        64.0 * 1.048_576 / self.write_s
    }
    fn read_mbps(&self) -> f64 {
        64.0 * 1.048_576 / self.read_s
    }
    fn meta_ops(&self) -> f64 {
        6000.0 / self.meta_s
    }
}

/// The figures, or why they could not be made.
pub fn figures(host: &Host, opts: &BenchOptions) -> Result<Vec<(String, String)>, String> {
    let git = GitSides::new(host)?;
    let (mut starina, mut ninep) = (Vec::new(), Vec::new());
    let (mut git_starina, mut git_9p) = (Vec::new(), Vec::new());
    for i in 1..=RUNS {
        eprintln!("bench-fs: run {i}/{RUNS}: Starina (/mnt/starina over virtio-fs)");
        starina.push(run_starina(host, opts)?);
        eprintln!("bench-fs: run {i}/{RUNS}: Linux direct (virtio-9p)");
        ninep.push(run_9p(host)?);
        eprintln!("bench-fs: run {i}/{RUNS}: git status, Starina with the Debian root");
        git_starina.push(git.run_starina(host, opts)?);
        eprintln!("bench-fs: run {i}/{RUNS}: git status, Debian root direct (virtio-9p)");
        git_9p.push(git.run_9p(host)?);
    }
    let mut native = Vec::new();
    for i in 1..=RUNS {
        eprintln!("bench-fs: run {i}/{RUNS}: native (profile fs_bench)");
        native.push(run_native(host, opts)?);
    }
    let mut out = phase_figures(&starina, &ninep);
    out.extend(crate::bench_fs_git::figures(&git_starina, &git_9p));
    native.sort_unstable();
    eprintln!("bench-fs: fs_native_ops_per_s runs {native:?}");
    out.push((
        "fs_native_ops_per_s".into(),
        native[native.len() / 2].to_string(),
    ));
    Ok(out)
}

/// The dd and metadata figures from each side's runs (the runs and their
/// spread to stderr).
fn phase_figures(starina: &[Phases], ninep: &[Phases]) -> Vec<(String, String)> {
    eprintln!("bench-fs: starina runs {starina:.2?}");
    eprintln!("bench-fs: 9p runs      {ninep:.2?}");
    let med = |runs: &[Phases], f: fn(&Phases) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        let spread = (v[0], v[v.len() - 1]);
        (v[v.len() / 2], spread)
    };
    let mut out = Vec::new();
    let mut ratios = Vec::new();
    for (name, f) in [
        (
            "fs_seq_write_mbps",
            Phases::write_mbps as fn(&Phases) -> f64,
        ),
        ("fs_seq_read_mbps", Phases::read_mbps),
        ("fs_meta_ops_per_s", Phases::meta_ops),
    ] {
        let (s, s_spread) = med(starina, f);
        let (n, n_spread) = med(ninep, f);
        eprintln!(
            "bench-fs: {name}: starina {s:.1} ({:.1}..{:.1}), 9p {n:.1} ({:.1}..{:.1})",
            s_spread.0, s_spread.1, n_spread.0, n_spread.1
        );
        out.push((format!("{name}_starina"), format!("{s:.1}")));
        out.push((format!("{name}_9p"), format!("{n:.1}")));
        ratios.push(s / n);
        match ratios[..] {
            [write, read] => out.push(("fs_seq_ratio".into(), format!("{:.2}", write.min(read)))),
            [_, _, meta] => out.push(("fs_meta_ratio".into(), format!("{meta:.2}"))),
            _ => {}
        }
    }
    out
}

/// One boot of profile `fs_bench` on a fresh disk: its ops per second.
fn run_native(host: &Host, opts: &BenchOptions) -> Result<u64, String> {
    let tmp = TempDir::new("starina-bench-fs").map_err(|e| format!("temporary directory: {e}"))?;
    let mut run = crate::bench::boot_options(opts, "fs_bench", opts.machine, false);
    run.disk = DiskOptions {
        path: Some(tmp.0.join("disk.img")),
        size: DISK_SIZE,
        ..DiskOptions::default()
    };
    let c = crate::bench::capture(host, &run);
    let figures = c.raw_figures("  ");
    match figures
        .get("fs_native_ops_per_s")
        .and_then(|v| v.parse().ok())
    {
        Some(v) if c.report.status.is_success() => Ok(v),
        _ => {
            c.show_failure("fs_bench");
            Err("the native file benchmark gave no figure".into())
        }
    }
}

/// One boot of Starina's `linux` profile on a fresh disk, the script on
/// `/mnt/starina`.
fn run_starina(host: &Host, opts: &BenchOptions) -> Result<Phases, String> {
    let tmp = TempDir::new("starina-bench-fs").map_err(|e| format!("temporary directory: {e}"))?;
    let disk = DiskOptions {
        path: Some(tmp.0.join("disk.img")),
        size: DISK_SIZE,
        ..DiskOptions::default()
    };
    let out = starina_exec(
        host,
        opts,
        &["sh", "-c", SCRIPT, "sh", "/mnt/starina"],
        disk,
    )?;
    Phases::parse(&out).ok_or_else(|| format!("the Starina run gave no figures:\n{out}"))
}

/// `argv` in Linux through Starina on `disk` (a boot for the command):
/// its stdout, or why it failed.
pub(crate) fn starina_exec(
    host: &Host,
    opts: &BenchOptions,
    argv: &[&str],
    disk: DiskOptions,
) -> Result<String, String> {
    let mut exec = ExecOptions::new(argv);
    exec.build = false;
    exec.kernel = opts.kernel.clone();
    exec.timeout = Some(900.0);
    exec.disk = disk;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut io = Streams {
        out: &mut out,
        err: &mut err,
    };
    let status = crate::exec::exec(host, &exec, Box::new(std::io::empty()), &mut io);
    let output = String::from_utf8_lossy(&out).into_owned();
    match status.is_success() {
        true => Ok(output),
        false => Err(format!(
            "the command through Starina failed (exit {}):\n{output}\n{}",
            status.code(),
            String::from_utf8_lossy(&err)
        )),
    }
}

/// One direct boot with a host directory exported over virtio-9p, the
/// script on its mount.
fn run_9p(host: &Host) -> Result<Phases, String> {
    let tmp = TempDir::new("starina-bench-9p").map_err(|e| format!("temporary directory: {e}"))?;
    let shared = tmp.0.join("shared");
    std::fs::create_dir(&shared).map_err(|e| format!("{}: {e}", shared.display()))?;
    let out = run_9p_script(host, &shared, None, "sh", SCRIPT)?;
    Phases::parse(&out).ok_or_else(|| format!("the 9p run gave no figures:\n{out}"))
}

/// One direct boot (into the Debian root `root`, or the initramfs) with
/// `shared` exported over virtio-9p: `SHELL -c SCRIPT SHELL MOUNT` on
/// its mount; the output. `script` has no single quotes.
pub(crate) fn run_9p_script(
    host: &Host,
    shared: &Path,
    root: Option<&Path>,
    shell: &str,
    script: &str,
) -> Result<String, String> {
    let tmp = TempDir::new("starina-bench-9p").map_err(|e| format!("temporary directory: {e}"))?;
    let qemu_extra = format!(
        "-fsdev local,id=fs9p,path={},security_model=mapped-xattr -device virtio-9p-device,fsdev=fs9p,mount_tag=bench9p",
        shared.display()
    );
    let command = format!(
        "sh -c 'mkdir -p /mnt/9p && mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 bench9p /mnt/9p && {shell} -c \"$0\" {shell} /mnt/9p' '{script}'"
    );
    run_direct(host, &tmp.0, root, &qemu_extra, &command)
}

fn run_direct(
    host: &Host,
    tmp: &Path,
    root: Option<&Path>,
    qemu_extra: &str,
    command: &str,
) -> Result<String, String> {
    let serial = tmp.join("serial.log");
    let mut direct = Command::new(host.root.join("linux-guest/run-direct.sh"));
    if let Some(root) = root {
        direct.arg("--root").arg(root);
    }
    let out = direct
        .arg("--run")
        .arg(command)
        .arg("--serial-log")
        .arg(&serial)
        .arg("--timeout")
        .arg("900")
        .env("QEMU_EXTRA", qemu_extra)
        .current_dir(&host.root)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run linux-guest/run-direct.sh: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "direct boot failed:\n{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_parse_and_refuse_what_is_missing() {
        let out = "x\nfsbench: write_s 2.5\nfsbench: read_s 1.25\nfsbench: meta_s 3\n";
        let p = Phases::parse(out).unwrap();
        assert!((p.write_mbps() - 26.843).abs() < 0.01);
        assert!((p.meta_ops() - 2000.0).abs() < 0.01);
        assert!(Phases::parse("fsbench: write_s 2.5\nfsbench: read_s 1\n").is_none());
        assert!(
            Phases::parse("fsbench: write_s 0\nfsbench: read_s 1\nfsbench: meta_s 1\n").is_none()
        );
    }

    #[test]
    fn the_figures_come_in_order() {
        let run = |s: f64| Phases {
            write_s: s,
            read_s: s,
            meta_s: s,
        };
        let mut names: Vec<String> = phase_figures(&[run(1.0)], &[run(2.0)])
            .into_iter()
            .map(|(name, _)| name)
            .collect();
        let git = crate::bench_fs_git::figures(&[1.0], &[2.0]);
        names.extend(git.into_iter().map(|(name, _)| name));
        names.push("fs_native_ops_per_s".into());
        assert_eq!(names, ORDER);
    }

    #[test]
    fn the_script_travels_in_single_quotes() {
        assert!(!SCRIPT.contains('\''));
    }
}
