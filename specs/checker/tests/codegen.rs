//! The generated code: its content, and (when `rustc` is on the PATH) that
//! it compiles against the SDK's API.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use common::messages;
use common::Fixture;
use common::ECHO_CLIENT;
use common::KERNEL_MANIFEST_OK;
use starina_spec::build::component_env;
use starina_spec::build::kernel_wiring;
use starina_spec::codegen;
use starina_spec::parse_component;
use starina_spec::ConfigValue;

/// A component that uses every feature of the spec format.
const DEMO: &str = r#"
name = "demo"
kind = "app"
description = """
Exercises every feature of the spec format.
Second line."""
isolation = "in-kernel"
restart = "on-failure"
max_restarts = 5
exports = ["demo"]
privileges = ["shutdown", "monitor"]

[needs]
zeta = "echo"
alpha = "echo"
uplink = { service = "tcpip", optional = true }

[devices]
nic = { kind = "virtio-net" }
disk = { pci = { vendor = 0x1af4, device = 0x1001 }, virtio-mmio = { device_id = 2 } }
any_intel = { pci = { vendor = 0x8086 } }
rng = { kind = "virtio-rng", optional = true }
serial = { kind = "uart", optional = true }

[config]
rounds = 1000
smallest = -9223372036854775808
greeting = "Hello, \"world\"\n"
verbose = true
ratio = 0.25
huge = 1e300
limit = inf
"#;

fn env_of(spec: &str, name: &str) -> String {
    let file = format!("specs/{name}.toml");
    match parse_component(Path::new(&file), spec) {
        Ok(component) => codegen::component_env(&component),
        Err(errors) => panic!("{:#?}", messages(&errors)),
    }
}

#[track_caller]
fn assert_contains(code: &str, expected: &str) {
    assert!(
        code.contains(expected),
        "generated code lacks\n{expected}\n--- code:\n{code}"
    );
}

/// A description with a bare CR (rustc rejects one in a doc comment), a
/// CRLF and an escape character still generates one clean doc line each.
#[test]
fn line_breaks_and_control_characters_in_descriptions() {
    let spec = ECHO_CLIENT.replace(
        "Sends many echo requests and checks every reply.",
        "one\\rtwo\\r\\nthree\\u001bfour",
    );
    let code = env_of(&spec, "echo_client");
    assert!(
        !code.contains('\r'),
        "a CR reached the generated code:\n{code}"
    );
    assert!(
        !code.contains('\u{1b}'),
        "an escape reached the generated code:\n{code}"
    );
    assert_contains(&code, "/// one\n/// two\n/// three four\n");
}

#[test]
fn env_of_a_client() {
    let code = env_of(ECHO_CLIENT, "echo_client");
    assert_contains(&code, "pub const COMPONENT_NAME: &str = \"echo_client\";\n");
    assert_contains(
        &code,
        "/// Typed environment of component `echo_client`, generated from specs/echo_client.toml.\n\
         ///\n\
         /// Sends many echo requests and checks every reply.\n\
         #[derive(Debug)]\n\
         pub struct Env {\n    \
             /// Channel to service `echo`.\n    \
             pub echo: ::starina::channel::Channel,\n    \
             /// Channel to the supervisor (startup): new connections to exported services and reconnects arrive here as `Open` messages.\n    \
             pub supervisor: ::starina::channel::Channel,\n    \
             /// The constants of the spec's `[config]` (also [`CONFIG`]).\n    \
             pub config: Config,\n    \
             /// 1 on first start, 2 after the first restart, and so on.\n    \
             pub instance: u32,\n\
         }\n",
    );
    assert_contains(
        &code,
        "pub struct Config {\n    /// `rounds = 1000` in the spec.\n    pub rounds: i64,\n}\n",
    );
    assert_contains(
        &code,
        "pub const CONFIG: Config = Config {\n    rounds: 1000,\n};\n",
    );
    assert_contains(
        &code,
        "        ::core::result::Result::Ok(Env {\n            \
             echo: raw.take_channel(\"echo\")?,\n            \
             supervisor: raw.take_channel(\"supervisor\")?,\n            \
             config,\n            \
             instance: raw.instance(),\n        \
         })\n",
    );
    // Without a profile's override, the spec's own values.
    assert_contains(
        &code,
        "    ) -> ::core::result::Result<Env, ::starina::env::EnvError> {\n        \
             Env::from_raw_with_config(raw, CONFIG)\n    \
         }\n",
    );
    assert_contains(
        &code,
        "pub fn __starina_start(raw: ::starina::env::RawEnv) {\n    \
             __starina_start_with_config(raw, CONFIG)\n\
         }\n",
    );
    assert_contains(
        &code,
        "pub fn __starina_start_with_config(raw: ::starina::env::RawEnv, config: Config) {\n    \
             match Env::from_raw_with_config(raw, config) {\n        \
                 ::core::result::Result::Ok(env) => ::starina::env::MainReturn::finish(main(env)),\n        \
                 ::core::result::Result::Err(e) => ::core::panic!(\"{}\", e),\n    \
             }\n\
         }\n",
    );
    assert!(!code.contains("shutdown"), "{code}");
}

#[test]
fn env_with_every_feature() {
    let code = env_of(DEMO, "demo");
    // Needs in spec order, before the supervisor; shutdown after it.
    let order: Vec<usize> = [
        "    pub zeta: ::starina::channel::Channel,",
        "    pub alpha: ::starina::channel::Channel,",
        "    pub uplink: ::core::option::Option<::starina::channel::Channel>,",
        "    pub supervisor: ::starina::channel::Channel,",
        "    pub shutdown: ::starina::system::Shutdown,",
    ]
    .iter()
    .map(|line| {
        code.find(line)
            .unwrap_or_else(|| panic!("no {line} in\n{code}"))
    })
    .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{code}");
    assert_contains(&code, "            shutdown: raw.take_shutdown()?,\n");
    assert_contains(&code, "            zeta: raw.take_channel(\"zeta\")?,\n");
    assert_contains(
        &code,
        "/// Exercises every feature of the spec format.\n/// Second line.\n",
    );
    for field in [
        "pub rounds: i64,",
        "pub smallest: i64,",
        "pub greeting: &'static str,",
        "pub verbose: bool,",
        "pub ratio: f64,",
        "pub huge: f64,",
        "pub limit: f64,",
    ] {
        assert_contains(&code, field);
    }
    for value in [
        "    smallest: -9223372036854775808,\n",
        "    greeting: \"Hello, \\\"world\\\"\\n\",\n",
        "    verbose: true,\n",
        "    ratio: 0.25,\n",
        "    huge: 1e300,\n",
        "    limit: f64::INFINITY,\n",
    ] {
        assert_contains(&code, value);
    }
}

#[test]
fn env_of_an_optional_need() {
    let code = env_of(DEMO, "demo");
    assert_contains(
        &code,
        "    /// Channel to service `echo`.\n    \
             pub alpha: ::starina::channel::Channel,\n    \
             /// Channel to service `tcpip` (optional need): `None` when the running profile has no component exporting `tcpip`.\n    \
             pub uplink: ::core::option::Option<::starina::channel::Channel>,\n",
    );
    assert_contains(
        &code,
        "            alpha: raw.take_channel(\"alpha\")?,\n            \
             uplink: raw.take_optional_channel(\"uplink\"),\n",
    );
}

#[test]
fn env_without_config_has_an_empty_config() {
    let spec =
        "name = \"bare\"\nkind = \"app\"\ndescription = \"Bare.\"\nisolation = \"in-kernel\"\n";
    let code = env_of(spec, "bare");
    assert_contains(&code, "pub struct Config {}\n");
    assert_contains(&code, "pub const CONFIG: Config = Config {};\n");
}

#[test]
fn config_values_as_rust() {
    let cases = [
        (ConfigValue::Integer(-3), "i64", "-3"),
        (
            ConfigValue::String("a\\b".into()),
            "&'static str",
            "\"a\\\\b\"",
        ),
        (ConfigValue::Bool(false), "bool", "false"),
        (ConfigValue::Float(1.0), "f64", "1.0"),
        (ConfigValue::Float(f64::NAN), "f64", "f64::NAN"),
        (
            ConfigValue::Float(f64::NEG_INFINITY),
            "f64",
            "f64::NEG_INFINITY",
        ),
    ];
    for (value, ty, expr) in cases {
        assert_eq!((value.rust_type(), value.rust_expr().as_str()), (ty, expr));
    }
}

#[test]
fn wiring_lists_wired_components_and_profiles() {
    let fixture = Fixture::valid();
    fixture.component("apps", &DEMO.replace("exports = [\"demo\"]\n", ""));
    fixture.write(
        "specs/profiles/bench.toml",
        r#"components = ["echo", "echo_client"]"#,
    );
    let code = codegen::wiring(&fixture.load());

    assert_contains(
        &code,
        "pub static COMPONENTS: &[::starina::spec::ComponentDef] = &[\n    \
             ::starina::spec::ComponentDef {\n        \
                 name: \"echo\",\n        \
                 kind: ::starina::spec::ComponentKind::Server,\n        \
                 isolation: ::starina::spec::Isolation::InKernel,\n        \
                 restart: ::starina::spec::RestartPolicy::OnFailure,\n        \
                 max_restarts: 3,\n        \
                 restart_window_s: 60,\n        \
                 memory_limit_mib: 64,\n        \
                 cpu: None,\n        \
                 exports: &[\"echo\"],\n        \
                 needs: &[],\n        \
                 privileges: &[],\n        \
                 devices: &[],\n        \
                 start: ::echo::__starina_start,\n    \
             },\n",
    );
    assert_contains(
        &code,
        "        needs: &[\n            \
                 ::starina::spec::Need { name: \"echo\", service: \"echo\", optional: false },\n        \
             ],\n",
    );
    assert_contains(&code, "start: ::echo_client::__starina_start,");
    assert_contains(&code, "start: ::hello::__starina_start,");
    // `demo` is in no profile, so the kernel does not link it.
    assert!(!code.contains("demo"), "{code}");
    assert_contains(
        &code,
        "pub static PROFILES: &[::starina::spec::ProfileDef] = &[\n    \
             ::starina::spec::ProfileDef {\n        \
                 name: \"bench\",\n        \
                 components: &[\"echo\", \"echo_client\"],\n        \
                 user: &[],\n        \
                 config: &[],\n    \
             },\n    \
             ::starina::spec::ProfileDef {\n        \
                 name: \"default\",\n        \
                 components: &[\"hello\", \"echo\", \"echo_client\"],\n        \
                 user: &[],\n        \
                 config: &[],\n    \
             },\n\
         ];\n",
    );
}

#[test]
fn wiring_of_a_config_override() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/profiles/quick.toml",
        "components = [\"echo\", \"echo_client\"]\n[config.echo_client]\nrounds = 5\n",
    );
    let code = codegen::wiring(&fixture.load());
    assert_contains(
        &code,
        "#[allow(clippy::needless_update)]\n\
         fn start_echo_client_in_quick(raw: ::starina::env::RawEnv) {\n    \
             let config = ::echo_client::Config {\n        \
                 rounds: 5,\n        \
                 ..::echo_client::CONFIG\n    \
             };\n    \
             ::echo_client::__starina_start_with_config(raw, config)\n\
         }\n",
    );
    assert_contains(
        &code,
        "        name: \"quick\",\n        \
                 components: &[\"echo\", \"echo_client\"],\n        \
                 user: &[],\n        \
                 config: &[\n            \
                     ::starina::spec::ConfigOverride {\n                \
                         component: \"echo_client\",\n                \
                         describe: \"rounds = 5\",\n                \
                         start: start_echo_client_in_quick,\n            \
                     },\n        \
                 ],\n",
    );
    // Every component keeps its own entry point.
    assert_contains(&code, "start: ::echo_client::__starina_start,");
}

#[test]
fn wiring_of_privileges() {
    let fixture = Fixture::valid();
    fixture.component("apps", &DEMO.replace("exports = [\"demo\"]\n", ""));
    fixture.write(
        "specs/profiles/demo.toml",
        r#"components = ["echo", "demo"]"#,
    );
    let code = codegen::wiring(&fixture.load());
    assert_contains(
        &code,
        "        restart: ::starina::spec::RestartPolicy::OnFailure,\n        max_restarts: 5,\n",
    );
    assert_contains(
        &code,
        "        privileges: &[::starina::spec::Privilege::Shutdown, ::starina::spec::Privilege::Monitor],\n",
    );
    assert_contains(
        &code,
        "            ::starina::spec::Need { name: \"zeta\", service: \"echo\", optional: false },\n            \
                     ::starina::spec::Need { name: \"alpha\", service: \"echo\", optional: false },\n            \
                     ::starina::spec::Need { name: \"uplink\", service: \"tcpip\", optional: true },\n",
    );
}

#[test]
fn wiring_of_devices() {
    let fixture = Fixture::valid();
    fixture.component("apps", &DEMO.replace("exports = [\"demo\"]\n", ""));
    fixture.write(
        "specs/profiles/demo.toml",
        r#"components = ["echo", "demo"]"#,
    );
    let code = codegen::wiring(&fixture.load());
    assert_contains(
        &code,
        "        devices: &[\n            \
                     ::starina::spec::DeviceNeed {\n                \
                         name: \"nic\",\n                \
                         describe: \"virtio-net\",\n                \
                         matches: &[\n                    \
                             ::starina::spec::DeviceMatch::Pci { vendor: 0x1af4, device: ::core::option::Option::Some(0x1000) },\n                    \
                             ::starina::spec::DeviceMatch::Pci { vendor: 0x1af4, device: ::core::option::Option::Some(0x1041) },\n                    \
                             ::starina::spec::DeviceMatch::VirtioMmio { device_id: 1 },\n                \
                         ],\n                \
                         optional: false,\n            \
                     },\n",
    );
    assert_contains(
        &code,
        "                describe: \"pci 1af4:1001 or virtio-mmio device 2\",\n",
    );
    assert_contains(
        &code,
        "                    ::starina::spec::DeviceMatch::Pci { vendor: 0x8086, device: ::core::option::Option::None },\n",
    );
    assert_contains(
        &code,
        "                name: \"rng\",\n                \
                 describe: \"virtio-rng\",\n",
    );
    assert_contains(
        &code,
        "                    ::starina::spec::DeviceMatch::VirtioMmio { device_id: 4 },\n                \
                 ],\n                \
                 optional: true,\n            \
                 },\n",
    );
    assert_contains(
        &code,
        "                name: \"serial\",\n                \
                 describe: \"uart\",\n                \
                 matches: &[\n                    \
                     ::starina::spec::DeviceMatch::Uart,\n                \
                 ],\n",
    );
}

#[test]
fn env_of_devices_and_monitor() {
    let code = env_of(DEMO, "demo");
    assert_contains(&code, "    /// Device `virtio-net` (spec `[devices]`).\n    pub nic: ::starina::driver::Device,\n");
    assert_contains(&code, "    pub disk: ::starina::driver::Device,\n");
    assert_contains(&code, "            nic: raw.take_device(\"nic\")?,\n");
    assert_contains(&code, "    /// Device `virtio-rng` (spec `[devices]`, optional): `None` when startup found no such device free.\n    pub rng: ::core::option::Option<::starina::driver::Device>,\n");
    assert_contains(&code, "            rng: raw.take_optional_device(\"rng\"),\n");
    assert_contains(&code, "    pub monitor: ::starina::system::Monitor,\n");
    assert_contains(&code, "            monitor: raw.take_monitor()?,\n");
}

#[test]
fn env_of_the_console_privilege() {
    let spec = "name = \"sh\"\nkind = \"app\"\ndescription = \"A shell.\"\nisolation = \"in-kernel\"\nprivileges = [\"console\"]\n";
    let code = env_of(spec, "sh");
    assert_contains(&code, "    pub console: ::starina::console::Console,\n");
    assert_contains(&code, "            console: raw.take_console()?,\n");
    assert!(!code.contains("take_monitor"), "{code}");
}

#[test]
fn build_entry_points_check_before_generating() {
    let fixture = Fixture::valid();
    let code = component_env(fixture.path(), "echo_client").unwrap();
    assert_contains(&code, "pub echo: ::starina::channel::Channel,");

    assert_eq!(
        messages(&component_env(fixture.path(), "ghost").unwrap_err()),
        ["component crate 'ghost' has no spec: specs/ghost.toml does not exist (every crate in apps/, servers/, drivers/ and commands/ is a component)"],
    );
    // A component's build checks only its own spec and crate.
    fixture.write("specs/hello.toml", "broken");
    assert!(component_env(fixture.path(), "echo_client").is_ok());
    fixture.write(
        "apps/echo_client/Cargo.toml",
        "[package]\nname = \"client\"\n",
    );
    assert_eq!(
        messages(&component_env(fixture.path(), "echo_client").unwrap_err()),
        ["spec specs/echo_client.toml: apps/echo_client/Cargo.toml must have package name 'echo_client' (the component's name); it has 'client'"],
    );

    let fixture = Fixture::valid();
    fixture.write("kernel/Cargo.toml", KERNEL_MANIFEST_OK);
    let wiring = kernel_wiring(fixture.path()).unwrap();
    assert_contains(&wiring, "pub static PROFILES");
    fixture.write("kernel/Cargo.toml", "[dependencies]\n");
    assert_eq!(kernel_wiring(fixture.path()).unwrap_err().len(), 3);
}

/// Just enough of the SDK's API (`starina::{channel, env, spec, system}`)
/// for the generated code to type-check against.
const SDK_STUB: &str = r#"
#![no_std]
pub mod channel {
    #[derive(Debug)]
    pub struct Channel(pub u32);
}
pub mod system {
    #[derive(Debug)]
    pub struct Shutdown(pub u32);
    #[derive(Debug)]
    pub struct Monitor(pub u32);
    #[derive(Debug)]
    pub struct Control(pub u32);
}
pub mod thread {
    pub fn exit(code: i32) -> ! { let _ = code; loop {} }
}
pub mod command {
    #[derive(Debug, Default)]
    pub struct Args;
    #[derive(Debug)]
    pub struct Input;
    #[derive(Debug)]
    pub struct Output;
    #[derive(Debug)]
    pub struct Spawner;
    pub trait CommandReturn { fn status(self, name: &str, stderr: Option<&mut Output>) -> i32; }
    impl CommandReturn for () { fn status(self, _: &str, _: Option<&mut Output>) -> i32 { 0 } }
}
pub mod driver {
    #[derive(Debug)]
    pub struct Device(pub u32);
}
pub mod env {
    pub trait MainReturn { fn finish(self); }
    impl MainReturn for () { fn finish(self) {} }
    #[derive(Debug)]
    pub struct EnvError { pub component: &'static str, pub name: &'static str }
    impl core::fmt::Display for EnvError {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "{}: {}", self.component, self.name)
        }
    }
    pub struct RawEnv(pub u32);
    impl RawEnv {
        pub fn instance(&self) -> u32 { self.0 }
        pub fn take_channel(&mut self, name: &'static str) -> Result<crate::channel::Channel, EnvError> {
            let _ = name;
            Ok(crate::channel::Channel(0))
        }
        pub fn take_optional_channel(&mut self, name: &'static str) -> Option<crate::channel::Channel> {
            let _ = name;
            None
        }
        pub fn take_shutdown(&mut self) -> Result<crate::system::Shutdown, EnvError> {
            Ok(crate::system::Shutdown(0))
        }
        pub fn take_monitor(&mut self) -> Result<crate::system::Monitor, EnvError> {
            Ok(crate::system::Monitor(0))
        }
        pub fn take_args(&mut self) -> crate::command::Args { crate::command::Args }
        pub fn take_input(&mut self, _: &'static str) -> Result<crate::command::Input, EnvError> { Ok(crate::command::Input) }
        pub fn take_output(&mut self, _: &'static str) -> Result<crate::command::Output, EnvError> { Ok(crate::command::Output) }
        pub fn duplicate_output(&self, _: &'static str) -> Option<crate::command::Output> { None }
        pub fn command_name(&self) -> &'static str { "" }
        pub fn take_spawner(&mut self) -> Result<crate::command::Spawner, EnvError> { Ok(crate::command::Spawner) }
        pub fn take_control(&mut self) -> Result<crate::system::Control, EnvError> { Ok(crate::system::Control(0)) }
        pub fn take_device(&mut self, name: &'static str) -> Result<crate::driver::Device, EnvError> {
            let _ = name;
            Ok(crate::driver::Device(0))
        }
        pub fn take_optional_device(&mut self, name: &'static str) -> Option<crate::driver::Device> {
            let _ = name;
            None
        }
    }
}
pub mod spec {
    use crate::env::RawEnv;
    #[derive(Clone, Copy, Debug)] pub enum ComponentKind { App, Server, Driver, Command }
    #[derive(Clone, Copy, Debug)] pub enum Isolation { InKernel, User }
    #[derive(Clone, Copy, Debug)] pub enum RestartPolicy { Never, OnFailure, Always }
    #[derive(Clone, Copy, Debug)] pub enum Privilege { Shutdown, Monitor, Spawn, Control }
    #[derive(Clone, Copy, Debug)] pub enum DeviceMatch { Pci { vendor: u16, device: Option<u16> }, VirtioMmio { device_id: u32 }, Uart }
    #[derive(Clone, Copy, Debug)] pub struct DeviceNeed { pub name: &'static str, pub describe: &'static str, pub matches: &'static [DeviceMatch], pub optional: bool }
    #[derive(Clone, Copy, Debug)] pub struct Need { pub name: &'static str, pub service: &'static str, pub optional: bool }
    #[derive(Clone, Copy, Debug)]
    pub struct ComponentDef {
        pub name: &'static str,
        pub kind: ComponentKind,
        pub isolation: Isolation,
        pub restart: RestartPolicy,
        pub max_restarts: u32,
        pub restart_window_s: u32,
        pub memory_limit_mib: u32,
        pub cpu: Option<u32>,
        pub exports: &'static [&'static str],
        pub needs: &'static [Need],
        pub privileges: &'static [Privilege],
        pub devices: &'static [DeviceNeed],
        pub start: fn(RawEnv),
    }
    #[derive(Clone, Copy, Debug)]
    pub struct CommandDef { pub names: &'static [&'static str], pub component: ComponentDef }
    #[derive(Clone, Copy, Debug)]
    pub struct ProfileDef { pub name: &'static str, pub components: &'static [&'static str], pub user: &'static [&'static str], pub config: &'static [ConfigOverride] }
    #[derive(Clone, Copy, Debug)]
    pub struct ConfigOverride { pub component: &'static str, pub describe: &'static str, pub start: fn(RawEnv) }
}
"#;

/// Compiles `source` as rlib `name` in `dir`, linking the given crates.
fn rustc(dir: &Path, name: &str, source: &str, externs: &[&str]) -> Result<(), String> {
    let file = dir.join(format!("{name}.rs"));
    fs::write(&file, source).unwrap();
    let mut command = Command::new("rustc");
    command
        .args([
            "--edition",
            "2021",
            "--crate-type",
            "rlib",
            "--crate-name",
            name,
        ])
        .arg("--out-dir")
        .arg(dir)
        .arg("-L")
        .arg(dir)
        .arg(&file);
    for krate in externs {
        command.arg("--extern").arg(format!(
            "{krate}={}",
            dir.join(format!("lib{krate}.rlib")).display()
        ));
    }
    let output = command
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn generated_code_compiles() {
    if Command::new("rustc").arg("--version").output().is_err() {
        eprintln!("rustc not found; skipping");
        return;
    }
    let fixture = Fixture::valid();
    fixture.component("apps", &DEMO.replace("exports = [\"demo\"]\n", ""));
    fixture.write(
        "specs/profiles/demo.toml",
        "components = [\"echo\", \"demo\"]\n\
         [config.demo]\nrounds = 7\ngreeting = \"hey\"\nverbose = false\nlimit = -1.5\n",
    );
    fixture.component(
        "commands",
        "name = \"tool\"\nkind = \"command\"\ndescription = \"A command.\"\n\
         isolation = \"in-kernel\"\nnames = [\"tool\", \"tool-x\"]\n\
         privileges = [\"spawn\", \"control\"]\n[needs]\necho = \"echo\"\n",
    );
    fixture.write(
        "kernel/Cargo.toml",
        &format!(
            "{KERNEL_MANIFEST_OK}demo = {{ path = \"../apps/demo\" }}\n\
             tool = {{ path = \"../commands/tool\" }}\n"
        ),
    );
    let system = fixture.load();
    assert_eq!(system.commands().count(), 1);
    let dir = fixture.path().join("rustc");
    fs::create_dir_all(&dir).unwrap();

    rustc(&dir, "starina", SDK_STUB, &[]).unwrap();
    for component in &system.components {
        let source = format!(
            "//! Component.\n#![no_std]\n#![forbid(unsafe_code)]\n#![deny(warnings, missing_docs)]\n\
             include!({:?});\n/// Entry.\npub fn main(env: Env) {{ let _ = env; }}\n",
            {
                let path = dir.join(format!("{}_env.rs", component.name));
                fs::write(&path, codegen::component_env(component)).unwrap();
                path
            }
        );
        rustc(&dir, &component.name, &source, &["starina"]).unwrap_or_else(|e| panic!("{e}"));
    }
    let wiring = dir.join("wiring.rs");
    fs::write(&wiring, kernel_wiring(fixture.path()).unwrap()).unwrap();
    let kernel = format!("#![no_std]\n#![deny(warnings)]\ninclude!({wiring:?});\n");
    let mut externs = vec!["starina"];
    externs.extend(system.components.iter().map(|c| c.name.as_str()));
    rustc(&dir, "kernel", &kernel, &externs).unwrap_or_else(|e| panic!("{e}"));

    // A mistyped `main` is a build error.
    let source = format!(
        "#![no_std]\ninclude!({:?});\npub fn main() {{}}\n",
        dir.join("hello_env.rs")
    );
    let error = rustc(&dir, "hello", &source, &["starina"]).unwrap_err();
    assert!(error.contains("E0061"), "{error}");
}
