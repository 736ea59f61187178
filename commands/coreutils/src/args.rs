//! Option parsing shared by the commands, in the usual Unix way: short
//! flags (`-l`, bundled as `-la`), options taking a value (`-n 5` or
//! `-n5`), options anywhere among the operands (as GNU allows), `--` ending
//! the options and `-` being an operand (stdin). `--help` is handled before
//! parsing (`Args::wants_help`).

use alloc::format;
use alloc::string::String;
use alloc::string::ToString;
use alloc::vec::Vec;

/// What a command accepts.
pub struct Spec {
    /// Flags without a value, e.g. `"rf"`.
    pub flags: &'static str,
    /// Options that take a value, e.g. `"n"`.
    pub valued: &'static str,
    /// `-5` means `-<this> 5` (head and tail's old form).
    pub digits: Option<char>,
}

/// The parsed arguments.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Parsed {
    flags: Vec<char>,
    values: Vec<(char, String)>,
    pub operands: Vec<String>,
}

impl Parsed {
    /// Whether flag `c` was given.
    pub fn has(&self, c: char) -> bool {
        self.flags.contains(&c)
    }

    /// The last value given for option `c`.
    pub fn value(&self, c: char) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| *k == c)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `args` (the arguments after the command's name); the error is
/// a usage message.
pub fn parse(args: &[String], spec: &Spec) -> Result<Parsed, String> {
    let mut parsed = Parsed::default();
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        if arg == "--" {
            parsed.operands.extend(iter.cloned());
            break;
        }
        if arg.starts_with("--") {
            return Err(format!("unknown option {arg}"));
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            parsed.operands.push(arg.clone());
            continue;
        }
        if let Some(c) = spec.digits {
            if arg[1..].bytes().all(|b| b.is_ascii_digit()) {
                parsed.values.push((c, arg[1..].to_string()));
                continue;
            }
        }
        short_options(&arg[1..], spec, &mut iter, &mut parsed)?;
    }
    Ok(parsed)
}

/// One argument of bundled short options (without its `-`).
fn short_options<'a>(
    bundle: &str,
    spec: &Spec,
    rest: &mut impl Iterator<Item = &'a String>,
    parsed: &mut Parsed,
) -> Result<(), String> {
    for (i, c) in bundle.char_indices() {
        if spec.flags.contains(c) {
            parsed.flags.push(c);
        } else if spec.valued.contains(c) {
            let attached = &bundle[i + c.len_utf8()..];
            let value = if attached.is_empty() {
                rest.next()
                    .cloned()
                    .ok_or_else(|| format!("option -{c} needs a value"))?
            } else {
                attached.to_string()
            };
            parsed.values.push((c, value));
            return Ok(());
        } else {
            return Err(format!("unknown option -{c}"));
        }
    }
    Ok(())
}

/// A count such as `-n`'s: a non-negative decimal number.
pub fn count(text: &str, what: &str) -> Result<u64, String> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid {what}: '{text}'"));
    }
    text.parse()
        .map_err(|_| format!("invalid {what}: '{text}' is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    const SPEC: Spec = Spec {
        flags: "rfl",
        valued: "n",
        digits: Some('n'),
    };

    #[test]
    fn flags_bundle_and_mix_with_operands() {
        let p = parse(&strings(&["-rf", "a", "-l", "b"]), &SPEC).unwrap();
        assert!(p.has('r') && p.has('f') && p.has('l'));
        assert_eq!(p.operands, vec!["a", "b"]);
    }

    #[test]
    fn values_attached_or_separate_and_the_last_wins() {
        let p = parse(&strings(&["-n", "3", "x", "-n7"]), &SPEC).unwrap();
        assert_eq!(p.value('n'), Some("7"));
        assert_eq!(p.operands, vec!["x"]);
        let p = parse(&strings(&["-rn5"]), &SPEC).unwrap();
        assert!(p.has('r'));
        assert_eq!(p.value('n'), Some("5"));
        let p = parse(&strings(&["-12"]), &SPEC).unwrap();
        assert_eq!(p.value('n'), Some("12"));
    }

    #[test]
    fn double_dash_and_dash_are_operands() {
        let p = parse(&strings(&["-", "--", "-r", "--x"]), &SPEC).unwrap();
        assert!(!p.has('r'));
        assert_eq!(p.operands, vec!["-", "-r", "--x"]);
    }

    #[test]
    fn bad_options_are_usage_errors() {
        assert_eq!(
            parse(&strings(&["-x"]), &SPEC),
            Err("unknown option -x".into())
        );
        assert_eq!(
            parse(&strings(&["-rz"]), &SPEC),
            Err("unknown option -z".into())
        );
        assert_eq!(
            parse(&strings(&["--all"]), &SPEC),
            Err("unknown option --all".into())
        );
        assert_eq!(
            parse(&strings(&["-n"]), &SPEC),
            Err("option -n needs a value".into())
        );
        let no_digits = Spec {
            digits: None,
            ..SPEC
        };
        assert!(parse(&strings(&["-5"]), &no_digits).is_err());
    }

    #[test]
    fn counts_are_plain_numbers() {
        assert_eq!(count("10", "count"), Ok(10));
        assert!(count("-1", "count").is_err());
        assert!(count("", "count").is_err());
        assert!(count("1x", "count").is_err());
        assert!(count("99999999999999999999999", "count").is_err());
    }
}
