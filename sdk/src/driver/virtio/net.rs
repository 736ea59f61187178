//! A virtio-net NIC for drivers that must not wait for the device: frames
//! are queued for transmission and their buffers taken back later, when
//! the device reports them done ([`Nic::reap_tx`]), so a burst of frames
//! goes to the device as one batch (one notification, or none while the
//! device is still working through the queue) instead of one round trip to
//! the device per frame. Received frames are read in place from their
//! receive buffers, which go straight back to the device.
//!
//! `virtio-drivers`' raw device takes buffers the device still uses by
//! `unsafe` contract; this module keeps that contract (each buffer stays
//! here, untouched, from the moment it is queued until the device hands
//! its token back) so that drivers stay free of `unsafe`.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;

use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::InterruptStatus;
use virtio_drivers::transport::SomeTransport;
use virtio_drivers::Error as VirtioError;

use super::StarinaHal;

/// Bytes of each buffer: the virtio-net header (12 bytes) and a full
/// Ethernet frame, rounded up.
pub const BUFFER_LEN: usize = 2048;

/// A frame could not be queued: every transmit buffer is with the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxFull;

pub struct Nic<const N: usize> {
    raw: VirtIONetRaw<StarinaHal, SomeTransport<'static>, N>,
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
        let raw = VirtIONetRaw::new(transport)?;
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
        let slot = self
            .rx
            .get_mut(usize::from(token))
            .ok_or(VirtioError::WrongToken)?;
        if slot.is_some() {
            return Err(VirtioError::WrongToken);
        }
        *slot = Some(buf);
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
