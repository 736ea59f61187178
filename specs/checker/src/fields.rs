//! Reading a TOML table field by field, collecting every error instead of
//! stopping at the first. Fields are taken out of the table as they are
//! read; whatever is left at the end is an unknown field.

use std::path::Path;

use toml::Table;
use toml::Value;

use crate::error::Origin;
use crate::error::SpecError;
use crate::names::did_you_mean;

/// Parses a whole file as a TOML table.
pub fn parse_toml(origin: Origin, file: &Path, text: &str) -> Result<Table, SpecError> {
    toml::from_str::<Table>(text).map_err(|e| {
        let position = match e.span() {
            Some(span) => {
                let before = text.get(..span.start).unwrap_or(text);
                let line = before.matches('\n').count() + 1;
                let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
                format!(" at line {line}, column {column}")
            }
            None => String::new(),
        };
        let message = format!("invalid TOML{position}: {}", e.message().trim_end());
        match origin {
            // Nothing else names the file.
            Origin::Other => SpecError::other(file, format!("{}: {message}", file.display())),
            _ => SpecError::new(origin, file, message),
        }
    })
}

/// A short description of a value for "expected X; got Y" messages.
pub fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("'{s}'"),
        Value::Integer(i) => format!("integer {i}"),
        Value::Float(f) => format!("float {f}"),
        Value::Boolean(b) => format!("bool {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

/// The top-level fields of one file.
pub struct Fields<'a> {
    origin: Origin,
    file: &'a Path,
    table: Table,
    known: &'static [&'static str],
    errors: &'a mut Vec<SpecError>,
}

impl<'a> Fields<'a> {
    /// Reads `table`, whose fields must be among `known`.
    pub fn new(
        origin: Origin,
        file: &'a Path,
        table: Table,
        known: &'static [&'static str],
        errors: &'a mut Vec<SpecError>,
    ) -> Fields<'a> {
        Fields {
            origin,
            file,
            table,
            known,
            errors,
        }
    }

    /// Records an error about `field` (a key path such as `needs.echo`).
    pub fn error(&mut self, field: &str, message: impl Into<String>) {
        self.errors
            .push(SpecError::field(self.origin, self.file, field, message));
    }

    /// Records an error about the file as a whole.
    pub fn file_error(&mut self, message: impl Into<String>) {
        self.errors
            .push(SpecError::new(self.origin, self.file, message));
    }

    pub fn is_present(&self, field: &str) -> bool {
        self.table.contains_key(field)
    }

    /// The value of `field`, without taking it.
    pub fn peek(&self, field: &str) -> Option<&Value> {
        self.table.get(field)
    }

    /// Takes `field` out of the table.
    pub fn take(&mut self, field: &str) -> Option<Value> {
        self.table.remove(field)
    }

    /// A string field; `None` (after recording why) if missing or mistyped.
    pub fn string(&mut self, field: &str, required: bool) -> Option<String> {
        match self.take(field) {
            Some(Value::String(s)) => Some(s),
            Some(other) => {
                self.error(
                    field,
                    format!("expected a string; got {}", describe(&other)),
                );
                None
            }
            None if required => {
                self.error(field, "required but missing");
                None
            }
            None => None,
        }
    }

    /// A field whose value is one of `choices`; `default` when missing
    /// (or an error when there is no default).
    pub fn choice<T: Copy>(
        &mut self,
        field: &str,
        choices: &[(T, &'static str)],
        default: Option<T>,
    ) -> Option<T> {
        let names: Vec<&str> = choices.iter().map(|(_, name)| *name).collect();
        let expected = format!("expected one of {}", names.join(", "));
        match self.take(field) {
            Some(Value::String(s)) => match choices.iter().find(|(_, name)| *name == s) {
                Some((value, _)) => Some(*value),
                None => {
                    let hint = did_you_mean(&s, names.iter().copied());
                    self.error(field, format!("{expected}; got '{s}'{hint}"));
                    None
                }
            },
            Some(other) => {
                self.error(field, format!("{expected}; got {}", describe(&other)));
                None
            }
            None if default.is_some() => default,
            None => {
                self.error(field, format!("required but missing; {expected}"));
                None
            }
        }
    }

    /// An optional integer field.
    pub fn integer(&mut self, field: &str) -> Option<i64> {
        match self.take(field) {
            Some(Value::Integer(i)) => Some(i),
            Some(other) => {
                self.error(
                    field,
                    format!("expected an integer; got {}", describe(&other)),
                );
                None
            }
            None => None,
        }
    }

    /// An optional array of strings (empty when missing). Items that are
    /// not strings are reported and left out.
    pub fn string_list(&mut self, field: &str) -> Vec<String> {
        match self.take(field) {
            Some(Value::Array(items)) => {
                let mut strings = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => strings.push(s),
                        other => self.error(
                            field,
                            format!(
                                "expected an array of strings; got an item {}",
                                describe(&other)
                            ),
                        ),
                    }
                }
                strings
            }
            Some(other) => {
                self.error(
                    field,
                    format!("expected an array of strings; got {}", describe(&other)),
                );
                Vec::new()
            }
            None => Vec::new(),
        }
    }

    /// An optional table (empty when missing), in document order.
    pub fn table(&mut self, field: &str) -> Table {
        match self.take(field) {
            Some(Value::Table(table)) => table,
            Some(other) => {
                self.error(
                    field,
                    format!(
                        "expected a table (`[{field}]` with `key = value` lines); got {}",
                        describe(&other)
                    ),
                );
                Table::new()
            }
            None => Table::new(),
        }
    }

    /// Reports every field nobody took as unknown.
    pub fn finish(mut self) {
        let unknown: Vec<String> = self.table.keys().cloned().collect();
        for field in unknown {
            let hint = match did_you_mean(&field, self.known.iter().copied()) {
                hint if !hint.is_empty() => hint,
                _ => format!(" (known fields: {})", self.known.join(", ")),
            };
            self.error(&field, format!("unknown field{hint}"));
        }
    }
}
