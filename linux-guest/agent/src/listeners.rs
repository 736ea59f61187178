//! Listener reports: which ports guest programs listen on, for the host to
//! forward.
//!
//! A thread reads /proc/net/{tcp,tcp6,udp,udp6} every [`POLL`] and sends a
//! [`Frame::Listening`] for each change: TCP sockets in LISTEN and UDP
//! sockets bound to a port and not connected, whose local address the host
//! can reach through the NAT (a wildcard, loopback, or the guest's own
//! address). A (protocol, port) is one report however many sockets share
//! it; `open: false` goes when the last one closes. A new port is named by
//! the process owning its first socket (`sockowner.rs`).

use std::collections::BTreeMap;
use std::io;
use std::net::Ipv4Addr;
use std::net::Ipv6Addr;
use std::path::Path;
use std::path::PathBuf;
use std::time::Duration;

use starina_bridge::process::Frame;
use starina_bridge::process::Proto;

use crate::log;
use crate::sockowner;

/// How often the socket tables are read: a new listener is reported
/// within this, well inside the one second the host has to forward it.
pub const POLL: Duration = Duration::from_millis(250);

/// TCP_LISTEN in the `st` column.
const TCP_LISTEN: &str = "0A";

/// What the watcher reports on.
#[derive(Clone, Debug)]
pub struct Watch {
    /// The guest's own address: sockets bound to it count too.
    pub guest: Option<Ipv4Addr>,
    /// Where /proc is (`/proc`; tests may point elsewhere).
    pub proc_root: PathBuf,
}

/// A socket that listens, as one line of a /proc/net table shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listener {
    pub proto: Proto,
    pub port: u16,
    pub inode: u64,
}

/// A port as the host forwards it: one report each.
pub type PortKey = (Proto, u16);

/// The open ports, with the inodes of their sockets.
pub type Ports = BTreeMap<PortKey, Vec<u64>>;

/// Parses one /proc/net/{tcp,tcp6,udp,udp6} table (`proto` says which),
/// keeping the listeners whose local address is reachable: 0.0.0.0,
/// 127.0.0.1, ::, ::1, ::ffff:127.0.0.1 or `guest` (also as
/// ::ffff:`guest`). The header and malformed lines are skipped.
pub fn parse_table(text: &str, proto: Proto, guest: Option<Ipv4Addr>) -> Vec<Listener> {
    text.lines()
        .skip(1)
        .filter_map(|line| parse_line(line, proto, guest))
        .collect()
}

fn parse_line(line: &str, proto: Proto, guest: Option<Ipv4Addr>) -> Option<Listener> {
    // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
    let fields: Vec<&str> = line.split_whitespace().collect();
    let [_sl, local, remote, state, _queues, _timer, _retr, _uid, _timeout, inode, ..] =
        fields.as_slice()
    else {
        return None;
    };
    let (local_addr, port) = parse_endpoint(local)?;
    let (_, remote_port) = parse_endpoint(remote)?;
    let inode: u64 = inode.parse().ok()?;
    let listening = match proto {
        Proto::Tcp => *state == TCP_LISTEN,
        Proto::Udp => remote_port == 0,
    };
    (listening && port != 0 && reachable(local_addr, guest)).then_some(Listener {
        proto,
        port,
        inode,
    })
}

/// `ADDR:PORT` in hex: the address as the kernel's 32-bit words in native
/// byte order (8 digits for IPv4, 32 for IPv6).
fn parse_endpoint(text: &str) -> Option<(Ipv6Addr, u16)> {
    let (addr, port) = text.split_once(':')?;
    let hex = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex(addr) || !hex(port) {
        return None;
    }
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Option<Vec<[u8; 4]>> = (0..addr.len() / 8)
        .map(|i| {
            let word = u32::from_str_radix(&addr[i * 8..i * 8 + 8], 16).ok()?;
            Some(word.to_ne_bytes())
        })
        .collect();
    let bytes: Vec<u8> = words?.concat();
    let addr = match (addr.len(), bytes.len()) {
        (8, 4) => Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3]).to_ipv6_mapped(),
        (32, 16) => Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?),
        _ => return None,
    };
    Some((addr, port))
}

/// Whether the host can reach a socket bound to `addr` (IPv4 as mapped).
fn reachable(addr: Ipv6Addr, guest: Option<Ipv4Addr>) -> bool {
    match addr.to_ipv4_mapped() {
        Some(v4) => v4.is_unspecified() || v4 == Ipv4Addr::LOCALHOST || Some(v4) == guest,
        None => addr.is_unspecified() || addr.is_loopback(),
    }
}

/// Groups listeners by (protocol, port).
pub fn ports(listeners: &[Listener]) -> Ports {
    let mut ports = Ports::new();
    for l in listeners {
        ports.entry((l.proto, l.port)).or_default().push(l.inode);
    }
    ports
}

/// The ports in `new` and not in `old`, and those in `old` and not in `new`.
pub fn changes(old: &Ports, new: &Ports) -> (Vec<PortKey>, Vec<PortKey>) {
    let opened = new
        .keys()
        .filter(|k| !old.contains_key(k))
        .copied()
        .collect();
    let closed = old
        .keys()
        .filter(|k| !new.contains_key(k))
        .copied()
        .collect();
    (opened, closed)
}

const TABLES: [(&str, Proto); 4] = [
    ("net/tcp", Proto::Tcp),
    ("net/tcp6", Proto::Tcp),
    ("net/udp", Proto::Udp),
    ("net/udp6", Proto::Udp),
];

/// Reads the four tables. A table that does not exist (a kernel without
/// IPv6) is empty; any other error fails.
fn read_ports(watch: &Watch) -> io::Result<Ports> {
    let mut all = Vec::new();
    for (file, proto) in TABLES {
        match std::fs::read_to_string(watch.proc_root.join(file)) {
            Ok(text) => all.extend(parse_table(&text, proto, watch.guest)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(ports(&all))
}

/// Watches the tables forever, calling `send` with every change.
pub fn run(watch: Watch, send: impl Fn(Frame)) {
    let mut open = Ports::new();
    // The names the opens gave, for the closes.
    let mut names: BTreeMap<PortKey, String> = BTreeMap::new();
    let mut failing = false;
    loop {
        match read_ports(&watch) {
            Ok(now) => {
                failing = false;
                report(&watch.proc_root, &open, &now, &mut names, &send);
                open = now;
            }
            // Said once, not every tick.
            Err(e) if !failing => {
                failing = true;
                log(&format!("listeners: cannot read the socket tables: {e}"));
            }
            Err(_) => {}
        }
        std::thread::sleep(POLL);
    }
}

fn report(
    proc_root: &Path,
    old: &Ports,
    now: &Ports,
    names: &mut BTreeMap<PortKey, String>,
    send: &impl Fn(Frame),
) {
    let (opened, closed) = changes(old, now);
    for key @ (proto, port) in closed {
        let process = names.remove(&key).unwrap_or_default();
        send(Frame::Listening {
            proto,
            port,
            open: false,
            process,
        });
    }
    if opened.is_empty() {
        return;
    }
    let inodes: Vec<u64> = opened.iter().flat_map(|k| now[k].iter().copied()).collect();
    let owners = sockowner::owners(proc_root, &inodes);
    for key @ (proto, port) in opened {
        let process = now[&key]
            .iter()
            .find_map(|inode| owners.get(inode))
            .cloned()
            .unwrap_or_else(|| sockowner::UNKNOWN.to_string());
        names.insert(key, process.clone());
        send(Frame::Listening {
            proto,
            port,
            open: true,
            process,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1001 1 0000000000000000 100 0 0 10 0
   1: 0100007F:0CEA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1002 1 0000000000000000 100 0 0 10 0
   2: 0F03000A:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1003 1 0000000000000000 100 0 0 10 0
   3: 0F03000A:0016 0203000A:D431 01 00000000:00000000 02:000A7B4C 00000000     0        0 1004 4 0000000000000000 20 4 30 10 -1
   4: 0101A8C0:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1005 1 0000000000000000 100 0 0 10 0
   5: 0100007F:0CEB 00000000:0000 0A 00000000:00000000 00:00000000 00000000
   6: 0100007F:ZZZZ 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1007 1
   7: 0200007F:0CEC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1008 1
";

    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F90 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2001 1 0000000000000000 100 0 0 10 0
   1: 00000000000000000000000001000000:1389 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2002 1 0000000000000000 100 0 0 10 0
   2: 0000000000000000FFFF00000100007F:138A 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2003 1 0000000000000000 100 0 0 10 0
   3: 0000000000000000FFFF00000F03000A:138B 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2004 1 0000000000000000 100 0 0 10 0
   4: 000080FE00000000FF005452120000FE:138C 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2005 1 0000000000000000 100 0 0 10 0
   5: 00000000000000000000000001000000:138D 00000000000000000000000001000000:9C40 01 00000000:00000000 00:00000000 00000000     0        0 2006 1 0000000000000000 100 0 0 10 0
   6: 000000000000000000000000010000:138E 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2007 1
";

    const UDP: &str = "\
   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 00000000:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3001 2 0000000000000000 0
  101: 0F03000A:0044 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3002 2 0000000000000000 0
  102: 0F03000A:C350 0203000A:0035 01 00000000:00000000 00:00000000 00000000     0        0 3003 2 0000000000000000 0
  103: 00000000:0000 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 3004 2 0000000000000000 0
garbage
";

    fn guest() -> Option<Ipv4Addr> {
        Some(Ipv4Addr::new(10, 0, 3, 15))
    }

    fn l(proto: Proto, port: u16, inode: u64) -> Listener {
        Listener { proto, port, inode }
    }

    #[test]
    fn tcp_listeners() {
        assert_eq!(
            parse_table(TCP, Proto::Tcp, guest()),
            [
                l(Proto::Tcp, 8080, 1001),
                l(Proto::Tcp, 3306, 1002),
                // The guest's own address; not the connection on the same port,
                // nor another address (192.168.1.1), nor 127.0.0.2.
                l(Proto::Tcp, 22, 1003),
                // Lines 5 (no inode) and 6 (bad port) are malformed.
            ]
        );
        // Without a guest address, only wildcards and loopback count.
        assert_eq!(
            parse_table(TCP, Proto::Tcp, None),
            [l(Proto::Tcp, 8080, 1001), l(Proto::Tcp, 3306, 1002)]
        );
    }

    #[test]
    fn tcp6_listeners() {
        assert_eq!(
            parse_table(TCP6, Proto::Tcp, guest()),
            [
                l(Proto::Tcp, 8080, 2001), // ::
                l(Proto::Tcp, 5001, 2002), // ::1
                l(Proto::Tcp, 5002, 2003), // ::ffff:127.0.0.1
                l(Proto::Tcp, 5003, 2004), // ::ffff:10.0.3.15
                                           // fe80::... is not reachable; 2006 is
                                           // a connection; 2007's address is short.
            ]
        );
    }

    #[test]
    fn udp_listeners() {
        assert_eq!(
            parse_table(UDP, Proto::Udp, guest()),
            [l(Proto::Udp, 53, 3001), l(Proto::Udp, 68, 3002)]
        );
    }

    #[test]
    fn empty_and_header_only_tables() {
        assert_eq!(parse_table("", Proto::Tcp, None), []);
        assert_eq!(
            parse_table(TCP.lines().next().unwrap(), Proto::Tcp, None),
            []
        );
    }

    #[test]
    fn one_report_per_port() {
        let mut all = parse_table(TCP, Proto::Tcp, guest());
        all.extend(parse_table(TCP6, Proto::Tcp, guest()));
        all.extend(parse_table(UDP, Proto::Udp, guest()));
        let p = ports(&all);
        assert_eq!(p[&(Proto::Tcp, 8080)], [1001, 2001]);
        assert_eq!(p[&(Proto::Udp, 53)], [3001]);
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn changes_between_polls() {
        let before = ports(&[
            l(Proto::Tcp, 80, 1),
            l(Proto::Tcp, 80, 2),
            l(Proto::Udp, 80, 3),
            l(Proto::Tcp, 22, 4),
        ]);
        // One of port 80's two TCP sockets goes: no change. 22 goes, 443 comes.
        let after = ports(&[
            l(Proto::Tcp, 80, 2),
            l(Proto::Udp, 80, 3),
            l(Proto::Tcp, 443, 5),
        ]);
        assert_eq!(
            changes(&before, &after),
            (vec![(Proto::Tcp, 443)], vec![(Proto::Tcp, 22)])
        );
        assert_eq!(changes(&after, &after), (vec![], vec![]));
    }

    #[test]
    fn reports_open_and_close_with_the_opening_name() {
        let frames = std::cell::RefCell::new(Vec::new());
        let send = |f: Frame| frames.borrow_mut().push(f);
        let mut names = BTreeMap::new();
        // No such /proc: the owner is unknown.
        let root = Path::new("/nonexistent-proc");
        let first = ports(&[l(Proto::Tcp, 80, 1)]);
        report(root, &Ports::new(), &first, &mut names, &send);
        report(root, &first, &first, &mut names, &send);
        report(root, &first, &Ports::new(), &mut names, &send);
        let listening = |open| Frame::Listening {
            proto: Proto::Tcp,
            port: 80,
            open,
            process: "unknown".into(),
        };
        assert_eq!(*frames.borrow(), [listening(true), listening(false)]);
        assert!(names.is_empty());
    }
}
