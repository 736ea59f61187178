//! `make bench`'s `git status` figures, run by [`crate::bench_fs`] in its
//! interleaved loop: `git status` in a 2,000-file repository (20
//! directories of 100 files, committed) inside Linux on `/mnt/starina` and
//! on QEMU's virtio-9p export of a host directory. git comes with the
//! Debian root (`linux-guest/build-rootfs.sh`), so both sides boot it: the
//! Starina side from partition 2 of a Starina disk, the direct side with
//! `run-direct.sh --root`.
//!
//! Each side keeps its repository for all its boots (a Starina disk, a
//! host directory); the first boot creates and commits it. Every boot
//! runs one untimed `git status` (the warm-up: caches filled, the index
//! refreshed), then [`TIMED`] timed ones; the boot's figure is their
//! median, timed by bash's `EPOCHREALTIME` (microseconds, no process
//! started for the clock).
//!
//! - `fs_git_status_ms_{starina,9p}`: the median of the boots' figures;
//! - `fs_git_status_ratio`: 9p's time over Starina's (higher is better,
//!   as `fs_meta_ratio`).

use std::path::PathBuf;

use crate::bench_fs::run_9p_script;
use crate::bench_fs::starina_exec;
use crate::cli::BenchOptions;
use crate::disk::DiskOptions;
use crate::disk::LinuxRoot;
use crate::exec::TempDir;
use crate::host::Host;
use crate::stats::median;
use crate::stats::spread;

/// Timed `git status` runs in a boot.
pub const TIMED: usize = 5;

/// The native file system on Starina's side: the repository is small.
const DISK_SIZE: u64 = 256 << 20;

/// Run as `bash -c SCRIPT bash DIR` with DIR the file system under test;
/// prints `fsbench: git_status_us N` per timed run. No single quotes: it
/// travels inside them to the direct boot.
const SCRIPT: &str = r#"
set -e
R=$1/gitbench
if [ ! -d $R/.git ]; then
    rm -rf $R
    mkdir -p $R
    cd $R
    git init -q
    for d in $(seq 0 19); do
        mkdir d$d
        for i in $(seq 0 99); do echo "file $d/$i" > d$d/f$i.txt; done
    done
    git add -A
    git -c user.name=bench -c user.email=bench@example.com commit -qm tree
fi
cd $R
echo "fsbench: git_files $(git ls-files | wc -l)"
git status > /dev/null
for n in $(seq 5); do
    t0=${EPOCHREALTIME/./}
    git status > /dev/null
    t1=${EPOCHREALTIME/./}
    echo "fsbench: git_status_us $((t1 - t0))"
done
test -z "$(git status --porcelain)"
"#;

/// Where each side keeps its repository across boots.
pub struct GitSides {
    /// Holds Starina's disk and the 9p export; removed with it.
    tmp: TempDir,
    /// The Debian root image both sides boot.
    image: PathBuf,
}

impl GitSides {
    /// The Debian root (built, or from its cache) and a place for the two
    /// repositories.
    pub fn new(host: &Host) -> Result<GitSides, String> {
        let image = crate::bench_root::debian_image(host)?;
        let tmp =
            TempDir::new("starina-bench-git").map_err(|e| format!("temporary directory: {e}"))?;
        let shared = tmp.0.join("shared");
        std::fs::create_dir(&shared).map_err(|e| format!("{}: {e}", shared.display()))?;
        Ok(GitSides { tmp, image })
    }

    /// One boot of Starina with the Debian root: ms of `git status`.
    pub fn run_starina(&self, host: &Host, opts: &BenchOptions) -> Result<f64, String> {
        let disk = DiskOptions {
            path: Some(self.tmp.0.join("disk.img")),
            size: DISK_SIZE,
            linux_root: LinuxRoot::Image(self.image.clone()),
        };
        let argv = ["bash", "-c", SCRIPT, "bash", "/mnt/starina"];
        let out = starina_exec(host, opts, &argv, disk)?;
        status_ms(&out).ok_or_else(|| format!("the Starina git run gave no figures:\n{out}"))
    }

    /// One direct boot of the Debian root with the 9p export: ms of `git
    /// status`.
    pub fn run_9p(&self, host: &Host) -> Result<f64, String> {
        let out = run_9p_script(
            host,
            &self.tmp.0.join("shared"),
            Some(&self.image),
            "bash",
            SCRIPT,
        )?;
        status_ms(&out).ok_or_else(|| format!("the 9p git run gave no figures:\n{out}"))
    }
}

/// The median of a boot's timed runs, ms; `None` unless all [`TIMED`]
/// are there and the repository had its 2,000 files.
fn status_ms(output: &str) -> Option<f64> {
    let values = |name: &str| -> Vec<f64> {
        output
            .lines()
            .filter_map(|l| l.trim().strip_prefix("fsbench: ")?.strip_prefix(name))
            .filter_map(|v| v.trim().parse().ok())
            .collect()
    };
    let runs: Vec<f64> = values("git_status_us ")
        .iter()
        .map(|us| us / 1000.0)
        .collect();
    let files_ok = values("git_files ") == [2000.0];
    let timed_ok = runs.len() == TIMED && runs.iter().all(|&ms| ms > 0.0);
    (files_ok && timed_ok).then(|| median(&runs)).flatten()
}

/// The figures from each side's per-boot ms (the runs and their spread to
/// stderr).
pub fn figures(starina: &[f64], ninep: &[f64]) -> Vec<(String, String)> {
    eprintln!(
        "bench-fs: git status ms (boots, interleaved): starina {starina:.1?}, 9p {ninep:.1?}"
    );
    let (Some(s), Some(n)) = (median(starina), median(ninep)) else {
        return Vec::new();
    };
    let (s_lo, s_hi) = spread(starina);
    let (n_lo, n_hi) = spread(ninep);
    eprintln!(
        "bench-fs: fs_git_status_ms: starina {s:.1} ({s_lo:.1}..{s_hi:.1}), 9p {n:.1} ({n_lo:.1}..{n_hi:.1})"
    );
    vec![
        ("fs_git_status_ms_starina".into(), format!("{s:.1}")),
        ("fs_git_status_ms_9p".into(), format!("{n:.1}")),
        ("fs_git_status_ratio".into(), format!("{:.2}", n / s)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ms_takes_the_median_and_refuses_partial_runs() {
        let mut out = String::from("$ bash -c ...\nfsbench: git_files 2000\n");
        for us in [90_000, 70_000, 110_000, 80_000, 100_000] {
            out.push_str(&format!("fsbench: git_status_us {us}\n"));
        }
        assert_eq!(status_ms(&out), Some(90.0));
        let short: String = out.lines().take(5).map(|l| format!("{l}\n")).collect();
        assert_eq!(status_ms(&short), None);
        assert_eq!(status_ms(&out.replace("files 2000", "files 1999")), None);
        assert_eq!(status_ms(&out.replace("us 70000", "us 0")), None);
    }

    #[test]
    fn figures_give_ratio_of_9p_over_starina() {
        let f = figures(
            &[50.0, 40.0, 60.0, 45.0, 55.0],
            &[200.0, 100.0, 150.0, 120.0, 180.0],
        );
        let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "fs_git_status_ms_starina",
                "fs_git_status_ms_9p",
                "fs_git_status_ratio"
            ]
        );
        assert_eq!(f[0].1, "50.0");
        assert_eq!(f[1].1, "150.0");
        assert_eq!(f[2].1, "3.00");
        assert!(figures(&[], &[1.0]).is_empty());
    }

    #[test]
    fn the_script_travels_in_single_quotes_and_times_timed_runs() {
        assert!(!SCRIPT.contains('\''));
        assert!(SCRIPT.contains(&format!("for n in $(seq {TIMED}); do")));
    }
}
