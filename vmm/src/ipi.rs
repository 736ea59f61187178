//! Interrupt messages between local APICs: what an x2APIC ICR write (or an
//! I/O APIC redirection entry) asks for, decoded.

/// How the message is delivered (ICR bits 8-10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// The vector, to every destination (lowest priority is delivered as
    /// fixed: to the destinations it names).
    Fixed,
    Nmi,
    /// INIT: the target waits for a start-up IPI.
    Init,
    /// Start-up: an AP waiting after INIT starts in real mode at
    /// `vector << 12`.
    Startup,
    /// SMI, remote read, ExtINT and reserved modes: not emulated.
    Unsupported(u8),
}

/// Who receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// One APIC by its x2APIC ID (or every APIC for 0xffff_ffff).
    Physical(u32),
    /// x2APIC logical (cluster in bits 16-31, a mask of 16 CPUs of the
    /// cluster in bits 0-15).
    Logical(u32),
    SelfOnly,
    AllIncludingSelf,
    AllExcludingSelf,
}

/// A decoded interrupt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipi {
    pub vector: u8,
    pub mode: DeliveryMode,
    pub dest: Destination,
    /// Level-triggered (from an I/O APIC pin): the target's EOI is
    /// forwarded back. Always false for ICR writes.
    pub level: bool,
}

/// The x2APIC physical ID that means every APIC.
pub const BROADCAST_ID: u32 = 0xffff_ffff;

impl Ipi {
    /// Decodes an x2APIC ICR value (destination in bits 32-63).
    pub fn from_icr(icr: u64) -> Ipi {
        let low = icr as u32;
        let mode = match (low >> 8) & 7 {
            0 | 1 => DeliveryMode::Fixed,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::Startup,
            m => DeliveryMode::Unsupported(m as u8),
        };
        let id = (icr >> 32) as u32;
        let dest = match (low >> 18) & 3 {
            1 => Destination::SelfOnly,
            2 => Destination::AllIncludingSelf,
            3 => Destination::AllExcludingSelf,
            _ if low & (1 << 11) != 0 => Destination::Logical(id),
            _ => Destination::Physical(id),
        };
        Ipi {
            vector: low as u8,
            mode,
            dest,
            level: false,
        }
    }

    /// Whether the APIC with x2APIC ID `id` receives it, `sender` being
    /// the sender's ID (`None` for an I/O APIC).
    pub fn targets(&self, id: u32, sender: Option<u32>) -> bool {
        match self.dest {
            Destination::Physical(BROADCAST_ID) => true,
            Destination::Physical(d) => d == id,
            Destination::Logical(d) => {
                let cluster = d >> 16;
                cluster == id >> 4 && (d & 0xffff) & (1 << (id & 0xf)) != 0
            }
            Destination::SelfOnly => sender == Some(id),
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => sender != Some(id),
        }
    }
}

/// The x2APIC logical ID of x2APIC ID `id` (LDR, read-only in x2APIC
/// mode): cluster `id >> 4`, bit `id & 15`.
pub fn logical_id(id: u32) -> u32 {
    ((id >> 4) << 16) | (1 << (id & 0xf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icr_fields_decode() {
        let ipi = Ipi::from_icr((3u64 << 32) | 0x4031);
        assert_eq!(ipi.vector, 0x31);
        assert_eq!(ipi.mode, DeliveryMode::Fixed);
        assert_eq!(ipi.dest, Destination::Physical(3));
        assert_eq!(Ipi::from_icr(0x4500).mode, DeliveryMode::Init);
        assert_eq!(
            Ipi::from_icr((1u64 << 32) | 0x0609).mode,
            DeliveryMode::Startup
        );
        assert_eq!(Ipi::from_icr(0x0400).mode, DeliveryMode::Nmi);
        assert_eq!(Ipi::from_icr(0x0200).mode, DeliveryMode::Unsupported(2));
        assert_eq!(
            Ipi::from_icr(0x000c_0020).dest,
            Destination::AllExcludingSelf
        );
        assert_eq!(
            Ipi::from_icr(0x0008_0020).dest,
            Destination::AllIncludingSelf
        );
        assert_eq!(Ipi::from_icr(0x0004_0020).dest, Destination::SelfOnly);
        assert_eq!(Ipi::from_icr(0x0800).dest, Destination::Logical(0));
    }

    #[test]
    fn destinations_select_apics() {
        let to = |icr: u64, id, sender| Ipi::from_icr(icr).targets(id, sender);
        assert!(to(2u64 << 32, 2, Some(0)));
        assert!(!to(2u64 << 32, 1, Some(0)));
        assert!(to((BROADCAST_ID as u64) << 32, 5, Some(0)));
        assert!(to(0x000c_0000, 1, Some(0)));
        assert!(!to(0x000c_0000, 0, Some(0)));
        assert!(to(0x0004_0000, 0, Some(0)));
        assert!(!to(0x0004_0000, 1, Some(0)));
        // Logical: cluster 0, CPUs 1 and 3.
        let logical = (0b1010u64 << 32) | 0x800;
        assert!(to(logical, 1, None) && to(logical, 3, None));
        assert!(!to(logical, 2, None) && !to(logical, 17, None));
        assert_eq!(logical_id(17), (1 << 16) | 2);
    }
}
