//! Host port forwards for Linux listeners (README.md, "Networking"): while
//! Starina runs, the host's `127.0.0.1:P` reaches a Linux service listening
//! on TCP port P, or bound to UDP port P. The linux server logs
//! `NET_FORWARD_ADDED` / `NET_FORWARD_REMOVED` lines (TCP) and
//! `NET_FORWARD_UDP_ADDED` / `NET_FORWARD_UDP_REMOVED` lines (UDP) on the
//! console; [`HostForwards`] follows them and adds or removes the matching
//! QEMU user-network forward (`tcp:` or `udp:`) through QEMU's human monitor
//! (HMP) on a Unix socket ([`crate::qemu::QemuConfig::monitor`]).

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::io::Read;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;
use std::time::Instant;

use starina_abi::markers::NET_FORWARD_ADDED;
use starina_abi::markers::NET_FORWARD_REMOVED;
use starina_abi::markers::NET_FORWARD_UDP_ADDED;
use starina_abi::markers::NET_FORWARD_UDP_REMOVED;
use starina_bridge::process::Proto;

/// How long one console line may wait for the monitor, all told.
pub const MONITOR_TIMEOUT: Duration = Duration::from_secs(2);

/// The QEMU netdev of Starina's NIC (`QemuConfig::nic_args`).
const NETDEV: &str = "n0";

/// HMP's prompt: an answer ends with it.
const PROMPT: &[u8] = b"(qemu) ";

/// What QEMU 7.2 answers when it cannot bind the host port.
const BIND_FAILED: &str = "Could not set up host forwarding rule";

/// As QEMU's `hostfwd` rules spell `proto`.
fn rule(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "tcp",
        Proto::Udp => "udp",
    }
}

/// As the messages to the user say `proto`: TCP is the default.
fn label(proto: Proto) -> &'static str {
    match proto {
        Proto::Tcp => "",
        Proto::Udp => "UDP ",
    }
}

/// A forward change the console announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Added(Proto, u16),
    Removed(Proto, u16),
}

/// The change a console line announces, if it is a well-formed marker line:
/// the marker, then a port number in 1..=65535 ending at a space or the line's end.
pub fn parse(line: &str) -> Option<Change> {
    // The removal markers first: they are the longer texts.
    let markers = [
        (NET_FORWARD_REMOVED, Proto::Tcp, false),
        (NET_FORWARD_UDP_REMOVED, Proto::Udp, false),
        (NET_FORWARD_ADDED, Proto::Tcp, true),
        (NET_FORWARD_UDP_ADDED, Proto::Udp, true),
    ];
    markers.into_iter().find_map(|(marker, proto, added)| {
        let port = port_after(line, marker)?;
        Some(if added {
            Change::Added(proto, port)
        } else {
            Change::Removed(proto, port)
        })
    })
}

fn port_after(line: &str, marker: &str) -> Option<u16> {
    let rest = &line[line.find(marker)? + marker.len()..];
    let rest = rest.strip_prefix(' ')?;
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    let (digits, after) = rest.split_at(end);
    if !(after.is_empty() || after.starts_with([' ', '\r', '\n'])) {
        return None;
    }
    digits.parse::<u16>().ok().filter(|&p| p != 0)
}

/// Follows the console and keeps QEMU's forwards in step with Linux's listeners.
pub struct HostForwards {
    socket: PathBuf,
    http_port: u16,
    timeout: Duration,
    monitor: Option<Monitor>,
    /// The monitor did not answer in time: no more tries.
    given_up: bool,
    added: BTreeSet<(Proto, u16)>,
}

impl HostForwards {
    /// Forwards through the HMP monitor on `socket`; `http_port` is the host
    /// port that already forwards to the guest's port 80.
    pub fn new(socket: PathBuf, http_port: u16) -> HostForwards {
        HostForwards {
            socket,
            http_port,
            timeout: MONITOR_TIMEOUT,
            monitor: None,
            given_up: false,
            added: BTreeSet::new(),
        }
    }

    /// The same with another bound on waiting for the monitor.
    pub fn with_timeout(mut self, timeout: Duration) -> HostForwards {
        self.timeout = timeout;
        self
    }

    /// The ports forwarded now.
    pub fn added(&self) -> impl Iterator<Item = (Proto, u16)> + '_ {
        self.added.iter().copied()
    }

    /// One console line (with or without its line end): what to tell the
    /// user (without the `starina: ` prefix), if anything.
    pub fn line(&mut self, line: &str) -> Option<String> {
        match parse(line)? {
            Change::Added(proto, port) => self.add(proto, port),
            Change::Removed(proto, port) => self.remove(proto, port),
        }
    }

    fn add(&mut self, proto: Proto, port: u16) -> Option<String> {
        let inside = inside_only(proto, port);
        // httpd's forward is TCP: UDP's port of the same number is free.
        if proto == Proto::Tcp && port == self.http_port {
            return Some(format!(
                "host port {port} is in use (Starina's httpd): {inside}"
            ));
        }
        if self.given_up || self.added.contains(&(proto, port)) {
            return None;
        }
        let rule = rule(proto);
        let answer = match self.command(&format!(
            "hostfwd_add {NETDEV} {rule}:127.0.0.1:{port}-:{port}"
        )) {
            Ok(answer) => answer,
            Err(e) => return self.failed(proto, port, e),
        };
        let label = label(proto);
        if answer.is_empty() {
            self.added.insert((proto, port));
            Some(format!("Linux's {label}port {port} is at 127.0.0.1:{port}"))
        } else if answer.contains(BIND_FAILED) {
            Some(format!("host {label}port {port} is in use: {inside}"))
        } else {
            Some(format!(
                "cannot forward host {label}port {port} (QEMU: {answer}): {inside}"
            ))
        }
    }

    /// Quiet: the forward goes with the listener (a monitor that stopped
    /// answering is still reported once).
    fn remove(&mut self, proto: Proto, port: u16) -> Option<String> {
        if self.given_up || !self.added.remove(&(proto, port)) {
            return None;
        }
        let rule = rule(proto);
        match self.command(&format!("hostfwd_remove {NETDEV} {rule}:127.0.0.1:{port}")) {
            Err(e) if e.kind() == ErrorKind::TimedOut => self.give_up(),
            _ => None,
        }
    }

    fn failed(&mut self, proto: Proto, port: u16, e: std::io::Error) -> Option<String> {
        if e.kind() == ErrorKind::TimedOut {
            return self.give_up();
        }
        Some(format!(
            "cannot reach QEMU's monitor ({}: {e}): {}",
            self.socket.display(),
            inside_only(proto, port)
        ))
    }

    fn give_up(&mut self) -> Option<String> {
        self.given_up = true;
        self.monitor = None;
        Some(format!(
            "QEMU's monitor did not answer within {} ms: Linux's ports stay inside Starina",
            self.timeout.as_millis()
        ))
    }

    /// Runs one HMP command (connecting first if need be; once more on a
    /// fresh connection if the old one broke) and returns its answer.
    fn command(&mut self, command: &str) -> std::io::Result<String> {
        let deadline = Instant::now() + self.timeout;
        let fresh = self.monitor.is_none();
        let result = self.connected(deadline)?.command(command, deadline);
        match result {
            Err(e) if !fresh && e.kind() != ErrorKind::TimedOut => {
                self.monitor = None;
                self.connected(deadline)?.command(command, deadline)
            }
            Err(e) => {
                self.monitor = None;
                Err(e)
            }
            Ok(answer) => Ok(answer),
        }
    }

    fn connected(&mut self, deadline: Instant) -> std::io::Result<&mut Monitor> {
        if self.monitor.is_none() {
            self.monitor = Some(Monitor::connect(&self.socket, deadline)?);
        }
        Ok(self.monitor.as_mut().expect("connected above"))
    }
}

fn inside_only(proto: Proto, port: u16) -> String {
    let label = label(proto);
    format!("Linux's {label}port {port} is reachable inside Starina only")
}

/// A connection to QEMU's human monitor.
struct Monitor {
    stream: UnixStream,
}

impl Monitor {
    /// Connects and reads the banner up to the first prompt.
    fn connect(socket: &std::path::Path, deadline: Instant) -> std::io::Result<Monitor> {
        let mut monitor = Monitor {
            stream: UnixStream::connect(socket)?,
        };
        // A command is a few bytes, but a wedged QEMU must not hold us either.
        let left = deadline.saturating_duration_since(Instant::now());
        monitor
            .stream
            .set_write_timeout(Some(left.max(Duration::from_millis(1))))?;
        monitor.until_prompt(deadline)?;
        Ok(monitor)
    }

    /// Sends `command` and returns its answer: the lines before the next
    /// prompt, without HMP's echo of the command, trimmed.
    fn command(&mut self, command: &str, deadline: Instant) -> std::io::Result<String> {
        self.stream.write_all(format!("{command}\n").as_bytes())?;
        let reply = self.until_prompt(deadline)?;
        Ok(answer(&String::from_utf8_lossy(&reply), command))
    }

    /// Reads until the output ends with the prompt (or `deadline` passes).
    fn until_prompt(&mut self, deadline: Instant) -> std::io::Result<Vec<u8>> {
        let mut reply = Vec::new();
        let mut buf = [0u8; 4096];
        while !reply.ends_with(PROMPT) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.stream.set_read_timeout(Some(left))?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(ErrorKind::UnexpectedEof.into()),
                Ok(n) => reply.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return Err(ErrorKind::TimedOut.into())
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        reply.truncate(reply.len() - PROMPT.len());
        Ok(reply)
    }
}

/// HMP's answer to `command` in `reply`: HMP echoes what it reads with
/// line-editing escapes (`ESC [ K`, `ESC [ D`); the echo line, once those
/// are gone, ends with the command. The other lines are the answer.
fn answer(reply: &str, command: &str) -> String {
    let lines: Vec<String> = reply
        .split('\n')
        .map(|l| strip_escapes(l).trim().to_string())
        .filter(|l| !l.is_empty() && !l.ends_with(command))
        .collect();
    lines.join("; ")
}

/// `text` without ANSI CSI sequences (`ESC [` parameters, one final letter).
fn strip_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next() == Some('[') {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::io::BufReader;
    use std::os::unix::net::UnixListener;
    use std::sync::Arc;
    use std::sync::Mutex;
    use std::thread;

    use super::*;
    use crate::exec::TempDir;

    /// How the fake monitor behaves.
    #[derive(Clone, Copy)]
    enum Mode {
        /// Answers like QEMU 7.2; `hostfwd_add` of `busy` fails.
        Answers { busy: u16 },
        /// Like `Answers`, then closes the connection after each command.
        OneCommandPerConnection,
        /// Prints the banner, then reads commands and never answers.
        Silent,
    }

    /// A fake HMP server on a Unix socket: banner, prompts, QEMU's echo
    /// (with its line-editing escapes) and answers; it records the commands.
    struct FakeHmp {
        _dir: TempDir,
        socket: PathBuf,
        commands: Arc<Mutex<Vec<String>>>,
        connections: Arc<Mutex<usize>>,
    }

    impl FakeHmp {
        fn start(mode: Mode) -> FakeHmp {
            let dir = TempDir::new("starina-fake-hmp").unwrap();
            let socket = dir.0.join("monitor.sock");
            let listener = UnixListener::bind(&socket).unwrap();
            let commands = Arc::new(Mutex::new(Vec::new()));
            let connections = Arc::new(Mutex::new(0));
            let (c, n) = (commands.clone(), connections.clone());
            thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { return };
                    *n.lock().unwrap() += 1;
                    let c = c.clone();
                    thread::spawn(move || serve(stream, mode, &c));
                }
            });
            FakeHmp {
                _dir: dir,
                socket,
                commands,
                connections,
            }
        }

        fn forwards(&self, http_port: u16) -> HostForwards {
            HostForwards::new(self.socket.clone(), http_port)
        }

        fn commands(&self) -> Vec<String> {
            self.commands.lock().unwrap().clone()
        }
    }

    fn serve(mut stream: UnixStream, mode: Mode, commands: &Mutex<Vec<String>>) {
        let banner = b"QEMU 7.2.22 monitor - type 'help' for more information\r\n(qemu) ";
        if stream.write_all(banner).is_err() {
            return;
        }
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while matches!(reader.read_line(&mut line), Ok(1..)) {
            let command = line.trim_end().to_string();
            line.clear();
            commands.lock().unwrap().push(command.clone());
            let busy = match mode {
                Mode::Silent => continue,
                Mode::Answers { busy } => busy,
                Mode::OneCommandPerConnection => 0,
            };
            let echo = format!("h\x1b[K\x1b[Dho\x1b[K\x1b[D\x1b[D{command}\x1b[K\r\n");
            let answer = qemu_answer(&command, busy);
            let _ = stream.write_all(format!("{echo}{answer}(qemu) ").as_bytes());
            if matches!(mode, Mode::OneCommandPerConnection) {
                return;
            }
        }
    }

    /// What QEMU 7.2 printed for these commands (tried by hand).
    fn qemu_answer(command: &str, busy: u16) -> String {
        let words: Vec<&str> = command.split(' ').collect();
        match words[..] {
            ["hostfwd_add", "n0", rule]
                if rule.ends_with(&format!(":127.0.0.1:{busy}-:{busy}")) =>
            {
                format!("Could not set up host forwarding rule '{rule}'\r\n")
            }
            ["hostfwd_add", "n0", _] => String::new(),
            ["hostfwd_remove", "n0", rule] => {
                format!("host forwarding rule for {rule} removed\r\n")
            }
            _ => format!("unknown command: '{command}'\r\n"),
        }
    }

    const ADDED: &str =
        "[   3.141592] INFO  linux: net: forwarding TCP port 8000 to Linux (httpd (pid 97))";
    const REMOVED: &str =
        "[   9.000000] INFO  linux: net: stopped forwarding TCP port 8000 (3 connections)";

    const UDP_ADDED: &str =
        "[   3.2] INFO  linux: net: forwarding UDP port 5353 to Linux (init (pid 90))";
    const UDP_REMOVED: &str =
        "[   9.1] INFO  linux: net: stopped forwarding UDP port 5353 (4 datagrams in, 4 out)";

    #[test]
    fn marker_lines() {
        use Proto::*;
        assert_eq!(parse(ADDED), Some(Change::Added(Tcp, 8000)));
        assert_eq!(
            parse(&format!("{ADDED}\r\n")),
            Some(Change::Added(Tcp, 8000))
        );
        assert_eq!(
            parse("net: forwarding TCP port 8000\n"),
            Some(Change::Added(Tcp, 8000))
        );
        assert_eq!(parse(REMOVED), Some(Change::Removed(Tcp, 8000)));
        assert_eq!(
            parse("net: forwarding TCP port 65535"),
            Some(Change::Added(Tcp, 65535))
        );
        assert_eq!(
            parse("garbage \x1b[0m junk net: forwarding TCP port 1024 to Linux (x) trailing"),
            Some(Change::Added(Tcp, 1024))
        );
        assert_eq!(parse(UDP_ADDED), Some(Change::Added(Udp, 5353)));
        assert_eq!(parse(UDP_REMOVED), Some(Change::Removed(Udp, 5353)));
        for line in [
            "",
            "net: forwarding TCP",
            "net: forwarding TCP port",
            "net: forwarding TCP port abc to Linux",
            "net: forwarding TCP port 80x to Linux",
            "net: forwarding TCP port -1 to Linux",
            "net: forwarding TCP port 0 to Linux",
            "net: forwarding TCP port 65536 to Linux",
            "net: forwarding TCP port 99999999999999999999 to Linux",
            "net: forwarding TCP port8000 to Linux",
            "net: stopped forwarding TCP port  (3 connections)",
            "net: forwarding UDP port x to Linux",
            "net: forwarding UDP port 0 to Linux",
            "net: stopped forwarding UDP port 70000 (1 datagrams in, 1 out)",
            "net: forwarding udp port 53 to Linux",
            "INFO  linux: serving HTTP on port 8000",
        ] {
            assert_eq!(parse(line), None, "{line:?}");
        }
    }

    #[test]
    fn lines_without_markers_do_not_touch_the_monitor() {
        let hmp = FakeHmp::start(Mode::Answers { busy: 0 });
        let mut forwards = hmp.forwards(8080);
        assert_eq!(forwards.line("INFO  linux: booted"), None);
        assert_eq!(forwards.line("net: forwarding TCP port 0 to Linux"), None);
        assert_eq!(*hmp.connections.lock().unwrap(), 0);
    }

    #[test]
    fn add_then_remove() {
        let hmp = FakeHmp::start(Mode::Answers { busy: 0 });
        let mut forwards = hmp.forwards(8080);
        let msg = forwards.line(ADDED);
        assert_eq!(
            msg.as_deref(),
            Some("Linux's port 8000 is at 127.0.0.1:8000")
        );
        assert_eq!(forwards.added().collect::<Vec<_>>(), [(Proto::Tcp, 8000)]);
        // The same port again (no removal between): nothing to do.
        assert_eq!(forwards.line(ADDED), None);
        assert_eq!(forwards.line(REMOVED), None, "removal is quiet");
        assert_eq!(forwards.added().count(), 0);
        // A removal for a port never added sends nothing.
        assert_eq!(
            forwards.line("net: stopped forwarding TCP port 9000 (0 connections)"),
            None
        );
        assert_eq!(
            hmp.commands(),
            [
                "hostfwd_add n0 tcp:127.0.0.1:8000-:8000",
                "hostfwd_remove n0 tcp:127.0.0.1:8000",
            ]
        );
        assert_eq!(
            *hmp.connections.lock().unwrap(),
            1,
            "one connection for both"
        );
    }

    #[test]
    fn a_taken_host_port_is_reported() {
        let hmp = FakeHmp::start(Mode::Answers { busy: 8000 });
        let mut forwards = hmp.forwards(8080);
        let msg = forwards.line(ADDED);
        assert_eq!(
            msg.as_deref(),
            Some("host port 8000 is in use: Linux's port 8000 is reachable inside Starina only")
        );
        assert_eq!(forwards.added().count(), 0);
        // Its removal later is not sent: the forward was never there.
        assert_eq!(forwards.line(REMOVED), None);
        assert_eq!(hmp.commands(), ["hostfwd_add n0 tcp:127.0.0.1:8000-:8000"]);
        // Other ports still work.
        let msg = forwards.line("net: forwarding TCP port 8001 to Linux (x)");
        assert_eq!(
            msg.as_deref(),
            Some("Linux's port 8001 is at 127.0.0.1:8001")
        );
    }

    #[test]
    fn the_http_port_is_refused_without_asking_qemu() {
        let hmp = FakeHmp::start(Mode::Answers { busy: 0 });
        let mut forwards = hmp.forwards(8000);
        let msg = forwards.line(ADDED).unwrap();
        assert!(msg.starts_with("host port 8000 is in use"), "{msg}");
        assert!(msg.ends_with("reachable inside Starina only"), "{msg}");
        assert_eq!(forwards.line(REMOVED), None);
        assert!(hmp.commands().is_empty());
    }

    #[test]
    fn a_broken_connection_is_made_again() {
        let hmp = FakeHmp::start(Mode::OneCommandPerConnection);
        let mut forwards = hmp.forwards(8080);
        for port in [8000, 8001, 8002] {
            let msg = forwards.line(&format!("net: forwarding TCP port {port} to Linux (x)"));
            assert_eq!(
                msg,
                Some(format!("Linux's port {port} is at 127.0.0.1:{port}"))
            );
        }
        // Each later command found the old connection closed and went again
        // on a new one (QEMU never saw it twice: the write failed).
        assert_eq!(*hmp.connections.lock().unwrap(), 3);
        let mut commands = hmp.commands();
        commands.dedup();
        assert_eq!(commands.len(), 3, "{commands:?}");
    }

    #[test]
    fn no_monitor_is_reported_per_port() {
        let dir = TempDir::new("starina-no-hmp").unwrap();
        let mut forwards = HostForwards::new(dir.0.join("none.sock"), 8080);
        let msg = forwards.line(ADDED).unwrap();
        assert!(msg.starts_with("cannot reach QEMU's monitor"), "{msg}");
        assert!(
            msg.ends_with("Linux's port 8000 is reachable inside Starina only"),
            "{msg}"
        );
    }

    #[test]
    fn a_silent_monitor_is_given_up_once() {
        let hmp = FakeHmp::start(Mode::Silent);
        let mut forwards = hmp.forwards(8080).with_timeout(Duration::from_millis(300));
        let start = Instant::now();
        let msg = forwards.line(ADDED).unwrap();
        let waited = start.elapsed();
        assert!(msg.contains("did not answer within 300 ms"), "{msg}");
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_millis(1500), "{waited:?}");
        // Given up: later lines do not wait again, and say nothing.
        let start = Instant::now();
        assert_eq!(
            forwards.line("net: forwarding TCP port 8001 to Linux (x)"),
            None
        );
        assert_eq!(forwards.line(REMOVED), None);
        assert!(start.elapsed() < Duration::from_millis(100));
        assert_eq!(hmp.commands(), ["hostfwd_add n0 tcp:127.0.0.1:8000-:8000"]);
    }

    #[test]
    fn the_default_bound_is_two_seconds() {
        let hmp = FakeHmp::start(Mode::Silent);
        let mut forwards = hmp.forwards(8080);
        let start = Instant::now();
        let msg = forwards.line(ADDED).unwrap();
        let waited = start.elapsed();
        assert!(msg.contains("did not answer within 2000 ms"), "{msg}");
        assert!(waited >= MONITOR_TIMEOUT && waited < MONITOR_TIMEOUT + Duration::from_secs(1));
    }

    #[test]
    fn answers_lose_the_echo() {
        let echo = "h\x1b[K\x1b[Dho\x1b[K\x1b[D\x1b[Dhostfwd_add n0 tcp:127.0.0.1:1-:1\x1b[K\r\n";
        assert_eq!(answer(echo, "hostfwd_add n0 tcp:127.0.0.1:1-:1"), "");
        let reply = format!("{echo}unrecognized netdev id 'n9'\r\n");
        assert_eq!(
            answer(&reply, "hostfwd_add n0 tcp:127.0.0.1:1-:1"),
            "unrecognized netdev id 'n9'"
        );
    }

    #[test]
    fn udp_forwards_are_udp_rules() {
        let hmp = FakeHmp::start(Mode::Answers { busy: 0 });
        // UDP on httpd's port number is free: httpd's forward is TCP.
        let mut forwards = hmp.forwards(5353);
        let msg = forwards.line(UDP_ADDED);
        assert_eq!(
            msg.as_deref(),
            Some("Linux's UDP port 5353 is at 127.0.0.1:5353")
        );
        // TCP and UDP of one port are two forwards.
        let tcp = forwards.line("net: forwarding TCP port 5354 to Linux (x)");
        assert_eq!(
            tcp.as_deref(),
            Some("Linux's port 5354 is at 127.0.0.1:5354")
        );
        let udp = forwards.line("net: forwarding UDP port 5354 to Linux (x)");
        assert_eq!(
            udp.as_deref(),
            Some("Linux's UDP port 5354 is at 127.0.0.1:5354")
        );
        assert_eq!(
            forwards.added().collect::<Vec<_>>(),
            [(Proto::Tcp, 5354), (Proto::Udp, 5353), (Proto::Udp, 5354)]
        );
        assert_eq!(forwards.line(UDP_REMOVED), None, "removal is quiet");
        // The TCP removal of a port only UDP forwards sends nothing.
        assert_eq!(
            forwards.line("net: stopped forwarding TCP port 5353 (0 connections)"),
            None
        );
        assert_eq!(
            hmp.commands(),
            [
                "hostfwd_add n0 udp:127.0.0.1:5353-:5353",
                "hostfwd_add n0 tcp:127.0.0.1:5354-:5354",
                "hostfwd_add n0 udp:127.0.0.1:5354-:5354",
                "hostfwd_remove n0 udp:127.0.0.1:5353",
            ]
        );
    }

    #[test]
    fn a_taken_host_udp_port_is_reported() {
        let hmp = FakeHmp::start(Mode::Answers { busy: 5353 });
        let mut forwards = hmp.forwards(8080);
        let msg = forwards.line(UDP_ADDED);
        assert_eq!(
            msg.as_deref(),
            Some("host UDP port 5353 is in use: Linux's UDP port 5353 is reachable inside Starina only")
        );
        assert_eq!(forwards.added().count(), 0);
        assert_eq!(forwards.line(UDP_REMOVED), None);
        assert_eq!(hmp.commands(), ["hostfwd_add n0 udp:127.0.0.1:5353-:5353"]);
    }
}
