//! What user mode costs httpd (`starina bench`, with the HTTP figures):
//! requests/s of the 128-byte body, one connection at a time, with the
//! TCP/IP server and httpd in user mode (profile `http_user`) against the
//! same components in the kernel (`http_kernel`), on microvm. The two
//! profiles differ only in their `user` list.
//!
//! Each side is booted [`RUNS`] times, interleaved (user, kernel, user,
//! ...), as wall time on a shared machine swings between boots; a run is
//! one boot, a warm-up and [`crate::bench_http::requests_per_second`].
//! The figures are each side's median and the ratio of the medians; the
//! table shows every run and the spread.

use std::thread;
use std::time::Duration;
use std::time::Instant;

use crate::bench::header;
use crate::bench::Figures;
use crate::bench_http::boot_profile;
use crate::bench_http::fetch;
use crate::bench_http::requests_per_second;
use crate::bench_http::RUNS;
use crate::bench_http::SMALL;
use crate::cli::BenchOptions;
use crate::host::Host;
use crate::markers;
use crate::stats::median;
use crate::stats::spread;

/// The figures, in the order they are printed.
pub const ORDER: [&str; 3] = ["http_rps_user", "http_rps_kernel", "http_rps_user_ratio"];

/// (figure's side, profile), in the order each round boots them.
const SIDES: [(&str, &str); 2] = [("user", "http_user"), ("kernel", "http_kernel")];

/// Returns the figures measured (missing ones absent).
pub fn figures(host: &Host, opts: &BenchOptions) -> Figures {
    let mut runs: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 1..=RUNS {
        for (i, (side, profile)) in SIDES.into_iter().enumerate() {
            header(&format!(
                "http user vs kernel: profile {profile} on microvm, run {round} of {RUNS}"
            ));
            match run_once(host, opts, profile) {
                Ok(rps) => {
                    println!("http {side}: {rps:.1} requests/s");
                    runs[i].push(rps);
                }
                Err(e) => eprintln!("bench: http {side} ({profile}): {e}"),
            }
        }
    }
    summarize(&runs)
}

/// Boots `profile`, measures its requests/s, stops it.
fn run_once(host: &Host, opts: &BenchOptions, profile: &str) -> Result<f64, String> {
    let port = crate::host::free_port().ok_or("no free host port")?;
    let guest = boot_profile(host, opts, port, profile, &[markers::HTTPD_SERVING])
        .ok_or_else(|| format!("profile {profile} did not boot to httpd"))?;
    let path = format!("/bytes/{SMALL}");
    let result = warm_up(port, &path).and_then(|()| requests_per_second(port, &path));
    guest.stop();
    result
}

/// Waits until httpd answers, then a few requests more.
fn warm_up(port: u16, path: &str) -> Result<(), String> {
    let start = Instant::now();
    while fetch(port, path, SMALL).is_err() {
        if start.elapsed() > Duration::from_secs(60) {
            return Err("never answered HTTP".into());
        }
        thread::sleep(Duration::from_millis(500));
    }
    for _ in 0..10 {
        fetch(port, path, SMALL)?;
    }
    Ok(())
}

/// Every run and the spread per side; the medians and their ratio.
fn summarize(runs: &[Vec<f64>; 2]) -> Figures {
    header(&format!(
        "http user vs kernel: {RUNS} interleaved runs per side (median, min-max)"
    ));
    let mut out = Figures::new();
    let mut medians = [None; 2];
    for (i, (side, profile)) in SIDES.into_iter().enumerate() {
        let shown: Vec<String> = runs[i].iter().map(|v| format!("{v:.1}")).collect();
        let Some(mid) = median(&runs[i]) else {
            println!("requests/s {side:>6} ({profile}): no runs");
            continue;
        };
        let (lo, hi) = spread(&runs[i]);
        println!(
            "requests/s {side:>6} ({profile}): median {mid:.1}  spread {lo:.1}-{hi:.1}  runs {}",
            shown.join(" ")
        );
        out.insert(format!("http_rps_{side}"), format!("{mid:.1}"));
        medians[i] = Some(mid);
    }
    if let [Some(user), Some(kernel)] = medians {
        out.insert(
            "http_rps_user_ratio".into(),
            format!("{:.3}", user / kernel),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_medians_and_their_ratio() {
        let f = summarize(&[vec![90.0, 100.0, 80.0], vec![200.0, 190.0, 210.0]]);
        assert_eq!(f.get("http_rps_user").map(String::as_str), Some("90.0"));
        assert_eq!(f.get("http_rps_kernel").map(String::as_str), Some("200.0"));
        assert_eq!(
            f.get("http_rps_user_ratio").map(String::as_str),
            Some("0.450")
        );
    }

    #[test]
    fn no_ratio_without_both_sides() {
        let f = summarize(&[vec![90.0], Vec::new()]);
        assert!(f.contains_key("http_rps_user"));
        assert!(!f.contains_key("http_rps_kernel"));
        assert!(!f.contains_key("http_rps_user_ratio"));
    }
}
