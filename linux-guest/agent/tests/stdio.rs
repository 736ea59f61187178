//! Drives the agent in `--stdio` mode on the host: the same protocol and
//! process handling as in the guest, minus the PID 1 setup.

use std::collections::HashMap;
use std::io::Read;
use std::io::Write;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::Proto;
use starina_bridge::process::Spawn;
use starina_bridge::process::StdinWindow;
use starina_bridge::process::MAX_DATA_CHUNK;
use starina_bridge::process::MAX_FRAME_LEN;
use starina_bridge::process::STDIN_WINDOW;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Agent {
    child: Child,
    stdin: ChildStdin,
    frames: mpsc::Receiver<Frame>,
}

/// What one process did, as seen over the protocol.
#[derive(Debug, Default)]
struct Outcome {
    started: bool,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    exited: Option<i32>,
    signaled: Option<i32>,
    spawn_failed: Option<(i32, String)>,
    /// Sum of the StdinAck frames.
    stdin_acked: u64,
}

impl Outcome {
    fn done(&self) -> bool {
        self.exited.is_some() || self.signaled.is_some() || self.spawn_failed.is_some()
    }
    fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

impl Agent {
    fn start() -> Agent {
        Agent::start_with(&[])
    }

    /// An agent started with `--stdio` and `args`.
    fn start_with(args: &[&str]) -> Agent {
        let mut child = Command::new(env!("CARGO_BIN_EXE_starina-guest-agent"))
            .arg("--stdio")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start agent");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut decoder = FrameDecoder::new();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                decoder.push(&buf[..n]);
                while let Some(frame) = decoder.next() {
                    if tx
                        .send(frame.expect("agent sent a malformed frame"))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        let agent = Agent {
            child,
            stdin,
            frames,
        };
        match agent.recv() {
            Frame::Ready { kernel_release } => assert!(!kernel_release.is_empty()),
            other => panic!("expected Ready, got {other:?}"),
        }
        agent
    }

    fn send(&mut self, frame: Frame) {
        self.stdin.write_all(&frame.encode().unwrap()).unwrap();
    }

    fn recv(&self) -> Frame {
        self.frames.recv_timeout(TIMEOUT).expect("agent reply")
    }

    /// Collects frames until every id in `ids` is done.
    fn collect(&self, ids: &[u32]) -> HashMap<u32, Outcome> {
        let mut out: HashMap<u32, Outcome> = ids.iter().map(|&i| (i, Outcome::default())).collect();
        let deadline = Instant::now() + TIMEOUT;
        while !out.values().all(Outcome::done) {
            let left = deadline.saturating_duration_since(Instant::now());
            let frame = self.frames.recv_timeout(left).expect("agent reply");
            let o = out.get_mut(&frame.id()).expect("frame for an unknown id");
            assert!(!o.done(), "frame after the final one: {frame:?}");
            match frame {
                Frame::Started { .. } => o.started = true,
                Frame::Stdout { data, .. } => o.stdout.extend(data),
                Frame::Stderr { data, .. } => o.stderr.extend(data),
                Frame::Exited { code, .. } => o.exited = Some(code),
                Frame::Signaled { signal, .. } => o.signaled = Some(signal),
                Frame::SpawnFailed { errno, msg, .. } => o.spawn_failed = Some((errno, msg)),
                Frame::StdinAck { bytes, .. } => o.stdin_acked += u64::from(bytes),
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    fn run(&mut self, spawn: Spawn) -> Outcome {
        let id = spawn.id;
        self.send(Frame::Spawn(spawn));
        self.collect(&[id]).remove(&id).unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sh(id: u32, script: &str) -> Spawn {
    Spawn::new(id, &["sh", "-c", script])
}

#[test]
fn runs_a_command() {
    let mut agent = Agent::start();
    let o = agent.run(Spawn::new(1, &["echo", "hello", "world"]));
    assert!(o.started);
    assert_eq!(o.stdout(), "hello world\n");
    assert_eq!(o.exited, Some(0));
}

#[test]
fn stdout_and_stderr_are_separate() {
    let mut agent = Agent::start();
    let o = agent.run(sh(1, "echo out; echo err >&2; exit 3"));
    assert_eq!(o.stdout(), "out\n");
    assert_eq!(o.stderr(), "err\n");
    assert_eq!(o.exited, Some(3));
}

#[test]
fn missing_command_is_127() {
    let mut agent = Agent::start();
    let o = agent.run(Spawn::new(1, &["no-such-command-starina"]));
    assert_eq!(o.exited, Some(127));
    assert!(
        o.stderr()
            .contains("no-such-command-starina: command not found"),
        "{}",
        o.stderr()
    );
}

#[test]
fn stdin_is_streamed_and_closed() {
    let mut agent = Agent::start();
    agent.send(Frame::Spawn(Spawn::new(1, &["cat"])));
    agent.send(Frame::Stdin {
        id: 1,
        data: b"abc".to_vec(),
    });
    agent.send(Frame::Stdin {
        id: 1,
        data: b"def\n".to_vec(),
    });
    agent.send(Frame::StdinClose { id: 1 });
    let o = agent.collect(&[1]).remove(&1).unwrap();
    assert_eq!(o.stdout(), "abcdef\n");
    assert_eq!(o.exited, Some(0));
}

#[test]
fn env_and_cwd() {
    let mut agent = Agent::start();
    let mut spawn = sh(1, "pwd; echo $GREETING");
    spawn.env.push((b"GREETING".to_vec(), b"hi there".to_vec()));
    spawn.cwd = Some(b"/tmp".to_vec());
    let o = agent.run(spawn);
    assert_eq!(o.stdout(), "/tmp\nhi there\n");

    let mut spawn = Spawn::new(2, &["true"]);
    spawn.cwd = Some(b"/no/such/dir".to_vec());
    let o = agent.run(spawn);
    let (errno, msg) = o.spawn_failed.expect("SpawnFailed");
    assert_eq!(errno, libc::ENOENT);
    assert!(msg.contains("/no/such/dir"), "{msg}");
    assert!(!o.started);
}

fn as_user(id: u32, script: &str, user: &str) -> Spawn {
    Spawn {
        user: Some(user.as_bytes().to_vec()),
        ..sh(id, script)
    }
}

/// The uid the agent runs with (the owner of its /proc entry).
fn agent_uid(agent: &Agent) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{}", agent.child.id()))
        .expect("agent's /proc entry")
        .uid()
}

#[test]
fn user_sets_ids_groups_and_home() {
    let mut agent = Agent::start();
    let ids = "id -u; id -g; id -G; echo $HOME";
    if agent_uid(&agent) == 0 {
        // Only root may switch; ids with no /etc/passwd entry on any host.
        let o = agent.run(as_user(1, ids, "4242:4343"));
        assert_eq!(o.stdout(), "4242\n4343\n4343\n/\n", "{}", o.stderr());
        let o = agent.run(as_user(2, "id -u; echo $HOME", "root"));
        assert_eq!(o.stdout(), "0\n/root\n");
    } else {
        let uid = agent_uid(&agent).to_string();
        let o = agent.run(as_user(1, "id -u", &uid));
        assert_eq!(o.stdout(), format!("{uid}\n"), "{}", o.stderr());
    }
    // HOME from the request wins.
    let uid = agent_uid(&agent).to_string();
    let mut spawn = as_user(3, "echo $HOME", &uid);
    spawn.env.push((b"HOME".to_vec(), b"/mine".to_vec()));
    assert_eq!(agent.run(spawn).stdout(), "/mine\n");
}

#[test]
fn unknown_user_fails_to_spawn() {
    let mut agent = Agent::start();
    let o = agent.run(as_user(1, "echo ran", "nosuchuser-starina"));
    let (errno, msg) = o.spawn_failed.expect("SpawnFailed");
    assert_eq!(errno, libc::EINVAL);
    assert!(msg.contains("unknown user 'nosuchuser-starina'"), "{msg}");
    assert!(!o.started && o.stdout.is_empty());
    // The id is free again.
    assert_eq!(agent.run(sh(1, "true")).exited, Some(0));
}

#[test]
fn kill_reports_the_signal() {
    let mut agent = Agent::start();
    agent.send(Frame::Spawn(Spawn::new(1, &["sleep", "100"])));
    assert!(matches!(agent.recv(), Frame::Started { id: 1, pid } if pid > 0));
    agent.send(Frame::Kill { id: 1, signal: 15 });
    let o = agent.collect(&[1]).remove(&1).unwrap();
    assert_eq!(o.signaled, Some(15));
}

#[test]
fn many_processes_at_once() {
    let mut agent = Agent::start();
    let ids: Vec<u32> = (100..130).collect();
    for &id in &ids {
        let mut spawn = sh(
            id,
            "sleep 0.2; echo out $N; echo err $N >&2; exit $((N % 7))",
        );
        spawn.env.push((b"N".to_vec(), id.to_string().into_bytes()));
        agent.send(Frame::Spawn(spawn));
    }
    let outcomes = agent.collect(&ids);
    for id in ids {
        let o = &outcomes[&id];
        assert_eq!(o.stdout(), format!("out {id}\n"));
        assert_eq!(o.stderr(), format!("err {id}\n"));
        assert_eq!(o.exited, Some((id % 7) as i32));
    }
}

#[test]
fn large_output_is_complete_and_ordered() {
    let mut agent = Agent::start();
    let o = agent.run(sh(1, "seq 1 200000"));
    let expected: String = (1..=200000).map(|i| format!("{i}\n")).collect();
    assert_eq!(o.stdout.len(), expected.len());
    assert!(o.stdout() == expected);
    assert_eq!(o.exited, Some(0));
}

#[test]
fn ids_are_reusable_and_duplicates_rejected() {
    let mut agent = Agent::start();
    agent.send(Frame::Spawn(Spawn::new(1, &["sleep", "100"])));
    assert!(matches!(agent.recv(), Frame::Started { id: 1, .. }));
    let o = agent.run(Spawn::new(1, &["true"]));
    assert_eq!(o.spawn_failed.map(|(e, _)| e), Some(libc::EEXIST));
    agent.send(Frame::Kill { id: 1, signal: 9 });
    assert_eq!(agent.collect(&[1])[&1].signaled, Some(9));
    assert_eq!(agent.run(Spawn::new(1, &["true"])).exited, Some(0));
}

#[test]
fn ping_and_garbage() {
    let mut agent = Agent::start();
    // A frame with an unknown type is skipped; the stream goes on.
    agent
        .stdin
        .write_all(&[6, 0, 0, 0, 0x7e, 1, 0, 0, 0, 0])
        .unwrap();
    agent.send(Frame::Ping { nonce: 42 });
    assert_eq!(agent.recv(), Frame::Pong { nonce: 42 });
}

#[test]
fn panic_request_is_honoured() {
    let mut agent = Agent::start();
    agent.send(Frame::Panic);
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            // On the host the agent exits instead of crashing the kernel.
            assert_eq!(status.code(), Some(99));
            break;
        }
        assert!(Instant::now() < deadline, "agent did not exit");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `--pipe-bench N` (a mode for `make bench`, not the protocol): N pipe
/// round trips with a child, then one summary line.
#[test]
fn pipe_bench_reports_its_round_trips() {
    let out = Command::new(env!("CARGO_BIN_EXE_starina-guest-agent"))
        .args(["--pipe-bench", "500"])
        .output()
        .expect("cannot run the agent");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{:?}: {stdout} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.trim();
    assert!(
        line.starts_with("pipe-bench: rounds=500 total_ns="),
        "{line:?}"
    );
    let per: u64 = line
        .rsplit("roundtrip_ns=")
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no roundtrip_ns in {line:?}"));
    assert!(per > 0, "{line:?}");
}

// -- stdin flow control and framing errors ---------------------------------

/// The agent's resident memory, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Deterministic bytes that do not compress into patterns.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A host that keeps to the stdin window of one process.
struct WindowedSender {
    id: u32,
    window: StdinWindow,
    sent: usize,
}

impl WindowedSender {
    fn new(id: u32) -> Self {
        WindowedSender {
            id,
            window: StdinWindow::new(),
            sent: 0,
        }
    }

    /// Sends as much of `data[self.sent..]` as the window allows.
    fn send_some(&mut self, agent: &mut Agent, data: &[u8]) {
        while self.sent < data.len() && !self.window.is_closed() {
            let n = (data.len() - self.sent)
                .min(MAX_DATA_CHUNK)
                .min(self.window.available());
            let chunk = data[self.sent..self.sent + n].to_vec();
            agent.send(Frame::Stdin {
                id: self.id,
                data: chunk,
            });
            self.window.sent(n);
            self.sent += n;
        }
    }
}

#[test]
fn big_stdin_through_the_window_is_exact() {
    let mut agent = Agent::start();
    let input = noise(4 << 20);
    agent.send(Frame::Spawn(Spawn::new(1, &["cat"])));
    let mut sender = WindowedSender::new(1);
    let mut o = Outcome::default();
    let mut closed = false;
    let deadline = Instant::now() + TIMEOUT;
    while !o.done() {
        sender.send_some(&mut agent, &input);
        if sender.sent == input.len() && !closed {
            agent.send(Frame::StdinClose { id: 1 });
            closed = true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match agent.frames.recv_timeout(left).expect("agent reply") {
            Frame::StdinAck { bytes, .. } => {
                sender.window.acked(bytes);
                o.stdin_acked += u64::from(bytes);
            }
            Frame::Started { .. } => o.started = true,
            Frame::Stdout { data, .. } => o.stdout.extend(data),
            Frame::Exited { code, .. } => o.exited = Some(code),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(o.exited, Some(0));
    assert_eq!(o.stdout.len(), input.len());
    assert!(o.stdout == input, "cat's output differs from its input");
    assert_eq!(o.stdin_acked, input.len() as u64);
}

/// A process that never reads its stdin takes one window (plus its pipe)
/// and no more; the host's writer for it stalls, nothing else does.
#[test]
fn unread_stdin_stalls_only_its_own_writer() {
    let mut agent = Agent::start();
    agent.send(Frame::Spawn(Spawn::new(1, &["sleep", "100"])));
    assert!(matches!(agent.recv(), Frame::Started { id: 1, .. }));
    let flood = vec![b'y'; 16 << 20];
    let mut sender = WindowedSender::new(1);
    // Send while acknowledgements open the window; stop once none came
    // for a while.
    loop {
        sender.send_some(&mut agent, &flood);
        match agent.frames.recv_timeout(Duration::from_millis(500)) {
            Ok(Frame::StdinAck { id: 1, bytes }) => sender.window.acked(bytes),
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert!(sender.window.is_closed());
    // The window, plus what the pipe holds (64 KiB by default on Linux).
    assert!(sender.sent >= STDIN_WINDOW, "sent {}", sender.sent);
    assert!(
        sender.sent <= STDIN_WINDOW + (1 << 20),
        "sent {}",
        sender.sent
    );
    eprintln!(
        "stalled after {} bytes sent, {} unacknowledged",
        sender.sent,
        sender.window.unacked()
    );

    // The control stream and other processes go on.
    agent.send(Frame::Ping { nonce: 5 });
    assert_eq!(agent.recv(), Frame::Pong { nonce: 5 });
    let o = agent.run(sh(2, "echo still here"));
    assert_eq!(o.stdout(), "still here\n");
    assert_eq!(o.exited, Some(0));

    agent.send(Frame::Kill { id: 1, signal: 9 });
    let o = agent.collect(&[1]).remove(&1).unwrap();
    assert_eq!(o.signaled, Some(9));
}

/// A host that ignores the window cannot grow the agent: the process's
/// stdin is dropped, the process killed with a message, and the rest goes
/// on. (Before flow control the agent queued all of it.)
#[test]
fn stdin_flood_beyond_the_window_is_bounded() {
    let mut agent = Agent::start();
    let pid = agent.child.id();
    agent.send(Frame::Spawn(Spawn::new(1, &["sleep", "100"])));
    assert!(matches!(agent.recv(), Frame::Started { id: 1, .. }));
    let before = rss_kib(pid);
    let chunk = Frame::Stdin {
        id: 1,
        data: vec![b'y'; MAX_DATA_CHUNK],
    }
    .encode()
    .unwrap();
    const FLOOD: usize = 64 << 20;
    for _ in 0..FLOOD / MAX_DATA_CHUNK {
        agent.stdin.write_all(&chunk).unwrap();
    }
    agent.send(Frame::Ping { nonce: 6 });
    let o = agent.collect(&[1]).remove(&1).unwrap();
    assert_eq!(o.signaled, Some(9));
    assert!(o.stderr().contains("stdin overrun"), "{}", o.stderr());
    assert_eq!(agent.recv(), Frame::Pong { nonce: 6 });
    let after = rss_kib(pid);
    eprintln!("agent RSS {before} KiB before a {FLOOD}-byte flood, {after} KiB after");
    assert!(
        after < before + 16 * 1024,
        "agent grew from {before} to {after} KiB"
    );
    let o = agent.run(sh(2, "echo fine"));
    assert_eq!(o.stdout(), "fine\n");
    assert_eq!(o.exited, Some(0));
}

/// A frame length over the limit ends the control stream: the bytes after
/// it (here Panic frames inside the oversized frame) are never run, and the
/// agent's processes are killed.
#[test]
fn framing_error_closes_the_control_stream() {
    let mut agent = Agent::start();
    agent.send(Frame::Spawn(Spawn::new(1, &["sleep", "100"])));
    let Frame::Started { id: 1, pid: child } = agent.recv() else {
        panic!("expected Started");
    };
    let panic = Frame::Panic.encode().unwrap();
    let mut stream = ((MAX_FRAME_LEN + 1) as u32).to_le_bytes().to_vec();
    stream.push(0x01); // a Spawn
    stream.extend_from_slice(&1u32.to_le_bytes());
    while stream.len() < 2 * MAX_FRAME_LEN {
        stream.extend_from_slice(&panic);
    }
    // The agent stops reading once the stream breaks: writes may fail.
    for piece in stream.chunks(4096) {
        if agent.stdin.write_all(piece).is_err() {
            break;
        }
    }
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "agent did not end the stream");
        std::thread::sleep(Duration::from_millis(10));
    };
    // 99 would mean a Panic frame was decoded.
    assert_eq!(status.code(), Some(1));
    // Its process was killed: gone, or a zombie waiting for its reaper.
    let gone = |pid: u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(") ").next().is_some_and(|s| s.starts_with('Z')),
    };
    while !gone(child) {
        assert!(
            Instant::now() < deadline,
            "process {child} outlived the link"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for the report on `want`, skipping those about other ports (the
/// host's own listeners) but failing on one about a port in `forbidden`.
/// Returns whether it opened and the process it names.
fn listening(agent: &Agent, want: (Proto, u16), forbidden: &[(Proto, u16)]) -> (bool, String) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = agent.frames.recv_timeout(left).expect("a Listening frame");
        let Frame::Listening {
            proto,
            port,
            open,
            process,
        } = frame
        else {
            panic!("unexpected {frame:?}");
        };
        assert!(
            !forbidden.contains(&(proto, port)),
            "unexpected report: {proto} {port} open={open}"
        );
        if (proto, port) == want {
            return (open, process);
        }
    }
}

/// The host stands in for the guest: `--listeners` reports the host's
/// listeners on wildcard and loopback addresses, as the guest's agent does.
#[test]
fn listeners_are_reported_once_per_port() {
    use std::net::TcpListener;
    use std::net::UdpSocket;

    let agent = Agent::start_with(&["--listeners"]);
    let me = std::fs::read_to_string("/proc/self/comm").unwrap();
    let opened = (true, me.trim_end().to_string());
    let closed = (false, me.trim_end().to_string());
    // A connected UDP socket is not a listener.
    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.connect("127.0.0.1:9").unwrap();
    let connected = (Proto::Udp, connected.local_addr().unwrap().port());

    let start = Instant::now();
    let v4 = TcpListener::bind("127.0.0.1:0").unwrap();
    let tcp = (Proto::Tcp, v4.local_addr().unwrap().port());
    assert_eq!(listening(&agent, tcp, &[connected]), opened);
    let opened_in = start.elapsed();
    // Generous for a loaded machine; the poll is every 250 ms.
    assert!(
        opened_in < Duration::from_secs(3),
        "open took {opened_in:?}"
    );

    // A second socket on the port (IPv6, where the host has it) is no new
    // report, and the port stays open until both are gone.
    let v6 = TcpListener::bind(("::1", tcp.1)).ok();
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    let udp = (Proto::Udp, socket.local_addr().unwrap().port());
    assert_eq!(listening(&agent, udp, &[connected, tcp]), opened);
    drop(v4);
    if v6.is_some() {
        // Long enough for several polls: a close would have come by now.
        std::thread::sleep(Duration::from_millis(800));
    }
    drop(socket);
    let still_open: &[_] = if v6.is_some() {
        &[connected, tcp]
    } else {
        &[connected]
    };
    assert_eq!(listening(&agent, udp, still_open), closed);
    drop(v6);
    assert_eq!(listening(&agent, tcp, &[connected]), closed);
    eprintln!("listener reported open after {opened_in:?}");
}

impl Agent {
    /// Reads process `id`'s frames until its stdout holds `needle`; what
    /// came, with the final frame if the process ended first.
    fn stdout_until(&self, id: u32, seen: &mut Vec<u8>, needle: &str) -> Option<Frame> {
        let deadline = Instant::now() + TIMEOUT;
        while !String::from_utf8_lossy(seen).contains(needle) {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(frame) = self.frames.recv_timeout(left) else {
                panic!("no {needle:?} in {:?}", String::from_utf8_lossy(seen));
            };
            match frame {
                Frame::Stdout { id: i, data } if i == id => seen.extend(data),
                Frame::Stderr { .. } => panic!("stderr from a terminal: {frame:?}"),
                Frame::Exited { .. } | Frame::Signaled { .. } | Frame::SpawnFailed { .. } => {
                    return Some(frame)
                }
                _ => {}
            }
        }
        None
    }

    fn type_keys(&mut self, id: u32, keys: &str) {
        self.send(Frame::Stdin {
            id,
            data: keys.as_bytes().to_vec(),
        });
    }
}

#[test]
fn a_terminal_has_its_size_resizes_and_turns_ctrl_c_into_sigint() {
    use starina_bridge::process::WinSize;
    let mut agent = Agent::start();
    // Resizes for no process and for a process on pipes are ignored.
    agent.send(Frame::Resize {
        id: 99,
        size: WinSize::new(10, 10).unwrap(),
    });
    agent.send(Frame::Spawn(Spawn::new(2, &["sleep", "5"])));
    agent.send(Frame::Resize {
        id: 2,
        size: WinSize::new(10, 10).unwrap(),
    });
    let mut spawn = Spawn::new(1, &["sh"]);
    spawn.terminal = WinSize::new(24, 80);
    spawn.env.push((b"PS1".to_vec(), b"PROMPT> ".to_vec()));
    agent.send(Frame::Spawn(spawn));
    let mut out = Vec::new();
    assert_eq!(agent.stdout_until(1, &mut out, "PROMPT> "), None);
    agent.type_keys(1, "stty size; tty >/dev/null && echo ON-A-TTY\n");
    assert_eq!(agent.stdout_until(1, &mut out, "24 80"), None);
    assert_eq!(agent.stdout_until(1, &mut out, "ON-A-TTY"), None);
    agent.send(Frame::Resize {
        id: 1,
        size: WinSize::new(50, 132).unwrap(),
    });
    agent.type_keys(1, "stty size\n");
    assert_eq!(agent.stdout_until(1, &mut out, "50 132"), None);
    // Ctrl-C reaches the foreground job: sleep ends, the shell goes on.
    agent.type_keys(1, "sleep 100\n");
    std::thread::sleep(Duration::from_millis(500));
    let start = Instant::now();
    agent.type_keys(1, "\x03");
    agent.type_keys(1, "echo al$((1+1))ive\n");
    assert_eq!(agent.stdout_until(1, &mut out, "al2ive"), None);
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    agent.type_keys(1, "exit 7\n");
    let end = agent.stdout_until(1, &mut out, "never printed");
    assert_eq!(end, Some(Frame::Exited { id: 1, code: 7 }));
}

#[test]
fn closing_a_terminal_stdin_sends_end_of_file() {
    use starina_bridge::process::WinSize;
    let mut agent = Agent::start();
    let mut spawn = Spawn::new(1, &["cat"]);
    spawn.terminal = WinSize::new(24, 80);
    agent.send(Frame::Spawn(spawn));
    agent.type_keys(1, "typed\n");
    agent.send(Frame::StdinClose { id: 1 });
    let o = agent.collect(&[1]).remove(&1).unwrap();
    assert_eq!(o.exited, Some(0));
    assert!(o.stderr.is_empty());
    // The echo and cat's copy, each with the terminal's CR LF.
    assert_eq!(o.stdout(), "typed\r\ntyped\r\n");
}
