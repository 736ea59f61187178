//! Many clients' process sessions on the one host link of a running
//! instance (`starina up`): each client speaks the process protocol
//! (`starina_bridge::process`) with ids of its own choosing; the mux gives
//! every process a link id of its own, so that clients' ids never meet on
//! the link, and routes what the guest sends back to the client that
//! spawned the process, under the client's id.
//!
//! A client that goes away has its live processes killed (SIGKILL); their
//! last frames are dropped. When the link ends every client is cut off
//! (its receiver disconnects), which clients report as the instance going
//! down.

use std::collections::HashMap;
use std::io::Read;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::mpsc;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;
use std::time::Instant;

use starina_bridge::process::Frame;
use starina_bridge::process::FrameDecoder;
use starina_bridge::process::Spawn;

/// A client of the mux.
pub type ClientId = u64;

/// errno EBUSY: a Spawn whose id the client already uses.
const EBUSY: i32 = 16;
/// SIGKILL, for the processes of a client that went away.
const SIGKILL: i32 = 9;

/// Where a link id's frames go.
struct Route {
    client: ClientId,
    /// The client's own id for the process (or ping nonce).
    id: u32,
}

struct Client {
    tx: mpsc::Sender<Frame>,
    /// The client's ids to link ids.
    ids: HashMap<u32, u32>,
}

#[derive(Default)]
struct Table {
    next_id: u32,
    next_client: ClientId,
    routes: HashMap<u32, Route>,
    clients: HashMap<ClientId, Client>,
    closed: bool,
}

impl Table {
    /// A link id no live process or ping has (never 0).
    fn fresh_id(&mut self) -> u32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && !self.routes.contains_key(&self.next_id) {
                return self.next_id;
            }
        }
    }
}

/// The host link shared by clients.
pub struct Mux {
    table: Mutex<Table>,
    link: Mutex<Box<dyn Write + Send>>,
}

impl Mux {
    /// A mux that writes frames for the guest to `link`.
    pub fn new(link: Box<dyn Write + Send>) -> Arc<Mux> {
        Arc::new(Mux {
            table: Mutex::new(Table::default()),
            link: Mutex::new(link),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new client and the frames for it; the receiver disconnects when
    /// the link has ended (at once if it already has).
    pub fn attach(&self) -> (ClientId, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel();
        let mut table = self.table();
        table.next_client += 1;
        let client = table.next_client;
        if !table.closed {
            let ids = HashMap::new();
            table.clients.insert(client, Client { tx, ids });
        }
        (client, rx)
    }

    /// The client went away: its live processes are killed.
    pub fn detach(&self, client: ClientId) {
        let live: Vec<u32> = match self.table().clients.remove(&client) {
            Some(c) => c.ids.into_values().collect(),
            None => return,
        };
        for id in live {
            let _ = self.write(&Frame::Kill {
                id,
                signal: SIGKILL,
            });
        }
    }

    /// Processes (and pings) running for clients.
    pub fn live(&self) -> usize {
        self.table().routes.len()
    }

    /// Whether the link has ended.
    pub fn closed(&self) -> bool {
        self.table().closed
    }

    fn write(&self, frame: &Frame) -> Result<(), String> {
        let bytes = frame.encode().map_err(|e| e.to_string())?;
        let mut link = self.link.lock().unwrap_or_else(|e| e.into_inner());
        link.write_all(&bytes)
            .and_then(|()| link.flush())
            .map_err(|e| format!("host link: {e}"))
    }

    /// A frame from `client`, with the client's ids, on its way to the
    /// guest. Frames only the guest sends, and Panic, are ignored.
    pub fn from_client(&self, client: ClientId, frame: Frame) {
        let out = {
            let mut table = self.table();
            let Some(known) = table.clients.get(&client) else {
                return;
            };
            let own = frame.id();
            match frame {
                Frame::Spawn(spawn) if known.ids.contains_key(&own) => {
                    let msg = format!("process id {} is in use", spawn.id);
                    let _ = known.tx.send(Frame::SpawnFailed {
                        id: own,
                        errno: EBUSY,
                        msg,
                    });
                    return;
                }
                Frame::Spawn(spawn) => {
                    let id = table.fresh_id();
                    table.routes.insert(id, Route { client, id: own });
                    if let Some(c) = table.clients.get_mut(&client) {
                        c.ids.insert(own, id);
                    }
                    Frame::Spawn(Spawn { id, ..spawn })
                }
                Frame::Ping { nonce } => {
                    let id = table.fresh_id();
                    table.routes.insert(id, Route { client, id: nonce });
                    Frame::Ping { nonce: id }
                }
                other => {
                    let Some(&id) = known.ids.get(&own) else {
                        return;
                    };
                    match other {
                        Frame::Stdin { data, .. } => Frame::Stdin { id, data },
                        Frame::StdinClose { .. } => Frame::StdinClose { id },
                        Frame::Kill { signal, .. } => Frame::Kill { id, signal },
                        Frame::Resize { size, .. } => Frame::Resize { id, size },
                        _ => return,
                    }
                }
            }
        };
        if let Err(e) = self.write(&out) {
            eprintln!("starina: {e}");
        }
    }

    /// A frame from the guest, to the client whose process it is.
    pub fn from_link(&self, frame: Frame) {
        let link_id = frame.id();
        let last = matches!(
            frame,
            Frame::Exited { .. }
                | Frame::Signaled { .. }
                | Frame::SpawnFailed { .. }
                | Frame::Pong { .. }
        );
        if !matches!(
            frame,
            Frame::Started { .. }
                | Frame::Stdout { .. }
                | Frame::Stderr { .. }
                | Frame::StdinAck { .. }
        ) && !last
        {
            // Ready, Listening: the instance follows the console instead.
            return;
        }
        let mut table = self.table();
        let Some(route) = table.routes.get(&link_id) else {
            return;
        };
        let (client, id) = (route.client, route.id);
        if last {
            table.routes.remove(&link_id);
            if let Some(c) = table.clients.get_mut(&client) {
                if c.ids.get(&id) == Some(&link_id) {
                    c.ids.remove(&id);
                }
            }
        }
        if let Some(c) = table.clients.get(&client) {
            let _ = c.tx.send(with_id(frame, id));
        }
    }

    /// The link ended: every client is cut off.
    pub fn link_closed(&self) {
        let mut table = self.table();
        table.closed = true;
        table.clients.clear();
        table.routes.clear();
    }

    /// Runs `argv` in the guest (no stdin) and returns its exit code (or
    /// 128 + signal) and stdout, within `timeout`.
    pub fn run(&self, argv: &[&str], timeout: Duration) -> Result<(i32, Vec<u8>), String> {
        let (client, rx) = self.attach();
        let result = self.run_as(client, &rx, argv, timeout);
        self.detach(client);
        result
    }

    fn run_as(
        &self,
        client: ClientId,
        rx: &mpsc::Receiver<Frame>,
        argv: &[&str],
        timeout: Duration,
    ) -> Result<(i32, Vec<u8>), String> {
        self.from_client(client, Frame::Spawn(Spawn::new(1, argv)));
        self.from_client(client, Frame::StdinClose { id: 1 });
        let deadline = Instant::now() + timeout;
        let mut stdout = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Frame::Stdout { data, .. }) => stdout.extend(data),
                Ok(Frame::Exited { code, .. }) => return Ok((code, stdout)),
                Ok(Frame::Signaled { signal, .. }) => return Ok((128 + signal, stdout)),
                Ok(Frame::SpawnFailed { msg, .. }) => return Err(msg),
                Ok(_) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{argv:?} did not finish in {} s",
                        timeout.as_secs()
                    ))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Err("the host link closed".into())
                }
            }
        }
    }
}

/// `frame` with its id (or nonce) replaced.
fn with_id(frame: Frame, id: u32) -> Frame {
    match frame {
        Frame::Started { pid, .. } => Frame::Started { id, pid },
        Frame::Stdout { data, .. } => Frame::Stdout { id, data },
        Frame::Stderr { data, .. } => Frame::Stderr { id, data },
        Frame::Exited { code, .. } => Frame::Exited { id, code },
        Frame::Signaled { signal, .. } => Frame::Signaled { id, signal },
        Frame::SpawnFailed { errno, msg, .. } => Frame::SpawnFailed { id, errno, msg },
        Frame::StdinAck { bytes, .. } => Frame::StdinAck { id, bytes },
        Frame::Pong { .. } => Frame::Pong { nonce: id },
        other => other,
    }
}

/// Feeds what the guest sends on the link to `mux` until the link ends
/// (or goes out of sync), then cuts every client off.
pub fn pump_link(mux: &Mux, mut link: impl Read) {
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 65536];
    'read: while let Ok(n @ 1..) = link.read(&mut buf) {
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next() {
            match frame {
                Ok(frame) => mux.from_link(frame),
                Err(e) if e.is_fatal() => {
                    eprintln!("starina: host link: {e}");
                    break 'read;
                }
                Err(e) => eprintln!("starina: host link: {e}"),
            }
        }
    }
    mux.link_closed();
}

/// Serves one client connection until it closes: frames from it go to the
/// guest, frames for it come back on it. When the link ends, the
/// connection is shut down.
pub fn serve_client(mux: &Mux, stream: UnixStream) {
    let (client, rx) = mux.attach();
    let Ok(mut writer) = stream.try_clone() else {
        mux.detach(client);
        return;
    };
    let sender = std::thread::spawn(move || {
        for frame in rx {
            let sent = frame.encode().map(|bytes| writer.write_all(&bytes));
            if !matches!(sent, Ok(Ok(()))) {
                break;
            }
        }
        let _ = writer.shutdown(std::net::Shutdown::Both);
    });
    let mut reader = stream;
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 65536];
    'read: while let Ok(n @ 1..) = reader.read(&mut buf) {
        decoder.push(&buf[..n]);
        while let Some(frame) = decoder.next() {
            match frame {
                Ok(frame) => mux.from_client(client, frame),
                Err(e) if e.is_fatal() => break 'read,
                Err(_) => {}
            }
        }
    }
    mux.detach(client);
    let _ = sender.join();
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::thread;

    use super::*;

    /// A fake agent on the guest's end of the link: a Spawn of `echo
    /// WORDS...` prints the words and exits with their count; `sleep`
    /// runs until a Kill. It records the link ids it saw.
    fn agent(mut link: UnixStream, seen: Arc<Mutex<Vec<Frame>>>) {
        thread::spawn(move || {
            let mut decoder = FrameDecoder::new();
            let mut buf = vec![0u8; 4096];
            while let Ok(n @ 1..) = link.read(&mut buf) {
                decoder.push(&buf[..n]);
                while let Some(Ok(frame)) = decoder.next() {
                    seen.lock().unwrap().push(frame.clone());
                    let replies = match frame {
                        Frame::Spawn(s) if s.argv[0] == b"echo" => {
                            let words: Vec<u8> = s.argv[1..].join(&b' ');
                            vec![
                                Frame::Started {
                                    id: s.id,
                                    pid: 100 + s.id,
                                },
                                Frame::Stdout {
                                    id: s.id,
                                    data: words,
                                },
                                Frame::Exited {
                                    id: s.id,
                                    code: s.argv.len() as i32 - 1,
                                },
                            ]
                        }
                        Frame::Spawn(s) => vec![Frame::Started { id: s.id, pid: 1 }],
                        Frame::Kill { id, signal } => vec![Frame::Signaled { id, signal }],
                        Frame::Ping { nonce } => vec![Frame::Pong { nonce }],
                        _ => vec![],
                    };
                    for reply in replies {
                        link.write_all(&reply.encode().unwrap()).unwrap();
                    }
                }
            }
        });
    }

    fn mux_with_agent() -> (Arc<Mux>, Arc<Mutex<Vec<Frame>>>, UnixStream) {
        let (host, guest) = UnixStream::pair().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        agent(guest, seen.clone());
        let mux = Mux::new(Box::new(host.try_clone().unwrap()));
        let pump = mux.clone();
        let reader = host.try_clone().unwrap();
        thread::spawn(move || pump_link(&pump, reader));
        (mux, seen, host)
    }

    fn recv(rx: &mpsc::Receiver<Frame>) -> Frame {
        rx.recv_timeout(Duration::from_secs(5)).expect("a frame")
    }

    /// Ten clients all use id 1 at once: each gets its own output and
    /// status under id 1, and the link saw ten different ids.
    #[test]
    fn clients_share_the_link_with_their_own_ids() {
        let (mux, seen, _host) = mux_with_agent();
        let clients: Vec<_> = (0..10).map(|_| mux.attach()).collect();
        for (n, (client, _)) in clients.iter().enumerate() {
            let words: Vec<String> = (0..=n).map(|i| format!("w{n}.{i}")).collect();
            let mut argv = vec!["echo"];
            argv.extend(words.iter().map(String::as_str));
            mux.from_client(*client, Frame::Spawn(Spawn::new(1, &argv)));
        }
        for (n, (_, rx)) in clients.iter().enumerate() {
            assert!(matches!(recv(rx), Frame::Started { id: 1, .. }));
            let Frame::Stdout { id: 1, data } = recv(rx) else {
                panic!("no stdout");
            };
            let want: Vec<String> = (0..=n).map(|i| format!("w{n}.{i}")).collect();
            assert_eq!(String::from_utf8(data).unwrap(), want.join(" "));
            assert_eq!(
                recv(rx),
                Frame::Exited {
                    id: 1,
                    code: n as i32 + 1
                }
            );
        }
        let ids: HashSet<u32> = seen.lock().unwrap().iter().map(Frame::id).collect();
        assert_eq!(ids.len(), 10);
        assert_eq!(mux.live(), 0);
        // A Ping comes back as a Pong with the client's nonce.
        let (client, rx) = &clients[3];
        mux.from_client(*client, Frame::Ping { nonce: 77 });
        assert_eq!(recv(rx), Frame::Pong { nonce: 77 });
    }

    /// An id in use is refused locally; a client that goes away has its
    /// processes killed; frames for other clients' ids go nowhere.
    #[test]
    fn ids_in_use_and_clients_that_leave() {
        let (mux, seen, _host) = mux_with_agent();
        let (a, rx_a) = mux.attach();
        let (b, rx_b) = mux.attach();
        mux.from_client(a, Frame::Spawn(Spawn::new(5, &["sleep"])));
        assert_eq!(recv(&rx_a), Frame::Started { id: 5, pid: 1 });
        mux.from_client(a, Frame::Spawn(Spawn::new(5, &["sleep"])));
        let Frame::SpawnFailed {
            id: 5, errno: 16, ..
        } = recv(&rx_a)
        else {
            panic!("a second id 5 was not refused");
        };
        // b has no process 5: its Kill goes nowhere.
        mux.from_client(b, Frame::Kill { id: 5, signal: 15 });
        mux.from_client(b, Frame::Spawn(Spawn::new(5, &["sleep"])));
        assert_eq!(recv(&rx_b), Frame::Started { id: 5, pid: 1 });
        assert_eq!(mux.live(), 2);
        // A resize reaches the link under the link's id; one for an id the
        // client does not have goes nowhere.
        let size = starina_bridge::process::WinSize::new(50, 132).unwrap();
        mux.from_client(a, Frame::Resize { id: 5, size });
        mux.from_client(a, Frame::Resize { id: 6, size });
        let deadline = Instant::now() + Duration::from_secs(5);
        let resizes = || {
            let seen = seen.lock().unwrap();
            let r: Vec<Frame> = seen
                .iter()
                .filter(|f| matches!(f, Frame::Resize { .. }))
                .cloned()
                .collect();
            r
        };
        while resizes().is_empty() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(resizes(), [Frame::Resize { id: 1, size }]);
        mux.detach(a);
        let deadline = Instant::now() + Duration::from_secs(5);
        while mux.live() > 1 && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(mux.live(), 1, "a's process is still live");
        let kills: Vec<Frame> = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|f| matches!(f, Frame::Kill { .. }))
            .cloned()
            .collect();
        assert_eq!(
            kills,
            [Frame::Kill {
                id: 1,
                signal: SIGKILL
            }]
        );
        assert!(rx_a.try_recv().is_err(), "a left: nothing more for it");
    }

    /// When the link ends, every client is cut off, and new ones too.
    #[test]
    fn the_link_ending_cuts_clients_off() {
        let (host, guest) = UnixStream::pair().unwrap();
        let mux = Mux::new(Box::new(host.try_clone().unwrap()));
        let (a, rx) = mux.attach();
        mux.from_client(a, Frame::Spawn(Spawn::new(1, &["sleep"])));
        let pump = mux.clone();
        let reader = thread::spawn(move || pump_link(&pump, host));
        drop(guest);
        reader.join().unwrap();
        assert!(mux.closed());
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(mpsc::RecvTimeoutError::Disconnected)
        );
        let (_, rx) = mux.attach();
        assert!(rx.recv().is_err());
        let e = mux.run(&["true"], Duration::from_secs(5)).unwrap_err();
        assert_eq!(e, "the host link closed");
    }

    /// A client on a socket, as `starina exec` is: frames in, frames out.
    #[test]
    fn a_socket_client_is_served() {
        let (mux, _seen, _host) = mux_with_agent();
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        let serving = mux.clone();
        thread::spawn(move || serve_client(&serving, theirs));
        let spawn = Frame::Spawn(Spawn::new(9, &["echo", "hi", "there"]));
        ours.write_all(&spawn.encode().unwrap()).unwrap();
        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut buf = [0u8; 4096];
        while frames.len() < 3 {
            let n = ours.read(&mut buf).unwrap();
            assert!(n > 0, "closed early: {frames:?}");
            decoder.push(&buf[..n]);
            while let Some(frame) = decoder.next() {
                frames.push(frame.unwrap());
            }
        }
        assert_eq!(
            frames[1],
            Frame::Stdout {
                id: 9,
                data: b"hi there".to_vec()
            }
        );
        assert_eq!(frames[2], Frame::Exited { id: 9, code: 2 });
        assert_eq!(
            mux.run(&["echo", "x"], Duration::from_secs(5)),
            Ok((1, b"x".to_vec()))
        );
    }
}
