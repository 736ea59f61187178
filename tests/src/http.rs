//! Small helpers for talking HTTP to the guest through the forwarded port
//! (127.0.0.1 only) and reading httpd's flat JSON.

use std::net::TcpStream;
use std::time::Duration;

/// A connection to the guest's forwarded port 80, with a read timeout of
/// `read_timeout`.
pub fn connect(port: u16, read_timeout: Duration) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the forwarded port");
    s.set_read_timeout(Some(read_timeout)).unwrap();
    s
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
