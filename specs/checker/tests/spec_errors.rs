//! Each mistake in a component spec gives one exact message naming the
//! file, the field and what is wrong.

mod common;

use common::assert_errors;
use common::Fixture;
use common::ECHO;

/// The errors of a valid workspace whose `specs/echo.toml` is `spec`.
fn echo_errors(spec: &str) -> Vec<String> {
    let fixture = Fixture::valid();
    fixture.write("specs/echo.toml", spec);
    fixture.errors()
}

/// `ECHO` with `line` added at the top level.
fn echo_with(line: &str) -> String {
    // Top-level keys must come before any table; ECHO has none.
    format!("{ECHO}{line}\n")
}

/// `ECHO` with the line starting with `key` replaced by `line`
/// (or removed, if `line` is empty).
fn echo_replacing(key: &str, line: &str) -> String {
    let mut found = false;
    let text = ECHO
        .lines()
        .map(|l| {
            if l.starts_with(&format!("{key} ")) {
                found = true;
                line
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(found, "ECHO has no field {key}");
    text
}

#[test]
fn restart_must_be_a_known_policy() {
    assert_errors(
        echo_errors(&echo_replacing("restart", r#"restart = "sometimes""#)),
        &["spec specs/echo.toml: field 'restart': expected one of never, on-failure, always; got 'sometimes'"],
    );
}

#[test]
fn restart_typo_gets_a_suggestion() {
    assert_errors(
        echo_errors(&echo_replacing("restart", r#"restart = "on_failure""#)),
        &["spec specs/echo.toml: field 'restart': expected one of never, on-failure, always; got 'on_failure' (did you mean 'on-failure'?)"],
    );
}

#[test]
fn restart_must_be_a_string() {
    assert_errors(
        echo_errors(&echo_replacing("restart", "restart = true")),
        &["spec specs/echo.toml: field 'restart': expected one of never, on-failure, always; got bool true"],
    );
}

#[test]
fn isolation_must_be_known() {
    assert_errors(
        echo_errors(&echo_replacing("isolation", r#"isolation = "wasm""#)),
        &["spec specs/echo.toml: field 'isolation': expected one of in-kernel, user; got 'wasm'"],
    );
}

#[test]
fn isolation_is_required() {
    assert_errors(
        echo_errors(&echo_replacing("isolation", "")),
        &["spec specs/echo.toml: field 'isolation': required but missing; expected one of in-kernel, user"],
    );
}

#[test]
fn kind_must_be_known() {
    assert_errors(
        echo_errors(&echo_replacing("kind", r#"kind = "service""#)),
        &["spec specs/echo.toml: field 'kind': expected one of app, server, driver, linux, command; got 'service'"],
    );
}

#[test]
fn kind_is_required() {
    assert_errors(
        echo_errors(&echo_replacing("kind", "")),
        &["spec specs/echo.toml: field 'kind': required but missing; expected one of app, server, driver, linux, command"],
    );
}

#[test]
fn name_is_required() {
    assert_errors(
        echo_errors(&echo_replacing("name", "")),
        &["spec specs/echo.toml: field 'name': required but missing"],
    );
}

#[test]
fn name_must_match_the_file_name() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/echo.toml",
        &echo_replacing("name", r#"name = "echo_server""#),
    );
    assert_errors(
        fixture.errors(),
        &["spec specs/echo.toml: field 'name': 'echo_server' does not match the file name 'echo' (the spec of component 'echo_server' must be specs/echo_server.toml)"],
    );
}

#[test]
fn name_must_be_snake_case() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/EchoServer.toml",
        &echo_replacing("name", r#"name = "EchoServer""#).replace("\"echo\"]", "\"echo2\"]"),
    );
    fixture.crate_skeleton("servers", "EchoServer");
    assert_errors(
        fixture.errors(),
        &["spec specs/EchoServer.toml: field 'name': invalid component name: 'EchoServer' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)"],
    );
}

#[test]
fn name_must_not_be_a_keyword_or_a_linked_crate() {
    let fixture = Fixture::valid();
    for name in ["match", "log"] {
        fixture.write(
            &format!("specs/{name}.toml"),
            &format!("name = \"{name}\"\nkind = \"app\"\ndescription = \"x\"\nisolation = \"in-kernel\"\n"),
        );
        fixture.crate_skeleton("apps", name);
    }
    assert_errors(
        fixture.errors(),
        &[
            "spec specs/log.toml: field 'name': 'log' is reserved: the kernel already links a crate of that name",
            "spec specs/match.toml: field 'name': invalid component name: 'match' is a Rust keyword",
        ],
    );
}

#[test]
fn description_is_required_and_not_empty() {
    assert_errors(
        echo_errors(&echo_replacing("description", "")),
        &["spec specs/echo.toml: field 'description': required but missing"],
    );
    assert_errors(
        echo_errors(&echo_replacing("description", r#"description = "  ""#)),
        &["spec specs/echo.toml: field 'description': must not be empty: say what the component does"],
    );
    assert_errors(
        echo_errors(&echo_replacing("description", "description = 42")),
        &["spec specs/echo.toml: field 'description': expected a string; got integer 42"],
    );
}

#[test]
fn unknown_fields_are_errors() {
    assert_errors(
        echo_errors(&echo_with(r#"colour = "blue""#)),
        &["spec specs/echo.toml: field 'colour': unknown field (known fields: name, kind, description, isolation, restart, max_restarts, restart_window_s, memory_limit_mib, cpu, exports, privileges, needs, devices, config, command, env, workdir, user, ports, names)"],
    );
}

#[test]
fn unknown_field_typos_get_a_suggestion() {
    assert_errors(
        echo_errors(&echo_with(r#"export = ["echo"]"#)),
        &["spec specs/echo.toml: field 'export': unknown field (did you mean 'exports'?)"],
    );
    assert_errors(
        echo_errors(&format!("{ECHO}\n[need]\nfoo = \"bar\"\n")),
        &["spec specs/echo.toml: field 'need': unknown field (did you mean 'needs'?)"],
    );
}

#[test]
fn max_restarts_must_fit_a_u32() {
    assert_errors(
        echo_errors(&echo_with("max_restarts = -1")),
        &["spec specs/echo.toml: field 'max_restarts': expected an integer from 0 to 4294967295; got -1"],
    );
    assert_errors(
        echo_errors(&echo_with(r#"max_restarts = "3""#)),
        &["spec specs/echo.toml: field 'max_restarts': expected an integer; got '3'"],
    );
}

#[test]
fn max_restarts_needs_a_restart_policy() {
    assert_errors(
        echo_errors(&echo_replacing("restart", "max_restarts = 5")),
        &["spec specs/echo.toml: field 'max_restarts': has no effect because restart is 'never' (the default): set restart = \"on-failure\" or \"always\", or remove max_restarts"],
    );
}

#[test]
fn memory_limit_is_whole_mib_up_to_4_gib() {
    for bad in ["0", "-1", "4097"] {
        assert_errors(
            echo_errors(&echo_with(&format!("memory_limit_mib = {bad}"))),
            &[&format!("spec specs/echo.toml: field 'memory_limit_mib': expected MiB from 1 to 4096; got {bad}")],
        );
    }
    assert_errors(
        echo_errors(&echo_with("memory_limit_mib = \"64M\"")),
        &["spec specs/echo.toml: field 'memory_limit_mib': expected an integer; got '64M'"],
    );
}

#[test]
fn cpu_names_one_of_the_cpus_the_kernel_can_run_on() {
    for bad in ["-1", "8", "4294967296"] {
        assert_errors(
            echo_errors(&echo_with(&format!("cpu = {bad}"))),
            &[&format!("spec specs/echo.toml: field 'cpu': expected a CPU index from 0 to 7 (the kernel runs on at most 8 CPUs); got {bad}")],
        );
    }
    assert_errors(
        echo_errors(&echo_with("cpu = \"1\"")),
        &["spec specs/echo.toml: field 'cpu': expected an integer; got '1'"],
    );
    for good in [0, 7] {
        let fixture = Fixture::valid();
        fixture.write("specs/echo.toml", &echo_with(&format!("cpu = {good}")));
        let system = fixture.load();
        let echo = system.components.iter().find(|c| c.name == "echo").unwrap();
        assert_eq!(echo.cpu, Some(good));
    }
}

#[test]
fn restart_window_is_whole_seconds_up_to_a_day() {
    for bad in ["0", "-5", "86401"] {
        assert_errors(
            echo_errors(&echo_with(&format!("restart_window_s = {bad}"))),
            &[&format!("spec specs/echo.toml: field 'restart_window_s': expected seconds from 1 to 86400; got {bad}")],
        );
    }
    assert_errors(
        echo_errors(&echo_with("restart_window_s = 1.5")),
        &["spec specs/echo.toml: field 'restart_window_s': expected an integer; got float 1.5"],
    );
}

#[test]
fn restart_window_needs_a_restart_policy() {
    assert_errors(
        echo_errors(&echo_replacing("restart", "restart_window_s = 30")),
        &["spec specs/echo.toml: field 'restart_window_s': has no effect because restart is 'never' (the default): set restart = \"on-failure\" or \"always\", or remove restart_window_s"],
    );
}

#[test]
fn exports_must_be_distinct_service_names() {
    assert_errors(
        echo_errors(&echo_replacing("exports", r#"exports = ["echo", "echo"]"#)),
        &["spec specs/echo.toml: field 'exports': service 'echo' is listed twice"],
    );
    assert_errors(
        echo_errors(&echo_replacing("exports", r#"exports = ["echo", "Echo-2"]"#)),
        &["spec specs/echo.toml: field 'exports': invalid service name: 'Echo-2' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)"],
    );
    assert_errors(
        echo_errors(&echo_replacing("exports", r#"exports = "echo""#)),
        &["spec specs/echo.toml: field 'exports': expected an array of strings; got 'echo'"],
    );
    assert_errors(
        echo_errors(&echo_replacing("exports", r#"exports = ["echo", 1]"#)),
        &["spec specs/echo.toml: field 'exports': expected an array of strings; got an item integer 1"],
    );
}

#[test]
fn privileges_must_be_known_and_distinct() {
    assert_errors(
        echo_errors(&echo_with(r#"privileges = ["shutdwn", "reboot"]"#)),
        &[
            "spec specs/echo.toml: field 'privileges': unknown privilege 'shutdwn'; expected one of shutdown, monitor, hypervisor, spawn, control, console (did you mean 'shutdown'?)",
            "spec specs/echo.toml: field 'privileges': unknown privilege 'reboot'; expected one of shutdown, monitor, hypervisor, spawn, control, console",
        ],
    );
    assert_errors(
        echo_errors(&echo_with(r#"privileges = ["shutdown", "shutdown"]"#)),
        &["spec specs/echo.toml: field 'privileges': privilege 'shutdown' is listed twice"],
    );
}

#[test]
fn needs_fields_must_not_use_reserved_names() {
    assert_errors(
        echo_errors(&format!("{ECHO}\n[needs]\nsupervisor = \"a\"\nshutdown = \"b\"\nconfig = \"c\"\ninstance = \"d\"\n")),
        &[
            "spec specs/echo.toml: field 'needs.supervisor': 'supervisor' is reserved: the generated Env has its own `supervisor` field; choose another field name",
            "spec specs/echo.toml: field 'needs.shutdown': 'shutdown' is reserved: the generated Env has its own `shutdown` field (for the right to power off, add \"shutdown\" to privileges); choose another field name",
            "spec specs/echo.toml: field 'needs.config': 'config' is reserved: the generated Env has its own `config` field; choose another field name",
            "spec specs/echo.toml: field 'needs.instance': 'instance' is reserved: the generated Env has its own `instance` field; choose another field name",
        ],
    );
}

#[test]
fn needs_fields_must_be_identifiers() {
    assert_errors(
        echo_errors(&format!("{ECHO}\n[needs]\n\"Log-Server\" = \"log\"\ntype = \"types\"\n")),
        &[
            "spec specs/echo.toml: field 'needs.Log-Server': invalid env field name: 'Log-Server' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)",
            "spec specs/echo.toml: field 'needs.type': invalid env field name: 'type' is a Rust keyword",
        ],
    );
}

#[test]
fn needs_values_must_be_service_names() {
    assert_errors(
        echo_errors(&format!("{ECHO}\n[needs]\nlog = 1\nfs = \"File System\"\n")),
        &[
            "spec specs/echo.toml: field 'needs.log': expected a service name (a string) or a table such as `log = { service = \"log\", optional = true }`; got integer 1",
            "spec specs/echo.toml: field 'needs.fs': invalid service name: 'File System' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)",
        ],
    );
    assert_errors(
        echo_errors(&echo_with(r#"needs = ["echo"]"#)),
        &["spec specs/echo.toml: field 'needs': expected a table (`[needs]` with `key = value` lines); got an array"],
    );
}

#[test]
fn optional_needs_take_only_service_and_optional() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[needs]\n\
             net = {{ service = \"tcpip\", optinal = true }}\n\
             fs = {{ service = \"fs\", colour = \"red\" }}\n"
        )),
        &[
            "spec specs/echo.toml: field 'needs.net.optinal': unknown key (did you mean 'optional'?)",
            "spec specs/echo.toml: field 'needs.fs.colour': unknown key (known keys: service, optional)",
        ],
    );
}

#[test]
fn optional_needs_have_a_service_name_and_a_bool() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[needs]\n\
             a = {{ optional = true }}\n\
             b = {{ service = 7, optional = true }}\n\
             c = {{ service = \"tcpip\", optional = \"yes\" }}\n\
             d = {{ service = \"Tcp Ip\", optional = true }}\n\
             e = {{}}\n"
        )),
        &[
            "spec specs/echo.toml: field 'needs.a.service': required but missing; name the service the channel connects to",
            "spec specs/echo.toml: field 'needs.b.service': expected a service name (a string); got integer 7",
            "spec specs/echo.toml: field 'needs.c.optional': expected a bool (true or false); got 'yes'",
            "spec specs/echo.toml: field 'needs.d.service': invalid service name: 'Tcp Ip' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)",
            "spec specs/echo.toml: field 'needs.e.service': required but missing; name the service the channel connects to",
        ],
    );
}

#[test]
fn a_component_cannot_need_its_own_export() {
    assert_errors(
        echo_errors(&format!("{ECHO}\n[needs]\nmyself = \"echo\"\n")),
        &["spec specs/echo.toml: field 'needs.myself': needs service 'echo', which this component exports itself"],
    );
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[needs]\nmyself = {{ service = \"echo\", optional = true }}\n"
        )),
        &["spec specs/echo.toml: field 'needs.myself.service': needs service 'echo', which this component exports itself"],
    );
}

#[test]
fn config_values_must_be_scalars_with_identifier_names() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[config]\nsizes = [1, 2]\nlimits = {{ max = 1 }}\nwhen = 1979-05-27\n\"Max-Size\" = 1\nfn = 2\n"
        )),
        &[
            "spec specs/echo.toml: field 'config.sizes': expected an integer, string, bool or float; got an array",
            "spec specs/echo.toml: field 'config.limits': expected an integer, string, bool or float; got a table",
            "spec specs/echo.toml: field 'config.when': expected an integer, string, bool or float; got datetime 1979-05-27",
            "spec specs/echo.toml: field 'config.Max-Size': invalid config name: 'Max-Size' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)",
            "spec specs/echo.toml: field 'config.fn': invalid config name: 'fn' is a Rust keyword",
        ],
    );
}

#[test]
fn invalid_toml_names_the_position() {
    assert_errors(
        echo_errors("name = \"echo\"\nkind = app\n"),
        &["spec specs/echo.toml: invalid TOML at line 2, column 8: string values must be quoted, expected literal string"],
    );
    assert_errors(
        echo_errors("name = \"echo\"\nname = \"echo\"\n"),
        &["spec specs/echo.toml: invalid TOML at line 2, column 1: duplicate key"],
    );
}

#[test]
fn every_error_of_every_file_is_reported() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/echo.toml",
        "name = \"echo\"\nkind = \"sever\"\nisolation = \"ring0\"\nrestart = \"sometimes\"\n",
    );
    fixture.write(
        "specs/hello.toml",
        "name = \"hello\"\nkind = \"app\"\ndescription = \"Hi.\"\nisolation = \"in-kernel\"\nexports = 1\n",
    );
    assert_errors(
        fixture.errors(),
        &[
            "spec specs/echo.toml: field 'kind': expected one of app, server, driver, linux, command; got 'sever' (did you mean 'server'?)",
            "spec specs/echo.toml: field 'description': required but missing",
            "spec specs/echo.toml: field 'isolation': expected one of in-kernel, user; got 'ring0'",
            "spec specs/echo.toml: field 'restart': expected one of never, on-failure, always; got 'sometimes'",
            "spec specs/hello.toml: field 'exports': expected an array of strings; got integer 1",
        ],
    );
}

#[test]
fn the_crate_directory_must_exist() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/foo.toml",
        "name = \"foo\"\nkind = \"app\"\ndescription = \"Foo.\"\nisolation = \"in-kernel\"\n",
    );
    assert_errors(
        fixture.errors(),
        &["spec specs/foo.toml: name 'foo' but its crate directory apps/foo does not exist"],
    );
}

#[test]
fn a_crate_under_another_kind_gets_a_hint() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/echo.toml",
        &echo_replacing("kind", r#"kind = "driver""#),
    );
    assert_errors(
        fixture.errors(),
        &["spec specs/echo.toml: name 'echo' but its crate directory drivers/echo does not exist (servers/echo exists: is it kind = \"server\"?)"],
    );
}

#[test]
fn the_crate_must_be_named_after_the_component_and_have_a_build_script() {
    let fixture = Fixture::valid();
    fixture.write(
        "servers/echo/Cargo.toml",
        "[package]\nname = \"echo-server\"\n",
    );
    fixture.remove("servers/echo/build.rs");
    assert_errors(
        fixture.errors(),
        &[
            "spec specs/echo.toml: servers/echo/Cargo.toml must have package name 'echo' (the component's name); it has 'echo-server'",
            "spec specs/echo.toml: crate directory servers/echo has no build.rs; it needs one containing `fn main() { starina_spec::build::component(); }` to generate its Env",
        ],
    );
    fixture.remove("servers/echo/Cargo.toml");
    fixture.write("servers/echo/build.rs", "");
    assert_errors(
        fixture.errors(),
        &["spec specs/echo.toml: crate directory servers/echo has no Cargo.toml"],
    );
    fixture.write("servers/echo/Cargo.toml", "[package\n");
    assert_errors(
        fixture.errors(),
        &["servers/echo/Cargo.toml: invalid TOML at line 1, column 9: unclosed table, expected `]`"],
    );
}

#[test]
fn every_component_crate_needs_a_spec() {
    let fixture = Fixture::valid();
    fixture.crate_skeleton("drivers", "virtio_net");
    fixture.write("apps/notes/README.md", "not a crate");
    assert_errors(
        fixture.errors(),
        &["crate directory drivers/virtio_net has no spec: create specs/virtio_net.toml (every crate in apps/, servers/, drivers/ and commands/ is a component)"],
    );
}

#[test]
fn library_crates_need_no_spec() {
    let fixture = Fixture::valid();
    fixture.write(
        "apps/shell/Cargo.toml",
        "[package]\nname = \"shell\"\n\n[package.metadata.starina]\nlibrary = true\n",
    );
    fixture.load();
    fixture.write(
        "apps/shell/Cargo.toml",
        "[package]\nname = \"shell\"\n\n[package.metadata.starina]\nlibrary = false\n",
    );
    assert_errors(
        fixture.errors(),
        &["crate directory apps/shell has no spec: create specs/shell.toml (every crate in apps/, servers/, drivers/ and commands/ is a component)"],
    );
}

#[test]
fn devices_accept_kinds_and_explicit_matches() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/echo.toml",
        &format!(
            "{ECHO}\n[devices]\nnic = {{ kind = \"virtio-net\" }}\nraw = {{ pci = {{ vendor = 0x8086, device = 0x10d3 }}, virtio-mmio = {{ device_id = 4 }} }}\n"
        ),
    );
    let system = fixture.load();
    let echo = system.component("echo").unwrap();
    let fields: Vec<(&str, &str)> = echo
        .devices
        .iter()
        .map(|d| (d.field.as_str(), d.describe.as_str()))
        .collect();
    assert_eq!(
        fields,
        [
            ("nic", "virtio-net"),
            ("raw", "pci 8086:10d3 or virtio-mmio device 4")
        ]
    );
    assert_eq!(echo.devices[0].matches.len(), 3);
}

#[test]
fn devices_must_say_what_to_match() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[devices]\nnic = {{}}\ndisk = \"virtio-blk\"\nsupervisor = {{ kind = \"virtio-net\" }}\n\"Net-Card\" = {{ kind = \"virtio-net\" }}\n"
        )),
        &[
            "spec specs/echo.toml: field 'devices.nic': says nothing to match a device with: give `kind` (e.g. `nic = { kind = \"virtio-net\" }`), `pci = { vendor = ..., device = ... }` or `virtio-mmio = { device_id = ... }`",
            "spec specs/echo.toml: field 'devices.disk': expected a table such as `disk = { kind = \"virtio-net\" }`; got 'virtio-blk'",
            "spec specs/echo.toml: field 'devices.supervisor': 'supervisor' is reserved: the generated Env has its own `supervisor` field; choose another field name",
            "spec specs/echo.toml: field 'devices.Net-Card': invalid env field name: 'Net-Card' is not snake_case (lowercase letters and digits, words joined by single underscores, starting with a letter)",
        ],
    );
}

#[test]
fn device_entries_are_checked_key_by_key() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[devices]\na = {{ kind = \"virtio-nett\" }}\nb = {{ knd = \"virtio-net\" }}\nc = {{ pci = {{ device = 0x1000 }} }}\nd = {{ pci = {{ vendor = 70000 }} }}\ne = {{ virtio-mmio = {{ device_id = 0 }} }}\nf = {{ pci = 3 }}\ng = {{ virtio-mmio = {{ id = 1 }} }}\n"
        )),
        &[
            "spec specs/echo.toml: field 'devices.a.kind': expected one of virtio-net, virtio-blk, virtio-console, virtio-rng, virtio-9p, virtio-gpu, virtio-input, virtio-vsock, uart; got 'virtio-nett' (did you mean 'virtio-net'?)",
            "spec specs/echo.toml: field 'devices.b.knd': unknown key (did you mean 'kind'?)",
            "spec specs/echo.toml: field 'devices.c.pci.vendor': required but missing",
            "spec specs/echo.toml: field 'devices.d.pci.vendor': expected an integer from 0 to 0xffff; got 70000",
            "spec specs/echo.toml: field 'devices.e.virtio-mmio.device_id': expected a virtio device ID (an integer from 1 to 4294967295); got integer 0",
            "spec specs/echo.toml: field 'devices.f.pci': expected a table such as `{ vendor = 0x1af4, device = 0x1000 }`; got integer 3",
            "spec specs/echo.toml: field 'devices.g.virtio-mmio.id': unknown key (known keys: device_id)",
            "spec specs/echo.toml: field 'devices.g.virtio-mmio.device_id': required but missing",
        ],
    );
}

#[test]
fn devices_may_be_optional() {
    let fixture = Fixture::valid();
    fixture.write(
        "specs/echo.toml",
        &format!(
            "{ECHO}\n[devices]\nnic = {{ kind = \"virtio-net\", optional = true }}\n\
             disk = {{ kind = \"virtio-blk\", optional = false }}\n\
             rng = {{ virtio-mmio = {{ device_id = 4 }} }}\n"
        ),
    );
    let system = fixture.load();
    let echo = system.component("echo").unwrap();
    let fields: Vec<(&str, &str, bool)> = echo
        .devices
        .iter()
        .map(|d| (d.field.as_str(), d.describe.as_str(), d.optional))
        .collect();
    assert_eq!(
        fields,
        [
            ("nic", "virtio-net", true),
            ("disk", "virtio-blk", false),
            ("rng", "virtio-mmio device 4", false)
        ]
    );
    assert_eq!(echo.devices[0].matches.len(), 3);
}

#[test]
fn optional_devices_take_a_bool() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[devices]\n\
             a = {{ kind = \"virtio-net\", optional = \"yes\" }}\n\
             b = {{ kind = \"virtio-net\", optional = 1 }}\n\
             c = {{ kind = \"virtio-net\", optinal = true }}\n\
             d = {{ optional = true }}\n\
             e = {{ kind = \"virtio-net\", colour = \"red\" }}\n"
        )),
        &[
            "spec specs/echo.toml: field 'devices.a.optional': expected a bool (true or false); got 'yes'",
            "spec specs/echo.toml: field 'devices.b.optional': expected a bool (true or false); got integer 1",
            "spec specs/echo.toml: field 'devices.c.optinal': unknown key (did you mean 'optional'?)",
            "spec specs/echo.toml: field 'devices.d': says nothing to match a device with: give `kind` (e.g. `d = { kind = \"virtio-net\" }`), `pci = { vendor = ..., device = ... }` or `virtio-mmio = { device_id = ... }`",
            "spec specs/echo.toml: field 'devices.e.colour': unknown key (known keys: kind, pci, virtio-mmio, optional)",
        ],
    );
}

#[test]
fn a_device_field_cannot_also_be_a_need() {
    assert_errors(
        echo_errors(&format!(
            "{ECHO}\n[needs]\nnet = \"net\"\n\n[devices]\nnet = {{ kind = \"virtio-net\" }}\n"
        )),
        &["spec specs/echo.toml: field 'devices.net': 'net' is already a [needs] entry; an Env field has one meaning"],
    );
}

fn command_spec(name: &str, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nkind = \"command\"\ndescription = \"A command.\"\n\
         isolation = \"in-kernel\"\n{extra}"
    )
}

#[test]
fn commands_have_no_restart_policy_or_exports_and_unique_names() {
    let fixture = Fixture::valid();
    fixture.component(
        "commands",
        &command_spec("tools", "names = [\"ls\", \"Bad\", \"ls\"]\nrestart = \"always\"\nexports = [\"x\"]\n"),
    );
    assert_errors(
        fixture.errors(),
        &[
            "spec specs/tools.toml: field 'restart': not a field of a command: a command runs once per request; its caller decides what a failure means",
            "spec specs/tools.toml: field 'exports': not a field of a command: a command serves no services; it has streams",
            "spec specs/tools.toml: field 'names': invalid command name 'Bad': must start with a lowercase letter",
            "spec specs/tools.toml: field 'names': 'ls' is listed twice",
        ],
    );
}

#[test]
fn two_commands_cannot_answer_to_one_name() {
    let fixture = Fixture::valid();
    fixture.component("commands", &command_spec("tools", "names = [\"ls\", \"cat\"]\n"));
    fixture.component("commands", &command_spec("more", "names = [\"ls\"]\n"));
    assert_errors(
        fixture.errors(),
        &["spec specs/tools.toml: field 'names': command name 'ls' is also a name of 'more' (specs/more.toml)"],
    );
}

#[test]
fn profiles_do_not_start_commands_and_only_commands_have_names() {
    let fixture = Fixture::valid();
    fixture.component("commands", &command_spec("tools", ""));
    fixture.write("specs/profiles/extra.toml", "components = [\"tools\"]\n");
    let errors = fixture.errors();
    assert!(
        errors.iter().any(|e| e.contains("'tools' is a command: a profile does not start commands")),
        "{errors:#?}"
    );
    assert_errors(
        echo_errors(&echo_replacing("kind", "kind = \"server\"\nnames = [\"echo\"]")),
        &["spec specs/echo.toml: field 'names': only a command (kind = \"command\") has this field"],
    );
}
