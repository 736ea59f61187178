//! The smoltcp device on top of the virtio-net driver's channel: received
//! frames wait in `rx` until smoltcp polls them; frames smoltcp sends
//! collect in `tx` until the main loop hands them to the driver.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::Device;
use smoltcp::phy::DeviceCapabilities;
use smoltcp::phy::Medium;
use smoltcp::time::Instant;

/// Frames waiting for the driver before smoltcp is told to hold back.
pub const TX_QUEUE_MAX: usize = 512;
/// Received frames waiting for smoltcp before new ones are dropped.
pub const RX_QUEUE_MAX: usize = 512;
/// Frames one `poll` takes in, so listeners are refilled between bursts
/// of new connections.
pub const RX_BUDGET: usize = 16;

pub struct Link {
    pub rx: VecDeque<Vec<u8>>,
    pub tx: VecDeque<Vec<u8>>,
    pub rx_budget: usize,
    pub rx_dropped: u64,
}

impl Link {
    pub fn new() -> Link {
        Link {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
            rx_budget: RX_BUDGET,
            rx_dropped: 0,
        }
    }

    pub fn push_rx(&mut self, frame: &[u8]) {
        if self.rx.len() >= RX_QUEUE_MAX {
            self.rx_dropped += 1;
            return;
        }
        self.rx.push_back(frame.to_vec());
    }
}

pub struct RxToken(Vec<u8>);
pub struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl smoltcp::phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.0)
    }
}

impl smoltcp::phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let r = f(&mut frame);
        self.0.push_back(frame);
        r
    }
}

impl Device for Link {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _now: Instant) -> Option<(RxToken, TxToken<'_>)> {
        if self.rx_budget == 0 || self.tx.len() >= TX_QUEUE_MAX {
            return None;
        }
        let frame = self.rx.pop_front()?;
        self.rx_budget -= 1;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _now: Instant) -> Option<TxToken<'_>> {
        if self.tx.len() >= TX_QUEUE_MAX {
            return None;
        }
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}
