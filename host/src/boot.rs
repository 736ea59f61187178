//! What `run` and `exec` do before QEMU starts: build the kernel, read the
//! profile's components from its spec, build the boot file system.

use std::path::Path;
use std::path::PathBuf;

use crate::bootfs;
use crate::host::Host;
use crate::host::Streams;
use crate::kernel;
use crate::kernel::Progress;
use crate::qemu::check_kernel;
use crate::qemu::HostLink;
use crate::qemu::Machine;
use crate::qemu::QemuConfig;
use crate::status::ExitStatus;

/// A kernel to boot and what its profile needs.
#[derive(Clone, Debug)]
pub struct Prepared {
    pub kernel: PathBuf,
    /// The profile's components (none if the profile is unknown).
    pub components: Vec<String>,
    /// The boot file system, for profiles that start `linux` or run
    /// components in user mode.
    pub bootfs: Option<PathBuf>,
}

impl Prepared {
    pub fn has(&self, component: &str) -> bool {
        self.components.iter().any(|c| c == component)
    }
}

/// The components `profile` starts, from `specs/profiles/<profile>.toml`
/// (through starina-spec); none if there is no such profile.
pub fn profile_components(host: &Host, profile: &str, io: &mut Streams) -> Vec<String> {
    match starina_spec::load_all(&host.root) {
        Ok(system) => system
            .profile(profile)
            .map(|p| p.components.clone())
            .unwrap_or_default(),
        Err(errors) => {
            for e in errors.iter().take(5) {
                io.say(&format!("specs: {e}"));
            }
            Vec::new()
        }
    }
}

/// Builds what is needed to boot `profile`: the kernel unless `build` is
/// false or `kernel` names another image, then the boot file system if the
/// profile starts `linux`. `quiet` shows build output only when a build is
/// slow or fails.
pub fn prepare(
    host: &Host,
    profile: &str,
    build: bool,
    kernel: Option<&Path>,
    quiet: bool,
    io: &mut Streams,
) -> Result<Prepared, ExitStatus> {
    let progress = if quiet {
        Progress::WhenSlow
    } else {
        Progress::Show
    };
    let image = match kernel {
        Some(path) => std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf()),
        None => host.kernel_image(),
    };
    let mut report = |line: &str| {
        let _ = writeln!(io.err, "{line}");
    };
    if kernel.is_none() && build {
        if let Err(e) = kernel::build(host, &[], progress, &mut report) {
            io.say(&e);
            io.say("kernel build failed");
            return Err(ExitStatus::NotBooted);
        }
    }
    if let Err(e) = check_kernel(&image, kernel.is_none()) {
        io.say(&e);
        return Err(ExitStatus::NotBooted);
    }
    let components = profile_components(host, profile, io);
    let mut prepared = Prepared {
        kernel: image,
        components,
        bootfs: None,
    };
    let user = crate::user_images::user_components(host, profile);
    let mut images = Vec::new();
    if !user.is_empty() {
        let mut report = |line: &str| {
            let _ = writeln!(io.err, "{line}");
        };
        match crate::user_images::build(host, profile, &user, progress, &mut report) {
            Ok(built) => images = built,
            Err(e) => {
                io.say(&e);
                io.say(&format!("cannot build the user-mode images of profile {profile}"));
                return Err(ExitStatus::NotBooted);
            }
        }
    }
    if prepared.has("linux") || !images.is_empty() {
        let mut report = |line: &str| {
            let _ = writeln!(io.err, "{line}");
        };
        match bootfs::build(host, prepared.has("linux"), &images, progress, &mut report) {
            Ok(path) => prepared.bootfs = Some(path),
            Err(e) => {
                io.say(&e);
                io.say(&format!(
                    "cannot build the boot file system for profile {profile}"
                ));
                return Err(ExitStatus::NotBooted);
            }
        }
    }
    Ok(prepared)
}

/// How a boot that serves the host link is laid out in `dir`: the link's
/// socket, and QEMU's monitor (for the host's port forwards) when the
/// profile has a NIC.
pub struct LinkedBoot {
    pub config: QemuConfig,
    pub hostlink: PathBuf,
    pub monitor: Option<PathBuf>,
}

impl LinkedBoot {
    /// The QEMU of `prepared` on `machine` with the host link on
    /// `dir/hostlink.sock`; a NIC (the guest's port 80 at `http_port`) and
    /// a monitor at `dir/monitor.sock` only if the profile has the network
    /// driver; `disk` for the disk driver.
    pub fn new(
        prepared: &Prepared,
        machine: Machine,
        profile: &str,
        kvm: bool,
        http_port: u16,
        dir: &Path,
        disk: Option<PathBuf>,
    ) -> LinkedBoot {
        let hostlink = dir.join("hostlink.sock");
        let nic_port = prepared.has("virtio_net").then_some(http_port);
        let monitor = nic_port.map(|_| dir.join("monitor.sock"));
        let config = QemuConfig {
            machine,
            profile: profile.to_string(),
            kernel: prepared.kernel.clone(),
            kvm,
            icount: false,
            cpus: crate::qemu::DEFAULT_CPUS,
            bootfs: prepared.bootfs.clone(),
            nic_port,
            hostlink: HostLink::Socket(hostlink.clone()),
            disk,
            monitor: monitor.clone(),
            extra: Vec::new(),
        };
        LinkedBoot {
            config,
            hostlink,
            monitor,
        }
    }
}

/// [`prepare`] for a command in Linux (`exec`, `up`): the profile must
/// start `linux` and `hostlink`, else a usage error naming `what` (the
/// subcommand).
pub fn prepare_linux(
    host: &Host,
    profile: &str,
    build: bool,
    kernel: Option<&Path>,
    quiet: bool,
    what: &str,
    io: &mut Streams,
) -> Result<Prepared, ExitStatus> {
    let prepared = prepare(host, profile, build, kernel, quiet, io)?;
    if !prepared.has("linux") || !prepared.has("hostlink") {
        io.say(&format!(
            "{what}: profile {profile} must start the linux and hostlink components"
        ));
        return Err(ExitStatus::Usage);
    }
    Ok(prepared)
}
