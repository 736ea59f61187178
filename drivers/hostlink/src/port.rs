//! The byte stream to the host: a virtio-console port (QEMU), or the COM2
//! UART (Bochs, which has no virtio devices), behind one interface.
//!
//! Both are read only when the driver wants more (see the backpressure
//! notes in the crate docs): the virtio-console keeps what it has in its
//! receive queue, the UART in its FIFO once its buffer is full
//! (`starina::driver::uart`). Sending waits for the device either way:
//! the virtio-console until the device has taken the bytes, the UART
//! until its queue is down to [`UART_BACKLOG_MAX`] (at 115200 baud, about
//! 11 KB a second, a command's output can outrun it).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::driver::uart::Uart;
use starina::driver::virtio::StarinaHal;
use virtio_drivers::device::console::VirtIOConsole;
use virtio_drivers::transport::SomeTransport;

/// Bytes queued for the UART's transmitter before sending waits.
const UART_BACKLOG_MAX: usize = 64 * 1024;

pub type VirtioPort = VirtIOConsole<StarinaHal, SomeTransport<'static>>;

pub enum HostPort {
    // Boxed: the virtio-console is several times the size of the UART.
    Virtio(alloc::boxed::Box<VirtioPort>),
    Uart(Uart),
}

impl HostPort {
    /// After the device's interrupt (before it is acked): makes the device
    /// lower its line, and for the UART moves bytes both ways.
    pub fn on_interrupt(&mut self) -> Result<(), String> {
        match self {
            HostPort::Virtio(port) => port.ack_interrupt().map(drop).map_err(|e| format!("{e:?}")),
            HostPort::Uart(uart) => uart.service().map_err(|e| format!("{e}")),
        }
    }

    /// Up to `max` bytes from the host (empty when none wait).
    pub fn recv(&mut self, max: usize) -> Result<Vec<u8>, String> {
        match self {
            HostPort::Virtio(port) => {
                let mut chunk = Vec::new();
                while chunk.len() < max {
                    match port.recv(true) {
                        Ok(Some(b)) => chunk.push(b),
                        Ok(None) => break,
                        Err(e) if chunk.is_empty() => return Err(format!("{e:?}")),
                        // Reported by the next call, after these bytes.
                        Err(_) => break,
                    }
                }
                Ok(chunk)
            }
            HostPort::Uart(uart) => uart.take(max).map_err(|e| format!("{e}")),
        }
    }

    /// Sends `bytes` to the host, waiting for the device as needed.
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self {
            HostPort::Virtio(port) => port.send_bytes(bytes).map_err(|e| format!("{e:?}")),
            HostPort::Uart(uart) => uart
                .send(bytes)
                .and_then(|()| uart.flush_to(UART_BACKLOG_MAX))
                .map_err(|e| format!("{e}")),
        }
    }
}
