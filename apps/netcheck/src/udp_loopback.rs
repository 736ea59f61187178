//! UDP inside the machine, as a native client of a UDP listener sees it:
//! netcheck holds `udp-listen:0.0.0.0:<udp_loopback_port>` (as the linux
//! server does for a Linux UDP port) and runs the `udp` command against
//! `localhost:<port>`. The command's datagram must arrive from 127.0.0.1,
//! and netcheck's answer, sent back to that address, must come out of the
//! command. Then `udp` to a port nobody holds must fail with a reason.
//! Logs `netcheck: udp ok: ...` or `netcheck: udp FAILED: ...`.

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

use starina::channel::MessageBuffer;
use starina::command::Input;
use starina::command::Spawner;
use starina::command::Stdio;
use starina::datagram;
use starina::Channel;
use starina::Message;

use crate::http_get::run_command;

/// How long each step may take.
const WAIT_MS: u64 = 10_000;
const QUESTION: &[u8] = b"ping from udp";
const ANSWER: &[u8] = b"pong from netcheck";

/// Asks tcpip for UDP port `port` of this machine.
fn listen(tcpip: &Channel, port: u16) -> Result<Channel, String> {
    let uri = format!("udp-listen:0.0.0.0:{port}");
    tcpip
        .open_within(&uri, WAIT_MS)
        .map_err(|e| format!("{uri}: {e}"))
}

/// Takes the command's datagram on `listener` and answers it.
fn answer(listener: &Channel) -> Result<(), String> {
    let mut buf = MessageBuffer::new();
    let body = match listener.recv_within(&mut buf, WAIT_MS) {
        Ok(Some(Message::Data(body))) => body,
        Ok(Some(other)) => return Err(format!("the listener got {:?}", other.kind())),
        Ok(None) => return Err("no datagram reached the listener".to_string()),
        Err(e) => return Err(format!("the listener: {e}")),
    };
    let (from, payload) = datagram::decode(body).map_err(|e| format!("a datagram: {e}"))?;
    if from.addr != [127, 0, 0, 1] || payload != QUESTION {
        return Err(format!(
            "the datagram came from {:?}:{} with {:?}",
            from.addr,
            from.port,
            String::from_utf8_lossy(payload)
        ));
    }
    let reply = datagram::encode(from, ANSWER).ok_or("the answer does not fit")?;
    listener
        .send_data(&reply)
        .map_err(|e| format!("answering: {e}"))
}

fn check(spawn: &Spawner, tcpip: &Channel, port: u16) -> Result<String, String> {
    let listener = listen(tcpip, port)?;
    let (stdio, peer) = Stdio::pipes().map_err(|e| format!("pipes: {e}"))?;
    let port_arg = port.to_string();
    let args: Vec<String> = ["-w", "10", "localhost", &port_arg, "ping", "from", "udp"]
        .iter()
        .map(|a| a.to_string())
        .collect();
    let job = spawn
        .spawn("udp", &args, &[], stdio)
        .map_err(|e| format!("cannot start udp: {e}"))?;
    drop(peer.stdin);
    answer(&listener)?;
    let read = |ch: Channel| {
        Input::new(ch)
            .read_to_end(64 * 1024)
            .map_err(|e| e.to_string())
    };
    let out = read(peer.stdout)?;
    let err = String::from_utf8_lossy(&read(peer.stderr)?).into_owned();
    let status = job.wait().map_err(|e| format!("waiting for udp: {e}"))?;
    if status != 0 || out != ANSWER {
        return Err(format!(
            "udp localhost {port}: status {status}, stdout {:?}, stderr {err:?}",
            String::from_utf8_lossy(&out)
        ));
    }
    // Nobody holds the next port: refused, with the reason.
    let free = port.wrapping_add(1).to_string();
    let (status, out, err) = run_command(spawn, "udp", &["localhost", &free, "x"])?;
    if status != 1 || !out.is_empty() || !err.contains("nothing listens") {
        return Err(format!(
            "udp localhost {free}: status {status}, stderr {err:?}"
        ));
    }
    Ok(format!(
        "a datagram to localhost:{port} came from 127.0.0.1 and the answer came back; port {free}: {}",
        err.trim_end()
    ))
}

/// Runs the check and logs its result.
pub fn check_and_log(spawn: &Spawner, tcpip: &Channel, port: u16) {
    match check(spawn, tcpip, port) {
        Ok(summary) => log::info!("netcheck: udp ok: {summary}"),
        Err(why) => log::error!("netcheck: udp FAILED: {why}"),
    }
}
