//! `starina direct`: boots the Linux guest with QEMU itself (no Starina;
//! `linux-guest/run-direct.sh` gives the QEMU command line), drives the guest
//! agent over a virtconsole on a Unix socket, runs commands or the protocol
//! self test, and prints the boot time (QEMU start to the agent's Ready).

use std::io::BufRead;
use std::io::BufReader;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::Spawn;

use crate::agent::shell_words;
use crate::agent::Agent;
use crate::exec::stop_qemu;
use crate::markers;
use crate::status::ExitStatus;

/// The options of `starina direct`.
#[derive(Clone, Debug, Default)]
pub struct DirectOptions {
    /// The socket the VM's virtconsole chardev connects to.
    pub socket: PathBuf,
    /// Commands to run (shell-split); `uname -a` if none and no self test.
    pub run: Vec<String>,
    /// Run the protocol self test (ends with a guest panic).
    pub selftest: bool,
    /// Where the VM's serial console goes (default: stderr).
    pub serial_log: Option<PathBuf>,
    /// Seconds to wait for the agent, and for each command.
    pub timeout: f64,
    /// The QEMU command line.
    pub qemu: Vec<String>,
}

pub fn direct(opts: &DirectOptions) -> ExitStatus {
    let _ = std::fs::remove_file(&opts.socket);
    let listener = match UnixListener::bind(&opts.socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("direct: cannot listen on {}: {e}", opts.socket.display());
            return ExitStatus::Failed;
        }
    };
    let t0 = Instant::now();
    let mut qemu = match Command::new(&opts.qemu[0])
        .args(&opts.qemu[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) => {
            eprintln!("direct: cannot run {}: {e}", opts.qemu[0]);
            return ExitStatus::NoQemu;
        }
    };
    let ready_line = copy_serial(&mut qemu, opts.serial_log.as_ref(), t0);
    let result = session(opts, &listener, &mut qemu, t0, &ready_line);
    stop_qemu(&mut qemu);
    let _ = std::fs::remove_file(&opts.socket);
    match result {
        Ok(()) => ExitStatus::Success,
        Err(e) => {
            eprintln!("direct: error: {e}");
            ExitStatus::Failed
        }
    }
}

/// Copies the serial console; the returned cell gets the time the agent's
/// ready line appeared.
fn copy_serial(
    qemu: &mut Child,
    log: Option<&PathBuf>,
    t0: Instant,
) -> Arc<Mutex<Option<Duration>>> {
    let ready = Arc::new(Mutex::new(None));
    let seen = ready.clone();
    let stdout = qemu.stdout.take().expect("piped stdout");
    let mut sink: Box<dyn Write + Send> = match log.map(std::fs::File::create) {
        Some(Ok(file)) => Box::new(file),
        _ => Box::new(std::io::stderr()),
    };
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = Vec::new();
        while matches!(reader.read_until(b'\n', &mut line), Ok(n) if n > 0) {
            if String::from_utf8_lossy(&line).contains(markers::AGENT_READY) {
                seen.lock().unwrap().get_or_insert(t0.elapsed());
            }
            let _ = sink.write_all(&line).and_then(|_| sink.flush());
            line.clear();
        }
    });
    ready
}

fn session(
    opts: &DirectOptions,
    listener: &UnixListener,
    qemu: &mut Child,
    t0: Instant,
    ready_line: &Mutex<Option<Duration>>,
) -> Result<(), String> {
    let timeout = Duration::from_secs_f64(opts.timeout);
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if t0.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("QEMU did not connect: {e}")),
        }
    };
    stream.set_nonblocking(false).map_err(|e| e.to_string())?;
    let mut agent = Agent::new(stream);
    agent.wait(|a| a.ready.is_some(), timeout, "the agent's Ready frame")?;
    let ready_at = t0.elapsed();
    std::thread::sleep(Duration::from_millis(50)); // Let the console line through, for the report.
    println!(
        "agent ready: Linux {}",
        agent.ready.as_deref().unwrap_or("?")
    );
    let line = ready_line.lock().unwrap().map_or(String::new(), |at| {
        format!(", console line at {:.3} s", at.as_secs_f64())
    });
    println!(
        "boot time: QEMU start -> Ready frame {:.3} s{line}",
        ready_at.as_secs_f64()
    );
    let commands = match (opts.run.is_empty(), opts.selftest) {
        (true, false) => vec!["uname -a".to_string()],
        _ => opts.run.clone(),
    };
    for (i, command) in commands.iter().enumerate() {
        let argv = shell_words(command)?;
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let t1 = Instant::now();
        let o = agent.run(Spawn::new(1000 + i as u32, &argv), timeout)?;
        println!("$ {command}");
        print!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        println!(
            "[{}, {:.1} ms round trip]",
            o.status(),
            t1.elapsed().as_secs_f64() * 1000.0
        );
    }
    if opts.selftest {
        crate::selftest::selftest(&mut agent, qemu)?;
    }
    Ok(())
}

/// Sends the Panic frame and waits for QEMU to exit.
pub fn panic_guest(agent: &mut Agent, qemu: &mut Child) -> Result<Duration, String> {
    let t0 = Instant::now();
    agent.send(&Frame::Panic)?;
    while t0.elapsed() < Duration::from_secs(60) {
        if let Ok(Some(_)) = qemu.try_wait() {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err("panic request: QEMU did not exit within 60 s".into())
}
