//! VM exits by kind: what `make bench`'s boot comparison
//! (`linux_boot_instructions_ratio`) is explained with. Only counted: the
//! clock is not read per exit (under `-icount` a clock read is about 30
//! instructions, and an exit costs the guest every instruction the host
//! runs for it). The vCPU thread logs a summary when the guest agent
//! says it is ready (`linux: vm exits to agent ready: ...`) and when the
//! guest stops, and what came after the last report when a guest process
//! ends (`linux: vm exits since the last report: ...`).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use starina_vmm::exit::VmExit;

/// What an exit was, coarsely: the device behind a port, or the exit kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitKind {
    Serial,
    Pit,
    Pic,
    Cmos,
    I8042,
    OtherPort,
    Mmio,
    Hlt,
    InterruptWindow,
    HostInterrupt,
    Msr,
    Cpuid,
    Other,
}

impl ExitKind {
    pub fn of(exit: &VmExit) -> ExitKind {
        match exit {
            VmExit::Io { port, .. } => match port {
                0x3f8..=0x3ff | 0x2f8..=0x2ff | 0x3e8..=0x3ef | 0x2e8..=0x2ef => ExitKind::Serial,
                p if starina_vmm::pit::is_pit_port(*p) => ExitKind::Pit,
                0x20 | 0x21 | 0xa0 | 0xa1 | 0x4d0 | 0x4d1 => ExitKind::Pic,
                0x70 | 0x71 => ExitKind::Cmos,
                0x60 | 0x64 => ExitKind::I8042,
                _ => ExitKind::OtherPort,
            },
            VmExit::NestedPageFault { .. } => ExitKind::Mmio,
            VmExit::Hlt => ExitKind::Hlt,
            VmExit::InterruptWindow => ExitKind::InterruptWindow,
            VmExit::HostInterrupt => ExitKind::HostInterrupt,
            VmExit::Msr { .. } => ExitKind::Msr,
            VmExit::Cpuid { .. } => ExitKind::Cpuid,
            _ => ExitKind::Other,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ExitKind::Serial => "serial",
            ExitKind::Pit => "pit",
            ExitKind::Pic => "pic",
            ExitKind::Cmos => "cmos",
            ExitKind::I8042 => "i8042",
            ExitKind::OtherPort => "other-port",
            ExitKind::Mmio => "mmio",
            ExitKind::Hlt => "hlt",
            ExitKind::InterruptWindow => "irq-window",
            ExitKind::HostInterrupt => "host-irq",
            ExitKind::Msr => "msr",
            ExitKind::Cpuid => "cpuid",
            ExitKind::Other => "other",
        }
    }
}

const KINDS: usize = ExitKind::Other as usize + 1;

/// Counts per kind.
#[derive(Clone, Default)]
pub struct ExitStats {
    count: [u64; KINDS],
    /// Time the vCPU thread slept while the guest halted.
    halted_ns: u64,
    /// Interrupts injected.
    injected: u64,
}

impl ExitStats {
    pub fn exit(&mut self, kind: ExitKind) {
        self.count[kind as usize] += 1;
    }

    pub fn halted(&mut self, ns: u64) {
        self.halted_ns += ns;
    }

    pub fn injected(&mut self) {
        self.injected += 1;
    }

    pub fn total(&self) -> u64 {
        self.count.iter().sum()
    }

    /// What happened after `earlier` (a copy of these counts taken
    /// before).
    pub fn since(&self, earlier: &ExitStats) -> ExitStats {
        let mut d = ExitStats {
            count: [0; KINDS],
            halted_ns: self.halted_ns.saturating_sub(earlier.halted_ns),
            injected: self.injected.saturating_sub(earlier.injected),
        };
        for (k, n) in d.count.iter_mut().enumerate() {
            *n = self.count[k].saturating_sub(earlier.count[k]);
        }
        d
    }

    /// `N exits, halted T ns, I interrupts injected; kind count ...` (kinds
    /// that occurred, most frequent first).
    pub fn summary(&self) -> String {
        let mut kinds: Vec<usize> = (0..KINDS).filter(|&k| self.count[k] > 0).collect();
        kinds.sort_by_key(|&k| core::cmp::Reverse(self.count[k]));
        let mut s = format!(
            "{} exits, halted {} ns, {} interrupts injected;",
            self.total(),
            self.halted_ns,
            self.injected
        );
        for k in kinds {
            let kind = ALL[k];
            s += &format!(" {} {}", kind.name(), self.count[k]);
        }
        s
    }
}

const ALL: [ExitKind; KINDS] = [
    ExitKind::Serial,
    ExitKind::Pit,
    ExitKind::Pic,
    ExitKind::Cmos,
    ExitKind::I8042,
    ExitKind::OtherPort,
    ExitKind::Mmio,
    ExitKind::Hlt,
    ExitKind::InterruptWindow,
    ExitKind::HostInterrupt,
    ExitKind::Msr,
    ExitKind::Cpuid,
    ExitKind::Other,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lists_kinds_by_count() {
        let mut s = ExitStats::default();
        s.exit(ExitKind::Pit);
        s.exit(ExitKind::Serial);
        s.exit(ExitKind::Serial);
        s.halted(100);
        s.injected();
        assert_eq!(s.total(), 3);
        assert_eq!(
            s.summary(),
            "3 exits, halted 100 ns, 1 interrupts injected; serial 2 pit 1"
        );
        let earlier = s.clone();
        s.exit(ExitKind::Mmio);
        s.halted(5);
        assert_eq!(
            s.since(&earlier).summary(),
            "1 exits, halted 5 ns, 0 interrupts injected; mmio 1"
        );
        for (i, k) in ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }
}
