//! The virtio-net driver: moves Ethernet frames between a virtio-net NIC
//! (virtio-pci on q35, virtio-mmio on microvm) and its client, the TCP/IP
//! server, which connects to the `net` service.
//!
//! The link protocol, on the client's channel:
//! - driver to client, first: `Open { call_id: 0, uri: "ethernet:<mac>" }`
//!   (no handle) announces the link and its MAC address;
//! - then `Data` both ways, each carrying one or more Ethernet frames
//!   (without FCS) packed as `starina::frames` does it (a burst of frames
//!   costs one message).
//!
//! Frames from the client are queued to the NIC without waiting for each
//! to go out: the NIC's completions are reaped later (on its interrupt, or
//! when the next frame needs a buffer), so a burst reaches the device as
//! one batch. While every transmit buffer is with the NIC, frames wait
//! here (at most [`TX_WAITING_MAX`]) and the client's channel is not read
//! (its frames wait in the channel: backpressure) until the NIC hands
//! buffers back.
//!
//! Received frames the client cannot take yet wait in the SDK's outbox for
//! its channel; past [`THROTTLE_BYTES`] of them the driver stops taking
//! frames from the NIC (it leaves them in the used ring and gives the NIC
//! no new buffers) until the client has drained them, so the device, not
//! the system, holds or drops what it cannot deliver. Nothing is taken from
//! the NIC while no client is attached.
//! A new client replaces the previous one (the TCP/IP server restarted).
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina::driver::virtio::net::TxFull;
use starina::driver::virtio::transport;
use starina::frames::for_each_frame;
use starina::frames::FrameBatch;
use starina::frames::Malformed;
use starina::mainloop::Cx;
use starina::mainloop::Handler;
use starina::mainloop::Mainloop;
use starina::Channel;
use starina::Error;
use starina::HandleId;
use starina::Message;

include!(concat!(env!("OUT_DIR"), "/starina_env.rs"));

/// Descriptors per virtqueue.
const QUEUE_SIZE: usize = 128;
/// Smallest and largest Ethernet frame we send (header .. MTU 1500).
const FRAME_MIN: usize = 14;
const FRAME_MAX: usize = 1514;
/// Received frames (in bytes) waiting for the client beyond which frames
/// stay in the NIC: about a hundred full frames.
const THROTTLE_BYTES: usize = 128 * 1024;
/// Frames from the client waiting for a transmit buffer at most (the
/// client's channel is not read meanwhile: at most the rest of the message
/// being taken arrives, about ten full frames).
const TX_WAITING_MAX: usize = 2 * QUEUE_SIZE;

type Nic = starina::driver::virtio::net::Nic<QUEUE_SIZE>;

/// What a watched object is to the driver.
enum Watched {
    Client,
    Interrupt,
}

struct Driver {
    nic: Nic,
    client: Option<HandleId>,
    mac: [u8; 6],
    dropped: u64,
    /// Frames are held in the NIC until the client drains its backlog.
    throttled: bool,
    throttles: u64,
    /// Frames from the client waiting for a transmit buffer.
    tx_waiting: VecDeque<Vec<u8>>,
    /// The client's channel is not read while frames wait.
    tx_paused: bool,
    /// Frames dropped because even `tx_waiting` was full.
    tx_dropped: u64,
    /// Where `receive` packs frames for the client (its memory kept
    /// between calls).
    rx_batch: FrameBatch,
}

pub fn main(env: Env) -> Result<(), String> {
    let device = env.nic;
    let where_ = device.describe();
    let transport = transport(&device)
        .map_err(|e| format!("{where_}: cannot open the virtio transport: {e}"))?;
    let nic = Nic::new(transport)
        .map_err(|e| format!("{where_}: virtio-net initialization failed: {e:?}"))?;
    let irq = device
        .interrupt()
        .map_err(|e| format!("{where_}: no interrupt: {e}"))?;
    let mut driver = Driver {
        mac: nic.mac_address(),
        nic,
        client: None,
        dropped: 0,
        throttled: false,
        throttles: 0,
        tx_waiting: VecDeque::new(),
        tx_paused: false,
        tx_dropped: 0,
        rx_batch: FrameBatch::new(),
    };
    let result = run(&mut driver, env.supervisor, irq, &where_);
    // `device` drops last: the kernel quiesces the NIC before its DMA
    // memory is freed.
    drop(driver);
    drop(device);
    result.map_err(|e| format!("{where_}: {e}"))
}

fn run(
    driver: &mut Driver,
    supervisor: Channel,
    irq: starina::driver::Interrupt,
    where_: &str,
) -> Result<(), Error> {
    let mut ml = Mainloop::new()?;
    ml.cx().add_supervisor(supervisor)?;
    ml.cx().add_interrupt(irq, Watched::Interrupt)?;
    log::info!("{where_}: link up, MAC {}", mac_string(&driver.mac));
    ml.run(driver)
}

fn mac_string(mac: &[u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]
    )
}

impl Handler for Driver {
    type State = Watched;

    fn connect(
        &mut self,
        cx: &mut Cx<Watched>,
        _service: &str,
        client: Channel,
    ) -> Result<(), Error> {
        if let Some(old) = self.client.take() {
            cx.remove(old);
            log::info!("a new client replaces the previous one");
        }
        let uri = format!("ethernet:{}", mac_string(&self.mac));
        client.send(Message::Open {
            call_id: 0,
            uri: &uri,
            handle: None,
        })?;
        self.client = Some(cx.add_channel(client, Watched::Client)?);
        // The previous client's frames still go out; the new channel is
        // read from the start.
        self.tx_paused = false;
        // Frames may have arrived before anyone listened.
        self.receive(cx);
        Ok(())
    }

    fn message(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        _: &mut Watched,
        msg: Message<'_>,
    ) -> Result<(), Error> {
        let Message::Data(frames) = msg else {
            log::warn!("ignoring {:?} from the client", msg.kind());
            return Ok(());
        };
        let result = for_each_frame(frames, |frame| self.transmit(frame));
        if let Err(Malformed { at }) = result {
            log::warn!("malformed frames from the client (at byte {at}); the rest dropped");
        }
        if !self.tx_waiting.is_empty() && !self.tx_paused {
            self.tx_paused = true;
            cx.pause_receiving(id)?;
        }
        Ok(())
    }

    fn peer_closed(
        &mut self,
        _cx: &mut Cx<Watched>,
        id: HandleId,
        _: Watched,
    ) -> Result<(), Error> {
        if self.client == Some(id) {
            self.client = None;
            log::info!("client gone");
        }
        Ok(())
    }

    fn interrupt(
        &mut self,
        cx: &mut Cx<Watched>,
        id: HandleId,
        _: &mut Watched,
    ) -> Result<(), Error> {
        // Reading the ISR lowers the line; frames arriving after this
        // raise it again, and the ack below unmasks it.
        self.nic.ack_interrupt();
        self.nic.reap_tx();
        self.transmit_waiting(cx);
        self.receive(cx);
        cx.ack_interrupt(id)
    }

    fn drained(&mut self, cx: &mut Cx<Watched>, _: HandleId, _: &mut Watched) -> Result<(), Error> {
        // Frames the NIC kept for us while the client was behind.
        self.receive(cx);
        Ok(())
    }
}

/// Sends the frames packed in `batch` to the client (counting them in
/// `dropped` if that fails) and empties it.
fn send_batch(cx: &mut Cx<Watched>, client: HandleId, batch: &mut FrameBatch, dropped: &mut u64) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = cx.send_data(client, batch.bytes()) {
        let mut n = 0;
        let _ = for_each_frame(batch.bytes(), |_| n += 1);
        *dropped += n;
        log::debug!("dropped {n} received frames: {e}");
    }
    batch.clear();
}

impl Driver {
    /// Queues one frame from the client to the NIC (or to `tx_waiting`
    /// while the NIC's transmit buffers are all in use).
    fn transmit(&mut self, frame: &[u8]) {
        if !(FRAME_MIN..=FRAME_MAX).contains(&frame.len()) {
            log::warn!(
                "dropping a {}-byte frame (not an Ethernet frame)",
                frame.len()
            );
            return;
        }
        if self.tx_waiting.is_empty() && self.nic.transmit(frame).is_ok() {
            return;
        }
        if self.tx_waiting.len() >= TX_WAITING_MAX {
            self.tx_dropped += 1;
            log::debug!("dropped a frame to transmit ({} so far)", self.tx_dropped);
        } else {
            self.tx_waiting.push_back(frame.to_vec());
        }
    }

    /// Queues the frames that waited for transmit buffers, and reads the
    /// client again once none waits.
    fn transmit_waiting(&mut self, cx: &mut Cx<Watched>) {
        while let Some(frame) = self.tx_waiting.front() {
            if self.nic.transmit(frame) == Err(TxFull) {
                return;
            }
            self.tx_waiting.pop_front();
        }
        if self.tx_paused {
            self.tx_paused = false;
            if let Some(client) = self.client {
                if let Err(e) = cx.resume_receiving(client) {
                    log::error!("cannot read the client again: {e}");
                }
            }
        }
    }

    /// Moves received frames from the NIC to the client while its backlog
    /// is below [`THROTTLE_BYTES`].
    fn receive(&mut self, cx: &mut Cx<Watched>) {
        let Some(client) = self.client else {
            return;
        };
        let mut batch = core::mem::take(&mut self.rx_batch);
        while cx.backlog_bytes(client) < THROTTLE_BYTES {
            let taken = self.nic.receive(|frame| {
                if !batch.fits(frame) {
                    send_batch(cx, client, &mut batch, &mut self.dropped);
                }
                batch.push(frame)
            });
            match taken {
                Ok(None) => break,
                Ok(Some(true)) => {}
                Ok(Some(false)) => self.dropped += 1,
                Err(e) => {
                    log::error!("cannot take a received frame: {e:?}");
                    break;
                }
            }
        }
        send_batch(cx, client, &mut batch, &mut self.dropped);
        self.rx_batch = batch;
        let behind = cx.backlog_bytes(client) >= THROTTLE_BYTES;
        if behind && !self.throttled {
            self.throttles += 1;
            if self.throttles.is_power_of_two() {
                log::warn!(
                    "client is slow: holding received frames in the NIC ({} times so far)",
                    self.throttles
                );
            }
        }
        self.throttled = behind;
    }
}
