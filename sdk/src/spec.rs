//! The spec, as the kernel's startup sees it: the build (`starina-spec`)
//! checks `specs/*.toml` and generates these tables into the kernel.

use crate::env::RawEnv;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    App,
    Server,
    Driver,
    /// A Linux service: a program in the Linux microVM, started and
    /// supervised through the `linux` service like a native component (see
    /// [`LinuxService`]).
    Linux,
    /// A command: not started by a profile but on demand, one fresh
    /// instance per run (see [`crate::command`]).
    Command,
}

impl ComponentKind {
    /// The spec's word for it (`app`, `server`, `driver`, `linux`).
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentKind::App => "app",
            ComponentKind::Server => "server",
            ComponentKind::Driver => "driver",
            ComponentKind::Linux => "linux",
            ComponentKind::Command => "command",
        }
    }
}

/// What a `kind = "linux"` spec declares: the program to run in the Linux
/// microVM and how. Its restart policy and start order are the component's
/// own, like any component's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinuxService {
    /// `command`: the program (looked up in `PATH` if it has no `/`) and
    /// its arguments.
    pub command: &'static [&'static str],
    /// `[env]`: variables set on top of the guest's base environment.
    pub env: &'static [(&'static str, &'static str)],
    /// `workdir`: its working directory (`/` when the spec says none).
    pub workdir: Option<&'static str>,
    /// `user`: who it runs as (a name in the guest's /etc/passwd, a uid or
    /// `uid:gid`); root when the spec says none.
    pub user: Option<&'static str>,
    /// `ports`: the TCP ports it serves (forwarded from `tcpip` and the
    /// host when it listens, whatever the linux server's
    /// `forward_min_port`).
    pub ports: &'static [u16],
}

/// Where a component runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Linked into the kernel; isolated by safe Rust (`#![forbid(unsafe_code)]`).
    InKernel,
    /// In ring 3 with its own address space: the same crate built as a
    /// freestanding ELF (`user/<name>` in the boot file system).
    User,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never started again.
    Never,
    /// Started again after a panic or a fault, not after a clean exit.
    OnFailure,
    /// Started again whenever it ends.
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// May power the machine off (the test runner).
    Shutdown,
    /// May create virtual machines (the linux server).
    Hypervisor,
    /// May read the system's status: components, the log, memory figures
    /// (a status page).
    Monitor,
    /// May start commands (a shell).
    Spawn,
    /// May stop and restart components (the `stop` and `restart` commands).
    Control,
    /// May read the serial console's input and write to it raw (a shell).
    Console,
}

/// One way a device can match a spec's `[devices]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMatch {
    /// A PCI function with this vendor (and device, if given) ID.
    Pci { vendor: u16, device: Option<u16> },
    /// A virtio-mmio transport with this virtio device ID.
    VirtioMmio { device_id: u32 },
    /// A 16550 UART (spec `kind = "uart"`).
    Uart,
}

impl DeviceMatch {
    pub fn matches(&self, address: &crate::abi::DeviceAddress) -> bool {
        use crate::abi::DeviceAddress;
        match (self, address) {
            (
                DeviceMatch::Pci { vendor, device },
                DeviceAddress::Pci {
                    vendor_id,
                    device_id,
                    ..
                },
            ) => vendor == vendor_id && device.is_none_or(|d| d == *device_id),
            (
                DeviceMatch::VirtioMmio { device_id },
                DeviceAddress::VirtioMmio { device_id: d, .. },
            ) => device_id == d,
            (DeviceMatch::Uart, DeviceAddress::Uart { .. }) => true,
            _ => false,
        }
    }
}

/// A device the component needs: env field `name`, given the first
/// unclaimed device that one of `matches` accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceNeed {
    pub name: &'static str,
    /// What the spec said, for messages (`virtio-net`, `pci 1af4:1000`).
    pub describe: &'static str,
    pub matches: &'static [DeviceMatch],
    /// The component starts without it when no free device matches (spec
    /// `{ kind = "...", optional = true }`): startup then hands no device,
    /// and the env field is `None`.
    pub optional: bool,
}

/// A channel the component needs: env field `name`, connected to the
/// component that exports `service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub name: &'static str,
    pub service: &'static str,
    /// The profile may have no component exporting `service` (spec
    /// `{ service = "...", optional = true }`): startup then hands no
    /// channel, and the env field is `None`.
    pub optional: bool,
}

#[derive(Clone, Copy, Debug)]
pub struct ComponentDef {
    pub name: &'static str,
    pub kind: ComponentKind,
    pub isolation: Isolation,
    pub restart: RestartPolicy,
    /// Restarts allowed within one `restart_window_s`; when they are spent,
    /// startup holds the component down until the window ends.
    pub max_restarts: u32,
    /// The restart budget's window, in seconds.
    pub restart_window_s: u32,
    /// Its memory budget in MiB (spec `memory_limit_mib`): its heap and
    /// what the kernel holds on its behalf. Past it, its allocations fail
    /// (a panic that ends it alone) and its calls return `OverBudget`.
    pub memory_limit_mib: u32,
    /// The CPU its threads run on (spec `cpu`), `None`: any. A CPU that
    /// does not take threads on this machine is logged at start and the
    /// component runs on any.
    pub cpu: Option<u32>,
    pub exports: &'static [&'static str],
    pub needs: &'static [Need],
    pub privileges: &'static [Privilege],
    /// Devices startup hands it (spec `[devices]`), in spec order.
    pub devices: &'static [DeviceNeed],
    /// The component's entry point (generated: builds its typed `Env` and
    /// calls its `main`).
    pub start: fn(RawEnv),
}

/// A command spec (`kind = "command"`): the component, and the names it
/// answers to (its spec's `names`, its own name when the spec gives none).
/// Every profile can run every command whose needs it serves.
#[derive(Clone, Copy, Debug)]
pub struct CommandDef {
    pub names: &'static [&'static str],
    pub component: ComponentDef,
}

#[derive(Clone, Copy, Debug)]
pub struct ProfileDef {
    pub name: &'static str,
    /// Component names, in start order.
    pub components: &'static [&'static str],
    /// Components whose `[config]` this profile overrides (its
    /// `[config.<component>]` tables).
    pub config: &'static [ConfigOverride],
    /// Components it runs in user mode whatever their spec says (its
    /// `user` list).
    pub user: &'static [&'static str],
}

/// A profile's `[config.<component>]` table: the component starts through
/// `start`, which gives its typed `Env` the spec's `[config]` with the
/// profile's values in place.
#[derive(Clone, Copy, Debug)]
pub struct ConfigOverride {
    pub component: &'static str,
    /// What the profile sets, for the log (`allow_test_panic = true`).
    pub describe: &'static str,
    pub start: fn(RawEnv),
}

impl ProfileDef {
    /// The entry point of `component` in this profile: its override's,
    /// if the profile has one.
    pub fn config_override(&self, component: &str) -> Option<&'static ConfigOverride> {
        self.config.iter().find(|o| o.component == component)
    }

    /// Whether it runs `component` in user mode.
    pub fn runs_in_user_mode(&self, component: &ComponentDef) -> bool {
        component.isolation == Isolation::User || self.user.contains(&component.name)
    }
}
