//! The console lines the kernel prints at fixed points, which host tools
//! (`scripts/starina`, the e2e tests) wait for. Documented in
//! `docs/CONTRACTS.md` ("Serial markers"); the kernel prints them from these
//! constants, so the text is defined once.

/// Logged by the kernel once every component of the profile has started,
/// followed by ` (tsc=<rdtsc at ready>) profile '<name>'`.
pub const READY: &str = "starina: ready";

/// Logged by the kernel (`INFO  kernel: started <name>`) as each component
/// starts.
pub const COMPONENT_STARTED: &str = "started";

/// Logged by the kernel (`ERROR kernel: <name> panicked: <message>`) when a
/// component panics; the component alone is torn down.
pub const COMPONENT_PANICKED: &str = "panicked";

/// Printed by the kernel when the kernel itself panics, before it powers the
/// machine off with [`KERNEL_PANIC_EXIT_CODE`].
pub const KERNEL_PANIC: &str = "[kernel panic]";

/// The exit status (through isa-debug-exit) of a kernel panic.
pub const KERNEL_PANIC_EXIT_CODE: u8 = 126;

/// The test runner's summary line: `testrunner: N passed, M failed`.
pub const TESTRUNNER_SUMMARY: &str = "testrunner:";
