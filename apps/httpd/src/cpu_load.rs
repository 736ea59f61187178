//! Each CPU's load for the pages: its busy share over the last sampling
//! interval (the sweep timer's second: the two latest samples) and its
//! totals since it started (read when the page is made).

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use starina::abi::CpuStats;
use starina::system::Monitor;

/// The two latest samples of every CPU's figures.
#[derive(Default)]
pub struct CpuLoad {
    earlier: Vec<CpuStats>,
    latest: Vec<CpuStats>,
    /// Nanoseconds between the two.
    interval_ns: u64,
    latest_at: u64,
}

/// One CPU as the pages show it.
struct Row {
    now: CpuStats,
    /// Busy thousandths over the last interval.
    busy_permille: u32,
}

impl CpuLoad {
    /// Takes a sample at `now` (ns): the latest becomes the earlier one.
    pub fn sample(&mut self, monitor: &Monitor, now: u64) {
        match monitor.cpus() {
            Ok(cpus) => {
                self.earlier = core::mem::replace(&mut self.latest, cpus);
                self.interval_ns = now.saturating_sub(self.latest_at);
                self.latest_at = now;
            }
            Err(e) => log::warn!("cannot read the CPU load: {e}"),
        }
    }

    /// Every CPU's totals now (from `monitor`), with its busy share over
    /// the last interval (since it started until two samples were taken).
    fn rows(&self, monitor: &Monitor) -> Vec<Row> {
        let now = monitor.cpus().unwrap_or_default();
        now.into_iter()
            .map(|now| {
                let i = now.cpu as usize;
                let busy_permille = match (self.latest.get(i), self.earlier.get(i)) {
                    (Some(latest), Some(earlier)) => latest.busy_permille_since(earlier),
                    _ => now.busy_permille_since(&CpuStats::default()),
                };
                Row { now, busy_permille }
            })
            .collect()
    }

    /// `"interval_ms":N,"cpus":[{...},...]` for `/api/stats`.
    pub fn json_fields(&self, monitor: &Monitor) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "\"interval_ms\":{},\"cpus\":[",
            self.interval_ns / 1_000_000
        );
        for (i, r) in self.rows(monitor).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(
                out,
                "{{\"cpu\":{},\"busy_pct\":{}.{},\"busy_ms\":{},\"idle_ms\":{},\"switches\":{},\"preemptions\":{}}}",
                r.now.cpu,
                r.busy_permille / 10,
                r.busy_permille % 10,
                r.now.busy_ns / 1_000_000,
                r.now.idle_ns / 1_000_000,
                r.now.switches,
                r.now.preemptions
            );
        }
        out.push(']');
        out
    }

    /// The status page's table of CPUs.
    pub fn html(&self, monitor: &Monitor, out: &mut String) {
        out.push_str("<h2>CPU load</h2>\n<table><tr><th>CPU</th><th>busy (last second)</th><th>busy since start</th><th>idle since start</th><th>switches</th><th>preemptions</th></tr>\n");
        for r in self.rows(monitor) {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}.{} %</td><td>{} ms</td><td>{} ms</td><td>{}</td><td>{}</td></tr>",
                r.now.cpu,
                r.busy_permille / 10,
                r.busy_permille % 10,
                r.now.busy_ns / 1_000_000,
                r.now.idle_ns / 1_000_000,
                r.now.switches,
                r.now.preemptions
            );
        }
        out.push_str("</table>\n");
    }
}
