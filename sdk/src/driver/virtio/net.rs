//! A virtio-net NIC for drivers that must not wait for the device: frames
//! are queued for transmission and their buffers taken back later, when
//! the device reports them done ([`Nic::reap_tx`]), so a burst of frames
//! goes to the device as one batch (one notification, or none while the
//! device is still working through the queue) instead of one round trip to
//! the device per frame. Received frames are read in place from their
//! receive buffers, which go straight back to the device.
//!
//! The device is driven without `VIRTIO_F_RING_EVENT_IDX`: with it,
//! `virtio-drivers` notifies the device for every buffer added past the
//! index the device last asked about (its check is "at or past", not "just
//! crossed"), so each frame of a burst cost a trap to the device; without
//! it, the device's "no notify" flag holds while it still works through the
//! queue, and a burst costs one notification.
//!
//! `virtio-drivers`' raw device takes buffers the device still uses by
//! `unsafe` contract; this module keeps that contract (each buffer stays
//! here, untouched, from the moment it is queued until the device hands
//! its token back) so that drivers stay free of `unsafe`.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::DeviceStatus;
use virtio_drivers::transport::DeviceType;
use virtio_drivers::transport::InterruptStatus;
use virtio_drivers::transport::SomeTransport;
use virtio_drivers::transport::Transport;
use virtio_drivers::Error as VirtioError;
use virtio_drivers::PhysAddr;

use super::StarinaHal;

/// Bytes of each buffer: the virtio-net header (12 bytes) and a full
/// Ethernet frame, rounded up.
pub const BUFFER_LEN: usize = 2048;

/// A frame could not be queued: every transmit buffer is with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFull;

pub struct Nic<const N: usize> {
    raw: VirtIONetRaw<StarinaHal, WithoutEventIdx, N>,
    /// Receive buffers with the device, by token.
    rx: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers with the device, by token, and how many bytes of
    /// each were queued (the device is handed exactly that slice).
    tx: Vec<Option<(Box<[u8]>, usize)>>,
    /// Transmit buffers back from the device, for reuse.
    spare: Vec<Box<[u8]>>,
    in_flight: usize,
    /// Bytes of the virtio-net header in front of each frame.
    header_len: usize,
}

impl<const N: usize> Nic<N> {
    /// Initializes the device and gives it a receive buffer per descriptor.
    pub fn new(transport: SomeTransport<'static>) -> Result<Nic<N>, VirtioError> {
        let raw = VirtIONetRaw::new(WithoutEventIdx(transport))?;
        let header_len = raw.fill_buffer_header(&mut [0u8; BUFFER_LEN])?;
        let mut nic = Nic {
            raw,
            rx: (0..N).map(|_| None).collect(),
            tx: (0..N).map(|_| None).collect(),
            spare: Vec::new(),
            in_flight: 0,
            header_len,
        };
        for _ in 0..N {
            nic.give_rx(vec![0u8; BUFFER_LEN].into_boxed_slice())?;
        }
        Ok(nic)
    }

    pub fn mac_address(&self) -> [u8; 6] {
        self.raw.mac_address()
    }

    /// Reads (and so lowers) the device's interrupt status.
    pub fn ack_interrupt(&mut self) -> InterruptStatus {
        self.raw.ack_interrupt()
    }

    /// Hands `buf` to the device to receive into.
    fn give_rx(&mut self, mut buf: Box<[u8]>) -> Result<(), VirtioError> {
        // SAFETY: `buf` is kept in `self.rx` under its token, untouched
        // (a boxed slice does not move when the box does) until the device
        // hands the token back to `receive`, which completes the request
        // with this very buffer before reading it.
        let token = unsafe { self.raw.receive_begin(&mut buf)? };
        match self.rx.get_mut(usize::from(token)) {
            Some(slot @ None) => *slot = Some(buf),
            // Tokens are descriptor indices (< N), each in use once; the
            // device now holds `buf`, which must not be freed: stop here.
            _ => panic!("virtio-net: receive token {token} reused"),
        }
        Ok(())
    }

    /// Takes the next received frame, if any: `f` sees it (without the
    /// virtio-net header), then its buffer goes back to the device.
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>, VirtioError> {
        let Some(token) = self.raw.poll_receive() else {
            return Ok(None);
        };
        let mut buf = self
            .rx
            .get_mut(usize::from(token))
            .and_then(Option::take)
            .ok_or(VirtioError::WrongToken)?;
        // SAFETY: `buf` is the buffer queued under `token` (see `give_rx`).
        let done = unsafe { self.raw.receive_complete(token, &mut buf) };
        let result = match done {
            Ok((header, len)) => buf.get(header..header + len).map(f),
            Err(e) => {
                self.give_rx(buf)?;
                return Err(e);
            }
        };
        self.give_rx(buf)?;
        Ok(Some(result.ok_or(VirtioError::IoError)?))
    }

    /// Queues `frame` for transmission without waiting for it to go out.
    pub fn transmit(&mut self, frame: &[u8]) -> Result<(), TxFull> {
        let header = self.header_len;
        let len = header + frame.len();
        if len > BUFFER_LEN {
            // Not an Ethernet frame: the caller checks lengths first.
            return Err(TxFull);
        }
        self.reap_tx();
        let mut buf = self
            .spare
            .pop()
            .unwrap_or_else(|| vec![0u8; BUFFER_LEN].into_boxed_slice());
        if self.raw.fill_buffer_header(&mut buf).is_err() {
            return Err(TxFull);
        }
        buf[header..len].copy_from_slice(frame);
        // SAFETY: `buf` is kept in `self.tx` under its token, untouched,
        // until `reap_tx` sees the device hand that token back and
        // completes the request with the same slice (`buf[..len]`).
        match unsafe { self.raw.transmit_begin(&buf[..len]) } {
            Ok(token) => {
                let slot = self.tx.get_mut(usize::from(token));
                match slot {
                    Some(slot @ None) => *slot = Some((buf, len)),
                    // The device's tokens are its descriptor indices (< N),
                    // each in use once: anything else is a broken device.
                    _ => panic!("virtio-net: transmit token {token} reused"),
                }
                self.in_flight += 1;
                Ok(())
            }
            Err(_) => {
                self.spare.push(buf);
                Err(TxFull)
            }
        }
    }

    /// Takes back the buffers of frames the device has sent; returns how
    /// many.
    pub fn reap_tx(&mut self) -> usize {
        let mut reaped = 0;
        while let Some(token) = self.raw.poll_transmit() {
            let Some((buf, len)) = self.tx.get_mut(usize::from(token)).and_then(Option::take)
            else {
                panic!("virtio-net: the device completed unknown transmit token {token}");
            };
            // SAFETY: `buf[..len]` is the slice queued under `token` in
            // `transmit`.
            if let Err(e) = unsafe { self.raw.transmit_complete(token, &buf[..len]) } {
                log::warn!("virtio-net: completing a transmit failed: {e:?}");
            }
            self.spare.push(buf);
            self.in_flight -= 1;
            reaped += 1;
        }
        reaped
    }

    /// Frames queued and not yet reported sent.
    pub fn tx_in_flight(&self) -> usize {
        self.in_flight
    }
}

/// `VIRTIO_F_RING_EVENT_IDX` (virtio 1.2, 6).
const RING_EVENT_IDX: u64 = 1 << 29;

/// A transport whose device does not offer `VIRTIO_F_RING_EVENT_IDX` (see
/// the module's documentation); everything else passes through.
pub struct WithoutEventIdx(SomeTransport<'static>);

impl Transport for WithoutEventIdx {
    fn device_type(&self) -> DeviceType {
        self.0.device_type()
    }

    fn read_device_features(&mut self) -> u64 {
        self.0.read_device_features() & !RING_EVENT_IDX
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        self.0.write_driver_features(driver_features)
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        self.0.max_queue_size(queue)
    }

    fn notify(&mut self, queue: u16) {
        self.0.notify(queue)
    }

    fn get_status(&self) -> DeviceStatus {
        self.0.get_status()
    }

    fn set_status(&mut self, status: DeviceStatus) {
        self.0.set_status(status)
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        self.0.set_guest_page_size(guest_page_size)
    }

    fn requires_legacy_layout(&self) -> bool {
        self.0.requires_legacy_layout()
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        self.0
            .queue_set(queue, size, descriptors, driver_area, device_area)
    }

    fn queue_unset(&mut self, queue: u16) {
        self.0.queue_unset(queue)
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        self.0.queue_used(queue)
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        self.0.ack_interrupt()
    }

    fn read_config_generation(&self) -> u32 {
        self.0.read_config_generation()
    }

    fn read_config_space<T: zerocopy::FromBytes + zerocopy::IntoBytes>(
        &self,
        offset: usize,
    ) -> virtio_drivers::Result<T> {
        self.0.read_config_space(offset)
    }

    fn write_config_space<T: zerocopy::IntoBytes + zerocopy::Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> virtio_drivers::Result<()> {
        self.0.write_config_space(offset, value)
    }
}
