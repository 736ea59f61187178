//! Which port the flood touches next, and which accesses it leaves out.
//!
//! Half the accesses go to the ports the VMM's device models decode (PIC,
//! PIT, port B, CMOS, i8042, POST, COM1, ELCR, PCI configuration) and
//! the common reset ports; the other half anywhere in the 64 KiB port space.
//! Widths 1, 2 and 4, values at random.
//!
//! By default the flood is *survivable*: the guest kernel must outlive it,
//! so that the test gets its report and can tell a VMM failure from a guest
//! that merely wrecked itself. It therefore leaves out the accesses that
//! legitimately reset or wedge the guest on any PC, and says how many:
//! - writes that reset the machine: the i8042 command port (0x64: 0xfe and
//!   the output-port commands), the reset control register 0xcf9 and System
//!   Control Port A (0x92, bit 0 is a fast reset);
//! - writes that reprogram the guest's interrupt and clock hardware: the
//!   8259 PICs and their ELCRs (a new vector base or mask loses the timer,
//!   or delivers it as an exception), PIT channel 0 and commands for it;
//! - writes to the guest console's UART other than its scratch register
//!   (divisor, interrupt enable, loopback: the console stops), and reads of
//!   its IIR, which acknowledge a transmit interrupt the guest's driver then
//!   waits for forever.
//!
//! Those device models still get reads of every register here, and garbage
//! writes in the host fuzz target `fuzz_legacy_ports` (vmm/tests). With
//! `wild` nothing is left out: the guest may reset or hang, and the linux
//! server must then restart it.

/// Ports the VMM's device models decode, and reset ports of other PCs.
const DEVICE_PORTS: &[u16] = &[
    0x20, 0x21, 0x40, 0x41, 0x42, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80, 0x92, 0xa0, 0xa1,
    0x3f8, 0x3f9, 0x3fa, 0x3fb, 0x3fc, 0x3fd, 0x3fe, 0x3ff, 0x4d0, 0x4d1, 0xcf8, 0xcf9, 0xcfa,
    0xcfb, 0xcfc, 0xcfd, 0xcfe, 0xcff,
];

const COM1_IIR: u16 = 0x3fa;
const COM1_SCRATCH: u16 = 0x3ff;
const PIT_COMMAND: u16 = 0x43;

/// One port access: where, how wide, and the value for a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortAccess {
    pub port: u16,
    pub width: u8,
    pub write: Option<u32>,
}

/// The access the random word `x` names.
pub fn pick(x: u64) -> PortAccess {
    let width = [1u8, 2, 4][((x >> 24) % 3) as usize];
    let port = if x & 1 == 0 {
        DEVICE_PORTS[((x >> 8) % DEVICE_PORTS.len() as u64) as usize]
    } else {
        // Not past 0xffff: the I/O permission bitmap ends there, so an
        // access across the end faults (#GP, SIGSEGV) even with iopl(3).
        let last_start = (0x1_0000 - u32::from(width)) as u16;
        ((x >> 8) as u16).min(last_start)
    };
    let write = ((x >> 27) & 1 == 1).then_some((x >> 32) as u32);
    PortAccess { port, width, write }
}

/// Why a survivable flood leaves `a` out, or `None` if it may do it. A
/// wider access covers the following ports too.
pub fn left_out(a: PortAccess) -> Option<&'static str> {
    let last = a.port.saturating_add(u16::from(a.width) - 1);
    let covers = |lo: u16, hi: u16| a.port <= hi && lo <= last;
    match a.write {
        None if covers(COM1_IIR, COM1_IIR) => Some("console UART IIR read"),
        None => None,
        Some(_) if covers(0x64, 0x64) || covers(0x92, 0x92) || covers(0xcf9, 0xcf9) => {
            Some("reset port write")
        }
        Some(_) if covers(0x20, 0x21) || covers(0xa0, 0xa1) || covers(0x4d0, 0x4d1) => {
            Some("PIC write")
        }
        Some(_) if covers(0x40, 0x40) => Some("PIT channel 0 write"),
        // A command naming channel 0 (bits 7:6 = 00) reprograms the clock.
        Some(v) if covers(PIT_COMMAND, PIT_COMMAND) && pit_command(a, v) >> 6 == 0 => {
            Some("PIT channel 0 write")
        }
        Some(_) if covers(0x3f8, COM1_SCRATCH - 1) => Some("console UART write"),
        Some(_) => None,
    }
}

/// The byte of the value `a` writes to the PIT command port.
fn pit_command(a: PortAccess, value: u32) -> u8 {
    (value >> (8 * u32::from(PIT_COMMAND.saturating_sub(a.port)))) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(port: u16, width: u8, value: u32) -> PortAccess {
        PortAccess {
            port,
            width,
            write: Some(value),
        }
    }

    #[test]
    fn leaves_out_what_resets_or_wedges_the_guest() {
        assert!(left_out(write(0x64, 1, 0xfe)).is_some());
        assert!(left_out(write(0x62, 4, 0)).is_some(), "a dword over 0x64");
        assert!(left_out(write(0xcf8, 4, 0)).is_some(), "covers 0xcf9");
        assert!(left_out(write(0xcfc, 4, 0)).is_none());
        assert!(left_out(write(0x21, 1, 0xff)).is_some());
        assert!(left_out(write(0x40, 1, 1)).is_some());
        assert!(
            left_out(write(0x43, 1, 0x34)).is_some(),
            "channel 0, mode 2"
        );
        assert!(left_out(write(0x43, 1, 0xb6)).is_none(), "channel 2");
        assert!(
            left_out(write(0x42, 2, 0x3400)).is_some(),
            "high byte on 0x43"
        );
        assert!(left_out(write(0x3f9, 1, 0)).is_some());
        assert!(left_out(write(0x3ff, 1, 0x55)).is_none());
        assert!(left_out(write(0x71, 4, 0)).is_none());
        let read = |port| PortAccess {
            port,
            width: 1,
            write: None,
        };
        assert!(left_out(read(0x3fa)).is_some());
        assert!(left_out(read(0x20)).is_none());
        assert!(left_out(read(0x64)).is_none());
    }

    #[test]
    fn picks_cover_device_ports_widths_and_the_whole_space() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let (mut device, mut high, mut widths, mut writes) = (0, 0, [0; 5], 0);
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let a = pick(x);
            device += usize::from(DEVICE_PORTS.contains(&a.port));
            high += usize::from(a.port >= 0x8000);
            widths[usize::from(a.width)] += 1;
            writes += usize::from(a.write.is_some());
        }
        assert!(device > 4000 && high > 2000, "{device} {high}");
        assert!(widths[1] > 3000 && widths[2] > 3000 && widths[4] > 3000);
        assert!(writes > 4000 && writes < 6000);
        for x in [
            u64::MAX,
            0xffff_ff01,
            0xffff_ff01 | (1 << 24),
            0xffff_ff01 | (2 << 24),
        ] {
            let a = pick(x);
            assert!(u32::from(a.port) + u32::from(a.width) <= 0x1_0000, "{a:?}");
        }
    }
}
