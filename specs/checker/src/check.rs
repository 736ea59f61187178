//! Loading a whole workspace: every spec and profile, the rules that span
//! files (profiles against specs, specs against crate directories), and
//! the kernel's dependencies.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::path::PathBuf;

use toml::Value;

use crate::config_range;
use crate::error::Origin;
use crate::error::SpecError;
use crate::fields::parse_toml;
use crate::model::Component;
use crate::model::Kind;
use crate::model::Profile;
use crate::model::System;
use crate::names::did_you_mean;
use crate::parse::file_stem;
use crate::parse::parse_component;
use crate::parse::parse_profile;

/// Where the specs live, relative to the workspace root.
pub const SPECS_DIR: &str = "specs";
/// Where the profiles live, relative to the workspace root.
pub const PROFILES_DIR: &str = "specs/profiles";
/// The profile the kernel boots when the command line names none.
pub const DEFAULT_PROFILE: &str = "default";
/// The kernel's manifest, relative to the workspace root.
pub const KERNEL_MANIFEST: &str = "kernel/Cargo.toml";

/// The spec file of component `name`, relative to the workspace root.
pub fn spec_path(name: &str) -> PathBuf {
    Path::new(SPECS_DIR).join(format!("{name}.toml"))
}

/// Loads and checks every spec and profile under `root` (the workspace
/// root, which has `specs/`). Returns all errors, not just the first.
pub fn load_all(root: &Path) -> Result<System, Vec<SpecError>> {
    let mut errors = Vec::new();
    if !root.join(SPECS_DIR).is_dir() {
        let message = format!("no specs/ directory in {}", root.display());
        return Err(vec![SpecError::other(Path::new(SPECS_DIR), message)]);
    }

    // Stems of all spec files, including ones that fail to parse, so that
    // a broken spec is not also reported as missing.
    let mut spec_names = BTreeSet::new();
    let mut components = Vec::new();
    for file in toml_files(root, SPECS_DIR, &mut errors) {
        spec_names.insert(file_stem(&file).to_string());
        match read(root, &file, Origin::Spec).and_then(|text| parse_component(&file, &text)) {
            Ok(component) => {
                errors.extend(check_crate(root, &component));
                errors.extend(component.config.iter().filter_map(|entry| {
                    let field = format!("config.{}", entry.name);
                    config_range::check(Origin::Spec, &file, &field, &component.name, entry)
                }));
                components.push(component);
            }
            Err(e) => errors.extend(e),
        }
    }
    errors.extend(check_orphan_crates(root, &spec_names));

    let mut profiles = Vec::new();
    if root.join(PROFILES_DIR).is_dir() {
        for file in toml_files(root, PROFILES_DIR, &mut errors) {
            match read(root, &file, Origin::Profile).and_then(|text| parse_profile(&file, &text)) {
                Ok(profile) => profiles.push(profile),
                Err(e) => errors.extend(e),
            }
        }
    }
    let default = Path::new(PROFILES_DIR).join(format!("{DEFAULT_PROFILE}.toml"));
    if !root.join(&default).is_file() {
        errors.push(SpecError::other(
            &default,
            format!(
                "{} does not exist: the kernel boots profile '{DEFAULT_PROFILE}' \
                 when its command line names no profile",
                default.display()
            ),
        ));
    }

    let by_name: BTreeMap<&str, &Component> =
        components.iter().map(|c| (c.name.as_str(), c)).collect();
    for profile in &profiles {
        errors.extend(check_profile(profile, &by_name, &spec_names));
    }
    errors.extend(check_command_names(&components));

    if errors.is_empty() {
        components.sort_by(|a, b| a.name.cmp(&b.name));
        profiles.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(System {
            components,
            profiles,
        })
    } else {
        Err(errors)
    }
}

/// Reads `file` (relative to `root`).
pub fn read(root: &Path, file: &Path, origin: Origin) -> Result<String, Vec<SpecError>> {
    fs::read_to_string(root.join(file))
        .map_err(|e| vec![SpecError::new(origin, file, format!("cannot read: {e}"))])
}

/// The `*.toml` files directly in `dir` (relative to `root`), sorted, as
/// paths relative to `root`.
fn toml_files(root: &Path, dir: &str, errors: &mut Vec<SpecError>) -> Vec<PathBuf> {
    let entries = match fs::read_dir(root.join(dir)) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(SpecError::other(
                Path::new(dir),
                format!("{dir}: cannot list: {e}"),
            ));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok())
        .filter(|entry| entry.path().is_file())
        .map(|entry| Path::new(dir).join(entry.file_name()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

/// A component's crate must be `<kind dir>/<name>`, with a matching
/// package name and a build script (which generates its `Env`).
pub fn check_crate(root: &Path, component: &Component) -> Vec<SpecError> {
    if !component.has_crate() {
        return Vec::new();
    }
    let spec_error = |message: String| SpecError::new(Origin::Spec, &component.file, message);
    let dir = component.crate_dir();
    if !root.join(&dir).is_dir() {
        let elsewhere = Kind::ALL
            .iter()
            .filter(|(kind, _)| kind.has_crate())
            .map(|(kind, _)| (kind, Path::new(kind.dir()).join(&component.name)))
            .find(|(_, other)| root.join(other).is_dir());
        let hint = match elsewhere {
            Some((kind, other)) => format!(
                " ({} exists: is it kind = \"{}\"?)",
                other.display(),
                kind.as_str()
            ),
            None => String::new(),
        };
        return vec![spec_error(format!(
            "name '{}' but its crate directory {} does not exist{hint}",
            component.name,
            dir.display()
        ))];
    }

    let mut errors = Vec::new();
    let manifest = dir.join("Cargo.toml");
    match fs::read_to_string(root.join(&manifest)) {
        Err(_) => errors.push(spec_error(format!(
            "crate directory {} has no Cargo.toml",
            dir.display()
        ))),
        Ok(text) => match parse_toml(Origin::Other, &manifest, &text) {
            Err(e) => errors.push(e),
            Ok(table) => {
                let package = table
                    .get("package")
                    .and_then(|p| p.get("name"))
                    .and_then(Value::as_str);
                if package != Some(component.name.as_str()) {
                    errors.push(spec_error(format!(
                        "{} must have package name '{}' (the component's name); it has {}",
                        manifest.display(),
                        component.name,
                        package.map_or("none".to_string(), |p| format!("'{p}'"))
                    )));
                }
            }
        },
    }
    if !root.join(&dir).join("build.rs").is_file() {
        errors.push(spec_error(format!(
            "crate directory {} has no build.rs; it needs one containing \
             `fn main() {{ starina_spec::build::component(); }}` to generate its Env",
            dir.display()
        )));
    }
    errors
}

/// Every crate in a component directory needs a spec, unless its
/// Cargo.toml says it is a plain library (`[package.metadata.starina]
/// library = true`), such as a component's logic before it is wired up.
fn check_orphan_crates(root: &Path, spec_names: &BTreeSet<String>) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for (kind, _) in Kind::ALL.iter().filter(|(kind, _)| kind.has_crate()) {
        let Ok(entries) = fs::read_dir(root.join(kind.dir())) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| entry.path().join("Cargo.toml").is_file())
            .filter_map(|entry| entry.file_name().into_string().ok())
            .filter(|name| !spec_names.contains(name))
            .filter(|name| !is_library(&root.join(kind.dir()).join(name)))
            .collect();
        names.sort();
        for name in names {
            let dir = Path::new(kind.dir()).join(&name);
            errors.push(SpecError::other(
                &dir,
                format!(
                    "crate directory {} has no spec: create {} (every crate in apps/, servers/, drivers/ \
                     and commands/ is a component)",
                    dir.display(),
                    spec_path(&name).display()
                ),
            ));
        }
    }
    errors
}

/// No two commands answer to the same name.
fn check_command_names(components: &[Component]) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut owners: BTreeMap<&str, &Component> = BTreeMap::new();
    for c in components.iter().filter(|c| c.kind == Kind::Command) {
        for name in &c.names {
            match owners.get(name.as_str()) {
                Some(first) => errors.push(SpecError::field(
                    Origin::Spec,
                    &c.file,
                    "names",
                    format!(
                        "command name '{name}' is also a name of '{}' ({})",
                        first.name,
                        first.file.display()
                    ),
                )),
                None => {
                    owners.insert(name, c);
                }
            }
        }
    }
    errors
}

/// Whether the crate in `dir` declares itself a library, not a component.
fn is_library(dir: &Path) -> bool {
    let manifest = dir.join("Cargo.toml");
    let Ok(text) = fs::read_to_string(&manifest) else {
        return false;
    };
    let Ok(table) = parse_toml(Origin::Other, &manifest, &text) else {
        return false;
    };
    ["package", "metadata", "starina", "library"]
        .iter()
        .try_fold(&Value::Table(table), |value, key| value.get(key))
        .and_then(Value::as_bool)
        == Some(true)
}

/// A profile's components must exist, every service they need (unless
/// optional) must be exported by exactly one of them, and exporters start
/// first.
fn check_profile(
    profile: &Profile,
    components: &BTreeMap<&str, &Component>,
    spec_names: &BTreeSet<String>,
) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let error = |message: String| SpecError::new(Origin::Profile, &profile.file, message);

    // Position in start order and spec of each component of the profile.
    let mut members = Vec::new();
    // Whether every spec loaded; if not, what the profile exports is unknown.
    let mut complete = true;
    for (position, name) in profile.components.iter().enumerate() {
        match components.get(name.as_str()) {
            Some(component) if component.kind == Kind::Command => errors.push(SpecError::field(
                Origin::Profile,
                &profile.file,
                "components",
                format!(
                    "'{name}' is a command: a profile does not start commands; \
                     they run on demand (from the shell) in every profile"
                ),
            )),
            Some(component) => members.push((position, *component)),
            // Its spec exists but is broken: already reported.
            None if spec_names.contains(name) => complete = false,
            None => errors.push(SpecError::field(
                Origin::Profile,
                &profile.file,
                "components",
                format!(
                    "unknown component '{name}': there is no {}{}",
                    spec_path(name).display(),
                    did_you_mean(name, spec_names.iter().map(String::as_str))
                ),
            )),
        }
    }

    errors.extend(check_config_overrides(profile, components));

    let mut exporters: BTreeMap<&str, (usize, &str)> = BTreeMap::new();
    for &(position, component) in &members {
        for service in &component.exports {
            match exporters.get(service.as_str()) {
                Some((_, first)) => errors.push(error(format!(
                    "service '{service}' is exported by both '{first}' and '{}'; \
                     a service has one exporter in a profile",
                    component.name
                ))),
                None => {
                    exporters.insert(service, (position, &component.name));
                }
            }
        }
    }

    if !complete {
        return errors;
    }
    for &(position, component) in &members {
        for need in &component.needs {
            match exporters.get(need.service.as_str()) {
                // Startup leaves the field `None`.
                None if need.optional => {}
                None => errors.push(error(format!(
                    "component '{}' needs service '{}' (field '{}'), which no component \
                     in this profile exports",
                    component.name, need.service, need.field
                ))),
                Some(&(exporter_position, exporter)) if exporter_position > position => errors
                    .push(error(format!(
                        "component '{}' needs service '{}' (field '{}') from '{exporter}', \
                         which starts after it; list '{exporter}' before '{}' \
                         (components start in the listed order)",
                        component.name, need.service, need.field, component.name
                    ))),
                Some(_) => {}
            }
        }
    }
    errors
}

/// A profile's `[config.<component>]` tables: the component is one the
/// profile starts, and each key is one of its `[config]` keys, given a
/// value of the same type.
fn check_config_overrides(
    profile: &Profile,
    components: &BTreeMap<&str, &Component>,
) -> Vec<SpecError> {
    let mut errors = Vec::new();
    let mut error = |field: String, message: String| {
        errors.push(SpecError::field(
            Origin::Profile,
            &profile.file,
            field,
            message,
        ))
    };
    for o in &profile.config {
        let key = format!("config.{}", o.component);
        if !profile.contains(&o.component) {
            error(
                key,
                format!(
                    "sets config of component '{}', which this profile does not start \
                     (components = [{}]){}",
                    o.component,
                    profile.components.join(", "),
                    did_you_mean(&o.component, profile.components.iter().map(String::as_str))
                ),
            );
            continue;
        }
        let Some(component) = components.get(o.component.as_str()) else {
            // Not loaded: its spec is broken or missing, which is reported
            // already.
            continue;
        };
        for entry in &o.entries {
            let field = format!("{key}.{}", entry.name);
            let Some(own) = component.config.iter().find(|c| c.name == entry.name) else {
                let keys: Vec<&str> = component.config.iter().map(|c| c.name.as_str()).collect();
                let known = if keys.is_empty() {
                    "it has no [config]".to_string()
                } else {
                    format!("its keys: {}", keys.join(", "))
                };
                error(
                    field,
                    format!(
                        "component '{}' has no config key '{}' in {} ({known}){}",
                        component.name,
                        entry.name,
                        component.file.display(),
                        did_you_mean(&entry.name, keys.iter().copied())
                    ),
                );
                continue;
            };
            if own.value.type_name() != entry.value.type_name() {
                error(
                    field,
                    format!(
                        "expected {} like '{} = {}' in {}; got {} ({})",
                        with_article(own.value.type_name()),
                        own.name,
                        own.value.rust_expr(),
                        component.file.display(),
                        with_article(entry.value.type_name()),
                        entry.value.rust_expr()
                    ),
                );
                continue;
            }
            let origin = Origin::Profile;
            if let Some(e) =
                config_range::check(origin, &profile.file, &field, &component.name, entry)
            {
                error(e.field.unwrap_or(field), e.message);
            }
        }
    }
    errors
}

/// `an integer`, `a string`, ...
fn with_article(word: &str) -> String {
    let article = if word.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {word}")
}

/// Every component that a profile starts must be a dependency of the
/// kernel, by path, so that the kernel can link it.
pub fn check_kernel_manifest(root: &Path, system: &System) -> Vec<SpecError> {
    let manifest = Path::new(KERNEL_MANIFEST);
    let text = match fs::read_to_string(root.join(manifest)) {
        Ok(text) => text,
        Err(e) => {
            return vec![SpecError::other(
                manifest,
                format!("{KERNEL_MANIFEST}: cannot read: {e}"),
            )]
        }
    };
    let table = match parse_toml(Origin::Other, manifest, &text) {
        Ok(table) => table,
        Err(e) => return vec![e],
    };
    let dependencies = table.get("dependencies").and_then(Value::as_table);

    let mut errors = Vec::new();
    let mut checked = BTreeSet::new();
    let commands: Vec<String> = system.commands().map(|c| c.name.clone()).collect();
    let mut lists: Vec<(&str, &[String])> = vec![("the commands", &commands[..])];
    for profile in &system.profiles {
        lists.push((profile.name.as_str(), &profile.components[..]));
    }
    for (list, names) in lists {
        for name in names {
            if !checked.insert(name) {
                continue;
            }
            let Some(component) = system.component(name) else {
                continue;
            };
            if !component.has_crate() {
                // The runner crate is a fixed dependency (see `codegen`).
                continue;
            }
            let expected = format!("../{}", component.crate_dir().display());
            let wanted = format!("'{name} = {{ path = \"{expected}\" }}'");
            let path = match dependencies.and_then(|d| d.get(name)) {
                None => {
                    errors.push(SpecError::other(
                        manifest,
                        format!(
                            "component '{name}' is in {} but {KERNEL_MANIFEST} \
                             has no dependency {wanted}",
                            if list == "the commands" {
                                list.to_string()
                            } else {
                                format!("profile '{list}'")
                            }
                        ),
                    ));
                    continue;
                }
                Some(dependency) => dependency.get("path").and_then(Value::as_str),
            };
            let normalized = path.map(|p| p.trim_start_matches("./").trim_end_matches('/'));
            if normalized != Some(expected.as_str()) {
                let got = match path {
                    Some(path) => format!("has path '{path}'"),
                    None => "is not a path dependency".to_string(),
                };
                errors.push(SpecError::other(
                    manifest,
                    format!(
                        "{KERNEL_MANIFEST}: dependency '{name}' {got}, but component \
                         '{name}' is {}; it must be {wanted}",
                        component.crate_dir().display()
                    ),
                ));
            }
        }
    }
    errors
}
