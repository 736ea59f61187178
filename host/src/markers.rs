//! Every console line the host tool waits for or parses, defined once
//! (docs/CONTRACTS.md, "Console markers"). A marker is a substring of a
//! serial console line; log lines look like `[   1.234567] INFO  <component>: <message>`.

// What Starina prints, defined once in `starina_abi::markers` (the kernel
// and the components print from there).
pub use starina_abi::markers::AGENT_READY;
pub use starina_abi::markers::BENCH_RAW;
pub use starina_abi::markers::COMPONENT_STARTED;
pub use starina_abi::markers::HTTPD_SERVING;
pub use starina_abi::markers::IST_GUARDED;
pub use starina_abi::markers::LINUX_BOOTING;
pub use starina_abi::markers::LINUX_GUEST_READY;
pub use starina_abi::markers::POWER_OFF;
pub use starina_abi::markers::READY;
pub use starina_abi::markers::TESTRUNNER_SUMMARY as TESTRUNNER;
pub use starina_abi::markers::VM_STRUCTURES;

/// The busybox Linux of the HTTP benchmark (its /init, written by `bench`).
pub const BENCH_LINUX_READY: &str = "bench-linux: ready";

/// `... <who>: N passed, M failed ...` -> (N, M), for the last `<who>: ` on the line.
pub fn parse_summary(line: &str, who: &str) -> Option<(u32, u32)> {
    let rest = line[line.rfind(who)? + who.len()..].trim_start();
    let (passed, rest) = rest.split_once(" passed, ")?;
    let failed = rest.split(" failed").next()?.trim();
    Some((passed.trim().parse().ok()?, failed.parse().ok()?))
}

/// `testrunner: N passed, M failed` -> (N, M).
pub fn testrunner_summary(line: &str) -> Option<(u32, u32)> {
    parse_summary(line, TESTRUNNER)
}

/// `... starina: power off with code <C>` -> C (machines without
/// isa-debug-exit: Bochs).
pub fn power_off_code(line: &str) -> Option<u8> {
    let rest = &line[line.find(POWER_OFF)? + POWER_OFF.len()..];
    rest.split_whitespace().next()?.parse().ok()
}

/// `... starina: ready (tsc=<n>) ...` -> n.
pub fn ready_tsc(line: &str) -> Option<u64> {
    let rest = &line[line.find(READY)? + READY.len()..];
    let rest = &rest[rest.find("(tsc=")? + "(tsc=".len()..];
    rest[..rest.find(')')?].trim().parse().ok()
}

/// `... bench-raw: <name> <value>` -> (name, value as written).
pub fn bench_raw(line: &str) -> Option<(&str, &str)> {
    let rest = &line[line.find(BENCH_RAW)? + BENCH_RAW.len()..];
    let mut words = rest.split_whitespace();
    let (name, value) = (words.next()?, words.next()?);
    value.parse::<f64>().ok()?;
    Some((name, value))
}

/// `... VM structures <n> KiB` -> n.
pub fn vm_structures_kib(line: &str) -> Option<u64> {
    let rest = line[line.find(VM_STRUCTURES)? + VM_STRUCTURES.len()..].trim_start();
    let (n, unit) = rest.split_once(' ')?;
    unit.starts_with("KiB").then_some(())?;
    n.parse().ok()
}

/// The time stamp of a log line, `[   1.234567] ...`, in nanoseconds.
pub fn timestamp_ns(line: &str) -> Option<u64> {
    let rest = line.strip_prefix('[')?;
    let (stamp, _) = rest.split_once(']')?;
    let (secs, micros) = stamp.trim().split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    Some(secs.parse::<u64>().ok()? * 1_000_000_000 + micros.parse::<u64>().ok()? * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summaries() {
        let line = "[   1.0] INFO  testrunner: testrunner: 12 passed, 0 failed";
        assert_eq!(testrunner_summary(line), Some((12, 0)));
        assert_eq!(
            testrunner_summary("testrunner: 3 passed, 2 failed\r"),
            Some((3, 2))
        );
        assert_eq!(testrunner_summary("testrunner: started"), None);
        assert_eq!(
            parse_summary("linux_check: 7 passed, 0 failed", "linux_check: "),
            Some((7, 0))
        );
    }

    #[test]
    fn ready_and_raw() {
        let ready = "[   0.5] INFO  kernel: starina: ready (tsc=123456) profile 'default'";
        assert_eq!(ready_tsc(ready), Some(123456));
        assert_eq!(ready_tsc("starina: ready"), None);
        let raw = "[ 2.0] INFO  bench: bench-raw: ipc_roundtrip_0b 2191";
        assert_eq!(bench_raw(raw), Some(("ipc_roundtrip_0b", "2191")));
        assert_eq!(bench_raw("bench-raw: x 1.5"), Some(("x", "1.5")));
        assert_eq!(bench_raw("bench-raw: x y"), None);
        assert_eq!(
            power_off_code("starina: power off with code 126"),
            Some(126)
        );
        assert_eq!(power_off_code("starina: power off with code"), None);
    }

    #[test]
    fn contracts_list_every_marker() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let contracts = std::fs::read_to_string(root.join("docs/CONTRACTS.md")).unwrap();
        let section = &contracts[contracts.find("## Console markers").unwrap()..];
        for marker in [
            READY,
            COMPONENT_STARTED,
            TESTRUNNER,
            BENCH_RAW,
            LINUX_BOOTING,
            LINUX_GUEST_READY,
            VM_STRUCTURES,
            HTTPD_SERVING,
            AGENT_READY,
            BENCH_LINUX_READY,
            POWER_OFF,
        ] {
            assert!(
                section.contains(marker.trim()),
                "CONTRACTS.md lacks {marker:?}"
            );
        }
    }

    #[test]
    fn vm_and_timestamps() {
        let vm = "[ 1.000000] INFO  kernel: VM created: VM structures 132 KiB beyond guest RAM";
        assert_eq!(vm_structures_kib(vm), Some(132));
        assert_eq!(timestamp_ns("[   1.234567] INFO  x"), Some(1_234_567_000));
        assert_eq!(timestamp_ns("[ 1.2] x"), None);
        assert_eq!(timestamp_ns("no"), None);
    }
}
