//! The small PC devices Linux pokes during boot: CMOS/RTC (0x70/0x71), the
//! i8042 keyboard controller (0x60/0x64, kept only for its reset line:
//! `reboot=k`), and the PCI configuration mechanism #1 ports (0xcf8-0xcff),
//! which read as all-ones so Linux finds no PCI bus. Port 0x80 (POST codes,
//! Linux's I/O delay) is ignored by the platform that owns these.

/// CMOS index and data ports.
pub const CMOS_INDEX: u16 = 0x70;
pub const CMOS_DATA: u16 = 0x71;

/// i8042 data and command/status ports.
pub const I8042_DATA: u16 = 0x60;
pub const I8042_CMD: u16 = 0x64;

/// PCI configuration address/data ports.
pub const PCI_CONFIG_BASE: u16 = 0xcf8;
pub const PCI_CONFIG_LEN: u16 = 8;

/// Port 0x80: POST codes and `io_delay`.
pub const POST_PORT: u16 = 0x80;

pub use starina_abi::calendar::DateTime;

fn to_bcd(v: u8) -> u8 {
    ((v / 10) << 4) | (v % 10)
}

/// MC146818 CMOS RTC, read-only clock: the time comes from the host.
#[derive(Debug, Clone)]
pub struct Cmos {
    index: u8,
    nvram: [u8; 128],
    /// Unix time at `base_ns` on the VMM's monotonic clock.
    base_unix: u64,
    base_ns: u64,
}

const RTC_REG_A: u8 = 0x0a;
const RTC_REG_B: u8 = 0x0b;
const RTC_REG_C: u8 = 0x0c;
const RTC_REG_D: u8 = 0x0d;
const RTC_CENTURY: u8 = 0x32;
/// Register B: 24-hour mode.
const REG_B_24H: u8 = 0x02;
/// Register B: binary (not BCD) data.
const REG_B_BINARY: u8 = 0x04;

impl Default for Cmos {
    fn default() -> Self {
        Self::new(0, 0)
    }
}

impl Cmos {
    /// An RTC reading `unix_secs` at monotonic time `now_ns`.
    pub fn new(unix_secs: u64, now_ns: u64) -> Self {
        let mut nvram = [0u8; 128];
        nvram[RTC_REG_A as usize] = 0x26; // 32.768 kHz, 1024 Hz, UIP clear
        nvram[RTC_REG_B as usize] = REG_B_24H;
        nvram[RTC_REG_D as usize] = 0x80; // valid RAM and time
        Self {
            index: 0,
            nvram,
            base_unix: unix_secs,
            base_ns: now_ns,
        }
    }

    fn time_reg(&self, reg: u8, now_ns: u64) -> Option<u8> {
        let secs = self.base_unix + now_ns.saturating_sub(self.base_ns) / 1_000_000_000;
        let t = DateTime::from_unix(secs);
        let v = match reg {
            0x00 => t.second,
            0x02 => t.minute,
            0x04 => t.hour,
            0x06 => t.weekday + 1,
            0x07 => t.day,
            0x08 => t.month,
            0x09 => (t.year % 100) as u8,
            RTC_CENTURY => (t.year / 100) as u8,
            _ => return None,
        };
        Some(if self.nvram[RTC_REG_B as usize] & REG_B_BINARY != 0 {
            v
        } else {
            to_bcd(v)
        })
    }

    pub fn read(&mut self, port: u16, now_ns: u64) -> u8 {
        if port != CMOS_DATA {
            return 0xff; // the index port is write-only
        }
        let reg = self.index;
        if let Some(v) = self.time_reg(reg, now_ns) {
            return v;
        }
        match reg {
            // Reading C clears pending RTC interrupt flags (we raise none).
            RTC_REG_C => 0,
            _ => self.nvram[reg as usize],
        }
    }

    pub fn write(&mut self, port: u16, v: u8) {
        match port {
            // Bit 7 is the NMI mask: no NMIs here.
            CMOS_INDEX => self.index = v & 0x7f,
            _ => {
                let reg = self.index;
                match reg {
                    // Time setting, and C/D, are read-only here.
                    0x00 | 0x02 | 0x04 | 0x06..=0x09 | RTC_CENTURY | RTC_REG_C | RTC_REG_D => {}
                    // Keep UIP clear in A.
                    RTC_REG_A => self.nvram[reg as usize] = v & 0x7f,
                    _ => self.nvram[reg as usize] = v,
                }
            }
        }
    }
}

/// The i8042 controller, enough for Linux to reset the machine through it
/// and for its probes not to hang: no keyboard or mouse is attached.
#[derive(Debug, Clone, Default)]
pub struct I8042 {
    output: Option<u8>,
    ctr: u8,
    /// The next data-port write is the argument of this command.
    pending: Option<u8>,
    last_was_command: bool,
    reset_requested: bool,
}

const STATUS_OBF: u8 = 0x01;
const STATUS_SYS: u8 = 0x04;
const STATUS_CMD: u8 = 0x08;

impl I8042 {
    pub fn new() -> Self {
        Self {
            ctr: 0x30, // both ports disabled, translation off
            ..Default::default()
        }
    }

    /// Whether the guest pulsed the reset line (command 0xfe, or output-port
    /// bit 0 cleared). Taking it clears it.
    pub fn take_reset_request(&mut self) -> bool {
        core::mem::take(&mut self.reset_requested)
    }

    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            I8042_CMD => {
                let mut s = STATUS_SYS;
                if self.output.is_some() {
                    s |= STATUS_OBF;
                }
                if self.last_was_command {
                    s |= STATUS_CMD;
                }
                s
            }
            _ => self.output.take().unwrap_or(0),
        }
    }

    pub fn write(&mut self, port: u16, v: u8) {
        if port == I8042_CMD {
            self.last_was_command = true;
            match v {
                0x20 => self.output = Some(self.ctr),
                0x60 | 0xd1 => self.pending = Some(v),
                0xa7 => self.ctr |= 0x20,
                0xa8 => self.ctr &= !0x20,
                0xaa => self.output = Some(0x55), // self-test passed
                0xab | 0xa9 => self.output = Some(0x00), // port test passed
                0xad => self.ctr |= 0x10,
                0xae => self.ctr &= !0x10,
                0xc0 | 0xd0 => self.output = Some(0x00),
                0xfe => self.reset_requested = true,
                _ => {}
            }
            return;
        }
        self.last_was_command = false;
        match self.pending.take() {
            Some(0x60) => self.ctr = v,
            // Write output port: bit 0 low asserts CPU reset.
            Some(_) if v & 1 == 0 => self.reset_requested = true,
            Some(_) => {}
            // Bytes for the (absent) keyboard are dropped: it never answers.
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmos_time_in_bcd_and_binary() {
        let mut c = Cmos::new(1_709_210_096, 1_000);
        let reg = |c: &mut Cmos, r: u8, now| {
            c.write(CMOS_INDEX, r | 0x80);
            c.read(CMOS_DATA, now)
        };
        assert_eq!(reg(&mut c, 0x0a, 0) & 0x80, 0, "UIP clear");
        assert_eq!(reg(&mut c, 0x0d, 0), 0x80);
        assert_eq!(reg(&mut c, 0x09, 1_000), 0x24);
        assert_eq!(reg(&mut c, 0x32, 1_000), 0x20);
        assert_eq!(reg(&mut c, 0x08, 1_000), 0x02);
        assert_eq!(reg(&mut c, 0x04, 1_000), 0x12);
        // 4 s later.
        assert_eq!(reg(&mut c, 0x00, 4_000_001_000), 0x00);
        assert_eq!(reg(&mut c, 0x02, 4_000_001_000), 0x35);
        // Binary mode.
        c.write(CMOS_INDEX, 0x0b);
        c.write(CMOS_DATA, REG_B_24H | REG_B_BINARY);
        assert_eq!(reg(&mut c, 0x09, 1_000), 24);
        // NVRAM.
        c.write(CMOS_INDEX, 0x40);
        c.write(CMOS_DATA, 0xab);
        assert_eq!(reg(&mut c, 0x40, 0), 0xab);
        assert_eq!(c.read(CMOS_INDEX, 0), 0xff);
    }

    #[test]
    fn i8042_reset_and_probe() {
        let mut k = I8042::new();
        assert_eq!(k.read(I8042_CMD) & 0x02, 0, "input buffer never full");
        k.write(I8042_CMD, 0xaa);
        assert_eq!(k.read(I8042_CMD) & STATUS_OBF, STATUS_OBF);
        assert_eq!(k.read(I8042_DATA), 0x55);
        assert_eq!(k.read(I8042_CMD) & STATUS_OBF, 0);
        k.write(I8042_CMD, 0x60);
        k.write(I8042_DATA, 0x47);
        k.write(I8042_CMD, 0x20);
        assert_eq!(k.read(I8042_DATA), 0x47);
        assert!(!k.take_reset_request());
        k.write(I8042_CMD, 0xfe);
        assert!(k.take_reset_request());
        assert!(!k.take_reset_request());
        k.write(I8042_CMD, 0xd1);
        k.write(I8042_DATA, 0xfe);
        assert!(k.take_reset_request());
        // Keyboard bytes vanish.
        k.write(I8042_DATA, 0xff);
        assert_eq!(k.read(I8042_CMD) & STATUS_OBF, 0);
    }
}
