//! The system object: holding a handle to it is the privilege to power the
//! machine off (granted by the spec's `privileges = ["shutdown"]`), or to
//! read the system's status (`privileges = ["monitor"]`).

use alloc::sync::Arc;

/// Which privilege a system object grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SystemRight {
    /// Power the machine off (privilege `shutdown`).
    Shutdown,
    /// Read the system's status (privilege `monitor`).
    Monitor,
    /// Create virtual machines (privilege `hypervisor`).
    Hypervisor,
    /// Start commands (privilege `spawn`).
    Spawn,
    /// Stop and restart components (privilege `control`).
    Control,
}

pub struct SystemObject {
    pub right: SystemRight,
}

impl SystemObject {
    pub fn new(right: SystemRight) -> Arc<SystemObject> {
        Arc::new(SystemObject { right })
    }
}
