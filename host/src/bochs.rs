//! Booting under Bochs 2.7 (Debian's `bochs`): the bochsrc, starting
//! Bochs, and what its end means.
//!
//! Bochs has no `-kernel`: it boots the GRUB CD of `grub.rs` on an
//! i440FX PC. COM1 goes to a file that `run` tails; Bochs' log to another,
//! whose panics and errors are shown when a boot fails. Debian builds
//! Bochs with its debugger (it stops before the first instruction: a
//! debugger script says `continue`) and without `nogui`: the SDL display
//! stands in, on SDL's dummy video driver (no window; the VNC display `rfb`
//! would listen on a port of every interface). The OS powers off through
//! ACPI, after which Bochs exits with status 1 whatever the code: the
//! code comes from the kernel's `starina: power off with code C` line.

use std::path::Path;
use std::path::PathBuf;
use std::process::Command;

use crate::process::find_program;
use crate::status::ExitStatus;
use crate::status::QemuEnd;

/// The CPU Bochs emulates: VMX with EPT, or SVM with NRIP save.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cpu {
    Intel,
    Amd,
}

impl Cpu {
    pub const NAMES: [&'static str; 2] = ["intel", "amd"];

    pub fn parse(name: &str) -> Option<Cpu> {
        match name {
            "intel" => Some(Cpu::Intel),
            "amd" => Some(Cpu::Amd),
            _ => None,
        }
    }

    /// Bochs' `cpu: model=` name.
    pub fn model(self) -> &'static str {
        match self {
            Cpu::Intel => "tigerlake",
            Cpu::Amd => "ryzen",
        }
    }
}

/// Emulated instructions per emulated second: the TSC's rate. With
/// `clock: sync=none` guest time counts instructions, so a guest second
/// is the same work on every run; this is about what Bochs runs per host
/// second here, so guest time stays near wall time.
pub const IPS: u64 = 200_000_000;

/// Where the BIOS images are (Debian's `bochsbios`, `vgabios`).
const BIOS: &str = "/usr/share/bochs/BIOS-bochs-latest";
const VGA_BIOS: &str = "/usr/share/bochs/VGABIOS-lgpl-latest";

/// Everything that decides the bochsrc.
#[derive(Clone, Debug)]
pub struct BochsConfig {
    pub cpu: Cpu,
    /// How many CPUs (`--smp`; Bochs runs them in turn on one host
    /// thread, so each is slower).
    pub cpus: u8,
    pub memory_mib: u32,
    pub cdrom: PathBuf,
    /// COM1's output.
    pub serial: PathBuf,
    pub log: PathBuf,
    /// COM2, the host link (`exec`): the TCP port on 127.0.0.1 that Bochs
    /// connects it to. `None`: no COM2.
    pub host_link_port: Option<u16>,
}

impl BochsConfig {
    /// The bochsrc text.
    pub fn bochsrc(&self) -> String {
        let lines = [
            // No sound, speaker, joystick or printer (the speaker's ALSA
            // probe crashes Bochs on a machine without a sound card).
            "plugin_ctrl: speaker=0, gameport=0, parallel=0, iodebug=0".to_string(),
            "sound: waveoutdrv=dummy, waveindrv=dummy, midioutdrv=dummy".to_string(),
            "config_interface: textconfig".to_string(),
            "display_library: sdl2".to_string(),
            format!("megs: {}", self.memory_mib),
            format!("romimage: file={BIOS}"),
            format!("vgaromimage: file={VGA_BIOS}"),
            // A triple fault stops Bochs (a panic, fatal below) as
            // QEMU's -no-reboot does.
            format!(
                "cpu: model={}, count={}, ips={IPS}, reset_on_triple_fault=0",
                self.cpu.model(),
                self.cpus.max(1)
            ),
            "clock: sync=none, time0=local".to_string(),
            "pci: enabled=1, chipset=i440fx".to_string(),
            format!(
                "ata0-master: type=cdrom, path=\"{}\", status=inserted",
                self.cdrom.display()
            ),
            "boot: cdrom".to_string(),
            format!(
                "com1: enabled=1, mode=file, dev=\"{}\"",
                self.serial.display()
            ),
            match self.host_link_port {
                Some(port) => format!("com2: enabled=1, mode=socket-client, dev=127.0.0.1:{port}"),
                None => "com2: enabled=0".to_string(),
            },
            format!("log: \"{}\"", self.log.display()),
            // Never stop to ask: a panic ends Bochs, the rest is logged.
            "panic: action=fatal".to_string(),
            "error: action=report".to_string(),
            "info: action=report".to_string(),
            "debug: action=ignore".to_string(),
        ];
        lines.join("\n") + "\n"
    }
}

impl BochsConfig {
    /// Writes the bochsrc and the debugger script into `dir`; their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf), String> {
        let (rc, script) = (dir.join("bochsrc"), dir.join("continue.rc"));
        std::fs::write(&rc, self.bochsrc())
            .and_then(|()| std::fs::write(&script, DEBUGGER_SCRIPT))
            .map_err(|e| format!("cannot write {}: {e}", rc.display()))?;
        Ok((rc, script))
    }
}

/// The debugger script: run the machine (Debian's Bochs stops at reset).
pub const DEBUGGER_SCRIPT: &str = "continue\n";

/// `bochs-bin -q -f <bochsrc> -rc <script>`; `bochs-bin` is the binary
/// behind Debian's `bochs` wrapper script, which adds `-q` itself. Bochs
/// gets SIGKILL if the thread that starts it dies, as QEMU does.
pub fn command(bochsrc: &Path, script: &Path) -> Result<Command, (ExitStatus, String)> {
    let bochs = find_program("bochs-bin")
        .or_else(|| find_program("bochs"))
        .ok_or((
            ExitStatus::NoQemu,
            "Bochs not found: run scripts/setup (packages bochs, bochsbios, vgabios)".to_string(),
        ))?;
    let mut cmd = match find_program("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(bochs);
            c
        }
        None => Command::new(bochs),
    };
    cmd.arg("-q").arg("-f").arg(bochsrc).arg("-rc").arg(script);
    // SDL's offscreen driver: a display nobody sees, and no window or
    // network listener (the VGA screen is not where the console is).
    cmd.env("SDL_VIDEODRIVER", "dummy");
    Ok(cmd)
}

/// The OS's status from how Bochs ended: the code of the kernel's power
/// off line if it printed one, else no status (a crash: a triple fault
/// is a Bochs panic) or, if the OS printed nothing, nothing booted.
pub fn os_status(end: QemuEnd, power_off: Option<u8>, serial_bytes: usize) -> ExitStatus {
    match (power_off, end) {
        (Some(code), _) => ExitStatus::from_exit(code as i32),
        (None, QemuEnd::Exited(_)) if serial_bytes == 0 => ExitStatus::NotBooted,
        (None, _) => ExitStatus::NoStatus,
    }
}

/// The lines of Bochs' log worth showing when a boot fails: panics and
/// errors (`...p[DEV ] >>PANIC<< ...`, `...e[DEV ] ...`), at most `max`.
pub fn log_problems(log: &str, max: usize) -> Vec<&str> {
    log.lines()
        .filter(|line| {
            let level = line
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .chars()
                .next();
            matches!(level, Some('p' | 'e'))
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(cpu: Cpu) -> BochsConfig {
        BochsConfig {
            cpu,
            cpus: 1,
            memory_mib: 512,
            cdrom: "/c/starina.iso".into(),
            serial: "/t/serial.txt".into(),
            log: "/t/bochs.log".into(),
            host_link_port: None,
        }
    }

    #[test]
    fn bochsrc_lines() {
        let rc = config(Cpu::Intel).bochsrc();
        for line in [
            "display_library: sdl2",
            "megs: 512",
            "cpu: model=tigerlake, count=1, ips=200000000, reset_on_triple_fault=0",
            "clock: sync=none, time0=local",
            "ata0-master: type=cdrom, path=\"/c/starina.iso\", status=inserted",
            "boot: cdrom",
            "com1: enabled=1, mode=file, dev=\"/t/serial.txt\"",
            "log: \"/t/bochs.log\"",
            "panic: action=fatal",
            "plugin_ctrl: speaker=0, gameport=0, parallel=0, iodebug=0",
        ] {
            assert!(rc.lines().any(|l| l == line), "{line:?} not in\n{rc}");
        }
        assert!(rc.lines().any(|l| l == "com2: enabled=0"), "{rc}");
        let rc = config(Cpu::Amd).bochsrc();
        assert!(rc.contains("cpu: model=ryzen,"), "{rc}");
        let rc = BochsConfig {
            cpus: 2,
            ..config(Cpu::Intel)
        }
        .bochsrc();
        assert!(rc.contains("cpu: model=tigerlake, count=2,"), "{rc}");
        let rc = BochsConfig {
            host_link_port: Some(4567),
            ..config(Cpu::Intel)
        }
        .bochsrc();
        let com2 = "com2: enabled=1, mode=socket-client, dev=127.0.0.1:4567";
        assert!(rc.lines().any(|l| l == com2), "{rc}");
    }

    #[test]
    fn cpu_names() {
        assert_eq!(Cpu::parse("intel"), Some(Cpu::Intel));
        assert_eq!(Cpu::parse("amd").map(Cpu::model), Some("ryzen"));
        assert_eq!(Cpu::parse("arm"), None);
    }

    #[test]
    fn status_from_the_power_off_line() {
        // Bochs exits 1 after ACPI soft-off, whatever the code.
        assert_eq!(
            os_status(QemuEnd::Exited(1), Some(0), 10),
            ExitStatus::Code(0)
        );
        assert_eq!(os_status(QemuEnd::Exited(1), Some(3), 10).code(), 3);
        assert_eq!(
            os_status(QemuEnd::Exited(1), None, 10),
            ExitStatus::NoStatus
        );
        assert_eq!(
            os_status(QemuEnd::Exited(1), None, 0),
            ExitStatus::NotBooted
        );
        assert_eq!(os_status(QemuEnd::Killed(9), None, 0), ExitStatus::NoStatus);
    }

    #[test]
    fn log_problems_are_panics_and_errors() {
        let log = "00000000000i[MEM0  ] 512.00MB\n\
                   01126309859p[CPU0  ] >>PANIC<< triple fault\n\
                   00000000010e[DEV   ] something\n";
        assert_eq!(
            log_problems(log, 5),
            [
                "01126309859p[CPU0  ] >>PANIC<< triple fault",
                "00000000010e[DEV   ] something"
            ]
        );
    }
}
