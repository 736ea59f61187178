//! A host-side client of the guest agent's process protocol (frames from
//! `starina_bridge::process`), over a Unix socket that QEMU's virtconsole
//! chardev connects to. Used by `starina direct` (a Linux booted by QEMU
//! itself, without Starina).

use std::collections::HashMap;
use std::collections::HashSet;
use std::io::Read;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::Spawn;

/// What one process did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub pid: Option<u32>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exited: Option<i32>,
    pub signaled: Option<i32>,
    pub failed: Option<(i32, String)>,
}

impl Outcome {
    pub fn done(&self) -> bool {
        self.exited.is_some() || self.signaled.is_some() || self.failed.is_some()
    }

    /// `exit status N`, `killed by signal N` or `spawn failed: ...`.
    pub fn status(&self) -> String {
        match (self.exited, self.signaled, &self.failed) {
            (Some(code), _, _) => format!("exit status {code}"),
            (_, Some(signal), _) => format!("killed by signal {signal}"),
            (_, _, Some((errno, msg))) => format!("spawn failed: errno {errno}: {msg}"),
            _ => "running".into(),
        }
    }
}

/// The connection to the agent and what it has reported.
pub struct Agent {
    stream: UnixStream,
    decoder: FrameDecoder,
    /// The kernel release from the agent's Ready frame.
    pub ready: Option<String>,
    pub outcomes: HashMap<u32, Outcome>,
    pub pongs: HashSet<u32>,
}

impl Agent {
    pub fn new(stream: UnixStream) -> Agent {
        Agent {
            stream,
            decoder: FrameDecoder::new(),
            ready: None,
            outcomes: HashMap::new(),
            pongs: HashSet::new(),
        }
    }

    pub fn send(&mut self, frame: &Frame) -> Result<(), String> {
        let bytes = frame.encode().map_err(|e| e.to_string())?;
        self.stream
            .write_all(&bytes)
            .map_err(|e| format!("control socket: {e}"))
    }

    /// Reads once (until `deadline`) and handles the frames; false on timeout.
    fn pump(&mut self, deadline: Instant) -> Result<bool, String> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let _ = self
            .stream
            .set_read_timeout(Some(left.max(Duration::from_millis(1))));
        let mut buf = [0u8; 65536];
        let n = match self.stream.read(&mut buf) {
            Ok(0) => return Err("control socket closed".into()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(false)
            }
            Err(e) => return Err(format!("control socket: {e}")),
        };
        self.decoder.push(&buf[..n]);
        while let Some(frame) = self.decoder.next() {
            self.handle(frame.map_err(|e| e.to_string())?)?;
        }
        Ok(true)
    }

    fn handle(&mut self, frame: Frame) -> Result<(), String> {
        let id = frame.id();
        let outcome = || Outcome::default();
        match frame {
            Frame::Ready { kernel_release } => self.ready = Some(kernel_release),
            Frame::Pong { nonce } => {
                self.pongs.insert(nonce);
            }
            Frame::Started { pid, .. } => {
                self.outcomes.entry(id).or_insert_with(outcome).pid = Some(pid)
            }
            Frame::Stdout { data, .. } => self
                .outcomes
                .entry(id)
                .or_insert_with(outcome)
                .stdout
                .extend(data),
            Frame::Stderr { data, .. } => self
                .outcomes
                .entry(id)
                .or_insert_with(outcome)
                .stderr
                .extend(data),
            Frame::Exited { code, .. } => {
                self.outcomes.entry(id).or_insert_with(outcome).exited = Some(code)
            }
            Frame::Signaled { signal, .. } => {
                self.outcomes.entry(id).or_insert_with(outcome).signaled = Some(signal)
            }
            Frame::SpawnFailed { errno, msg, .. } => {
                self.outcomes.entry(id).or_insert_with(outcome).failed = Some((errno, msg))
            }
            // The guest's listeners: `direct` forwards no ports.
            Frame::Listening { .. } => {}
            other => return Err(format!("unexpected frame {other:?}")),
        }
        Ok(())
    }

    /// Handles frames until `cond` holds; an error after `timeout`.
    pub fn wait(
        &mut self,
        cond: impl Fn(&Agent) -> bool,
        timeout: Duration,
        what: &str,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while !cond(self) {
            if !self.pump(deadline)? {
                return Err(format!("timed out waiting for {what}"));
            }
        }
        Ok(())
    }

    /// Sends `spawn` and waits for the process to end.
    pub fn run(&mut self, spawn: Spawn, timeout: Duration) -> Result<Outcome, String> {
        let id = spawn.id;
        let what = format!("{:?}", String::from_utf8_lossy(&spawn.argv.concat()));
        self.outcomes.insert(id, Outcome::default());
        self.send(&Frame::Spawn(spawn))?;
        self.wait(|a| a.outcomes[&id].done(), timeout, &what)?;
        Ok(self.outcomes.remove(&id).unwrap_or_default())
    }
}

/// Splits a command line into words as a shell would (quotes, backslashes;
/// no expansions).
pub fn shell_words(line: &str) -> Result<Vec<String>, String> {
    let (mut words, mut word, mut in_word) = (Vec::new(), String::new(), false);
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                continue;
            }
            '\'' => loop {
                match chars.next() {
                    Some('\'') => break,
                    Some(c) => word.push(c),
                    None => return Err(format!("unclosed quote in {line:?}")),
                }
            },
            '"' => loop {
                match chars.next() {
                    Some('"') => break,
                    Some('\\') => word.extend(chars.next()),
                    Some(c) => word.push(c),
                    None => return Err(format!("unclosed quote in {line:?}")),
                }
            },
            '\\' => word.extend(chars.next()),
            c => word.push(c),
        }
        in_word = true;
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(shell_words("uname -a").unwrap(), ["uname", "-a"]);
        assert_eq!(
            shell_words(r#"sh -c 'echo "x y"; exit 3' a\ b """#).unwrap(),
            ["sh", "-c", "echo \"x y\"; exit 3", "a b", ""]
        );
        assert!(shell_words("echo 'open").is_err());
    }

    #[test]
    fn talks_to_an_agent() {
        let (host, mut guest) = UnixStream::pair().unwrap();
        let mut agent = Agent::new(host);
        let mut frames = Vec::new();
        for f in [
            Frame::Ready {
                kernel_release: "6.12".into(),
            },
            Frame::Started { id: 4, pid: 9 },
            Frame::Stdout {
                id: 4,
                data: b"out\n".to_vec(),
            },
            Frame::Exited { id: 4, code: 3 },
        ] {
            frames.extend(f.encode().unwrap());
        }
        guest.write_all(&frames).unwrap();
        let o = agent
            .run(Spawn::new(4, &["sh"]), Duration::from_secs(5))
            .unwrap();
        assert_eq!(
            (agent.ready.as_deref(), o.pid, o.exited),
            (Some("6.12"), Some(9), Some(3))
        );
        assert_eq!(
            (o.stdout.as_slice(), o.status().as_str()),
            (&b"out\n"[..], "exit status 3")
        );
        let mut sent = vec![0u8; 4];
        guest.read_exact(&mut sent).unwrap();
        // The Spawn frame: a length prefix, then type 0x01.
        assert!(u32::from_le_bytes(sent[..4].try_into().unwrap()) > 5);
    }
}
