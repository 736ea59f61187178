//! The Linux guest kernel's functions, for the profilers: code of the
//! nested guest is outside Starina's image, and without these its
//! addresses are only pages (`? (page 0x...)`). The names come from the
//! `System.map` the guest kernel's build leaves (`linux-guest/
//! build-kernel.sh` keeps its build tree next to the `bzImage`), and label
//! an address `linux: <function>` when it falls in the kernel's text.

use std::path::Path;
use std::path::PathBuf;

/// The guest kernel's text symbols, sorted by address.
pub struct LinuxSymbols {
    starts: Vec<u64>,
    names: Vec<String>,
    /// The end of the kernel's text (`_etext`): later addresses are data,
    /// modules or user code, whatever symbol precedes them.
    end: u64,
}

impl LinuxSymbols {
    /// Parses `System.map` lines (`<hex address> <type> <name>`), keeping
    /// code symbols (`t`, `T`, `w`, `W`); `None` without any or without
    /// `_etext`.
    pub fn parse(map: &str) -> Option<LinuxSymbols> {
        let mut rows = Vec::new();
        let mut end = None;
        for line in map.lines() {
            let mut fields = line.split_whitespace();
            let (Some(addr), Some(kind), Some(name)) =
                (fields.next(), fields.next(), fields.next())
            else {
                continue;
            };
            let Ok(addr) = u64::from_str_radix(addr, 16) else {
                continue;
            };
            if name == "_etext" {
                end = Some(addr);
            }
            if matches!(kind, "t" | "T" | "w" | "W") {
                rows.push((addr, name.to_string()));
            }
        }
        rows.sort_by_key(|r| r.0);
        let end = end?;
        if rows.is_empty() {
            return None;
        }
        let (starts, names) = rows.into_iter().unzip();
        Some(LinuxSymbols { starts, names, end })
    }

    /// The `System.map` of the guest kernel built as `bzimage`, if its
    /// build tree is still there.
    pub fn find(bzimage: &Path) -> Option<PathBuf> {
        let map = bzimage.parent()?.join("build").join("System.map");
        map.is_file().then_some(map)
    }

    pub fn load(map: &Path) -> Option<LinuxSymbols> {
        LinuxSymbols::parse(&std::fs::read_to_string(map).ok()?)
    }

    /// The guest kernel function containing `addr`, if it is in the
    /// kernel's text.
    pub fn name(&self, addr: u64) -> Option<&str> {
        if addr >= self.end {
            return None;
        }
        match self.starts.partition_point(|&s| s <= addr) {
            0 => None,
            i => Some(&self.names[i - 1]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAP: &str = "\
ffffffff81000000 T _stext
ffffffff81000000 T startup_64
ffffffff81001000 t csum_partial
ffffffff81002000 D some_data
ffffffff81003000 T _etext
ffffffff81004000 T after_text
";

    #[test]
    fn names_addresses_in_the_text() {
        let s = LinuxSymbols::parse(MAP).unwrap();
        assert_eq!(s.name(0xffffffff81001234), Some("csum_partial"));
        // Data symbols name nothing: the function before them does.
        assert_eq!(s.name(0xffffffff81002004), Some("csum_partial"));
        assert_eq!(s.name(0xffffffff81000010), Some("startup_64"));
        assert_eq!(s.name(0xffffffff80ffffff), None);
        assert_eq!(s.name(0xffffffff81003000), None);
        assert_eq!(s.name(0x401000), None);
    }

    #[test]
    fn a_map_without_text_is_refused() {
        assert!(LinuxSymbols::parse("").is_none());
        assert!(LinuxSymbols::parse("ffffffff81000000 T startup_64\n").is_none());
        assert!(LinuxSymbols::parse("junk line\n").is_none());
    }
}
