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

/// Printed by the kernel when it powers off a machine without QEMU's
/// isa-debug-exit (Bochs: ACPI soft-off, after which Bochs exits with
/// status 1 whatever the code): `starina: power off with code <C>`. The
/// host tool takes the OS's status from it.
pub const POWER_OFF: &str = "starina: power off with code";

/// The test runner's summary line: `testrunner: N passed, M failed`.
/// The kernel's boot line saying every interrupt stack sits below a guard
/// page it checked is unmapped (`kernel/src/arch/trap.rs`).
pub const IST_GUARDED: &str = "interrupt stacks guarded";

pub const TESTRUNNER_SUMMARY: &str = "testrunner:";

/// Logged by the bench components for each figure: `bench-raw: <name> <value>`
/// (guest nanoseconds, or instructions under `-icount shift=0`).
pub const BENCH_RAW: &str = "bench-raw:";

/// Logged by the linux server as it starts a VM: `booting Linux: ...`.
pub const LINUX_BOOTING: &str = "booting Linux";

/// Logged by the linux server once the guest agent answers:
/// `linux: guest ready: Linux <release>`.
pub const LINUX_GUEST_READY: &str = "guest ready";

/// Logged by the kernel when a VM is created: `... VM structures <n> KiB ...`.
pub const VM_STRUCTURES: &str = "VM structures";

/// Logged by httpd once it listens: `httpd: serving HTTP on port <n>`.
pub const HTTPD_SERVING: &str = "serving HTTP on port";

/// Printed by the guest agent on the Linux console when it is ready:
/// `starina-agent: ready (Linux <release>)`.
pub const AGENT_READY: &str = "starina-agent: ready";

/// The linux server forwards a TCP port to a Linux listener (a log line
/// `net: forwarding TCP port <port> to Linux (<process>)`): the host tool
/// adds the matching QEMU port forward.
pub const NET_FORWARD_ADDED: &str = "net: forwarding TCP port";

/// The Linux listener of a forwarded port went (`... port <port> (<n>
/// connections)`): the host tool removes its QEMU port forward.
pub const NET_FORWARD_REMOVED: &str = "net: stopped forwarding TCP port";

/// The linux server forwards a UDP port to a Linux socket bound there (a
/// log line `net: forwarding UDP port <port> to Linux (<process>)`): the
/// host tool adds the matching QEMU `udp:` port forward.
pub const NET_FORWARD_UDP_ADDED: &str = "net: forwarding UDP port";

/// The Linux socket of a forwarded UDP port went (`... port <port> (<n>
/// datagrams in)`): the host tool removes its QEMU port forward.
pub const NET_FORWARD_UDP_REMOVED: &str = "net: stopped forwarding UDP port";
