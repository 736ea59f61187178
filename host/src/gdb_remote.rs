//! A minimal client of the GDB remote serial protocol, enough to sample a
//! QEMU guest through its gdbstub (`-gdb tcp:...`): stop it, read its
//! registers and memory, let it go on.
//!
//! A packet is `$<data>#<checksum>`, the checksum the sum of the data bytes
//! modulo 256 in two hex digits; the receiver acknowledges with `+`. A
//! single 0x03 byte interrupts the running target, which answers with a
//! stop reply (`T05...` or `S05`).

use std::io::BufReader;
use std::io::Read;
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// x86_64 registers in the order QEMU's `g` packet sends them: the 16
/// general-purpose ones, then RIP (each 8 bytes, little-endian).
const RBP: usize = 6;
const RSP: usize = 7;
const RIP: usize = 16;

/// Frames an outgoing packet.
pub fn packet(data: &str) -> Vec<u8> {
    let sum = data.bytes().fold(0u8, |s, b| s.wrapping_add(b));
    format!("${data}#{sum:02x}").into_bytes()
}

/// Hex text to bytes (`None` if it is not hex).
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The little-endian 64-bit register `index` of a `g` reply.
pub fn register(reply: &str, index: usize) -> Option<u64> {
    let bytes = unhex(reply.get(index * 16..index * 16 + 16)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

/// Where the guest was stopped: its instruction, stack and frame pointers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stopped {
    pub rip: u64,
    pub rsp: u64,
    pub rbp: u64,
}

pub struct GdbRemote {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl GdbRemote {
    pub fn connect(port: u16, timeout: Duration) -> std::io::Result<GdbRemote> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(GdbRemote {
            reader: BufReader::new(stream.try_clone()?),
            writer: stream,
        })
    }

    /// Sends a packet and waits for its acknowledgement.
    fn send(&mut self, data: &str) -> std::io::Result<()> {
        self.writer.write_all(&packet(data))?;
        loop {
            match self.byte()? {
                b'+' => return Ok(()),
                b'-' => self.writer.write_all(&packet(data))?,
                _ => {} // noise before the ack (e.g. a late stop reply's tail)
            }
        }
    }

    fn byte(&mut self) -> std::io::Result<u8> {
        let mut b = [0u8];
        self.reader.read_exact(&mut b)?;
        Ok(b[0])
    }

    /// Reads the next packet's data (skipping acks) and acknowledges it.
    fn receive(&mut self) -> std::io::Result<String> {
        while self.byte()? != b'$' {}
        let mut data = Vec::new();
        loop {
            match self.byte()? {
                b'#' => break,
                b => data.push(b),
            }
        }
        let mut sum = [0u8; 2];
        self.reader.read_exact(&mut sum)?;
        self.writer.write_all(b"+")?;
        String::from_utf8(data).map_err(|_| std::io::ErrorKind::InvalidData.into())
    }

    fn request(&mut self, data: &str) -> std::io::Result<String> {
        self.send(data)?;
        self.receive()
    }

    /// Stops the running guest; returns once it reported the stop.
    pub fn interrupt(&mut self) -> std::io::Result<()> {
        self.writer.write_all(&[0x03])?;
        let reply = self.receive()?;
        if reply.starts_with('T') || reply.starts_with('S') {
            Ok(())
        } else {
            Err(std::io::Error::other(format!(
                "unexpected stop reply {reply:?}"
            )))
        }
    }

    /// Lets the guest run on (no reply until the next stop).
    pub fn resume(&mut self) -> std::io::Result<()> {
        self.send("c")
    }

    /// The stopped guest's RIP, RSP and RBP.
    pub fn where_stopped(&mut self) -> std::io::Result<Stopped> {
        let regs = self.request("g")?;
        let get = |i| {
            register(&regs, i)
                .ok_or_else(|| std::io::Error::other(format!("short register reply {regs:?}")))
        };
        Ok(Stopped {
            rip: get(RIP)?,
            rsp: get(RSP)?,
            rbp: get(RBP)?,
        })
    }

    /// `len` bytes of guest memory at virtual address `addr` (`None` if the
    /// stub cannot read them).
    pub fn read_memory(&mut self, addr: u64, len: usize) -> std::io::Result<Option<Vec<u8>>> {
        let reply = self.request(&format!("m{addr:x},{len:x}"))?;
        Ok(unhex(&reply).filter(|b| b.len() == len))
    }

    /// Ends the session; the guest runs on.
    pub fn detach(&mut self) -> std::io::Result<()> {
        self.request("D").map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_carry_their_checksum() {
        assert_eq!(packet("g"), b"$g#67");
        assert_eq!(packet("m1000,8"), b"$m1000,8#92");
        assert_eq!(packet(""), b"$#00");
    }

    #[test]
    fn registers_come_little_endian_in_gdb_order() {
        let mut reply = String::new();
        for i in 0..17u64 {
            for b in (0x1111_1111_0000_0000 + i).to_le_bytes() {
                reply.push_str(&format!("{b:02x}"));
            }
        }
        assert_eq!(register(&reply, RIP), Some(0x1111_1111_0000_0010));
        assert_eq!(register(&reply, RBP), Some(0x1111_1111_0000_0006));
        assert_eq!(register(&reply, 17), None);
        assert_eq!(unhex("0g"), None);
        assert_eq!(unhex("abc"), None);
    }
}
