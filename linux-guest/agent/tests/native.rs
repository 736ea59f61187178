//! Native commands from Linux programs, on the host: the agent in
//! `--stdio --native-socket PATH` mode, the test playing the linux server
//! on its control stream, and the agent binary called as `starina` (a
//! symlink) playing the Linux program.

use std::io::Read;
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Child;
use std::process::ChildStdin;
use std::process::Command;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::NativeSpawn;
use starina_bridge::process::NATIVE_WINDOW;

const TIMEOUT: Duration = Duration::from_secs(20);

struct Agent {
    child: Child,
    stdin: ChildStdin,
    frames: mpsc::Receiver<Frame>,
    dir: PathBuf,
}

impl Agent {
    fn start(name: &str) -> Agent {
        let dir =
            std::env::temp_dir().join(format!("starina-native-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let exe = env!("CARGO_BIN_EXE_starina-guest-agent");
        std::os::unix::fs::symlink(exe, dir.join("starina")).unwrap();
        let mut child = Command::new(exe)
            .args(["--stdio", "--native-socket"])
            .arg(dir.join("native.sock"))
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
                    if tx.send(frame.expect("a malformed frame")).is_err() {
                        return;
                    }
                }
            }
        });
        let agent = Agent {
            child,
            stdin,
            frames,
            dir,
        };
        assert!(matches!(agent.recv(), Frame::Ready { .. }));
        let deadline = Instant::now() + TIMEOUT;
        while !agent.dir.join("native.sock").exists() {
            assert!(Instant::now() < deadline, "no socket");
            std::thread::sleep(Duration::from_millis(10));
        }
        agent
    }

    fn send(&mut self, frame: Frame) {
        self.stdin.write_all(&frame.encode().unwrap()).unwrap();
    }

    fn recv(&self) -> Frame {
        self.frames
            .recv_timeout(TIMEOUT)
            .expect("a frame from the agent")
    }

    /// `starina ARGS...`, its stdin a pipe, with `cwd`.
    fn starina(&self, args: &[&str]) -> Child {
        Command::new(self.dir.join("starina"))
            .args(args)
            .env("STARINA_NATIVE_SOCKET", self.dir.join("native.sock"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start starina")
    }

    fn spawned(&self) -> NativeSpawn {
        match self.recv() {
            Frame::NativeSpawn(req) => req,
            other => panic!("expected NativeSpawn, got {other:?}"),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn output(child: Child) -> (std::process::ExitStatus, String, String) {
    let out = child.wait_with_output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status, text(&out.stdout), text(&out.stderr))
}

#[test]
fn output_status_and_translated_paths() {
    let mut agent = Agent::start("basic");
    let mut child = agent.starina(&["cat", "/mnt/starina/www/index.html", "/mnt/starina", "/etc"]);
    drop(child.stdin.take());
    let req = agent.spawned();
    assert_eq!(req.argv, ["cat", "/www/index.html", "/", "/etc"]);
    let id = req.id;
    assert_eq!(agent.recv(), Frame::NativeStdinClose { id });
    agent.send(Frame::NativeStdout {
        id,
        data: b"<html>\n".to_vec(),
    });
    agent.send(Frame::NativeStderr {
        id,
        data: b"warning\n".to_vec(),
    });
    assert_eq!(agent.recv(), Frame::NativeOutputAck { id, bytes: 7 });
    assert_eq!(agent.recv(), Frame::NativeOutputAck { id, bytes: 8 });
    agent.send(Frame::NativeExited { id, status: 3 });
    let (status, out, err) = output(child);
    assert_eq!(
        (status.code(), out.as_str(), err.as_str()),
        (Some(3), "<html>\n", "warning\n")
    );
}

#[test]
fn spawn_failure_is_the_message_and_status() {
    let mut agent = Agent::start("fail");
    let child = agent.starina(&["nosuch"]);
    let id = agent.spawned().id;
    let reason = "no native command 'nosuch'".to_string();
    agent.send(Frame::NativeSpawnFailed {
        id,
        status: 127,
        reason,
    });
    let (status, out, err) = output(child);
    assert_eq!(status.code(), Some(127));
    assert_eq!(out, "");
    assert_eq!(err, "starina: no native command 'nosuch'\n");
}

#[test]
fn stdin_keeps_to_the_window() {
    let mut agent = Agent::start("stdin");
    let mut child = agent.starina(&["wc"]);
    let id = agent.spawned().id;
    let mut stdin = child.stdin.take().unwrap();
    let total = NATIVE_WINDOW * 3;
    let writer = std::thread::spawn(move || {
        stdin.write_all(&vec![b'x'; total]).unwrap();
    });
    // Nothing acknowledged: no more than a window comes.
    let mut got = 0;
    while got < NATIVE_WINDOW {
        match agent.recv() {
            Frame::NativeStdin { id: i, data } if i == id => got += data.len(),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, NATIVE_WINDOW);
    assert!(agent
        .frames
        .recv_timeout(Duration::from_millis(300))
        .is_err());
    // Acknowledge as it comes: all of it, then the close.
    agent.send(Frame::NativeStdinAck {
        id,
        bytes: got as u32,
    });
    loop {
        match agent.recv() {
            Frame::NativeStdin { data, .. } => {
                got += data.len();
                agent.send(Frame::NativeStdinAck {
                    id,
                    bytes: data.len() as u32,
                });
            }
            Frame::NativeStdinClose { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    writer.join().unwrap();
    assert_eq!(got, total);
    agent.send(Frame::NativeExited { id, status: 0 });
    assert_eq!(output(child).0.code(), Some(0));
}

#[test]
fn sigint_kills_the_command_and_then_this_program() {
    let mut agent = Agent::start("sigint");
    let child = agent.starina(&["crash", "spin"]);
    let id = agent.spawned().id;
    std::thread::sleep(Duration::from_millis(200));
    send_signal(child.id(), "INT");
    loop {
        match agent.recv() {
            Frame::NativeKill { id: i } if i == id => break,
            Frame::NativeStdinClose { .. } | Frame::NativeStdin { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    agent.send(Frame::NativeExited { id, status: 137 });
    let (status, _, _) = output(child);
    assert_eq!(status.signal(), Some(2), "{status:?}");
}

#[test]
fn a_closed_stdout_kills_the_command() {
    let mut agent = Agent::start("epipe");
    let mut child = agent.starina(&["yes"]);
    drop(child.stdout.take()); // The reader is gone.
    let id = agent.spawned().id;
    agent.send(Frame::NativeStdout {
        id,
        data: b"y\n".to_vec(),
    });
    let deadline = Instant::now() + TIMEOUT;
    loop {
        assert!(Instant::now() < deadline);
        match agent.recv() {
            Frame::NativeKill { id: i } if i == id => break,
            _ => {}
        }
    }
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(13), "{status:?}");
    // The host still finishes the command; the agent drops what is left.
    agent.send(Frame::NativeStdout {
        id,
        data: b"late".to_vec(),
    });
    agent.send(Frame::NativeExited { id, status: 137 });
}

#[test]
fn a_program_that_goes_away_kills_its_command() {
    let mut agent = Agent::start("gone");
    let mut child = agent.starina(&["crash", "spin"]);
    let id = agent.spawned().id;
    child.kill().unwrap();
    child.wait().unwrap();
    loop {
        match agent.recv() {
            Frame::NativeKill { id: i } if i == id => break,
            Frame::NativeStdinClose { .. } | Frame::NativeStdin { .. } => {}
            other => panic!("{other:?}"),
        }
    }
    // Output for it is acknowledged (dropped), so the host can finish.
    agent.send(Frame::NativeStdout {
        id,
        data: vec![1; 100],
    });
    assert_eq!(agent.recv(), Frame::NativeOutputAck { id, bytes: 100 });
    agent.send(Frame::NativeExited { id, status: 137 });
}

#[test]
fn no_agent_is_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_starina-guest-agent"))
        .arg0_as_starina()
        .args(["echo", "hi"])
        .env("STARINA_NATIVE_SOCKET", "/nonexistent/native.sock")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(126));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("starina: cannot reach the agent at /nonexistent/native.sock"),
        "{err}"
    );
}

trait Arg0 {
    fn arg0_as_starina(&mut self) -> &mut Self;
}

impl Arg0 for Command {
    fn arg0_as_starina(&mut self) -> &mut Self {
        std::os::unix::process::CommandExt::arg0(self, "starina")
    }
}

/// Sends signal `sig` (a name for kill(1)) to `pid`.
fn send_signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

#[test]
fn connections_beyond_the_limit_are_refused() {
    let mut agent = Agent::start("limit");
    let mut waiting = Vec::new();
    let mut ids = Vec::new();
    for _ in 0..32 {
        waiting.push(agent.starina(&["crash", "spin"]));
        ids.push(agent.spawned().id);
    }
    let (status, _, err) = output(agent.starina(&["echo", "one too many"]));
    assert_eq!(status.code(), Some(126));
    assert_eq!(
        err,
        "starina: too many native commands at once (at most 32)\n"
    );
    // Once one ends, a new one gets through.
    let first = ids[0];
    agent.send(Frame::NativeExited {
        id: first,
        status: 0,
    });
    assert_eq!(output(waiting.remove(0)).0.code(), Some(0));
    let deadline = Instant::now() + TIMEOUT;
    let next = loop {
        assert!(Instant::now() < deadline);
        let mut child = agent.starina(&["echo"]);
        drop(child.stdin.take());
        if let Some(id) = next_spawn(&agent, Duration::from_secs(2)) {
            break (child, id);
        }
        // Refused: its connection may not have been counted out yet.
        let _ = child.wait();
    };
    assert!(!ids[1..].contains(&next.1), "id {} is in use", next.1);
    for &id in &ids[1..] {
        agent.send(Frame::NativeExited { id, status: 0 });
    }
    agent.send(Frame::NativeExited {
        id: next.1,
        status: 5,
    });
    assert_eq!(output(next.0).0.code(), Some(5));
    for child in waiting {
        assert_eq!(output(child).0.code(), Some(0));
    }
}

/// The id of the next `NativeSpawn` within `wait`, skipping other frames.
fn next_spawn(agent: &Agent, wait: Duration) -> Option<u32> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        if let Frame::NativeSpawn(req) = agent.frames.recv_timeout(left).ok()? {
            return Some(req.id);
        }
    }
}
