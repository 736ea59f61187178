//! The run loop: enter the guest, handle the exit through the VMM, act on
//! what it asks for; inject interrupts, sleep while the guest halts, and say
//! why the guest stopped.

use alloc::format;
use alloc::string::String;
use core::sync::atomic::Ordering;

use starina::hypervisor::Injection;
use starina::hypervisor::VcpuControl;
use starina::hypervisor::DEFAULT_RUN_NS;
use starina::timer::now_ns;
use starina::Error;
use starina_vmm::exit::Access;
use starina_vmm::exit::VmExit;
use starina_vmm::msr::MsrEffect;
use starina_vmm::vm::ExitAction;
use starina_vmm::vm::ExitContext;

use super::exit_stats::ExitKind;
use super::Guest;
use crate::shared::Status;

impl Guest {
    /// Runs the guest until it stops; returns why.
    pub(super) fn run(&mut self) -> Status {
        let status = self.run_until_stopped();
        // The other vCPU threads see it and end.
        self.shared.stop(status.clone());
        self.smp.kick_all(0);
        log::info!("vm exits in all: {}", self.stats.summary());
        if let Some(disk) = &self.disk {
            log::info!(
                "root disk in all: {}",
                disk.summary(&self.smp.core.lock().vm)
            );
        }
        status
    }

    fn run_until_stopped(&mut self) -> Status {
        if let Err(e) = self.exchange() {
            return self.crashed(&format!("VMM: the console: {e}"));
        }
        loop {
            let inject = self.next_injection();
            if matches!(inject, Injection::Interrupt(_)) {
                self.stats.injected();
            }
            if let Err(e) = self.tell_exit_by() {
                return Status::Crashed(format!("vCPU control failed: {e}"));
            }
            let exit = match self.vcpu.run(&mut self.state, inject) {
                Ok(exit) => exit,
                Err(e) => return Status::Crashed(format!("vCPU run failed: {e}")),
            };
            self.exits += 1;
            self.last_exit = Some(exit);
            let kind = ExitKind::of(&exit);
            self.stats.exit(kind);
            if let Err(status) = self.handle_exit(exit) {
                return status;
            }
            self.smp.kick_reached(0);
            // A PIT access touches neither console: unless the main thread
            // kicked or input waits, there is nothing to exchange (Linux's
            // TSC calibration makes some 16,000 such exits in a row).
            let quiet = kind == ExitKind::Pit
                && !self.input_left
                && !self.shared.vcpu_kick.load(Ordering::Acquire)
                && !self.disk.as_ref().is_some_and(|d| d.waiting());
            if !quiet {
                if let Err(e) = self.exchange() {
                    return self.crashed(&format!("VMM: the console: {e}"));
                }
            }
        }
    }

    /// Hands `exit` to the VMM and does what it asks; `Err` when the guest
    /// stopped.
    fn handle_exit(&mut self, exit: VmExit) -> Result<(), Status> {
        let now = now_ns();
        let ctx = ExitContext {
            now_ns: now,
            // No TSC reading for components; only guest reads of the
            // TSC MSR (rare: Linux uses RDTSC) see this.
            host_tsc: now,
            vcpu: 0,
        };
        let mut guard = self.smp.core.lock();
        let core = &mut *guard;
        if matches!(
            exit,
            VmExit::Msr {
                access: Access::Write,
                ..
            }
        ) {
            // The kvm-clock MSRs write the guest's clock: with the latest
            // (the wall clock may have been set since the last halt).
            core.vm
                .set_host_clock(starina::hypervisor::host_clock(), &mut core.ram);
        }
        let action = core
            .vm
            .handle_exit(&exit, &mut self.state, &mut core.ram, ctx);
        drop(guard);
        match action {
            Ok(ExitAction::Resume) => {}
            Ok(ExitAction::Halt) => {
                if !self.state.interrupts_enabled() {
                    return Err(self.crashed("the guest halted with interrupts off (powered off)"));
                }
                self.sleep();
                // The kernel may have re-scaled its clock meanwhile.
                let mut core = self.smp.core.lock();
                let core = &mut *core;
                core.vm
                    .set_host_clock(starina::hypervisor::host_clock(), &mut core.ram);
                core.vm.update_irqs(now_ns());
            }
            Ok(ExitAction::InjectException { vector, error_code }) => {
                self.pending_exception = Some(Injection::Exception { vector, error_code });
            }
            Ok(ExitAction::ApplyMsr(effect)) => {
                if let Err(e) = self.apply_msr(effect) {
                    return Err(Status::Crashed(format!("cannot apply {effect:?}: {e}")));
                }
            }
            Ok(ExitAction::Reset) => {
                return Err(self.crashed("the guest rebooted (a kernel panic, or reboot)"))
            }
            Ok(ExitAction::Shutdown) => return Err(self.crashed("the guest triple-faulted")),
            Err(e) => return Err(self.crashed(&format!("VMM: {e} (after {exit:?})"))),
        }
        Ok(())
    }

    fn crashed(&mut self, why: &str) -> Status {
        self.log_console();
        if !matches!(self.last_exit, Some(VmExit::Io { .. })) {
            self.log_state();
        }
        let core = self.smp.core.lock();
        let partial = core.vm.serial().partial_line();
        if !partial.is_empty() {
            log::info!("[guest] {}", String::from_utf8_lossy(partial));
        }
        Status::Crashed(String::from(why))
    }

    /// The vCPU's registers, for the log when the guest died unexpectedly.
    fn log_state(&self) {
        let st = &self.state;
        log::info!(
            "guest state after {} exits (last {:?}): rip={:#x} rsp={:#x} rflags={:#x} cr0={:#x} cr2={:#x} cr3={:#x} cr4={:#x} efer={:#x} cs={:#x}",
            self.exits,
            self.last_exit,
            st.rip,
            st.gprs[4],
            st.rflags,
            st.cr0,
            st.cr2,
            st.cr3,
            st.cr4,
            st.efer,
            st.cs.selector
        );
    }

    fn apply_msr(&mut self, effect: MsrEffect) -> Result<(), Error> {
        match effect {
            MsrEffect::TscOffset(offset) => self.vcpu.control(VcpuControl::TscOffset(offset)),
            MsrEffect::Pat(pat) => self.vcpu.control(VcpuControl::Pat(pat)),
            // Already in the VcpuState the backend loads on entry.
            MsrEffect::Efer(_) | MsrEffect::None => Ok(()),
            // The VMM wrote the guest's clock structures itself.
            MsrEffect::KvmSystemTime(_) | MsrEffect::KvmWallClock(_) => Ok(()),
        }
    }

    /// What to deliver on the next entry: a pending exception first, then
    /// an NMI another vCPU sent (the kernel holds it until the guest can
    /// take it), else the PIC's interrupt.
    ///
    /// The kernel delivers an `Interrupt` exactly once, as soon as the guest
    /// can take it, so the PIC is acknowledged (INTA: pending -> in service)
    /// when the interrupt is handed over. While the guest has interrupts
    /// off, nothing is acknowledged: `Window` asks for an exit as soon as it
    /// turns them on, and the next entry hands the interrupt over.
    fn next_injection(&mut self) -> Injection {
        if let Some(e) = self.pending_exception.take() {
            return e;
        }
        let mut core = self.smp.core.lock();
        if core.vm.take_nmi(0) {
            return Injection::Nmi;
        }
        match core.vm.pending_interrupt() {
            Some(_) if self.state.interrupts_enabled() => match core.vm.acknowledge_interrupt() {
                Some(vector) => Injection::Interrupt(vector),
                None => Injection::None,
            },
            Some(_) => Injection::Window,
            None => Injection::None,
        }
    }

    /// Tells the kernel when this thread needs control back if the guest
    /// does not exit before: when the emulated timer fires next, or soon
    /// (the kernel's default) while the console, the NIC or the disk hold
    /// work that waits for room and is retried on an exit. Host events
    /// (the main thread's kick, a disk answer) interrupt the run anyway.
    fn tell_exit_by(&mut self) -> Result<(), Error> {
        let retry =
            self.input_left || self.net_left || self.disk.as_ref().is_some_and(|d| d.waiting());
        let timer = self
            .smp
            .core
            .lock()
            .vm
            .next_deadline_ns()
            .unwrap_or(u64::MAX);
        let by = match retry {
            true => timer.min(now_ns().saturating_add(DEFAULT_RUN_NS)),
            false => timer,
        };
        if by != self.exit_by {
            self.vcpu.control(VcpuControl::ExitBy(by))?;
            self.exit_by = by;
        }
        Ok(())
    }

    /// Sleeps while the guest halts: until its next timer interrupt is due
    /// or the main thread kicks.
    fn sleep(&mut self) {
        self.smp.clear_wake(0, &self.smp_wake, &mut self.buf);
        if self.input_left || self.shared.vcpu_kick.load(Ordering::Acquire) {
            return;
        }
        let now = now_ns();
        let (deadline, pending) = {
            let core = self.smp.core.lock();
            (core.vm.next_deadline_ns(), core.vm.pending_interrupt())
        };
        if pending.is_some() {
            // An interrupt came from another vCPU after the halt.
            return;
        }
        match deadline {
            Some(t) if t <= now => return,
            Some(t) if self.timer.set(t - now).is_err() => return,
            _ => {}
        }
        let _ = self.poll.wait();
        self.stats.halted(now_ns().saturating_sub(now));
    }
}
