//! Calendar dates from Unix time (UTC, proleptic Gregorian): what the
//! VMM's CMOS clock shows a guest and what commands print.

/// A wall-clock date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateTime {
    pub year: u32,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
    /// 0 = Sunday.
    pub weekday: u8,
}

impl DateTime {
    /// From seconds since the Unix epoch (proleptic Gregorian, UTC).
    pub fn from_unix(secs: u64) -> Self {
        let days = secs / 86_400;
        let rem = secs % 86_400;
        // Civil-from-days: shift the epoch to 0000-03-01 so leap days fall
        // at the end of a 400-year era.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z % 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u8;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
        let year = (yoe + era * 400 + (month <= 2) as u64) as u32;
        Self {
            year,
            month,
            day,
            hour: (rem / 3600) as u8,
            minute: (rem / 60 % 60) as u8,
            second: (rem % 60) as u8,
            // 1970-01-01 was a Thursday.
            weekday: ((days + 4) % 7) as u8,
        }
    }
}

/// `YYYY-MM-DD hh:mm:ss`.
impl core::fmt::Display for DateTime {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        let t = DateTime::from_unix(0);
        assert_eq!((t.year, t.month, t.day, t.weekday), (1970, 1, 1, 4));
        // 2024-02-29 12:34:56 UTC, a Thursday.
        let t = DateTime::from_unix(1_709_210_096);
        assert_eq!(
            (t.year, t.month, t.day, t.hour, t.minute, t.second, t.weekday),
            (2024, 2, 29, 12, 34, 56, 4)
        );
        let t = DateTime::from_unix(4_102_444_800); // 2100-01-01
        assert_eq!((t.year, t.month, t.day), (2100, 1, 1));
        let mut text = [0u8; 19];
        let mut w = Cursor(&mut text, 0);
        core::fmt::write(&mut w, format_args!("{}", DateTime::from_unix(1_709_210_096))).unwrap();
        assert_eq!(&text, b"2024-02-29 12:34:56");
    }

    /// A `fmt::Write` into a fixed buffer (this crate has no `alloc`).
    struct Cursor<'a>(&'a mut [u8], usize);

    impl core::fmt::Write for Cursor<'_> {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0.get_mut(self.1..end).ok_or(core::fmt::Error)?.copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
}
