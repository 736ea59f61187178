//! The system object: holding a handle to it is the privilege to power the
//! machine off (granted by the spec's `privileges = ["shutdown"]`).

use alloc::sync::Arc;

pub struct SystemObject;

impl SystemObject {
    pub fn new() -> Arc<SystemObject> {
        Arc::new(SystemObject)
    }
}
