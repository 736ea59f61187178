//! The fields of a Linux service spec (`kind = "linux"`): the program the
//! linux server runs in the microVM, and how. Parsed here, with every rule
//! that needs only the spec; the rest of the spec is read as for any
//! component (`parse`).

use std::collections::BTreeSet;

use toml::Value;

use crate::fields::describe;
use crate::fields::Fields;
use crate::model::Kind;
use crate::model::LinuxService;

/// The fields only a Linux service has.
pub const LINUX_FIELDS: &[&str] = &["command", "env", "workdir", "user", "ports"];

/// The fields a Linux service may not have, and why.
const NATIVE_ONLY: &[(&str, &str)] = &[
    ("isolation", "a Linux service runs in the Linux microVM"),
    (
        "exports",
        "a Linux service serves TCP ports (`ports`), not channels",
    ),
    ("privileges", "a Linux service holds no native privileges"),
    ("devices", "a Linux service drives no native devices"),
    ("config", "pass settings in `command` or `[env]`"),
    ("cpu", "a Linux service runs on the microVM's vCPUs"),
];

/// The env field (and service) every Linux service's runner connects to.
pub const LINUX_SERVICE: &str = "linux";

/// Reads the Linux-only fields: for `kind = "linux"` the service, for any
/// other kind `None`, with an error for each Linux field present.
pub fn read_linux(f: &mut Fields, kind: Option<Kind>) -> Option<LinuxService> {
    if kind != Some(Kind::Linux) {
        for field in LINUX_FIELDS {
            if f.is_present(field) {
                f.take(field);
                f.error(
                    field,
                    "only a Linux service (kind = \"linux\") has this field",
                );
            }
        }
        return None;
    }
    for (field, why) in NATIVE_ONLY {
        if f.is_present(field) {
            f.take(field);
            f.error(field, format!("not a field of a Linux service: {why}"));
        }
    }
    let command = read_command(f);
    let env = read_env(f);
    let workdir = read_workdir(f);
    let user = read_user(f);
    let ports = read_ports(f);
    Some(LinuxService {
        command,
        env,
        workdir,
        user,
        ports,
    })
}

fn read_command(f: &mut Fields) -> Vec<String> {
    if !f.is_present("command") {
        f.error(
            "command",
            "required but missing; the program and its arguments, e.g. \
             command = [\"busybox\", \"httpd\", \"-f\", \"-p\", \"8000\"]",
        );
        return Vec::new();
    }
    let command = f.string_list("command");
    if command.first().is_none_or(|program| program.is_empty()) {
        f.error("command", "must name a program (its first item) to run");
    }
    if command.iter().any(|a| a.contains('\0')) {
        f.error(
            "command",
            "must not contain NUL characters (Linux arguments are C strings)",
        );
    }
    command
}

fn read_env(f: &mut Fields) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (key, value) in f.table("env") {
        let path = format!("env.{key}");
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            f.error(&path, "a variable name is not empty and has no '=' or NUL");
            continue;
        }
        match value {
            Value::String(v) if v.contains('\0') => {
                f.error(&path, "must not contain NUL characters");
            }
            Value::String(v) => env.push((key, v)),
            other => f.error(
                &path,
                format!("expected a string; got {}", describe(&other)),
            ),
        }
    }
    env
}

fn read_workdir(f: &mut Fields) -> Option<String> {
    let workdir = f.string("workdir", false)?;
    if !workdir.starts_with('/') || workdir.contains('\0') {
        f.error(
            "workdir",
            format!("expected an absolute path in the guest; got '{workdir}'"),
        );
        return None;
    }
    Some(workdir)
}

fn read_user(f: &mut Fields) -> Option<String> {
    let user = f.string("user", false)?;
    if user.is_empty() || user.contains('\0') || user.chars().any(char::is_whitespace) {
        f.error(
            "user",
            format!(
                "expected a user name, a uid or uid:gid (e.g. \"nobody\", \"1000\"); got '{user}'"
            ),
        );
        return None;
    }
    Some(user)
}

fn read_ports(f: &mut Fields) -> Vec<u16> {
    let Some(value) = f.take("ports") else {
        return Vec::new();
    };
    let Value::Array(items) = value else {
        f.error(
            "ports",
            format!("expected an array of TCP ports; got {}", describe(&value)),
        );
        return Vec::new();
    };
    let mut ports = Vec::new();
    let mut seen = BTreeSet::new();
    for item in items {
        match item {
            Value::Integer(p) => match u16::try_from(p) {
                Ok(port) if port > 0 && seen.insert(port) => ports.push(port),
                Ok(port) if port > 0 => f.error("ports", format!("port {port} is listed twice")),
                _ => f.error(
                    "ports",
                    format!("expected a TCP port from 1 to 65535; got {p}"),
                ),
            },
            other => f.error(
                "ports",
                format!("expected a TCP port (an integer); got {}", describe(&other)),
            ),
        }
    }
    ports
}
