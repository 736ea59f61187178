//! Where the flood's MMIO accesses go: guest-physical pages outside RAM,
//! mapped from /dev/mem.
//!
//! The layout comes from the guest itself: the virtio-mmio windows from the
//! kernel command line (`virtio_mmio.device=<size>@<base>:<irq>`, which the
//! VMM writes) and the end of RAM from /proc/iomem. Targets:
//! - `HOLE_PAGES` pages at random in the unclaimed space above RAM: below
//!   the first window, right after the last one (where further virtio
//!   devices would sit), up to 4 GiB, and above 4 GiB;
//! - the virtio windows themselves. Those carry the guest agent's host
//!   link (the virtio console), which the test that runs the flood talks
//!   through: a survivable flood only reads them (random offsets and
//!   widths, valid or not, but no side effects); a wild one writes too.

use std::fs::File;
use std::fs::OpenOptions;
use std::io;

use super::hw::PhysPage;
use super::hw::PAGE;

/// Unclaimed pages mapped for the flood.
const HOLE_PAGES: u64 = 32;
/// The end of the unclaimed space above 4 GiB the flood uses.
const HIGH_END: u64 = 64 << 30;
const FOUR_GIB: u64 = 4 << 30;
/// Where the PC's interrupt controllers and firmware sit (not decoded by
/// the VMM, but left alone: Linux may reserve or probe them).
const PLATFORM_START: u64 = 0xfec0_0000;

/// A virtio-mmio window from the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub base: u64,
    pub size: u64,
}

/// The mapped targets.
pub struct Targets {
    /// Virtio windows (pages of them): reads, and writes if wild.
    pub windows: Vec<PhysPage>,
    /// Unclaimed pages: reads and writes.
    pub holes: Vec<PhysPage>,
}

/// `4K`, `0x1000`, `512`, `1M`: a size as Linux's memparse reads it.
fn parse_size(s: &str) -> Option<u64> {
    let (digits, shift) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 10),
        b'M' | b'm' => (&s[..s.len() - 1], 20),
        b'G' | b'g' => (&s[..s.len() - 1], 30),
        _ => (s, 0),
    };
    parse_number(digits)?.checked_mul(1 << shift)
}

fn parse_number(s: &str) -> Option<u64> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// The `virtio_mmio.device=` windows of a kernel command line, by base.
pub fn parse_windows(cmdline: &str) -> Vec<Window> {
    let mut windows: Vec<Window> = cmdline
        .split_whitespace()
        .filter_map(|word| word.strip_prefix("virtio_mmio.device="))
        .filter_map(|spec| {
            let (size, rest) = spec.split_once('@')?;
            let base = rest.split(':').next()?;
            Some(Window {
                base: parse_number(base)?,
                size: parse_size(size)?,
            })
        })
        .collect();
    windows.sort_by_key(|w| w.base);
    windows
}

/// The end of the highest "System RAM" range in /proc/iomem's text.
pub fn parse_ram_end(iomem: &str) -> Option<u64> {
    iomem
        .lines()
        .filter(|l| l.trim_start().ends_with(": System RAM"))
        .filter_map(|l| {
            let (range, _) = l.trim_start().split_once(" : ")?;
            let (_, end) = range.split_once('-')?;
            u64::from_str_radix(end, 16).ok()
        })
        .max()
        .map(|last| last + 1)
}

/// The unclaimed ranges `[start, end)` above RAM the flood may use.
pub fn holes(ram_end: u64, windows: &[Window]) -> Vec<(u64, u64)> {
    let mut ranges = Vec::new();
    let mut start = ram_end.next_multiple_of(PAGE as u64);
    for w in windows {
        if w.base > start {
            ranges.push((start, w.base));
        }
        start = start.max((w.base + w.size).next_multiple_of(PAGE as u64));
    }
    if start < PLATFORM_START {
        ranges.push((start, PLATFORM_START));
    }
    ranges.push((FOUR_GIB.max(start), HIGH_END));
    ranges.retain(|&(s, e)| e > s);
    ranges
}

/// `count` page addresses in `ranges`, chosen by `next`: each range gets
/// its share, and the first pages after each window are always included
/// (they are where the VMM's own address arithmetic is most likely off).
pub fn choose_pages(ranges: &[(u64, u64)], count: u64, mut next: impl FnMut() -> u64) -> Vec<u64> {
    let mut pages = Vec::new();
    let per_range = (count / ranges.len().max(1) as u64).max(1);
    for &(start, end) in ranges {
        let span = (end - start) / PAGE as u64;
        pages.push(start);
        for _ in 1..per_range.min(span) {
            pages.push(start + next() % span * PAGE as u64);
        }
    }
    pages.sort_unstable();
    pages.dedup();
    pages
}

/// Opens /dev/mem and maps the targets; `next` is the flood's generator.
pub fn map_targets(next: impl FnMut() -> u64) -> io::Result<Targets> {
    let cmdline = std::fs::read_to_string("/proc/cmdline")?;
    let iomem = std::fs::read_to_string("/proc/iomem")?;
    let windows = parse_windows(&cmdline);
    let ram_end = parse_ram_end(&iomem).ok_or_else(|| {
        io::Error::new(io::ErrorKind::InvalidData, "no System RAM in /proc/iomem")
    })?;
    let devmem: File = OpenOptions::new().read(true).write(true).open("/dev/mem")?;
    let mut targets = Targets {
        windows: Vec::new(),
        holes: Vec::new(),
    };
    for w in &windows {
        for page in (w.base..w.base + w.size).step_by(PAGE) {
            targets.windows.push(PhysPage::map(&devmem, page)?);
        }
    }
    // A page the guest kernel will not map (e.g. past the physical address
    // width the VMM's CPUID reports) is skipped; none at all is an error.
    let mut refused = None;
    for page in choose_pages(&holes(ram_end, &windows), HOLE_PAGES, next) {
        match PhysPage::map(&devmem, page) {
            Ok(p) => targets.holes.push(p),
            Err(e) => refused = Some(e),
        }
    }
    match refused {
        Some(e) if targets.holes.is_empty() => Err(e),
        _ => Ok(targets),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CMDLINE: &str = "console=ttyS0 quiet nolapic virtio_mmio.device=4K@0xd0001000:6 \
                           virtio_mmio.device=4K@0xd0000000:5 panic=1";

    #[test]
    fn windows_and_ram_from_the_guest_view() {
        assert_eq!(
            parse_windows(CMDLINE),
            [
                Window {
                    base: 0xd000_0000,
                    size: 4096
                },
                Window {
                    base: 0xd000_1000,
                    size: 4096
                }
            ]
        );
        assert_eq!(parse_windows("virtio_mmio.device=4X@zz:5 root=/dev/x"), []);
        let iomem = "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n\
                     00100000-0fffffff : System RAM\n  01000000-01ffffff : Kernel code\n\
                     d0000000-d0000fff : virtio-mmio.0\n";
        assert_eq!(parse_ram_end(iomem), Some(0x1000_0000));
        assert_eq!(parse_ram_end("d0000000-d0000fff : virtio0\n"), None);
    }

    #[test]
    fn holes_skip_ram_and_windows() {
        let windows = parse_windows(CMDLINE);
        let h = holes(0x1000_0000, &windows);
        assert_eq!(
            h,
            [
                (0x1000_0000, 0xd000_0000),
                (0xd000_2000, PLATFORM_START),
                (FOUR_GIB, HIGH_END)
            ]
        );
        let mut x = 1u64;
        let pages = choose_pages(&h, 32, || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            x >> 11
        });
        assert!(pages.len() >= 25 && pages.len() <= 32, "{}", pages.len());
        assert!(pages.contains(&0xd000_2000));
        for p in pages {
            assert_eq!(p % PAGE as u64, 0);
            assert!(h.iter().any(|&(s, e)| p >= s && p < e), "{p:#x}");
        }
    }
}
