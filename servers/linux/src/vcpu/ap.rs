//! An application processor's thread: it makes its vCPU (on the host CPU
//! the kernel picks, where the thread then stays), waits for the guest's
//! INIT and start-up IPI, and runs the vCPU from real mode at the start-up
//! vector. Exits go to the VM under the shared lock; devices, consoles and
//! the disk stay the bootstrap thread's, which this thread kicks when the
//! guest touched a device here.

use alloc::format;
use alloc::sync::Arc;

use starina::abi::Readiness;
use starina::channel::Channel;
use starina::channel::MessageBuffer;
use starina::hypervisor::Injection;
use starina::hypervisor::Vcpu;
use starina::hypervisor::VcpuControl;
use starina::poll::Poll;
use starina::timer::now_ns;
use starina::timer::Timer;
use starina_vmm::boot::ap_start_state;
use starina_vmm::exit::VcpuState;
use starina_vmm::exit::VmExit;
use starina_vmm::msr::MsrEffect;
use starina_vmm::smp::RunState;
use starina_vmm::vm::ExitAction;
use starina_vmm::vm::ExitContext;

use super::smp::Smp;
use crate::shared::Shared;
use crate::shared::Status;

/// Starts the thread of vCPU `index`.
pub fn spawn(index: usize, smp: Arc<Smp>, shared: Arc<Shared>, wake: Channel, xcr0_mask: u64) {
    let result = starina::thread::spawn(move || {
        if let Err(why) = Ap::new(index, smp, shared, wake, xcr0_mask).and_then(|mut ap| ap.run()) {
            log::warn!("vCPU {index}: {why}; the guest runs without it");
        }
    });
    if let Err(e) = result {
        log::warn!("vCPU {index}: no thread ({e}); the guest runs without it");
    }
}

/// Why an AP's thread ended early.
type Why = alloc::string::String;

struct Ap {
    index: usize,
    smp: Arc<Smp>,
    shared: Arc<Shared>,
    vcpu: Arc<Vcpu>,
    wake: Channel,
    poll: Poll,
    timer: Timer,
    buf: MessageBuffer,
    state: VcpuState,
    pending_exception: Option<Injection>,
    exit_by: u64,
}

impl Ap {
    fn new(
        index: usize,
        smp: Arc<Smp>,
        shared: Arc<Shared>,
        wake: Channel,
        xcr0_mask: u64,
    ) -> Result<Ap, Why> {
        let ram = smp
            .core
            .lock()
            .ram
            .try_clone()
            .map_err(|e| format!("no handle to the guest RAM ({e})"))?;
        // Pins this thread to the vCPU's host CPU.
        let vcpu = Arc::new(ram.create_vcpu().map_err(|e| format!("no vCPU ({e})"))?);
        vcpu.control(VcpuControl::Xcr0Allowed(xcr0_mask))
            .map_err(|e| format!("XCR0 mask refused ({e})"))?;
        smp.set_vcpu(index, vcpu.clone());
        let poll = Poll::create().map_err(|e| format!("poll: {e}"))?;
        let timer = Timer::create().map_err(|e| format!("timer: {e}"))?;
        poll.add(wake.id(), Readiness::READABLE)
            .and_then(|()| poll.add(timer.id(), Readiness::READABLE))
            .map_err(|e| format!("poll: {e}"))?;
        Ok(Ap {
            index,
            smp,
            shared,
            vcpu,
            wake,
            poll,
            timer,
            buf: MessageBuffer::new(),
            state: VcpuState::default(),
            pending_exception: None,
            exit_by: 0,
        })
    }

    fn stopped(&self) -> bool {
        self.shared.inner.lock().status != Status::Running
    }

    /// Waits for a start, runs until INIT or the guest's end, again.
    fn run(&mut self) -> Result<(), Why> {
        loop {
            let Some(vector) = self.wait_for_start() else {
                return Ok(());
            };
            self.state = ap_start_state(vector);
            self.pending_exception = None;
            if !self.run_started()? {
                return Ok(());
            }
        }
    }

    /// The start-up vector once the guest started this vCPU; `None` when
    /// the guest stopped first.
    fn wait_for_start(&mut self) -> Option<u8> {
        loop {
            self.smp.clear_wake(self.index, &self.wake, &mut self.buf);
            if self.stopped() {
                return None;
            }
            let start = self.smp.core.lock().vm.cpus_mut()?.take_start(self.index);
            if let Some(vector) = start {
                return Some(vector);
            }
            let _ = self.poll.wait();
        }
    }

    /// Runs the started vCPU; `Ok(true)` when INIT sent it back to wait
    /// for a start, `Ok(false)` when the guest stopped.
    fn run_started(&mut self) -> Result<bool, Why> {
        loop {
            if self.stopped() {
                return Ok(false);
            }
            let inject = self.next_injection();
            self.tell_exit_by()?;
            let exit = self
                .vcpu
                .run(&mut self.state, inject)
                .map_err(|e| format!("run failed: {e}"))?;
            let action = {
                let mut core = self.smp.core.lock();
                let core = &mut *core;
                let ctx = ExitContext {
                    now_ns: now_ns(),
                    host_tsc: now_ns(),
                    vcpu: self.index,
                };
                core.vm
                    .handle_exit(&exit, &mut self.state, &mut core.ram, ctx)
            };
            self.smp.kick_reached(self.index);
            if matches!(exit, VmExit::Io { .. } | VmExit::NestedPageFault { .. }) {
                // A device access: the bootstrap thread moves the device's
                // data (consoles, network, disk).
                self.smp.kick(0);
            }
            if self.restarted() {
                return Ok(true);
            }
            match action {
                Ok(ExitAction::Resume) => {}
                Ok(ExitAction::Halt) => self.sleep(),
                Ok(ExitAction::InjectException { vector, error_code }) => {
                    self.pending_exception = Some(Injection::Exception { vector, error_code });
                }
                Ok(ExitAction::ApplyMsr(effect)) => self.apply_msr(effect)?,
                Ok(ExitAction::Reset) => return Err(self.stop("the guest rebooted")),
                Ok(ExitAction::Shutdown) => return Err(self.stop("the guest triple-faulted")),
                Err(e) => return Err(self.stop(&format!("VMM: {e} (after {exit:?})"))),
            }
        }
    }

    /// INIT came: the vCPU waits for a start again.
    fn restarted(&mut self) -> bool {
        let mut core = self.smp.core.lock();
        core.vm
            .cpus_mut()
            .is_some_and(|c| c.state(self.index) == RunState::WaitForSipi)
    }

    /// Stops the whole guest (as the bootstrap thread would) and says why.
    fn stop(&self, why: &str) -> Why {
        let why = format!("vCPU {}: {why}", self.index);
        self.shared.stop(Status::Crashed(why.clone()));
        self.smp.kick(0);
        why
    }

    fn apply_msr(&mut self, effect: MsrEffect) -> Result<(), Why> {
        let r = match effect {
            MsrEffect::TscOffset(offset) => self.vcpu.control(VcpuControl::TscOffset(offset)),
            MsrEffect::Pat(pat) => self.vcpu.control(VcpuControl::Pat(pat)),
            _ => Ok(()),
        };
        r.map_err(|e| self.stop(&format!("cannot apply {effect:?}: {e}")))
    }

    /// A pending exception first, then an NMI another vCPU sent, else this
    /// vCPU's local APIC.
    fn next_injection(&mut self) -> Injection {
        if let Some(e) = self.pending_exception.take() {
            return e;
        }
        let mut core = self.smp.core.lock();
        core.vm.update_pit_irq(now_ns());
        if core.vm.take_nmi(self.index) {
            return Injection::Nmi;
        }
        match core.vm.pending_interrupt_on(self.index) {
            Some(_) if self.state.interrupts_enabled() => {
                match core.vm.acknowledge_interrupt_on(self.index) {
                    Some(vector) => Injection::Interrupt(vector),
                    None => Injection::None,
                }
            }
            Some(_) => Injection::Window,
            None => Injection::None,
        }
    }

    /// Control back by this vCPU's next timer.
    fn tell_exit_by(&mut self) -> Result<(), Why> {
        let by = (self.smp.core.lock().vm)
            .next_deadline_ns_on(self.index)
            .unwrap_or(u64::MAX);
        if by != self.exit_by {
            self.vcpu
                .control(VcpuControl::ExitBy(by))
                .map_err(|e| format!("vCPU control failed: {e}"))?;
            self.exit_by = by;
        }
        Ok(())
    }

    /// The vCPU halted: sleep until its timer, a kick, or (halted with
    /// interrupts off: offline) INIT.
    fn sleep(&mut self) {
        self.smp.clear_wake(self.index, &self.wake, &mut self.buf);
        let now = now_ns();
        let (deadline, pending) = {
            let core = self.smp.core.lock();
            let vm = &core.vm;
            (
                vm.next_deadline_ns_on(self.index),
                vm.pending_interrupt_on(self.index),
            )
        };
        let interrupts = self.state.interrupts_enabled();
        if interrupts && pending.is_some() {
            return;
        }
        match deadline {
            Some(t) if interrupts && t <= now => return,
            Some(t) if interrupts && self.timer.set(t - now).is_err() => return,
            _ => {}
        }
        let _ = self.poll.wait();
        let mut core = self.smp.core.lock();
        core.vm.update_pit_irq(now_ns());
    }
}
