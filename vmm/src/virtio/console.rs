//! virtio-console (device id 3), single port, no multiport.
//!
//! Queue 0 (receiveq) carries bytes to the guest, queue 1 (transmitq) bytes
//! from it; Linux exposes the port as `/dev/hvc0`. The VMM side is a plain
//! byte stream — [`Console::push_rx`] and [`Console::take_tx`] — which
//! carries the control channel to the guest agent.
//!
//! Both directions are bounded. When the host has not drained
//! [`TX_CAPACITY`] bytes of output, transmit buffers stay in the ring (the
//! guest blocks, which is backpressure, not loss).

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::on_queue;
use super::DeviceError;
use super::VirtioDevice;
use super::DEVICE_ID_CONSOLE;
use crate::memory::GuestMemory;
use crate::virtio::queue::Virtqueue;

pub const RECEIVEQ: u16 = 0;
pub const TRANSMITQ: u16 = 1;
/// Host-side output buffer bound.
pub const TX_CAPACITY: usize = 1 << 20;
/// Host-side input buffer bound.
pub const RX_CAPACITY: usize = 1 << 20;
const QUEUE_SIZE: u16 = 256;

/// A single-port virtio console.
#[derive(Default)]
pub struct Console {
    rx: VecDeque<u8>,
    tx: Vec<u8>,
}

impl Console {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues bytes for the guest. Returns how many were accepted (the rest
    /// did not fit in [`RX_CAPACITY`]). Call the transport's `poll` after.
    pub fn push_rx(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(RX_CAPACITY - self.rx.len());
        self.rx.extend(&data[..n]);
        n
    }

    /// Bytes waiting to reach the guest.
    pub fn rx_pending(&self) -> usize {
        self.rx.len()
    }

    /// Takes everything the guest has written so far. Call the transport's
    /// `poll` after, so transmit buffers held back by a full buffer move on.
    pub fn take_tx(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.tx)
    }

    fn fill_receiveq(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        while !self.rx.is_empty() {
            let Some(chain) = on_queue(RECEIVEQ, q.pop(mem))? else {
                break;
            };
            let n = chain.write_from(mem, self.rx.make_contiguous())?;
            self.rx.drain(..n);
            on_queue(RECEIVEQ, q.add_used(mem, chain.head, n as u32))?;
        }
        Ok(())
    }

    fn drain_transmitq(
        &mut self,
        q: &mut Virtqueue,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), DeviceError> {
        while let Some(chain) = on_queue(TRANSMITQ, q.pop(mem))? {
            let room = TX_CAPACITY - self.tx.len();
            if chain.readable_len() > room as u64 {
                if self.tx.is_empty() {
                    // Could never fit: a broken driver.
                    return Err(DeviceError::Protocol(
                        "transmit buffer larger than the console accepts",
                    ));
                }
                q.undo_pop();
                break;
            }
            on_queue(TRANSMITQ, chain.read_into(mem, &mut self.tx, room))?;
            on_queue(TRANSMITQ, q.add_used(mem, chain.head, 0))?;
        }
        Ok(())
    }
}

impl VirtioDevice for Console {
    fn device_id(&self) -> u32 {
        DEVICE_ID_CONSOLE
    }

    fn features(&self) -> u64 {
        // No F_SIZE, no F_MULTIPORT, no F_EMERG_WRITE: one plain port.
        0
    }

    fn num_queues(&self) -> u16 {
        2
    }

    fn queue_max_size(&self, _index: u16) -> u16 {
        QUEUE_SIZE
    }

    fn config_len(&self) -> usize {
        // cols, rows (u16), max_nr_ports, emerg_wr (u32): all zero.
        12
    }

    fn reset(&mut self) {
        // Bytes in flight to or from a reset driver belong to a session that
        // is gone; the host sees a fresh stream.
        self.rx.clear();
    }

    fn process(
        &mut self,
        queues: &mut [Virtqueue],
        mem: &mut dyn GuestMemory,
        _notified: Option<u16>,
    ) -> Result<(), DeviceError> {
        let [receiveq, transmitq] = queues else {
            return Err(DeviceError::Protocol("console needs two queues"));
        };
        if transmitq.ready {
            self.drain_transmitq(transmitq, mem)?;
        }
        if receiveq.ready {
            self.fill_receiveq(receiveq, mem)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::VecMemory;
    use crate::virtio::mmio::reg;
    use crate::virtio::mmio::tests::bring_up;
    use crate::virtio::mmio::tests::r32;
    use crate::virtio::mmio::tests::w32;
    use crate::virtio::mmio::MmioTransport;
    use crate::virtio::queue::tests::Driver;
    use crate::virtio::queue::tests::AVAIL;
    use crate::virtio::queue::tests::DESC;
    use crate::virtio::queue::VIRTQ_DESC_F_NEXT;
    use crate::virtio::queue::VIRTQ_DESC_F_WRITE;
    use crate::virtio::status;

    const TXQ_OFF: u64 = 0x4000;

    fn setup() -> (MmioTransport<Console>, VecMemory) {
        let mut mem = VecMemory::new(0x40000);
        let mut t = MmioTransport::new(Console::new());
        bring_up(&mut t, &mut mem);
        assert_eq!(r32(&mut t, reg::DEVICE_ID), 3);
        (t, mem)
    }

    fn set_desc_q(
        mem: &mut VecMemory,
        qoff: u64,
        i: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) {
        let at = DESC + qoff + 16 * i as u64;
        mem.write_u64(at, addr).unwrap();
        mem.write_u32(at + 8, len).unwrap();
        mem.write_u16(at + 12, flags).unwrap();
        mem.write_u16(at + 14, next).unwrap();
    }

    fn publish_q(mem: &mut VecMemory, qoff: u64, idx: &mut u16, head: u16) {
        mem.write_u16(AVAIL + qoff + 4 + 2 * (*idx % 8) as u64, head)
            .unwrap();
        *idx = idx.wrapping_add(1);
        mem.write_u16(AVAIL + qoff + 2, *idx).unwrap();
    }

    #[test]
    fn transmit() {
        let (mut t, mut mem) = setup();
        let mut idx = 0;
        mem.write(0x20000, b"hello ").unwrap();
        mem.write(0x21000, b"agent").unwrap();
        set_desc_q(&mut mem, TXQ_OFF, 0, 0x20000, 6, VIRTQ_DESC_F_NEXT, 1);
        set_desc_q(&mut mem, TXQ_OFF, 1, 0x21000, 5, 0, 0);
        publish_q(&mut mem, TXQ_OFF, &mut idx, 0);
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, TRANSMITQ as u32);
        assert_eq!(t.device_mut().take_tx(), b"hello agent");
        assert!(t.irq_level());
        assert!(t.device_mut().take_tx().is_empty());
    }

    #[test]
    fn receive_split_across_buffers() {
        let (mut t, mut mem) = setup();
        let mut d = Driver::new();
        // Two 4-byte receive buffers.
        Driver::set_desc(&mut mem, 0, 0x20000, 4, VIRTQ_DESC_F_WRITE, 0);
        Driver::set_desc(&mut mem, 1, 0x21000, 4, VIRTQ_DESC_F_WRITE, 0);
        d.publish(&mut mem, 0);
        d.publish(&mut mem, 1);
        assert_eq!(t.device_mut().push_rx(b"0123456789"), 10);
        t.poll(&mut mem);
        assert_eq!(d.used(&mem), Some((0, 4)));
        assert_eq!(d.used(&mem), Some((1, 4)));
        assert_eq!(d.used(&mem), None);
        assert_eq!(t.device().rx_pending(), 2);
        let mut b = [0u8; 4];
        mem.read(0x21000, &mut b).unwrap();
        assert_eq!(&b, b"4567");
        // The driver recycles a buffer and notifies: the rest arrives.
        d.publish(&mut mem, 0);
        w32(&mut t, &mut mem, reg::QUEUE_NOTIFY, RECEIVEQ as u32);
        assert_eq!(d.used(&mem), Some((0, 2)));
        assert_eq!(t.device().rx_pending(), 0);
    }

    #[test]
    fn receive_wraps_internal_ring() {
        let (mut t, mut mem) = setup();
        let mut d = Driver::new();
        // Make the VecDeque wrap internally.
        Driver::set_desc(
            &mut mem,
            0,
            0x20000,
            64,
            VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
            1,
        );
        Driver::set_desc(&mut mem, 1, 0x21000, 64, VIRTQ_DESC_F_WRITE, 0);
        let c = t.device_mut();
        c.push_rx(&[1u8; 100]);
        c.rx.drain(..90);
        c.push_rx(&[2u8; 100]);
        d.publish(&mut mem, 0);
        t.poll(&mut mem);
        assert_eq!(d.used(&mem), Some((0, 110)));
        let mut b = [0u8; 128];
        mem.read(0x20000, &mut b[..64]).unwrap();
        mem.read(0x21000, &mut b[64..]).unwrap();
        assert_eq!(&b[..10], &[1u8; 10]);
        assert!(b[10..110].iter().all(|&x| x == 2));
    }

    #[test]
    fn nothing_before_driver_ok() {
        let mut mem = VecMemory::new(0x40000);
        let mut t = MmioTransport::new(Console::new());
        t.device_mut().push_rx(b"x");
        t.poll(&mut mem);
        assert!(!t.irq_level());
        assert_eq!(t.status() & status::DRIVER_OK, 0);
    }

    #[test]
    fn readable_buffer_on_receiveq_is_tolerated() {
        // A read-only buffer in the receive queue gets 0 bytes; no panic.
        let (mut t, mut mem) = setup();
        let mut d = Driver::new();
        Driver::set_desc(&mut mem, 0, 0x20000, 4, 0, 0);
        d.publish(&mut mem, 0);
        t.device_mut().push_rx(b"abc");
        t.poll(&mut mem);
        assert_eq!(d.used(&mem), Some((0, 0)));
    }
}
