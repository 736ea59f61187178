//! The virtio-net driver: moves Ethernet frames between a virtio-net NIC
//! (virtio-pci on q35, virtio-mmio on microvm) and its client, the TCP/IP
//! server, which connects to the `net` service.
//!
//! The link protocol, on the client's channel:
//! - driver to client, first: `Open { call_id: 0, uri: "ethernet:<mac>" }`
//!   (no handle) announces the link and its MAC address;
//! - then `Data` both ways, one Ethernet frame (without FCS) per message.
//!
//! Received frames the client cannot take yet (its queue is full) wait in
//! a bounded backlog; when that is full too, the driver stops taking
//! frames from the NIC (it leaves them in the used ring and gives the NIC
//! no new buffers) until the client catches up, so the device, not the
//! system, holds or drops what it cannot deliver. Nothing is taken from
//! the NIC while no client is attached.
//! A new client replaces the previous one (the TCP/IP server restarted).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::driver::virtio::transport;
use starina::driver::virtio::StarinaHal;
use starina::driver::Interrupt;
use starina::poll::Poll;
use starina::Error;
use starina::HandleId;
use starina::Message;
use virtio_drivers::device::net::VirtIONet;
use virtio_drivers::transport::SomeTransport;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Descriptors per virtqueue.
const QUEUE_SIZE: usize = 64;
/// Receive buffer size: the virtio-net header and a full Ethernet frame.
const RX_BUFFER_LEN: usize = 2048;
/// Smallest and largest Ethernet frame we send (header .. MTU 1500).
const FRAME_MIN: usize = 14;
const FRAME_MAX: usize = 1514;
/// Received frames kept while the client's queue is full.
const BACKLOG_MAX: usize = 256;

type Nic = VirtIONet<StarinaHal, SomeTransport<'static>, QUEUE_SIZE>;

struct Driver {
    nic: Nic,
    irq: Interrupt,
    poll: Poll,
    supervisor: Channel,
    client: Option<Channel>,
    /// Frames for the client that did not fit in its queue yet.
    backlog: VecDeque<Vec<u8>>,
    watching_writable: bool,
    mac: [u8; 6],
    dropped: u64,
    /// The backlog is full: frames stay in the NIC until the client
    /// catches up.
    throttled: bool,
    throttles: u64,
}

pub fn main(env: Env) -> Result<(), String> {
    let device = env.nic;
    let where_ = device.describe();
    let transport = transport(&device)
        .map_err(|e| format!("{where_}: cannot open the virtio transport: {e}"))?;
    let nic = Nic::new(transport, RX_BUFFER_LEN)
        .map_err(|e| format!("{where_}: virtio-net initialization failed: {e:?}"))?;
    let irq = device
        .interrupt()
        .map_err(|e| format!("{where_}: no interrupt: {e}"))?;
    let poll = Poll::create().map_err(|e| format!("cannot create a poll: {e}"))?;
    let mac = nic.mac_address();
    let mut driver = Driver {
        nic,
        irq,
        poll,
        supervisor: env.supervisor,
        client: None,
        backlog: VecDeque::new(),
        watching_writable: false,
        mac,
        dropped: 0,
        throttled: false,
        throttles: 0,
    };
    let result = driver.run(&where_);
    // `device` drops last: the kernel quiesces the NIC before its DMA
    // memory is freed.
    drop(driver);
    drop(device);
    result.map_err(|e| format!("{where_}: {e}"))
}

fn mac_string(mac: &[u8; 6]) -> alloc::string::String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

impl Driver {
    fn run(&mut self, where_: &str) -> Result<(), Error> {
        self.poll.add(
            self.supervisor.id(),
            Readiness::READABLE | Readiness::PEER_CLOSED,
        )?;
        self.poll.add(self.irq.id(), Readiness::READABLE)?;
        log::info!("{where_}: link up, MAC {}", mac_string(&self.mac));
        let mut buf = MessageBuffer::new();
        loop {
            let (id, ready) = self.poll.wait()?;
            if id == self.irq.id() {
                self.on_interrupt();
            } else if id == self.supervisor.id() {
                self.on_supervisor(&mut buf, ready)?;
            } else if Some(id) == self.client.as_ref().map(Channel::id) {
                self.on_client(&mut buf, ready);
            }
        }
    }

    fn on_supervisor(&mut self, buf: &mut MessageBuffer, ready: Readiness) -> Result<(), Error> {
        match self.supervisor.try_recv(buf) {
            Ok(Message::Open {
                uri,
                handle: Some(handle),
                ..
            }) if uri.starts_with("connect:") => {
                let client = Channel::from_handle(handle);
                self.attach(client);
            }
            Ok(other) => log::warn!("ignoring {:?} on the supervisor channel", other.kind()),
            Err(Error::WouldBlock) => {
                if ready.contains(Readiness::PEER_CLOSED) {
                    log::warn!("supervisor channel closed");
                    let _ = self.poll.remove(self.supervisor.id());
                }
            }
            Err(Error::PeerClosed) => {
                log::warn!("supervisor channel closed");
                let _ = self.poll.remove(self.supervisor.id());
            }
            Err(e) => log::warn!("bad message on the supervisor channel: {e}"),
        }
        Ok(())
    }

    fn attach(&mut self, client: Channel) {
        if let Some(old) = self.client.take() {
            let _ = self.poll.remove(old.id());
            log::info!("a new client replaces the previous one");
        }
        self.backlog.clear();
        self.watching_writable = false;
        let uri = format!("ethernet:{}", mac_string(&self.mac));
        let hello = Message::Open {
            call_id: 0,
            uri: &uri,
            handle: None,
        };
        if let Err(e) = client.send(hello) {
            log::warn!("cannot greet the client: {}", e.error);
            return;
        }
        if let Err(e) = self
            .poll
            .add(client.id(), Readiness::READABLE | Readiness::PEER_CLOSED)
        {
            log::warn!("cannot watch the client: {e}");
            return;
        }
        self.client = Some(client);
        // Frames may have arrived before anyone listened.
        self.on_interrupt();
    }

    fn detach(&mut self) {
        if let Some(old) = self.client.take() {
            let _ = self.poll.remove(old.id());
        }
        self.backlog.clear();
        self.watching_writable = false;
        log::info!("client gone");
    }

    fn set_watch_writable(&mut self, id: HandleId, on: bool) {
        if self.watching_writable == on {
            return;
        }
        let mut interests = Readiness::READABLE | Readiness::PEER_CLOSED;
        if on {
            interests |= Readiness::WRITABLE;
        }
        let _ = self.poll.remove(id);
        if self.poll.add(id, interests).is_ok() {
            self.watching_writable = on;
        }
    }

    fn on_client(&mut self, buf: &mut MessageBuffer, ready: Readiness) {
        if ready.contains(Readiness::WRITABLE) && self.flush_backlog() {
            // Frames the NIC kept for us while the backlog was full.
            self.receive();
        }
        if !ready.intersects(Readiness::READABLE | Readiness::PEER_CLOSED) {
            return;
        }
        let Some(client) = self.client.as_ref() else {
            return;
        };
        // Up to a queue's worth of frames per wake-up, so the receive side
        // gets its turn.
        for _ in 0..starina::abi::CHANNEL_QUEUE_MAX {
            let Some(client) = self.client.as_ref() else {
                return;
            };
            match client.try_recv(buf) {
                Ok(Message::Data(frame)) => {
                    if !(FRAME_MIN..=FRAME_MAX).contains(&frame.len()) {
                        log::warn!(
                            "dropping a {}-byte frame (not an Ethernet frame)",
                            frame.len()
                        );
                        continue;
                    }
                    let tx = self.nic.new_tx_buffer(frame.len());
                    let mut tx = tx;
                    tx.packet_mut().copy_from_slice(frame);
                    if let Err(e) = self.nic.send(tx) {
                        log::warn!("transmit failed: {e:?}");
                    }
                }
                Ok(other) => log::warn!("ignoring {:?} from the client", other.kind()),
                Err(Error::WouldBlock) => {
                    if ready.contains(Readiness::PEER_CLOSED)
                        && !ready.contains(Readiness::READABLE)
                    {
                        self.detach();
                    }
                    return;
                }
                Err(Error::PeerClosed) => {
                    self.detach();
                    return;
                }
                Err(e) => log::warn!("bad message from the client: {e}"),
            }
        }
        let _ = client;
    }

    /// Sends waiting frames to the client; true if it took them all.
    fn flush_backlog(&mut self) -> bool {
        let Some(client) = self.client.as_ref() else {
            self.backlog.clear();
            return true;
        };
        let id = client.id();
        while let Some(frame) = self.backlog.front() {
            match client.send_data(frame) {
                Ok(()) => {
                    self.backlog.pop_front();
                }
                Err(Error::QueueFull) => {
                    self.set_watch_writable(id, true);
                    return false;
                }
                Err(_) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
        self.set_watch_writable(id, false);
        true
    }

    fn on_interrupt(&mut self) {
        // Reading the ISR lowers the line; frames arriving after this
        // raise it again, and the ack below unmasks it.
        self.nic.ack_interrupt();
        self.receive();
        if let Err(e) = self.irq.ack() {
            log::error!("interrupt ack failed: {e}");
        }
    }

    /// Moves received frames from the NIC to the client (or the backlog)
    /// while the backlog has room.
    fn receive(&mut self) {
        if self.client.is_none() {
            return;
        }
        let mut delivered_all = self.flush_backlog();
        while self.backlog.len() < BACKLOG_MAX {
            let Ok(rx) = self.nic.receive() else { break };
            let frame = rx.packet();
            match self.client.as_ref().filter(|_| delivered_all) {
                Some(client) => match client.send_data(frame) {
                    Ok(()) => {}
                    Err(Error::QueueFull) => {
                        delivered_all = false;
                        self.backlog.push_back(frame.to_vec());
                        let id = client.id();
                        self.set_watch_writable(id, true);
                    }
                    Err(_) => self.dropped += 1,
                },
                None => self.backlog.push_back(frame.to_vec()),
            }
            if let Err(e) = self.nic.recycle_rx_buffer(rx) {
                log::error!("cannot recycle a receive buffer: {e:?}");
            }
        }
        if self.backlog.len() >= BACKLOG_MAX && !self.throttled {
            self.throttled = true;
            self.throttles += 1;
            if self.throttles.is_power_of_two() {
                log::warn!(
                    "client is slow: holding received frames in the NIC ({} times so far)",
                    self.throttles
                );
            }
        } else if self.backlog.len() < BACKLOG_MAX {
            self.throttled = false;
        }
    }
}
