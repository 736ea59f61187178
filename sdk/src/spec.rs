//! The spec, as the kernel's startup sees it: the build (`starina-spec`)
//! checks `specs/*.toml` and generates these tables into the kernel.

use crate::env::RawEnv;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ComponentKind {
    App,
    Server,
    Driver,
}

/// Where a component runs. Only in-kernel exists today.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// Linked into the kernel; isolated by safe Rust (`#![forbid(unsafe_code)]`).
    InKernel,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Never started again.
    Never,
    /// Started again after a panic or a fault, not after a clean exit.
    OnFailure,
    /// Started again whenever it ends.
    Always,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// May power the machine off (the test runner).
    Shutdown,
}

/// A channel the component needs: env field `name`, connected to the
/// component that exports `service`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Need {
    pub name: &'static str,
    pub service: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub struct ComponentDef {
    pub name: &'static str,
    pub kind: ComponentKind,
    pub isolation: Isolation,
    pub restart: RestartPolicy,
    /// Restarts allowed before startup gives up on the component.
    pub max_restarts: u32,
    pub exports: &'static [&'static str],
    pub needs: &'static [Need],
    pub privileges: &'static [Privilege],
    /// The component's entry point (generated: builds its typed `Env` and
    /// calls its `main`).
    pub start: fn(RawEnv),
}

#[derive(Clone, Copy, Debug)]
pub struct ProfileDef {
    pub name: &'static str,
    /// Component names, in start order.
    pub components: &'static [&'static str],
}
