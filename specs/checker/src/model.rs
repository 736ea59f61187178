//! The checked specs: what `specs/*.toml` and `specs/profiles/*.toml` say,
//! after every rule in the README holds.

use std::path::Path;
use std::path::PathBuf;

/// All specs and profiles of a workspace, checked together.
#[derive(Clone, Debug, PartialEq)]
pub struct System {
    /// Sorted by name.
    pub components: Vec<Component>,
    /// Sorted by name.
    pub profiles: Vec<Profile>,
}

impl System {
    pub fn component(&self, name: &str) -> Option<&Component> {
        self.components.iter().find(|c| c.name == name)
    }

    pub fn profile(&self, name: &str) -> Option<&Profile> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The commands (`kind = "command"`), sorted by name: every profile
    /// can run them, so the kernel links them all.
    pub fn commands(&self) -> impl Iterator<Item = &Component> {
        self.components.iter().filter(|c| c.kind == Kind::Command)
    }

    /// The components that at least one profile starts (the ones the
    /// kernel links), sorted by name.
    pub fn wired_components(&self) -> impl Iterator<Item = &Component> {
        self.components
            .iter()
            .filter(|c| self.profiles.iter().any(|p| p.contains(&c.name)))
    }
}

/// One component spec, `specs/<name>.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Component {
    /// snake_case; also the crate's name and directory name.
    pub name: String,
    pub kind: Kind,
    pub description: String,
    pub isolation: Isolation,
    pub restart: Restart,
    /// Restarts allowed within one `restart_window_s`.
    pub max_restarts: u32,
    /// The restart budget's window, in seconds.
    pub restart_window_s: u32,
    /// Its memory budget, in MiB.
    pub memory_limit_mib: u32,
    /// The CPU its threads run on (spec `cpu`); `None`: any.
    pub cpu: Option<u32>,
    /// Services it serves, in spec order.
    pub exports: Vec<String>,
    pub privileges: Vec<Privilege>,
    /// Channels it needs, in spec order.
    pub needs: Vec<Need>,
    /// Devices it drives, in spec order.
    pub devices: Vec<DeviceSpec>,
    /// Typed constants, in spec order.
    pub config: Vec<ConfigEntry>,
    /// The names a command answers to (`kind = "command"` only: its spec's
    /// `names`, or its own name); empty for other kinds.
    pub names: Vec<String>,
    /// What a Linux service runs (`kind = "linux"` only).
    pub linux: Option<LinuxService>,
    /// The spec file, relative to the workspace root.
    pub file: PathBuf,
}

/// A Linux service's program and how it runs in the microVM (the spec's
/// `command`, `[env]`, `workdir`, `user` and `ports`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LinuxService {
    /// The program and its arguments; never empty.
    pub command: Vec<String>,
    /// In spec order.
    pub env: Vec<(String, String)>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    /// TCP ports it serves, in spec order.
    pub ports: Vec<u16>,
}

impl Component {
    /// Whether it is a crate of its own (a Linux service is not: the
    /// kernel's generic runner runs it).
    pub fn has_crate(&self) -> bool {
        self.kind.has_crate()
    }

    /// The crate's directory, relative to the workspace root (`apps/hello`).
    pub fn crate_dir(&self) -> PathBuf {
        Path::new(self.kind.dir()).join(&self.name)
    }

    pub fn has_privilege(&self, privilege: Privilege) -> bool {
        self.privileges.contains(&privilege)
    }
}

/// A `[needs]` entry: env field `field` is a channel to service `service`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Need {
    pub field: String,
    pub service: String,
    /// A profile may leave the service out (`optional = true`); the field
    /// is then an `Option`, `None` in such a profile.
    pub optional: bool,
}

/// A `[devices]` entry: env field `field` is the first unclaimed device
/// that one of `matches` accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceSpec {
    pub field: String,
    /// A short description for messages (`virtio-net`, `pci 1af4:1000`).
    pub describe: String,
    pub matches: Vec<DeviceMatch>,
    /// The component may start without it (`optional = true`): the field
    /// is then an `Option`, `None` when startup finds no such device.
    pub optional: bool,
}

/// One way a device matches a `[devices]` entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceMatch {
    /// A PCI function: vendor ID and, if given, device ID.
    Pci { vendor: u16, device: Option<u16> },
    /// A virtio-mmio transport with this virtio device ID.
    VirtioMmio { device_id: u32 },
    /// A 16550 UART (`kind = "uart"`).
    Uart,
}

impl DeviceMatch {
    /// The value as a `::starina::spec::DeviceMatch` expression.
    pub fn rust_expr(&self) -> String {
        match self {
            DeviceMatch::Pci { vendor, device } => format!(
                "::starina::spec::DeviceMatch::Pci {{ vendor: {vendor:#06x}, device: {} }}",
                match device {
                    Some(d) => format!("::core::option::Option::Some({d:#06x})"),
                    None => "::core::option::Option::None".to_string(),
                }
            ),
            DeviceMatch::VirtioMmio { device_id } => {
                format!("::starina::spec::DeviceMatch::VirtioMmio {{ device_id: {device_id} }}")
            }
            DeviceMatch::Uart => "::starina::spec::DeviceMatch::Uart".to_string(),
        }
    }
}

/// The virtio device kinds a `[devices]` entry can name with `kind`: the
/// spelling, the virtio device ID, and the transitional (legacy) PCI device
/// ID if the kind has one. PCI devices of vendor 0x1af4 use
/// `0x1040 + device ID` (modern) or the transitional ID.
pub const VIRTIO_KINDS: &[(&str, u32, Option<u16>)] = &[
    ("virtio-net", 1, Some(0x1000)),
    ("virtio-blk", 2, Some(0x1001)),
    ("virtio-console", 3, Some(0x1003)),
    ("virtio-rng", 4, Some(0x1005)),
    ("virtio-9p", 9, Some(0x1009)),
    ("virtio-gpu", 16, None),
    ("virtio-input", 18, None),
    ("virtio-vsock", 19, None),
];

/// The device kind of a 16550 UART (a PC COM port the kernel does not
/// keep for itself: COM2).
pub const UART_KIND: &str = "uart";

/// The PCI vendor ID of virtio devices.
pub const VIRTIO_PCI_VENDOR: u16 = 0x1af4;

/// A `[config]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigEntry {
    pub name: String,
    pub value: ConfigValue,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ConfigValue {
    Integer(i64),
    String(String),
    Bool(bool),
    Float(f64),
}

impl ConfigValue {
    /// A TOML value as a config value; `Err` says what it is instead.
    pub fn from_toml(value: toml::Value) -> Result<ConfigValue, toml::Value> {
        match value {
            toml::Value::Integer(i) => Ok(ConfigValue::Integer(i)),
            toml::Value::String(s) => Ok(ConfigValue::String(s)),
            toml::Value::Boolean(b) => Ok(ConfigValue::Bool(b)),
            toml::Value::Float(x) => Ok(ConfigValue::Float(x)),
            other => Err(other),
        }
    }

    /// The spec's word for its type (`integer`, `string`, `bool`, `float`).
    pub fn type_name(&self) -> &'static str {
        match self {
            ConfigValue::Integer(_) => "integer",
            ConfigValue::String(_) => "string",
            ConfigValue::Bool(_) => "bool",
            ConfigValue::Float(_) => "float",
        }
    }

    /// The Rust type of the generated constant.
    pub fn rust_type(&self) -> &'static str {
        match self {
            ConfigValue::Integer(_) => "i64",
            ConfigValue::String(_) => "&'static str",
            ConfigValue::Bool(_) => "bool",
            ConfigValue::Float(_) => "f64",
        }
    }

    /// The value as a Rust expression of [`ConfigValue::rust_type`].
    pub fn rust_expr(&self) -> String {
        match self {
            ConfigValue::Integer(i) => format!("{i}"),
            ConfigValue::String(s) => format!("{s:?}"),
            ConfigValue::Bool(b) => format!("{b}"),
            ConfigValue::Float(f) if f.is_nan() => "f64::NAN".to_string(),
            ConfigValue::Float(f) if *f == f64::INFINITY => "f64::INFINITY".to_string(),
            ConfigValue::Float(f) if *f == f64::NEG_INFINITY => "f64::NEG_INFINITY".to_string(),
            // `{:?}` always prints a float literal (`1.0`, `1e100`).
            ConfigValue::Float(f) => format!("{f:?}"),
        }
    }
}

/// Defines a spec enum with its spelling in the TOML files.
macro_rules! spec_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value with its spelling in the spec files.
            pub const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $text),)*];

            /// The spelling in the spec files.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }

            /// The variant's name in `starina::spec`.
            pub fn rust_variant(self) -> &'static str {
                match self {
                    $($name::$variant => stringify!($variant),)*
                }
            }
        }
    };
}

spec_enum! {
    /// What a component is; decides its crate directory.
    Kind {
        App = "app",
        Server = "server",
        Driver = "driver",
        Linux = "linux",
        Command = "command",
    }
}

impl Kind {
    /// Whether components of this kind are crates (all but Linux services).
    pub fn has_crate(self) -> bool {
        self != Kind::Linux
    }

    /// The directory holding crates of this kind.
    pub fn dir(self) -> &'static str {
        match self {
            Kind::App => "apps",
            Kind::Server => "servers",
            Kind::Driver => "drivers",
            Kind::Command => "commands",
            // No crate (see `Component::has_crate`).
            Kind::Linux => "specs",
        }
    }
}

spec_enum! {
    /// Where a component runs.
    Isolation {
        InKernel = "in-kernel",
        User = "user",
    }
}

spec_enum! {
    /// When startup starts a component again.
    Restart {
        Never = "never",
        OnFailure = "on-failure",
        Always = "always",
    }
}

spec_enum! {
    /// Rights beyond its channels.
    Privilege {
        Shutdown = "shutdown",
        Monitor = "monitor",
        Hypervisor = "hypervisor",
        Spawn = "spawn",
        Control = "control",
        Console = "console",
    }
}

/// One profile, `specs/profiles/<name>.toml`.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub description: Option<String>,
    /// Component names, in start order.
    pub components: Vec<String>,
    /// Its `[config.<component>]` tables, in file order.
    pub config: Vec<ConfigOverride>,
    /// Components it runs in user mode whatever their spec's `isolation`
    /// (its `user` list).
    pub user: Vec<String>,
    /// The profile file, relative to the workspace root.
    pub file: PathBuf,
}

impl Profile {
    pub fn contains(&self, component: &str) -> bool {
        self.components.iter().any(|c| c == component)
    }

    /// Whether it runs `component` in user mode: its spec says so, or this
    /// profile's `user` list does.
    pub fn runs_in_user_mode(&self, component: &Component) -> bool {
        component.isolation == Isolation::User || self.user.contains(&component.name)
    }

    /// Its `[config.<component>]` table, if it has one.
    pub fn config_for(&self, component: &str) -> Option<&ConfigOverride> {
        self.config.iter().find(|o| o.component == component)
    }
}

/// A profile's `[config.<component>]` table: values that replace the
/// component's own `[config]` values when this profile starts it.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfigOverride {
    pub component: String,
    /// In file order; each key is one of the component's `[config]` keys,
    /// with a value of the same type.
    pub entries: Vec<ConfigEntry>,
}

impl ConfigOverride {
    /// `key = value, ...`, for the log.
    pub fn describe(&self) -> String {
        let parts: Vec<String> = self
            .entries
            .iter()
            .map(|e| format!("{} = {}", e.name, e.value.rust_expr()))
            .collect();
        parts.join(", ")
    }
}
