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
    names: Vec<String>,
}

/// Where the kernel lives: code below this is not the kernel's.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

impl Symbols {
    /// Parses `nm -C -n` output: `<hex address> <type> <name>` for code
    /// symbols (`t`/`T`/`w`/`W`).
    pub fn parse(nm: &str) -> Symbols {
        let mut pairs: Vec<(u64, String)> = nm
            .lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
                let kind = parts.next()?;
                let name = parts.next()?;
                matches!(kind, "t" | "T" | "w" | "W").then(|| (addr, name.to_string()))
            })
            .collect();
        pairs.sort_by_key(|p| p.0);
        let (starts, names) = pairs.into_iter().unzip();
        Symbols { starts, names }
    }

    pub fn load(image: &Path) -> std::io::Result<Symbols> {
        let out = Command::new("nm").args(["-C", "-n"]).arg(image).output()?;
        if !out.status.success() {
            return Err(std::io::Error::other(format!(
                "nm {} failed",
                image.display()
            )));
        }
        Ok(Symbols::parse(&String::from_utf8_lossy(&out.stdout)))
    }

    /// The function containing `addr`, if any precedes it.
    pub fn name(&self, addr: u64) -> &str {
        match self.starts.partition_point(|&s| s <= addr) {
            0 => "?",
            i => &self.names[i - 1],
        }
    }

    /// The function's name, or for code outside the kernel (firmware, a
    /// user-mode component) `? (page 0x...)`.
    pub fn label(&self, addr: u64) -> String {
        match self.name(addr) {
            "?" => format!("? (page {:#x})", addr & !0xfff),
            _ if addr < KERNEL_HALF && self.starts.first().is_some_and(|&s| s >= KERNEL_HALF) => {
                format!("? (page {:#x})", addr & !0xfff)
            }
            name => name.to_string(),
        }
    }
}

/// The kernel image `opts` boots, and its symbols.
pub fn symbols(host: &Host, opts: &ProfileOptions, io: &mut Streams) -> Option<Symbols> {
    let image = opts
        .run
        .kernel
        .clone()
        .unwrap_or_else(|| host.kernel_image());
    match Symbols::load(&image) {
        Ok(s) => Some(s),
        Err(e) => {
            io.say(&format!("profile: cannot read the kernel's symbols: {e}"));
            None
        }
    }
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
mod tests {
    use super::*;

    const NM: &str = "\
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
    fn code_outside_the_kernel_is_labelled_by_page() {
        let s = Symbols::parse(NM);
        assert_eq!(s.label(0xffff_ffff_8000_3001), "memcpy");
        assert_eq!(s.label(0xe_a123), "? (page 0xea000)");
        // A user-mode address, above no kernel symbol but in the lower half.
        let low = Symbols::parse("0000000000001000 T low\nffffffff80000000 T high\n");
        assert_eq!(low.label(0x1010), "low");
        assert_eq!(s.label(0x4000_1234), "? (page 0x40001000)");
    }
}
