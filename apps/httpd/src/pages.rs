//! The handlers: the status page and the JSON documents, made from the
//! monitor (components, memory, CPU load, the kernel log) and our own
//! counters.

use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt::Write;

use starina::abi::ComponentState;
use starina::system::Monitor;
use starina::timer::now_ns;

use crate::cpu_load::CpuLoad;
use crate::http;

/// What the server counts.
pub struct Stats {
    pub requests: u64,
    pub connections: u64,
    /// Connections closed because their request head took too long.
    pub request_timeouts: u64,
}

/// What the pages are made from.
pub struct Site<'a> {
    pub monitor: &'a Monitor,
    pub stats: &'a Stats,
    /// Connections open now.
    pub open: usize,
    /// The TCP/IP server's last figures (a JSON object).
    pub tcpip_stats: &'a str,
    /// The ports the linux server forwards into Linux (a JSON array).
    pub forwards: &'a str,
    pub cpu_load: &'a CpuLoad,
}

fn state_name(state: ComponentState) -> &'static str {
    match state {
        ComponentState::Running => "running",
        ComponentState::Stopped => "stopped",
        ComponentState::NotStarted => "not started",
    }
}

pub fn components_json(monitor: &Monitor) -> String {
    let mut out = String::from("[");
    match monitor.components() {
        Ok(list) => {
            for (i, c) in list.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"name\":\"");
                http::json_escape(&mut out, c.name);
                let _ = write!(
                    out,
                    "\",\"kind\":\"{}\",\"state\":\"{}\",\"instance\":{},\"restarts\":{},\"max_restarts\":{}}}",
                    c.kind,
                    state_name(c.state),
                    c.instance,
                    c.restarts,
                    c.max_restarts
                );
            }
        }
        Err(e) => log::warn!("cannot read component status: {e}"),
    }
    out.push(']');
    out
}

/// The last `max` lines of the kernel log.
fn log_lines(monitor: &Monitor, max: usize) -> Vec<String> {
    let mut buf = vec![0u8; 64 * 1024];
    let (_, len) = monitor.read_log(0, &mut buf).unwrap_or((0, 0));
    let text = String::from_utf8_lossy(&buf[..len]);
    let lines: Vec<&str> = text.lines().collect();
    let skip = lines.len().saturating_sub(max);
    lines[skip..].iter().map(|l| String::from(*l)).collect()
}

pub fn logs_json(monitor: &Monitor) -> String {
    let mut out = String::from("{\"lines\":[");
    for (i, line) in log_lines(monitor, 200).iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('"');
        http::json_escape(&mut out, line);
        out.push('"');
    }
    out.push_str("]}");
    out
}

pub fn stats_json(site: &Site) -> String {
    let mem = site.monitor.memory().unwrap_or_default();
    format!(
        "{{\"uptime_ms\":{},\"heap_in_use\":{},\"pages_free\":{},\"pages_total\":{},\"dma_pages\":{},\"requests\":{},\"connections_total\":{},\"connections_open\":{},\"request_timeouts\":{},{},\"tcpip\":{}}}",
        now_ns() / 1_000_000,
        mem.heap_in_use,
        mem.pages_free,
        mem.pages_total,
        mem.dma_pages,
        site.stats.requests,
        site.stats.connections,
        site.open,
        site.stats.request_timeouts,
        site.cpu_load.json_fields(site.monitor),
        site.tcpip_stats
    )
}

pub fn status_page(site: &Site) -> String {
    let monitor = site.monitor;
    let mem = monitor.memory().unwrap_or_default();
    let uptime = now_ns() / 1_000_000;
    let mut out = String::from(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Starina</title>\n\
         <style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.2em .6em}pre{background:#f4f4f4;padding:1em;overflow:auto}</style>\n\
         </head><body>\n<h1>Starina</h1>\n",
    );
    let _ = writeln!(
        out,
        "<p>Uptime: {}.{:03} s &middot; heap in use: {} KiB &middot; free memory: {} of {} MiB &middot; requests served: {} &middot; open connections: {}</p>",
        uptime / 1000,
        uptime % 1000,
        mem.heap_in_use / 1024,
        (mem.pages_free * 4096) >> 20,
        (mem.pages_total * 4096) >> 20,
        site.stats.requests,
        site.open
    );
    site.cpu_load.html(monitor, &mut out);
    out.push_str("<h2>Components</h2>\n<table><tr><th>name</th><th>kind</th><th>state</th><th>instance</th><th>restarts</th></tr>\n");
    for c in monitor.components().unwrap_or_default() {
        out.push_str("<tr><td>");
        http::html_escape(&mut out, c.name);
        let _ = writeln!(
            out,
            "</td><td>{}</td><td>{}</td><td>{}</td><td>{} of {}</td></tr>",
            c.kind,
            state_name(c.state),
            c.instance,
            c.restarts,
            c.max_restarts
        );
    }
    out.push_str("</table>\n<h2>Forwards into Linux</h2>\n<pre>");
    http::html_escape(&mut out, site.forwards);
    out.push_str("</pre>\n<h2>Log</h2>\n<pre>");
    for line in log_lines(monitor, 50) {
        http::html_escape(&mut out, &line);
        out.push('\n');
    }
    out.push_str("</pre>\n<p>JSON: <a href=\"/api/components\">/api/components</a> \
                  <a href=\"/api/logs\">/api/logs</a> <a href=\"/api/stats\">/api/stats</a> <a href=\"/api/forwards\">/api/forwards</a></p>\n</body></html>\n");
    out
}
