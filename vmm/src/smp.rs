//! The vCPUs' local APICs together: interrupt messages routed to their
//! targets, and application processors started by INIT and start-up IPIs.
//!
//! vCPU `i` has x2APIC ID `i`; vCPU 0 is the bootstrap processor. An AP
//! waits for INIT, then for a start-up IPI, whose vector says where it
//! starts in real mode (`vector << 12`). Every routed message returns the
//! set of vCPUs it reached ([`Kicks`]) so the backend can kick them out of
//! guest mode; the guest cannot grow any queue (IRR is a bitmap, a second
//! start-up is ignored) and misaddressed messages are dropped and counted.

use crate::ipi::DeliveryMode;
use crate::ipi::Ipi;
use crate::lapic::LocalApic;
use crate::repeats::Repeats;

/// The most vCPUs a VM has (the spec checker's limit too).
pub const MAX_VCPUS: usize = 8;

/// Where a vCPU is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// An AP before INIT.
    WaitForInit,
    /// After INIT, before a start-up IPI.
    WaitForSipi,
    /// Started at `vector << 12`; the vCPU thread has not taken it yet.
    Starting(u8),
    Running,
}

/// A set of vCPUs, by index (bit `i` is vCPU `i`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Kicks(pub u8);

impl Kicks {
    pub fn contains(&self, cpu: usize) -> bool {
        cpu < MAX_VCPUS && self.0 & (1 << cpu) != 0
    }

    pub fn iter(self) -> impl Iterator<Item = usize> {
        (0..MAX_VCPUS).filter(move |&i| self.contains(i))
    }
}

/// What the guest did wrong, counted for bounded logging.
#[derive(Debug, Default)]
struct Misuse {
    no_target: Repeats,
    start_ignored: Repeats,
    unsupported: Repeats,
}

/// Every vCPU's APIC and run state.
#[derive(Debug)]
pub struct Cpus {
    apics: alloc::vec::Vec<LocalApic>,
    states: alloc::vec::Vec<RunState>,
    misuse: Misuse,
}

impl Cpus {
    /// `count` vCPUs (1 to [`MAX_VCPUS`]; clamped), the BSP running.
    pub fn new(count: usize) -> Cpus {
        let count = count.clamp(1, MAX_VCPUS);
        Cpus {
            apics: (0..count)
                .map(|i| LocalApic::new(i as u32, i == 0))
                .collect(),
            states: (0..count)
                .map(|i| match i {
                    0 => RunState::Running,
                    _ => RunState::WaitForInit,
                })
                .collect(),
            misuse: Misuse::default(),
        }
    }

    pub fn count(&self) -> usize {
        self.apics.len()
    }

    pub fn apic(&self, cpu: usize) -> &LocalApic {
        &self.apics[cpu]
    }

    pub fn apic_mut(&mut self, cpu: usize) -> &mut LocalApic {
        &mut self.apics[cpu]
    }

    pub fn state(&self, cpu: usize) -> RunState {
        self.states[cpu]
    }

    /// The AP's thread takes its start: the real-mode start vector once
    /// after a start-up IPI, then it runs.
    pub fn take_start(&mut self, cpu: usize) -> Option<u8> {
        match self.states.get(cpu) {
            Some(&RunState::Starting(vector)) => {
                self.states[cpu] = RunState::Running;
                Some(vector)
            }
            _ => None,
        }
    }

    /// Routes `ipi` from vCPU `from` (`None`: the I/O APIC). Returns the
    /// vCPUs whose state changed and that must look at it soon.
    pub fn deliver(&mut self, from: Option<usize>, ipi: Ipi) -> Kicks {
        let sender = from.map(|i| i as u32);
        let mut kicks = Kicks::default();
        for cpu in 0..self.count() {
            if ipi.targets(cpu as u32, sender) && self.deliver_to(cpu, ipi) {
                kicks.0 |= 1 << cpu;
            }
        }
        if kicks.0 == 0 && !matches!(ipi.mode, DeliveryMode::Startup | DeliveryMode::Init) {
            if let Some(n) = self.misuse.no_target.note() {
                log::warn!("vmm: interrupt message {ipi:?} reaches no vCPU (dropped; {n} so far)");
            }
        }
        kicks
    }

    fn deliver_to(&mut self, cpu: usize, ipi: Ipi) -> bool {
        match ipi.mode {
            DeliveryMode::Fixed => self.apics[cpu].accept(ipi.vector, ipi.level),
            DeliveryMode::Nmi => {
                self.apics[cpu].accept_nmi();
                true
            }
            DeliveryMode::Init => self.init(cpu),
            DeliveryMode::Startup => self.startup(cpu, ipi.vector),
            DeliveryMode::Unsupported(mode) => {
                if let Some(n) = self.misuse.unsupported.note() {
                    log::warn!("vmm: delivery mode {mode} is not emulated (dropped; {n} so far)");
                }
                false
            }
        }
    }

    /// INIT: an AP resets its APIC and waits for a start-up IPI (again,
    /// if it ran: that is how Linux brings an offlined CPU back). The BSP
    /// ignores INIT (its reset would be the whole VM's).
    fn init(&mut self, cpu: usize) -> bool {
        if cpu == 0 {
            self.note_ignored(cpu, "INIT to the bootstrap processor");
            return false;
        }
        self.apics[cpu].init();
        self.states[cpu] = RunState::WaitForSipi;
        true
    }

    fn startup(&mut self, cpu: usize, vector: u8) -> bool {
        if self.states[cpu] != RunState::WaitForSipi {
            // The second SIPI of INIT-SIPI-SIPI, or a start of a running
            // vCPU: ignored, as hardware does.
            self.note_ignored(cpu, "start-up IPI to a vCPU not waiting for one");
            return false;
        }
        self.states[cpu] = RunState::Starting(vector);
        true
    }

    fn note_ignored(&mut self, cpu: usize, what: &str) {
        if let Some(n) = self.misuse.start_ignored.note() {
            log::debug!("vmm: {what} (vCPU {cpu}) ignored ({n} so far)");
        }
    }

    /// Messages that reached no vCPU so far.
    pub fn dropped(&self) -> u64 {
        self.misuse.no_target.count() + self.misuse.unsupported.count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ipi::Destination;

    fn ipi(mode: DeliveryMode, vector: u8, dest: Destination) -> Ipi {
        Ipi {
            vector,
            mode,
            dest,
            level: false,
        }
    }

    fn enable_all(cpus: &mut Cpus) {
        for i in 0..cpus.count() {
            cpus.apic_mut(i).write(0x80f, 0x1ff, 0).unwrap();
        }
    }

    #[test]
    fn init_then_sipi_starts_an_ap_once() {
        let mut cpus = Cpus::new(2);
        assert_eq!(cpus.state(1), RunState::WaitForInit);
        let one = Destination::Physical(1);
        assert_eq!(
            cpus.deliver(Some(0), ipi(DeliveryMode::Startup, 9, one)),
            Kicks(0)
        );
        assert_eq!(
            cpus.deliver(Some(0), ipi(DeliveryMode::Init, 0, one)),
            Kicks(2)
        );
        assert_eq!(
            cpus.deliver(Some(0), ipi(DeliveryMode::Startup, 9, one)),
            Kicks(2)
        );
        // The second start-up IPI (Linux sends two) is ignored.
        assert_eq!(
            cpus.deliver(Some(0), ipi(DeliveryMode::Startup, 7, one)),
            Kicks(0)
        );
        assert_eq!(cpus.take_start(1), Some(9));
        assert_eq!(cpus.take_start(1), None);
        assert_eq!(cpus.state(1), RunState::Running);
        // Starting it again without INIT does nothing.
        assert_eq!(
            cpus.deliver(Some(0), ipi(DeliveryMode::Startup, 9, one)),
            Kicks(0)
        );
        assert_eq!(cpus.state(1), RunState::Running);
        // INIT again (CPU hotplug) makes it wait for a new start.
        cpus.deliver(Some(0), ipi(DeliveryMode::Init, 0, one));
        assert_eq!(cpus.state(1), RunState::WaitForSipi);
    }

    #[test]
    fn the_bsp_ignores_init() {
        let mut cpus = Cpus::new(2);
        let all = Destination::AllIncludingSelf;
        assert_eq!(
            cpus.deliver(Some(1), ipi(DeliveryMode::Init, 0, all)),
            Kicks(2)
        );
        assert_eq!(cpus.state(0), RunState::Running);
    }

    #[test]
    fn messages_to_missing_apics_are_dropped() {
        let mut cpus = Cpus::new(2);
        enable_all(&mut cpus);
        for dest in [5, 8, 0xfffe] {
            let d = Destination::Physical(dest);
            assert_eq!(
                cpus.deliver(Some(0), ipi(DeliveryMode::Fixed, 0x40, d)),
                Kicks(0)
            );
            assert_eq!(
                cpus.deliver(Some(0), ipi(DeliveryMode::Init, 0, d)),
                Kicks(0)
            );
            assert_eq!(
                cpus.deliver(Some(0), ipi(DeliveryMode::Startup, 1, d)),
                Kicks(0)
            );
        }
        assert_eq!(cpus.dropped(), 3);
        assert_eq!(cpus.state(1), RunState::WaitForInit);
        assert!(!cpus.apic(0).has_requests() && !cpus.apic(1).has_requests());
    }

    #[test]
    fn shorthands_and_broadcast_reach_the_right_vcpus() {
        let mut cpus = Cpus::new(4);
        enable_all(&mut cpus);
        let fixed = |d| ipi(DeliveryMode::Fixed, 0xf0, d);
        assert_eq!(
            cpus.deliver(Some(1), fixed(Destination::AllExcludingSelf)),
            Kicks(0b1101)
        );
        assert_eq!(
            cpus.deliver(Some(1), fixed(Destination::SelfOnly)),
            Kicks(0b0010)
        );
        assert_eq!(
            cpus.deliver(Some(2), fixed(Destination::AllIncludingSelf)),
            Kicks(0b1111)
        );
        let bcast = Destination::Physical(crate::ipi::BROADCAST_ID);
        assert_eq!(cpus.deliver(None, fixed(bcast)), Kicks(0b1111));
        assert_eq!(
            cpus.deliver(Some(0), ipi(DeliveryMode::Nmi, 0, Destination::Physical(3))),
            Kicks(8)
        );
        assert!(cpus.apic_mut(3).take_nmi());
        let odd = ipi(DeliveryMode::Unsupported(2), 0, Destination::Physical(1));
        assert_eq!(cpus.deliver(Some(0), odd), Kicks(0));
    }

    #[test]
    fn an_ipi_flood_stays_one_pending_bit() {
        let mut cpus = Cpus::new(2);
        enable_all(&mut cpus);
        let d = Destination::Physical(1);
        for _ in 0..1_000_000 {
            cpus.deliver(Some(0), ipi(DeliveryMode::Fixed, 0xfd, d));
            cpus.deliver(Some(0), ipi(DeliveryMode::Nmi, 0, d));
        }
        let apic = cpus.apic_mut(1);
        assert_eq!(apic.acknowledge(), Some(0xfd));
        assert_eq!(apic.acknowledge(), None);
        assert!(apic.take_nmi() && !apic.take_nmi());
    }

    #[test]
    fn the_vcpu_count_is_clamped() {
        assert_eq!(Cpus::new(0).count(), 1);
        assert_eq!(Cpus::new(100).count(), MAX_VCPUS);
        assert_eq!(Kicks(0b101).iter().collect::<alloc::vec::Vec<_>>(), [0, 2]);
    }
}
