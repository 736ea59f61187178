//! `starina profile`: where the guest's instructions go. Two samplers:
//!
//! - `insn` (the default, [`crate::profile_insn`]): a QEMU TCG plugin counts
//!   every instruction the guest runs, by call stack; the result is a table
//!   per function (self and inclusive instructions, calls), the folded
//!   stacks and a flame graph under `target/profile/`.
//! - `gdb` ([`crate::profile_gdb`]): stops the guest every few milliseconds
//!   through QEMU's gdbstub and reads RIP and the frame-pointer chain:
//!   statistical, but cheap enough to watch the guest at full speed.
//!
//! Both name addresses with the kernel image's symbols (`nm`).

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::Duration;

use crate::host::Host;
use crate::host::Streams;
use crate::kernel::Progress;
use crate::linux_symbols::LinuxSymbols;
use crate::run::RunOptions;
use crate::shared_text::SharedText;
use crate::status::ExitStatus;

/// How `starina profile` looks at the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    /// Every instruction, counted by a QEMU plugin.
    Insn,
    /// RIP and the frame-pointer chain, read through the gdbstub.
    Gdb,
}

impl Sampler {
    pub fn parse(name: &str) -> Result<Sampler, String> {
        match name {
            "insn" => Ok(Sampler::Insn),
            "gdb" => Ok(Sampler::Gdb),
            other => Err(format!("profile: unknown sampler '{other}' (insn or gdb)")),
        }
    }
}

/// `starina profile` options.
#[derive(Clone, Debug)]
pub struct ProfileOptions {
    pub run: RunOptions,
    pub sampler: Sampler,
    /// Where the results go (`insn`; default `target/profile/`).
    pub out_dir: Option<PathBuf>,
    /// How long to count (or sample), in wall-clock seconds.
    pub seconds: f64,
    /// Time between samples (`gdb` only).
    pub interval: Duration,
    /// How many functions to list.
    pub top: usize,
    /// Seconds to let the guest run after it is ready, before counting.
    pub skip: f64,
}

/// The kernel's functions, sorted by address.
pub struct Symbols {
    starts: Vec<u64>,
    /// Where each function ends, if `nm` knows its size.
    ends: Vec<Option<u64>>,
    names: Vec<String>,
    /// The image's executable sections (start, end): code outside them is
    /// no function of ours, whatever symbol precedes it.
    code: Vec<(u64, u64)>,
    /// The Linux guest kernel's functions, for profiles that boot it.
    linux: Option<LinuxSymbols>,
}

/// Where the kernel lives: code below this is not the kernel's.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

impl Symbols {
    /// Parses `nm -C -n -S` output: `<hex address> [<hex size>] <type>
    /// <name>` for code symbols (`t`/`T`/`w`/`W`).
    pub fn parse(nm: &str) -> Symbols {
        let mut rows: Vec<(u64, Option<u64>, String)> = nm.lines().filter_map(parse_line).collect();
        rows.sort_by_key(|r| r.0);
        let mut symbols = Symbols {
            starts: Vec::new(),
            ends: Vec::new(),
            names: Vec::new(),
            code: Vec::new(),
            linux: None,
        };
        for (start, size, name) in rows {
            symbols.starts.push(start);
            symbols.ends.push(size.map(|n| start + n));
            symbols.names.push(name);
        }
        symbols
    }

    pub fn load(image: &Path) -> std::io::Result<Symbols> {
        let out = Command::new("nm")
            .args(["-C", "-n", "-S"])
            .arg(image)
            .output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "nm {} failed",
                image.display()
            )));
        }
        let mut symbols = Symbols::parse(&String::from_utf8_lossy(&out.stdout));
        let sections = Command::new("readelf").arg("-SW").arg(image).output()?;
        if sections.status.success() {
            symbols.code = code_sections(&String::from_utf8_lossy(&sections.stdout));
        }
        Ok(symbols)
    }

    /// The function containing `addr`: the last one starting at or below
    /// it, unless `addr` is past that one's end (code no symbol covers,
    /// such as a nested guest's, whose addresses may fall among ours).
    pub fn name(&self, addr: u64) -> &str {
        match self.starts.partition_point(|&s| s <= addr) {
            0 => "?",
            i if self.ends[i - 1].is_some_and(|end| addr >= end) => "?",
            _ if !self.code.is_empty()
                && !self.code.iter().any(|&(a, b)| (a..b).contains(&addr)) =>
            {
                "?"
            }
            i => &self.names[i - 1],
        }
    }

    /// Names the Linux guest kernel's code too (`linux: <function>`).
    pub fn with_linux(mut self, linux: LinuxSymbols) -> Symbols {
        self.linux = Some(linux);
        self
    }

    /// The function's name, `linux: <function>` for the Linux guest
    /// kernel's (when its symbols are known), or for other code outside
    /// the kernel (firmware, a user-mode component, Linux's programs)
    /// `? (page 0x...)`.
    pub fn label(&self, addr: u64) -> String {
        match self.name(addr) {
            "?" => match self.linux.as_ref().and_then(|l| l.name(addr)) {
                Some(name) => format!("linux: {name}"),
                None => format!("? (page {:#x})", addr & !0xfff),
            },
            _ if addr < KERNEL_HALF && self.starts.first().is_some_and(|&s| s >= KERNEL_HALF) => {
                format!("? (page {:#x})", addr & !0xfff)
            }
            name => name.to_string(),
        }
    }
}

/// One code symbol of `nm -S` output: start, size (if listed), name.
fn parse_line(line: &str) -> Option<(u64, Option<u64>, String)> {
    let hex = |s: &str| u64::from_str_radix(s, 16).ok();
    let mut parts = line.splitn(2, ' ');
    let start = hex(parts.next()?)?;
    let rest = parts.next()?;
    // A size is a second hex field; a type is one letter.
    let (size, rest) = match rest.split_once(' ') {
        Some((field, tail)) if field.len() > 1 => (Some(hex(field)?), tail),
        _ => (None, rest),
    };
    let (kind, name) = rest.split_once(' ')?;
    matches!(kind, "t" | "T" | "w" | "W").then(|| (start, size, name.to_string()))
}

/// The executable sections in `readelf -SW` output, as (start, end).
fn code_sections(readelf: &str) -> Vec<(u64, u64)> {
    readelf
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(']').nth(1)?.split_whitespace().collect();
            // Name, Type, Address, Off, Size, ES, Flg, ...
            let (addr, size, flags) = (fields.get(2)?, fields.get(4)?, fields.get(6)?);
            let addr = u64::from_str_radix(addr, 16).ok()?;
            let size = u64::from_str_radix(size, 16).ok()?;
            (flags.contains('X') && size > 0).then_some((addr, addr + size))
        })
        .collect()
}

/// The kernel image `opts` boots, and its symbols.
pub fn symbols(host: &Host, opts: &ProfileOptions, io: &mut Streams) -> Option<Symbols> {
    let image = opts
        .run
        .kernel
        .clone()
        .unwrap_or_else(|| host.kernel_image());
    match Symbols::load(&image) {
        Ok(s) => Some(match linux_symbols(host, opts, io) {
            Some(linux) => s.with_linux(linux),
            None => s,
        }),
        Err(e) => {
            io.say(&format!("profile: cannot read the kernel's symbols: {e}"));
            None
        }
    }
}

/// The Linux guest kernel's symbols, if the profile boots Linux and the
/// kernel's build tree (its `System.map`) is at hand.
fn linux_symbols(host: &Host, opts: &ProfileOptions, io: &mut Streams) -> Option<LinuxSymbols> {
    let components = crate::boot::profile_components(host, &opts.run.profile, io);
    if !components.iter().any(|c| c == "linux") {
        return None;
    }
    let bzimage =
        crate::bootfs::linux_artifact(host, "build-kernel.sh", Progress::WhenSlow, &mut |_| {})
            .ok()?;
    let found = LinuxSymbols::find(&bzimage).and_then(|map| LinuxSymbols::load(&map));
    if found.is_none() {
        io.say("profile: no System.map next to the Linux kernel: its code shows as pages");
    }
    found
}

/// The guest, booting in a thread of its own; its console is kept.
pub struct Boot {
    pub console: SharedText,
    pub thread: thread::JoinHandle<ExitStatus>,
}

impl Boot {
    pub fn start(host: &Host, run: RunOptions) -> Boot {
        let runner_host = host.batch();
        let console = SharedText::new();
        let mut out = console.clone();
        let thread = thread::spawn(move || {
            let mut err = std::io::stderr();
            let mut io = Streams {
                out: &mut out,
                err: &mut err,
            };
            crate::run::run(&runner_host, &run, &mut io).status
        });
        Boot { console, thread }
    }

    /// Waits for the kernel's ready marker, then `skip` seconds more.
    pub fn wait_ready(&self, skip: f64, io: &mut Streams) -> bool {
        let ready =
            (self.console).wait_while(crate::markers::READY, Duration::from_secs(300), || {
                !self.thread.is_finished()
            });
        if !ready {
            io.say("profile: the kernel never said it was ready");
            return false;
        }
        thread::sleep(Duration::from_secs_f64(skip));
        true
    }

    /// Stops QEMU (if it still runs) and returns how the run ended.
    pub fn stop(self, host: &Host) -> ExitStatus {
        host.stop.request(crate::status::SIGTERM);
        self.thread.join().unwrap_or(ExitStatus::Failed)
    }

    /// Stops QEMU after a failure: the run's own status if it failed too
    /// (QEMU missing, the kernel not built, ...), otherwise `Failed`.
    pub fn fail(self, host: &Host) -> ExitStatus {
        match self.stop(host) {
            ExitStatus::Success | ExitStatus::Signal(_) => ExitStatus::Failed,
            status => status,
        }
    }
}

pub fn profile(host: &Host, opts: &ProfileOptions, io: &mut Streams) -> ExitStatus {
    match opts.sampler {
        Sampler::Insn => crate::profile_insn::profile(host, opts, io),
        Sampler::Gdb => crate::profile_gdb::profile(host, opts, io),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A kernel's `nm` output, for the profilers' tests.
    pub(crate) const NM: &str = "\
ffffffff80000000 T _start
ffffffff80001000 t starina_kernel::sched::switch
ffffffff80001200 T starina_kernel::syscall::wait
ffffffff80002000 r SOME_DATA
ffffffff80003000 W memcpy
";

    #[test]
    fn symbols_name_the_function_an_address_falls_in() {
        let s = Symbols::parse(NM);
        assert_eq!(
            s.name(0xffff_ffff_8000_1010),
            "starina_kernel::sched::switch"
        );
        assert_eq!(
            s.name(0xffff_ffff_8000_1200),
            "starina_kernel::syscall::wait"
        );
        // Data symbols are not functions: still in `wait` here.
        assert_eq!(
            s.name(0xffff_ffff_8000_2004),
            "starina_kernel::syscall::wait"
        );
        assert_eq!(s.name(0xffff_ffff_8000_3001), "memcpy");
        assert_eq!(s.name(0x1000), "?");
    }

    #[test]
    fn code_past_a_sized_function_is_nobodys() {
        let s = Symbols::parse(
            "ffffffff80001000 0000000000000100 t starina_kernel::sched::switch\n\
             ffffffff80002000 0000000000000040 T __udivti3\n",
        );
        assert_eq!(
            s.name(0xffff_ffff_8000_10ff),
            "starina_kernel::sched::switch"
        );
        assert_eq!(s.name(0xffff_ffff_8000_1100), "?");
        assert_eq!(s.name(0xffff_ffff_8000_2010), "__udivti3");
        // A nested guest's kernel text, above everything of ours.
        assert_eq!(s.name(0xffff_ffff_8100_0000), "?");
    }

    #[test]
    fn only_executable_sections_hold_code() {
        let readelf = "\
  [Nr] Name              Type            Address          Off    Size   ES Flg Lk Inf Al
  [ 0]                   NULL            0000000000000000 000000 000000 00      0   0  0
  [ 1] .boot             PROGBITS        0000000000100000 001000 009000 00 WAX  0   0 4096
  [ 3] .text             PROGBITS        ffffffff8010a000 00b000 0dbc6e 00  AX  0   0 16
  [ 4] .rodata           PROGBITS        ffffffff801e6000 0e7000 026a78 00 AMSo  0   0 16
";
        assert_eq!(
            code_sections(readelf),
            [
                (0x10_0000, 0x10_9000),
                (0xffff_ffff_8010_a000, 0xffff_ffff_801e_5c6e)
            ]
        );
        let mut s = Symbols::parse("0000000000105000 t boot_pd\n");
        s.code = code_sections(readelf);
        assert_eq!(s.name(0x10_5010), "boot_pd");
        // A guest kernel loaded at 16 MiB is not in `boot_pd`.
        assert_eq!(s.name(0x100_0000), "?");
    }

    #[test]
    fn code_outside_the_kernel_is_labelled_by_page() {
        let s = Symbols::parse(NM);
        assert_eq!(s.label(0xffff_ffff_8000_3001), "memcpy");
        assert_eq!(s.label(0xe_a123), "? (page 0xea000)");
        // A user-mode address, above no kernel symbol but in the lower half.
        let low = Symbols::parse("0000000000001000 T low\nffffffff80000000 T high\n");
        assert_eq!(low.label(0x1010), "low");
        assert_eq!(s.label(0x4000_1234), "? (page 0x40001000)");
    }

    #[test]
    fn the_linux_guests_code_is_named_from_its_system_map() {
        let map = "ffffffff81000000 T startup_64\nffffffff81001000 t csum_partial\nffffffff81009000 T _etext\n";
        let linux = LinuxSymbols::parse(map).unwrap();
        let mut s = Symbols::parse(NM).with_linux(linux);
        // Starina's image ends where Linux's text begins.
        s.code = vec![(0xffff_ffff_8000_0000, 0xffff_ffff_8000_4000)];
        assert_eq!(s.label(0xffff_ffff_8000_3001), "memcpy");
        assert_eq!(s.label(0xffff_ffff_8100_1010), "linux: csum_partial");
        // Linux's programs are pages still.
        assert_eq!(s.label(0x40_1234), "? (page 0x401000)");
    }
}
