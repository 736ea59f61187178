//! The host's end of the host link: QEMU's virtio-console port on a Unix
//! socket, or Bochs' COM2 over TCP (Bochs connects as a client to a port
//! on the loopback interface). `exec` reads and writes either the same way.

use std::io;
use std::io::Read;
use std::io::Write;
use std::net::TcpListener;
use std::net::TcpStream;
use std::os::unix::net::UnixListener;
use std::os::unix::net::UnixStream;

pub enum LinkStream {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl LinkStream {
    pub fn try_clone(&self) -> io::Result<LinkStream> {
        Ok(match self {
            LinkStream::Unix(s) => LinkStream::Unix(s.try_clone()?),
            LinkStream::Tcp(s) => LinkStream::Tcp(s.try_clone()?),
        })
    }
}

impl Read for LinkStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            LinkStream::Unix(s) => s.read(buf),
            LinkStream::Tcp(s) => s.read(buf),
        }
    }
}

impl Write for LinkStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            LinkStream::Unix(s) => s.write(buf),
            LinkStream::Tcp(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            LinkStream::Unix(s) => s.flush(),
            LinkStream::Tcp(s) => s.flush(),
        }
    }
}

/// A non-blocking listener for the emulator's one connection.
pub enum LinkListener {
    Unix(UnixListener),
    Tcp(TcpListener),
}

impl LinkListener {
    /// The emulator's connection, made blocking, if it came.
    pub fn accept(&self) -> io::Result<LinkStream> {
        let stream = match self {
            LinkListener::Unix(l) => LinkStream::Unix(l.accept()?.0),
            LinkListener::Tcp(l) => {
                let (s, _) = l.accept()?;
                // Frames are small and a reply waits on each: no Nagle delay.
                s.set_nodelay(true)?;
                LinkStream::Tcp(s)
            }
        };
        match &stream {
            LinkStream::Unix(s) => s.set_nonblocking(false)?,
            LinkStream::Tcp(s) => s.set_nonblocking(false)?,
        }
        Ok(stream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tcp_link_carries_bytes_both_ways() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let listener = LinkListener::Tcp(listener);
        assert!(listener.accept().is_err(), "nobody connected yet");
        let mut peer = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let mut link = loop {
            if let Ok(link) = listener.accept() {
                break link;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let mut reader = link.try_clone().unwrap();
        peer.write_all(b"ping").unwrap();
        let mut buf = [0; 4];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        link.write_all(b"pong").unwrap();
        peer.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"pong");
    }
}
