//! The QEMU command line (docs/CONTRACTS.md, "Booting") and starting QEMU.

use std::path::Path;
use std::path::PathBuf;
use std::process::Child;
use std::process::Command;

use crate::host::Host;
use crate::process::find_program;
use crate::status::ExitStatus;

/// The QEMU machine types Starina boots on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    Q35,
    Microvm,
}

impl Machine {
    pub const NAMES: [&'static str; 2] = ["q35", "microvm"];

    pub fn parse(name: &str) -> Option<Machine> {
        match name {
            "q35" => Some(Machine::Q35),
            "microvm" => Some(Machine::Microvm),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Machine::Q35 => "q35",
            Machine::Microvm => "microvm",
        }
    }

    /// The virtio transport's device name suffix: `-device` on microvm, `-pci` on q35.
    fn virtio(self, device: &str) -> String {
        match self {
            Machine::Microvm => format!("{device}-device"),
            Machine::Q35 => format!("{device}-pci"),
        }
    }
}

/// Where the host link (the hostlink driver's virtio-console port) goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostLink {
    /// The profile has no hostlink driver: no device.
    None,
    /// A device connected to nothing (`run`), so that the profile boots whole.
    Null,
    /// A device connected to this Unix socket, on which we listen (`exec`).
    Socket(PathBuf),
}

/// The most CPUs `--smp` gives the guest: the kernel's `percpu::MAX_CPUS`.
pub const MAX_CPUS: u8 = 8;
/// The guest's CPUs unless told (`run`, `exec`, `up`, `bench`): two, so
/// that the network's threads run beside a Linux guest's vCPU, as QEMU's
/// own network runs beside its vCPU thread when it boots Linux directly.
pub const DEFAULT_CPUS: u8 = 2;

/// Everything that decides the QEMU command line.
#[derive(Clone, Debug)]
pub struct QemuConfig {
    pub machine: Machine,
    pub profile: String,
    pub kernel: PathBuf,
    pub kvm: bool,
    pub icount: bool,
    /// CPUs (`-smp`), 1 to [`MAX_CPUS`].
    pub cpus: u8,
    /// The boot file system (`-initrd`, and 1 GiB of RAM).
    pub bootfs: Option<PathBuf>,
    /// A NIC on QEMU's user network, the guest's port 80 forwarded here.
    pub nic_port: Option<u16>,
    pub hostlink: HostLink,
    /// A raw disk image for the virtio-blk disk (profiles with the
    /// `virtio_blk` driver).
    pub disk: Option<PathBuf>,
    /// QEMU's human monitor (HMP) on this Unix socket, on which QEMU
    /// listens ([`crate::forwards`] adds port forwards through it).
    pub monitor: Option<PathBuf>,
    /// Appended as they are.
    pub extra: Vec<String>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl QemuConfig {
    /// The arguments after the QEMU binary; `serial` says where the serial port goes.
    pub fn args(&self, serial: &[String]) -> Vec<String> {
        let mut a = strings(&["-M", self.machine.name()]);
        if self.kvm {
            // Real KVM hosts only (nested virtualization on): this project's
            // machines have a PVM-only /dev/kvm on which this hangs.
            a.extend(strings(&["-enable-kvm", "-cpu", "host"]));
        } else {
            a.extend(strings(&["-cpu", "max"]));
        }
        let memory = if self.bootfs.is_some() { "1G" } else { "512M" };
        a.extend(strings(&[
            "-m", memory, "-display", "none", "-monitor", "none",
        ]));
        a.extend(self.cpu_args());
        a.extend(self.monitor_args());
        a.extend(strings(&[
            "-no-reboot",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]));
        a.extend_from_slice(serial);
        if self.icount {
            // Guest time counts instructions: rdtsc deltas are instruction counts.
            a.extend(strings(&["-icount", "shift=0"]));
        }
        a.extend(self.nic_args());
        a.extend(strings(&["-kernel", &self.kernel.to_string_lossy()]));
        a.extend(strings(&["-append", &format!("profile={}", self.profile)]));
        if let Some(bootfs) = &self.bootfs {
            a.extend(strings(&["-initrd", &bootfs.to_string_lossy()]));
        }
        a.extend(self.hostlink_args());
        a.extend(self.disk_args());
        a.extend(self.extra.iter().cloned());
        a
    }

    /// CPUs: more than one run in parallel under multi-threaded TCG, or
    /// in turn under `-icount` (which needs single-threaded TCG); KVM
    /// runs them as it does.
    fn cpu_args(&self) -> Vec<String> {
        if self.cpus <= 1 {
            return Vec::new();
        }
        let mut a = strings(&["-smp", &self.cpus.to_string()]);
        if !self.kvm {
            let threads = if self.icount { "single" } else { "multi" };
            a.extend(strings(&["-accel", &format!("tcg,thread={threads}")]));
        }
        a
    }

    /// NIC: the one place for network arguments. One virtio-net NIC on
    /// QEMU's user-mode network (the guest is 10.0.2.15 by DHCP, the host
    /// 10.0.2.2, DNS 10.0.2.3), the guest's port 80 (httpd) forwarded to
    /// 127.0.0.1:<port>. `-nic none` first drops QEMU's default NIC.
    fn nic_args(&self) -> Vec<String> {
        let mut a = strings(&["-nic", "none"]);
        if let Some(port) = self.nic_port {
            let netdev = format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80");
            let device = format!("{},netdev=n0", self.machine.virtio("virtio-net"));
            a.extend(strings(&["-netdev", &netdev, "-device", &device]));
        }
        a
    }

    /// Disk: the one place for disk arguments. The image as a raw virtio-blk
    /// disk, through the host's page cache (`cache=writeback`: the guest's
    /// flush is an fsync of the image).
    fn disk_args(&self) -> Vec<String> {
        let Some(path) = &self.disk else {
            return Vec::new();
        };
        // QEMU splits -drive options at commas; a comma in the path is doubled.
        let file = path.to_string_lossy().replace(',', ",,");
        let drive = format!("file={file},if=none,format=raw,id=disk0,cache=writeback");
        let device = format!("{},drive=disk0", self.machine.virtio("virtio-blk"));
        strings(&["-drive", &drive, "-device", &device])
    }

    /// Monitor: `-monitor none` drops QEMU's default one; the HMP monitor on
    /// the socket is a chardev of its own (`server=on,wait=off`: QEMU
    /// listens and does not wait for us), as `-monitor unix:...` would make.
    fn monitor_args(&self) -> Vec<String> {
        let Some(path) = &self.monitor else {
            return Vec::new();
        };
        // QEMU splits -chardev options at commas; a comma in the path is doubled.
        let path = path.to_string_lossy().replace(',', ",,");
        let chardev = format!("socket,id=monitor,path={path},server=on,wait=off");
        strings(&[
            "-chardev",
            &chardev,
            "-mon",
            "chardev=monitor,mode=readline",
        ])
    }

    fn hostlink_args(&self) -> Vec<String> {
        let chardev = match &self.hostlink {
            HostLink::None => return Vec::new(),
            HostLink::Null => "null,id=hostlink".to_string(),
            HostLink::Socket(path) => format!("socket,id=hostlink,path={}", path.display()),
        };
        let bus = format!("{},id=hostlink-bus", self.machine.virtio("virtio-serial"));
        strings(&[
            "-chardev",
            &chardev,
            "-device",
            &bus,
            "-device",
            "virtconsole,chardev=hostlink,bus=hostlink-bus.0",
        ])
    }
}

/// The serial port on QEMU's stdout (a pipe to us), not as `-serial stdio`:
/// QEMU reopens `/dev/fd/1`.
pub fn serial_to_stdout() -> Vec<String> {
    strings(&[
        "-chardev",
        "file,id=ser0,path=/dev/fd/1",
        "-serial",
        "chardev:ser0",
    ])
}

/// The serial port on QEMU's stdio (an interactive console). Every key
/// goes to the guest, Ctrl-C as the byte 0x03 (`signal=off`: QEMU puts the
/// terminal in raw mode without signals) and Ctrl-A too (the shell's
/// start of line): the escape key of `mux=on` is Ctrl-] (`-echr 0x1d`, as
/// telnet's), so Ctrl-] x quits QEMU.
pub fn serial_stdio() -> Vec<String> {
    strings(&[
        "-echr",
        "0x1d",
        "-chardev",
        "stdio,id=ser0,mux=on,signal=off",
        "-serial",
        "chardev:ser0",
    ])
}

/// What QEMU's stdio console prints when Ctrl-] x quits it.
pub const QUIT_KEY_LINE: &str = "QEMU: Terminated";

/// A `Command` for QEMU with `args`. QEMU gets SIGKILL if the thread that
/// starts it dies (`setpriv --pdeathsig`), so that no QEMU outlives us.
/// Fails with the status to exit with (and says why) if QEMU is not there.
pub fn command(host: &Host, args: &[String]) -> Result<Command, (ExitStatus, String)> {
    let Some(qemu) = find_program(&host.qemu) else {
        let msg = format!(
            "QEMU binary '{}' not found: run scripts/setup (or set STARINA_QEMU)",
            host.qemu
        );
        return Err((ExitStatus::NoQemu, msg));
    };
    let mut cmd = match find_program("setpriv") {
        Some(setpriv) => {
            let mut c = Command::new(setpriv);
            c.args(["--pdeathsig", "KILL", "--"]).arg(&qemu);
            c
        }
        None => Command::new(&qemu),
    };
    cmd.args(args)
        .envs(host.qemu_env.iter().map(|(k, v)| (k, v)));
    Ok(cmd)
}

/// Starts `cmd`, mapping a failure to start to a status and a message.
pub fn spawn(cmd: &mut Command, qemu: &str) -> Result<Child, (ExitStatus, String)> {
    cmd.spawn()
        .map_err(|e| (ExitStatus::NoQemu, format!("cannot run QEMU '{qemu}': {e}")))
}

/// Whether a line QEMU wrote on stderr is an error (not a warning).
pub fn is_error_line(line: &str) -> bool {
    line.contains(": ") && !line.contains("warning:")
}

/// QEMU's "terminating on signal" line: shown only if we did not stop it.
pub fn is_signal_line(line: &str) -> bool {
    line.contains("terminating on signal")
}

/// A file that is the kernel to boot, or why not.
pub fn check_kernel(path: &Path, hint: bool) -> Result<(), String> {
    if path.is_file() {
        return Ok(());
    }
    let hint = if hint {
        " (run scripts/build-kernel, or drop --no-build)"
    } else {
        ""
    };
    Err(format!(
        "kernel image {} does not exist{hint}",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(machine: Machine) -> QemuConfig {
        QemuConfig {
            machine,
            profile: "default".into(),
            kernel: "/k".into(),
            kvm: false,
            icount: false,
            cpus: 1,
            bootfs: None,
            nic_port: Some(8080),
            hostlink: HostLink::None,
            disk: None,
            monitor: None,
            extra: vec![],
        }
    }

    fn has(argv: &[String], window: &[&str]) -> bool {
        argv.windows(window.len())
            .any(|w| w.iter().zip(window).all(|(a, b)| a == b))
    }

    #[test]
    fn default_line() {
        let a = config(Machine::Q35).args(&serial_to_stdout());
        for w in [
            &["-M", "q35"][..],
            &["-cpu", "max"],
            &["-m", "512M"],
            &["-no-reboot"],
            &[
                "-nic",
                "none",
                "-netdev",
                "user,id=n0,hostfwd=tcp:127.0.0.1:8080-:80",
            ],
            &["-device", "virtio-net-pci,netdev=n0"],
            &["-kernel", "/k", "-append", "profile=default"],
            &["-serial", "chardev:ser0"],
        ] {
            assert!(has(&a, w), "{w:?} not in {a:?}");
        }
    }

    #[test]
    fn options() {
        let mut c = config(Machine::Microvm);
        c.kvm = true;
        c.icount = true;
        c.bootfs = Some("/b".into());
        c.nic_port = None;
        c.hostlink = HostLink::Socket("/s".into());
        c.extra = vec!["-s".into()];
        let a = c.args(&serial_stdio());
        for w in [
            &["-chardev", "stdio,id=ser0,mux=on,signal=off"][..],
            &["-echr", "0x1d"],
            &["-serial", "chardev:ser0"],
            &["-enable-kvm", "-cpu", "host"],
            &["-m", "1G"],
            &["-icount", "shift=0"],
            &["-initrd", "/b"],
            &["-chardev", "socket,id=hostlink,path=/s"],
            &["-device", "virtio-serial-device,id=hostlink-bus"],
        ] {
            assert!(has(&a, w), "{w:?} not in {a:?}");
        }
        assert!(!a.iter().any(|x| x == "-netdev"));
        assert_eq!(a.last().unwrap(), "-s");
    }

    #[test]
    fn cpus() {
        let mut c = config(Machine::Q35);
        let a = c.args(&serial_to_stdout());
        assert!(!a.iter().any(|x| x == "-smp" || x == "-accel"), "{a:?}");
        c.cpus = 4;
        let a = c.args(&serial_to_stdout());
        assert!(
            has(&a, &["-smp", "4", "-accel", "tcg,thread=multi"]),
            "{a:?}"
        );
        c.icount = true;
        let a = c.args(&serial_to_stdout());
        assert!(
            has(&a, &["-smp", "4", "-accel", "tcg,thread=single"]),
            "{a:?}"
        );
        c.kvm = true;
        let a = c.args(&serial_to_stdout());
        assert!(
            has(&a, &["-smp", "4"]) && !a.iter().any(|x| x == "-accel"),
            "{a:?}"
        );
    }

    #[test]
    fn monitor_socket() {
        let mut c = config(Machine::Q35);
        assert!(!c.args(&serial_to_stdout()).iter().any(|x| x == "-mon"));
        c.monitor = Some("/t/a,b/monitor.sock".into());
        let a = c.args(&serial_to_stdout());
        let chardev = "socket,id=monitor,path=/t/a,,b/monitor.sock,server=on,wait=off";
        assert!(
            has(
                &a,
                &["-chardev", chardev, "-mon", "chardev=monitor,mode=readline"]
            ),
            "{a:?}"
        );
        assert!(has(&a, &["-monitor", "none"]), "{a:?}");
    }

    #[test]
    fn disk_on_each_machine() {
        for (machine, device) in [
            (Machine::Q35, "virtio-blk-pci,drive=disk0"),
            (Machine::Microvm, "virtio-blk-device,drive=disk0"),
        ] {
            let mut c = config(machine);
            assert!(!c.args(&serial_to_stdout()).iter().any(|x| x == "-drive"));
            c.disk = Some("/d/a,b.img".into());
            let a = c.args(&serial_to_stdout());
            let drive = "file=/d/a,,b.img,if=none,format=raw,id=disk0,cache=writeback";
            assert!(has(&a, &["-drive", drive, "-device", device]), "{a:?}");
        }
    }

    #[test]
    fn stderr_lines() {
        assert!(is_error_line("qemu-system-x86_64: -foo: invalid option"));
        assert!(!is_error_line(
            "qemu-system-x86_64: warning: host doesn't support"
        ));
        assert!(is_signal_line(
            "qemu-system-x86_64: terminating on signal 15 from pid 1"
        ));
    }
}
