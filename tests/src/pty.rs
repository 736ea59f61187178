//! A person at a terminal: runs `scripts/starina ARGS` on a real
//! pseudo-terminal (python3's pty support, `pty_driver.py`), types keys,
//! waits for output, resizes the window, and reports the exit status and
//! whether the terminal's settings came back as they were.

use std::collections::HashMap;
use std::process::Command;

use crate::instance::Tool;
use crate::repo_root;

const DRIVER: &str = include_str!("pty_driver.py");

/// One step of the driver (see `pty_driver.py`).
pub enum Step<'a> {
    Send(&'a str),
    /// A regex and the seconds to wait for it.
    Expect(&'a str, u32),
    Resize(u16, u16),
    Sleep(f64),
    Mark(&'a str),
    /// Seconds since the mark, recorded under the key.
    Since(&'a str, &'a str),
    /// Whether the terminal is raw now, recorded under the key.
    Raw(&'a str),
    Signal(i32),
}

/// What the session did.
#[derive(Debug)]
pub struct Session {
    pub status: i32,
    /// The terminal's settings after equal those before.
    pub restored: bool,
    pub record: HashMap<String, String>,
    /// The step that failed, if any.
    pub error: Option<String>,
    pub transcript: String,
}

fn json_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json(steps: &[Step]) -> String {
    let items: Vec<String> = steps
        .iter()
        .map(|s| match s {
            Step::Send(text) => format!("[\"send\", {}]", json_str(text)),
            Step::Expect(re, secs) => format!("[\"expect\", {}, {secs}]", json_str(re)),
            Step::Resize(rows, cols) => format!("[\"resize\", {rows}, {cols}]"),
            Step::Sleep(secs) => format!("[\"sleep\", {secs}]"),
            Step::Mark(name) => format!("[\"mark\", {}]", json_str(name)),
            Step::Since(name, key) => {
                format!("[\"since\", {}, {}]", json_str(name), json_str(key))
            }
            Step::Raw(key) => format!("[\"raw\", {}]", json_str(key)),
            Step::Signal(n) => format!("[\"signal\", {n}]"),
        })
        .collect();
    format!("[{}]", items.join(", "))
}

fn parse(out: &str) -> Session {
    let (head, transcript) = out.split_once("transcript\n").unwrap_or((out, ""));
    let mut session = Session {
        status: i32::MIN,
        restored: false,
        record: HashMap::new(),
        error: None,
        transcript: transcript.to_string(),
    };
    for line in head.lines() {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "status" => session.status = value.parse().unwrap_or(i32::MIN),
            "restored" => session.restored = value == "yes",
            "error" if value != "none" => session.error = Some(value.to_string()),
            "record" => {
                let (k, v) = value.split_once(' ').unwrap_or((value, ""));
                session.record.insert(k.to_string(), v.to_string());
            }
            _ => {}
        }
    }
    session
}

/// Runs `scripts/starina ARGS` for `tool` on a fresh 24x80 pty with
/// `TERM=xterm-256color`, through `steps`.
pub fn drive(tool: &Tool, args: &[&str], steps: &[Step]) -> Session {
    let out = Command::new("python3")
        .arg("-c")
        .arg(DRIVER)
        .arg(json(steps))
        .arg("--")
        .arg(repo_root().join("scripts/starina"))
        .args(args)
        .env("XDG_RUNTIME_DIR", &tool.runtime)
        .env("STARINA_HTTP_PORT", tool.port.to_string())
        .env("TERM", "xterm-256color")
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!(
        "$ scripts/starina {} (on a pty)\n{stdout}\n--- driver stderr:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    parse(&stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_as_json() {
        let steps = [
            Step::Send("a\"\\\x03\n"),
            Step::Expect("\\$ ", 5),
            Step::Resize(40, 120),
            Step::Since("t", "k"),
        ];
        assert_eq!(
            json(&steps),
            r#"[["send", "a\"\\\u0003\u000a"], ["expect", "\\$ ", 5], ["resize", 40, 120], ["since", "t", "k"]]"#
        );
    }

    #[test]
    fn driver_output() {
        let s = parse("status 7\nrestored yes\nrecord raw True\nerror none\ntranscript\n# x\n");
        assert_eq!((s.status, s.restored, s.error), (7, true, None));
        assert_eq!(s.record["raw"], "True");
        assert_eq!(s.transcript, "# x\n");
    }
}
