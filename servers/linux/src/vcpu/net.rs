//! Frames between the guest's virtio-net and the queues shared with the
//! main thread's NAT, bounded both ways (see `shared::NET_QUEUE_MAX`).

use core::sync::atomic::Ordering;

use starina::timer::now_ns;
use starina_vmm::vm::SlotError;

use super::Guest;
use crate::shared::Shared;
use crate::shared::NET_QUEUE_MAX;

/// Frames the device holds for the guest's receive buffers; beyond, they
/// wait in the shared queue.
const DEVICE_RX_MAX: usize = 64;

impl Guest {
    /// Moves frames between the virtio-net device and the shared queues:
    /// only when there is something to move (the guest sent frames, the
    /// main thread `kicked`, or frames for the guest still wait), since it
    /// runs after every exit.
    pub(super) fn exchange_net(&mut self, kicked: bool) -> Result<(), SlotError> {
        let Some(slot) = self.net else {
            return Ok(());
        };
        let mut core = self.smp.core.lock();
        let core = &mut *core;
        let device = core.vm.virtio_device_mut(slot)?;
        if !kicked && !self.net_left && device.tx_backlog() == 0 {
            return Ok(());
        }
        // Negotiated before any frame moves: told with the first ones.
        (self.shared.net_checksum_offload).store(device.checksum_offload(), Ordering::Relaxed);
        let mut inner = self.shared.inner.lock();
        let mut poke = false;
        while device.rx_backlog() < DEVICE_RX_MAX {
            let Some(frame) = inner.net_to_guest.pop_front() else {
                break;
            };
            // Too long for the link: dropped and counted by the device.
            device.push_rx(frame);
            poke = true;
        }
        self.net_left = !inner.net_to_guest.is_empty();
        let room_for_nat = inner.net_to_guest.len() < NET_QUEUE_MAX / 2;
        let mut kick_main = false;
        if inner.net_from_guest.len() < NET_QUEUE_MAX {
            let frames = device.take_tx();
            if !frames.is_empty() {
                inner.net_from_guest.extend(frames);
                kick_main = true;
                // Transmit buffers held back by a full device move on.
                poke = true;
            }
        }
        drop(inner);
        if room_for_nat && self.shared.net_paused.swap(false, Ordering::AcqRel) {
            kick_main = true;
        }
        if kick_main {
            Shared::kick(&self.shared.main_kick, &self.wake);
        }
        if poke {
            core.vm.poll_virtio(slot, &mut core.ram, now_ns())?;
        }
        Ok(())
    }
}
