//! An OS booted with the host link on a Unix socket that the test itself
//! serves: it talks to the Linux guest's agent directly (Spawn frames,
//! raw frames such as a test panic request) while its serial console is
//! collected. Dropping it stops QEMU.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::process::Child;
use std::process::Stdio;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_host::agent::Agent;
use starina_host::agent::Outcome;
use starina_host::disk;
use starina_host::exec::TempDir;
use starina_host::qemu;
use starina_host::Streams;

use crate::frames::spawn_frame;
use crate::host_with_env;
use crate::kernel;
use crate::SharedText;
use crate::TEST_DISK_SIZE;

pub struct LinkedGuest {
    child: Child,
    console: SharedText,
    pub agent: Agent,
    /// The agent's stream, for writing frames.
    link: UnixStream,
    next_id: u32,
    /// Where the guest's port 80 is forwarded, if it has a NIC.
    pub http_port: Option<u16>,
    _tmp: TempDir,
}

impl LinkedGuest {
    /// Boots `profile` on q35 (with a NIC whose port 80 is forwarded to a
    /// free host port if `nic`) and waits up to `timeout` for QEMU to
    /// connect the host link.
    pub fn boot(profile: &str, nic: bool, timeout: Duration) -> LinkedGuest {
        let host = host_with_env(&[]);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut io = Streams {
            out: &mut out,
            err: &mut err,
        };
        let prepared =
            starina_host::boot::prepare(&host, profile, false, Some(&kernel()), true, &mut io)
                .unwrap_or_else(|_| panic!("prepare {profile}: {}", String::from_utf8_lossy(&err)));
        let tmp = TempDir::new("starina-linked-guest").unwrap();
        let socket = tmp.0.join("hostlink.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let http_port = nic.then_some(host.http_port);
        // Its own disk (in `tmp`), if the profile drives one.
        let disk = prepared.has(disk::DRIVER).then(|| {
            let path = tmp.0.join("disk.img");
            disk::create(&path, TEST_DISK_SIZE, None).unwrap_or_else(|e| panic!("disk: {e}"));
            path
        });
        let config = qemu::QemuConfig {
            machine: qemu::Machine::Q35,
            profile: profile.into(),
            kernel: prepared.kernel.clone(),
            kvm: false,
            icount: false,
            cpus: 1,
            bootfs: prepared.bootfs.clone(),
            nic_port: http_port,
            hostlink: qemu::HostLink::Socket(socket),
            disk,
            monitor: None,
            extra: Vec::new(),
        };
        let mut cmd = qemu::command(&host, &config.args(&qemu::serial_to_stdout()))
            .unwrap_or_else(|(_, msg)| panic!("{msg}"));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child =
            qemu::spawn(&mut cmd, &host.qemu).unwrap_or_else(|(_, msg)| panic!("{msg}"));
        let console = SharedText::new();
        let mut serial = child.stdout.take().unwrap();
        let mut sink = console.clone();
        thread::spawn(move || std::io::copy(&mut serial, &mut sink));
        let start = Instant::now();
        let stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(_) if start.elapsed() < timeout => thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    starina_host::exec::stop_qemu(&mut child);
                    panic!("QEMU did not connect the host link: {e}");
                }
            }
        };
        stream.set_nonblocking(false).unwrap();
        LinkedGuest {
            child,
            console,
            link: stream.try_clone().unwrap(),
            agent: Agent::new(stream),
            next_id: 1,
            http_port,
            _tmp: tmp,
        }
    }

    pub fn console(&self) -> String {
        self.console.text()
    }

    /// Writes a raw frame to the agent's stream.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), String> {
        self.link
            .write_all(frame)
            .map_err(|e| format!("host link: {e}"))
    }

    /// Starts `argv` in the guest; returns its id.
    pub fn spawn(&mut self, argv: &[&str]) -> Result<u32, String> {
        let id = self.next_id;
        self.next_id += 1;
        self.agent.outcomes.insert(id, Outcome::default());
        self.send(&spawn_frame(id, argv))?;
        Ok(id)
    }

    /// Handles frames until process `id` ends (or `timeout`).
    pub fn wait_done(&mut self, id: u32, timeout: Duration) -> Result<Outcome, String> {
        self.agent
            .wait(|a| a.outcomes[&id].done(), timeout, "the process to end")?;
        Ok(self.agent.outcomes.remove(&id).unwrap_or_default())
    }

    /// Runs `argv` in the guest to its end (or `timeout`).
    pub fn run(&mut self, argv: &[&str], timeout: Duration) -> Result<Outcome, String> {
        let id = self.spawn(argv)?;
        self.wait_done(id, timeout)
    }
}

impl Drop for LinkedGuest {
    fn drop(&mut self) {
        starina_host::exec::stop_qemu(&mut self.child);
    }
}
