//! Host port forwards (`starina_host::forwards`): `run` follows its console
//! (against the fake QEMU), and forwards reach the real QEMU's user network
//! through its monitor: QEMU started with the host tool's command line (NIC,
//! monitor socket) on the PVH stub kernel, stopped before it runs (`-S`), so
//! no guest boots. Console marker lines fed by hand add and remove forwards;
//! QEMU's user network then accepts, or no longer accepts, connections (for
//! UDP: holds the host port, or lets it go).

use std::net::TcpListener;
use std::net::TcpStream;
use std::net::UdpSocket;
use std::path::Path;
use std::process::Child;
use std::process::Stdio;
use std::thread;
use std::time::Duration;
use std::time::Instant;

use starina_host::exec::TempDir;
use starina_host::forwards::HostForwards;
use starina_host::qemu;
use starina_tests::*;

/// Stops QEMU when the test ends, whichever way.
struct Qemu(Child);

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn added(port: u16) -> String {
    format!("[   3.141592] INFO  linux: net: forwarding TCP port {port} to Linux (test (pid 1))")
}

fn removed(port: u16) -> String {
    format!("[   9.000000] INFO  linux: net: stopped forwarding TCP port {port} (0 connections)")
}

fn udp_added(port: u16) -> String {
    format!("[   3.2] INFO  linux: net: forwarding UDP port {port} to Linux (init (pid 2))")
}

fn udp_removed(port: u16) -> String {
    format!("[   9.1] INFO  linux: net: stopped forwarding UDP port {port} (0 datagrams in, 0 out)")
}

fn free_udp_port() -> u16 {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap().port()
}

fn wait_for(path: &Path, qemu: &mut Qemu) {
    let start = Instant::now();
    while !path.exists() {
        if let Ok(Some(status)) = qemu.0.try_wait() {
            panic!("QEMU exited ({status}) before making its monitor socket");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no monitor socket"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn run_follows_the_console_for_forwards() {
    let http = free_port().to_string();
    let serial = format!(
        "booting\n{}\r\n{}\n{}\n",
        added(http.parse().unwrap()),
        added(1),
        removed(1)
    );
    let qemu = fixture("fake-qemu");
    let kernel = qemu.to_str().unwrap();
    let run = starina_with_env(
        &["run", "--kernel", kernel],
        &[
            ("STARINA_QEMU", kernel),
            ("STARINA_HTTP_PORT", &http),
            ("FAKE_QEMU_SERIAL", &serial),
        ],
    );
    run.assert_code(0);
    run.assert_console(&added(1));
    let said: Vec<&str> = run.stderr.lines().filter(|l| l.contains("port")).collect();
    // The http port is refused without asking QEMU; the fake QEMU has no
    // monitor, which is said for port 1; the removal is quiet.
    let inside = |port: &str| format!("Linux's port {port} is reachable inside Starina only");
    assert_eq!(said.len(), 2, "{}", run.transcript());
    assert_eq!(
        said[0],
        format!(
            "starina: host port {http} is in use (Starina's httpd): {}",
            inside(&http)
        )
    );
    assert!(
        said[1].starts_with("starina: cannot reach QEMU's monitor ("),
        "{}",
        said[1]
    );
    assert!(said[1].ends_with(&inside("1")), "{}", said[1]);
}

#[test]
#[ignore = "starts QEMU (no guest runs): run by make test"]
fn forwards_reach_qemus_user_network() {
    let start = Instant::now();
    let host = host_with_env(&[]);
    let tmp = TempDir::new("starina-hostfwd-test").unwrap();
    let monitor = tmp.0.join("monitor.sock");
    let config = qemu::QemuConfig {
        machine: qemu::Machine::Q35,
        profile: "none".into(),
        kernel: pvh_stub(env!("CARGO_TARGET_TMPDIR")),
        kvm: false,
        icount: false,
        cpus: 1,
        bootfs: None,
        nic_port: Some(host.http_port),
        hostlink: qemu::HostLink::None,
        disk: None,
        monitor: Some(monitor.clone()),
        extra: vec!["-S".into()],
    };
    let mut cmd = qemu::command(&host, &config.args(&qemu::serial_to_stdout()))
        .unwrap_or_else(|(_, msg)| panic!("{msg}"));
    cmd.stdin(Stdio::null()).stdout(Stdio::null());
    let mut qemu =
        Qemu(qemu::spawn(&mut cmd, &host.qemu).unwrap_or_else(|(_, msg)| panic!("{msg}")));
    wait_for(&monitor, &mut qemu);
    let mut forwards = HostForwards::new(monitor, host.http_port);

    // A free port: QEMU listens on it, and accepts (its guest side is stopped).
    let port = free_port();
    assert_eq!(
        forwards.line(&added(port)),
        Some(format!("Linux's port {port} is at 127.0.0.1:{port}"))
    );
    TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("port {port} is not forwarded: {e}"));

    // A port a host process holds: reported, not forwarded.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    assert_eq!(
        forwards.line(&added(busy)),
        Some(format!(
            "host port {busy} is in use: Linux's port {busy} is reachable inside Starina only"
        ))
    );

    // The http port already forwards to the guest's port 80.
    let http = forwards.line(&added(host.http_port)).unwrap();
    assert!(
        http.starts_with(&format!("host port {} is in use", host.http_port)),
        "{http}"
    );

    // Removed: QEMU no longer listens there.
    assert_eq!(forwards.line(&removed(port)), None);
    let refused = TcpStream::connect(("127.0.0.1", port));
    assert!(
        refused.is_err(),
        "port {port} still forwarded after removal"
    );
    assert_eq!(forwards.added().count(), 0);

    // UDP: QEMU holds the host port while forwarded (a bind fails), and
    // lets it go when removed.
    let port = free_udp_port();
    assert_eq!(
        forwards.line(&udp_added(port)),
        Some(format!("Linux's UDP port {port} is at 127.0.0.1:{port}"))
    );
    assert!(
        UdpSocket::bind(("127.0.0.1", port)).is_err(),
        "QEMU does not hold UDP port {port}"
    );
    let holder = UdpSocket::bind("127.0.0.1:0").unwrap();
    let busy = holder.local_addr().unwrap().port();
    assert_eq!(
        forwards.line(&udp_added(busy)),
        Some(format!(
            "host UDP port {busy} is in use: Linux's UDP port {busy} is reachable inside Starina only"
        ))
    );
    // UDP on the http port's number is free (httpd's forward is TCP).
    let http_port = host.http_port;
    if UdpSocket::bind(("127.0.0.1", http_port)).is_ok() {
        assert_eq!(
            forwards.line(&udp_added(http_port)),
            Some(format!(
                "Linux's UDP port {http_port} is at 127.0.0.1:{http_port}"
            ))
        );
        assert_eq!(forwards.line(&udp_removed(http_port)), None);
    }
    assert_eq!(forwards.line(&udp_removed(port)), None);
    UdpSocket::bind(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("UDP port {port} still held after removal: {e}"));
    assert_eq!(forwards.added().count(), 0);
    drop(qemu);
    eprintln!("took {} ms", start.elapsed().as_millis());
}
