//! Parsing one spec or profile file, with every rule that needs only that
//! file. Rules that look at other files or the tree are in `check`.

use std::collections::BTreeSet;
use std::path::Path;

use toml::Value;

use crate::error::Origin;
use crate::error::SpecError;
use crate::fields::describe;
use crate::fields::parse_toml;
use crate::fields::Fields;
use crate::model::Component;
use crate::model::ConfigEntry;
use crate::model::ConfigOverride;
use crate::model::ConfigValue;
use crate::model::DeviceMatch;
use crate::model::DeviceSpec;
use crate::model::Isolation;
use crate::model::Kind;
use crate::model::Need;
use crate::model::Privilege;
use crate::model::Profile;
use crate::model::Restart;
use crate::model::UART_KIND;
use crate::model::VIRTIO_KINDS;
use crate::model::VIRTIO_PCI_VENDOR;
use crate::names::check_identifier;
use crate::names::check_snake_case;
use crate::names::did_you_mean;
use crate::names::RESERVED_COMPONENT_NAMES;
use crate::names::RESERVED_ENV_FIELDS;

/// The fields a spec may have.
pub const COMPONENT_FIELDS: &[&str] = &[
    "name",
    "kind",
    "description",
    "isolation",
    "restart",
    "max_restarts",
    "restart_window_s",
    "memory_limit_mib",
    "cpu",
    "exports",
    "privileges",
    "needs",
    "devices",
    "config",
    "command",
    "env",
    "workdir",
    "user",
    "ports",
    "names",
];

/// The fields a profile may have.
pub const PROFILE_FIELDS: &[&str] = &["description", "components", "config", "user"];

/// Restarts allowed (within one window) when the spec does not say.
pub const DEFAULT_MAX_RESTARTS: u32 = 3;

/// The restart budget's window, in seconds, when the spec does not say.
pub const DEFAULT_RESTART_WINDOW_S: u32 = 60;

/// A component's memory budget when the spec does not say, in MiB: what
/// the kernel lets it hold (its heap, and kernel objects made on its
/// behalf: thread stacks, queued messages, guest RAM, DMA buffers).
pub const DEFAULT_MEMORY_LIMIT_MIB: u32 = 64;

/// The largest memory budget a spec may give, in MiB.
pub const MAX_MEMORY_LIMIT_MIB: u32 = 4096;

/// The CPUs a spec's `cpu` may name: the kernel runs on at most this many.
pub const MAX_CPUS: u32 = 8;

/// The longest restart window a spec may give (one day), in seconds.
pub const MAX_RESTART_WINDOW_S: u32 = 86_400;

/// The file name without `.toml`, or "" if it is not UTF-8.
pub fn file_stem(file: &Path) -> &str {
    file.file_stem().and_then(|s| s.to_str()).unwrap_or("")
}

/// Parses and checks a component spec. `file` is the path relative to the
/// workspace root, used in messages and to check the name.
pub fn parse_component(file: &Path, text: &str) -> Result<Component, Vec<SpecError>> {
    let table = parse_toml(Origin::Spec, file, text).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut f = Fields::new(Origin::Spec, file, table, COMPONENT_FIELDS, &mut errors);

    let name = f.string("name", true);
    if let Some(name) = &name {
        check_component_name(&mut f, name, file_stem(file));
    }
    let kind = f.choice("kind", Kind::ALL, None);
    let description = f.string("description", true);
    if description.as_deref().is_some_and(|d| d.trim().is_empty()) {
        f.error(
            "description",
            "must not be empty: say what the component does",
        );
    }
    let linux = crate::linux::read_linux(&mut f, kind);
    let names = crate::command::read_command(&mut f, kind, name.as_deref());
    let isolation = if linux.is_some() {
        // The runner that speaks for it runs in the kernel.
        Some(Isolation::InKernel)
    } else {
        f.choice("isolation", Isolation::ALL, None)
    };
    let restart = f.choice("restart", Restart::ALL, Some(Restart::Never));
    let max_restarts = read_max_restarts(&mut f, restart);
    let restart_window_s = read_restart_window(&mut f, restart);
    let memory_limit_mib = read_memory_limit(&mut f);
    let cpu = read_cpu(&mut f);
    let exports = read_exports(&mut f);
    let privileges = read_privileges(&mut f);
    let mut needs = read_needs(&mut f, &exports);
    if linux.is_some() {
        add_linux_need(&mut f, &mut needs);
    }
    let devices = read_devices(&mut f, &needs);
    let config = read_config(&mut f);
    f.finish();

    let restart_policy = match (restart, max_restarts, restart_window_s) {
        (Some(restart), Some(max), Some(window)) => Some((restart, max, window)),
        _ => None,
    };
    match (
        name,
        kind,
        description,
        isolation,
        restart_policy,
        memory_limit_mib,
    ) {
        (
            Some(name),
            Some(kind),
            Some(description),
            Some(isolation),
            Some((restart, max, window)),
            Some(memory_limit_mib),
        ) if errors.is_empty() => Ok(Component {
            name,
            kind,
            description,
            isolation,
            restart,
            max_restarts: max,
            restart_window_s: window,
            memory_limit_mib,
            cpu,
            exports,
            privileges,
            needs,
            devices,
            config,
            names,
            linux,
            file: file.to_path_buf(),
        }),
        _ => Err(errors),
    }
}

fn check_component_name(f: &mut Fields, name: &str, stem: &str) {
    if let Err(why) = check_identifier(name) {
        f.error("name", format!("invalid component name: {why}"));
    } else if RESERVED_COMPONENT_NAMES.contains(&name) {
        f.error(
            "name",
            format!("'{name}' is reserved: the kernel already links a crate of that name"),
        );
    }
    if name != stem {
        f.error(
            "name",
            format!(
                "'{name}' does not match the file name '{stem}' \
                 (the spec of component '{name}' must be specs/{name}.toml)"
            ),
        );
    }
}

fn read_max_restarts(f: &mut Fields, restart: Option<Restart>) -> Option<u32> {
    if !f.is_present("max_restarts") {
        return Some(DEFAULT_MAX_RESTARTS);
    }
    let value = f.integer("max_restarts")?;
    let Ok(max) = u32::try_from(value) else {
        f.error(
            "max_restarts",
            format!("expected an integer from 0 to {}; got {value}", u32::MAX),
        );
        return None;
    };
    if restart == Some(Restart::Never) {
        f.error(
            "max_restarts",
            "has no effect because restart is 'never' (the default): \
             set restart = \"on-failure\" or \"always\", or remove max_restarts",
        );
    }
    Some(max)
}

fn read_memory_limit(f: &mut Fields) -> Option<u32> {
    if !f.is_present("memory_limit_mib") {
        return Some(DEFAULT_MEMORY_LIMIT_MIB);
    }
    let value = f.integer("memory_limit_mib")?;
    match u32::try_from(value) {
        Ok(mib) if (1..=MAX_MEMORY_LIMIT_MIB).contains(&mib) => Some(mib),
        _ => {
            f.error(
                "memory_limit_mib",
                format!("expected MiB from 1 to {MAX_MEMORY_LIMIT_MIB}; got {value}"),
            );
            None
        }
    }
}

/// `cpu = N`: the CPU its threads run on (none: any). Whether that CPU
/// exists is known only at run time (startup logs it and runs the
/// component on any CPU if not).
fn read_cpu(f: &mut Fields) -> Option<u32> {
    if !f.is_present("cpu") {
        return None;
    }
    let value = f.integer("cpu")?;
    match u32::try_from(value) {
        Ok(cpu) if cpu < MAX_CPUS => Some(cpu),
        _ => {
            f.error(
                "cpu",
                format!(
                    "expected a CPU index from 0 to {} (the kernel runs on at most {MAX_CPUS} CPUs); got {value}",
                    MAX_CPUS - 1
                ),
            );
            None
        }
    }
}

fn read_restart_window(f: &mut Fields, restart: Option<Restart>) -> Option<u32> {
    if !f.is_present("restart_window_s") {
        return Some(DEFAULT_RESTART_WINDOW_S);
    }
    let value = f.integer("restart_window_s")?;
    let window = match u32::try_from(value) {
        Ok(w) if (1..=MAX_RESTART_WINDOW_S).contains(&w) => w,
        _ => {
            f.error(
                "restart_window_s",
                format!("expected seconds from 1 to {MAX_RESTART_WINDOW_S}; got {value}"),
            );
            return None;
        }
    };
    if restart == Some(Restart::Never) {
        f.error(
            "restart_window_s",
            "has no effect because restart is 'never' (the default): \
             set restart = \"on-failure\" or \"always\", or remove restart_window_s",
        );
    }
    Some(window)
}

fn read_exports(f: &mut Fields) -> Vec<String> {
    let exports = f.string_list("exports");
    let mut seen = BTreeSet::new();
    for service in &exports {
        if let Err(why) = check_snake_case(service) {
            f.error("exports", format!("invalid service name: {why}"));
        } else if !seen.insert(service) {
            f.error("exports", format!("service '{service}' is listed twice"));
        }
    }
    exports
}

fn read_privileges(f: &mut Fields) -> Vec<Privilege> {
    let names: Vec<&str> = Privilege::ALL.iter().map(|(_, name)| *name).collect();
    let mut privileges = Vec::new();
    for text in f.string_list("privileges") {
        match Privilege::ALL.iter().find(|(_, name)| *name == text) {
            Some((privilege, _)) if privileges.contains(privilege) => {
                f.error("privileges", format!("privilege '{text}' is listed twice"));
            }
            Some((privilege, _)) => privileges.push(*privilege),
            None => f.error(
                "privileges",
                format!(
                    "unknown privilege '{text}'; expected one of {}{}",
                    names.join(", "),
                    did_you_mean(&text, names.iter().copied())
                ),
            ),
        }
    }
    privileges
}

fn read_needs(f: &mut Fields, exports: &[String]) -> Vec<Need> {
    let mut needs = Vec::new();
    for (field, value) in f.table("needs") {
        let key = format!("needs.{field}");
        if let Err(why) = check_identifier(&field) {
            f.error(&key, format!("invalid env field name: {why}"));
            continue;
        }
        if RESERVED_ENV_FIELDS.contains(&field.as_str()) {
            let hint = if field == "shutdown" {
                " (for the right to power off, add \"shutdown\" to privileges)"
            } else {
                ""
            };
            f.error(
                &key,
                format!(
                    "'{field}' is reserved: the generated Env has its own `{field}` field{hint}; \
                     choose another field name"
                ),
            );
            continue;
        }
        let Some((service, optional, service_key)) = read_need_value(f, &key, &field, value) else {
            continue;
        };
        if let Err(why) = check_snake_case(&service) {
            f.error(&service_key, format!("invalid service name: {why}"));
        } else if exports.contains(&service) {
            f.error(
                &service_key,
                format!("needs service '{service}', which this component exports itself"),
            );
        } else {
            needs.push(Need {
                field,
                service,
                optional,
            });
        }
    }
    needs
}

/// A Linux service's runner needs the `linux` service (first, so a profile
/// lists the linux server before it); its own `[needs]` are services that
/// must be up before it starts.
fn add_linux_need(f: &mut Fields, needs: &mut Vec<Need>) {
    use crate::linux::LINUX_SERVICE;
    if needs.iter().any(|n| n.field == LINUX_SERVICE) {
        f.error(
            &format!("needs.{LINUX_SERVICE}"),
            "a Linux service always needs the 'linux' service (implied); remove this entry",
        );
        return;
    }
    needs.insert(
        0,
        Need {
            field: LINUX_SERVICE.to_string(),
            service: LINUX_SERVICE.to_string(),
            optional: false,
        },
    );
}

/// The keys of a `[needs]` entry's table form.
const NEED_KEYS: &[&str] = &["service", "optional"];

/// A `[needs]` value: `"service"` (required) or `{ service = "service",
/// optional = true }`. Returns the service, whether the need is optional,
/// and the key path its service name is at; `None` after recording what
/// is wrong.
fn read_need_value(
    f: &mut Fields,
    key: &str,
    field: &str,
    value: Value,
) -> Option<(String, bool, String)> {
    let mut entry = match value {
        Value::String(service) => return Some((service, false, key.to_string())),
        Value::Table(entry) => entry,
        other => {
            f.error(
                key,
                format!(
                    "expected a service name (a string) or a table such as \
                     `{field} = {{ service = \"{field}\", optional = true }}`; got {}",
                    describe(&other)
                ),
            );
            return None;
        }
    };
    let mut ok = true;
    for name in entry.keys() {
        if !NEED_KEYS.contains(&name.as_str()) {
            let hint = match did_you_mean(name, NEED_KEYS.iter().copied()) {
                hint if !hint.is_empty() => hint,
                _ => format!(" (known keys: {})", NEED_KEYS.join(", ")),
            };
            f.error(&format!("{key}.{name}"), format!("unknown key{hint}"));
            ok = false;
        }
    }
    let service_key = format!("{key}.service");
    let service = match entry.remove("service") {
        Some(Value::String(service)) => Some(service),
        Some(other) => {
            f.error(
                &service_key,
                format!(
                    "expected a service name (a string); got {}",
                    describe(&other)
                ),
            );
            None
        }
        None => {
            f.error(
                &service_key,
                "required but missing; name the service the channel connects to",
            );
            None
        }
    };
    let optional = match entry.remove("optional") {
        None => Some(false),
        Some(Value::Boolean(optional)) => Some(optional),
        Some(other) => {
            f.error(
                &format!("{key}.optional"),
                format!("expected a bool (true or false); got {}", describe(&other)),
            );
            None
        }
    };
    match (service, optional) {
        (Some(service), Some(optional)) if ok => Some((service, optional, service_key)),
        _ => None,
    }
}

/// The keys a `[devices]` entry may have.
const DEVICE_KEYS: &[&str] = &["kind", "pci", "virtio-mmio", "optional"];

fn read_devices(f: &mut Fields, needs: &[Need]) -> Vec<DeviceSpec> {
    let mut devices = Vec::new();
    for (field, value) in f.table("devices") {
        let key = format!("devices.{field}");
        if let Err(why) = check_identifier(&field) {
            f.error(&key, format!("invalid env field name: {why}"));
            continue;
        }
        if RESERVED_ENV_FIELDS.contains(&field.as_str()) {
            f.error(
                &key,
                format!(
                    "'{field}' is reserved: the generated Env has its own `{field}` field; \
                     choose another field name"
                ),
            );
            continue;
        }
        if needs.iter().any(|n| n.field == field) {
            f.error(
                &key,
                format!("'{field}' is already a [needs] entry; an Env field has one meaning"),
            );
            continue;
        }
        let Value::Table(entry) = value else {
            f.error(
                &key,
                format!(
                    "expected a table such as `{field} = {{ kind = \"virtio-net\" }}`; got {}",
                    describe(&value)
                ),
            );
            continue;
        };
        if let Some(device) = read_device(f, &key, &field, entry) {
            devices.push(device);
        }
    }
    devices
}

/// Reads one `[devices]` entry; `None` after recording what is wrong.
fn read_device(f: &mut Fields, key: &str, field: &str, entry: toml::Table) -> Option<DeviceSpec> {
    let mut ok = true;
    let mut matches = Vec::new();
    let mut describes = Vec::new();
    for name in entry.keys() {
        if !DEVICE_KEYS.contains(&name.as_str()) {
            let hint = match did_you_mean(name, DEVICE_KEYS.iter().copied()) {
                hint if !hint.is_empty() => hint,
                _ => format!(" (known keys: {})", DEVICE_KEYS.join(", ")),
            };
            f.error(&format!("{key}.{name}"), format!("unknown key{hint}"));
            ok = false;
        }
    }
    if let Some(kind) = entry.get("kind") {
        let mut names: Vec<&str> = VIRTIO_KINDS.iter().map(|(n, _, _)| *n).collect();
        names.push(UART_KIND);
        match kind
            .as_str()
            .and_then(|k| VIRTIO_KINDS.iter().find(|(n, _, _)| *n == k))
        {
            _ if kind.as_str() == Some(UART_KIND) => {
                matches.push(DeviceMatch::Uart);
                describes.push(UART_KIND.to_string());
            }
            Some((name, id, legacy)) => {
                if let Some(legacy) = legacy {
                    matches.push(DeviceMatch::Pci {
                        vendor: VIRTIO_PCI_VENDOR,
                        device: Some(*legacy),
                    });
                }
                matches.push(DeviceMatch::Pci {
                    vendor: VIRTIO_PCI_VENDOR,
                    device: Some(0x1040 + *id as u16),
                });
                matches.push(DeviceMatch::VirtioMmio { device_id: *id });
                describes.push(name.to_string());
            }
            None => {
                let got = match kind.as_str() {
                    Some(k) => format!("'{k}'{}", did_you_mean(k, names.iter().copied())),
                    None => describe(kind),
                };
                f.error(
                    &format!("{key}.kind"),
                    format!("expected one of {}; got {got}", names.join(", ")),
                );
                ok = false;
            }
        }
    }
    if let Some(pci) = entry.get("pci") {
        let pkey = format!("{key}.pci");
        match pci {
            Value::Table(t) => {
                for k in t.keys().filter(|k| *k != "vendor" && *k != "device") {
                    f.error(
                        &format!("{pkey}.{k}"),
                        "unknown key (known keys: vendor, device)",
                    );
                    ok = false;
                }
                let vendor = read_u16(f, &pkey, "vendor", t.get("vendor"), true);
                let device = read_u16(f, &pkey, "device", t.get("device"), false);
                match (vendor, device) {
                    (Some(Some(vendor)), Some(device)) => {
                        describes.push(match device {
                            Some(d) => format!("pci {vendor:04x}:{d:04x}"),
                            None => format!("pci {vendor:04x}:*"),
                        });
                        matches.push(DeviceMatch::Pci { vendor, device });
                    }
                    _ => ok = false,
                }
            }
            other => {
                f.error(
                    &pkey,
                    format!(
                        "expected a table such as `{{ vendor = 0x1af4, device = 0x1000 }}`; got {}",
                        describe(other)
                    ),
                );
                ok = false;
            }
        }
    }
    if let Some(mmio) = entry.get("virtio-mmio") {
        let mkey = format!("{key}.virtio-mmio");
        match mmio {
            Value::Table(t) => {
                for k in t.keys().filter(|k| *k != "device_id") {
                    f.error(
                        &format!("{mkey}.{k}"),
                        "unknown key (known keys: device_id)",
                    );
                    ok = false;
                }
                match t.get("device_id") {
                    Some(Value::Integer(id)) if (1..=u32::MAX as i64).contains(id) => {
                        describes.push(format!("virtio-mmio device {id}"));
                        matches.push(DeviceMatch::VirtioMmio {
                            device_id: *id as u32,
                        });
                    }
                    Some(other) => {
                        f.error(
                            &format!("{mkey}.device_id"),
                            format!(
                                "expected a virtio device ID (an integer from 1 to {}); got {}",
                                u32::MAX,
                                describe(other)
                            ),
                        );
                        ok = false;
                    }
                    None => {
                        f.error(&format!("{mkey}.device_id"), "required but missing");
                        ok = false;
                    }
                }
            }
            other => {
                f.error(
                    &mkey,
                    format!(
                        "expected a table such as `{{ device_id = 1 }}`; got {}",
                        describe(other)
                    ),
                );
                ok = false;
            }
        }
    }
    let optional = match entry.get("optional") {
        None => false,
        Some(Value::Boolean(optional)) => *optional,
        Some(other) => {
            f.error(
                &format!("{key}.optional"),
                format!("expected a bool (true or false); got {}", describe(other)),
            );
            ok = false;
            false
        }
    };
    if ok && matches.is_empty() {
        f.error(
            key,
            format!(
                "says nothing to match a device with: give `kind` (e.g. `{field} = {{ kind = \"virtio-net\" }}`), \
                 `pci = {{ vendor = ..., device = ... }}` or `virtio-mmio = {{ device_id = ... }}`"
            ),
        );
        ok = false;
    }
    ok.then(|| DeviceSpec {
        field: field.to_string(),
        describe: describes.join(" or "),
        matches,
        optional,
    })
}

/// An integer from 0 to 0xffff at `table_key.name`: `Some(None)` when
/// missing and optional, `None` after recording an error.
fn read_u16(
    f: &mut Fields,
    table_key: &str,
    name: &str,
    value: Option<&Value>,
    required: bool,
) -> Option<Option<u16>> {
    let key = format!("{table_key}.{name}");
    match value {
        None if required => {
            f.error(&key, "required but missing");
            None
        }
        None => Some(None),
        Some(Value::Integer(i)) => match u16::try_from(*i) {
            Ok(v) => Some(Some(v)),
            Err(_) => {
                f.error(
                    &key,
                    format!("expected an integer from 0 to 0xffff; got {i}"),
                );
                None
            }
        },
        Some(other) => {
            f.error(
                &key,
                format!(
                    "expected an integer (such as 0x1af4); got {}",
                    describe(other)
                ),
            );
            None
        }
    }
}

fn read_config(f: &mut Fields) -> Vec<ConfigEntry> {
    let mut config = Vec::new();
    for (name, value) in f.table("config") {
        let key = format!("config.{name}");
        if let Err(why) = check_identifier(&name) {
            f.error(&key, format!("invalid config name: {why}"));
            continue;
        }
        let value = match ConfigValue::from_toml(value) {
            Ok(value) => value,
            Err(other) => {
                f.error(
                    &key,
                    format!(
                        "expected an integer, string, bool or float; got {}",
                        describe(&other)
                    ),
                );
                continue;
            }
        };
        config.push(ConfigEntry { name, value });
    }
    config
}

/// Parses and checks a profile. `file` is the path relative to the
/// workspace root; the profile's name is its file name.
pub fn parse_profile(file: &Path, text: &str) -> Result<Profile, Vec<SpecError>> {
    let table = parse_toml(Origin::Profile, file, text).map_err(|e| vec![e])?;
    let mut errors = Vec::new();
    let mut f = Fields::new(Origin::Profile, file, table, PROFILE_FIELDS, &mut errors);

    let name = file_stem(file).to_string();
    if let Err(why) = check_snake_case(&name) {
        f.file_error(format!("invalid profile name (its file name): {why}"));
    }
    let description = f.string("description", false);
    match f.peek("components") {
        None => f.error(
            "components",
            "required but missing; list the components to start, in start order",
        ),
        Some(Value::Array(items)) if items.is_empty() => f.error(
            "components",
            "empty; a profile starts at least one component",
        ),
        Some(_) => {}
    }
    let components = f.string_list("components");
    let config = read_config_overrides(&mut f);
    let user = f.string_list("user");
    for name in &user {
        if !components.contains(name) {
            f.error("user", format!("'{name}' is not one of the profile's components"));
        }
    }
    let mut seen = BTreeSet::new();
    for component in &components {
        if let Err(why) = check_snake_case(component) {
            f.error("components", format!("invalid component name: {why}"));
        } else if !seen.insert(component) {
            f.error(
                "components",
                format!("component '{component}' is listed twice"),
            );
        }
    }
    f.finish();

    if errors.is_empty() {
        Ok(Profile {
            name,
            description,
            components,
            config,
            user,
            file: file.to_path_buf(),
        })
    } else {
        Err(errors)
    }
}

/// A profile's `[config.<component>]` tables, with what this file alone
/// can check (names and value types); whether the component and its keys
/// exist is checked against the specs (`check`).
fn read_config_overrides(f: &mut Fields) -> Vec<ConfigOverride> {
    let mut overrides = Vec::new();
    for (component, table) in f.table("config") {
        let key = format!("config.{component}");
        if let Err(why) = check_snake_case(&component) {
            f.error(&key, format!("invalid component name: {why}"));
            continue;
        }
        let Value::Table(table) = table else {
            f.error(
                &key,
                format!(
                    "expected a table (`[config.{component}]` with `key = value` lines \
                     naming the component's [config] keys); got {}",
                    describe(&table)
                ),
            );
            continue;
        };
        let mut entries = Vec::new();
        for (name, value) in table {
            let entry_key = format!("{key}.{name}");
            match ConfigValue::from_toml(value) {
                Ok(value) => entries.push(ConfigEntry { name, value }),
                Err(other) => f.error(
                    &entry_key,
                    format!(
                        "expected an integer, string, bool or float; got {}",
                        describe(&other)
                    ),
                ),
            }
        }
        overrides.push(ConfigOverride { component, entries });
    }
    overrides
}
