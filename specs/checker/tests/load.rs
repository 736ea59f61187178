//! Valid specs load, with defaults applied; the kernel's manifest check;
//! the repository's own specs.

mod common;

use std::path::Path;

use common::assert_errors;
use common::messages;
use common::Fixture;
use starina_spec::build::find_root;
use starina_spec::check_kernel_manifest;
use starina_spec::load_all;
use starina_spec::ConfigEntry;
use starina_spec::ConfigValue;
use starina_spec::Isolation;
use starina_spec::Kind;
use starina_spec::Need;
use starina_spec::Privilege;
use starina_spec::Restart;

#[test]
fn a_valid_workspace_loads() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/profiles/solo.toml",
        "description = \"Just hello.\"\ncomponents = [\"hello\"]\n",
    );
    let system = fixture.load();

    let names: Vec<&str> = system.components.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["echo", "echo_client", "hello"]);

    let client = system.component("echo_client").unwrap();
    assert_eq!(client.kind, Kind::App);
    assert_eq!(
        client.description,
        "Sends many echo requests and checks every reply."
    );
    assert_eq!(client.isolation, Isolation::InKernel);
    assert_eq!(client.restart, Restart::Never);
    assert_eq!(client.max_restarts, 3);
    assert!(client.exports.is_empty());
    assert!(client.privileges.is_empty());
    assert_eq!(
        client.needs,
        [Need {
            field: "echo".into(),
            service: "echo".into(),
            optional: false,
        }]
    );
    assert_eq!(
        client.config,
        [ConfigEntry {
            name: "rounds".into(),
            value: ConfigValue::Integer(1000)
        }]
    );
    assert_eq!(client.file, Path::new("specs/echo_client.toml"));
    assert_eq!(client.crate_dir(), Path::new("apps/echo_client"));

    let echo = system.component("echo").unwrap();
    assert_eq!(echo.kind, Kind::Server);
    assert_eq!(echo.restart, Restart::OnFailure);
    assert_eq!(echo.exports, ["echo"]);
    assert_eq!(echo.crate_dir(), Path::new("servers/echo"));

    let profiles: Vec<&str> = system.profiles.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(profiles, ["default", "solo"]);
    let default = system.profile("default").unwrap();
    assert_eq!(default.components, ["hello", "echo", "echo_client"]);
    assert_eq!(default.description, None);
    assert_eq!(
        system.profile("solo").unwrap().description.as_deref(),
        Some("Just hello.")
    );
}

#[test]
fn every_field_can_be_given() {
    let fixture = Fixture::valid();
    fixture.component(
        "drivers",
        r#"
name = "virtio_net"
kind = "driver"
description = "Drives a virtio network card."
isolation = "in-kernel"
restart = "always"
max_restarts = 0
exports = ["net", "net_stats"]
privileges = ["shutdown"]

[needs]
log_sink = "echo"
tcpip = { service = "tcpip", optional = true }
echo = { service = "echo" }
plain = { service = "echo", optional = false }

[config]
mtu = 1500
name = "eth0"
promiscuous = false
ratio = 0.5
"#,
    );
    let system = fixture.load();
    let net = system.component("virtio_net").unwrap();
    assert_eq!(net.kind, Kind::Driver);
    assert_eq!(net.restart, Restart::Always);
    assert_eq!(net.max_restarts, 0);
    assert_eq!(net.exports, ["net", "net_stats"]);
    assert_eq!(net.privileges, [Privilege::Shutdown]);
    let needs: Vec<(&str, &str, bool)> = net
        .needs
        .iter()
        .map(|n| (n.field.as_str(), n.service.as_str(), n.optional))
        .collect();
    assert_eq!(
        needs,
        [
            ("log_sink", "echo", false),
            ("tcpip", "tcpip", true),
            ("echo", "echo", false),
            ("plain", "echo", false),
        ]
    );
    let config: Vec<(&str, &ConfigValue)> = net
        .config
        .iter()
        .map(|e| (e.name.as_str(), &e.value))
        .collect();
    assert_eq!(
        config,
        [
            ("mtu", &ConfigValue::Integer(1500)),
            ("name", &ConfigValue::String("eth0".into())),
            ("promiscuous", &ConfigValue::Bool(false)),
            ("ratio", &ConfigValue::Float(0.5)),
        ]
    );
    // In no profile: loaded, but not wired into the kernel.
    let wired: Vec<&str> = system.wired_components().map(|c| c.name.as_str()).collect();
    assert_eq!(wired, ["echo", "echo_client", "hello"]);
}

#[test]
fn other_files_in_specs_are_ignored() {
    let fixture = Fixture::valid();
    fixture.write("specs/README.md", "# Specs");
    fixture.write(
        "specs/checker/Cargo.toml",
        "[package]\nname = \"starina-spec\"\n",
    );
    fixture.write("specs/profiles/notes.txt", "notes");
    assert_eq!(fixture.load().components.len(), 3);
}

const KERNEL_MANIFEST: &str = r#"
[package]
name = "starina-kernel"

[dependencies]
starina.workspace = true
# components (wired by specs)
hello = { path = "../apps/hello" }
echo = { path = "../servers/echo/" }
echo_client.path = "../apps/echo_client"
"#;

#[test]
fn the_kernel_depends_on_every_wired_component() {
    let fixture = Fixture::valid();
    fixture.write("kernel/Cargo.toml", KERNEL_MANIFEST);
    let system = fixture.load();
    assert_errors(
        messages(&check_kernel_manifest(fixture.path(), &system)),
        &[],
    );

    fixture.write(
        "kernel/Cargo.toml",
        &KERNEL_MANIFEST.replace("hello = ", "# hello = "),
    );
    assert_errors(
        messages(&check_kernel_manifest(fixture.path(), &system)),
        &["component 'hello' is in profile 'default' but kernel/Cargo.toml has no dependency 'hello = { path = \"../apps/hello\" }'"],
    );
}

#[test]
fn kernel_dependencies_must_point_at_the_crate() {
    let fixture = Fixture::valid();
    fixture.write(
        "kernel/Cargo.toml",
        &KERNEL_MANIFEST
            .replace("../servers/echo/", "../apps/echo")
            .replace(r#"hello = { path = "../apps/hello" }"#, r#"hello = "1.0""#),
    );
    let system = fixture.load();
    assert_errors(
        messages(&check_kernel_manifest(fixture.path(), &system)),
        &[
            "kernel/Cargo.toml: dependency 'hello' is not a path dependency, but component 'hello' is apps/hello; it must be 'hello = { path = \"../apps/hello\" }'",
            "kernel/Cargo.toml: dependency 'echo' has path '../apps/echo', but component 'echo' is servers/echo; it must be 'echo = { path = \"../servers/echo\" }'",
        ],
    );
}

#[test]
fn a_missing_kernel_manifest_is_reported() {
    let fixture = Fixture::valid();
    let system = fixture.load();
    let errors = messages(&check_kernel_manifest(fixture.path(), &system));
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("kernel/Cargo.toml: cannot read: "),
        "{errors:?}"
    );
}

#[test]
fn the_root_is_the_nearest_directory_with_specs() {
    let fixture = Fixture::valid();
    let root = fixture.path();
    assert_eq!(find_root(&root.join("apps/hello")).as_deref(), Some(root));
    assert_eq!(find_root(root).as_deref(), Some(root));
    assert_eq!(find_root(Path::new("/")), None);
}

/// The repository's own specs are valid and wired into the kernel.
#[test]
fn the_repository_specs_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let system = match load_all(&root) {
        Ok(system) => system,
        Err(errors) => panic!("{:#?}", messages(&errors)),
    };
    for profile in ["default", "test", "bench"] {
        assert!(system.profile(profile).is_some(), "profile {profile}");
    }
    if root.join("kernel/Cargo.toml").is_file() {
        assert_errors(messages(&check_kernel_manifest(&root, &system)), &[]);
    }
}

#[test]
fn a_profile_overrides_component_config() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/profiles/quick.toml",
        "components = [\"hello\", \"echo\", \"echo_client\"]\n\
         [config.echo_client]\nrounds = 5\n[config.hello]\ngreeting = \"yo\"\n",
    );
    let system = fixture.load();
    let quick = system.profile("quick").unwrap();
    let client = quick.config_for("echo_client").unwrap();
    assert_eq!(
        client.entries,
        [ConfigEntry {
            name: "rounds".into(),
            value: ConfigValue::Integer(5)
        }]
    );
    assert_eq!(client.describe(), "rounds = 5");
    assert_eq!(
        quick.config_for("hello").unwrap().describe(),
        "greeting = \"yo\""
    );
    assert!(quick.config_for("echo").is_none());
    // The spec keeps its own value; other profiles get it.
    let spec = system.component("echo_client").unwrap();
    assert_eq!(spec.config[0].value, ConfigValue::Integer(1000));
    assert!(system.profile("default").unwrap().config.is_empty());
}

#[test]
fn restart_window_defaults_to_a_minute() {
    let system = Fixture::valid().load();
    let echo = system.component("echo").unwrap();
    assert_eq!((echo.max_restarts, echo.restart_window_s), (3, 60));
    assert_eq!(echo.memory_limit_mib, 64);
}

/// Only the test profiles that crash the guest on purpose let a client
/// panic it; Linux's own spec (and so every other profile) does not.
#[test]
fn the_repository_allows_test_panic_only_in_test_profiles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let system = load_all(&root).unwrap_or_else(|e| panic!("{:#?}", messages(&e)));
    let linux = system.component("linux").unwrap();
    let own = linux.config.iter().find(|c| c.name == "allow_test_panic");
    assert_eq!(own.map(|c| &c.value), Some(&ConfigValue::Bool(false)));
    for profile in &system.profiles {
        let allowed = profile.config_for("linux").is_some_and(|o| {
            o.entries
                .iter()
                .any(|e| e.name == "allow_test_panic" && e.value == ConfigValue::Bool(true))
        });
        assert_eq!(
            allowed,
            ["linux_test", "linux_services"].contains(&profile.name.as_str()),
            "profile {}",
            profile.name
        );
    }
}
