//! Serves the process protocol over one byte stream.
//!
//! Threads, so that no process can stall another or the control stream:
//! - the caller's thread reads control frames and dispatches them;
//! - one writer thread owns the write side of the stream; everything else
//!   queues frames to it through a bounded channel (back-pressure on chatty
//!   processes when the host reads slowly);
//! - one reaper thread waits for every child (and, as PID 1, for orphans);
//! - per process: a stdin writer, a stderr reader, and a stdout reader that
//!   afterwards sends the final Exited/Signaled frame, so that frame always
//!   follows the last output;
//! - with a network, one listener watcher that reports the ports guest
//!   programs listen on (`listeners.rs`), after `Ready`.
//!
//! Stdin is flow-controlled per process (`stdin.rs`): the control reader
//! queues a process's stdin without ever waiting, within the protocol's
//! stdin window, and the process's stdin writer acknowledges what the child
//! takes. A process that does not read its stdin therefore holds at most one
//! window of memory and stalls only the host's writer for that process.
//!
//! A framing error (a frame length out of range) ends the control stream:
//! what follows could be the inside of an oversized frame, so it is not
//! read as frames. Every process is killed and [`serve`] fails.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::io::Read;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::process::ExitStatus;
use std::process::Stdio;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;
use std::thread;
use std::time::Duration;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::Spawn;
use starina_bridge::process::WinSize;
use starina_bridge::process::MAX_DATA_CHUNK;
use starina_bridge::process::STDIN_WINDOW;

use crate::listeners;
use crate::log;
use crate::native;
use crate::pty;
use crate::stdin;
use crate::stdin::PushError;
use crate::stdin::StdinQueue;
use crate::sys;
use crate::users;

/// Frames queued for the writer before producers block.
const OUT_QUEUE: usize = 64;
/// Stack size of the helper threads: they only shuffle buffers.
const THREAD_STACK: usize = 128 * 1024;

/// What the agent does on a (test-only) Panic request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PanicAction {
    /// Crash the guest kernel (PID 1 in the guest).
    CrashKernel,
    /// Exit the agent with status 99 (when it runs on a host, for tests).
    Exit,
}

struct Proc {
    pid: u32,
    stdin: Arc<StdinQueue>,
    /// The pty's master, for a process spawned with a terminal.
    terminal: Option<Arc<File>>,
}

#[derive(Default)]
struct Table {
    /// Live processes by protocol id, until their final frame is sent.
    by_id: HashMap<u32, Proc>,
    /// Children not yet reaped, with where their exit status goes. A pid is in
    /// here exactly while it cannot be reused, so signalling it is safe.
    by_pid: HashMap<u32, mpsc::Sender<ExitStatus>>,
    /// Bumped on every spawn, so the reaper knows to look again.
    spawns: u64,
}

struct Shared {
    table: Mutex<Table>,
    spawned: Condvar,
    out: mpsc::SyncSender<Frame>,
    /// Native commands for Linux programs, when the agent serves them.
    native: Option<Arc<native::Relay>>,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, Table> {
        // A panicking helper thread must not take the agent down with it.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, frame: Frame) {
        // Fails only when the writer is gone, i.e. the stream is dead.
        let _ = self.out.send(frame);
    }
}

fn spawn_thread(
    name: &str,
    f: impl FnOnce() + Send + 'static,
) -> io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
}

/// Serves requests read from `input`, writing replies to `output`, until
/// `input` reports end of file. Sends `Ready` first, then, given a
/// [`listeners::Watch`], starts reporting listeners. Fails with
/// `InvalidData` when the stream breaks (a frame length out of range),
/// after killing every process.
pub fn serve(
    mut input: impl Read,
    output: impl Write + Send + 'static,
    kernel_release: String,
    panic_action: PanicAction,
    watch: Option<listeners::Watch>,
    native_socket: Option<&Path>,
) -> io::Result<()> {
    let (out_tx, out_rx) = mpsc::sync_channel(OUT_QUEUE);
    let relay = native_socket.map(|_| native::Relay::new(out_tx.clone()));
    let shared = Arc::new(Shared {
        table: Mutex::new(Table::default()),
        spawned: Condvar::new(),
        out: out_tx,
        native: relay.clone(),
    });
    spawn_thread("writer", move || write_loop(out_rx, output))?;
    let reaper = Arc::clone(&shared);
    spawn_thread("reaper", move || reap_loop(&reaper))?;

    shared.send(Frame::Ready { kernel_release });
    if let Some(watch) = watch {
        let s = Arc::clone(&shared);
        spawn_thread("listeners", move || listeners::run(watch, |f| s.send(f)))?;
    }
    if let (Some(relay), Some(path)) = (relay, native_socket) {
        match relay.listen(path) {
            Ok(()) => log(&format!("native commands: listening on {}", path.display())),
            Err(e) => log(&format!(
                "native commands: cannot listen on {}: {e}",
                path.display()
            )),
        }
    }
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        decoder.push(&buf[..n]);
        while let Some(result) = decoder.next() {
            match result {
                Ok(frame) => handle(&shared, frame, panic_action),
                Err(e) if e.is_fatal() => {
                    log(&format!("control stream broken: {e}; closing it"));
                    kill_all(&shared);
                    let msg = format!("control stream broken: {e}");
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                Err(e) => log(&format!("bad control frame: {e}")),
            }
        }
    }
}

fn handle(shared: &Arc<Shared>, frame: Frame, panic_action: PanicAction) {
    match frame {
        Frame::Spawn(req) => spawn(shared, req),
        Frame::Stdin { id, data } => push_stdin(shared, id, data),
        Frame::StdinClose { id } => {
            if let Some(queue) = stdin_queue(shared, id) {
                queue.close();
            }
        }
        Frame::Kill { id, signal } => signal_process(&shared.table(), id, signal),
        Frame::Resize { id, size } => resize(shared, id, size),
        Frame::Ping { nonce } => shared.send(Frame::Pong { nonce }),
        Frame::Panic => {
            log("panic requested (test only)");
            match panic_action {
                PanicAction::CrashKernel => crash_kernel(),
                PanicAction::Exit => std::process::exit(99),
            }
        }
        frame @ (Frame::NativeStdout { .. }
        | Frame::NativeStderr { .. }
        | Frame::NativeExited { .. }
        | Frame::NativeSpawnFailed { .. }
        | Frame::NativeStdinAck { .. }) => match &shared.native {
            Some(relay) => relay.host_frame(frame),
            None => log(&format!("ignoring {frame:?}: no native commands here")),
        },
        other => log(&format!("ignoring unexpected frame {other:?}")),
    }
}

/// Signals process `id`, only while its pid is unreaped: it cannot have been
/// reused.
fn signal_process(table: &Table, id: u32, signal: i32) {
    if let Some(p) = table.by_id.get(&id) {
        if table.by_pid.contains_key(&p.pid) {
            if let Err(e) = sys::kill(p.pid, signal) {
                log(&format!("kill {id} (pid {}) with {signal}: {e}", p.pid));
            }
        }
    }
}

/// Sets process `id`'s window size; a Resize for an unknown process or one
/// without a terminal is ignored, with a line on the console.
fn resize(shared: &Shared, id: u32, size: WinSize) {
    let terminal = match shared.table().by_id.get(&id) {
        None => return log(&format!("resize of unknown process {id} ignored")),
        Some(p) => p.terminal.clone(),
    };
    let Some(master) = terminal else {
        return log(&format!(
            "resize of process {id} ignored: it has no terminal"
        ));
    };
    if let Err(e) = pty::resize(&master, size) {
        log(&format!("process {id}: resize to {size}: {e}"));
    }
}

/// Kills every process, when the control stream is gone.
fn kill_all(shared: &Shared) {
    let table = shared.table();
    for &id in table.by_id.keys() {
        signal_process(&table, id, libc::SIGKILL);
    }
}

fn stdin_queue(shared: &Shared, id: u32) -> Option<Arc<StdinQueue>> {
    shared.table().by_id.get(&id).map(|p| Arc::clone(&p.stdin))
}

fn push_stdin(shared: &Shared, id: u32, data: Vec<u8>) {
    let Some(queue) = stdin_queue(shared, id) else {
        return; // Already ended: like writing to a closed pipe.
    };
    let Err(PushError::Overrun { queued, pushed }) = queue.push(data) else {
        return;
    };
    // The host broke the stdin window: drop this process's stdin rather
    // than buffer without bound, and end the process rather than let it
    // run on input with a hole in it.
    let why = format!(
        "stdin overrun: the host sent {pushed} bytes with {queued} unacknowledged \
         (window {STDIN_WINDOW}); stdin dropped, process killed"
    );
    log(&format!("process {id}: {why}"));
    queue.send_unless_retired(|| {
        shared.send(Frame::Stderr {
            id,
            data: format!("starina-agent: {why}\n").into_bytes(),
        })
    });
    signal_process(&shared.table(), id, libc::SIGKILL);
}

/// Panics the guest kernel: SysRq 'c', or else PID 1 exiting. The root
/// disk is synced first.
pub fn crash_kernel() -> ! {
    sys::sync();
    let _ = std::fs::write("/proc/sysrq-trigger", b"c");
    std::process::exit(1);
}

fn spawn(shared: &Arc<Shared>, req: Spawn) {
    let id = req.id;
    let fail = |errno: i32, msg: String| {
        shared.send(Frame::SpawnFailed { id, errno, msg });
    };
    let Some((program, args)) = req.argv.split_first() else {
        return fail(libc::EINVAL, "empty argv".into());
    };
    let mut cmd = Command::new(OsStr::from_bytes(program));
    cmd.args(args.iter().map(|a| OsStr::from_bytes(a))).envs(
        req.env
            .iter()
            .map(|(k, v)| (OsStr::from_bytes(k), OsStr::from_bytes(v))),
    );
    let pty = match req.terminal.map(pty::open).transpose() {
        Ok(pty) => pty,
        Err(e) => {
            let errno = e.raw_os_error().unwrap_or(libc::EIO);
            return fail(errno, format!("cannot open a terminal: {e}"));
        }
    };
    match &pty {
        Some(pty) => {
            if let Err(e) = pty::attach(&mut cmd, pty) {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                return fail(errno, format!("cannot set up the terminal: {e}"));
            }
        }
        None => {
            cmd.stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
        }
    }
    if let Some(cwd) = &req.cwd {
        let cwd = Path::new(OsStr::from_bytes(cwd));
        // Checked here so that a missing cwd is not mistaken for a missing program.
        if let Err(e) = std::fs::read_dir(cwd) {
            let errno = e.raw_os_error().unwrap_or(libc::ENOENT);
            return fail(errno, format!("cannot use {} as cwd: {e}", cwd.display()));
        }
        cmd.current_dir(cwd);
    }
    if let Some(user) = &req.user {
        let account = match users::lookup(user) {
            Ok(account) => account,
            Err(msg) => return fail(libc::EINVAL, msg),
        };
        // With a uid set, std also drops the supplementary groups (setgroups
        // with an empty list) before setuid, when the agent is root.
        cmd.uid(account.uid).gid(account.gid);
        if !req.env.iter().any(|(key, _)| key == b"HOME") {
            cmd.env("HOME", OsStr::from_bytes(&account.home));
        }
    }

    // The table lock is held across fork/exec and the insertion, so the reaper
    // cannot collect the child before we know its pid.
    let mut table = shared.table();
    if table.by_id.contains_key(&id) {
        drop(table);
        return fail(libc::EEXIST, format!("process id {id} is in use"));
    }
    let spawned = cmd.spawn();
    // The parent's copies of the pty's slave go now: the master reads end
    // of file (EIO) once the child and its descendants closed theirs.
    drop(cmd);
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            drop(table);
            let name = String::from_utf8_lossy(program);
            // Like a shell: 127 for a program that is not there, 126 for one
            // that cannot run.
            let (code, what) = match e.kind() {
                io::ErrorKind::NotFound => (127, "command not found"),
                io::ErrorKind::PermissionDenied => (126, "permission denied"),
                _ => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    return fail(errno, format!("cannot run {name}: {e}"));
                }
            };
            shared.send(Frame::Started { id, pid: 0 });
            shared.send(Frame::Stderr {
                id,
                data: format!("starina-agent: {name}: {what}\n").into_bytes(),
            });
            shared.send(Frame::Exited { id, code });
            return;
        }
    };
    let pid = child.id();
    let stdin_queue = Arc::new(StdinQueue::default());
    let (exit_tx, exit_rx) = mpsc::channel();
    let master = pty.map(|pty| Arc::new(pty.master));
    table.by_id.insert(
        id,
        Proc {
            pid,
            stdin: Arc::clone(&stdin_queue),
            terminal: master.clone(),
        },
    );
    table.by_pid.insert(pid, exit_tx);
    table.spawns += 1;
    drop(table);
    shared.spawned.notify_all();
    shared.send(Frame::Started { id, pid });

    // Dropping `child` neither kills nor waits: the reaper owns its exit.
    let streams = match (master, child.stdin, child.stdout, child.stderr) {
        (Some(master), ..) => match Streams::terminal(&master) {
            Ok(streams) => streams,
            Err(e) => {
                log(&format!("process {id}: cannot use its terminal: {e}"));
                let _ = sys::kill(pid, libc::SIGKILL);
                return;
            }
        },
        (None, Some(stdin), Some(stdout), Some(stderr)) => Streams {
            stdin: Box::new(stdin),
            stdout: Box::new(stdout),
            stderr: Some(Box::new(stderr)),
            eof: None,
        },
        _ => unreachable!("without a terminal all three streams are pipes"),
    };
    if let Err(e) = start_stream_threads(shared, id, stdin_queue, streams, exit_rx) {
        // Out of threads: the process runs unattended; kill it so the host
        // still hears about it. Its pipes close with the dropped handles.
        log(&format!("process {id}: cannot start threads: {e}"));
        let _ = sys::kill(pid, libc::SIGKILL);
    }
}

/// The agent's ends of the child's streams: its three pipes, or its
/// terminal's master (no stderr: everything comes out on stdout).
struct Streams {
    stdin: Box<dyn Write + Send>,
    stdout: Box<dyn Read + Send>,
    stderr: Option<Box<dyn Read + Send>>,
    /// What closing stdin writes instead, for a terminal: its EOF character.
    eof: Option<u8>,
}

impl Streams {
    fn terminal(master: &File) -> io::Result<Streams> {
        Ok(Streams {
            stdin: Box::new(master.try_clone()?),
            stdout: Box::new(master.try_clone()?),
            stderr: None,
            eof: Some(pty::EOF_CHAR),
        })
    }
}

fn start_stream_threads(
    shared: &Arc<Shared>,
    id: u32,
    stdin_queue: Arc<StdinQueue>,
    streams: Streams,
    exit_rx: mpsc::Receiver<ExitStatus>,
) -> io::Result<()> {
    let Streams {
        stdin,
        stdout,
        stderr,
        eof,
    } = streams;
    let s = Arc::clone(shared);
    let queue = Arc::clone(&stdin_queue);
    spawn_thread("stdin", move || {
        stdin::write_loop(id, &queue, stdin, eof, |frame| s.send(frame))
    })?;
    let err_thread = match stderr {
        Some(stderr) => {
            let s = Arc::clone(shared);
            Some(spawn_thread("stderr", move || {
                pump(stderr, |data| s.send(Frame::Stderr { id, data }))
            })?)
        }
        None => None,
    };
    let s = Arc::clone(shared);
    spawn_thread("stdout", move || {
        pump(stdout, |data| s.send(Frame::Stdout { id, data }));
        if let Some(err_thread) = err_thread {
            let _ = err_thread.join();
        }
        // The reaper always answers: the child is in `by_pid` until it does.
        let status = exit_rx.recv();
        // Free the id before the final frame: the host may reuse it at once.
        s.table().by_id.remove(&id);
        // No ack or report about this id may follow the final frame.
        stdin_queue.retire();
        s.send(match status {
            Ok(status) => final_frame(id, status),
            Err(_) => Frame::Exited { id, code: 255 },
        });
    })?;
    Ok(())
}

fn final_frame(id: u32, status: ExitStatus) -> Frame {
    match (status.code(), status.signal()) {
        (Some(code), _) => Frame::Exited { id, code },
        (None, Some(signal)) => Frame::Signaled { id, signal },
        (None, None) => Frame::Exited { id, code: 255 },
    }
}

fn pump(mut from: impl Read, mut send: impl FnMut(Vec<u8>)) {
    let mut buf = vec![0u8; MAX_DATA_CHUNK];
    loop {
        match from.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => send(buf[..n].to_vec()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn write_loop(rx: mpsc::Receiver<Frame>, mut output: impl Write) {
    let mut bytes = Vec::new();
    while let Ok(first) = rx.recv() {
        bytes.clear();
        // Coalesce whatever is queued into one write.
        for frame in std::iter::once(first).chain(rx.try_iter().take(OUT_QUEUE)) {
            if let Err(e) = frame.encode_into(&mut bytes) {
                log(&format!("cannot encode {frame:?}: {e}"));
            }
        }
        if let Err(e) = output.write_all(&bytes).and_then(|()| output.flush()) {
            log(&format!("control stream write failed: {e}"));
        }
    }
}

fn reap_loop(shared: &Shared) {
    loop {
        let spawns_before = shared.table().spawns;
        match sys::wait_any_child() {
            Ok(pid) => {
                let mut table = shared.table();
                let exit_tx = table.by_pid.remove(&pid);
                // Reaped under the lock, so Kill never sees a recycled pid.
                let status = sys::reap(pid);
                drop(table);
                if let (Some(tx), Ok(Some(status))) = (exit_tx, status) {
                    let _ = tx.send(status);
                }
                // Otherwise an orphan (as PID 1) or a child std reaped itself
                // after a failed exec: nothing to report.
            }
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => {
                let table = shared.table();
                if table.spawns == spawns_before {
                    let _ = shared.spawned.wait_timeout(table, Duration::from_secs(1));
                }
            }
            Err(e) => {
                log(&format!("waitid: {e}"));
                thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
