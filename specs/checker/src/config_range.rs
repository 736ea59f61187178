//! Config keys whose values have a range the checker knows, wherever they
//! are set: in the component's own `[config]` or in a profile's
//! `[config.<component>]`.

use std::path::Path;

use crate::error::Origin;
use crate::error::SpecError;
use crate::model::ConfigEntry;
use crate::model::ConfigValue;

/// A config key of one component with an inclusive integer range.
struct Range {
    component: &'static str,
    key: &'static str,
    min: i64,
    max: i64,
    why: &'static str,
}

const RANGES: &[Range] = &[Range {
    component: "linux",
    key: "vcpus",
    min: 1,
    max: 8,
    why: "the guest's CPUs: one vCPU thread each, one local APIC each in the VMM",
}];

/// The error for `entry` of `component` (set in `file` at `field`) when it
/// is out of its range.
pub fn check(
    origin: Origin,
    file: &Path,
    field: &str,
    component: &str,
    entry: &ConfigEntry,
) -> Option<SpecError> {
    let range = RANGES
        .iter()
        .find(|r| r.component == component && r.key == entry.name)?;
    let ConfigValue::Integer(value) = entry.value else {
        // A wrong type is reported by the type rules.
        return None;
    };
    if (range.min..=range.max).contains(&value) {
        return None;
    }
    Some(SpecError::field(
        origin,
        file,
        field,
        format!(
            "expected {}..={} ({}); got {value}",
            range.min, range.max, range.why
        ),
    ))
}
