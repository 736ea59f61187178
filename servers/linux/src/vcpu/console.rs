//! Bytes between the virtio-console (the guest agent's `/dev/hvc0`) and
//! the queues shared with the main thread, with flow control both ways; and
//! the guest's serial console to the log.

use core::sync::atomic::Ordering;

use starina::timer::now_ns;
use starina_vmm::vm::SlotError;

use super::Guest;
use crate::shared::Shared;
use crate::shared::INPUT_HIGH_WATER;
use crate::shared::OUTPUT_HIGH_WATER;

impl Guest {
    /// Moves bytes between the console and the shared queues, and logs the
    /// guest's serial console.
    pub(super) fn exchange(&mut self) -> Result<(), SlotError> {
        self.log_console();
        let kicked = self.shared.vcpu_kick.swap(false, Ordering::AcqRel);
        if kicked {
            // Drain the wake-ups (their content is the flag).
            while self.wake.try_recv(&mut self.buf).is_ok() {}
            if self.shared.exit_report.swap(false, Ordering::AcqRel) {
                self.report_since_last();
            }
        }
        let mut poke = false;
        if kicked || self.input_left {
            let mut inner = self.shared.inner.lock();
            if !inner.to_guest.is_empty() {
                let n = (self.smp.core.lock().vm)
                    .virtio_device_mut(self.console)?
                    .push_rx(&inner.to_guest);
                inner.to_guest.drain(..n);
                poke |= n > 0;
            }
            self.input_left = !inner.to_guest.is_empty();
            let room = inner.to_guest.len() < INPUT_HIGH_WATER / 2;
            drop(inner);
            if room && self.shared.input_paused.load(Ordering::Acquire) {
                Shared::kick(&self.shared.main_kick, &self.wake);
            }
        }
        // While the main thread is behind, guest output stays in the
        // console (and then in the guest): backpressure, not loss.
        if !self.shared.output_paused.load(Ordering::Acquire) {
            let tx = self
                .smp
                .core
                .lock()
                .vm
                .virtio_device_mut(self.console)?
                .take_tx();
            if !tx.is_empty() {
                let mut inner = self.shared.inner.lock();
                inner.from_guest.extend_from_slice(&tx);
                let waiting =
                    inner.from_guest.len() + self.shared.client_backlog.load(Ordering::Acquire);
                drop(inner);
                if waiting > OUTPUT_HIGH_WATER {
                    self.shared.output_paused.store(true, Ordering::Release);
                }
                Shared::kick(&self.shared.main_kick, &self.wake);
                // Transmit buffers held back while the console was full
                // move on now.
                poke = true;
            } else if kicked {
                // Output was resumed: let held-back buffers through.
                poke = true;
            }
        }
        if poke {
            let mut core = self.smp.core.lock();
            let core = &mut *core;
            core.vm.poll_virtio(self.console, &mut core.ram, now_ns())?;
        }
        self.exchange_net(kicked)?;
        self.exchange_disk()
    }

    /// Logs the VM exits and FUSE requests since the last report.
    fn report_since_last(&mut self) {
        let exits = self.stats.since(&self.reported);
        let core = self.smp.core.lock();
        if let Some(net) = self.net.and_then(|slot| core.vm.virtio_device(slot).ok()) {
            let st = net.stats();
            log::info!(
                "net since boot: to the guest {} frames ({} bytes), from it {} frames ({} bytes)",
                st.rx_frames,
                st.rx_bytes,
                st.tx_frames,
                st.tx_bytes
            );
        }
        drop(core);
        log::info!("vm exits since the last report: {}", exits.summary());
        self.reported = self.stats.clone();
        let fuse = self.fuse.lock().clone();
        let requests = fuse.since(&self.fuse_reported);
        log::info!("fuse since the last report: {}", requests.summary());
        self.fuse_reported = fuse;
    }

    pub(super) fn log_console(&mut self) {
        let mut core = self.smp.core.lock();
        for line in core.vm.serial_mut().take_lines() {
            log::info!("[guest] {line}");
            if line.contains(starina::abi::markers::AGENT_READY) {
                log::info!("vm exits to agent ready: {}", self.stats.summary());
            }
        }
    }
}
