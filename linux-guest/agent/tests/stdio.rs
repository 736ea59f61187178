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
use starina_bridge::process::Spawn;

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
        let mut child = Command::new(env!("CARGO_BIN_EXE_starina-guest-agent"))
            .arg("--stdio")
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
