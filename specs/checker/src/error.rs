//! Errors: each one names the file, the field (when there is one) and what
//! is wrong, so that it can be fixed without reading the checker.

use std::fmt;
use std::path::Path;
use std::path::PathBuf;

/// What kind of file an error is about; it decides the message's prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A component spec, `specs/<name>.toml`: `spec <file>: ...`.
    Spec,
    /// A profile, `specs/profiles/<name>.toml`: `profile <file>: ...`.
    Profile,
    /// Anything else (the tree, a crate, `kernel/Cargo.toml`): the message
    /// itself names what it is about.
    Other,
}

/// One problem found in the specs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    pub origin: Origin,
    /// The file, relative to the workspace root (`specs/echo.toml`).
    pub file: PathBuf,
    /// The offending field, as a TOML key path (`restart`, `needs.echo`).
    pub field: Option<String>,
    pub message: String,
}

impl SpecError {
    pub fn new(origin: Origin, file: &Path, message: impl Into<String>) -> SpecError {
        SpecError {
            origin,
            file: file.to_path_buf(),
            field: None,
            message: message.into(),
        }
    }

    pub fn field(
        origin: Origin,
        file: &Path,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> SpecError {
        SpecError {
            field: Some(field.into()),
            ..SpecError::new(origin, file, message)
        }
    }

    /// An error whose message says everything (no `spec <file>:` prefix).
    pub fn other(file: &Path, message: impl Into<String>) -> SpecError {
        SpecError::new(Origin::Other, file, message)
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.origin {
            Origin::Spec => write!(f, "spec {}: ", self.file.display())?,
            Origin::Profile => write!(f, "profile {}: ", self.file.display())?,
            Origin::Other => {}
        }
        if let Some(field) = &self.field {
            write!(f, "field '{field}': ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}
