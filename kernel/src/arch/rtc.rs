//! The wall clock: the CMOS real-time clock, read once at boot, and set to
//! the start of a second at the RTC's first update interrupt (`discipline`;
//! the boot read only knows which second it is in). Afterwards the time of
//! day is the boot time plus the monotonic clock (the RTC ticks in whole
//! seconds; reading it on every call would cost port I/O exits for
//! nothing). Its update interrupt also serves as the clock's reference
//! when there is no HPET.
//!
//! Under QEMU the RTC's seconds begin when QEMU started, not when the
//! host's do: it lags the host's clock by that fraction of a second.

use core::sync::atomic::AtomicU64;
use core::sync::atomic::Ordering;

/// UNIX time at boot (monotonic zero), in nanoseconds; 0 until read.
static BOOT_UNIX_NS: AtomicU64 = AtomicU64::new(0);

/// Nanoseconds since 1970-01-01 UTC, or since boot if the machine has
/// no readable RTC.
pub fn unix_ns() -> u64 {
    boot_unix_ns().saturating_add(super::time::now_ns())
}

/// The wall clock when the monotonic clock read zero.
pub fn boot_unix_ns() -> u64 {
    BOOT_UNIX_NS.load(Ordering::Relaxed)
}

/// The RTC counts whole seconds: the true time is anywhere in the second
/// it shows, so the boot time is put in its middle (at most half a second
/// off, either way, rather than up to a whole second behind).
#[cfg(not(test))]
const HALF_SECOND_NS: u64 = 500_000_000;

/// Reads the RTC and sets the boot time. Logs the date it read, or why
/// the wall clock starts at zero.
#[cfg(not(test))]
pub fn init() {
    match cmos::read() {
        Some(date) => match date.unix_seconds() {
            Some(secs) => {
                let boot =
                    (secs * 1_000_000_000 + HALF_SECOND_NS).saturating_sub(super::time::now_ns());
                BOOT_UNIX_NS.store(boot, Ordering::Relaxed);
                log::info!(
                    "wall clock: {:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC (CMOS RTC)",
                    date.year,
                    date.month,
                    date.day,
                    date.hour,
                    date.minute,
                    date.second
                );
            }
            None => log::warn!(
                "wall clock: the RTC holds no valid date ({date:?}); time starts at 1970"
            ),
        },
        None => log::warn!("wall clock: no CMOS RTC answers; time starts at 1970"),
    }
}

/// The RTC's interrupt line (ISA IRQ 8).
pub const GSI: u32 = 8;

/// Makes the RTC interrupt as each second begins (its update-ended
/// interrupt): the clock's reference when there is no HPET. False if the
/// line cannot be routed. After the I/O APICs are set up.
#[cfg(not(test))]
pub fn start_update_interrupts() -> bool {
    if !super::ioapic::route(GSI, false) {
        return false;
    }
    cmos::enable_update_interrupt();
    super::ioapic::unmask(GSI);
    true
}

/// Stops the update interrupts (the HPET is the reference).
#[cfg(not(test))]
pub fn stop_update_interrupts() {
    super::ioapic::mask(GSI);
    cmos::disable_update_interrupt();
}

/// The RTC's second `seconds` began at monotonic `now_ns`: sets the wall
/// clock to it (from the boot read's middle of a second).
#[cfg(not(test))]
pub fn set_second_start(seconds: u64, now_ns: u64) {
    let Some(boot) = seconds
        .checked_mul(1_000_000_000)
        .and_then(|ns| ns.checked_sub(now_ns))
    else {
        return;
    };
    let was = BOOT_UNIX_NS.swap(boot, Ordering::Relaxed);
    log::info!(
        "wall clock: set at the start of a second (moved by {} ms)",
        (boot as i64).wrapping_sub(was as i64) / 1_000_000
    );
}

/// The RTC interrupted: acknowledges it (which lowers the line) and, for
/// the start of a second, tells the clock's discipline.
#[cfg(not(test))]
pub fn interrupt() {
    if cmos::take_update_ended() {
        super::discipline::rtc_second();
    }
}

/// The RTC's time in UNIX seconds, read at once: right after its update
/// interrupt (the registers hold still for the rest of the second).
#[cfg(not(test))]
pub fn seconds_now() -> Option<u64> {
    cmos::read_now().unix_seconds()
}

/// A calendar date and time of day, UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Date {
    pub year: u32,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
}

impl Date {
    /// Seconds since 1970-01-01, or `None` for a date that cannot be
    /// (month 13, hour 25, a year before 1970).
    pub fn unix_seconds(&self) -> Option<u64> {
        let valid = (1970..10000).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return None;
        }
        let days = days_since_epoch(self.year, self.month, self.day);
        Some(days * 86_400 + u64::from(self.hour * 3600 + self.minute * 60 + self.second))
    }
}

/// Days from 1970-01-01 to the given date (proleptic Gregorian), for
/// years from 1970: whole years, then whole months of this year.
fn days_since_epoch(year: u32, month: u32, day: u32) -> u64 {
    let leap = |y: u32| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut days: u64 = (1970..year).map(|y| if leap(y) { 366 } else { 365 }).sum();
    const MONTH_DAYS: [u64; 12] = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    for m in 1..month {
        days += MONTH_DAYS[(m - 1) as usize] + u64::from(m == 2 && leap(year));
    }
    days + u64::from(day - 1)
}

/// The MC146818 registers behind ports 0x70/0x71.
#[cfg(not(test))]
mod cmos {
    use super::super::cpu::inb;
    use super::super::cpu::outb;
    use super::Date;

    const INDEX: u16 = 0x70;
    const DATA: u16 = 0x71;
    const STATUS_A: u8 = 0x0a;
    const STATUS_B: u8 = 0x0b;
    const STATUS_C: u8 = 0x0c;
    /// Status B: interrupt when an update ends; status C: one did.
    const UPDATE_INTERRUPT: u8 = 0x10;
    const UPDATE_ENDED: u8 = 0x10;
    /// Status A: an update is in progress (the time registers may be torn).
    const UPDATING: u8 = 0x80;
    /// Status B: values are binary (else BCD), hours are 24h (else 12h).
    const BINARY: u8 = 0x04;
    const HOURS_24: u8 = 0x02;
    /// The PM bit of the hour register in 12-hour mode.
    const PM: u8 = 0x80;

    fn register(index: u8) -> u8 {
        // Bit 7 of the index port masks NMIs: keep it clear.
        outb(INDEX, index & 0x7f);
        inb(DATA)
    }

    fn set_register(index: u8, value: u8) {
        outb(INDEX, index & 0x7f);
        outb(DATA, value);
    }

    pub fn enable_update_interrupt() {
        set_register(STATUS_B, register(STATUS_B) | UPDATE_INTERRUPT);
        // Reading status C clears what is pending.
        register(STATUS_C);
    }

    pub fn disable_update_interrupt() {
        set_register(STATUS_B, register(STATUS_B) & !UPDATE_INTERRUPT);
        register(STATUS_C);
    }

    /// Reads (and so clears) status C: whether an update ended.
    pub fn take_update_ended() -> bool {
        register(STATUS_C) & UPDATE_ENDED != 0
    }

    /// The date, read once, for when no update can be under way.
    pub fn read_now() -> Date {
        decode(raw(), register(STATUS_B))
    }

    /// Raw (seconds, minutes, hours, day, month, year, century) as stored.
    fn raw() -> [u8; 7] {
        [
            register(0x00),
            register(0x02),
            register(0x04),
            register(0x07),
            register(0x08),
            register(0x09),
            register(0x32),
        ]
    }

    /// The date, read until two reads outside an update agree; `None` if
    /// nothing answers (an absent chip reads 0xff everywhere).
    pub fn read() -> Option<Date> {
        if register(STATUS_A) == 0xff && register(STATUS_B) == 0xff {
            return None;
        }
        let mut last = None;
        for _ in 0..1000 {
            while register(STATUS_A) & UPDATING != 0 {
                core::hint::spin_loop();
            }
            let now = raw();
            if last == Some(now) {
                return Some(decode(now, register(STATUS_B)));
            }
            last = Some(now);
        }
        None
    }

    fn decode(raw: [u8; 7], status_b: u8) -> Date {
        let value = |v: u8| -> u32 {
            if status_b & BINARY != 0 {
                u32::from(v)
            } else {
                u32::from(v >> 4) * 10 + u32::from(v & 0x0f)
            }
        };
        let [second, minute, hour, day, month, year, century] = raw;
        let mut hour24 = value(hour & !PM);
        if status_b & HOURS_24 == 0 {
            hour24 %= 12;
            if hour & PM != 0 {
                hour24 += 12;
            }
        }
        let century = match value(century) {
            c @ 19..=99 => c,
            _ => 20,
        };
        Date {
            year: century * 100 + value(year),
            month: value(month),
            day: value(day),
            hour: hour24,
            minute: value(minute),
            second: value(second),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: u32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> Date {
        Date {
            year,
            month,
            day,
            hour,
            minute,
            second,
        }
    }

    #[test]
    fn known_dates() {
        assert_eq!(date(1970, 1, 1, 0, 0, 0).unix_seconds(), Some(0));
        assert_eq!(date(2000, 3, 1, 0, 0, 0).unix_seconds(), Some(951_868_800));
        assert_eq!(
            date(2026, 12, 2, 2, 41, 34).unix_seconds(),
            Some(1_796_179_294)
        );
        assert_eq!(
            date(2024, 2, 29, 23, 59, 59).unix_seconds(),
            Some(1_709_251_199)
        );
    }

    #[test]
    fn impossible_dates_are_none() {
        assert_eq!(date(2026, 13, 1, 0, 0, 0).unix_seconds(), None);
        assert_eq!(date(2026, 1, 1, 24, 0, 0).unix_seconds(), None);
        assert_eq!(date(1969, 12, 31, 0, 0, 0).unix_seconds(), None);
        assert_eq!(date(2026, 0, 1, 0, 0, 0).unix_seconds(), None);
    }
}
