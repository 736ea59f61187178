//! Linux services in specs (`kind = "linux"`): what they may say, what the
//! profile rules add, and the wiring startup gets for them.

mod common;

use common::assert_errors;
use common::Fixture;
use common::ECHO;
use starina_spec::codegen;

/// A linux server exporting `linux` (its crate is made by the fixture).
const LINUX: &str = r#"
name = "linux"
kind = "server"
description = "Runs Linux."
isolation = "in-kernel"
exports = ["linux"]
"#;

const WEB: &str = r#"
name = "web"
kind = "linux"
description = "Serves a page from Linux."
command = ["busybox", "httpd", "-f", "-p", "8000"]
workdir = "/srv/www"
user = "nobody"
ports = [8000]
restart = "always"

[env]
GREETING = "hi"

[needs]
echo = "echo"
"#;

/// A workspace with echo, linux and `web` (the given spec), and a default
/// profile starting them in the given order.
fn fixture(web: &str, order: &str) -> Fixture {
    let fixture = Fixture::empty();
    fixture.component("servers", ECHO);
    fixture.component("servers", LINUX);
    fixture.write("specs/web.toml", web);
    fixture.write(
        "specs/profiles/default.toml",
        &format!("components = [{order}]"),
    );
    fixture
}

const ORDER: &str = r#""echo", "linux", "web""#;

#[test]
fn a_linux_service_is_a_component_without_a_crate() {
    let system = fixture(WEB, ORDER).load();
    let web = system.component("web").unwrap();
    let service = web.linux.as_ref().unwrap();
    assert_eq!(service.command, ["busybox", "httpd", "-f", "-p", "8000"]);
    assert_eq!(service.env, [("GREETING".to_string(), "hi".to_string())]);
    assert_eq!(service.workdir.as_deref(), Some("/srv/www"));
    assert_eq!(service.user.as_deref(), Some("nobody"));
    assert_eq!(service.ports, [8000]);
    // The runner's need comes first, then the spec's own.
    let needs: Vec<&str> = web.needs.iter().map(|n| n.service.as_str()).collect();
    assert_eq!(needs, ["linux", "echo"]);
    assert!(!web.has_crate());
}

#[test]
fn the_wiring_runs_it_through_the_runner() {
    let code = codegen::wiring(&fixture(WEB, ORDER).load());
    assert!(
        code.contains("kind: ::starina::spec::ComponentKind::Linux,"),
        "{code}"
    );
    assert!(code.contains("start: start_linux_web,"), "{code}");
    assert!(
        code.contains("::linux_service_runner::run(raw, &SERVICE)"),
        "{code}"
    );
    assert!(
        code.contains(r#"command: &["busybox", "httpd", "-f", "-p", "8000"],"#),
        "{code}"
    );
    assert!(code.contains(r#"env: &[("GREETING", "hi")],"#), "{code}");
    assert!(
        code.contains("user: ::core::option::Option::Some(\"nobody\"),"),
        "{code}"
    );
    assert!(code.contains("ports: &[8000],"), "{code}");
    // Only `linux` is wired: the spec's own needs order the profile.
    let web = code.split("name: \"web\"").nth(1).unwrap();
    let needs = web
        .split("needs:")
        .nth(1)
        .unwrap()
        .split("],")
        .next()
        .unwrap();
    assert!(needs.contains("service: \"linux\""), "{needs}");
    assert!(!needs.contains("service: \"echo\""), "{needs}");
}

#[test]
fn the_profile_must_start_linux_and_its_needs_first() {
    assert_errors(
        fixture(WEB, r#""echo", "web", "linux""#).errors(),
        &["profile specs/profiles/default.toml: component 'web' needs service 'linux' (field 'linux') from 'linux', which starts after it; list 'linux' before 'web' (components start in the listed order)"],
    );
    assert_errors(
        fixture(WEB, r#""echo", "web""#).errors(),
        &["profile specs/profiles/default.toml: component 'web' needs service 'linux' (field 'linux'), which no component in this profile exports"],
    );
}

#[test]
fn a_command_is_required_and_checked() {
    let no_command = WEB.replace(
        "command = [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8000\"]\n",
        "",
    );
    assert_errors(
        fixture(&no_command, ORDER).errors(),
        &["spec specs/web.toml: field 'command': required but missing; the program and its arguments, e.g. command = [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8000\"]"],
    );
    let empty = WEB.replace("[\"busybox\", \"httpd\", \"-f\", \"-p\", \"8000\"]", "[]");
    assert_errors(
        fixture(&empty, ORDER).errors(),
        &["spec specs/web.toml: field 'command': must name a program (its first item) to run"],
    );
}

#[test]
fn bad_fields_say_what_is_wrong() {
    let cases = [
        ("workdir = \"/srv/www\"", "workdir = \"srv\"", "field 'workdir': expected an absolute path in the guest; got 'srv'"),
        ("user = \"nobody\"", "user = \"\"", "field 'user': expected a user name, a uid or uid:gid (e.g. \"nobody\", \"1000\"); got ''"),
        ("ports = [8000]", "ports = [0]", "field 'ports': expected a TCP port from 1 to 65535; got 0"),
        ("ports = [8000]", "ports = [8000, 8000]", "field 'ports': port 8000 is listed twice"),
        ("GREETING = \"hi\"", "\"A=B\" = \"hi\"", "field 'env.A=B': a variable name is not empty and has no '=' or NUL"),
        ("GREETING = \"hi\"", "GREETING = 1", "field 'env.GREETING': expected a string; got integer 1"),
    ];
    for (from, to, want) in cases {
        assert_errors(
            fixture(&WEB.replace(from, to), ORDER).errors(),
            &[&format!("spec specs/web.toml: {want}")],
        );
    }
}

#[test]
fn native_fields_are_refused_and_linux_fields_only_for_linux() {
    let with_exports = WEB.replace(
        "restart = \"always\"",
        "restart = \"always\"\nexports = [\"web\"]",
    );
    assert_errors(
        fixture(&with_exports, ORDER).errors(),
        &["spec specs/web.toml: field 'exports': not a field of a Linux service: a Linux service serves TCP ports (`ports`), not channels"],
    );
    let echo_with_command = ECHO.replace("exports", "command = [\"true\"]\nexports");
    let f = fixture(WEB, ORDER);
    f.write("specs/echo.toml", &echo_with_command);
    assert_errors(
        f.errors(),
        &["spec specs/echo.toml: field 'command': only a Linux service (kind = \"linux\") has this field"],
    );
}

#[test]
fn its_need_on_linux_is_implied() {
    let explicit = WEB.replace("echo = \"echo\"", "echo = \"echo\"\nlinux = \"linux\"");
    assert_errors(
        fixture(&explicit, ORDER).errors(),
        &["spec specs/web.toml: field 'needs.linux': a Linux service always needs the 'linux' service (implied); remove this entry"],
    );
}
