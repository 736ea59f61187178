//! The agent's side of native commands: Linux programs (`starina CMD ...`,
//! `native_client.rs`) connect to a Unix socket ([`SOCKET`]) and speak the
//! process protocol's `Native*` frames on it; the agent gives each
//! connection an id and relays its frames to the host and back.
//!
//! Per connection, two threads: the reader takes the program's frames (a
//! `NativeSpawn` first, then stdin, its close and kills) and sends them on,
//! keeping the program's stdin within the host's [`NATIVE_WINDOW`] (it
//! blocks, and with it the program, while the window is shut); the writer
//! writes the host's output and final frame to the program and
//! acknowledges the output (`NativeOutputAck`) as it goes, so a program
//! that reads slowly holds up its own command only. A program that goes
//! away (closed socket, failed write) has its command killed; what the
//! host still sends for it is acknowledged and dropped until the final
//! frame.
//!
//! The control stream's reader hands the host's frames over with
//! [`Relay::host_frame`], which never blocks.

use std::collections::HashMap;
use std::collections::VecDeque;
use std::io;
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::MutexGuard;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::NativeSpawn;
use starina_bridge::process::MAX_DATA_CHUNK;
use starina_bridge::process::NATIVE_WINDOW;

use crate::log;

/// Where the agent listens for `starina` programs.
pub const SOCKET: &str = "/run/starina/native.sock";
/// Connections at once; more are refused with a message.
const MAX_CONNECTIONS: usize = 32;
/// The largest frame a program may send (a `NativeSpawn` with its argv).
const MAX_REQUEST: usize = 256 * 1024;
/// Stack size of the connection threads: they only shuffle buffers.
const THREAD_STACK: usize = 128 * 1024;

/// What the writer thread has to do for one connection.
#[derive(Default)]
struct Outgoing {
    frames: VecDeque<Frame>,
    /// Host stdin window: bytes sent and not yet acknowledged.
    stdin_unacked: usize,
    /// The final frame has come from the host.
    finished: bool,
    /// A `NativeKill` went to the host.
    killed: bool,
}

/// One program's connection.
#[derive(Default)]
struct Conn {
    state: Mutex<Outgoing>,
    changed: Condvar,
}

impl Conn {
    fn lock(&self) -> MutexGuard<'_, Outgoing> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The relay between the programs' connections and the host.
pub struct Relay {
    to_host: SyncSender<Frame>,
    conns: Mutex<HashMap<u32, Arc<Conn>>>,
    next_id: AtomicUsize,
    open: AtomicUsize,
}

impl Relay {
    pub fn new(to_host: SyncSender<Frame>) -> Arc<Relay> {
        Arc::new(Relay {
            to_host,
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicUsize::new(1),
            open: AtomicUsize::new(0),
        })
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<u32, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn send(&self, frame: Frame) {
        // Fails only when the control stream is dead.
        let _ = self.to_host.send(frame);
    }

    /// A `Native*` frame from the host. Never blocks.
    pub fn host_frame(&self, frame: Frame) {
        let id = frame.id();
        let final_frame = matches!(
            frame,
            Frame::NativeExited { .. } | Frame::NativeSpawnFailed { .. }
        );
        let conn = {
            let mut conns = self.conns();
            // The id is free again once its final frame came.
            let conn = if final_frame {
                conns.remove(&id)
            } else {
                conns.get(&id).cloned()
            };
            let Some(conn) = conn else {
                return log(&format!(
                    "native {id}: ignoring {frame:?} for no connection"
                ));
            };
            conn
        };
        let mut out = conn.lock();
        match frame {
            Frame::NativeStdinAck { bytes, .. } => {
                out.stdin_unacked = out.stdin_unacked.saturating_sub(bytes as usize)
            }
            frame => {
                out.finished |= final_frame;
                out.frames.push_back(frame);
            }
        }
        drop(out);
        conn.changed.notify_all();
    }

    /// Listens on `path` (replacing a stale socket) and serves each
    /// connection on its own threads.
    pub fn listen(self: &Arc<Relay>, path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let _ = std::fs::remove_file(path);
        // Bound and opened to every guest user under another name, then
        // renamed into place: a client that finds `path` can connect (no
        // refusal between bind and listen, no mode still being set).
        let staging = path.with_extension("binding");
        let _ = std::fs::remove_file(&staging);
        let listener = UnixListener::bind(&staging)?;
        std::fs::set_permissions(&staging, std::fs::Permissions::from_mode(0o666))?;
        std::fs::rename(&staging, path)?;
        let relay = Arc::clone(self);
        spawn_thread("native-accept", move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => relay.accept(stream),
                    Err(e) => log(&format!("native: accept: {e}")),
                }
            }
        })
    }

    fn accept(self: &Arc<Relay>, stream: UnixStream) {
        if self.open.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            self.open.fetch_sub(1, Ordering::AcqRel);
            let reason = format!("too many native commands at once (at most {MAX_CONNECTIONS})");
            return refuse(stream, &reason);
        }
        let relay = Arc::clone(self);
        let started = spawn_thread("native-read", move || {
            relay.serve(stream);
            relay.open.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = started {
            self.open.fetch_sub(1, Ordering::AcqRel);
            log(&format!("native: cannot start a connection thread: {e}"));
        }
    }

    /// One connection: its request, then its stdin and kills, until the
    /// program closes its end.
    fn serve(self: &Arc<Relay>, stream: UnixStream) {
        let mut reader = FrameReader::new(&stream);
        let req = match reader.next() {
            Some(Frame::NativeSpawn(req)) => req,
            Some(other) => return refuse(stream, &format!("expected a request, got {other:?}")),
            None => return,
        };
        let Some((id, conn)) = self.register() else {
            return refuse(stream, "no native command id is free");
        };
        let writer = match stream.try_clone() {
            Ok(writer) => writer,
            Err(e) => {
                self.conns().remove(&id);
                return refuse(stream, &format!("cannot serve the connection: {e}"));
            }
        };
        let (relay, out_conn) = (Arc::clone(self), Arc::clone(&conn));
        if let Err(e) = spawn_thread("native-write", move || {
            relay.write_loop(id, &out_conn, writer)
        }) {
            self.conns().remove(&id);
            return refuse(stream, &format!("cannot serve the connection: {e}"));
        }
        self.send(Frame::NativeSpawn(NativeSpawn { id, ..req }));
        self.read_loop(id, &conn, &mut reader);
    }

    /// A free id and its connection, in the table.
    fn register(&self) -> Option<(u32, Arc<Conn>)> {
        let mut conns = self.conns();
        for _ in 0..=MAX_CONNECTIONS {
            let id = (self.next_id.fetch_add(1, Ordering::Relaxed) as u32).max(1);
            if let std::collections::hash_map::Entry::Vacant(slot) = conns.entry(id) {
                let conn = Arc::new(Conn::default());
                slot.insert(Arc::clone(&conn));
                return Some((id, conn));
            }
        }
        None
    }

    fn read_loop(&self, id: u32, conn: &Conn, reader: &mut FrameReader<'_>) {
        while let Some(frame) = reader.next() {
            match frame {
                Frame::NativeStdin { data, .. } => {
                    for chunk in data.chunks(MAX_DATA_CHUNK) {
                        if !self.wait_for_window(conn, chunk.len()) {
                            return; // Ended: its stdin has nowhere to go.
                        }
                        self.send(Frame::NativeStdin {
                            id,
                            data: chunk.to_vec(),
                        });
                    }
                }
                Frame::NativeStdinClose { .. } => self.send(Frame::NativeStdinClose { id }),
                Frame::NativeKill { .. } => self.kill_once(id, conn),
                other => log(&format!("native {id}: ignoring {other:?} from the program")),
            }
        }
        // The program went away (or broke the stream): end its command,
        // unless it already ended.
        self.kill_once(id, conn);
    }

    /// Ends command `id` for a program that is gone, unless it has ended
    /// or was killed already.
    fn kill_once(&self, id: u32, conn: &Conn) {
        let mut out = conn.lock();
        let needed = !out.finished && !out.killed;
        out.killed = true;
        drop(out);
        if needed {
            self.send(Frame::NativeKill { id });
        }
    }

    /// Waits until `n` more bytes of stdin fit in the host's window and
    /// counts them; false once the command has ended.
    fn wait_for_window(&self, conn: &Conn, n: usize) -> bool {
        let mut out = conn.lock();
        while !out.finished && out.stdin_unacked + n > NATIVE_WINDOW {
            out = conn.changed.wait(out).unwrap_or_else(|e| e.into_inner());
        }
        out.stdin_unacked += n;
        !out.finished
    }

    /// Writes the host's frames to the program until the final one; what
    /// cannot be written (the program is gone) is dropped, but still
    /// acknowledged so the host can finish.
    fn write_loop(&self, id: u32, conn: &Conn, stream: UnixStream) {
        let mut gone = false;
        loop {
            let frame = {
                let mut out = conn.lock();
                loop {
                    if let Some(frame) = out.frames.pop_front() {
                        break frame;
                    }
                    out = conn.changed.wait(out).unwrap_or_else(|e| e.into_inner());
                }
            };
            let last = matches!(
                frame,
                Frame::NativeExited { .. } | Frame::NativeSpawnFailed { .. }
            );
            let output = match &frame {
                Frame::NativeStdout { data, .. } | Frame::NativeStderr { data, .. } => data.len(),
                _ => 0,
            };
            if !gone {
                if let Err(e) = write_frame(&stream, &frame) {
                    log(&format!(
                        "native {id}: the program is gone ({e}); its command is killed"
                    ));
                    gone = true;
                    self.kill_once(id, conn);
                }
            }
            if output > 0 {
                self.send(Frame::NativeOutputAck {
                    id,
                    bytes: output as u32,
                });
            }
            if last {
                // Wakes the reader (its read ends) and a wait for the window.
                let _ = stream.shutdown(std::net::Shutdown::Both);
                conn.changed.notify_all();
                return;
            }
        }
    }
}

/// Frames from a program's socket; `None` at its end or at a framing error.
struct FrameReader<'a> {
    stream: &'a UnixStream,
    decoder: FrameDecoder,
    buf: Vec<u8>,
}

impl<'a> FrameReader<'a> {
    fn new(stream: &'a UnixStream) -> Self {
        FrameReader {
            stream,
            decoder: FrameDecoder::with_max_frame_len(MAX_REQUEST),
            buf: vec![0; MAX_DATA_CHUNK],
        }
    }

    fn next(&mut self) -> Option<Frame> {
        loop {
            match self.decoder.next() {
                Some(Ok(frame)) => return Some(frame),
                Some(Err(e)) if e.is_fatal() => {
                    log(&format!("native: a program broke its stream: {e}"));
                    return None;
                }
                Some(Err(e)) => log(&format!("native: bad frame from a program: {e}")),
                None => match self.stream.read(&mut self.buf) {
                    Ok(0) => return None,
                    Ok(n) => self.decoder.push(&self.buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return None,
                },
            }
        }
    }
}

fn write_frame(mut stream: &UnixStream, frame: &Frame) -> io::Result<()> {
    let bytes = frame
        .encode()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
    stream.write_all(&bytes)
}

/// Answers a connection that gets no command with why, and closes it.
fn refuse(stream: UnixStream, reason: &str) {
    log(&format!("native: refused a program: {reason}"));
    let frame = Frame::NativeSpawnFailed {
        id: 0,
        status: 126,
        reason: reason.into(),
    };
    let _ = write_frame(&stream, &frame);
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) -> io::Result<()> {
    std::thread::Builder::new()
        .name(name.into())
        .stack_size(THREAD_STACK)
        .spawn(f)
        .map(drop)
}
