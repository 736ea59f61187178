//! Formatting shared by the commands: sizes, durations, dates, tables.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const GIB: usize = 1024 * MIB;

/// `bytes` for people: `512 B`, `12 KiB`, `3.5 MiB`, `2.0 GiB`.
pub fn size(bytes: usize) -> String {
    let tenths = |unit: usize| (bytes as u128 * 10 + unit as u128 / 2) / unit as u128;
    if bytes < KIB {
        format!("{bytes} B")
    } else if bytes < MIB {
        format!("{} KiB", (bytes + KIB / 2) / KIB)
    } else if bytes < GIB {
        let t = tenths(MIB);
        format!("{}.{} MiB", t / 10, t % 10)
    } else {
        let t = tenths(GIB);
        format!("{}.{} GiB", t / 10, t % 10)
    }
}

/// A duration in whole seconds: `42 s`, `3 min 5 s`, `2 h 0 min 7 s`,
/// `1 d 3 h 4 min 0 s`.
pub fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d} d {h} h {m} min {s} s")
    } else if h > 0 {
        format!("{h} h {m} min {s} s")
    } else if m > 0 {
        format!("{m} min {s} s")
    } else {
        format!("{s} s")
    }
}

/// Seconds since 1970-01-01 UTC as `YYYY-MM-DD HH:MM:SS`.
pub fn date_time(unix: u64) -> String {
    format!("{}", starina::abi::calendar::DateTime::from_unix(unix))
}

/// Rows laid out in columns two spaces apart, the last column unpadded;
/// columns in `right` are aligned right (numbers).
pub fn table(rows: &[Vec<String>], right: &[usize]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            let pad = widths[c] - cell.chars().count();
            let last = c + 1 == row.len();
            if right.contains(&c) {
                line.extend(core::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if !last {
                    line.extend(core::iter::repeat_n(' ', pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;

    #[test]
    fn sizes_pick_a_unit() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(120 * 1024 + 100), "120 KiB");
        assert_eq!(size(64 * MIB), "64.0 MiB");
        assert_eq!(size(3 * MIB + MIB / 2), "3.5 MiB");
        assert_eq!(size(2 * GIB), "2.0 GiB");
    }

    #[test]
    fn durations_and_dates() {
        assert_eq!(duration(42), "42 s");
        assert_eq!(duration(185), "3 min 5 s");
        assert_eq!(duration(7207), "2 h 0 min 7 s");
        assert_eq!(duration(86_400 + 3 * 3600 + 240), "1 d 3 h 4 min 0 s");
        assert_eq!(date_time(0), "1970-01-01 00:00:00");
        assert_eq!(date_time(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(date_time(1_796_230_522), "2026-12-02 16:55:22");
    }

    #[test]
    fn tables_align_columns() {
        let rows = vec![
            vec!["NAME".to_string(), "N".to_string(), "NOTE".to_string()],
            vec!["echo".to_string(), "12".to_string(), "x".to_string()],
            vec!["testrunner".to_string(), "3".to_string(), "".to_string()],
        ];
        let t = table(&rows, &[1]);
        assert_eq!(
            t,
            "NAME         N  NOTE\necho        12  x\ntestrunner   3\n"
        );
    }
}
