//! 8254 programmable interval timer (ports 0x40-0x43) and the PC's system
//! control port B (0x61), which gates channel 2 and reads back its output.
//!
//! Linux (with `nolapic`) uses channel 0 as its clock event device, in
//! periodic mode 2 or one-shot mode 4 (also 0), raising IRQ 0; and it
//! calibrates the TSC against channel 2 in mode 0, polling port 0x61 bit 5
//! and reading the counter's MSB. The counter is computed from a time source
//! the caller passes in (nanoseconds, monotonic): the model has no thread and
//! no timer of its own. The VMM asks [`Pit::next_irq0_ns`] when to wake up
//! and [`Pit::poll_irq0`] whether a tick is due, then pulses IRQ 0.
//!
//! Simplifications (documented, harmless for Linux): BCD counting is treated
//! as binary; a low gate does not pause modes 0/4 (only channel 2 has a gate,
//! and Linux raises it before programming); missed periodic ticks coalesce
//! into one interrupt.

/// The PIT input clock.
pub const PIT_HZ: u64 = 1_193_182;
pub const PIT_IRQ: u8 = 0;

pub const CHANNEL0: u16 = 0x40;
pub const CHANNEL2: u16 = 0x42;
pub const COMMAND: u16 = 0x43;
pub const PORT_B: u16 = 0x61;

/// Whether `port` is the PIT's (its channels and command, or port B).
pub fn is_pit_port(port: u16) -> bool {
    matches!(port, CHANNEL0..=COMMAND | PORT_B)
}

const NS_PER_S: u128 = 1_000_000_000;
/// PIT_HZ / 1e9 in lowest terms: ticks = ns * TICKS_NUM / TICKS_DEN.
const TICKS_NUM: u64 = 596_591;
const TICKS_DEN: u64 = 500_000_000;
const _: () = assert!(TICKS_NUM * 2 == PIT_HZ && TICKS_DEN * 2 == NS_PER_S as u64);

/// Ticks elapsed in `ns`. Every guest read of a counter and every exit
/// (the channel 0 interrupt check) computes this, so it stays in 64 bits
/// while the product fits (8.6 hours since the count was loaded): a
/// 128-bit division is a software routine of hundreds of instructions.
fn ns_to_ticks(ns: u64) -> u64 {
    match ns.checked_mul(TICKS_NUM) {
        Some(p) => p / TICKS_DEN,
        None => (ns as u128 * PIT_HZ as u128 / NS_PER_S) as u64,
    }
}

/// First nanosecond at which `ticks` ticks have elapsed.
fn ticks_to_ns(ticks: u64) -> u64 {
    match ticks.checked_mul(TICKS_DEN) {
        Some(p) => p.div_ceil(TICKS_NUM),
        None => {
            let ns = (ticks as u128 * NS_PER_S).div_ceil(PIT_HZ as u128);
            ns.min(u64::MAX as u128) as u64
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Channel {
    /// Reload value, 1..=0x10000 (a written 0 means 0x10000).
    count: u32,
    mode: u8,
    /// 1: LSB only, 2: MSB only, 3: LSB then MSB.
    access: u8,
    bcd: bool,
    /// For access 3: LSB written, MSB expected.
    write_msb_next: bool,
    write_lsb: u8,
    /// For access 3 unlatched reads.
    read_msb_next: bool,
    latched: Option<u16>,
    latched_msb_next: bool,
    status: Option<u8>,
    gate: bool,
    /// When counting started; `None` until a count is written.
    load_ns: Option<u64>,
    /// Whether the last programmed count has not been loaded yet.
    null_count: bool,
    /// Channel 0 interrupt bookkeeping.
    periods_seen: u64,
    oneshot_fired: bool,
}

impl Channel {
    fn elapsed_ticks(&self, now_ns: u64) -> Option<u64> {
        self.load_ns.map(|t| ns_to_ticks(now_ns.saturating_sub(t)))
    }

    fn current_count(&self, now_ns: u64) -> u16 {
        let Some(d) = self.elapsed_ticks(now_ns) else {
            return self.count as u16;
        };
        let c = self.count as u64;
        let v = match self.mode {
            2 => c - d % c,
            3 => c - (2 * d) % c,
            // Modes 0, 1, 4, 5 keep counting down through zero.
            _ => c.wrapping_sub(d) & 0xffff,
        };
        v as u16
    }

    fn output(&self, now_ns: u64) -> bool {
        let Some(d) = self.elapsed_ticks(now_ns) else {
            // Mode 0 drives OUT low once programmed; others idle high.
            return self.mode != 0;
        };
        let c = self.count as u64;
        match self.mode {
            0 | 1 => d >= c,
            2 => d % c != c - 1,
            3 => d % c < c.div_ceil(2),
            _ => d != c,
        }
    }

    fn status_byte(&self, now_ns: u64) -> u8 {
        (self.output(now_ns) as u8) << 7
            | (self.null_count as u8) << 6
            | self.access << 4
            | self.mode << 1
            | self.bcd as u8
    }

    fn latch_count(&mut self, now_ns: u64) {
        if self.latched.is_none() {
            self.latched = Some(self.current_count(now_ns));
            self.latched_msb_next = false;
        }
    }

    fn load(&mut self, value: u16, now_ns: u64) {
        self.count = if value == 0 { 0x10000 } else { value as u32 };
        self.load_ns = Some(now_ns);
        self.null_count = false;
        self.periods_seen = 0;
        self.oneshot_fired = false;
    }

    fn read(&mut self, now_ns: u64) -> u8 {
        if let Some(s) = self.status.take() {
            return s;
        }
        if let Some(l) = self.latched {
            return match self.access {
                1 => {
                    self.latched = None;
                    l as u8
                }
                2 => {
                    self.latched = None;
                    (l >> 8) as u8
                }
                _ if self.latched_msb_next => {
                    self.latched = None;
                    (l >> 8) as u8
                }
                _ => {
                    self.latched_msb_next = true;
                    l as u8
                }
            };
        }
        let c = self.current_count(now_ns);
        match self.access {
            1 => c as u8,
            2 => (c >> 8) as u8,
            _ => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    c as u8
                } else {
                    (c >> 8) as u8
                }
            }
        }
    }

    fn write(&mut self, v: u8, now_ns: u64) {
        match self.access {
            1 => self.load(v as u16, now_ns),
            2 => self.load((v as u16) << 8, now_ns),
            _ if self.write_msb_next => {
                self.write_msb_next = false;
                self.load(u16::from_le_bytes([self.write_lsb, v]), now_ns);
            }
            _ => {
                self.write_lsb = v;
                self.write_msb_next = true;
            }
        }
    }

    fn program(&mut self, access: u8, mode: u8, bcd: bool) {
        self.access = access;
        // Modes 6 and 7 are aliases of 2 and 3.
        self.mode = if mode >= 6 { mode - 4 } else { mode };
        self.bcd = bcd;
        self.write_msb_next = false;
        self.read_msb_next = false;
        self.latched = None;
        self.status = None;
        self.load_ns = None;
        self.null_count = true;
    }

    fn set_gate(&mut self, gate: bool, now_ns: u64) {
        // A rising gate (re)starts modes 1, 2, 3 and 5.
        if gate && !self.gate && matches!(self.mode, 1 | 2 | 3 | 5) && self.load_ns.is_some() {
            self.load_ns = Some(now_ns);
            self.periods_seen = 0;
            self.oneshot_fired = false;
        }
        self.gate = gate;
    }
}

/// The 8254 and port 0x61.
#[derive(Debug, Clone)]
pub struct Pit {
    channels: [Channel; 3],
    speaker_data: bool,
}

impl Default for Pit {
    fn default() -> Self {
        Self::new()
    }
}

impl Pit {
    pub fn new() -> Self {
        let mut channels: [Channel; 3] = Default::default();
        for c in &mut channels {
            c.access = 3;
            c.count = 0x10000;
        }
        // Channels 0 and 1 have their gates tied high on a PC.
        channels[0].gate = true;
        channels[1].gate = true;
        Self {
            channels,
            speaker_data: false,
        }
    }

    /// Port read (one byte) at time `now_ns`.
    pub fn read(&mut self, port: u16, now_ns: u64) -> u8 {
        match port {
            CHANNEL0..=CHANNEL2 => self.channels[(port - CHANNEL0) as usize].read(now_ns),
            PORT_B => {
                let c2 = &self.channels[2];
                // Bit 4 toggles with DRAM refresh, about every 15 us; some
                // delay loops watch it.
                let refresh = (now_ns / 15_085) & 1 == 1;
                (c2.gate as u8)
                    | (self.speaker_data as u8) << 1
                    | (refresh as u8) << 4
                    | (c2.output(now_ns) as u8) << 5
            }
            _ => 0xff, // the command port is write-only
        }
    }

    /// Port write (one byte) at time `now_ns`.
    pub fn write(&mut self, port: u16, v: u8, now_ns: u64) {
        match port {
            CHANNEL0..=CHANNEL2 => self.channels[(port - CHANNEL0) as usize].write(v, now_ns),
            COMMAND => {
                let sel = v >> 6;
                if sel == 3 {
                    // Read-back: bit 5 clear latches counts, bit 4 clear
                    // latches status, bits 1..=3 select channels.
                    for (i, c) in self.channels.iter_mut().enumerate() {
                        if v & (2 << i) == 0 {
                            continue;
                        }
                        if v & 0x20 == 0 {
                            c.latch_count(now_ns);
                        }
                        if v & 0x10 == 0 && c.status.is_none() {
                            c.status = Some(c.status_byte(now_ns));
                        }
                    }
                    return;
                }
                let c = &mut self.channels[sel as usize];
                match (v >> 4) & 3 {
                    0 => c.latch_count(now_ns),
                    access => c.program(access, (v >> 1) & 7, v & 1 != 0),
                }
            }
            PORT_B => {
                self.speaker_data = v & 2 != 0;
                self.channels[2].set_gate(v & 1 != 0, now_ns);
            }
            _ => {}
        }
    }

    /// Whether channel 0 produced an interrupt since the last call.
    pub fn poll_irq0(&mut self, now_ns: u64) -> bool {
        let c = &mut self.channels[0];
        let Some(d) = c.elapsed_ticks(now_ns) else {
            return false;
        };
        let count = c.count as u64;
        match c.mode {
            2 | 3 => {
                let periods = d / count;
                if periods > c.periods_seen {
                    c.periods_seen = periods;
                    return true;
                }
                false
            }
            0 | 4 => {
                if !c.oneshot_fired && d >= count {
                    c.oneshot_fired = true;
                    return true;
                }
                false
            }
            _ => false,
        }
    }

    /// When channel 0 next interrupts, if it is armed: the VMM's wake-up
    /// deadline while the guest halts.
    pub fn next_irq0_ns(&self) -> Option<u64> {
        let c = &self.channels[0];
        let load = c.load_ns?;
        let count = c.count as u64;
        let ticks = match c.mode {
            2 | 3 => (c.periods_seen + 1).saturating_mul(count),
            0 | 4 if !c.oneshot_fired => count,
            _ => return None,
        };
        Some(load.saturating_add(ticks_to_ns(ticks)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn tick_conversions_match_the_exact_formulas() {
        let exact_ticks = |ns: u64| (ns as u128 * PIT_HZ as u128 / NS_PER_S) as u64;
        let exact_ns =
            |t: u64| ((t as u128 * NS_PER_S).div_ceil(PIT_HZ as u128)).min(u64::MAX as u128) as u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let big = u64::MAX / TICKS_NUM;
        for v in [
            0,
            1,
            837,
            838,
            839,
            MS,
            big - 1,
            big,
            big + 1,
            u64::MAX / 2,
            u64::MAX,
        ]
        .into_iter()
        .chain((0..10_000).map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x >> (x % 40)
        })) {
            assert_eq!(ns_to_ticks(v), exact_ticks(v), "ns {v}");
            assert_eq!(ticks_to_ns(v), exact_ns(v), "ticks {v}");
        }
    }

    #[test]
    fn periodic_mode2_like_linux() {
        let mut p = Pit::new();
        // Linux: 0x34 (ch0, lo/hi, mode 2), LATCH = 1193182/1000 + ...
        p.write(COMMAND, 0x34, 0);
        let latch: u16 = 1193; // ~1 ms
        p.write(CHANNEL0, latch as u8, 0);
        assert!(!p.poll_irq0(0));
        p.write(CHANNEL0, (latch >> 8) as u8, 0);
        assert!(!p.poll_irq0(MS / 2));
        let next = p.next_irq0_ns().unwrap();
        assert!((999_000..1_001_000).contains(&next), "{next}");
        assert!(!p.poll_irq0(next - 1));
        assert!(p.poll_irq0(next));
        assert!(!p.poll_irq0(next));
        // Late polling coalesces.
        assert!(p.poll_irq0(10 * MS));
        assert!(!p.poll_irq0(10 * MS));
        let n2 = p.next_irq0_ns().unwrap();
        assert!(n2 > 10 * MS && n2 <= 11 * MS + 1000);
    }

    #[test]
    fn oneshot_mode4() {
        let mut p = Pit::new();
        p.write(COMMAND, 0x38, 0);
        assert_eq!(p.next_irq0_ns(), None);
        p.write(CHANNEL0, 0x00, 5 * MS);
        p.write(CHANNEL0, 0x10, 5 * MS); // 4096 ticks ~ 3.43 ms
        let due = p.next_irq0_ns().unwrap();
        assert!(due > 8 * MS && due < 9 * MS);
        assert!(p.poll_irq0(due));
        assert!(!p.poll_irq0(due + 100 * MS));
        assert_eq!(p.next_irq0_ns(), None);
    }

    #[test]
    fn counter_reads_and_latch() {
        let mut p = Pit::new();
        p.write(COMMAND, 0x34, 0);
        p.write(CHANNEL0, 0x00, 0);
        p.write(CHANNEL0, 0x00, 0); // 0 = 65536
                                    // After 1000 ticks: count 64536 = 0xfc18.
        let t = ticks_to_ns(1000);
        assert_eq!(p.read(CHANNEL0, t), 0x18);
        assert_eq!(p.read(CHANNEL0, t), 0xfc);
        // Latch freezes the value.
        p.write(COMMAND, 0x00, t);
        let later = t + 10 * MS;
        assert_eq!(p.read(CHANNEL0, later), 0x18);
        assert_eq!(p.read(CHANNEL0, later), 0xfc);
        // Then live again.
        assert_ne!(p.read(CHANNEL0, later), 0x18);
    }

    #[test]
    fn readback_status() {
        let mut p = Pit::new();
        p.write(COMMAND, 0xb0, 0); // ch2, lo/hi, mode 0
        p.write(COMMAND, 0xe8, 0); // read-back status of ch2 (bit 5 set: no count)
        let s = p.read(CHANNEL2, 0);
        assert_eq!(s & 0x3f, 0x30, "access 3, mode 0, binary");
        assert_ne!(s & 0x40, 0, "null count until written");
    }

    /// Linux's pit_calibrate_tsc / quick_pit_calibrate: channel 2, gate via
    /// port 0x61, mode 0, wait for OUT2 (bit 5) to rise.
    #[test]
    fn channel2_calibration_sequence() {
        let mut p = Pit::new();
        let v = p.read(PORT_B, 0);
        p.write(PORT_B, (v & !0x02) | 0x01, 0);
        p.write(COMMAND, 0xb0, 0);
        let latch: u16 = 11932; // 10 ms
        p.write(CHANNEL2, latch as u8, 0);
        p.write(CHANNEL2, (latch >> 8) as u8, 0);
        assert_eq!(p.read(PORT_B, MS) & 0x20, 0);
        assert_eq!(p.read(PORT_B, MS) & 0x01, 0x01);
        assert_eq!(p.read(PORT_B, 10 * MS + 100_000) & 0x20, 0x20);
        // MSB reads count down (quick_pit_calibrate reads lsb then msb).
        p.write(COMMAND, 0xb0, 0);
        p.write(CHANNEL2, 0xff, 0);
        p.write(CHANNEL2, 0xff, 0);
        let mut last = 0x100u16;
        for i in 1..20u64 {
            let t = i * 500_000;
            let _lsb = p.read(CHANNEL2, t);
            let msb = p.read(CHANNEL2, t) as u16;
            assert!(msb < last);
            last = msb;
        }
    }

    #[test]
    fn mode3_output_and_aliases() {
        let mut p = Pit::new();
        p.write(PORT_B, 1, 0);
        p.write(COMMAND, 0xbe, 0); // ch2 mode 7 == mode 3
        p.write(CHANNEL2, 100, 0);
        p.write(CHANNEL2, 0, 0);
        assert_ne!(p.read(PORT_B, ticks_to_ns(10)) & 0x20, 0);
        assert_eq!(p.read(PORT_B, ticks_to_ns(60)) & 0x20, 0);
    }

    #[test]
    fn lsb_msb_only_access() {
        let mut p = Pit::new();
        p.write(COMMAND, 0x14, 0); // ch0 LSB only, mode 2
        p.write(CHANNEL0, 100, 0);
        assert!(p.next_irq0_ns().is_some());
        assert_eq!(p.read(CHANNEL0, 0), 100);
        p.write(COMMAND, 0x24, 0); // MSB only
        p.write(CHANNEL0, 1, 0);
        assert_eq!(p.read(CHANNEL0, 0), 1);
        assert_eq!(p.read(COMMAND, 0), 0xff);
    }
}
