//! Starina's declarative spec system.
//!
//! Each component is described by `specs/<name>.toml`, each profile (a set
//! of components the kernel starts, in order) by `specs/profiles/<name>.toml`;
//! `specs/README.md` documents the format. This crate parses and checks them
//! and generates Rust code:
//!
//! - [`build::component`], from a component's `build.rs`: its typed `Env`
//!   (`$OUT_DIR/starina_env.rs`);
//! - [`build::kernel`], from the kernel's `build.rs`: the wiring tables
//!   `COMPONENTS` and `PROFILES` (`$OUT_DIR/starina_wiring.rs`).
//!
//! [`load_all`] checks a whole workspace and reports every error; the
//! `starina-spec check` command prints them.

pub mod build;
mod check;
mod command;
mod config_range;
pub mod codegen;
mod error;
mod fields;
mod linux;
mod model;
mod names;
mod parse;

pub use check::check_crate;
pub use check::check_kernel_manifest;
pub use check::load_all;
pub use check::spec_path;
pub use check::DEFAULT_PROFILE;
pub use check::KERNEL_MANIFEST;
pub use error::Origin;
pub use error::SpecError;
pub use model::Component;
pub use model::ConfigEntry;
pub use model::ConfigOverride;
pub use model::ConfigValue;
pub use model::DeviceMatch;
pub use model::DeviceSpec;
pub use model::Isolation;
pub use model::Kind;
pub use model::LinuxService;
pub use model::Need;
pub use model::Privilege;
pub use model::Profile;
pub use model::Restart;
pub use model::System;
pub use parse::parse_component;
pub use parse::parse_profile;
pub use parse::DEFAULT_MAX_RESTARTS;
pub use parse::DEFAULT_RESTART_WINDOW_S;
