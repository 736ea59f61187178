//! The APIC platform of a VM (option B of the platform notes): x2APIC
//! local APICs through MSR exits, the I/O APIC, and the MP table that
//! tells Linux about them and about every vCPU.
//!
//! Once [`Vm::enable_apic`] ran, device lines go to the I/O APIC (the
//! 8259 pair still sees them, but Linux masks it), interrupts are taken
//! from each vCPU's local APIC, and every interrupt message that reaches a
//! vCPU is remembered in [`Vm::take_kicks`] so the backend can get that
//! vCPU out of guest mode (or out of its sleep) at once.

use super::Vm;
use crate::ioapic::IoApic;
use crate::ioapic::IOAPIC_BASE;
use crate::ioapic::IOAPIC_SIZE;
use crate::ipi::Ipi;
use crate::lapic::ApicError;
use crate::lapic::ApicWrite;
use crate::lapic::MSR_APIC_BASE;
use crate::lapic::MSR_TSC_DEADLINE;
use crate::lapic::X2APIC_FIRST;
use crate::lapic::X2APIC_LAST;
use crate::memory::GuestMemory;
use crate::mptable;
use crate::mptable::MpTableError;
use crate::smp::Cpus;
use crate::smp::Kicks;

/// The APIC devices and who must look at them.
pub(super) struct ApicPlatform {
    pub(super) cpus: Cpus,
    pub(super) ioapic: IoApic,
    /// vCPUs that received something since the backend last asked.
    pub(super) kicks: Kicks,
}

/// Whether `index` is an MSR the local APIC answers.
pub(super) fn is_apic_msr(index: u32) -> bool {
    index == MSR_APIC_BASE
        || index == MSR_TSC_DEADLINE
        || (X2APIC_FIRST..=X2APIC_LAST).contains(&index)
}

/// Whether `gpa` is in the I/O APIC's window.
pub(super) fn is_ioapic(gpa: u64) -> bool {
    (IOAPIC_BASE..IOAPIC_BASE + IOAPIC_SIZE).contains(&gpa)
}

impl Vm {
    /// Gives the guest `vcpus` CPUs with x2APIC local APICs and an I/O
    /// APIC, described by an MP table in guest memory. Call before the
    /// first run (after [`Vm::enable_kvm_clock`], whose clock converts
    /// TSC deadlines).
    pub fn enable_apic(
        &mut self,
        vcpus: usize,
        mem: &mut dyn GuestMemory,
    ) -> Result<(), MpTableError> {
        let cpus = Cpus::new(vcpus);
        mptable::write(mem, cpus.count())?;
        self.cpuid.lapic = true;
        self.cpuid.x2apic = true;
        self.apic = Some(ApicPlatform {
            ioapic: IoApic::new(cpus.count() as u8),
            cpus,
            kicks: Kicks::default(),
        });
        Ok(())
    }

    /// How many vCPUs the guest has.
    pub fn vcpu_count(&self) -> usize {
        self.apic.as_ref().map_or(1, |a| a.cpus.count())
    }

    /// The vCPUs, when the APIC platform is on.
    pub fn cpus_mut(&mut self) -> Option<&mut Cpus> {
        self.apic.as_mut().map(|a| &mut a.cpus)
    }

    /// The vCPUs that received interrupts or start-up messages since the
    /// last call: wake or kick them.
    pub fn take_kicks(&mut self) -> Kicks {
        self.apic
            .as_mut()
            .map_or(Kicks::default(), |a| core::mem::take(&mut a.kicks))
    }

    /// RDMSR of a local APIC MSR on vCPU `cpu`.
    pub(super) fn apic_rdmsr(&self, cpu: usize, index: u32, now_ns: u64) -> Result<u64, ApicError> {
        let apic = self.apic.as_ref().ok_or(ApicError::Reserved(index))?;
        let lapic = apic.cpus.apic(cpu);
        match index {
            MSR_APIC_BASE => Ok(lapic.base()),
            MSR_TSC_DEADLINE => Ok(lapic.tsc_deadline()),
            _ => lapic.read(index, now_ns),
        }
    }

    /// WRMSR of a local APIC MSR on vCPU `cpu`.
    pub(super) fn apic_wrmsr(
        &mut self,
        cpu: usize,
        index: u32,
        value: u64,
        now_ns: u64,
    ) -> Result<(), ApicError> {
        let at_ns = match index {
            MSR_TSC_DEADLINE => self.tsc_deadline_ns(value, now_ns),
            _ => None,
        };
        let apic = self.apic.as_mut().ok_or(ApicError::Reserved(index))?;
        let lapic = apic.cpus.apic_mut(cpu);
        let done = match index {
            MSR_APIC_BASE => lapic.set_base(value).map(|()| ApicWrite::Done)?,
            MSR_TSC_DEADLINE => {
                lapic.set_tsc_deadline(value, at_ns);
                ApicWrite::Done
            }
            _ => lapic.write(index, value, now_ns)?,
        };
        match done {
            ApicWrite::Done => {}
            ApicWrite::Send(ipi) => self.route(Some(cpu), ipi),
            ApicWrite::LevelEoi(vector) => {
                for ipi in apic.ioapic.eoi(vector) {
                    self.route(None, ipi);
                }
            }
        }
        Ok(())
    }

    /// When guest TSC `tsc` comes, in host ns: through the guest's
    /// kvm-clock (the same TSC scale); a deadline before the clock's
    /// reference is due now.
    fn tsc_deadline_ns(&self, tsc: u64, now_ns: u64) -> Option<u64> {
        let info = self.kvmclock.time_info()?;
        Some(match tsc.checked_sub(info.tsc_timestamp) {
            Some(_) => info.ns_at(tsc),
            None => now_ns,
        })
    }

    /// Delivers `ipi` and remembers whom it reached.
    fn route(&mut self, from: Option<usize>, ipi: Ipi) {
        if let Some(apic) = self.apic.as_mut() {
            let reached = apic.cpus.deliver(from, ipi);
            apic.kicks.0 |= reached.0;
        }
    }

    /// Drives I/O APIC pin `pin` to `level`.
    pub(super) fn ioapic_line(&mut self, pin: u8, level: bool) {
        let Some(apic) = self.apic.as_mut() else {
            return;
        };
        if let Some(ipi) = apic.ioapic.set_irq(usize::from(pin), level) {
            self.route(None, ipi);
        }
    }

    /// An MMIO read in the I/O APIC's window.
    pub(super) fn ioapic_read(&mut self, gpa: u64, data: &mut [u8]) {
        let value = match (&self.apic, data.len()) {
            (Some(apic), 4) => apic.ioapic.mmio_read(gpa - IOAPIC_BASE),
            _ => 0,
        };
        let bytes = value.to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&bytes[..n]);
        data[n..].fill(0);
    }

    /// An MMIO write in the I/O APIC's window (32-bit only; others are
    /// dropped).
    pub(super) fn ioapic_write(&mut self, gpa: u64, data: &[u8]) {
        let Some(apic) = self.apic.as_mut() else {
            return;
        };
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        let sent = apic
            .ioapic
            .mmio_write(gpa - IOAPIC_BASE, u32::from_le_bytes(bytes));
        for ipi in sent {
            self.route(None, ipi);
        }
    }

    /// Fires the local APIC timers that are due (and kicks their vCPUs).
    pub(super) fn poll_apic_timers(&mut self, now_ns: u64) {
        if let Some(apic) = self.apic.as_mut() {
            for cpu in 0..apic.cpus.count() {
                if apic.cpus.apic_mut(cpu).poll_timer(now_ns) {
                    apic.kicks.0 |= 1 << cpu;
                }
            }
        }
    }

    /// The vector vCPU `cpu` would take now: its local APIC's, or (on the
    /// BSP with LINT0 in ExtINT mode, as Linux leaves it before its I/O
    /// APIC is set up) the 8259's.
    pub(super) fn apic_pending(&self, apic: &ApicPlatform, cpu: usize) -> Option<u8> {
        let lapic = apic.cpus.apic(cpu);
        lapic
            .pending_vector()
            .or_else(|| (cpu == 0 && lapic.lint0_extint()).then(|| self.pic.pending_vector())?)
    }

    /// INTA on vCPU `cpu`.
    pub(super) fn apic_acknowledge(&mut self, cpu: usize) -> Option<u8> {
        let apic = self.apic.as_mut()?;
        let lapic = apic.cpus.apic_mut(cpu);
        match lapic.acknowledge() {
            Some(v) => Some(v),
            None if cpu == 0 && lapic.lint0_extint() => self.pic.acknowledge(),
            None => None,
        }
    }
}
