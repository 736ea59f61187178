//! The fields of a command spec (`kind = "command"`): a component that runs
//! on demand, one fresh instance per run, with arguments and streams. Read
//! here with every rule that needs only the spec; the rest of the spec is
//! read as for any component (`parse`).

use crate::fields::Fields;
use crate::model::Kind;

/// The fields a command may not have, and why.
const NOT_FOR_COMMANDS: &[(&str, &str)] = &[
    (
        "restart",
        "a command runs once per request; its caller decides what a failure means",
    ),
    ("max_restarts", "a command is never restarted"),
    ("restart_window_s", "a command is never restarted"),
    ("exports", "a command serves no services; it has streams"),
    ("devices", "a command drives no devices; a driver does"),
];

/// The longest command name.
pub const NAME_MAX: usize = 32;

/// Reads `names` (for `kind = "command"`: the names it answers to, its own
/// name when absent). Other kinds may not have the command-only field.
pub fn read_command(f: &mut Fields, kind: Option<Kind>, name: Option<&str>) -> Vec<String> {
    if kind != Some(Kind::Command) {
        if f.is_present("names") {
            f.take("names");
            f.error("names", "only a command (kind = \"command\") has this field");
        }
        return Vec::new();
    }
    for (field, why) in NOT_FOR_COMMANDS {
        if f.is_present(field) {
            f.take(field);
            f.error(field, format!("not a field of a command: {why}"));
        }
    }
    if !f.is_present("names") {
        return name.map(|n| vec![n.to_string()]).unwrap_or_default();
    }
    let names = f.string_list("names");
    if names.is_empty() {
        f.error("names", "must list at least one name (or leave it out: the spec's name)");
    }
    let mut seen = Vec::new();
    for n in names {
        if let Err(why) = check_command_name(&n) {
            f.error("names", format!("invalid command name '{n}': {why}"));
        } else if seen.contains(&n) {
            f.error("names", format!("'{n}' is listed twice"));
        } else {
            seen.push(n);
        }
    }
    seen
}

/// A command name: what a user types. Lowercase letters, digits, `-` and
/// `_`, starting with a letter, at most [`NAME_MAX`] bytes.
pub fn check_command_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > NAME_MAX {
        return Err(format!("must be 1 to {NAME_MAX} characters"));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with a lowercase letter".into());
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    {
        return Err("may hold only lowercase letters, digits, '-' and '_'".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_names_are_what_a_user_types() {
        assert!(check_command_name("http-get").is_ok());
        assert!(check_command_name("ls").is_ok());
        assert!(check_command_name("").is_err());
        assert!(check_command_name("Ls").is_err());
        assert!(check_command_name("-x").is_err());
        assert!(check_command_name("a b").is_err());
        assert!(check_command_name(&"a".repeat(NAME_MAX + 1)).is_err());
    }
}
