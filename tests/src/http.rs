//! Small helpers for talking HTTP to the guest through forwarded ports
//! (127.0.0.1 only) and reading httpd's flat JSON.

use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// A connection to the guest's forwarded port 80, with a read timeout of
/// `read_timeout`.
pub fn connect(port: u16, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s
}

/// `GET path` (HTTP/1.0) on 127.0.0.1:`port`: the body of a 200 answer,
/// or what went wrong (the status line and headers of any other answer).
pub fn get(port: u16, path: &str) -> Result<Vec<u8>, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)
        .map_err(|e| format!("read after {} bytes: {e}", answer.len()))?;
    // The end of the headers (a CGI script's own may end in a bare "\n\n").
    let (at, sep) = match answer.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(at) => (at, 4),
        None => answer
            .windows(2)
            .position(|w| w == b"\n\n")
            .map(|at| (at, 2))
            .ok_or_else(|| format!("no headers in {} bytes", answer.len()))?,
    };
    let status = answer.split(|&b| b == b' ').nth(1).unwrap_or_default();
    if status != b"200" {
        return Err(String::from_utf8_lossy(&answer[..at]).into_owned());
    }
    Ok(answer[at + sep..].to_vec())
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
pub fn free_port() -> u16 {
    starina_host::host::free_port().expect("a free local port")
}

/// The value of `"key":<number>` in a flat JSON object.
pub fn json_number(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len();
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{key} is not a number in {json}"))
}

/// The value of `"key":{...}` (a flat nested object) in a JSON object.
pub fn json_object<'a>(json: &'a str, key: &str) -> &'a str {
    let pat = format!("\"{key}\":{{");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + pat.len()
        - 1;
    let end = json[at..]
        .find('}')
        .unwrap_or_else(|| panic!("{key} unterminated in {json}"));
    &json[at..=at + end]
}

/// One entry of `/api/stats`'s `"cpus"`: a CPU's load.
#[derive(Clone, Debug, PartialEq)]
pub struct CpuLoad {
    pub cpu: u64,
    /// Busy share over httpd's last sampling second, in percent.
    pub busy_pct: f64,
    pub busy_ms: u64,
    pub idle_ms: u64,
    pub switches: u64,
    pub preemptions: u64,
}

/// The `"cpus":[{...},...]` entries of `/api/stats`.
pub fn cpu_loads(stats: &str) -> Vec<CpuLoad> {
    let at = stats
        .find("\"cpus\":[")
        .unwrap_or_else(|| panic!("no cpus in {stats}"))
        + "\"cpus\":[".len();
    let end = stats[at..]
        .find(']')
        .unwrap_or_else(|| panic!("cpus unterminated in {stats}"));
    let list = &stats[at..at + end];
    if list.is_empty() {
        return Vec::new();
    }
    list.split("},{")
        .map(|entry| {
            let pct = entry
                .split_once("\"busy_pct\":")
                .and_then(|(_, v)| v.split([',', '}']).next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no busy_pct in {entry}"));
            CpuLoad {
                cpu: json_number(entry, "cpu"),
                busy_pct: pct,
                busy_ms: json_number(entry, "busy_ms"),
                idle_ms: json_number(entry, "idle_ms"),
                switches: json_number(entry, "switches"),
                preemptions: json_number(entry, "preemptions"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_cpu_entries_of_api_stats() {
        let stats = "{\"uptime_ms\":5,\"interval_ms\":1000,\"cpus\":[{\"cpu\":0,\"busy_pct\":12.5,\"busy_ms\":30,\"idle_ms\":70,\"switches\":9,\"preemptions\":1},{\"cpu\":1,\"busy_pct\":100.0,\"busy_ms\":3,\"idle_ms\":4,\"switches\":5,\"preemptions\":6}],\"tcpip\":{}}";
        let cpus = cpu_loads(stats);
        assert_eq!(cpus.len(), 2);
        assert_eq!(
            cpus[0],
            CpuLoad {
                cpu: 0,
                busy_pct: 12.5,
                busy_ms: 30,
                idle_ms: 70,
                switches: 9,
                preemptions: 1
            }
        );
        assert_eq!(
            (cpus[1].cpu, cpus[1].busy_pct, cpus[1].preemptions),
            (1, 100.0, 6)
        );
        assert!(cpu_loads("{\"cpus\":[]}").is_empty());
    }
}
